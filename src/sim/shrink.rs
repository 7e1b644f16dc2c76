//! Delta debugging of a failing step list (Zeller's ddmin, simplified):
//! remove chunks, halving their size down to single steps, keeping every
//! cut after which the run still breaks the same invariant.

use super::steps::Step;
use super::{run_steps, SimConfig};

/// The shortest list found that still breaks `invariant`.
pub fn shrink(config: &SimConfig, failing: &[Step], invariant: &str) -> Vec<Step> {
    let still_fails = |steps: &[Step]| {
        run_steps(config, steps)
            .violation
            .is_some_and(|(_, v)| v.invariant() == invariant)
    };
    let mut steps = failing.to_vec();
    let mut chunk = steps.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        let mut cut_any = false;
        while start < steps.len() {
            let end = (start + chunk).min(steps.len());
            let mut candidate = steps[..start].to_vec();
            candidate.extend_from_slice(&steps[end..]);
            if !candidate.is_empty() && still_fails(&candidate) {
                // A run stops at its first violation: what follows it goes too.
                let at = run_steps(config, &candidate)
                    .violation
                    .map_or(candidate.len(), |(i, _)| i + 1);
                candidate.truncate(at);
                steps = candidate;
                cut_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !cut_any {
            return steps;
        }
        chunk = (chunk / 2).max(1);
    }
}
