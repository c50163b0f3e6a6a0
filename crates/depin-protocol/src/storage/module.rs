//! The storage service module: opening deals (escrow and placement), confirmations and
//! activation, proof checks with payment, and the epoch sweep (missed proofs, expiry,
//! cancellation, repair marking).

use super::merkle::{self, ChunkProof};
use super::types::*;
use crate::block::Event;
use crate::error::TxError;
use crate::params::BPS_DENOMINATOR;
use crate::service::{ServiceContext, ServiceEvent, ServiceModule, weighted_distinct};
use crate::state::StateError;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash, ServiceKind};

const GIB: u128 = 1 << 30;

pub use crate::service::MIN_PLACEMENT_REPUTATION_PPM;

/// Most proofs or confirmations in one transaction.
pub const MAX_ITEMS_PER_TX: usize = 256;

/// The pure storage rules, registered as the `storage` service.
#[derive(Debug, Default, Clone, Copy)]
pub struct StorageModule;

fn reject(code: &'static str, reason: impl Into<String>) -> TxError {
    TxError::ServiceRejected {
        service: crate::storage::SERVICE,
        code,
        reason: reason.into(),
    }
}

fn get<T: BorshDeserialize>(
    ctx: &ServiceContext<'_, '_>,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    ctx.get_decoded(key)
}

fn put<T: BorshSerialize>(ctx: &mut ServiceContext<'_, '_>, key: &[u8], value: &T) {
    ctx.put_encoded(key, value);
}

/// Data Credits for storing one piece of `piece_bytes` for one epoch (at least 1).
pub fn piece_epoch_dc(piece_bytes: u64, price_dc_per_gib_epoch: u64) -> u128 {
    (u128::from(piece_bytes) * u128::from(price_dc_per_gib_epoch))
        .div_ceil(GIB)
        .max(1)
}

/// The chunk of a piece challenged in `epoch`, from the epoch's seed.
pub fn challenge_chunk(seed: &Hash, piece: &PieceRef, epoch: u64, piece_bytes: u64) -> u64 {
    let digest = Hash::tagged(
        "depin storage challenge",
        &[
            seed.as_bytes(),
            piece.deal.as_bytes(),
            &piece.segment.to_be_bytes(),
            &piece.piece.to_be_bytes(),
            &epoch.to_be_bytes(),
        ],
    );
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_be_bytes(first) % merkle::chunk_count(piece_bytes)
}

/// The challenge seed of `epoch`: the hash of the block before the epoch's first block.
pub fn epoch_seed(ctx: &ServiceContext<'_, '_>, epoch: u64) -> Result<Option<Hash>, StateError> {
    get(ctx, &keys::seed(epoch))
}

impl ServiceModule for StorageModule {
    fn service(&self) -> ServiceKind {
        crate::storage::SERVICE
    }

    fn event_json(&self, data: &[u8]) -> Option<serde_json::Value> {
        crate::service::event_json::<StorageEvent>(data)
    }

    fn load_params(
        &self,
        genesis: &crate::params::Genesis,
    ) -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::params::GenesisError> {
        crate::services::load_params::<super::StorageParams>(genesis)
    }

    fn devnet(&self) -> crate::services::DevnetDefaults {
        crate::services::DevnetDefaults::new(2500, 100, &super::StorageParams::devnet())
    }

    fn max_payload_bytes(&self) -> usize {
        // A transaction's own limit applies first; this only bounds the decoder.
        8 * 1024 * 1024
    }

    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let tx: StorageTx = depin_types::decode_bounded(payload, self.max_payload_bytes())
            .map_err(|e| reject("malformed_storage_tx", e.to_string()))?;
        match tx {
            StorageTx::OpenDeal {
                object_bytes,
                encrypted,
                epochs,
                segments,
            } => open_deal(ctx, sender, object_bytes, encrypted, epochs, segments),
            StorageTx::ConfirmPieces { pieces } => confirm_pieces(ctx, sender, &pieces),
            StorageTx::SubmitProofs { epoch, proofs } => submit_proofs(ctx, sender, epoch, proofs),
            StorageTx::DeleteDeal { deal } => delete_deal(ctx, sender, &deal),
            StorageTx::RepairSegment { deal, segment } => {
                repair_segment(ctx, sender, &deal, segment)
            }
            StorageTx::BeginExit => begin_exit(ctx, sender),
        }
    }

    fn open_obligations(
        &self,
        ctx: &ServiceContext<'_, '_>,
        provider: Address,
    ) -> Result<u64, TxError> {
        let usage: ProviderUsage = get(ctx, &keys::usage(&provider))?.unwrap_or_default();
        Ok(u64::from(usage.piece_count))
    }

    fn end_epoch(&self, ctx: &mut ServiceContext<'_, '_>, epoch: u64) -> Result<(), TxError> {
        end_epoch(ctx, epoch)
    }
}

fn open_deal(
    ctx: &mut ServiceContext<'_, '_>,
    owner: Address,
    object_bytes: u64,
    encrypted: bool,
    epochs: u64,
    segments: Vec<SegmentSpec>,
) -> Result<Vec<Event>, TxError> {
    let params = ctx.params::<super::StorageParams>()?.clone();
    let profile = params.erasure;
    if epochs == 0 || epochs > params.max_deal_epochs {
        return Err(reject(
            "bad_deal",
            format!("epochs must be 1 to {}", params.max_deal_epochs),
        ));
    }
    if segments.is_empty() || segments.len() > params.max_segments_per_deal as usize {
        return Err(reject(
            "bad_deal",
            format!("a deal has 1 to {} segments", params.max_segments_per_deal),
        ));
    }
    let k = u64::from(profile.data_pieces);
    let mut total_segment_bytes = 0u64;
    for (i, s) in segments.iter().enumerate() {
        let min_piece = s.segment_bytes.div_ceil(k).max(1);
        if s.segment_bytes > params.max_segment_bytes
            || s.roots.len() != usize::from(profile.total_pieces)
            || s.piece_bytes < min_piece
            || s.piece_bytes > min_piece + 64
        {
            return Err(reject(
                "bad_deal",
                format!(
                    "segment {i}: at most {} bytes, {} piece roots, pieces of {min_piece} to {} bytes",
                    params.max_segment_bytes,
                    profile.total_pieces,
                    min_piece + 64
                ),
            ));
        }
        total_segment_bytes = total_segment_bytes.saturating_add(s.segment_bytes);
    }
    if total_segment_bytes < object_bytes {
        return Err(reject("bad_deal", "segments are smaller than the object"));
    }

    let number: u64 = get(ctx, keys::NEXT_DEAL)?.unwrap_or(0);
    let id = Hash::tagged(
        "depin storage deal",
        &[&number.to_be_bytes(), &owner.0, ctx.block.parent.as_bytes()],
    );
    put(ctx, keys::NEXT_DEAL, &(number + 1));

    // Place every segment's pieces on distinct providers, reserving their capacity.
    let mut candidates = placement_candidates(ctx, &[])?;
    let mut escrow: u128 = 0;
    let mut infos = Vec::with_capacity(segments.len());
    for (segment_index, spec) in segments.iter().enumerate() {
        let chosen = place_segment(
            ctx,
            &mut candidates,
            &id,
            segment_index as u32,
            spec.piece_bytes,
            usize::from(profile.total_pieces),
        );
        if chosen.len() < usize::from(profile.success_threshold) {
            return Err(reject(
                "not_enough_providers",
                format!(
                    "segment {segment_index} needs {} providers with {} bytes free, {} found",
                    profile.success_threshold,
                    spec.piece_bytes,
                    chosen.len()
                ),
            ));
        }
        let per_piece = piece_epoch_dc(spec.piece_bytes, params.price_dc_per_gib_epoch)
            .checked_mul(u128::from(epochs))
            .ok_or(TxError::AmountOverflow)?;
        for (piece_index, root) in spec.roots.iter().enumerate() {
            let provider = chosen.get(piece_index).copied();
            let r = PieceRef {
                deal: id,
                segment: segment_index as u32,
                piece: piece_index as u16,
            };
            if let Some(p) = provider {
                reserve(ctx, &p, &r, spec.piece_bytes)?;
                escrow = escrow
                    .checked_add(per_piece)
                    .ok_or(TxError::AmountOverflow)?;
            }
            put(
                ctx,
                &keys::piece(&r),
                &Piece {
                    root: *root,
                    provider,
                    state: if provider.is_some() {
                        PieceState::Assigned
                    } else {
                        PieceState::Unplaced
                    },
                    checked_epoch: None,
                    misses: 0,
                    repairer: None,
                    paid_from_epoch: 0,
                },
            );
        }
        infos.push(SegmentInfo {
            segment_bytes: spec.segment_bytes,
            piece_bytes: spec.piece_bytes,
            needs_repair: false,
        });
    }
    let repair_budget = escrow
        .checked_mul(u128::from(params.repair_budget_bps))
        .ok_or(TxError::AmountOverflow)?
        / BPS_DENOMINATOR;
    let total = escrow
        .checked_add(repair_budget)
        .ok_or(TxError::AmountOverflow)?;
    ctx.lock_data_credits(owner, total)?;
    let deal = Deal {
        id,
        owner,
        object_bytes,
        encrypted,
        data_pieces: profile.data_pieces,
        repair_threshold: profile.repair_threshold,
        success_threshold: profile.success_threshold,
        total_pieces: profile.total_pieces,
        segments: infos,
        epochs,
        opened_height: ctx.block.height,
        opened_epoch: ctx.epoch(),
        start_epoch: None,
        end_epoch: None,
        status: DealStatus::Pending,
        escrow_dc: escrow,
        repair_budget_dc: repair_budget,
        paid_dc: 0,
    };
    put(ctx, &keys::deal(&id), &deal);
    put(ctx, &keys::deal_number(number), &id);
    let owned: u64 = get(ctx, &keys::owner_deal_count(&owner))?.unwrap_or(0);
    put(ctx, &keys::owner_deal(&owner, owned), &id);
    put(ctx, &keys::owner_deal_count(&owner), &(owned + 1));
    // Cancelled at the end of its last epoch to activate in, unless active by then.
    list_due(ctx, deal.opened_epoch + params.activation_epochs - 1, &id)?;
    Ok(vec![
        StorageEvent::DealOpened {
            id,
            escrow_dc: total,
        }
        .to_event(),
    ])
}

/// A provider that may take new pieces, with its placement weight and free space.
struct Candidate {
    address: Address,
    weight: u128,
    free_bytes: u64,
}

fn placement_candidates(
    ctx: &ServiceContext<'_, '_>,
    excluded: &[Address],
) -> Result<Vec<Candidate>, TxError> {
    let mut out = Vec::new();
    for p in ctx.eligible_providers(excluded)? {
        let usage: ProviderUsage = get(ctx, &keys::usage(&p.address))?.unwrap_or_default();
        if usage.piece_count as usize >= MAX_PIECES_PER_PROVIDER || is_exiting(ctx, &p.address)? {
            continue;
        }
        out.push(Candidate {
            address: p.address,
            weight: p.stake_weight * u128::from(p.reputation_ppm),
            free_bytes: p.offer.capacity.saturating_sub(usage.committed_bytes),
        });
    }
    Ok(out)
}

/// Picks up to `count` distinct providers with room for a piece, by weighted draws from the
/// block's entropy; takes the space from `candidates` so later segments see it used.
fn place_segment(
    ctx: &ServiceContext<'_, '_>,
    candidates: &mut [Candidate],
    deal: &Hash,
    segment: u32,
    piece_bytes: u64,
    count: usize,
) -> Vec<Address> {
    let eligible: Vec<usize> = (0..candidates.len())
        .filter(|i| candidates[*i].free_bytes >= piece_bytes)
        .collect();
    let weights: Vec<u128> = eligible.iter().map(|i| candidates[*i].weight).collect();
    let picks = weighted_distinct(&weights, count, |draw| {
        Hash::tagged(
            "depin storage placement",
            &[
                ctx.block.parent.as_bytes(),
                deal.as_bytes(),
                &segment.to_be_bytes(),
                &draw.to_be_bytes(),
            ],
        )
    });
    picks
        .into_iter()
        .map(|pick| {
            let index = eligible[pick];
            candidates[index].free_bytes -= piece_bytes;
            candidates[index].address
        })
        .collect()
}

fn reserve(
    ctx: &mut ServiceContext<'_, '_>,
    provider: &Address,
    piece: &PieceRef,
    bytes: u64,
) -> Result<(), TxError> {
    let key = keys::usage(provider);
    let mut usage: ProviderUsage = get(ctx, &key)?.unwrap_or_default();
    usage.committed_bytes = usage
        .committed_bytes
        .checked_add(bytes)
        .ok_or(TxError::AmountOverflow)?;
    let mut held = held_pieces(ctx, provider)?;
    if held.is_empty() {
        let mut holders: Vec<Address> = get(ctx, keys::HOLDERS)?.unwrap_or_default();
        if let Err(at) = holders.binary_search(provider) {
            holders.insert(at, *provider);
            put(ctx, keys::HOLDERS, &holders);
        }
    }
    held.push(*piece);
    usage.piece_count = held.len() as u32;
    put(ctx, &keys::held(provider), &held);
    put(ctx, &key, &usage);
    Ok(())
}

/// The pieces `provider` is assigned or stores, in placement order.
fn held_pieces(ctx: &ServiceContext<'_, '_>, provider: &Address) -> Result<Vec<PieceRef>, TxError> {
    Ok(get(ctx, &keys::held(provider))?.unwrap_or_default())
}

/// Lists a deal for the end of `epoch`, when it must be cancelled or ended: epoch work visits
/// what falls due, not every open deal.
fn list_due(ctx: &mut ServiceContext<'_, '_>, epoch: u64, id: &Hash) -> Result<(), TxError> {
    let count: u64 = get(ctx, &keys::due_count(epoch))?.unwrap_or(0);
    put(ctx, &keys::due_entry(epoch, count), id);
    put(ctx, &keys::due_count(epoch), &(count + 1));
    Ok(())
}

fn release(
    ctx: &mut ServiceContext<'_, '_>,
    provider: &Address,
    piece: &PieceRef,
    bytes: u64,
) -> Result<(), TxError> {
    let key = keys::usage(provider);
    let mut held = held_pieces(ctx, provider)?;
    if let Some(pos) = held.iter().position(|p| p == piece) {
        held.remove(pos);
        let mut usage: ProviderUsage = get(ctx, &key)?.unwrap_or_default();
        usage.committed_bytes = usage.committed_bytes.saturating_sub(bytes);
        usage.piece_count = held.len() as u32;
        if held.is_empty() {
            let mut holders: Vec<Address> = get(ctx, keys::HOLDERS)?.unwrap_or_default();
            if let Ok(at) = holders.binary_search(provider) {
                holders.remove(at);
                put(ctx, keys::HOLDERS, &holders);
            }
            ctx.delete_record(&keys::held(provider));
        } else {
            put(ctx, &keys::held(provider), &held);
        }
        put(ctx, &key, &usage);
    }
    Ok(())
}

fn load_deal(ctx: &ServiceContext<'_, '_>, id: &Hash) -> Result<Deal, TxError> {
    get(ctx, &keys::deal(id))?.ok_or_else(|| reject("unknown_deal", format!("no deal {id}")))
}

fn load_piece(ctx: &ServiceContext<'_, '_>, r: &PieceRef) -> Result<Piece, TxError> {
    get(ctx, &keys::piece(r))?.ok_or_else(|| {
        reject(
            "unknown_piece",
            format!("no piece {}/{} in deal {}", r.segment, r.piece, r.deal),
        )
    })
}

/// Every piece of one segment of a deal, with where it sits.
fn segment_pieces(
    ctx: &ServiceContext<'_, '_>,
    deal: &Deal,
    segment: u32,
) -> Result<Vec<(PieceRef, Piece)>, TxError> {
    (0..deal.total_pieces)
        .map(|piece| {
            let r = PieceRef {
                deal: deal.id,
                segment,
                piece,
            };
            load_piece(ctx, &r).map(|p| (r, p))
        })
        .collect()
}

fn confirm_pieces(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    pieces: &[PieceRef],
) -> Result<Vec<Event>, TxError> {
    if pieces.is_empty() || pieces.len() > MAX_ITEMS_PER_TX {
        return Err(reject(
            "bad_confirmation",
            format!("confirm 1 to {MAX_ITEMS_PER_TX} pieces"),
        ));
    }
    let mut touched: Vec<Hash> = Vec::new();
    let mut events = Vec::new();
    for r in pieces {
        let deal = load_deal(ctx, &r.deal)?;
        if !matches!(deal.status, DealStatus::Pending | DealStatus::Active) {
            return Err(reject(
                "deal_closed",
                format!("deal {} is not open", r.deal),
            ));
        }
        let mut piece = load_piece(ctx, r)?;
        if piece.provider != Some(sender) {
            return Err(reject(
                "not_assigned_provider",
                format!(
                    "piece {}/{} of deal {} is not assigned to the sender",
                    r.segment, r.piece, r.deal
                ),
            ));
        }
        if piece.state != PieceState::Assigned {
            return Err(reject(
                "piece_not_assigned",
                format!(
                    "piece {}/{} of deal {} is not waiting for confirmation",
                    r.segment, r.piece, r.deal
                ),
            ));
        }
        piece.state = PieceState::Stored;
        // Held from now: a repaired piece of an active deal is paid from this epoch on (a
        // pending deal's pieces from its first epoch).
        piece.paid_from_epoch = ctx.epoch();
        let repairer = piece.repairer.take();
        put(ctx, &keys::piece(r), &piece);
        if let Some(repairer) = repairer {
            events.extend(repaired(ctx, r, repairer)?);
        }
        if !touched.contains(&r.deal) {
            touched.push(r.deal);
        }
    }
    for id in touched {
        if let Some(e) = activate_if_ready(ctx, &id)? {
            events.push(e);
        }
    }
    Ok(events)
}

/// Activates a pending deal whose every segment has the success threshold stored: proofs are
/// due from the next epoch, and the long tail of unconfirmed pieces is released (and its
/// escrow share refunded).
fn activate_if_ready(
    ctx: &mut ServiceContext<'_, '_>,
    id: &Hash,
) -> Result<Option<Event>, TxError> {
    let mut deal = load_deal(ctx, id)?;
    if deal.status != DealStatus::Pending {
        return Ok(None);
    }
    for s in 0..deal.segments.len() {
        if healthy_pieces(ctx, &deal, s as u32)? < deal.success_threshold {
            return Ok(None);
        }
    }
    let price = ctx.params::<super::StorageParams>()?.price_dc_per_gib_epoch;
    let mut refund: u128 = 0;
    for (s, info) in deal.segments.clone().iter().enumerate() {
        for (r, mut piece) in segment_pieces(ctx, &deal, s as u32)? {
            if piece.state == PieceState::Assigned {
                piece.state = PieceState::Released;
                if let Some(provider) = piece.provider {
                    release(ctx, &provider, &r, info.piece_bytes)?;
                }
                put(ctx, &keys::piece(&r), &piece);
                refund += piece_epoch_dc(info.piece_bytes, price) * u128::from(deal.epochs);
            }
        }
    }
    let refund = refund.min(deal.escrow_dc);
    deal.escrow_dc -= refund;
    ctx.refund_data_credits(deal.owner, refund)?;
    let start = ctx.epoch() + 1;
    deal.start_epoch = Some(start);
    deal.end_epoch = Some(start + deal.epochs);
    deal.status = DealStatus::Active;
    put(ctx, &keys::deal(id), &deal);
    list_due(ctx, start + deal.epochs - 1, id)?;
    Ok(Some(
        StorageEvent::DealActive {
            id: *id,
            from_epoch: start,
        }
        .to_event(),
    ))
}

fn submit_proofs(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    epoch: u64,
    proofs: Vec<PieceProof>,
) -> Result<Vec<Event>, TxError> {
    if proofs.is_empty() || proofs.len() > MAX_ITEMS_PER_TX {
        return Err(reject(
            "bad_proofs",
            format!("submit 1 to {MAX_ITEMS_PER_TX} proofs"),
        ));
    }
    let current = ctx.epoch();
    if epoch != current {
        return Err(reject(
            "wrong_epoch",
            format!("proofs are for epoch {current}, not {epoch}"),
        ));
    }
    let Some(seed) = epoch_seed(ctx, epoch)? else {
        return Err(reject(
            "no_challenge",
            format!("epoch {epoch} has no challenge seed yet"),
        ));
    };
    let params = ctx.params::<super::StorageParams>()?.clone();
    let mut events = Vec::new();
    for PieceProof { piece: r, proof } in proofs {
        let deal = load_deal(ctx, &r.deal)?;
        if !owes_proofs(&deal, epoch) {
            return Err(reject(
                "deal_not_active",
                format!("deal {} owes no proof in epoch {epoch}", r.deal),
            ));
        }
        let mut piece = load_piece(ctx, &r)?;
        if piece.provider != Some(sender) || piece.state != PieceState::Stored {
            return Err(reject(
                "not_assigned_provider",
                format!(
                    "the sender does not hold piece {}/{} of deal {}",
                    r.segment, r.piece, r.deal
                ),
            ));
        }
        if piece.checked_epoch == Some(epoch) {
            return Err(reject(
                "already_proven",
                format!(
                    "piece {}/{} of deal {} was checked this epoch",
                    r.segment, r.piece, r.deal
                ),
            ));
        }
        let info = deal
            .segments
            .get(r.segment as usize)
            .ok_or_else(|| {
                StateError::Inconsistent(format!("deal {} lacks segment {}", r.deal, r.segment))
            })?
            .clone();
        let index = challenge_chunk(&seed, &r, epoch, info.piece_bytes);
        piece.checked_epoch = Some(epoch);
        if verify(&piece.root, info.piece_bytes, index, &proof) {
            piece.misses = 0;
            // A good proof pays every epoch since the last payment or failed challenge.
            let epochs = payable_epochs(&deal, &piece, epoch + 1);
            piece.paid_from_epoch = epoch + 1;
            put(ctx, &keys::piece(&r), &piece);
            if epochs > 0 {
                let dc = piece_epoch_dc(info.piece_bytes, params.price_dc_per_gib_epoch)
                    .saturating_mul(u128::from(epochs));
                events.push(pay(ctx, &r.deal, sender, dc)?);
                events.push(ctx.record_work(sender, info.piece_bytes.div_ceil(1024) * epochs)?);
            }
        } else {
            // A failed challenge forfeits the unpaid epochs: what cannot be proven is not paid.
            piece.paid_from_epoch = epoch + 1;
            piece.misses = piece.misses.saturating_add(1);
            let lost = piece.misses >= params.missed_proofs_to_lose;
            // Slashed once at the epoch's end, in proportion to the pieces that failed; a
            // piece lost here is no longer seen by the sweep, so it is counted as due now.
            note_fault(ctx, epoch, sender, |f| {
                f.invalid = f.invalid.saturating_add(1);
                if lost {
                    f.due = f.due.saturating_add(1);
                }
            })?;
            if lost {
                events.extend(lose_piece(ctx, &r, &mut piece, info.piece_bytes)?);
            }
            put(ctx, &keys::piece(&r), &piece);
        }
    }
    Ok(events)
}

/// Epochs of `deal`'s term from the piece's first unpaid epoch up to `through` (exclusive).
fn payable_epochs(deal: &Deal, piece: &Piece, through: u64) -> u64 {
    let (Some(start), Some(end)) = (deal.start_epoch, deal.end_epoch) else {
        return 0;
    };
    through
        .min(end)
        .saturating_sub(piece.paid_from_epoch.max(start))
}

/// Whether `deal` owes proofs in `epoch`.
fn owes_proofs(deal: &Deal, epoch: u64) -> bool {
    deal.status == DealStatus::Active
        && deal.start_epoch.is_some_and(|s| s <= epoch)
        && deal.end_epoch.is_some_and(|e| epoch < e)
}

fn verify(root: &Hash, piece_bytes: u64, index: u64, proof: &ChunkProof) -> bool {
    merkle::verify_chunk(root.as_bytes(), piece_bytes, index, proof)
}

/// Pays one piece-epoch from the deal's escrow (what is left of it).
fn pay(
    ctx: &mut ServiceContext<'_, '_>,
    id: &Hash,
    provider: Address,
    dc: u128,
) -> Result<Event, TxError> {
    let mut deal = load_deal(ctx, id)?;
    let dc = dc.min(deal.escrow_dc);
    deal.escrow_dc -= dc;
    deal.paid_dc = deal.paid_dc.saturating_add(dc);
    put(ctx, &keys::deal(id), &deal);
    ctx.pay_from_escrow(deal.owner, provider, dc)
}

/// Marks a piece lost, frees its provider's space, and flags its segment for repair when the
/// healthy pieces fell to the threshold.
fn lose_piece(
    ctx: &mut ServiceContext<'_, '_>,
    r: &PieceRef,
    piece: &mut Piece,
    piece_bytes: u64,
) -> Result<Vec<Event>, TxError> {
    piece.state = PieceState::Lost;
    if let Some(provider) = piece.provider {
        release(ctx, &provider, r, piece_bytes)?;
    }
    put(ctx, &keys::piece(r), piece);
    let mut deal = load_deal(ctx, &r.deal)?;
    let healthy = healthy_pieces(ctx, &deal, r.segment)?;
    if healthy > deal.repair_threshold {
        return Ok(Vec::new());
    }
    Ok(flag_for_repair(ctx, &mut deal, r.segment, healthy)
        .into_iter()
        .collect())
}

/// Flags a segment for repair (once) and saves the deal; the event, if it was not flagged.
fn flag_for_repair(
    ctx: &mut ServiceContext<'_, '_>,
    deal: &mut Deal,
    segment: u32,
    healthy: u16,
) -> Option<Event> {
    let info = deal.segments.get_mut(segment as usize)?;
    if info.needs_repair {
        return None;
    }
    info.needs_repair = true;
    put(ctx, &keys::deal(&deal.id), &*deal);
    Some(
        StorageEvent::SegmentNeedsRepair {
            deal: deal.id,
            segment,
            healthy_pieces: u32::from(healthy),
        }
        .to_event(),
    )
}

fn healthy_pieces(ctx: &ServiceContext<'_, '_>, deal: &Deal, segment: u32) -> Result<u16, TxError> {
    Ok(segment_pieces(ctx, deal, segment)?
        .iter()
        .filter(|(_, p)| p.state == PieceState::Stored)
        .count() as u16)
}

fn delete_deal(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
) -> Result<Vec<Event>, TxError> {
    let deal = load_deal(ctx, id)?;
    if deal.owner != sender {
        return Err(reject(
            "not_deal_owner",
            format!("deal {id} belongs to {}", deal.owner),
        ));
    }
    if !matches!(deal.status, DealStatus::Pending | DealStatus::Active) {
        return Err(reject(
            "deal_closed",
            format!("deal {id} is already closed"),
        ));
    }
    close_deal(ctx, deal, DealStatus::Deleted)
}

/// Releases every piece, refunds unused escrow and the repair budget, and drops the deal from
/// the open list. A deal that never activated first pays the reservation fee to the providers
/// it held capacity on, so reserving capacity costs bytes × time whether or not it is used.
fn close_deal(
    ctx: &mut ServiceContext<'_, '_>,
    mut deal: Deal,
    status: DealStatus,
) -> Result<Vec<Event>, TxError> {
    let mut events = Vec::new();
    let params = ctx.params::<super::StorageParams>()?.clone();
    let never_active = deal.status == DealStatus::Pending;
    let epochs_held = ctx.epoch().saturating_sub(deal.opened_epoch) + 1;
    // An ended deal's last epoch is complete; a deleted one's current epoch is not.
    let served_through = match (status, deal.end_epoch) {
        (DealStatus::Ended, Some(end)) => end,
        _ => ctx.epoch(),
    };
    let mut fee_total: u128 = 0;
    for (s, info) in deal.segments.clone().iter().enumerate() {
        let piece_epoch = piece_epoch_dc(info.piece_bytes, params.price_dc_per_gib_epoch);
        let fee_per_piece = piece_epoch
            .saturating_mul(u128::from(epochs_held))
            .saturating_mul(u128::from(params.reservation_fee_bps))
            / BPS_DENOMINATOR;
        for (r, mut piece) in segment_pieces(ctx, &deal, s as u32)? {
            if matches!(piece.state, PieceState::Assigned | PieceState::Stored) {
                if let Some(provider) = piece.provider {
                    release(ctx, &provider, &r, info.piece_bytes)?;
                    let fee = if never_active {
                        fee_per_piece.min(deal.escrow_dc)
                    } else {
                        0
                    };
                    if fee > 0 {
                        deal.escrow_dc -= fee;
                        deal.paid_dc = deal.paid_dc.saturating_add(fee);
                        fee_total += fee;
                        events.push(ctx.pay_from_escrow(deal.owner, provider, fee)?);
                    }
                    // Epochs held since the piece's last challenge, which it did not fail:
                    // sampling left them unchallenged, not unproven.
                    let epochs = if piece.state == PieceState::Stored && piece.misses == 0 {
                        payable_epochs(&deal, &piece, served_through)
                    } else {
                        0
                    };
                    let dc = piece_epoch
                        .saturating_mul(u128::from(epochs))
                        .min(deal.escrow_dc);
                    if dc > 0 {
                        deal.escrow_dc -= dc;
                        deal.paid_dc = deal.paid_dc.saturating_add(dc);
                        events.push(ctx.pay_from_escrow(deal.owner, provider, dc)?);
                        events.push(
                            ctx.record_work(provider, info.piece_bytes.div_ceil(1024) * epochs)?,
                        );
                    }
                }
                piece.state = PieceState::Released;
                put(ctx, &keys::piece(&r), &piece);
            }
        }
    }
    let refund = deal.escrow_dc.saturating_add(deal.repair_budget_dc);
    ctx.refund_data_credits(deal.owner, refund)?;
    deal.escrow_dc = 0;
    deal.repair_budget_dc = 0;
    deal.status = status;
    put(ctx, &keys::deal(&deal.id), &deal);
    let (id, refund_dc) = (deal.id, refund);
    if fee_total > 0 {
        events.push(
            StorageEvent::ReservationFeePaid {
                id,
                fee_dc: fee_total,
                epochs_held,
            }
            .to_event(),
        );
    }
    let event = match status {
        DealStatus::Deleted => StorageEvent::DealDeleted { id, refund_dc },
        DealStatus::Ended => StorageEvent::DealEnded { id, refund_dc },
        _ => StorageEvent::DealCancelled { id, refund_dc },
    };
    events.push(event.to_event());
    Ok(events)
}

/// After the last block of `epoch`: lose the pieces of providers that left, fail the
/// challenges left unanswered, cancel or end the deals listed for this epoch, slash each provider
/// once, then record the next epoch's seed and draw its challenges. The work grows with the
/// providers, their samples and the deals falling due, not with every open deal.
fn end_epoch(ctx: &mut ServiceContext<'_, '_>, epoch: u64) -> Result<(), TxError> {
    let params = ctx.params::<super::StorageParams>()?.clone();
    lose_pieces_of_departed(ctx, epoch)?;
    let missed = check_challenges(ctx, epoch, &params)?;
    let count: u64 = get(ctx, &keys::due_count(epoch))?.unwrap_or(0);
    for index in 0..count {
        let entry = keys::due_entry(epoch, index);
        let id: Option<Hash> = get(ctx, &entry)?;
        ctx.delete_record(&entry);
        let Some(id) = id else { continue };
        let deal = load_deal(ctx, &id)?;
        match deal.status {
            DealStatus::Pending if epoch + 1 >= deal.opened_epoch + params.activation_epochs => {
                close_deal(ctx, deal, DealStatus::Cancelled)?;
            }
            DealStatus::Active if deal.end_epoch.is_some_and(|end| epoch + 1 >= end) => {
                close_deal(ctx, deal, DealStatus::Ended)?;
            }
            _ => {}
        }
    }
    ctx.delete_record(&keys::due_count(epoch));
    slash_faults(ctx, epoch)?;
    // The hash of the block before the next epoch's first block: unknown until that block
    // is final, and the same for every validator.
    put(ctx, &keys::seed(epoch + 1), &ctx.block.parent);
    draw_challenges(ctx, epoch + 1, &params, missed)
}

/// The challenges of `epoch` nobody answered count as missed (and, repeated, lose the piece);
/// returns the pieces whose last challenge failed, challenged again next epoch.
fn check_challenges(
    ctx: &mut ServiceContext<'_, '_>,
    epoch: u64,
    params: &super::StorageParams,
) -> Result<std::collections::BTreeMap<Address, Vec<PieceRef>>, TxError> {
    let mut failing = std::collections::BTreeMap::new();
    let providers: Vec<Address> = get(ctx, &keys::challenged(epoch))?.unwrap_or_default();
    ctx.delete_record(&keys::challenged(epoch));
    for provider in providers {
        let key = keys::challenges(epoch, &provider);
        let list: Vec<PieceRef> = get(ctx, &key)?.unwrap_or_default();
        ctx.delete_record(&key);
        let mut faults = ProofFaults::default();
        let mut again = Vec::new();
        for r in list {
            let Some(mut piece) = get::<Piece>(ctx, &keys::piece(&r))? else {
                continue;
            };
            if piece.provider != Some(provider) || piece.state != PieceState::Stored {
                continue;
            }
            let deal = load_deal(ctx, &r.deal)?;
            if !owes_proofs(&deal, epoch) {
                continue;
            }
            faults.due = faults.due.saturating_add(1);
            if piece.checked_epoch != Some(epoch) {
                faults.missed = faults.missed.saturating_add(1);
                piece.misses = piece.misses.saturating_add(1);
                piece.checked_epoch = Some(epoch);
                piece.paid_from_epoch = piece.paid_from_epoch.max(epoch + 1);
                if piece.misses >= params.missed_proofs_to_lose {
                    let piece_bytes = segment_piece_bytes(&deal, r.segment)?;
                    lose_piece(ctx, &r, &mut piece, piece_bytes)?;
                    continue;
                }
                put(ctx, &keys::piece(&r), &piece);
            }
            // A valid proof resets the misses: only failures are challenged again.
            if piece.misses > 0 {
                again.push(r);
            }
        }
        if faults.due > 0 {
            note_fault(ctx, epoch, provider, |f| {
                f.due = f.due.saturating_add(faults.due);
                f.missed = f.missed.saturating_add(faults.missed);
            })?;
        }
        if !again.is_empty() {
            failing.insert(provider, again);
        }
    }
    Ok(failing)
}

fn segment_piece_bytes(deal: &Deal, segment: u32) -> Result<u64, TxError> {
    deal.segments
        .get(segment as usize)
        .map(|s| s.piece_bytes)
        .ok_or_else(|| {
            StateError::Inconsistent(format!("deal {} lacks segment {segment}", deal.id)).into()
        })
}

/// A deregistered provider's stored pieces of active deals count as lost at once, so their
/// segments are repaired without waiting for missed proofs.
fn lose_pieces_of_departed(ctx: &mut ServiceContext<'_, '_>, epoch: u64) -> Result<(), TxError> {
    let holders: Vec<Address> = get(ctx, keys::HOLDERS)?.unwrap_or_default();
    for provider in holders {
        if ctx.provider(&provider)?.is_some() {
            continue;
        }
        for r in held_pieces(ctx, &provider)? {
            let mut piece = load_piece(ctx, &r)?;
            let deal = load_deal(ctx, &r.deal)?;
            if piece.state == PieceState::Stored && owes_proofs(&deal, epoch) {
                let piece_bytes = segment_piece_bytes(&deal, r.segment)?;
                lose_piece(ctx, &r, &mut piece, piece_bytes)?;
            }
        }
    }
    Ok(())
}

/// Draws each holder's challenges for `epoch`: `proof_sample_pieces` of its pieces at random
/// from the epoch's seed (all of them when it holds fewer), plus the pieces that failed their
/// last challenge. Only pieces that owe a proof in `epoch` are kept.
fn draw_challenges(
    ctx: &mut ServiceContext<'_, '_>,
    epoch: u64,
    params: &super::StorageParams,
    mut failing: std::collections::BTreeMap<Address, Vec<PieceRef>>,
) -> Result<(), TxError> {
    let Some(seed) = epoch_seed(ctx, epoch)? else {
        return Ok(());
    };
    let sample = params.proof_sample_pieces as usize;
    let holders: Vec<Address> = get(ctx, keys::HOLDERS)?.unwrap_or_default();
    let mut challenged = Vec::new();
    for provider in holders {
        if ctx.provider(&provider)?.is_none() {
            continue;
        }
        let held = held_pieces(ctx, &provider)?;
        let mut picks = failing.remove(&provider).unwrap_or_default();
        picks.extend(sample_pieces(&seed, &provider, epoch, &held, sample));
        let mut seen = std::collections::BTreeSet::new();
        let mut list = Vec::with_capacity(picks.len());
        for r in picks {
            if !seen.insert(r) {
                continue;
            }
            let Some(piece) = get::<Piece>(ctx, &keys::piece(&r))? else {
                continue;
            };
            if piece.provider != Some(provider) || piece.state != PieceState::Stored {
                continue;
            }
            if owes_proofs(&load_deal(ctx, &r.deal)?, epoch) {
                list.push(r);
            }
        }
        if !list.is_empty() {
            put(ctx, &keys::challenges(epoch, &provider), &list);
            challenged.push(provider);
        }
    }
    if !challenged.is_empty() {
        put(ctx, &keys::challenged(epoch), &challenged);
    }
    Ok(())
}

/// Up to `sample` distinct pieces of `pieces`, drawn from the seed (every piece when there
/// are no more than `sample`).
pub fn sample_pieces(
    seed: &Hash,
    provider: &Address,
    epoch: u64,
    pieces: &[PieceRef],
    sample: usize,
) -> Vec<PieceRef> {
    if pieces.len() <= sample {
        return pieces.to_vec();
    }
    // Floyd's sampling: exactly `sample` draws, each index equally likely to be chosen.
    let n = pieces.len() as u64;
    let mut chosen = std::collections::BTreeSet::new();
    for j in (n - sample as u64)..n {
        let digest = Hash::tagged(
            "depin storage sample",
            &[
                seed.as_bytes(),
                &provider.0,
                &epoch.to_be_bytes(),
                &j.to_be_bytes(),
            ],
        );
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        let t = u64::from_be_bytes(first) % (j + 1);
        if !chosen.insert(t as usize) {
            chosen.insert(j as usize);
        }
    }
    chosen.into_iter().map(|i| pieces[i]).collect()
}

/// Adds to `provider`'s proof faults of `epoch`.
fn note_fault(
    ctx: &mut ServiceContext<'_, '_>,
    epoch: u64,
    provider: Address,
    change: impl FnOnce(&mut ProofFaults),
) -> Result<(), TxError> {
    let key = keys::faults(epoch);
    let mut faults: EpochFaults = get(ctx, &key)?.unwrap_or_default();
    change(faults.entry(provider).or_default());
    put(ctx, &key, &faults);
    Ok(())
}

/// Slashes each provider once for the epoch, in proportion to the share of its due pieces
/// that failed: all of them missed costs `missed_proof_bps`, all proven wrong
/// `invalid_proof_bps`. Many tiny pieces no longer multiply the slash of one outage.
fn slash_faults(ctx: &mut ServiceContext<'_, '_>, epoch: u64) -> Result<(), TxError> {
    let key = keys::faults(epoch);
    let faults: EpochFaults = get(ctx, &key)?.unwrap_or_default();
    ctx.delete_record(&key);
    let slashing = ctx.genesis.slashing.clone();
    for (provider, f) in faults {
        if f.missed == 0 && f.invalid == 0 {
            continue;
        }
        let due = u64::from(f.due.max(f.missed.saturating_add(f.invalid)).max(1));
        let weighted = u64::from(f.missed) * u64::from(slashing.missed_proof_bps)
            + u64::from(f.invalid) * u64::from(slashing.invalid_proof_bps);
        let bps = u16::try_from(weighted.div_ceil(due)).unwrap_or(u16::MAX);
        let mut failed = Vec::new();
        if f.missed > 0 {
            failed.push(format!("{} missed", f.missed));
        }
        if f.invalid > 0 {
            failed.push(format!("{} invalid", f.invalid));
        }
        let reason = format!(
            "storage proofs failed in epoch {epoch}: {} of {due} due",
            failed.join(" and ")
        );
        ctx.slash(provider, bps, &reason)?;
    }
    Ok(())
}

/// Places a segment's lost pieces (and repairs that never completed) on new providers, none
/// of which holds (or lost) a piece of the segment. The sender, a holder of a stored piece of
/// the segment, rebuilds them.
fn repair_segment(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    segment: u32,
) -> Result<Vec<Event>, TxError> {
    let deal = load_deal(ctx, id)?;
    if deal.status != DealStatus::Active {
        return Err(reject(
            "deal_not_active",
            format!("deal {id} is not active"),
        ));
    }
    let info = deal
        .segments
        .get(segment as usize)
        .ok_or_else(|| {
            reject(
                "unknown_piece",
                format!("deal {id} has no segment {segment}"),
            )
        })?
        .clone();
    if !info.needs_repair {
        return Err(reject(
            "no_repair_needed",
            format!("segment {segment} of deal {id} is healthy"),
        ));
    }
    let mut holders = Vec::new();
    let mut stored_holders: Vec<Address> = Vec::new();
    let mut to_place = Vec::new();
    let activation_epochs = ctx.params::<super::StorageParams>()?.activation_epochs;
    for (r, piece) in segment_pieces(ctx, &deal, segment)? {
        // A repair whose new provider never confirmed within the activation window.
        let stalled = piece.state == PieceState::Assigned
            && piece.repairer.is_some()
            && piece
                .checked_epoch
                .is_some_and(|assigned| ctx.epoch() >= assigned + activation_epochs);
        // Providers that hold a piece of the segment, or lost one, get no other piece of it.
        if let Some(provider) = piece.provider
            && matches!(
                piece.state,
                PieceState::Assigned | PieceState::Stored | PieceState::Lost
            )
        {
            holders.push(provider);
            if piece.state == PieceState::Stored {
                stored_holders.push(provider);
            }
        }
        // A piece on a provider leaving by graceful exit moves while it is still there.
        let leaving = piece.state == PieceState::Stored
            && match piece.provider {
                Some(p) => is_exiting(ctx, &p)?,
                None => false,
            };
        if piece.state == PieceState::Lost || stalled || leaving {
            to_place.push((r, piece));
        }
    }
    if to_place.is_empty() {
        return Err(reject("no_repair_needed", "no lost piece to replace"));
    }
    // Rebuilding takes a stored piece of the segment and pays from the repair budget: only a
    // holder may claim it, and a stalled repair passes to another holder where there is one.
    if !stored_holders.contains(&sender) {
        return Err(reject(
            "not_a_holder",
            format!("only a provider holding a stored piece of segment {segment} may repair it"),
        ));
    }
    let stalled_by_sender = to_place
        .iter()
        .any(|(_, p)| p.state == PieceState::Assigned && p.repairer == Some(sender));
    if stalled_by_sender && stored_holders.iter().any(|h| *h != sender) {
        return Err(reject(
            "repair_passed_on",
            "the sender's repair stalled: another holder takes it over",
        ));
    }
    let price_dc_per_gib_epoch = ctx.params::<super::StorageParams>()?.price_dc_per_gib_epoch;
    let mut events = Vec::new();
    let mut candidates = placement_candidates(ctx, &holders)?;
    let chosen = place_segment(
        ctx,
        &mut candidates,
        id,
        segment ^ 0x8000_0000,
        info.piece_bytes,
        to_place.len(),
    );
    if chosen.is_empty() {
        return Err(reject(
            "not_enough_providers",
            "no provider can take a repaired piece",
        ));
    }
    for ((r, mut piece), provider) in to_place.into_iter().zip(chosen) {
        if matches!(piece.state, PieceState::Assigned | PieceState::Stored)
            && let Some(old) = piece.provider
        {
            release(ctx, &old, &r, info.piece_bytes)?;
            // A leaving provider is paid for the epochs it held the piece and did not fail.
            let epochs = if piece.state == PieceState::Stored && piece.misses == 0 {
                payable_epochs(&deal, &piece, ctx.epoch())
            } else {
                0
            };
            if epochs > 0 {
                let dc = piece_epoch_dc(info.piece_bytes, price_dc_per_gib_epoch)
                    .saturating_mul(u128::from(epochs));
                events.push(pay(ctx, id, old, dc)?);
                events.push(ctx.record_work(old, info.piece_bytes.div_ceil(1024) * epochs)?);
            }
        }
        reserve(ctx, &provider, &r, info.piece_bytes)?;
        piece.provider = Some(provider);
        piece.state = PieceState::Assigned;
        piece.misses = 0;
        // Until confirmed, a repaired piece's `checked_epoch` is the epoch it was placed in.
        piece.checked_epoch = Some(ctx.epoch());
        piece.repairer = Some(sender);
        put(ctx, &keys::piece(&r), &piece);
    }
    events.push(StorageEvent::RepairStarted { deal: *id, segment }.to_event());
    Ok(events)
}

/// A repaired piece is stored again: pay its repairer one piece-epoch from the repair budget
/// and clear the segment's repair flag once it is healthy.
fn repaired(
    ctx: &mut ServiceContext<'_, '_>,
    r: &PieceRef,
    repairer: Address,
) -> Result<Vec<Event>, TxError> {
    let mut deal = load_deal(ctx, &r.deal)?;
    let Some(info) = deal.segments.get(r.segment as usize).cloned() else {
        return Ok(Vec::new());
    };
    let dc = piece_epoch_dc(
        info.piece_bytes,
        ctx.params::<super::StorageParams>()?.price_dc_per_gib_epoch,
    )
    .min(deal.repair_budget_dc);
    deal.repair_budget_dc -= dc;
    let healthy = healthy_pieces(ctx, &deal, r.segment)?;
    let mut leaving = false;
    for (_, piece) in segment_pieces(ctx, &deal, r.segment)? {
        if piece.state == PieceState::Stored
            && let Some(p) = piece.provider
        {
            leaving |= is_exiting(ctx, &p)?;
        }
    }
    if healthy > deal.repair_threshold
        && !leaving
        && let Some(segment) = deal.segments.get_mut(r.segment as usize)
    {
        segment.needs_repair = false;
    }
    put(ctx, &keys::deal(&r.deal), &deal);
    let mut events = Vec::new();
    if dc > 0 {
        events.push(ctx.pay_from_escrow(deal.owner, repairer, dc)?);
    }
    Ok(events)
}

/// Whether `provider`'s current registration is leaving by graceful exit.
pub fn is_exiting(ctx: &ServiceContext<'_, '_>, provider: &Address) -> Result<bool, TxError> {
    let Some(registered_height) = get::<u64>(ctx, &keys::exiting(provider))? else {
        return Ok(false);
    };
    Ok(ctx
        .provider(provider)?
        .is_some_and(|p| p.registered_height == registered_height))
}

/// Starts the sender's graceful exit (Storj's): no new pieces; the pieces of pending deals
/// it has not confirmed are released, and every segment of an active deal it holds a piece
/// of is flagged so a holder moves that piece to another provider. Once it holds nothing it
/// deregisters without forfeiting stake. Sending it again flags the segments of deals that
/// activated since.
fn begin_exit(ctx: &mut ServiceContext<'_, '_>, sender: Address) -> Result<Vec<Event>, TxError> {
    let Some(provider) = ctx.provider(&sender)? else {
        return Err(reject(
            "not_a_provider",
            "only a registered provider can exit",
        ));
    };
    // Sent again, it flags what became due since (a deal that activated meanwhile).
    put(ctx, &keys::exiting(&sender), &provider.registered_height);
    let held = held_pieces(ctx, &sender)?;
    let mut events = vec![
        StorageEvent::ExitStarted {
            provider: sender,
            pieces: held.len() as u32,
        }
        .to_event(),
    ];
    for r in held {
        let mut deal = load_deal(ctx, &r.deal)?;
        let mut piece = load_piece(ctx, &r)?;
        let Some(info) = deal.segments.get(r.segment as usize).cloned() else {
            continue;
        };
        if deal.status == DealStatus::Pending {
            if piece.state == PieceState::Assigned {
                release(ctx, &sender, &r, info.piece_bytes)?;
                piece.state = PieceState::Released;
                put(ctx, &keys::piece(&r), &piece);
            }
            continue;
        }
        if !info.needs_repair {
            let healthy = healthy_pieces(ctx, &deal, r.segment)?;
            events.extend(flag_for_repair(ctx, &mut deal, r.segment, healthy));
        }
    }
    Ok(events)
}
