//! The per-topic counters, followed message by message: in order, a gap, a
//! restart of the node, or a copy.

/// How far past `u32::MAX` a counter that went "down" may have wrapped and
/// still be read as moving forward (a gap across the wrap) rather than as a
/// restart. Counters restart at 0, so a drop from near `u32::MAX` to near 0
/// is ambiguous; either verdict makes the follower resync, and a node that has
/// published four billion messages on one topic is rare enough.
pub const WRAP_WINDOW: u32 = 1 << 24;

/// What one message's counter says, compared with the previous message of
/// the same topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// The first message since the subscriber started: there is nothing to
    /// compare with, so any counter is accepted and no gap is reported
    /// (we cannot know what was sent before we connected).
    First,
    /// Exactly one more than the previous one (`u32::MAX` is followed by 0).
    InOrder,
    /// Messages `expected ..= got - 1` were lost.
    Gap { expected: u32, got: u32, lost: u32 },
    /// The counter went back: the publisher restarted. `got` messages of the
    /// new process (counters `0 .. got`) were missed; messages the old process
    /// sent after `last` may have been missed too.
    Reset { last: u32, got: u32 },
    /// The same counter and the same body as the previous message: a copy
    /// (for instance one node reached through two endpoint names). It carries
    /// nothing new and is not forwarded as a message.
    Duplicate,
}

/// The counter of one topic, followed message by message. Pure: no I/O, no
/// clock, so every case is unit-tested.
///
/// The state survives reconnections on purpose: after the node restarts, its
/// counters start again at 0 and the next message reads as a
/// [`SeqVerdict::Reset`] (or as a gap), which is exactly what the follower
/// needs to learn that it missed messages.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    /// The last counter and a fingerprint of its body.
    last: Option<(u32, u64)>,
}

impl SequenceTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter of the last message seen, if any.
    pub fn last_seq(&self) -> Option<u32> {
        self.last.map(|(seq, _)| seq)
    }

    /// Classifies the message with counter `seq` and `body`, and remembers it
    /// as the last one unless it is a duplicate.
    ///
    /// The body matters only when the counter repeats: the same counter with
    /// the same body is a copy, while the same counter with a different body
    /// means the node restarted and has reached the same count again (a node
    /// that sent `hashblock` 0 and was restarted sends another `hashblock` 0
    /// for its next block, which must not be dropped).
    pub fn observe(&mut self, seq: u32, body: &[u8]) -> SeqVerdict {
        let fingerprint = fingerprint(body);
        let verdict = match self.last {
            None => SeqVerdict::First,
            Some((last, last_fingerprint)) => classify(last, last_fingerprint, seq, fingerprint),
        };
        if verdict != SeqVerdict::Duplicate {
            self.last = Some((seq, fingerprint));
        }
        verdict
    }
}

fn classify(last: u32, last_fingerprint: u64, got: u32, fingerprint: u64) -> SeqVerdict {
    if got == last {
        return if fingerprint == last_fingerprint {
            SeqVerdict::Duplicate
        } else {
            SeqVerdict::Reset { last, got }
        };
    }
    let expected = last.wrapping_add(1);
    if got == expected {
        return SeqVerdict::InOrder;
    }
    // How far forward `got` is from `expected`, counting across the wrap.
    let skipped = got.wrapping_sub(expected);
    if got > last || skipped < WRAP_WINDOW {
        SeqVerdict::Gap {
            expected,
            got,
            lost: skipped,
        }
    } else {
        SeqVerdict::Reset { last, got }
    }
}

/// A 64-bit fingerprint of a body, to tell a copy from a new message with a
/// repeated counter without keeping the last body of every topic (a block
/// can be a megabyte). It runs for every message, so it is a multiply-rotate
/// hash over eight bytes at a time (FxHash's step) rather than SipHash,
/// which took a sixth of the thread's instructions: nothing adversarial
/// here, the node is trusted and two different bodies only matter when
/// they also carry the same counter.
fn fingerprint(body: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut chunks = body.chunks_exact(8);
    let mut h = step(0, body.len() as u64);
    for chunk in &mut chunks {
        h = step(h, u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(word));
    }
    h
}

#[cfg(test)]
mod fingerprint_tests {
    use super::fingerprint;

    #[test]
    fn bodies_that_differ_anywhere_or_in_length_differ() {
        let body: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let base = fingerprint(&body);
        assert_eq!(base, fingerprint(&body.clone()));
        for i in [0, 7, 8, 150, 295, 299] {
            let mut other = body.clone();
            other[i] ^= 1;
            assert_ne!(base, fingerprint(&other), "byte {i}");
        }
        // A trailing zero changes the length, not the padded last word.
        let mut longer = body.clone();
        longer.push(0);
        assert_ne!(base, fingerprint(&longer));
        assert_ne!(fingerprint(&[]), fingerprint(&[0]));
    }
}
