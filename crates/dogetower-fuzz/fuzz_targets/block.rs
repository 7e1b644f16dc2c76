//! The `block` fuzz target: see `src/targets/block.rs` for what it checks.
//! Under AFL++ (`cargo afl build` sets `--cfg fuzzing`) it runs in
//! persistent mode; otherwise it replays the files named on the command
//! line (or stdin), to reproduce a crash.

#[cfg(fuzzing)]
fn main() {
    afl::fuzz!(|data: &[u8]| {
        dogetower_fuzz::targets::block::run(data);
    });
}

#[cfg(not(fuzzing))]
fn main() {
    dogetower_fuzz::replay_main("block");
}
