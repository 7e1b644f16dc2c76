//! dogetower: a watchtower for one-way CLTV Dogecoin payment channels.
//!
//! The module layout follows `docs/ARCHITECTURE.md`:
//! - [`chain`]: Dogecoin network parameters, address and key encodings, the
//!   AuxPoW-aware block decoder.
//! - [`channel`]: the channel domain — redeem-script templates, PSBT rules,
//!   signatures, finalization and signing. Pure functions over `bitcoin` types.
//! - [`config`] and [`logging`]: the service's configuration file and logs.
//! - [`cli`]: the command-line front end (`dogetower ...`).
//! - [`devnet`]: a simulated dogecoind regtest node (JSON-RPC and ZMQ) for
//!   the demo and the integration tests.

pub mod api;
pub mod chain;
pub mod channel;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devnet;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod service;
pub mod store;
