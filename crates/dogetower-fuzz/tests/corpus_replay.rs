//! Every file of `corpus/` (all targets' folders) and every seed built from
//! the fixtures goes through every fuzz target; none may panic. This is the
//! fuzzers' regression suite: a crash a fuzzer found is kept in its
//! target's folder (under `crashes/` when it names a fixed bug), so it is
//! replayed on every `cargo test` from then on.

use dogetower_fuzz::{corpus_files, corpus_root, replay, seeds, Target, TARGETS};

fn inputs() -> Vec<(String, Vec<u8>)> {
    let root = corpus_root();
    let mut inputs = Vec::new();
    for file in corpus_files(&root).expect("the corpus folder") {
        let name = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        inputs.push((name, std::fs::read(&file).expect("read a corpus file")));
    }
    for target in TARGETS {
        for (name, bytes) in seeds::seeds(target.name) {
            inputs.push((format!("seed {}/{name}", target.name), bytes));
        }
    }
    inputs
}

#[test]
fn every_corpus_file_through_every_target() {
    for target in TARGETS {
        let dir = corpus_root().join(target.name);
        let files = corpus_files(&dir).unwrap_or_default();
        assert!(!files.is_empty(), "{} has no corpus", dir.display());
    }
    let inputs = inputs();
    let failures = replay(TARGETS, inputs.iter().map(|(n, d)| (n.clone(), d.as_slice())));
    assert!(
        failures.is_empty(),
        "{} of {} runs panicked:\n{}",
        failures.len(),
        inputs.len() * TARGETS.len(),
        failures
            .iter()
            .map(|f| format!("  {} on {}: {}", f.target, f.input, f.message))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "{} inputs through {} targets: no panic",
        inputs.len(),
        TARGETS.len()
    );
}

/// The replay would see a crash: a target that panics on some corpus input
/// is reported, with the input's name and the panic's message.
#[test]
fn a_panicking_target_fails_the_replay() {
    fn panics_on_psbt_magic(data: &[u8]) {
        if data.starts_with(b"psbt\xff") {
            panic!("planted bug");
        }
        // Otherwise the real target, so only the planted panic is reported.
        dogetower_fuzz::targets::psbt::run(data);
    }
    let planted = Target {
        name: "planted",
        run: panics_on_psbt_magic,
    };
    let inputs = inputs();
    let failures = replay(&[planted], inputs.iter().map(|(n, d)| (n.clone(), d.as_slice())));
    assert!(
        !failures.is_empty(),
        "the corpus holds binary PSBTs, so the planted bug must fire"
    );
    assert!(failures
        .iter()
        .all(|f| f.target == "planted" && f.message == "planted bug"));
    assert!(
        failures.iter().any(|f| f.input.starts_with("psbt/")),
        "{failures:?}"
    );
}

/// The properties are checked, not only panics: a payment the validator
/// accepts runs through the script interpreter. Here the valid seed is
/// accepted and the high-S one refused, so the target reaches both sides.
#[test]
fn the_psbt_target_reaches_acceptance_and_refusal() {
    use dogetower_core::channel::psbt::decode;
    use dogetower_core::channel::validate_payment;
    let w = dogetower_fuzz::world::world();
    let seeds = seeds::seeds("psbt");
    let verdict = |name: &str| {
        let (_, bytes) = seeds.iter().find(|(n, _)| n == name).expect(name);
        validate_payment(&decode(bytes).expect("decodes"), &w.payment_check(0)).map_err(|v| v.code())
    };
    assert!(verdict("payer_payment_valid").is_ok());
    assert!(verdict("fixture_payment_presigned").is_ok());
    assert_eq!(verdict("payer_payment_high_s").unwrap_err(), "high_s_signature");
    assert_eq!(
        verdict("payer_payment_malformed_sig").unwrap_err(),
        "bad_signature"
    );
}
