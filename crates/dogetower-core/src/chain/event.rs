//! What the chain follower reports, as the engine's input.

use std::sync::Arc;

use bitcoin::{Transaction, Txid};

use super::block::DogeBlock;
use super::headers::HeaderRecord;

/// What happened on the chain, in the order the tower must process it.
#[derive(Debug, Clone)]
pub enum ChainEvent {
    BlockConnected {
        header: HeaderRecord,
        block: Arc<DogeBlock>,
    },
    BlockDisconnected {
        header: HeaderRecord,
    },
    MempoolTx {
        txid: Txid,
        tx: Arc<Transaction>,
    },
}

impl ChainEvent {
    /// A one-line description for logs and the `chain follow` tool.
    pub fn describe(&self) -> String {
        match self {
            ChainEvent::BlockConnected { header, block } => format!(
                "connected {} {} ({} txs)",
                header.height,
                header.hash,
                block.txdata.len()
            ),
            ChainEvent::BlockDisconnected { header } => {
                format!("disconnected {} {}", header.height, header.hash)
            }
            ChainEvent::MempoolTx { txid, .. } => format!("mempool {txid}"),
        }
    }
}
