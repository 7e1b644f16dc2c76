//! Fuzz targets for the parsers that read what the tower is sent: payment
//! PSBTs (decoder and validator), AuxPoW blocks, ZMQ frames and the API's
//! JSON bodies. Each target is one function in [`targets`] that calls the
//! production entry points and checks properties beyond "no panic"
//! (round trips, stable error codes, agreement with the script
//! interpreter); `fuzz_targets/` wraps each in a binary for AFL++, and
//! `tests/corpus_replay.rs` runs every file of `corpus/` through every
//! target on each `cargo test`. How to run them: docs/RELIABILITY.md,
//! "Fuzzing".

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

pub mod seeds;
pub mod targets;
pub mod world;

/// One fuzz target: its name (also its corpus folder's) and its entry point.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order the docs list them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "psbt",
        run: targets::psbt::run,
    },
    Target {
        name: "block",
        run: targets::block::run,
    },
    Target {
        name: "zmq",
        run: targets::zmq::run,
    },
    Target {
        name: "api",
        run: targets::api::run,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// The committed corpus: `crates/dogetower-fuzz/corpus/`.
pub fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every file under `dir` (recursively), sorted.
pub fn corpus_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// An input a target panicked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: &'static str,
    pub input: String,
    pub message: String,
}

/// Runs `data` through `target`, catching a panic.
pub fn run_one(target: Target, name: &str, data: &[u8]) -> Result<(), Failure> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data))).map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Failure {
            target: target.name,
            input: name.to_string(),
            message,
        }
    })
}

/// Runs every input through every target and returns what panicked.
/// Every target gets every input, not only its own folder's: a ZMQ body is
/// a block, a PSBT sits in an API body, and odd inputs are the point.
pub fn replay<'a>(
    targets: &[Target],
    inputs: impl IntoIterator<Item = (String, &'a [u8])> + Clone,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    for target in targets {
        for (name, data) in inputs.clone() {
            if let Err(f) = run_one(*target, &name, data) {
                failures.push(f);
            }
        }
    }
    failures
}

/// `main` of a target's binary outside AFL: replays the files (or folders)
/// named on the command line, or reads one input from stdin when none is
/// named, and exits non-zero after the first panic (with its message).
pub fn replay_main(target: &str) {
    let target = target_or_exit(target);
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let mut files = Vec::new();
    for arg in &args {
        if arg.is_dir() {
            files.extend(corpus_files(arg).unwrap_or_else(|e| exit(&format!("{}: {e}", arg.display()))));
        } else {
            files.push(arg.clone());
        }
    }
    if args.is_empty() {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data).unwrap_or_else(|e| exit(&e.to_string()));
        (target.run)(&data);
        println!("{}: stdin ok", target.name);
        return;
    }
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| exit(&format!("{}: {e}", file.display())));
        eprintln!("{}: {}", target.name, file.display());
        (target.run)(&data);
    }
    println!("{}: {} inputs ok", target.name, files.len());
}

fn target_or_exit(name: &str) -> Target {
    target(name).unwrap_or_else(|| exit(&format!("no target {name}")))
}

fn exit(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}
