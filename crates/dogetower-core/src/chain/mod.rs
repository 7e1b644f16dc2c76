//! Dogecoin specifics on top of the `bitcoin` crate: network parameters,
//! address/WIF/xprv encodings, the AuxPoW-aware block decoder, the
//! processed header chain and the [`ChainEvent`]s the engine is fed.

pub mod address;
pub mod auxpow;
pub mod block;
pub mod event;
pub mod headers;
pub mod keys;
pub mod params;

pub use address::{Address, AddressError, AddressKind};
pub use auxpow::{AuxPow, AuxPowError};
pub use block::{decode_block, decode_header, parse_block_input, txid, BlockDecodeError, DogeBlock};
pub use event::ChainEvent;
pub use params::Network;
