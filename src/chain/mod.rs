//! Dogecoin specifics on top of the `bitcoin` crate: network parameters,
//! address/WIF/xprv encodings and the AuxPoW-aware block decoder.

pub mod address;
pub mod block;
pub mod headers;
pub mod keys;
pub mod params;

pub use address::{Address, AddressError, AddressKind};
pub use params::Network;
