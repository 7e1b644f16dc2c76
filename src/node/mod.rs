//! The adapter to dogecoind: a JSON-RPC client with Dogecoin's own answer
//! types and errors sorted into kinds the tower acts on.

pub mod rpc;
pub mod zmq;

pub use rpc::{ErrorKind, RpcClient, RpcCredentials, RpcError, RpcSettings};
