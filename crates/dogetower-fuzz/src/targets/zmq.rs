//! dogecoind's ZMQ notifications as the tower reads them: multipart
//! messages parsed into topic, body and counter (`ZmqMessage::from_frames`,
//! the parser the subscriber's thread runs), the per-topic counters
//! (`SequenceTracker`), and the follower's hints (`hints_from_zmq_batch`),
//! which decode `rawblock` and `rawtx` bodies.
//!
//! Input: messages back to back; each is one byte giving its frame count
//! (mod 6), then each frame as a 2-byte little-endian length and its bytes
//! (a length past the end takes what is left). [`encode`] writes it.
//!
//! Properties:
//! - a message is accepted exactly when it has three frames, a known topic,
//!   a 4-byte counter and a non-empty body (32 bytes for the hash topics),
//!   and it keeps the body and counter as sent;
//! - a refusal names the topic the message claimed, when it was a known one;
//! - the counters' verdicts agree with the arithmetic (in order is last + 1,
//!   a gap's first lost counter is last + 1, a duplicate repeats the last);
//! - a `rawtx` hint carries the transaction's real txid, and a `rawblock`
//!   hint's block re-encodes to the body.

use bitcoin::consensus::encode;
use dogetower::follower::{hints_from_zmq, hints_from_zmq_batch, Hint};
use dogetower::node::zmq::{FrameError, SeqVerdict, SequenceTracker, Topic, ZmqEvent, ZmqMessage};

use crate::world::world;

/// Most messages one input is split into (a bound on the work per input).
const MAX_MESSAGES: usize = 64;

pub fn run(data: &[u8]) {
    let mut trackers: [SequenceTracker; 4] = Default::default();
    let mut events = Vec::new();
    for frames in split(data).into_iter().take(MAX_MESSAGES) {
        let copy = frames.clone();
        match ZmqMessage::from_frames(frames) {
            Ok(message) => {
                accepted(&copy, &message);
                let tracker = &mut trackers[message.topic.index()];
                let last = tracker.last_seq();
                let verdict = tracker.observe(message.seq, &message.body);
                check_verdict(last, message.seq, verdict);
                events.extend(subscriber_events(message, verdict));
            }
            Err(reason) => {
                refused(&copy, &reason);
                events.push(ZmqEvent::Malformed { reason });
            }
        }
    }
    for event in events.clone() {
        check_hints(&event, &hints_from_zmq(event.clone()));
    }
    let mut hints = Vec::new();
    hints_from_zmq_batch(events, Some(world().tower.watch_filter()), &mut hints);
}

/// Splits an input into messages of frames (see the module's doc).
pub fn split(mut data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut messages = Vec::new();
    while let Some((&count, rest)) = data.split_first() {
        data = rest;
        let mut frames = Vec::new();
        for _ in 0..count % 6 {
            let len = match data {
                [a, b, rest @ ..] => {
                    data = rest;
                    usize::from(u16::from_le_bytes([*a, *b]))
                }
                _ => std::mem::take(&mut data).len(),
            };
            let (frame, rest) = data.split_at(len.min(data.len()));
            frames.push(frame.to_vec());
            data = rest;
        }
        messages.push(frames);
    }
    messages
}

/// Writes messages in the input format of [`split`] (frames over 65,535
/// bytes are cut).
pub fn encode(messages: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for frames in messages {
        out.push(frames.len() as u8);
        for frame in frames {
            let len = frame.len().min(usize::from(u16::MAX));
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&frame[..len]);
        }
    }
    out
}

fn accepted(frames: &[Vec<u8>], message: &ZmqMessage) {
    assert_eq!(frames.len(), 3);
    assert_eq!(Topic::from_frame(&frames[0]), Some(message.topic));
    assert_eq!(message.body, frames[1]);
    assert!(!message.body.is_empty());
    assert_eq!(frames[2], message.seq.to_le_bytes());
    assert_eq!(message.block_hash().is_some(), message.topic == Topic::HashBlock);
    assert_eq!(message.txid().is_some(), message.topic == Topic::HashTx);
    if message.topic.is_hash() {
        assert_eq!(message.body.len(), 32);
    }
}

fn refused(frames: &[Vec<u8>], reason: &FrameError) {
    let claimed = frames.first().and_then(|f| Topic::from_frame(f));
    assert_eq!(reason.topic(), claimed, "{reason}");
    let well_formed = frames.len() == 3
        && claimed.is_some()
        && frames[2].len() == 4
        && !frames[1].is_empty()
        && (!claimed.is_some_and(Topic::is_hash) || frames[1].len() == 32);
    assert!(!well_formed, "a well-formed message was refused: {reason}");
    // Log lines stay short whatever the frame held.
    assert!(reason.to_string().len() < 200, "{reason}");
}

fn check_verdict(last: Option<u32>, seq: u32, verdict: SeqVerdict) {
    match (last, verdict) {
        (None, SeqVerdict::First) => {}
        (None, other) => panic!("the first message got {other:?}"),
        (Some(_), SeqVerdict::First) => panic!("a later message was called the first"),
        (Some(last), SeqVerdict::InOrder) => assert_eq!(seq, last.wrapping_add(1)),
        (Some(last), SeqVerdict::Gap { expected, got, lost }) => {
            assert_eq!(expected, last.wrapping_add(1));
            assert_eq!(got, seq);
            assert_eq!(lost, got.wrapping_sub(expected));
            assert_ne!(lost, 0);
        }
        (Some(last), SeqVerdict::Reset { last: l, got }) => {
            assert_eq!((l, got), (last, seq));
        }
        (Some(last), SeqVerdict::Duplicate) => assert_eq!(seq, last),
    }
}

/// What the subscriber's thread hands on for a message with this verdict
/// (`worker.rs`, `Worker::handle`).
fn subscriber_events(message: ZmqMessage, verdict: SeqVerdict) -> Vec<ZmqEvent> {
    let topic = message.topic;
    let notice = match verdict {
        SeqVerdict::First | SeqVerdict::InOrder => None,
        SeqVerdict::Gap { expected, got, .. } => Some(ZmqEvent::Gap { topic, expected, got }),
        SeqVerdict::Reset { last, got } => Some(ZmqEvent::Reset { topic, last, got }),
        SeqVerdict::Duplicate => {
            return vec![ZmqEvent::Duplicate {
                topic,
                seq: message.seq,
            }]
        }
    };
    notice.into_iter().chain([ZmqEvent::Message(message)]).collect()
}

fn check_hints(event: &ZmqEvent, hints: &[Hint]) {
    let ZmqEvent::Message(message) = event else {
        return;
    };
    for hint in hints {
        match hint {
            Hint::Tx { txid, tx } => {
                assert_eq!(message.topic, Topic::RawTx);
                assert_eq!(
                    *txid,
                    tx.compute_txid(),
                    "a rawtx hint's txid is the transaction's"
                );
            }
            Hint::Block(Some(block)) => {
                assert_eq!(message.topic, Topic::RawBlock);
                assert_eq!(encode::serialize(&**block), message.body);
            }
            _ => {}
        }
    }
}
