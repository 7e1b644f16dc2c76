//! Where the follower reads the chain: the node over RPC, or a scripted
//! chain in tests.

use std::future::Future;

use bitcoin::{BlockHash, Transaction, Txid};

use crate::chain::block::DogeBlock;
use crate::node::rpc::{HeaderInfo, RpcClient, RpcError};

/// Where the chain comes from: the node over RPC, or a scripted chain in tests.
pub trait ChainSource: Send + Sync {
    fn best_block_hash(&self) -> impl Future<Output = Result<BlockHash, RpcError>> + Send;
    fn header(&self, hash: &BlockHash) -> impl Future<Output = Result<HeaderInfo, RpcError>> + Send;
    fn headers(&self, hashes: &[BlockHash])
        -> impl Future<Output = Result<Vec<HeaderInfo>, RpcError>> + Send;
    /// Active-chain hashes at `heights` (an error if any height is beyond the tip).
    fn block_hashes(&self, heights: &[u32]) -> impl Future<Output = Result<Vec<BlockHash>, RpcError>> + Send;
    fn blocks(&self, hashes: &[BlockHash]) -> impl Future<Output = Result<Vec<DogeBlock>, RpcError>> + Send;
    fn mempool_txids(&self) -> impl Future<Output = Result<Vec<Txid>, RpcError>> + Send;
    /// The transactions, each `None` when it is no longer known to the node.
    fn transactions(
        &self,
        txids: &[Txid],
    ) -> impl Future<Output = Result<Vec<Option<Transaction>>, RpcError>> + Send;
    /// Which of `txids` are in the mempool right now.
    fn in_mempool(&self, txids: &[Txid]) -> impl Future<Output = Result<Vec<bool>, RpcError>> + Send;
}

impl ChainSource for RpcClient {
    async fn best_block_hash(&self) -> Result<BlockHash, RpcError> {
        self.get_best_block_hash().await
    }
    async fn header(&self, hash: &BlockHash) -> Result<HeaderInfo, RpcError> {
        self.get_block_header(hash).await
    }
    async fn headers(&self, hashes: &[BlockHash]) -> Result<Vec<HeaderInfo>, RpcError> {
        self.get_block_headers(hashes).await
    }
    async fn block_hashes(&self, heights: &[u32]) -> Result<Vec<BlockHash>, RpcError> {
        self.get_block_hashes(heights).await
    }
    async fn blocks(&self, hashes: &[BlockHash]) -> Result<Vec<DogeBlock>, RpcError> {
        self.get_blocks(hashes).await
    }
    async fn mempool_txids(&self) -> Result<Vec<Txid>, RpcError> {
        self.get_raw_mempool().await
    }
    async fn transactions(&self, txids: &[Txid]) -> Result<Vec<Option<Transaction>>, RpcError> {
        let answers = self.get_raw_transactions(txids).await?;
        answers
            .into_iter()
            .map(|a| match a {
                Ok(tx) => Ok(Some(tx)),
                Err(e) if e.kind() == crate::node::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            })
            .collect()
    }
    async fn in_mempool(&self, txids: &[Txid]) -> Result<Vec<bool>, RpcError> {
        self.mempool_presence(txids).await
    }
}
