//! The running tower around the engine.
//!
//! - The writer ([`writer`]) owns the engine and the store on its own OS
//!   thread: for every input the engine's actions are written in one store
//!   transaction together with the input's own change, and only after the
//!   commit does anything leave the process. It never waits for the network.
//! - [`ServiceHandle`] is the front door the API uses: it does the I/O a
//!   rule needs before a command reaches the writer (decoding a registration
//!   and asking the node about its funding), then waits for the writer's
//!   answer.
//! - [`run`] wires the node, the follower and the writer together.

pub mod broadcaster;
pub mod channel_keys;
pub(crate) mod persist;
pub mod read_only;
mod standby;
pub mod view;
mod writer;
pub(crate) use writer::write_refusal;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::OutPoint;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::chain::headers::HeaderRecord;
use crate::chain::{ChainEvent, Network};
use crate::channel::psbt::{decode_base64, DecodedPsbt};
use crate::channel::MerchantSigner;
use crate::config::Config;
use crate::engine::{ChannelState, EngineSettings, FundingLookup, WatchFilter};
pub use crate::error::{ErrorCode, Refusal};
use crate::follower::{spawn_zmq_hints, Follower, FollowerSettings, FollowerStatus, StartPoint};
use crate::ha::{HaState, Role};
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::node::RpcClient;
pub use crate::status::ServiceStatus;
use crate::store::{CustodyMode, Store, StoreError};
pub use view::ChannelView;
use writer::{BroadcastDone, PaymentChecked, Writer};

/// The answer to a payment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PaymentReply {
    pub channel: ChannelView,
    pub sequence: u64,
    pub merchant_amount: u64,
    /// How a new state was taken (its receipt is signed from this); `None`
    /// for a repeat, whose receipt is read from the store.
    #[serde(skip)]
    pub acceptance: Option<crate::receipt::Acceptance>,
}

/// A registration as the API received it.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    pub psbt: String,
    pub payout_address: Option<String>,
    /// The key the merchant handed the payer for this channel, when given.
    pub merchant_pubkey: Option<String>,
}

/// A page of channels and the key of its last channel (the next cursor).
pub type ChannelPage = (Vec<ChannelView>, Option<i64>);

/// What the API asks of the writer.
#[derive(Debug)]
pub enum Command {
    Register {
        merchant_id: i64,
        psbt: Box<DecodedPsbt>,
        payout_address: Option<String>,
        merchant_pubkey: Option<String>,
        /// What the node said about each funding outpoint.
        funding: Vec<(OutPoint, FundingLookup)>,
        /// The channel, and whether it was created (false: an identical repeat).
        reply: oneshot::Sender<Result<(ChannelView, bool), Refusal>>,
    },
    Pay {
        merchant_id: i64,
        channel: String,
        psbt: String,
        reply: oneshot::Sender<Result<PaymentReply, Refusal>>,
    },
    Close {
        merchant_id: i64,
        channel: String,
        reply: oneshot::Sender<Result<ChannelView, Refusal>>,
    },
    Get {
        merchant_id: i64,
        channel: String,
        reply: oneshot::Sender<Result<ChannelView, Refusal>>,
    },
    List {
        merchant_id: i64,
        state: Option<ChannelState>,
        /// The page cursor: the last key of the previous page.
        after: Option<i64>,
        limit: usize,
        reply: oneshot::Sender<Result<ChannelPage, Refusal>>,
    },
}

/// Everything the writer reacts to, in one queue.
#[derive(Debug)]
enum WriterInput {
    /// Headers the follower recorded below its starting point on a first start.
    Anchor(Vec<HeaderRecord>),
    Chain(ChainEvent),
    Command(Command),
    /// A payment checked off the writer's thread (see [`Command::Pay`]).
    PaymentChecked(Box<PaymentChecked>),
    BroadcastDone(BroadcastDone),
    /// A close not sent after all: the lease was not confirmed (see `ha`).
    BroadcastSkipped(i64),
    Follower(FollowerStatus),
    /// Time to write what a store outage held back (`writer::outage`).
    RetryStore,
    Stop,
}

/// How often a writer whose store takes no writes tries again (seconds);
/// also the `Retry-After` of a `store_unavailable` answer.
pub const STORE_RETRY_SECS: u64 = 2;

/// The handles to a running service.
#[derive(Clone)]
pub struct ServiceHandle {
    inputs: mpsc::Sender<WriterInput>,
    rpc: RpcClient,
    pub status: watch::Receiver<ServiceStatus>,
    pub zmq_stats: Arc<ZmqStats>,
    pub metrics: Arc<Metrics>,
    /// The engine's pre-filter of mempool transactions (shared with the
    /// follower's hint task).
    pub watch_filter: Arc<WatchFilter>,
    /// Why the tower stopped processing for good, if it did (a reorg deeper
    /// than the kept headers, say): `/readyz` says so.
    pub halted: Arc<std::sync::OnceLock<String>>,
}

impl ServiceHandle {
    /// Sends a command to the writer and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Refusal> {
        let (tx, rx) = oneshot::channel();
        let unavailable = || Refusal::new(ErrorCode::Unavailable, "the tower is not running");
        self.inputs
            .send(WriterInput::Command(make(tx)))
            .await
            .map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())
    }

    /// Registers a channel: decodes the announcement and asks the node where
    /// its funding stands here, so the writer never waits for the node.
    pub async fn register(
        &self,
        merchant_id: i64,
        request: RegisterRequest,
    ) -> Result<(ChannelView, bool), Refusal> {
        let psbt = decode_base64(&request.psbt)?;
        self.watch_ahead(&psbt);
        let funding = self.funding_lookups(&psbt).await;
        self.ask(|reply| Command::Register {
            merchant_id,
            psbt: Box::new(psbt),
            payout_address: request.payout_address,
            merchant_pubkey: request.merchant_pubkey,
            funding,
            reply,
        })
        .await?
    }

    /// Lets through the watch filter, from now on, the transactions that
    /// could concern this channel if it is registered: its funding
    /// transactions, spends of their outputs and of their inputs. Without
    /// this, one announced between the `gettxout` below and the engine
    /// taking the registration would be filtered out, though the engine
    /// would have matched it when it got there. A refused registration
    /// leaves false positives, which the filter allows.
    fn watch_ahead(&self, psbt: &DecodedPsbt) {
        let outpoints: Vec<OutPoint> = psbt
            .psbt
            .unsigned_tx
            .input
            .iter()
            .map(|i| i.previous_output)
            .chain(
                psbt.psbt
                    .inputs
                    .iter()
                    .filter_map(|i| i.non_witness_utxo.as_ref())
                    .flat_map(|tx| tx.input.iter().map(|i| i.previous_output)),
            )
            .collect();
        let txids: Vec<bitcoin::Txid> = psbt
            .psbt
            .unsigned_tx
            .input
            .iter()
            .map(|i| i.previous_output.txid)
            .collect();
        self.watch_filter.add(&outpoints, &txids);
    }

    /// `gettxout` for every outpoint the announcement spends. A node that
    /// does not answer leaves the funding unseen; ZMQ and the blocks tell
    /// the engine later.
    async fn funding_lookups(&self, psbt: &DecodedPsbt) -> Vec<(OutPoint, FundingLookup)> {
        let mut lookups = Vec::new();
        for input in &psbt.psbt.unsigned_tx.input {
            let outpoint = input.previous_output;
            let lookup = match self.rpc.get_tx_out(&outpoint.txid, outpoint.vout, true).await {
                Ok(Some(out)) if out.confirmations > 0 => FundingLookup::Confirmed {
                    confirmations: out.confirmations,
                },
                Ok(Some(_)) => FundingLookup::Mempool,
                Ok(None) => FundingLookup::Unknown,
                Err(e) => {
                    tracing::warn!(error = %e, "gettxout failed; funding starts as unseen");
                    FundingLookup::Unknown
                }
            };
            lookups.push((outpoint, lookup));
        }
        lookups
    }
}

/// Loads every signer merchant's xprv: a key file that others can read, or
/// that does not decode, stops the tower before it starts.
pub fn load_signers(store: &Store, network: Network) -> anyhow::Result<HashMap<i64, MerchantSigner>> {
    let mut signers = HashMap::new();
    for merchant in store.merchants()? {
        if merchant.custody != CustodyMode::Signer {
            continue;
        }
        let Some(path) = &merchant.xprv_file else {
            anyhow::bail!("merchant {} has signer custody but no xprv file", merchant.name);
        };
        let signer = crate::key_file::load_signer(std::path::Path::new(path), network)
            .map_err(|e| anyhow::anyhow!("merchant {}: {e}", merchant.name))?;
        signers.insert(merchant.id, signer);
    }
    Ok(signers)
}

/// The key of signer merchant `merchant`, read from its xprv file now; a
/// file that cannot be used answers `signer_unavailable`, naming the merchant.
pub(crate) fn merchant_signer(
    merchant: &crate::store::Merchant,
    network: Network,
) -> Result<MerchantSigner, Refusal> {
    let path = merchant.xprv_file.as_deref().unwrap_or_default();
    crate::key_file::load_signer(std::path::Path::new(path), network).map_err(|e| {
        Refusal::new(
            ErrorCode::SignerUnavailable,
            format!("merchant {}: {e}", merchant.name),
        )
    })
}

pub(crate) fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        network: config.network,
        funding_confirmations: config.policy.funding_confirmations,
        close_confirmations: config.policy.close_confirmations,
        deadline_warning_blocks: config.policy.deadline_warning_blocks,
        channel: config.policy.channel_policy(config.network),
    }
}

/// The RPC client the tower uses, with every call observed by the metrics.
pub fn rpc_client(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<RpcClient> {
    let observer = metrics.clone();
    Ok(RpcClient::with_observer(
        &config.node.rpc_settings(),
        Some(Box::new(move |method, took, error| {
            observer.observe_rpc(method, took, error)
        })),
    )?)
}

/// The parts of a service before it runs: the handle for the API, and what
/// [`run`] needs.
pub struct Prepared {
    pub handle: ServiceHandle,
    inputs: mpsc::Receiver<WriterInput>,
    status: watch::Sender<ServiceStatus>,
}

/// Creates the service's channels; [`run`] then starts it.
pub fn prepare(rpc: RpcClient, zmq_stats: Arc<ZmqStats>, metrics: Arc<Metrics>) -> Prepared {
    let (inputs_tx, inputs) = mpsc::channel(1024);
    let (status, status_rx) = watch::channel(ServiceStatus::default());
    Prepared {
        handle: ServiceHandle {
            inputs: inputs_tx,
            rpc,
            status: status_rx,
            zmq_stats,
            metrics,
            watch_filter: Arc::default(),
            halted: Arc::default(),
        },
        inputs,
        status,
    }
}

/// Runs the tower: the writer on its own thread, the follower feeding it.
/// A standby of a high-availability group waits to become the leader
/// first (`standby`). Returns when `shutdown` turns true, or with the
/// writer's error.
pub async fn run(
    config: Arc<Config>,
    prepared: Prepared,
    ha: Arc<HaState>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Prepared {
        handle,
        inputs,
        status,
    } = prepared;
    let mut warm = None;
    if ha.role() != Role::Leader {
        match standby::until_leader(&config, &handle.rpc, &status, &ha, &mut shutdown).await? {
            Some(kept) => warm = kept,
            None => return Ok(()),
        }
    }
    let (opened_tx, opened) = oneshot::channel();
    let writer_config = config.clone();
    let writer_handle = handle.clone();
    let writer_ha = ha.clone();
    let runtime = tokio::runtime::Handle::current();
    let writer = std::thread::Builder::new()
        .name("dogetower-writer".into())
        .spawn(move || -> anyhow::Result<()> {
            let (mut writer, headers) =
                match Writer::open(&writer_config, &writer_handle, status, runtime, writer_ha, warm) {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = opened_tx.send(None);
                        return Err(e);
                    }
                };
            let _ = opened_tx.send(Some(headers));
            writer.run(inputs)
        })?;
    let writer_done = async move {
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(anyhow::Error::from)?
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?
    };
    let mut writer_done = std::pin::pin!(writer_done);
    let Ok(Some(headers)) = opened.await else {
        return writer_done.await;
    };

    let mut follower = Follower::new(
        handle.rpc.clone(),
        headers,
        FollowerSettings {
            start: config
                .node
                .start_height
                .map_or(StartPoint::Tip, StartPoint::Height),
            poll_interval: Duration::from_secs(config.node.poll_interval_secs),
            ..FollowerSettings::default()
        },
    )
    .with_watch_filter(handle.watch_filter.clone());
    let inputs = handle.inputs.clone();
    let stop_writer = || async {
        let _ = inputs.send(WriterInput::Stop).await;
    };
    // The node may be down at start: keep trying, the deadline math waits for it.
    loop {
        match follower.ensure_anchored().await {
            Ok(Some(base)) => {
                let _ = inputs.send(WriterInput::Anchor(base)).await;
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node's chain yet; retrying");
                let down = FollowerStatus {
                    node_reachable: false,
                    ..*follower.status().borrow()
                };
                let _ = inputs.send(WriterInput::Follower(down)).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.changed() => {
                        stop_writer().await;
                        return writer_done.await;
                    }
                    outcome = &mut writer_done => return outcome,
                }
            }
        }
    }
    let mut follower_status = follower.status();
    let (hints, zmq) = spawn_zmq_hints(
        config.node.zmq_rawtx.as_deref(),
        config.node.zmq_rawblock.as_deref(),
        config.node.zmq_hashblock.as_deref(),
        handle.zmq_stats.clone(),
        Some(handle.watch_filter.clone()),
    )?;
    let (events_tx, mut events) = mpsc::channel(1024);
    let mut follower_task = tokio::spawn(follower.run(hints, events_tx, shutdown.clone()));
    // The follower's status reaches the writer from its first change on:
    // before that, it is the default one, whose node_reachable = false was
    // never observed (forwarding it made every start report node.down,
    // then node.up; found by the crash storm, tests/it/crash_storm.rs).
    let forward_inputs = inputs.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            let input = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => WriterInput::Chain(event),
                    None => break,
                },
                changed = follower_status.changed() => {
                    if changed.is_err() { break; }
                    let now = *follower_status.borrow_and_update();
                    WriterInput::Follower(now)
                }
            };
            if forward_inputs.send(input).await.is_err() {
                break;
            }
        }
    });

    let outcome = tokio::select! {
        // A stopped writer also ends the follower (its consumer is gone):
        // the writer's outcome is the one that tells why.
        biased;
        outcome = &mut writer_done => outcome,
        () = stopped(&mut shutdown) => {
            stop_writer().await;
            writer_done.await
        }
        followed = &mut follower_task => {
            let why = match followed {
                Ok(Ok(())) => None, // it saw the shutdown first
                Ok(Err(error)) => Some((error.label(), error.to_string())),
                Err(panic) => Some(("follower_panicked", panic.to_string())),
            };
            if let Some((label, message)) = why {
                // The tower cannot tell what the chain is: it stops rather
                // than guess, and says so (metric, alert, /readyz) until an
                // operator acts. API, metrics and the process stay up.
                tracing::error!(reason = label, error = %message, "the tower cannot follow the chain and stops processing; an operator must act");
                handle.metrics.halted(label);
                let _ = handle.halted.set(format!("{label}: {message}"));
            }
            stop_writer().await;
            let outcome = writer_done.await;
            stopped(&mut shutdown).await;
            outcome
        }
    };
    follower_task.abort();
    forwarder.abort();
    if let Err(error) = &outcome {
        let fenced = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<StoreError>(),
                Some(StoreError::Fenced { .. })
            )
        });
        if fenced {
            ha.lost("a write found the lease lost");
        }
    }
    if let Some(zmq) = zmq {
        tokio::task::spawn_blocking(move || zmq.shutdown()).await??;
    }
    outcome
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
