//! The merchant's commands. Registration and payment are decided here in
//! two steps: `decide_*` checks a request against the rules and the
//! engine's state and answers with a typed decision (new, identical repeat,
//! or a [`Refusal`] with its code) without changing anything; the service
//! stores what was decided, and in the same store transaction applies it
//! with [`Input::Registered`] or [`Input::PaymentAccepted`].

use bitcoin::bip32::KeySource;
use bitcoin::{OutPoint, PublicKey, Script, ScriptBuf, Transaction, Txid};

use super::payment_check::{CheckedPayment, PaymentCheckJob};
use super::totals::Share;
use super::{ChannelState, CommandError, EventData, FundingStatus, Out, Tower, TrackedChannel};
use crate::chain::Address;
use crate::channel::psbt::DecodedPsbt;
use crate::channel::{
    amount_violation, deadline_violation, finality_violation, validate_announcement, AnnouncementCheck,
    ChannelScript, ChannelTerms, Custody,
};
use crate::engine::event::{Event, SeenIn};
use crate::error::{ErrorCode, Refusal};

/// The calling merchant, as the service knows it.
#[derive(Debug, Clone, Copy)]
pub struct MerchantProfile<'a> {
    pub id: i64,
    pub custody: &'a Custody,
    /// Used when a registration names no payout address.
    pub default_payout: Option<&'a str>,
}

/// What the node said about a funding outpoint just before the registration
/// reached the engine (`gettxout` with the mempool included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundingLookup {
    /// Not an unspent output the node knows: not seen yet, or already spent.
    Unknown,
    /// Created by a transaction in the node's mempool.
    Mempool,
    /// In a block, this many confirmations deep.
    Confirmed { confirmations: u32 },
}

/// What the store holds under the channel id of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRegistration {
    pub key: i64,
    pub merchant_id: i64,
    pub announcement: Vec<u8>,
    pub payout_script: ScriptBuf,
}

/// A registration as the API received it, with what the service looked up
/// for it before it reached the engine.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationRequest<'a> {
    pub merchant: MerchantProfile<'a>,
    pub psbt: &'a DecodedPsbt,
    pub payout_address: Option<&'a str>,
    /// Hex: the key the merchant handed the payer, when the merchant says which.
    pub merchant_pubkey: Option<&'a str>,
    /// The node's answer for each funding outpoint; one not listed starts unseen.
    pub funding: &'a [(OutPoint, FundingLookup)],
    /// The stored registration under [`announced_channel_id`], if any.
    pub existing: Option<&'a StoredRegistration>,
}

/// A channel the engine accepted, for the service to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredChannel {
    /// Its tracked state; `key` is 0 until the store has given it one.
    pub channel: TrackedChannel,
    pub terms: ChannelTerms,
    pub payout_script: ScriptBuf,
    /// The announcement PSBT as it is stored (BIP174 bytes).
    pub announcement: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationDecision {
    /// A new channel: store it, then apply [`super::Input::Registered`] with
    /// the store's key, in the same transaction.
    New(Box<RegisteredChannel>),
    /// The same announcement, payout and merchant again: answer with the
    /// stored channel, store nothing.
    Repeat { key: i64 },
}

/// One stored payment state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub sequence: u64,
    /// The payer-signed PSBT (BIP174 bytes).
    pub psbt: Vec<u8>,
    pub merchant_amount: u64,
    pub fee: i64,
    /// How the close is recognised on the chain, whatever its scriptSigs.
    pub unsigned_txid: Txid,
}

/// A payment as the API received it, with what the service read for it.
#[derive(Debug, Clone, Copy)]
pub struct PaymentRequest<'a> {
    pub key: i64,
    pub psbt: &'a DecodedPsbt,
    pub custody: &'a Custody,
    pub payout_script: &'a Script,
    pub merchant_key_origin: Option<&'a KeySource>,
    /// The latest stored state, to recognise an identical repeat.
    pub latest: Option<&'a PaymentRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentDecision {
    /// A newer state: store it, then apply [`super::Input::PaymentAccepted`]
    /// in the same transaction; answer once it has committed.
    Accept(PaymentRecord),
    /// The latest stored state again: answer with it, store nothing.
    Repeat { sequence: u64, merchant_amount: u64 },
}

/// The channel id an announcement claims (the P2SH address of its first
/// input's redeem script), before any rule is checked: the key to look up
/// an earlier registration with.
pub fn announced_channel_id(psbt: &DecodedPsbt, network: crate::chain::Network) -> Option<String> {
    let redeem = psbt.psbt.inputs.first()?.redeem_script.as_ref()?;
    let script = ChannelScript::parse(redeem).ok()?;
    Some(script.address(network).to_string())
}

impl Tower {
    /// Decides a registration; changes nothing.
    pub fn decide_registration(
        &self,
        req: &RegistrationRequest<'_>,
    ) -> Result<RegistrationDecision, Refusal> {
        let network = self.settings.network;
        let expected_merchant_key = req.merchant_pubkey.map(parse_pubkey).transpose()?;
        let policy = self.settings.channel;
        let terms = validate_announcement(
            req.psbt,
            &AnnouncementCheck {
                custody: req.merchant.custody,
                expected_merchant_key,
                view: self.view(),
                policy: &policy,
            },
        )?;
        let payout_text = req
            .payout_address
            .or(req.merchant.default_payout)
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::PayoutAddressRequired,
                    "no payout_address given and the merchant has no default",
                )
            })?;
        let payout_script = Address::parse(payout_text, network)
            .map_err(|e| Refusal::new(ErrorCode::InvalidPayoutAddress, format!("payout_address: {e}")))?
            .script_pubkey();
        let id = terms.id(network).to_string();
        let announcement = req.psbt.psbt.serialize();
        if let Some(existing) = req.existing {
            if existing.merchant_id == req.merchant.id
                && existing.announcement == announcement
                && existing.payout_script == payout_script
            {
                return Ok(RegistrationDecision::Repeat { key: existing.key });
            }
            return Err(already_registered(&id));
        }
        if self.tracked_by_id(&id).is_some() {
            // Tracked but not found by the caller: never store it twice.
            return Err(already_registered(&id));
        }
        let funding_txs: Vec<Transaction> = req
            .psbt
            .psbt
            .inputs
            .iter()
            .filter_map(|i| i.non_witness_utxo.clone())
            .collect();
        let heights = self.deadline_heights(terms.script.locktime);
        let mut channel =
            TrackedChannel::new_registered(0, id, req.merchant.id, &terms, &funding_txs, heights);
        let tip = self.tip.map_or(0, |t| t.height);
        for f in channel.funding.iter_mut() {
            let lookup = req
                .funding
                .iter()
                .find(|(outpoint, _)| *outpoint == f.outpoint)
                .map_or(FundingLookup::Unknown, |(_, lookup)| *lookup);
            match lookup {
                FundingLookup::Confirmed { confirmations } if confirmations > 0 => {
                    f.status = FundingStatus::Confirmed;
                    f.confirmed_height = Some((tip + 1).saturating_sub(confirmations));
                }
                FundingLookup::Confirmed { .. } | FundingLookup::Mempool => f.status = FundingStatus::Mempool,
                FundingLookup::Unknown => {}
            }
        }
        Ok(RegistrationDecision::New(Box::new(RegisteredChannel {
            channel,
            terms,
            payout_script,
            announcement,
        })))
    }

    /// Decides a payment in one go; changes nothing. The writer does the
    /// same in two steps, [`Tower::payment_check_job`] and
    /// [`Tower::decide_checked_payment`], so the checks run off its thread.
    pub fn decide_payment(&self, req: &PaymentRequest<'_>) -> Result<PaymentDecision, Refusal> {
        let job = self.payment_check_job(req.key, req.custody, req.payout_script, req.merchant_key_origin)?;
        self.decide_checked_payment(&job.check(req.psbt), req.latest)
    }

    /// A snapshot of what a payment on channel `key` is checked against;
    /// refuses at once when the channel takes no more payments.
    pub fn payment_check_job(
        &self,
        key: i64,
        custody: &Custody,
        payout_script: &Script,
        merchant_key_origin: Option<&KeySource>,
    ) -> Result<PaymentCheckJob, Refusal> {
        let channel = self.payable(key)?;
        Ok(PaymentCheckJob {
            key,
            terms: channel.terms(merchant_key_origin),
            payout_script: payout_script.to_owned(),
            custody: custody.clone(),
            sequence: channel.sequence,
            latest_amount: channel.merchant_amount,
            view: self.view(),
            policy: self.settings.channel,
        })
    }

    /// Whether `checked` can be byte for byte the channel's latest state:
    /// only then must the caller read that state to pass it as `latest`.
    pub fn may_repeat_latest(&self, checked: &CheckedPayment) -> bool {
        self.channels
            .get(&checked.key)
            .is_some_and(|c| c.latest_unsigned_txid == Some(checked.unsigned_txid))
    }

    /// Decides a payment checked on a snapshot; changes nothing. Re-checks
    /// what may have moved since the snapshot: the channel's state, its
    /// latest amount (another payment came first) and the tip. `latest` is
    /// the latest stored state, to recognise an identical repeat.
    pub fn decide_checked_payment(
        &self,
        checked: &CheckedPayment,
        latest: Option<&PaymentRecord>,
    ) -> Result<PaymentDecision, Refusal> {
        let channel = self.payable(checked.key)?;
        if let Some(latest) = latest.filter(|latest| latest.psbt == checked.psbt) {
            return Ok(PaymentDecision::Repeat {
                sequence: latest.sequence,
                merchant_amount: latest.merchant_amount,
            });
        }
        let (merchant_amount, fee) = checked.outcome.clone()?;
        let moved = if channel.sequence != checked.snapshot_sequence {
            amount_violation(merchant_amount, channel.merchant_amount)
        } else {
            None
        };
        let view = self.view();
        let moved = moved.or_else(|| {
            (view != checked.snapshot_view)
                .then(|| {
                    deadline_violation(channel.locktime(), &view, &self.settings.channel)
                        .or_else(|| finality_violation(checked.lock_time, &view))
                })
                .flatten()
        });
        if let Some(violation) = moved {
            return Err(violation.into());
        }
        Ok(PaymentDecision::Accept(PaymentRecord {
            sequence: channel.sequence + 1,
            psbt: checked.psbt.clone(),
            merchant_amount,
            fee,
            unsigned_txid: checked.unsigned_txid,
        }))
    }

    /// The channel `key` if it still takes payments. The engine tracks every
    /// channel that can still be paid; one it does not track has finished.
    fn payable(&self, key: i64) -> Result<&TrackedChannel, Refusal> {
        let channel = self.channels.get(&key).ok_or_else(|| {
            Refusal::new(
                ErrorCode::ChannelClosed,
                "the channel has finished and takes no more payments",
            )
        })?;
        if !channel.state.is_live() {
            return Err(Refusal::new(
                ErrorCode::ChannelClosed,
                format!("channel {} is {}", channel.id, channel.state.as_str()),
            ));
        }
        Ok(channel)
    }

    /// The terms a channel's payments and close are checked against.
    pub fn terms(&self, key: i64, merchant_key_origin: Option<&KeySource>) -> Option<ChannelTerms> {
        self.channels.get(&key).map(|c| c.terms(merchant_key_origin))
    }

    pub(super) fn registered(&mut self, channel: TrackedChannel, out: &mut Out) {
        let key = channel.key;
        let id = channel.id.clone();
        out.emit(Event::new(
            Some(&id),
            "",
            EventData::ChannelRegistered {
                capacity: channel.capacity(),
                locktime: channel.locktime().to_consensus(),
                locktime_kind: channel.locktime().kind_str(),
                deadline_height: channel.broadcast_height,
            },
        ));
        let confirmed: Vec<(OutPoint, u32)> = channel
            .funding
            .iter()
            .filter_map(|f| f.confirmed_height.map(|h| (f.outpoint, h)))
            .collect();
        for f in &channel.funding {
            if f.status != FundingStatus::Unseen {
                out.emit(Event::new(
                    Some(&id),
                    &f.outpoint.to_string(),
                    EventData::FundingSeen {
                        outpoint: f.outpoint,
                        value: f.value,
                        seen_in: if f.status == FundingStatus::Confirmed {
                            SeenIn::Confirmed
                        } else {
                            SeenIn::Mempool
                        },
                        block_hash: None,
                    },
                ));
            }
        }
        self.insert(channel);
        for (_, height) in confirmed {
            let needed = self.settings.funding_confirmations;
            self.note_fact(key, height, needed);
        }
        if let Some(tip) = self.tip.map(|t| t.height) {
            self.check_confirmations(key, tip, out);
            if self.channels.get(&key).is_some_and(|c| c.warning_height <= tip) {
                self.warn_deadline(key, out);
            }
        }
        out.save(key);
    }

    pub(super) fn payment(
        &mut self,
        key: i64,
        sequence: u64,
        amount: u64,
        unsigned_txid: Txid,
        out: &mut Out,
    ) -> Result<(), CommandError> {
        let channel = self
            .channels
            .get_mut(&key)
            .ok_or(CommandError::UnknownChannel(key))?;
        if !channel.state.is_live() {
            return Err(CommandError::ChannelClosed(channel.state.as_str()));
        }
        let before = Share::of(channel);
        channel.sequence = sequence;
        channel.merchant_amount = amount;
        channel.latest_unsigned_txid = Some(unsigned_txid);
        self.totals.replace(before, Share::of(channel));
        out.emit(Event::new(
            Some(&channel.id),
            &sequence.to_string(),
            EventData::ChannelPayment {
                sequence,
                merchant_amount: amount,
            },
        ));
        out.save(key);
        Ok(())
    }

    pub(super) fn close_requested(&mut self, key: i64, out: &mut Out) -> Result<(), CommandError> {
        // The service found the channel in the store; one the engine does
        // not track has finished (finished channels are not loaded at start).
        let channel = self
            .channels
            .get(&key)
            .ok_or(CommandError::ChannelClosed("finished"))?;
        match channel.state {
            ChannelState::Closing => {
                // Asking again is harmless: send it once more now.
                out.broadcast(key);
                Ok(())
            }
            s if !s.is_live() => Err(CommandError::ChannelClosed(s.as_str())),
            _ if channel.sequence == 0 => Err(CommandError::NothingToClose),
            _ => {
                self.start_closing(key, "close requested by the merchant", out);
                Ok(())
            }
        }
    }
}

fn parse_pubkey(hex_text: &str) -> Result<PublicKey, Refusal> {
    hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| PublicKey::from_slice(&b).ok())
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::InvalidRequest,
                "merchant_pubkey is not a hex public key",
            )
        })
}

fn already_registered(id: &str) -> Refusal {
    Refusal::new(
        ErrorCode::AlreadyRegistered,
        format!("channel {id} is already registered with different data"),
    )
}
