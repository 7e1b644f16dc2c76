//! Sending closes: finalize the latest state (signing it in signer custody),
//! run it through the script interpreter, hand it to the node, and sort the
//! node's answer into a [`BroadcastOutcome`] for the engine.

use bitcoin::Transaction;

use crate::channel::psbt::decode;
use crate::channel::{finalize_close, ChannelTerms, Custody};
use crate::engine::BroadcastOutcome;
use crate::node::{ErrorKind, RpcClient, RpcError};

/// Everything needed to send one channel's close, read from the store by
/// the service before the work leaves its task.
#[derive(Debug, Clone)]
pub struct CloseJob {
    pub key: i64,
    pub channel_id: String,
    pub sequence: u64,
    pub psbt: Vec<u8>,
    pub terms: ChannelTerms,
    pub custody: Custody,
}

/// The finalized close, or why there is none.
pub fn finalize(job: &CloseJob) -> Result<Transaction, String> {
    let decoded =
        decode(&job.psbt).map_err(|e| format!("stored state {} does not decode: {e}", job.sequence))?;
    finalize_close(&decoded.psbt, &job.terms, &job.custody).map_err(|e| e.to_string())
}

/// Finalizes and sends one close.
pub async fn send(rpc: &RpcClient, job: &CloseJob) -> (Option<Transaction>, BroadcastOutcome) {
    let tx = match finalize(job) {
        Ok(tx) => tx,
        Err(reason) => {
            tracing::error!(channel = %job.channel_id, %reason, "cannot finalize the close");
            return (None, BroadcastOutcome::NotFinalized { reason });
        }
    };
    let txid = tx.compute_txid();
    let outcome = match rpc.send_raw_transaction(&tx).await {
        Ok(_) => BroadcastOutcome::Sent { txid },
        Err(e) if e.kind() == ErrorKind::AlreadyInChain => BroadcastOutcome::AlreadyInChain { txid },
        Err(e @ (RpcError::Unreachable(_) | RpcError::WarmingUp(_))) => BroadcastOutcome::NodeUnreachable {
            reason: e.to_string(),
        },
        Err(RpcError::Rpc { kind, message, .. }) => BroadcastOutcome::Rejected { kind, message },
        Err(other) => BroadcastOutcome::NodeUnreachable {
            reason: other.to_string(),
        },
    };
    match &outcome {
        BroadcastOutcome::Sent { .. } | BroadcastOutcome::AlreadyInChain { .. } => {
            tracing::info!(channel = %job.channel_id, %txid, sequence = job.sequence, "close sent")
        }
        other => tracing::warn!(channel = %job.channel_id, %txid, outcome = ?other, "close not taken"),
    }
    (Some(tx), outcome)
}

/// A short label for the broadcasts table and metrics.
pub fn outcome_label(outcome: &BroadcastOutcome) -> String {
    match outcome {
        BroadcastOutcome::Sent { .. } => "sent".into(),
        BroadcastOutcome::AlreadyInChain { .. } => "already_in_chain".into(),
        BroadcastOutcome::Rejected { kind, .. } => format!("rejected:{}", kind.label()),
        BroadcastOutcome::NotFinalized { .. } => "not_finalized".into(),
        BroadcastOutcome::NodeUnreachable { .. } => "unreachable".into(),
    }
}
