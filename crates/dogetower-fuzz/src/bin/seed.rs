//! `fuzz-seed DIR`: writes every target's seeds (from the fixtures and the
//! payer) to DIR/<target>/, the starting corpus of a fuzzing run.

use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seed DIR");
        std::process::exit(2);
    };
    for target in dogetower_fuzz::TARGETS {
        let out = dir.join(target.name);
        std::fs::create_dir_all(&out).expect("create the corpus folder");
        let seeds = dogetower_fuzz::seeds::seeds(target.name);
        for (name, bytes) in &seeds {
            std::fs::write(out.join(name), bytes).expect("write a seed");
        }
        println!("{}: {} seeds in {}", target.name, seeds.len(), out.display());
    }
}
