//! The simulation as a test: many short seeds (CI), determinism, restarts,
//! and proof that the checks fail when the tower is broken on purpose.

use super::steps::{FundingKind, HintFate, PaymentKind, Step};
use super::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CI size: thousands of short seeds. `DOGETOWER_SIM_SEEDS` and
/// `DOGETOWER_SIM_STEPS` make it bigger.
#[test]
fn many_seeds_break_no_invariant() {
    let seeds = env_or("DOGETOWER_SIM_SEEDS", 2_000);
    let steps = env_or("DOGETOWER_SIM_STEPS", 40) as usize;
    match run_many(1, seeds, steps, 3) {
        Ok(summary) => {
            println!("{summary}");
            assert_eq!(summary.seeds, seeds);
            assert!(summary.payments_acknowledged > 0 && summary.blocks > 0 && summary.restarts > 0);
        }
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    let config = SimConfig::new(42, 400, 3);
    let steps = steps::generate(&mut rng::SimRng::new(42), 400);
    let (first, second) = (run_steps(&config, &steps), run_steps(&config, &steps));
    assert!(first.violation.is_none(), "{:?}", first.violation);
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.summary, second.summary);
    let other = run_steps(
        &SimConfig::new(43, 400, 3),
        &steps::generate(&mut rng::SimRng::new(43), 400),
    );
    assert_ne!(first.digest, other.digest);
}

#[test]
fn long_runs_restart_and_compare_engines_and_judge_deadlines() {
    let summary = run_seed(&SimConfig::new(7, 1_500, 4)).unwrap_or_else(|f| panic!("{f}"));
    assert!(summary.restart_comparisons >= 10, "{summary}");
    assert!(summary.deadlines_checked >= 3, "{summary}");
    assert!(summary.closes_mined >= 1, "{summary}");
    assert!(summary.reorgs >= 5, "{summary}");
}

/// A short scripted story: a channel, two payments, blocks to the deadline.
fn story() -> Vec<Step> {
    let mut steps = vec![
        Step::OpenChannel {
            lifetime: 30,
            funding: FundingKind::Final,
        },
        Step::MineBlock {
            hint: HintFate::Delivered,
        },
        Step::Pay {
            slot: 0,
            kind: PaymentKind::Valid { raise_doge: 5 },
        },
        Step::Pay {
            slot: 0,
            kind: PaymentKind::Valid { raise_doge: 5 },
        },
        // The payments' group commits before the poll; the restart then
        // has nothing uncommitted and its engine is compared.
        Step::Poll,
        Step::Restart {
            sends_reached_node: false,
        },
    ];
    steps.extend((0..40).map(|_| Step::MineBlock {
        hint: HintFate::Delivered,
    }));
    steps
}

#[test]
fn the_story_closes_with_the_latest_state() {
    let outcome = run_steps(&SimConfig::new(1, 0, 1), &story());
    println!("{}", outcome.summary);
    assert!(outcome.violation.is_none(), "{:?}", outcome.violation);
    assert_eq!(outcome.summary.payments_acknowledged, 2);
    assert_eq!(outcome.summary.closes_mined, 1);
    assert_eq!(outcome.summary.restart_comparisons, 1);
}

/// A sabotaged tower fails the named invariant, and the shrinker brings
/// the generated repro down to a handful of steps besides the blocks that
/// must be mined to reach a deadline (a channel's lifetime is one step's
/// parameter, so those cannot be cut).
fn caught(sabotage: Sabotage, invariant: &str, at_most: usize) {
    for seed in 1..200 {
        let config = SimConfig {
            sabotage,
            ..SimConfig::new(seed, 300, 2)
        };
        if let Err(failure) = run_seed(&config) {
            println!("{failure}");
            assert_eq!(failure.violation.invariant(), invariant, "{failure}");
            let besides_blocks = failure
                .steps
                .iter()
                .filter(|s| !matches!(s, Step::MineBlock { .. }))
                .count();
            assert!(besides_blocks <= at_most, "{failure}");
            // The shrunk list still fails the same way on its own.
            let again = run_steps(&config, &failure.steps);
            assert_eq!(again.violation.map(|(_, v)| v.invariant()), Some(invariant));
            return;
        }
    }
    panic!("no seed caught {sabotage:?}");
}

#[test]
fn a_payment_acknowledged_but_not_stored_is_caught() {
    caught(Sabotage::SkipPaymentStore, "acknowledged payment stored", 3);
}

#[test]
fn a_close_of_an_older_state_is_caught() {
    caught(
        Sabotage::CloseWithFirstState,
        "no older close after a newer acknowledgement",
        6,
    );
}

#[test]
fn a_close_never_sent_is_caught() {
    caught(Sabotage::SkipBroadcasts, "latest close mined by the deadline", 6);
}
