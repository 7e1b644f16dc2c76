//! Dogecoin specifics on top of the `bitcoin` crate: network parameters,
//! address/WIF/xprv encodings and the AuxPoW-aware block decoder.

pub mod address;
pub mod auxpow;
pub mod block;
pub mod follower;
pub mod headers;
pub mod keys;
pub mod params;

pub use address::{Address, AddressError, AddressKind};
pub use auxpow::{AuxPow, AuxPowError};
pub use block::{decode_block, decode_header, parse_block_input, BlockDecodeError, DogeBlock};
pub use params::Network;
