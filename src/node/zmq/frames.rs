//! One multipart message from dogecoind, checked and parsed: topic, body and
//! the per-topic counter.

use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, Txid};

use super::Topic;

/// One well-formed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZmqMessage {
    pub topic: Topic,
    /// Exactly the second frame.
    pub body: Vec<u8>,
    /// The publisher's per-topic counter (third frame, little-endian).
    pub seq: u32,
}

impl ZmqMessage {
    /// Parses the frames of one multipart message.
    pub fn from_frames(frames: Vec<Vec<u8>>) -> Result<ZmqMessage, FrameError> {
        let count = frames.len();
        parse_frames(frames, count)
    }

    /// The block hash of a `hashblock` message (`None` for other topics).
    /// The body is in display order, the reverse of the internal one.
    pub fn block_hash(&self) -> Option<BlockHash> {
        match self.topic {
            Topic::HashBlock => reversed_hash(&self.body).map(BlockHash::from_byte_array),
            _ => None,
        }
    }

    /// The txid of a `hashtx` message (`None` for other topics).
    pub fn txid(&self) -> Option<Txid> {
        match self.topic {
            Topic::HashTx => reversed_hash(&self.body).map(Txid::from_byte_array),
            _ => None,
        }
    }
}

fn reversed_hash(body: &[u8]) -> Option<[u8; 32]> {
    let mut bytes: [u8; 32] = body.try_into().ok()?;
    bytes.reverse();
    Some(bytes)
}

/// Why a message was not a well-formed notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("expected 3 frames (topic, body, sequence), got {frames}")]
    WrongFrameCount { topic: Option<Topic>, frames: usize },
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },
    #[error("{topic}: the sequence frame has {len} bytes, expected 4")]
    BadSequenceLength { topic: Topic, len: usize },
    #[error("{topic}: the body has {len} bytes, expected a 32-byte hash")]
    BadHashLength { topic: Topic, len: usize },
    #[error("{topic}: empty body")]
    EmptyBody { topic: Topic },
}

impl FrameError {
    /// The topic the bad message claimed, when it named a known one (for the
    /// per-topic malformed counter).
    pub fn topic(&self) -> Option<Topic> {
        match self {
            FrameError::WrongFrameCount { topic, .. } => *topic,
            FrameError::UnknownTopic { .. } => None,
            FrameError::BadSequenceLength { topic, .. }
            | FrameError::BadHashLength { topic, .. }
            | FrameError::EmptyBody { topic } => Some(*topic),
        }
    }
}

/// Parses a message whose first (at most three) frames are in `frames` and
/// that had `total_frames` frames in all: the receive loop keeps no more than
/// three, so a sender cannot make us hold an unbounded list.
pub(super) fn parse_frames(frames: Vec<Vec<u8>>, total_frames: usize) -> Result<ZmqMessage, FrameError> {
    let frame = |i: usize| frames.get(i).map(Vec::as_slice);
    parse_parts([frame(0), frame(1), frame(2)], total_frames)
}

/// [`parse_frames`] on borrowed frames (`None` where the message had fewer
/// than three): the receive loop reads into reused buffers, and only the
/// body of a well-formed message is copied.
pub(super) fn parse_parts(parts: [Option<&[u8]>; 3], total_frames: usize) -> Result<ZmqMessage, FrameError> {
    let claimed = parts[0].and_then(Topic::from_frame);
    let (topic, body, seq) = match parts {
        [Some(topic), Some(body), Some(seq)] if total_frames == 3 => (topic, body, seq),
        _ => {
            return Err(FrameError::WrongFrameCount {
                topic: claimed,
                frames: total_frames,
            })
        }
    };
    let topic = claimed.ok_or_else(|| FrameError::UnknownTopic {
        topic: printable(topic),
    })?;
    let seq: [u8; 4] = seq.try_into().map_err(|_| FrameError::BadSequenceLength {
        topic,
        len: seq.len(),
    })?;
    if topic.is_hash() && body.len() != 32 {
        return Err(FrameError::BadHashLength {
            topic,
            len: body.len(),
        });
    }
    if body.is_empty() {
        return Err(FrameError::EmptyBody { topic });
    }
    Ok(ZmqMessage {
        topic,
        body: body.to_vec(),
        seq: u32::from_le_bytes(seq),
    })
}

/// A topic frame for a log line: as text when it is short printable ASCII,
/// otherwise as (truncated) hex, so a garbage frame cannot garble the logs.
fn printable(frame: &[u8]) -> String {
    const MAX: usize = 32;
    if frame.len() <= MAX && frame.iter().all(|b| b.is_ascii_graphic()) {
        format!("{:?}", String::from_utf8_lossy(frame))
    } else if frame.len() <= MAX {
        format!("0x{}", hex::encode(frame))
    } else {
        format!("0x{}… ({} bytes)", hex::encode(&frame[..MAX]), frame.len())
    }
}
