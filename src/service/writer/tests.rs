//! The writer driven through its own queue, without a node: what only the
//! order of inputs in one group commit can show.

use std::sync::Arc;

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use tokio::sync::{mpsc, oneshot, watch};

use super::Writer;
use crate::chain::{Address, Network};
use crate::channel::payer::{synthetic_funding, Payer};
use crate::channel::psbt::decode;
use crate::channel::Locktime;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::service::{prepare, rpc_client, ChannelView, Command, ServiceStatus, WriterInput};
use crate::store::{CustodyMode, Store};

type Answer = oneshot::Receiver<Result<(ChannelView, bool), crate::error::Refusal>>;

/// Two registrations of one channel reach the writer back to back, so both
/// are decided before any commit: the second must be answered as a repeat
/// of the first, not stored again (which would fail the whole group).
#[test]
fn one_channel_registered_twice_in_one_group_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.sqlite");
    let text = format!(
        "network = \"regtest\"\n[node]\nrpc_url = \"http://127.0.0.1:9\"\nrpc_user = \"u\"\nrpc_password = \"p\"\n\
         [store]\npath = \"{}\"\n",
        store_path.display()
    );
    let config = Config::from_toml(&text, &dir.path().join("dogetower.toml"), |_| None).unwrap();
    let merchant_id = Store::open(&store_path)
        .unwrap()
        .write(|tx| tx.insert_merchant("shop", None, CustodyMode::Presigned, None))
        .unwrap();

    let secp = Secp256k1::new();
    let payer = Payer::new(SecretKey::from_slice(&[0x51; 32]).unwrap());
    let merchant = bitcoin::PublicKey::new(SecretKey::from_slice(&[0x52; 32]).unwrap().public_key(&secp));
    let script = payer.channel_script(merchant, Locktime::Height(10_000));
    let funding = synthetic_funding(&script, 100_000_000, 1);
    let announcement = payer.announcement(&script, &[funding], None).serialize();
    let payout = Address::p2pkh(Network::Regtest, &merchant).to_string();

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let metrics = Arc::new(Metrics::new("regtest"));
    let prepared = prepare(
        rpc_client(&config, &metrics).unwrap(),
        Arc::new(ZmqStats::new()),
        metrics,
    );
    let (status, _) = watch::channel(ServiceStatus::default());
    let ha = crate::ha::HaState::new(&config, prepared.handle.metrics.clone());
    let (mut writer, _) = Writer::open(
        &config,
        &prepared.handle,
        status,
        runtime.handle().clone(),
        ha,
        None,
    )
    .unwrap();

    let (inputs, queue) = mpsc::channel(8);
    let mut answers: Vec<Answer> = Vec::new();
    for _ in 0..2 {
        let (reply, answer) = oneshot::channel();
        inputs
            .try_send(WriterInput::Command(Command::Register {
                merchant_id,
                psbt: Box::new(decode(&announcement).unwrap()),
                payout_address: Some(payout.clone()),
                merchant_pubkey: None,
                funding: Vec::new(),
                reply,
            }))
            .unwrap();
        answers.push(answer);
    }
    inputs.try_send(WriterInput::Stop).unwrap();
    writer.run(queue).unwrap();

    let first = answers.remove(0).blocking_recv().unwrap().unwrap();
    let second = answers.remove(0).blocking_recv().unwrap().unwrap();
    assert!(first.1, "the first creates the channel");
    assert!(!second.1, "the second is an identical repeat");
    assert_eq!(first.0.id, second.0.id);
    let store = Store::open(&store_path).unwrap();
    assert_eq!(store.tracked_channels(0).unwrap().len(), 1);
}
