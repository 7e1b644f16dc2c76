//! The merchant's commands on the writer thread: each reads what its rule
//! needs from the store, lets the engine decide, and commits what was
//! decided before it answers.

use bitcoin::OutPoint;

use super::group::{PaymentReplyTo, RegisterReplyTo};
use super::outage::{store_unavailable, OwnChange};
use super::{PaymentChecked, Writer};
use crate::channel::psbt::DecodedPsbt;
use crate::engine::{
    Action, ChannelState, CheckedPayment, FundingLookup, Input, MerchantProfile, PaymentDecision,
    RegisteredChannel, RegistrationDecision, RegistrationRequest,
};
use crate::error::{ErrorCode, Refusal};
use crate::service::persist;
use crate::service::view::ChannelView;
use crate::service::WriterInput;
use crate::service::{ChannelPage, Command};
use crate::store::{ChannelRecord, CustodyMode, Merchant};

impl Writer {
    pub(super) fn view_of(&self, key: i64) -> Result<ChannelView, Refusal> {
        let channel = self.tower.channel(key);
        let stored;
        let channel = match channel {
            Some(c) => c,
            None => {
                stored = self
                    .store
                    .tracked_channel(key)
                    .map_err(Refusal::internal)?
                    .ok_or_else(|| Refusal::internal(format!("the state of channel row {key} is missing")))?;
                &stored
            }
        };
        let record = self
            .store
            .channel_record_by_key(key)
            .map_err(Refusal::internal)?
            .ok_or_else(|| Refusal::channel_not_found(&channel.id))?;
        Ok(ChannelView::new(channel, &record, self.tip_height()))
    }

    /// The channel `address` of `merchant_id`; another merchant's is "not found".
    fn owned(&self, merchant_id: i64, address: &str) -> Result<ChannelRecord, Refusal> {
        super::super::read_only::owned(&self.store, merchant_id, address)
    }

    /// Handles a merchant's command; fails only when a group commit failed.
    pub(super) fn command(&mut self, command: Command) -> anyhow::Result<()> {
        let Some(command) = self.refused_while_store_out(command) else {
            return Ok(());
        };
        match command {
            Command::Register {
                merchant_id,
                psbt,
                payout_address,
                merchant_pubkey,
                funding,
                reply,
            } => {
                return self.register(
                    merchant_id,
                    &psbt,
                    payout_address.as_deref(),
                    merchant_pubkey.as_deref(),
                    &funding,
                    reply,
                )
            }
            Command::Pay {
                merchant_id,
                channel,
                psbt,
                reply,
            } => self.start_payment(merchant_id, &channel, psbt, reply),
            Command::Close {
                merchant_id,
                channel,
                reply,
            } => {
                let result = self.close(merchant_id, &channel);
                let _ = reply.send(result);
            }
            Command::Get {
                merchant_id,
                channel,
                reply,
            } => {
                let result = self
                    .owned(merchant_id, &channel)
                    .and_then(|r| self.view_of(r.key));
                let _ = reply.send(result);
            }
            Command::List {
                merchant_id,
                state,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.list(merchant_id, state, after, limit));
            }
        }
        Ok(())
    }

    /// While the store takes no writes, answers a change with
    /// `store_unavailable` (nothing can be acknowledged); reads go through.
    fn refused_while_store_out(&self, command: Command) -> Option<Command> {
        if !self.store_out() {
            return Some(command);
        }
        let refusal = || store_unavailable();
        match command {
            Command::Register { reply, .. } => drop(reply.send(Err(refusal()))),
            Command::Pay { reply, .. } => drop(reply.send(Err(refusal()))),
            Command::Close { reply, .. } => drop(reply.send(Err(refusal()))),
            read @ (Command::Get { .. } | Command::List { .. }) => return Some(read),
        }
        None
    }

    fn list(
        &self,
        merchant_id: i64,
        state: Option<ChannelState>,
        after: Option<i64>,
        limit: usize,
    ) -> Result<ChannelPage, Refusal> {
        super::super::read_only::page_with(&self.store, merchant_id, state, after, limit, |key| {
            self.view_of(key)
        })
    }

    /// Decides a registration; a new channel joins the group commit and is
    /// answered after it.
    fn register(
        &mut self,
        merchant_id: i64,
        psbt: &DecodedPsbt,
        payout_address: Option<&str>,
        merchant_pubkey: Option<&str>,
        funding: &[(OutPoint, FundingLookup)],
        reply: RegisterReplyTo,
    ) -> anyhow::Result<()> {
        let announced = crate::engine::announced_channel_id(psbt, self.network);
        if announced.as_deref().is_some_and(|id| self.group.registers(id)) {
            // The same channel again before its first registration is
            // stored: decide this one against the stored row.
            self.commit_group()?;
        }
        let decided = self.decide_registration(
            merchant_id,
            announced.as_deref(),
            psbt,
            payout_address,
            merchant_pubkey,
            funding,
        );
        match decided {
            Ok((merchant_name, RegistrationDecision::New(new))) => {
                match self.check_issued_key(merchant_id, &new) {
                    Ok(()) => self.group.registration(merchant_id, merchant_name, new, reply),
                    Err(refusal) => drop(reply.send(Err(refusal))),
                }
            }
            Ok((_, RegistrationDecision::Repeat { key })) => {
                let _ = reply.send(self.view_of(key).map(|view| (view, false)));
            }
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
            }
        }
        Ok(())
    }

    /// With `policy.require_issued_keys`, a new channel's merchant key must
    /// be one the tower issued this merchant, unused and unexpired. Checked
    /// on new channels only: an identical repeat is answered as before.
    fn check_issued_key(&self, merchant_id: i64, new: &RegisteredChannel) -> Result<(), Refusal> {
        if !self.require_issued_keys {
            return Ok(());
        }
        let key = new.terms.script.merchant();
        let pending = self.group.uses_merchant_key(merchant_id, &key);
        crate::service::channel_keys::check_issued(
            &self.store,
            merchant_id,
            &key,
            pending,
            crate::store::channels::now(),
        )
    }

    /// Reads what the registration rules need and lets the engine decide;
    /// also returns the merchant's name, for the log.
    fn decide_registration(
        &mut self,
        merchant_id: i64,
        announced: Option<&str>,
        psbt: &DecodedPsbt,
        payout_address: Option<&str>,
        merchant_pubkey: Option<&str>,
        funding: &[(OutPoint, FundingLookup)],
    ) -> Result<(String, RegistrationDecision), Refusal> {
        let merchant = self.merchant(merchant_id)?;
        let custody = self.custody(merchant_id).map_err(Refusal::internal)?;
        let existing = persist::existing_registration(&self.store, announced).map_err(Refusal::internal)?;
        let decision = self.tower.decide_registration(&RegistrationRequest {
            merchant: MerchantProfile {
                id: merchant_id,
                custody: &custody,
                default_payout: merchant.payout_address.as_deref(),
            },
            psbt,
            payout_address,
            merchant_pubkey,
            funding,
            existing: existing.as_ref(),
        })?;
        Ok((merchant.name, decision))
    }

    fn merchant(&mut self, merchant_id: i64) -> Result<Merchant, Refusal> {
        if let Some(m) = self.merchants.get(&merchant_id) {
            return Ok(m.clone());
        }
        // A merchant added while the tower runs (with `dogetower merchant add`).
        for m in self.store.merchants().map_err(Refusal::internal)? {
            self.merchants.entry(m.id).or_insert(m);
        }
        let merchant = self
            .merchants
            .get(&merchant_id)
            .cloned()
            .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "unknown merchant"))?;
        if merchant.custody == CustodyMode::Signer && !self.signers.contains_key(&merchant_id) {
            let signer = crate::service::merchant_signer(&merchant, self.network)?;
            self.signers.insert(merchant_id, signer);
        }
        Ok(merchant)
    }

    /// The first step of a payment: snapshot what it is checked against and
    /// check it on the blocking pool; the result comes back as
    /// [`WriterInput::PaymentChecked`] and is decided in [`Writer::payment_checked`].
    fn start_payment(&mut self, merchant_id: i64, address: &str, psbt_text: String, reply: PaymentReplyTo) {
        let job = self.owned(merchant_id, address).and_then(|record| {
            self.merchant(merchant_id)?;
            let custody = self.custody(merchant_id).map_err(Refusal::internal)?;
            self.tower.payment_check_job(
                record.key,
                &custody,
                &record.payout_script,
                record.merchant_key_origin.as_ref(),
            )
        });
        let job = match job {
            Ok(job) => job,
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
                return;
            }
        };
        let inputs = self.inputs.clone();
        self.runtime.spawn_blocking(move || {
            let checked = job.run(&psbt_text);
            // Fails only when the writer has stopped; the reply is dropped
            // with it and the client hears the tower is not running.
            let _ = inputs.blocking_send(WriterInput::PaymentChecked(Box::new(PaymentChecked {
                checked,
                reply,
            })));
        });
    }

    /// Decides a checked payment. An accepted one is applied to the engine
    /// at once (so the next payment on the channel sees it) and joins the
    /// group that [`Writer::commit_group`] writes in one transaction; its
    /// answer, like a repeat's, waits for that commit.
    pub(super) fn payment_checked(&mut self, done: PaymentChecked) {
        let PaymentChecked { checked, reply } = done;
        if self.store_out() {
            let _ = reply.send(Err(store_unavailable()));
            return;
        }
        match checked.and_then(|checked| self.decide_and_apply(&checked)) {
            Ok((key, PaymentDecision::Accept(record), actions)) => {
                self.group.payment(key, record, actions, reply)
            }
            // The repeated state may still be in the group.
            Ok((
                key,
                PaymentDecision::Repeat {
                    sequence,
                    merchant_amount,
                },
                _,
            )) => self.group.answer_payment(key, sequence, merchant_amount, reply),
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
            }
        }
    }

    /// The decision on a checked payment, and the engine's actions when it
    /// was accepted and applied (none for a repeat).
    fn decide_and_apply(
        &mut self,
        checked: &CheckedPayment,
    ) -> Result<(i64, PaymentDecision, Vec<Action>), Refusal> {
        let in_group = self.group.latest_payment(checked.key);
        let (decision, actions) = persist::decide_payment(&mut self.tower, &self.store, in_group, checked)
            .map_err(Refusal::internal)??;
        Ok((checked.key, decision, actions))
    }

    fn close(&mut self, merchant_id: i64, address: &str) -> Result<ChannelView, Refusal> {
        let record = self.owned(merchant_id, address)?;
        let actions = self.tower.handle(Input::CloseRequested { key: record.key })?;
        // Not written: the close is sent all the same (held back, see
        // `outage`), but the request is not acknowledged.
        match self.commit(actions, OwnChange::Nothing) {
            Ok(true) => self.view_of(record.key),
            Ok(false) => Err(store_unavailable()),
            Err(error) => Err(Refusal::internal(error)),
        }
    }
}
