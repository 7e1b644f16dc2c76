//! One module per fuzz target; each `run` takes any bytes and panics only
//! when a property of the production code breaks.

pub mod api;
pub mod block;
pub mod psbt;
pub mod zmq;
