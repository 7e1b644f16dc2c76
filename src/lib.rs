//! dogetower: a watchtower for one-way CLTV Dogecoin payment channels.
//!
//! The pure parts live in the `dogetower-core` crate and are re-exported
//! here under their usual names ([`chain`], [`channel`], [`engine`]); this
//! crate is the service around them (see `docs/ARCHITECTURE.md`):
//! - [`node`]: the dogecoind adapter (JSON-RPC client, ZMQ subscriber);
//! - [`follower`]: turns ZMQ hints and RPC answers into ordered chain events;
//! - [`store`]: SQLite, the only place SQL lives;
//! - [`service`]: the single writer that feeds the engine and applies its
//!   actions, and the front door the API calls;
//! - [`runtime`]: starts and stops a whole tower (service, API, webhooks);
//! - [`api`], [`notify`], [`metrics`]: what merchants and operators see;
//! - [`config`], [`logging`], [`cli`], [`demo`]: the process around it all.

pub use dogetower_core::{chain, channel, engine, error};

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod follower;
pub mod ha;
pub mod identity;
pub mod key_file;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod receipt;
pub mod runtime;
pub mod service;
pub mod sim;
pub mod status;
pub mod store;
