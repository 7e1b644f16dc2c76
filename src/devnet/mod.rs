//! A simulated Dogecoin Core 1.14.9 regtest node (being built up; see the final module docs).

pub mod chain;
pub mod mempool;
pub mod policy;
pub mod script;
pub mod verify;
pub mod miner;
pub mod wallet;
pub mod publisher;
pub mod node;
