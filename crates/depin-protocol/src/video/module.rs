//! The video service module: deposits and reserves, unlock and withdrawal, ticket
//! redemption (replay, expiry, forgery and self-dealing refused), the reserve's claim window
//! and its pro-rata payout, and the expiry of redeemed-ticket records.

use super::commitment::{SegmentCommitment, commitment_message};
use super::ticket::{Ticket, ticket_id, ticket_message, ticket_wins};
use super::types::*;
use super::{SERVICE, VideoParams};
use crate::block::Event;
use crate::error::TxError;
use crate::service::{ServiceContext, ServiceEvent, ServiceModule};
use depin_types::{Address, Amount, Hash, ServiceKind, Signature};

/// The pure video rules, registered as the `video` service.
#[derive(Debug, Default, Clone, Copy)]
pub struct VideoModule;

fn reject(code: &'static str, reason: impl Into<String>) -> TxError {
    TxError::ServiceRejected {
        service: SERVICE,
        code,
        reason: reason.into(),
    }
}

impl ServiceModule for VideoModule {
    fn service(&self) -> ServiceKind {
        SERVICE
    }

    fn max_payload_bytes(&self) -> usize {
        // A dispute carries a commitment of up to 5 renditions and an evidence URL.
        2048
    }

    fn event_json(&self, data: &[u8]) -> Option<serde_json::Value> {
        crate::service::event_json::<VideoEvent>(data)
    }

    fn load_params(
        &self,
        genesis: &crate::params::Genesis,
    ) -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::params::GenesisError> {
        crate::services::load_params::<VideoParams>(genesis)
    }

    fn devnet(&self) -> crate::services::DevnetDefaults {
        crate::services::DevnetDefaults::new(500, 100, &VideoParams::devnet())
    }

    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let tx: VideoTx = depin_types::decode_bounded(payload, self.max_payload_bytes())
            .map_err(|e| reject("malformed_video_tx", e.to_string()))?;
        match tx {
            VideoTx::FundDeposit {
                deposit_dc,
                reserve_dc,
            } => fund(ctx, sender, deposit_dc, reserve_dc),
            VideoTx::Unlock => unlock(ctx, sender),
            VideoTx::Withdraw => withdraw(ctx, sender),
            VideoTx::RedeemTicket {
                ticket,
                signature,
                recipient_rand,
            } => redeem(ctx, sender, &ticket, &signature, &recipient_rand),
            VideoTx::Advertise { encoders, build } => advertise(ctx, sender, encoders, build),
            VideoTx::Dispute {
                commitment,
                signature,
                rung,
                evidence_url,
            } => open_dispute(ctx, sender, commitment, &signature, rung, evidence_url),
            VideoTx::Attest { dispute, guilty } => attest(ctx, sender, &dispute, guilty),
        }
    }

    fn end_block(&self, ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
        process_due(ctx)
    }

    fn epoch_rewards(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        epoch: u64,
        allocation: Amount,
    ) -> Result<Option<Vec<(Address, Amount)>>, TxError> {
        Ok(Some(
            ctx.split_paid_work(&keys::epoch_work(epoch), allocation)?,
        ))
    }
}

fn params<'s>(ctx: &ServiceContext<'s, '_>) -> Result<&'s VideoParams, TxError> {
    Ok(ctx.params::<VideoParams>()?)
}

fn load(ctx: &ServiceContext<'_, '_>, who: &Address) -> Result<Broadcaster, TxError> {
    Ok(ctx
        .get_decoded::<Broadcaster>(&keys::broadcaster(who))?
        .unwrap_or_default())
}

/// Encoders an orchestrator may name: the two the runtime drives.
pub const KNOWN_ENCODERS: [&str; 2] = ["libx264", "h264_nvenc"];

fn advertise(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    encoders: Vec<String>,
    build: String,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let offers_video = ctx
        .provider(&sender)?
        .is_some_and(|provider| provider.services.iter().any(|o| o.service == SERVICE));
    if !offers_video {
        return Err(reject(
            "not_a_video_provider",
            format!("{sender} is not registered as a video provider"),
        ));
    }
    if encoders.is_empty() || encoders.len() > KNOWN_ENCODERS.len() {
        return Err(reject(
            "bad_ad",
            format!("name 1 to {} encoders", KNOWN_ENCODERS.len()),
        ));
    }
    for (i, encoder) in encoders.iter().enumerate() {
        if !KNOWN_ENCODERS.contains(&encoder.as_str()) || encoders[..i].contains(encoder) {
            return Err(reject(
                "bad_ad",
                format!(
                    "encoders are named once each, out of {}",
                    KNOWN_ENCODERS.join(", ")
                ),
            ));
        }
    }
    let limit = p.max_ad_name_bytes as usize;
    let printable = build.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if build.is_empty() || build.len() > limit || !printable {
        return Err(reject(
            "bad_ad",
            format!("the build name is 1 to {limit} printable ASCII characters"),
        ));
    }
    let ad = VideoAd {
        encoders: encoders.clone(),
        build: build.clone(),
        height: ctx.block.height,
    };
    ctx.put_encoded(&keys::ad(&sender), &ad);
    Ok(vec![
        VideoEvent::Advertised {
            orchestrator: sender,
            encoders,
            build,
        }
        .to_event(),
    ])
}

fn schedule(ctx: &mut ServiceContext<'_, '_>, height: u64, due: Due) -> Result<(), TxError> {
    let count: u64 = ctx.get_decoded(&keys::due_count(height))?.unwrap_or(0);
    ctx.put_encoded(&keys::due(height, count), &due);
    ctx.put_encoded(&keys::due_count(height), &(count + 1));
    Ok(())
}

fn fund(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    deposit_dc: u128,
    reserve_dc: u128,
) -> Result<Vec<Event>, TxError> {
    let total = deposit_dc
        .checked_add(reserve_dc)
        .ok_or(TxError::AmountOverflow)?;
    if total == 0 {
        return Err(reject(
            "nothing_to_fund",
            "fund a deposit, a reserve or both",
        ));
    }
    let mut b = load(ctx, &sender)?;
    b.deposit_dc = b
        .deposit_dc
        .checked_add(deposit_dc)
        .ok_or(TxError::AmountOverflow)?;
    b.reserve_dc = b
        .reserve_dc
        .checked_add(reserve_dc)
        .ok_or(TxError::AmountOverflow)?;
    ctx.lock_data_credits(sender, total)?;
    b.withdraw_from = None;
    if deposit_dc > 0 {
        b.barred = false;
    }
    ctx.put_encoded(&keys::broadcaster(&sender), &b);
    Ok(vec![
        VideoEvent::DepositFunded {
            broadcaster: sender,
            deposit_dc: b.deposit_dc,
            reserve_dc: b.reserve_dc,
        }
        .to_event(),
    ])
}

fn unlock(ctx: &mut ServiceContext<'_, '_>, sender: Address) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let mut b = load(ctx, &sender)?;
    if b.deposit_dc == 0 && b.reserve_dc == 0 {
        return Err(reject(
            "nothing_locked",
            format!("{sender} has no deposit or reserve"),
        ));
    }
    if let Some(from) = b.withdraw_from {
        return Err(reject(
            "already_unlocking",
            format!("the deposit can be withdrawn from height {from}"),
        ));
    }
    let withdraw_from = ctx.block.height.saturating_add(p.unlock_blocks);
    b.withdraw_from = Some(withdraw_from);
    ctx.put_encoded(&keys::broadcaster(&sender), &b);
    Ok(vec![
        VideoEvent::UnlockStarted {
            broadcaster: sender,
            withdraw_from,
        }
        .to_event(),
    ])
}

fn withdraw(ctx: &mut ServiceContext<'_, '_>, sender: Address) -> Result<Vec<Event>, TxError> {
    let mut b = load(ctx, &sender)?;
    let height = ctx.block.height;
    match b.withdraw_from {
        None => {
            return Err(reject(
                "not_unlocked",
                "send Unlock first and wait its period: tickets already sent must stay redeemable",
            ));
        }
        Some(from) if height < from => {
            return Err(reject(
                "still_locked",
                format!("the deposit can be withdrawn from height {from}"),
            ));
        }
        Some(_) => {}
    }
    if let Some(freeze) = &b.freeze {
        return Err(reject(
            "reserve_frozen",
            format!(
                "the reserve is claimed by orchestrators until height {}",
                freeze.until
            ),
        ));
    }
    let refunded_dc = b
        .deposit_dc
        .checked_add(b.reserve_dc)
        .ok_or(TxError::AmountOverflow)?;
    ctx.refund_data_credits(sender, refunded_dc)?;
    b.deposit_dc = 0;
    b.reserve_dc = 0;
    b.withdraw_from = None;
    ctx.put_encoded(&keys::broadcaster(&sender), &b);
    Ok(vec![
        VideoEvent::Withdrawn {
            broadcaster: sender,
            refunded_dc,
        }
        .to_event(),
    ])
}

fn redeem(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    ticket: &Ticket,
    signature: &Signature,
    recipient_rand: &Hash,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let height = ctx.block.height;
    if ticket.recipient != sender {
        return Err(reject(
            "not_recipient",
            format!("the ticket pays {}, not {sender}", ticket.recipient),
        ));
    }
    if ticket.sender == ticket.recipient {
        return Err(reject(
            "own_ticket",
            "a broadcaster cannot pay itself as an orchestrator",
        ));
    }
    let orchestrator = ctx
        .provider(&sender)?
        .is_some_and(|provider| provider.services.iter().any(|o| o.service == SERVICE));
    if !orchestrator {
        return Err(reject(
            "not_an_orchestrator",
            format!("{sender} does not offer the video service"),
        ));
    }
    if ticket.face_value_dc == 0 || ticket.face_value_dc > p.max_face_value_dc {
        return Err(reject(
            "bad_face_value",
            format!("a ticket's face value is 1 to {} DC", p.max_face_value_dc),
        ));
    }
    if height > ticket.expiry_height {
        return Err(reject(
            "ticket_expired",
            format!("the ticket expired at height {}", ticket.expiry_height),
        ));
    }
    if ticket.expiry_height > height.saturating_add(p.max_ticket_validity_blocks) {
        return Err(reject(
            "ticket_too_long",
            format!(
                "a ticket may live at most {} blocks",
                p.max_ticket_validity_blocks
            ),
        ));
    }
    if Hash::of(recipient_rand.as_bytes()) != ticket.recipient_rand_hash {
        return Err(reject(
            "bad_recipient_rand",
            "the revealed random number is not the one the ticket commits to",
        ));
    }
    let message = ticket_message(&ctx.genesis.chain_id, ticket);
    if depin_types::verify(&ticket.sender, &message, signature).is_err() {
        return Err(reject(
            "bad_ticket_signature",
            format!("the ticket is not signed by {}", ticket.sender),
        ));
    }
    let id = ticket_id(ticket);
    if ctx.get_decoded::<u64>(&keys::redeemed(&id))?.is_some() {
        return Err(reject(
            "ticket_redeemed",
            format!("ticket {id} was redeemed already"),
        ));
    }
    if !ticket_wins(signature, recipient_rand, ticket.win_prob) {
        return Err(reject("not_a_winner", "the ticket did not win"));
    }
    let mut b = load(ctx, &ticket.sender)?;
    let face = u128::from(ticket.face_value_dc);
    let from_deposit = face.min(b.deposit_dc);
    let owed = face - from_deposit;
    if owed > 0 && b.reserve_dc == 0 {
        // Nothing to claim now: the ticket stays unredeemed and may be redeemed if the
        // broadcaster funds its deposit again before it expires.
        return Err(reject(
            "broadcaster_insolvent",
            format!("{} has no deposit or reserve left", ticket.sender),
        ));
    }
    let mut events = Vec::new();
    if owed > 0 {
        let freeze = match b.freeze.as_mut() {
            Some(freeze) => freeze,
            None => {
                let until = height + p.reserve_claim_blocks;
                schedule(ctx, until, Due::SettleReserve(ticket.sender))?;
                events.push(
                    VideoEvent::ReserveFrozen {
                        broadcaster: ticket.sender,
                        until,
                    }
                    .to_event(),
                );
                b.freeze.insert(Freeze {
                    until,
                    claims: Vec::new(),
                })
            }
        };
        let claimants = freeze.claims.len();
        match freeze.claims.iter_mut().find(|c| c.orchestrator == sender) {
            Some(claim) => {
                claim.owed_dc = claim
                    .owed_dc
                    .checked_add(owed)
                    .ok_or(TxError::AmountOverflow)?;
            }
            None if claimants >= p.max_reserve_claimants as usize => {
                return Err(reject(
                    "reserve_claimants_full",
                    format!("{claimants} orchestrators already claim this reserve"),
                ));
            }
            None => freeze.claims.push(Claim {
                orchestrator: sender,
                owed_dc: owed,
            }),
        }
        b.barred = true;
    }
    if from_deposit > 0 {
        events.extend(pay(ctx, p, ticket.sender, sender, from_deposit)?);
    }
    b.deposit_dc -= from_deposit;
    b.paid_dc += from_deposit;
    b.tickets_redeemed += 1;
    ctx.put_encoded(&keys::broadcaster(&ticket.sender), &b);
    ctx.put_encoded(&keys::redeemed(&id), &ticket.expiry_height);
    schedule(ctx, ticket.expiry_height + 1, Due::ForgetTicket(id))?;
    events.push(
        VideoEvent::TicketRedeemed {
            broadcaster: ticket.sender,
            orchestrator: sender,
            ticket: id,
            paid_dc: from_deposit,
            owed_dc: owed,
        }
        .to_event(),
    );
    Ok(events)
}

/// Pays an orchestrator from the broadcaster's locked Data Credits: the burn share goes,
/// the rest is paid, and the megapixels it pays for at the floor price count as work.
fn pay(
    ctx: &mut ServiceContext<'_, '_>,
    p: &VideoParams,
    broadcaster: Address,
    orchestrator: Address,
    dc: u128,
) -> Result<Vec<Event>, TxError> {
    let megapixels = dc * 1000 / u128::from(p.min_price_dc_per_gigapixel.max(1));
    let units = u64::try_from(megapixels).unwrap_or(u64::MAX);
    ctx.pay_for_work(
        broadcaster,
        orchestrator,
        dc,
        p.payment_burn_bps,
        units,
        &keys::epoch_work(ctx.epoch()),
    )
}

/// Pays each claim on a frozen reserve: in full if the reserve covers them all, else in
/// proportion to what each is owed (rounded down). A hook carries no receipts: what each
/// was paid shows in its balance and the broadcaster's record.
fn settle_reserve(ctx: &mut ServiceContext<'_, '_>, broadcaster: Address) -> Result<(), TxError> {
    let p = params(ctx)?;
    let mut b = load(ctx, &broadcaster)?;
    let Some(freeze) = b.freeze.take() else {
        return Ok(());
    };
    let total = freeze
        .claims
        .iter()
        .fold(0u128, |sum, c| sum.saturating_add(c.owed_dc));
    let reserve = b.reserve_dc;
    for claim in &freeze.claims {
        let paid_dc = if total <= reserve {
            claim.owed_dc
        } else {
            claim
                .owed_dc
                .checked_mul(reserve)
                .ok_or(TxError::AmountOverflow)?
                / total.max(1)
        };
        if paid_dc > 0 {
            pay(ctx, p, broadcaster, claim.orchestrator, paid_dc)?;
        }
        b.reserve_dc -= paid_dc;
        b.paid_dc += paid_dc;
    }
    ctx.put_encoded(&keys::broadcaster(&broadcaster), &b);
    Ok(())
}

fn process_due(ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
    let height = ctx.block.height;
    let count: u64 = ctx.get_decoded(&keys::due_count(height))?.unwrap_or(0);
    for n in 0..count {
        let key = keys::due(height, n);
        let entry: Option<Due> = ctx.get_decoded(&key)?;
        ctx.delete_record(&key);
        match entry {
            Some(Due::ForgetTicket(id)) => ctx.delete_record(&keys::redeemed(&id)),
            Some(Due::SettleReserve(broadcaster)) => settle_reserve(ctx, broadcaster)?,
            Some(Due::DisputeDeadline(id)) => dispute_deadline(ctx, &id)?,
            None => {}
        }
    }
    ctx.delete_record(&keys::due_count(height));
    Ok(())
}

/// Longest evidence URL a dispute may name, in bytes.
pub const MAX_EVIDENCE_URL_BYTES: usize = 256;

/// Most renditions a disputed commitment may list (the longest ladder).
const MAX_DISPUTED_RENDITIONS: usize = 5;

/// The id of a dispute over `rung` of a commitment: one dispute per rendition.
pub fn dispute_id(chain_id: &str, commitment: &SegmentCommitment, rung: &str) -> Hash {
    Hash::tagged(
        "depin video dispute",
        &[&commitment_message(chain_id, commitment), rung.as_bytes()],
    )
}

fn open_dispute(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    commitment: SegmentCommitment,
    signature: &Signature,
    rung: String,
    evidence_url: String,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    if commitment.broadcaster != sender {
        return Err(reject(
            "not_your_commitment",
            "only the broadcaster a commitment was made to may dispute it",
        ));
    }
    if commitment.renditions.len() > MAX_DISPUTED_RENDITIONS
        || !commitment.renditions.iter().any(|r| r.rung == rung)
    {
        return Err(reject(
            "unknown_rung",
            format!("the commitment lists no {rung:?} rendition"),
        ));
    }
    if evidence_url.len() > MAX_EVIDENCE_URL_BYTES
        || !(evidence_url.starts_with("http://") || evidence_url.starts_with("https://"))
    {
        return Err(reject(
            "bad_evidence_url",
            format!("the evidence URL is http(s), at most {MAX_EVIDENCE_URL_BYTES} bytes"),
        ));
    }
    let orchestrator = commitment.orchestrator;
    let message = commitment_message(&ctx.genesis.chain_id, &commitment);
    if depin_types::verify(&orchestrator, &message, signature).is_err() {
        return Err(reject(
            "bad_signature",
            format!("the commitment is not signed by {orchestrator}"),
        ));
    }
    let is_video_provider = ctx
        .provider(&orchestrator)?
        .is_some_and(|provider| provider.services.iter().any(|o| o.service == SERVICE));
    if !is_video_provider {
        return Err(reject(
            "not_a_video_provider",
            format!("{orchestrator} is not a registered video provider"),
        ));
    }
    let id = dispute_id(&ctx.genesis.chain_id, &commitment, &rung);
    if ctx.get_record(&keys::dispute(&id))?.is_some() {
        return Err(reject(
            "duplicate_dispute",
            format!("rendition {rung} of that segment is already disputed ({id})"),
        ));
    }
    // Verifiers: providers that run ffmpeg (advertised), neither party, by stake and record.
    let mut candidates = Vec::new();
    for provider in ctx.eligible_providers(&[sender, orchestrator])? {
        if ctx.get_record(&keys::ad(&provider.address))?.is_some() {
            let weight =
                provider.stake_weight * u128::from((provider.reputation_ppm / 1000).max(1));
            candidates.push((provider.address, weight));
        }
    }
    let weights: Vec<u128> = candidates.iter().map(|(_, w)| *w).collect();
    let parent = ctx.block.parent;
    let drawn = crate::service::weighted_distinct(&weights, p.dispute_verifiers as usize, |n| {
        Hash::tagged(
            "depin video dispute verifier",
            &[id.as_bytes(), parent.as_bytes(), &n.to_be_bytes()],
        )
    });
    if drawn.len() < 2 {
        return Err(reject(
            "no_verifiers",
            format!(
                "{} video provider(s) besides the two parties: a dispute needs two to decide it",
                drawn.len()
            ),
        ));
    }
    ctx.lock_data_credits(sender, u128::from(p.dispute_bond_dc))?;
    let height = ctx.block.height;
    let verifiers: Vec<DisputeVerifier> = drawn
        .iter()
        .map(|i| DisputeVerifier {
            verifier: candidates[*i].0,
            guilty: None,
        })
        .collect();
    let dispute = Dispute {
        id,
        commitment,
        rung,
        evidence_url,
        bond_dc: u128::from(p.dispute_bond_dc),
        opened: height,
        deadline: height.saturating_add(p.dispute_blocks),
        verifiers,
        outcome: "open".into(),
    };
    schedule(ctx, dispute.deadline, Due::DisputeDeadline(id))?;
    for v in &dispute.verifiers {
        set_duty(ctx, &v.verifier, &id, true)?;
    }
    ctx.put_encoded(&keys::dispute(&id), &dispute);
    Ok(vec![
        VideoEvent::DisputeOpened {
            dispute: id,
            broadcaster: sender,
            orchestrator,
            seq: dispute.commitment.seq,
            rung: dispute.rung.clone(),
            verifiers: dispute.verifiers.iter().map(|v| v.verifier).collect(),
        }
        .to_event(),
    ])
}

fn load_dispute(ctx: &ServiceContext<'_, '_>, id: &Hash) -> Result<Dispute, TxError> {
    ctx.get_decoded::<Dispute>(&keys::dispute(id))?
        .ok_or_else(|| reject("unknown_dispute", format!("no dispute {id} is open")))
}

/// A drawn verifier attests; two alike decide: guilty slashes the orchestrator and refunds
/// the bond, faithful pays the bond to the orchestrator. A verifier outvoted by two is
/// slashed as for a false proof.
fn attest(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    guilty: bool,
) -> Result<Vec<Event>, TxError> {
    let mut dispute = load_dispute(ctx, id)?;
    if dispute.outcome != "open" {
        return Err(reject(
            "dispute_decided",
            format!("dispute {id} is already {}", dispute.outcome),
        ));
    }
    let Some(slot) = dispute.verifiers.iter_mut().find(|v| v.verifier == sender) else {
        return Err(reject(
            "not_drawn",
            format!("{sender} was not drawn to verify dispute {id}"),
        ));
    };
    if slot.guilty.is_some() {
        return Err(reject("already_attested", "a verifier attests once"));
    }
    slot.guilty = Some(guilty);
    set_duty(ctx, &sender, id, false)?;
    let mut events = vec![
        VideoEvent::DisputeAttested {
            dispute: *id,
            verifier: sender,
            guilty,
        }
        .to_event(),
    ];
    let said = |g: bool| {
        dispute
            .verifiers
            .iter()
            .filter(|v| v.guilty == Some(g))
            .map(|v| v.verifier)
            .collect::<Vec<_>>()
    };
    let (guilty_votes, faithful_votes) = (said(true), said(false));
    let orchestrator = dispute.commitment.orchestrator;
    let broadcaster = dispute.commitment.broadcaster;
    let slashing = ctx.genesis.slashing.clone();
    let outvoted = if guilty_votes.len() >= 2 {
        events.push(ctx.slash(
            orchestrator,
            slashing.invalid_proof_bps,
            &format!(
                "video rendition {} of segment {} disputed and found wrong by two verifiers",
                dispute.rung, dispute.commitment.seq
            ),
        )?);
        ctx.refund_data_credits(broadcaster, dispute.bond_dc)?;
        dispute.outcome = "upheld".into();
        events.push(
            VideoEvent::DisputeUpheld {
                dispute: *id,
                orchestrator,
            }
            .to_event(),
        );
        faithful_votes
    } else if faithful_votes.len() >= 2 {
        events.push(ctx.pay_from_escrow(broadcaster, orchestrator, dispute.bond_dc)?);
        dispute.outcome = "rejected".into();
        events.push(
            VideoEvent::DisputeRejected {
                dispute: *id,
                orchestrator,
                bond_dc: dispute.bond_dc,
            }
            .to_event(),
        );
        guilty_votes
    } else {
        Vec::new()
    };
    if dispute.outcome != "open" {
        for v in &dispute.verifiers {
            set_duty(ctx, &v.verifier, id, false)?;
        }
    }
    for verifier in outvoted {
        events.push(ctx.slash(
            verifier,
            slashing.invalid_proof_bps,
            &format!("video dispute attestation outvoted by two: {id}"),
        )?);
    }
    ctx.put_encoded(&keys::dispute(id), &dispute);
    Ok(events)
}

/// At its deadline an undecided dispute refunds the bond (nobody proved anything), slashes
/// the verifiers that stayed silent and is kept as `expired` for another dispute period; a
/// decided one's record goes.
fn dispute_deadline(ctx: &mut ServiceContext<'_, '_>, id: &Hash) -> Result<(), TxError> {
    let Some(mut dispute) = ctx.get_decoded::<Dispute>(&keys::dispute(id))? else {
        return Ok(());
    };
    if dispute.outcome != "open" {
        ctx.delete_record(&keys::dispute(id));
        return Ok(());
    }
    ctx.refund_data_credits(dispute.commitment.broadcaster, dispute.bond_dc)?;
    let slashing = ctx.genesis.slashing.clone();
    for v in &dispute.verifiers {
        set_duty(ctx, &v.verifier, id, false)?;
        if v.guilty.is_none() {
            ctx.slash(
                v.verifier,
                slashing.missed_proof_bps,
                &format!("silent on video dispute {id}"),
            )?;
        }
    }
    dispute.outcome = "expired".into();
    let keep_until = ctx.block.height.saturating_add(params(ctx)?.dispute_blocks);
    schedule(ctx, keep_until, Due::DisputeDeadline(*id))?;
    ctx.put_encoded(&keys::dispute(id), &dispute);
    Ok(())
}

/// Adds or removes a dispute from a verifier's list of disputes to attest.
fn set_duty(
    ctx: &mut ServiceContext<'_, '_>,
    verifier: &Address,
    id: &Hash,
    on: bool,
) -> Result<(), TxError> {
    let key = keys::duties(verifier);
    let mut duties: Vec<Hash> = ctx.get_decoded(&key)?.unwrap_or_default();
    duties.retain(|d| d != id);
    if on {
        duties.push(*id);
    }
    if duties.is_empty() {
        ctx.delete_record(&key);
    } else {
        ctx.put_encoded(&key, &duties);
    }
    Ok(())
}
