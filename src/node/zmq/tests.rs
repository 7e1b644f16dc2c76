//! Counters, frames, statistics and subscription planning, without sockets
//! (`tests/node_zmq.rs` runs the subscriber against a real publisher).

use std::sync::Arc;
use std::thread;

use tokio::sync::Notify;

use super::frames::parse_frames;
use super::stats::unix_now;
use super::worker::block_on;
use super::*;

fn frames(topic: &[u8], body: &[u8], seq: &[u8]) -> Vec<Vec<u8>> {
    vec![topic.to_vec(), body.to_vec(), seq.to_vec()]
}

// --- SequenceTracker -------------------------------------------------

fn tracker_at(seq: u32) -> SequenceTracker {
    let mut t = SequenceTracker::new();
    assert_eq!(t.observe(seq, b"a"), SeqVerdict::First);
    t
}

#[test]
fn first_message_accepts_any_counter_without_a_gap() {
    for seq in [0, 1, 2, 99, 1198, u32::MAX - 1, u32::MAX] {
        let mut t = SequenceTracker::new();
        assert_eq!(t.last_seq(), None);
        assert_eq!(t.observe(seq, b"x"), SeqVerdict::First, "seq {seq}");
        assert_eq!(t.last_seq(), Some(seq));
    }
}

#[test]
fn consecutive_counters_are_in_order() {
    let mut t = tracker_at(99);
    for seq in 100..110 {
        assert_eq!(t.observe(seq, &seq.to_le_bytes()), SeqVerdict::InOrder);
    }
    assert_eq!(t.last_seq(), Some(109));
}

#[test]
fn skipped_counters_are_a_gap_of_the_right_size() {
    let mut t = tracker_at(99);
    assert_eq!(
        t.observe(101, b"b"),
        SeqVerdict::Gap {
            expected: 100,
            got: 101,
            lost: 1
        }
    );
    assert_eq!(t.observe(102, b"c"), SeqVerdict::InOrder);
    assert_eq!(
        t.observe(1102, b"d"),
        SeqVerdict::Gap {
            expected: 103,
            got: 1102,
            lost: 999
        }
    );
    // A huge forward jump without a wrap is still a gap.
    let mut t = tracker_at(0);
    assert_eq!(
        t.observe(u32::MAX, b"e"),
        SeqVerdict::Gap {
            expected: 1,
            got: u32::MAX,
            lost: u32::MAX - 1
        }
    );
}

#[test]
fn counter_going_back_is_a_reset() {
    // The recorded restart: hashtx 1198 of the old process, then 0.
    let mut t = tracker_at(1198);
    assert_eq!(t.observe(0, b"genesis"), SeqVerdict::Reset { last: 1198, got: 0 });
    assert_eq!(t.observe(1, b"next"), SeqVerdict::InOrder);
    // A restart whose first messages were lost (process 5: first seen seq 2).
    let mut t = tracker_at(500);
    assert_eq!(t.observe(2, b"x"), SeqVerdict::Reset { last: 500, got: 2 });
    assert_eq!(t.observe(3, b"y"), SeqVerdict::InOrder);
    // Going back by one.
    let mut t = tracker_at(10);
    assert_eq!(t.observe(9, b"z"), SeqVerdict::Reset { last: 10, got: 9 });
    // From the top of the range down to the middle: not a wrap.
    let mut t = tracker_at(u32::MAX);
    assert_eq!(
        t.observe(WRAP_WINDOW, b"w"),
        SeqVerdict::Reset {
            last: u32::MAX,
            got: WRAP_WINDOW
        }
    );
}

#[test]
fn same_counter_same_body_is_a_duplicate_and_not_remembered() {
    let mut t = tracker_at(99);
    assert_eq!(t.observe(99, b"a"), SeqVerdict::Duplicate);
    assert_eq!(t.observe(99, b"a"), SeqVerdict::Duplicate);
    assert_eq!(t.last_seq(), Some(99));
    assert_eq!(t.observe(100, b"b"), SeqVerdict::InOrder);
    // Not in a row: 99 after 100 is a step back.
    assert_eq!(t.observe(99, b"a"), SeqVerdict::Reset { last: 100, got: 99 });
}

#[test]
fn same_counter_different_body_is_a_restart() {
    // A node that sent hashblock 0, restarted, and sent hashblock 0 for
    // its next block: the second one is news.
    let mut t = tracker_at(0);
    assert_eq!(
        t.observe(0, b"other block"),
        SeqVerdict::Reset { last: 0, got: 0 }
    );
    assert_eq!(t.observe(0, b"other block"), SeqVerdict::Duplicate);
    assert_eq!(t.observe(1, b"next"), SeqVerdict::InOrder);
}

#[test]
fn counter_wraps_around_u32_max() {
    let mut t = tracker_at(u32::MAX - 1);
    assert_eq!(t.observe(u32::MAX, b"b"), SeqVerdict::InOrder);
    assert_eq!(t.observe(0, b"c"), SeqVerdict::InOrder);
    assert_eq!(t.observe(1, b"d"), SeqVerdict::InOrder);

    // Losses across the wrap are a gap, counted across it.
    let mut t = tracker_at(u32::MAX - 1);
    assert_eq!(
        t.observe(1, b"b"),
        SeqVerdict::Gap {
            expected: u32::MAX,
            got: 1,
            lost: 2
        }
    );
    let mut t = tracker_at(u32::MAX);
    assert_eq!(
        t.observe(5, b"b"),
        SeqVerdict::Gap {
            expected: 0,
            got: 5,
            lost: 5
        }
    );
    // The edge of the window: the last counter still read as a wrap, and
    // the first read as a restart.
    let mut t = tracker_at(u32::MAX);
    assert_eq!(
        t.observe(WRAP_WINDOW - 1, b"b"),
        SeqVerdict::Gap {
            expected: 0,
            got: WRAP_WINDOW - 1,
            lost: WRAP_WINDOW - 1
        }
    );
    let mut t = tracker_at(u32::MAX - 10);
    assert_eq!(
        t.observe(WRAP_WINDOW - 11, b"b"),
        SeqVerdict::Gap {
            expected: u32::MAX - 9,
            got: WRAP_WINDOW - 11,
            lost: WRAP_WINDOW - 1
        }
    );
    let mut t = tracker_at(u32::MAX - 10);
    assert_eq!(
        t.observe(WRAP_WINDOW - 10, b"b"),
        SeqVerdict::Reset {
            last: u32::MAX - 10,
            got: WRAP_WINDOW - 10
        }
    );
}

#[test]
fn every_small_transition_matches_the_rules() {
    // Exhaustive over a window around 0 and around u32::MAX: compare with
    // a plain statement of the rules on 64-bit numbers.
    let values: Vec<u32> = (0..40).chain(u32::MAX - 40..=u32::MAX).collect();
    for &last in &values {
        for &got in &values {
            let mut t = tracker_at(last);
            let verdict = t.observe(got, if got == last { b"a" } else { b"b" });
            let expected = if got == last {
                SeqVerdict::Duplicate
            } else {
                let forward = (u64::from(got) + (1u64 << 32) - u64::from(last)) % (1u64 << 32);
                if forward == 1 {
                    SeqVerdict::InOrder
                } else if got > last || forward - 1 < u64::from(WRAP_WINDOW) {
                    SeqVerdict::Gap {
                        expected: last.wrapping_add(1),
                        got,
                        lost: (forward - 1) as u32,
                    }
                } else {
                    SeqVerdict::Reset { last, got }
                }
            };
            assert_eq!(verdict, expected, "last {last} got {got}");
        }
    }
}

// --- Frames ----------------------------------------------------------

#[test]
fn parses_the_recorded_hashblock_frames() {
    let body = hex::decode("f5490f66ca5ce9b133a4cd66a7112eb1dfa2da0b142e9ca58d3f17d57a663c0d").unwrap();
    let m = ZmqMessage::from_frames(frames(b"hashblock", &body, &[0x63, 0, 0, 0])).unwrap();
    assert_eq!(m.topic, Topic::HashBlock);
    assert_eq!(m.seq, 99);
    assert_eq!(m.body, body);
    assert_eq!(
        m.block_hash().unwrap().to_string(),
        "f5490f66ca5ce9b133a4cd66a7112eb1dfa2da0b142e9ca58d3f17d57a663c0d"
    );
    assert_eq!(m.txid(), None);
    let m = ZmqMessage::from_frames(frames(b"hashtx", &body, &[0xff, 0xff, 0xff, 0xff])).unwrap();
    assert_eq!(m.seq, u32::MAX);
    assert_eq!(
        m.txid().unwrap().to_string(),
        "f5490f66ca5ce9b133a4cd66a7112eb1dfa2da0b142e9ca58d3f17d57a663c0d"
    );
    assert_eq!(m.block_hash(), None);
}

#[test]
fn sequence_is_little_endian() {
    let m = ZmqMessage::from_frames(frames(b"rawtx", b"tx", &[1, 2, 3, 4])).unwrap();
    assert_eq!(m.seq, 0x0403_0201);
}

#[test]
fn wrong_frame_count_is_malformed() {
    let hash = [0u8; 32];
    assert_eq!(
        ZmqMessage::from_frames(vec![b"hashblock".to_vec(), hash.to_vec()]),
        Err(FrameError::WrongFrameCount {
            topic: Some(Topic::HashBlock),
            frames: 2
        })
    );
    let mut four = frames(b"rawtx", b"tx", &[0; 4]);
    four.push(b"extra".to_vec());
    assert_eq!(
        ZmqMessage::from_frames(four),
        Err(FrameError::WrongFrameCount {
            topic: Some(Topic::RawTx),
            frames: 4
        })
    );
    assert_eq!(
        ZmqMessage::from_frames(vec![]),
        Err(FrameError::WrongFrameCount {
            topic: None,
            frames: 0
        })
    );
    assert_eq!(
        ZmqMessage::from_frames(vec![b"bogus".to_vec()]),
        Err(FrameError::WrongFrameCount {
            topic: None,
            frames: 1
        })
    );
    // The receive loop keeps three frames of a longer message.
    assert_eq!(
        parse_frames(frames(b"rawblock", b"b", &[0; 4]), 7),
        Err(FrameError::WrongFrameCount {
            topic: Some(Topic::RawBlock),
            frames: 7
        })
    );
}

#[test]
fn counter_must_be_four_bytes() {
    for len in [0usize, 3, 5, 8] {
        assert_eq!(
            ZmqMessage::from_frames(frames(b"rawtx", b"tx", &vec![0; len])),
            Err(FrameError::BadSequenceLength {
                topic: Topic::RawTx,
                len
            }),
            "len {len}"
        );
    }
}

#[test]
fn unknown_topics_are_malformed_even_when_they_share_a_prefix() {
    for topic in [
        &b"sequence"[..],
        b"rawtxfoo",
        b"hashblock2",
        b"HASHTX",
        b"raw",
        b"",
    ] {
        let err = ZmqMessage::from_frames(frames(topic, b"x", &[0; 4])).unwrap_err();
        assert!(matches!(err, FrameError::UnknownTopic { .. }), "{err}");
        assert_eq!(err.topic(), None);
    }
    let err = ZmqMessage::from_frames(frames(b"rawtxfoo", b"x", &[0; 4])).unwrap_err();
    assert_eq!(err.to_string(), "unknown topic \"rawtxfoo\"");
    let err = ZmqMessage::from_frames(frames(&[0, 1, 0xff], b"x", &[0; 4])).unwrap_err();
    assert_eq!(err.to_string(), "unknown topic 0x0001ff");
    let err = ZmqMessage::from_frames(frames(&[b'a'; 40], b"x", &[0; 4])).unwrap_err();
    assert!(err.to_string().ends_with("(40 bytes)"), "{err}");
}

#[test]
fn hash_bodies_must_be_32_bytes_and_raw_bodies_not_empty() {
    assert_eq!(
        ZmqMessage::from_frames(frames(b"hashtx", &[0; 31], &[0; 4])),
        Err(FrameError::BadHashLength {
            topic: Topic::HashTx,
            len: 31
        })
    );
    assert_eq!(
        ZmqMessage::from_frames(frames(b"hashblock", &[0; 33], &[0; 4])),
        Err(FrameError::BadHashLength {
            topic: Topic::HashBlock,
            len: 33
        })
    );
    assert_eq!(
        ZmqMessage::from_frames(frames(b"rawblock", &[], &[0; 4])),
        Err(FrameError::EmptyBody {
            topic: Topic::RawBlock
        })
    );
}

// --- Stats -----------------------------------------------------------

#[test]
fn stats_count_each_verdict() {
    let stats = ZmqStats::new();
    assert_eq!(stats.seconds_since_last_message(), None);
    stats.seen(Some(Topic::HashTx), unix_now());
    stats.record(Topic::HashTx, SeqVerdict::First);
    stats.record(Topic::HashTx, SeqVerdict::InOrder);
    stats.record(
        Topic::HashTx,
        SeqVerdict::Gap {
            expected: 3,
            got: 7,
            lost: 4,
        },
    );
    stats.record(Topic::HashTx, SeqVerdict::Reset { last: 7, got: 2 });
    stats.record(Topic::HashTx, SeqVerdict::Duplicate);
    stats.record_malformed(Some(Topic::RawBlock));
    stats.record_malformed(None);
    let s = stats.snapshot();
    assert_eq!(
        (
            s.hashtx.messages,
            s.hashtx.gaps,
            s.hashtx.lost,
            s.hashtx.resets,
            s.hashtx.duplicates
        ),
        (4, 1, 6, 1, 1)
    );
    assert_eq!(s.rawblock.malformed, 1);
    assert_eq!(s.malformed_unknown_topic, 1);
    assert_eq!(s.total_malformed(), 2);
    assert!(s.hashtx.last_message_unix.is_some());
    assert_eq!(s.rawtx, TopicStatsSnapshot::default());
    assert!(stats.seconds_since_last_message().unwrap() <= 1);
}

// --- Subscriptions ---------------------------------------------------

#[test]
fn one_endpoint_for_everything_gives_one_subscription() {
    let e = "tcp://127.0.0.1:28332";
    assert_eq!(
        subscriptions_from_endpoints(Some(e), Some(e), Some(e), Some(e)),
        vec![Subscription {
            endpoint: e.into(),
            topics: vec![Topic::RawTx, Topic::RawBlock, Topic::HashBlock, Topic::HashTx],
        }]
    );
}

#[test]
fn endpoints_are_grouped_and_missing_ones_skipped() {
    let a = "tcp://127.0.0.1:28332";
    let b = "ipc:///run/dogecoind/blocks";
    assert_eq!(
        subscriptions_from_endpoints(Some(a), Some(b), Some(b), None),
        vec![
            Subscription {
                endpoint: a.into(),
                topics: vec![Topic::RawTx]
            },
            Subscription {
                endpoint: b.into(),
                topics: vec![Topic::RawBlock, Topic::HashBlock]
            },
        ]
    );
    assert_eq!(subscriptions_from_endpoints(None, None, None, None), vec![]);
}

#[test]
fn plan_merges_endpoints_and_refuses_a_topic_on_two() {
    let sub = |e: &str, topics: &[Topic]| Subscription {
        endpoint: e.into(),
        topics: topics.to_vec(),
    };
    let merged = plan(vec![
        sub("tcp://a:1", &[Topic::RawTx, Topic::RawTx]),
        sub("tcp://b:1", &[Topic::HashBlock]),
        sub("tcp://a:1", &[Topic::RawBlock, Topic::RawTx]),
    ])
    .unwrap();
    assert_eq!(
        merged,
        vec![
            sub("tcp://a:1", &[Topic::RawTx, Topic::RawBlock]),
            sub("tcp://b:1", &[Topic::HashBlock])
        ]
    );
    assert!(matches!(plan(vec![]), Err(ZmqError::NoSubscriptions)));
    assert!(matches!(
        plan(vec![sub("tcp://a:1", &[])]),
        Err(ZmqError::NoTopics { .. })
    ));
    match plan(vec![
        sub("tcp://a:1", &[Topic::RawTx]),
        sub("tcp://b:1", &[Topic::RawTx]),
    ]) {
        Err(ZmqError::TopicOnTwoEndpoints { topic, first, second }) => {
            assert_eq!(
                (topic, first.as_str(), second.as_str()),
                (Topic::RawTx, "tcp://a:1", "tcp://b:1")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn block_on_waits_for_a_wake_from_another_thread() {
    let notify = Arc::new(Notify::new());
    let n = Arc::clone(&notify);
    let t = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(20));
        n.notify_one();
    });
    block_on(notify.notified());
    t.join().unwrap();
}
