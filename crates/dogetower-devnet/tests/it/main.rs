//! The devnet's own tests, in one binary: it must answer like dogecoind
//! 1.14.9 (the recorded answers in `tests/fixtures/node/`), apply relay
//! policy in the same order, publish ZMQ the same way, and its test controls
//! must do what `docs/DEVNET.md` says.

mod controls;
mod policy;
mod rpc_shapes;
mod support;
mod zmq;
