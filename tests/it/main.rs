//! The root package's integration tests as one test binary, so the crate is
//! linked once rather than once per file. Each module is one area; `support`
//! holds the helpers they share. They run side by side in this one process:
//! a test must not change process-wide state (environment, current
//! directory, a global tracing subscriber) and uses its own ports and
//! temporary directories.
//!
//! One module: `cargo test --test it tower::`; one test: add its name.

mod support;

mod api;
mod bench;
mod chain_fixtures;
mod channel_keys;
mod check_node;
mod cli_block;
mod cli_psbt;
mod crash_storm;
mod demo;
mod disk_full;
mod follower;
mod ha;
mod integration_docs;
mod logging;
mod merchant_webhooks;
mod node_rpc;
mod node_zmq;
mod promql;
mod receipts;
mod tower;
mod transfer;
mod webhooks;
