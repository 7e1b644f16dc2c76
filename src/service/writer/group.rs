//! Group commit. Accepted payments and new registrations wait in a group
//! that is written in one store transaction (synchronous=FULL: one fsync for
//! all of them), and only then answered: an answer still means durable. One
//! fsync per update capped the tower at about a thousand updates a second.
//!
//! The writer commits the group when its queue runs dry, when the group is
//! full ([`MAX_GROUP`]), or before any input that does not join a group (a
//! chain event, a read, a close), so everything else sees the store and the
//! engine agree.

use tokio::sync::oneshot;

use super::Writer;
use crate::engine::{Action, PaymentRecord, RegisteredChannel};
use crate::error::Refusal;
use crate::service::persist;
use crate::service::{ChannelView, PaymentReply};

/// The most answers one group commit holds: bounds the wait of the first.
pub(super) const MAX_GROUP: usize = 256;

/// Where a payment's answer goes.
pub(super) type PaymentReplyTo = oneshot::Sender<Result<PaymentReply, Refusal>>;
/// Where a registration's answer goes (the channel, and whether it is new).
pub(super) type RegisterReplyTo = oneshot::Sender<Result<(ChannelView, bool), Refusal>>;

/// What the next group commit writes and answers.
#[derive(Default)]
pub(super) struct Group {
    changes: Vec<Change>,
    answers: Vec<Answer>,
}

/// A change the engine decided and the store does not hold yet.
enum Change {
    /// Applied to the engine already (the next payment on the channel must
    /// see it); written with its actions.
    Payment {
        key: i64,
        record: PaymentRecord,
        actions: Vec<Action>,
    },
    /// Applied to the engine inside the transaction, once the store has
    /// given the channel its key.
    Registration {
        merchant_id: i64,
        merchant_name: String,
        new: Box<RegisteredChannel>,
    },
}

enum Answer {
    Payment {
        key: i64,
        sequence: u64,
        merchant_amount: u64,
        /// A new state's unsigned close txid and PSBT hash; `None` for a repeat.
        new_state: Option<(bitcoin::Txid, [u8; 32])>,
        reply: PaymentReplyTo,
    },
    /// The registration at this index of the group's changes.
    Registration { change: usize, reply: RegisterReplyTo },
}

impl Group {
    pub(super) fn len(&self) -> usize {
        self.answers.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// An accepted payment, applied to the engine with these actions.
    pub(super) fn payment(
        &mut self,
        key: i64,
        record: PaymentRecord,
        actions: Vec<Action>,
        reply: PaymentReplyTo,
    ) {
        self.answers.push(Answer::Payment {
            key,
            sequence: record.sequence,
            merchant_amount: record.merchant_amount,
            new_state: Some((record.unsigned_txid, crate::receipt::psbt_sha256(&record.psbt))),
            reply,
        });
        self.changes.push(Change::Payment { key, record, actions });
    }

    /// An answer to a payment that changes nothing (an identical repeat of
    /// a state that may itself still be in the group).
    pub(super) fn answer_payment(
        &mut self,
        key: i64,
        sequence: u64,
        merchant_amount: u64,
        reply: PaymentReplyTo,
    ) {
        self.answers.push(Answer::Payment {
            key,
            sequence,
            merchant_amount,
            new_state: None,
            reply,
        });
    }

    pub(super) fn registration(
        &mut self,
        merchant_id: i64,
        merchant_name: String,
        new: Box<RegisteredChannel>,
        reply: RegisterReplyTo,
    ) {
        self.answers.push(Answer::Registration {
            change: self.changes.len(),
            reply,
        });
        self.changes.push(Change::Registration {
            merchant_id,
            merchant_name,
            new,
        });
    }

    /// The latest payment of channel `key` waiting in the group.
    pub(super) fn latest_payment(&self, key: i64) -> Option<&PaymentRecord> {
        self.changes.iter().rev().find_map(|c| match c {
            Change::Payment { key: k, record, .. } if *k == key => Some(record),
            _ => None,
        })
    }

    /// Whether a registration of merchant `merchant_id` waiting in the
    /// group uses merchant key `key` (an issued key serves one channel).
    pub(super) fn uses_merchant_key(&self, merchant_id: i64, key: &bitcoin::PublicKey) -> bool {
        self.changes.iter().any(|c| {
            matches!(c, Change::Registration { merchant_id: m, new, .. }
                if *m == merchant_id && new.terms.script.merchant() == *key)
        })
    }

    /// Whether a registration of channel `id` waits in the group.
    pub(super) fn registers(&self, id: &str) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c, Change::Registration { new, .. } if new.channel.id == id))
    }
}

impl Writer {
    /// Writes the group in one transaction, then answers it. A failed
    /// commit fails every answer. The engine already holds the group's
    /// payments, the store does not: when the store is only unavailable (a
    /// full disk) the engine is rebuilt from it and a store outage begins
    /// (`outage`); any other failure stops the writer, and a restart
    /// rebuilds the engine from the store.
    pub(super) fn commit_group(&mut self) -> anyhow::Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let Group { changes, answers } = std::mem::take(&mut self.group);
        let tower = &mut self.tower;
        // Every new state of the group is taken at this time; its receipt says so.
        let received_at = crate::store::channels::now();
        let committed = self.store.write(|tx| {
            let (mut keys, mut all_actions, mut broadcasts) = (Vec::new(), Vec::new(), Vec::new());
            for change in changes {
                match change {
                    Change::Payment { key, record, actions } => {
                        broadcasts.extend(persist::store_payment(tx, tower, key, &record, &actions, received_at)?);
                        all_actions.extend(actions);
                        keys.push(key);
                    }
                    Change::Registration {
                        merchant_id,
                        merchant_name,
                        new,
                    } => {
                        let (id, capacity) = (new.channel.id.clone(), new.terms.capacity());
                        let (key, actions, sends) = persist::store_registration(tx, tower, merchant_id, *new)?;
                        broadcasts.extend(sends);
                        all_actions.extend(actions);
                        keys.push(key);
                        tracing::info!(channel = %id, merchant = %merchant_name, capacity, "channel registered");
                    }
                }
            }
            Ok((keys, all_actions, broadcasts))
        });
        let (keys, actions, broadcasts) = match committed {
            Ok(committed) => committed,
            Err(e) => {
                let refusal = super::outage::write_refusal(&e);
                for answer in answers {
                    match answer {
                        Answer::Payment { reply, .. } => drop(reply.send(Err(refusal.clone()))),
                        Answer::Registration { reply, .. } => drop(reply.send(Err(refusal.clone()))),
                    }
                }
                // The engine holds the group's changes, the store does not:
                // it is rebuilt from the store (reads still work on a full disk).
                self.store_failed(e)?;
                self.reload_engine()?;
                return Ok(());
            }
        };
        self.metrics.group_committed(answers.len());
        self.after_commit(&actions, broadcasts);
        for answer in answers {
            match answer {
                Answer::Payment {
                    key,
                    sequence,
                    merchant_amount,
                    new_state,
                    reply,
                } => {
                    let acceptance = new_state.map(|(close_txid, psbt_sha256)| crate::receipt::Acceptance {
                        close_txid,
                        psbt_sha256,
                        accepted_at: received_at,
                    });
                    let answer = self.view_of(key).map(|channel| PaymentReply {
                        channel,
                        sequence,
                        merchant_amount,
                        acceptance,
                    });
                    let _ = reply.send(answer);
                }
                Answer::Registration { change, reply } => {
                    let _ = reply.send(self.view_of(keys[change]).map(|view| (view, true)));
                }
            }
        }
        Ok(())
    }
}
