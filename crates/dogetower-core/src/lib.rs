//! dogetower-core: everything the tower decides, with no I/O.
//!
//! - [`chain`]: Dogecoin network parameters, address and key encodings, the
//!   AuxPoW-aware block decoder, processed headers and [`chain::ChainEvent`].
//! - [`channel`]: the payment channel's rules: redeem-script templates, PSBT
//!   decoding and validation, signatures, custody, finalization checked by
//!   `bitcoinconsensus`, spend classification, and the payer's side.
//! - [`engine`]: [`engine::Tower`], the state machine that turns chain events,
//!   merchant commands and broadcast results into decisions and actions.
//! - [`node`]: facts of dogecoind's interface (error kinds, ZMQ topics).
//! - [`error`]: [`error::ErrorCode`], every code the API and the CLI emit.
//!
//! Nothing here reads a clock, a file or a socket, or needs an async runtime:
//! time and the node's answers come in as inputs, as in quinn-proto or LDK's
//! `ChannelMonitor`. `tests/pure.rs` keeps it that way.

pub mod chain;
pub mod channel;
pub mod engine;
pub mod error;
pub mod node;
