//! Prometheus metrics, updated as things happen: by the service after each
//! input, by the RPC client after each call, by the API per request. A
//! scrape reads these values and the ZMQ counters in memory; it never asks
//! the node or scans the store. Labels are bounded (states, topics, methods,
//! result kinds, route templates): never a channel or merchant id.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::engine::{Action, ChannelState, ChannelSummary, EventData, EventKind};
use crate::node::zmq::{Topic, ZmqStats, ZmqStatsSnapshot};
use crate::status::ServiceStatus;

/// Deadline windows reported by `dogetower_deadline_channels` and `_value_koinu`.
const WINDOWS: [(&str, u64); 3] = [("1h", 3_600), ("6h", 21_600), ("24h", 86_400)];

pub struct Metrics {
    registry: Registry,
    node_height: IntGauge,
    processed_height: IntGauge,
    node_up: IntGauge,
    caught_up: IntGauge,
    last_block_timestamp: IntGauge,
    seconds_since_last_block: Gauge,
    zmq_messages: IntCounterVec,
    zmq_gaps: IntCounterVec,
    zmq_lost: IntCounterVec,
    zmq_resets: IntCounterVec,
    zmq_silence: Gauge,
    zmq_queued: IntGauge,
    rpc_duration: HistogramVec,
    rpc_errors: IntCounterVec,
    channels: IntGaugeVec,
    value_locked: IntGauge,
    deadline_channels: IntGaugeVec,
    deadline_value: IntGaugeVec,
    blocks_until_broadcast: IntGauge,
    broadcasts: IntCounterVec,
    closes_confirmed: IntCounter,
    double_spends: IntCounter,
    reorgs: IntCounter,
    reorg_depth: Histogram,
    commit_group: Histogram,
    events: IntCounterVec,
    api_requests: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    outbox_depth: IntGauge,
    zmq_configured: IntGauge,
    store_writable: IntGauge,
    halted: IntGaugeVec,
    ha_leader: IntGauge,
    ha_epoch: IntGauge,
    ha_failovers: IntCounter,
    ha_lease_expires: IntGauge,
    last_block: Mutex<Option<Instant>>,
    zmq_seen: Mutex<ZmqStatsSnapshot>,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("registered once");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("registered once");
    c
}

fn float_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Metrics {
    pub fn new(network: &str) -> Metrics {
        let r = Registry::new();
        let build = gauge_vec(
            &r,
            "dogetower_build_info",
            "Version and network of this tower (always 1).",
            &["version", "network"],
        );
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), network])
            .set(1);
        let rpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "dogetower_rpc_duration_seconds",
                "Latency of JSON-RPC calls to the node, per method.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method"],
        )
        .expect("valid metric");
        r.register(Box::new(rpc_duration.clone()))
            .expect("registered once");
        let reorg_depth = Histogram::with_opts(
            HistogramOpts::new(
                "dogetower_reorg_depth_blocks",
                "Depth of each chain reorganisation seen.",
            )
            .buckets(vec![1.0, 2.0, 3.0, 6.0, 10.0, 20.0, 50.0, 100.0]),
        )
        .expect("valid metric");
        r.register(Box::new(reorg_depth.clone()))
            .expect("registered once");
        let commit_group = Histogram::with_opts(
            HistogramOpts::new(
                "dogetower_commit_group_size",
                "Payments and registrations made durable by each group commit (one fsync).",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        r.register(Box::new(commit_group.clone()))
            .expect("registered once");
        let zmq_seen = Mutex::new(ZmqStatsSnapshot::default());
        let started = gauge(
            &r,
            "dogetower_start_time_seconds",
            "Unix time at which this tower process started (for alerts on values that have no first sample yet after a restart).",
        );
        started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        Metrics {
            halted: gauge_vec(
                &r,
                "dogetower_halted",
                "1 when the tower stopped processing for good until an operator acts, by reason (reorg_too_deep, inconsistent_chain, ...); 0 while it runs.",
                &["reason"],
            ),
            store_writable: gauge(
                &r,
                "dogetower_store_writable",
                "1 while the store takes writes; 0 while it does not (a full disk, PostgreSQL unreachable): the tower then refuses changes with store_unavailable but keeps following the chain and sending closes.",
            ),
            zmq_configured: gauge(
                &r,
                "dogetower_zmq_configured",
                "1 when ZMQ endpoints are configured, else 0 (the tower then follows by RPC polling alone).",
            ),
            ha_leader: gauge(
                &r,
                "dogetower_ha_leader",
                "1 while this tower is the leader (always 1 on SQLite, where a tower is alone), else 0.",
            ),
            ha_epoch: gauge(
                &r,
                "dogetower_ha_lease_epoch",
                "Epoch of the leader lease as this tower last read it (0 on SQLite).",
            ),
            ha_failovers: counter(
                &r,
                "dogetower_ha_failovers_total",
                "Times this tower took over the leader lease from another tower.",
            ),
            ha_lease_expires: gauge(
                &r,
                "dogetower_ha_lease_expires_timestamp_seconds",
                "Unix time at which the leader lease expires, whoever holds it, as this tower last read it (0: none read).",
            ),
            node_height: gauge(
                &r,
                "dogetower_node_height",
                "Height of the node's tip at the last look.",
            ),
            processed_height: gauge(
                &r,
                "dogetower_processed_height",
                "Height of the last block the tower processed.",
            ),
            node_up: gauge(
                &r,
                "dogetower_node_up",
                "1 when the node answered the last RPC call, else 0.",
            ),
            caught_up: gauge(
                &r,
                "dogetower_caught_up",
                "1 when the processed tip is the node's tip.",
            ),
            last_block_timestamp: gauge(
                &r,
                "dogetower_last_block_processed_timestamp_seconds",
                "Unix time at which the tower last processed a new block.",
            ),
            seconds_since_last_block: float_gauge(
                &r,
                "dogetower_seconds_since_last_block",
                "Seconds since the tower last processed a new block.",
            ),
            zmq_messages: counter_vec(
                &r,
                "dogetower_zmq_messages_total",
                "ZMQ messages received, per topic.",
                &["topic"],
            ),
            zmq_gaps: counter_vec(
                &r,
                "dogetower_zmq_gaps_total",
                "Sequence gaps detected, per topic.",
                &["topic"],
            ),
            zmq_lost: counter_vec(
                &r,
                "dogetower_zmq_lost_messages_total",
                "ZMQ messages known lost, per topic.",
                &["topic"],
            ),
            zmq_resets: counter_vec(
                &r,
                "dogetower_zmq_resets_total",
                "Counter resets (node restarts), per topic.",
                &["topic"],
            ),
            zmq_silence: float_gauge(
                &r,
                "dogetower_zmq_seconds_since_last_message",
                "Seconds since the last ZMQ message of any topic (-1: none yet).",
            ),
            zmq_queued: gauge(
                &r,
                "dogetower_zmq_queued_events",
                "ZMQ events received and not yet taken by the follower's decoder (the subscriber's hand-off).",
            ),
            rpc_duration,
            rpc_errors: counter_vec(
                &r,
                "dogetower_rpc_errors_total",
                "Failed RPC calls, per error kind.",
                &["kind"],
            ),
            channels: gauge_vec(
                &r,
                "dogetower_channels",
                "Channels tracked, per state.",
                &["state"],
            ),
            value_locked: gauge(
                &r,
                "dogetower_value_locked_koinu",
                "Koinu locked in live and closing channels.",
            ),
            deadline_channels: gauge_vec(
                &r,
                "dogetower_deadline_channels",
                "Live channels with a payment whose deadline is within the window.",
                &["within"],
            ),
            deadline_value: gauge_vec(
                &r,
                "dogetower_deadline_value_koinu",
                "Merchant koinu in live channels whose deadline is within the window.",
                &["within"],
            ),
            blocks_until_broadcast: gauge(
                &r,
                "dogetower_blocks_until_next_broadcast",
                "Blocks until the nearest broadcast height of a live channel with a payment (-1: none).",
            ),
            broadcasts: counter_vec(
                &r,
                "dogetower_broadcasts_total",
                "Close broadcasts, per result.",
                &["result"],
            ),
            closes_confirmed: counter(
                &r,
                "dogetower_closes_confirmed_total",
                "Closes confirmed at the configured depth.",
            ),
            double_spends: counter(
                &r,
                "dogetower_double_spends_total",
                "Funding double spends detected.",
            ),
            reorgs: counter(&r, "dogetower_reorgs_total", "Chain reorganisations processed."),
            reorg_depth,
            commit_group,
            events: counter_vec(
                &r,
                "dogetower_events_total",
                "Events written to the outbox, per type.",
                &["type"],
            ),
            api_requests: counter_vec(
                &r,
                "dogetower_api_requests_total",
                "API requests, per route template and status.",
                &["route", "status"],
            ),
            webhook_deliveries: counter_vec(
                &r,
                "dogetower_webhook_deliveries_total",
                "Webhook delivery attempts, per result (delivered, failed, given_up).",
                &["result"],
            ),
            outbox_depth: gauge(
                &r,
                "dogetower_outbox_pending_events",
                "Events waiting for delivery, summed over the webhook endpoints.",
            ),
            last_block: Mutex::new(None),
            zmq_seen,
            registry: r,
        }
        .with_known_labels()
    }

    /// Known label values start at 0, so a fresh tower shows zeros, not "no data".
    fn with_known_labels(self) -> Metrics {
        for result in ["sent", "already_in_chain", "unreachable", "not_finalized"] {
            self.broadcasts.with_label_values(&[result]);
        }
        for result in ["delivered", "failed", "given_up"] {
            self.webhook_deliveries.with_label_values(&[result]);
        }
        for kind in EventKind::ALL {
            self.events.with_label_values(&[kind.as_str()]);
        }
        for kind in [
            "unreachable",
            "unauthorized",
            "warming_up",
            "method_not_found",
            "bad_answer",
        ] {
            self.rpc_errors.with_label_values(&[kind]);
        }
        for state in ChannelState::ALL {
            self.channels.with_label_values(&[state.as_str()]);
        }
        for (window, _) in WINDOWS {
            self.deadline_channels.with_label_values(&[window]);
            self.deadline_value.with_label_values(&[window]);
        }
        self.blocks_until_broadcast.set(-1);
        self
    }

    /// For the RPC client's observer.
    pub fn observe_rpc(&self, method: &str, took: Duration, error: Option<&'static str>) {
        // The method set is the client's own, so the label stays bounded.
        self.rpc_duration
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
        if let Some(kind) = error {
            self.rpc_errors.with_label_values(&[kind]).inc();
        }
    }

    /// Starts the `dogetower_halted` series of every reason at 0.
    pub fn halt_reasons(&self, reasons: &[&str]) {
        for reason in reasons {
            self.halted.with_label_values(&[reason]).set(0);
        }
    }

    /// The tower stopped processing for `reason` (see `dogetower_halted`).
    pub fn halted(&self, reason: &str) {
        self.halted.with_label_values(&[reason]).set(1);
    }

    /// Starts `route`'s series with `status` at zero, so a fresh tower's
    /// request panels and rates show 0 rather than "No data".
    pub fn api_route(&self, route: &str, status: u16) {
        self.api_requests.with_label_values(&[route, &status.to_string()]);
    }

    pub fn api_request(&self, route: &str, status: u16) {
        self.api_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    pub fn webhook_delivery(&self, result: &str) {
        self.webhook_deliveries.with_label_values(&[result]).inc();
    }

    /// One group commit of `answers` payments and registrations.
    pub fn group_committed(&self, answers: usize) {
        self.commit_group.observe(answers as f64);
    }

    /// The lease as this tower last saw it (see `crate::ha`).
    pub fn ha_lease(&self, leader: bool, epoch: i64, expires_at_ms: i64) {
        self.ha_leader.set(i64::from(leader));
        self.ha_epoch.set(epoch);
        self.ha_lease_expires.set(expires_at_ms / 1000);
    }

    pub fn ha_failover(&self) {
        self.ha_failovers.inc();
    }

    pub fn outbox_depth(&self, pending: i64) {
        self.outbox_depth.set(pending);
    }

    pub fn broadcast(&self, result: &str) {
        // `rejected:<kind>` keeps the label set to the node's error kinds.
        self.broadcasts.with_label_values(&[result]).inc();
    }

    pub fn block_processed(&self) {
        if let Ok(mut last) = self.last_block.lock() {
            *last = Some(Instant::now());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.last_block_timestamp.set(now);
    }

    /// Counts what the engine's actions say happened.
    pub fn actions(&self, actions: &[Action]) {
        for action in actions {
            if let Action::Emit(event) = action {
                self.events.with_label_values(&[event.kind.as_str()]).inc();
                match &event.data {
                    EventData::CloseConfirmed { .. } => self.closes_confirmed.inc(),
                    EventData::FundingDoubleSpent { .. } => self.double_spends.inc(),
                    EventData::ChainReorg { depth, .. } => {
                        self.reorgs.inc();
                        self.reorg_depth.observe(*depth as f64);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The deadline windows, in seconds, the summary must count.
    pub fn deadline_windows() -> Vec<u64> {
        WINDOWS.iter().map(|(_, secs)| *secs).collect()
    }

    /// Channel gauges from the engine's summary (after blocks and commands,
    /// not per mempool transaction).
    pub fn channels(&self, summary: &ChannelSummary, tip: u32) {
        for (state, count) in ChannelState::ALL.iter().zip(summary.by_state) {
            self.channels
                .with_label_values(&[state.as_str()])
                .set(count as i64);
        }
        self.value_locked.set(summary.value_locked as i64);
        for ((label, _), (_, count, value)) in WINDOWS.iter().zip(&summary.within) {
            self.deadline_channels
                .with_label_values(&[label])
                .set(*count as i64);
            self.deadline_value.with_label_values(&[label]).set(*value as i64);
        }
        self.blocks_until_broadcast.set(
            summary
                .nearest_with_payment
                .map_or(-1, |h| i64::from(h) - i64::from(tip)),
        );
    }

    pub fn status(&self, status: &ServiceStatus) {
        self.node_height.set(status.node_height.map_or(0, i64::from));
        self.processed_height
            .set(status.processed_height.map_or(0, i64::from));
        self.node_up.set(i64::from(status.node_reachable));
        self.caught_up.set(i64::from(status.caught_up));
        self.zmq_configured.set(i64::from(status.zmq_configured));
        self.store_writable.set(i64::from(status.store_writable));
    }

    /// The text exposition, with the time-based and ZMQ values brought up to date.
    pub fn render(&self, zmq: &ZmqStats) -> String {
        let since = self
            .last_block
            .lock()
            .ok()
            .and_then(|l| l.map(|i| i.elapsed().as_secs_f64()))
            .unwrap_or(-1.0);
        self.seconds_since_last_block.set(since);
        self.zmq_silence
            .set(zmq.seconds_since_last_message().map_or(-1.0, |s| s as f64));
        self.zmq_queued
            .set(i64::try_from(zmq.queued()).unwrap_or(i64::MAX));
        let now = zmq.snapshot();
        if let Ok(mut seen) = self.zmq_seen.lock() {
            for topic in Topic::ALL {
                let (new, old) = (now.topic(topic), seen.topic(topic));
                let label = [topic.as_str()];
                self.zmq_messages
                    .with_label_values(&label)
                    .inc_by(new.messages.saturating_sub(old.messages));
                self.zmq_gaps
                    .with_label_values(&label)
                    .inc_by(new.gaps.saturating_sub(old.gaps));
                self.zmq_lost
                    .with_label_values(&label)
                    .inc_by(new.lost.saturating_sub(old.lost));
                self.zmq_resets
                    .with_label_values(&label)
                    .inc_by(new.resets.saturating_sub(old.resets));
            }
            *seen = now;
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new("regtest");
        m.observe_rpc("getblock", Duration::from_millis(3), Some("not_found"));
        m.broadcast("sent");
        m.api_request("/v1/channels", 201);
        let text = m.render(&ZmqStats::new());
        for family in m.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("dogetower_"), "{name}");
            if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("dogetower_build_info{network=\"regtest\""));
        assert!(text.contains("dogetower_rpc_errors_total{kind=\"not_found\"} 1"));
        assert!(text.contains("dogetower_zmq_messages_total{topic=\"rawblock\"} 0"));
        assert!(text.contains("dogetower_seconds_since_last_block -1"));
    }
}
