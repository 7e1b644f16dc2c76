//! The four notification topics and their names. Self-contained on purpose:
//! nothing here depends on the rest of the subscriber.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The notification topics dogecoind 1.14 publishes (it has no `sequence`
/// topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// 32-byte txid, display (RPC) byte order.
    HashTx,
    /// The whole transaction, legacy serialization.
    RawTx,
    /// 32-byte block hash, display (RPC) byte order.
    HashBlock,
    /// The whole block as on the wire, AuxPoW included.
    RawBlock,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::HashTx, Topic::RawTx, Topic::HashBlock, Topic::RawBlock];

    /// The topic as it appears in the first frame and in dogecoind's
    /// `-zmqpub<topic>` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::HashTx => "hashtx",
            Topic::RawTx => "rawtx",
            Topic::HashBlock => "hashblock",
            Topic::RawBlock => "rawblock",
        }
    }

    /// The topic named by a message's first frame. The match is exact: ZMQ
    /// subscriptions are prefix matches, so a frame such as `rawtxfoo` can
    /// reach a socket subscribed to `rawtx`, and it is not a `rawtx` message.
    pub fn from_frame(frame: &[u8]) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str().as_bytes() == frame)
    }

    /// Whether the body is a 32-byte hash rather than a serialized object.
    pub fn is_hash(self) -> bool {
        matches!(self, Topic::HashTx | Topic::HashBlock)
    }

    /// True for the block topics (`hashblock`, `rawblock`).
    pub fn is_block(self) -> bool {
        matches!(self, Topic::HashBlock | Topic::RawBlock)
    }

    /// A dense index (0..4) for per-topic arrays.
    pub fn index(self) -> usize {
        match self {
            Topic::HashTx => 0,
            Topic::RawTx => 1,
            Topic::HashBlock => 2,
            Topic::RawBlock => 3,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ZMQ topic {0:?} (expected hashtx, rawtx, hashblock or rawblock)")]
pub struct UnknownTopic(pub String);

impl FromStr for Topic {
    type Err = UnknownTopic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::from_frame(s.as_bytes()).ok_or_else(|| UnknownTopic(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_through_their_names() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_frame(topic.as_str().as_bytes()), Some(topic));
            assert_eq!(topic.as_str().parse::<Topic>(), Ok(topic));
            assert_eq!(topic.to_string(), topic.as_str());
            assert_eq!(Topic::ALL[topic.index()], topic);
        }
        assert!("sequence".parse::<Topic>().is_err());
    }
}
