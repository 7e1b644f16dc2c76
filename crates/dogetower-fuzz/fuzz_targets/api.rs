//! The `api` fuzz target: see `src/targets/api.rs` for what it checks.
//! Under AFL++ (`cargo afl build` sets `--cfg fuzzing`) it runs in
//! persistent mode; otherwise it replays the files named on the command
//! line (or stdin), to reproduce a crash.

#[cfg(fuzzing)]
fn main() {
    // Built before the loop, so the first input's coverage is like the rest.
    dogetower_fuzz::world::world();
    afl::fuzz!(|data: &[u8]| {
        dogetower_fuzz::targets::api::run(data);
    });
}

#[cfg(not(fuzzing))]
fn main() {
    dogetower_fuzz::replay_main("api");
}
