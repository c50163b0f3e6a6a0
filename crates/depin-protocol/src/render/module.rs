//! The render service module: advertisements, job submission (escrow, queued pieces),
//! assignment at block end weighted by stake × reputation × score, commitments, the check draw
//! from the next block's entropy, verdicts (a second and third verifier when one fails),
//! consumer approval or rejection (with a dispute check), payment and the timeouts.

use super::job::{
    check_spec, job_escrow_dc, piece_area, piece_count, piece_price_dc, render_blocks,
    verdict_passes,
};
use super::types::*;
use super::{RenderJobSpec, RenderParams, SERVICE};
use crate::block::Event;
use crate::error::TxError;
use crate::service::{ServiceContext, ServiceEvent, ServiceModule, weighted_distinct};
use depin_types::{Address, Amount, Hash, ServiceKind};

/// The pure render rules, registered as the `render` service.
#[derive(Debug, Default, Clone, Copy)]
pub struct RenderModule;

/// Verifiers drawn for one render of a piece at most (one, a second when it fails, a third
/// to break a tie, and replacements for silent ones).
const MAX_VERDICT_SLOTS: usize = 6;

/// Pieces one approval may name.
const MAX_APPROVE_PIECES: usize = 4096;

fn reject(code: &'static str, reason: impl Into<String>) -> TxError {
    TxError::ServiceRejected {
        service: SERVICE,
        code,
        reason: reason.into(),
    }
}

impl ServiceModule for RenderModule {
    fn service(&self) -> ServiceKind {
        SERVICE
    }

    fn event_json(&self, data: &[u8]) -> Option<serde_json::Value> {
        crate::service::event_json::<RenderEvent>(data)
    }

    fn load_params(
        &self,
        genesis: &crate::params::Genesis,
    ) -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::params::GenesisError> {
        crate::services::load_params::<RenderParams>(genesis)
    }

    fn devnet(&self) -> crate::services::DevnetDefaults {
        crate::services::DevnetDefaults::new(1000, 100, &RenderParams::devnet())
    }

    fn max_payload_bytes(&self) -> usize {
        64 * 1024
    }

    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let tx: RenderTx = depin_types::decode_bounded(payload, self.max_payload_bytes())
            .map_err(|e| reject("malformed_render_tx", e.to_string()))?;
        match tx {
            RenderTx::Advertise {
                device,
                build,
                score_pixel_samples_per_s,
            } => advertise(ctx, sender, device, build, score_pixel_samples_per_s),
            RenderTx::SubmitJob(spec) => submit_job(ctx, sender, spec),
            RenderTx::Commit {
                job,
                piece,
                attempt,
                commitment,
            } => commit(ctx, sender, &job, piece, attempt, commitment),
            RenderTx::Verdict {
                job,
                piece,
                attempt,
                verdict,
            } => post_verdict(ctx, sender, &job, piece, attempt, verdict),
            RenderTx::Approve { job, pieces } => approve(ctx, sender, &job, &pieces),
            RenderTx::Reject { job, piece } => consumer_reject(ctx, sender, &job, piece),
            RenderTx::StepAside {
                job,
                piece,
                attempt,
                reason,
            } => step_aside(ctx, sender, &job, piece, attempt, &reason),
        }
    }

    fn end_block(&self, ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
        process_due(ctx)?;
        assign_queued(ctx)
    }

    /// Pieces a provider is rendering and checks it owes: a graceful exit waits for them.
    fn open_obligations(
        &self,
        ctx: &ServiceContext<'_, '_>,
        provider: Address,
    ) -> Result<u64, TxError> {
        let usage = usage_of(ctx, &provider)?;
        Ok((usage.rendering.len() + usage.verifying.len()) as u64)
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

fn params<'s>(ctx: &ServiceContext<'s, '_>) -> Result<&'s RenderParams, TxError> {
    Ok(ctx.params::<RenderParams>()?)
}

fn advertise(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    device: String,
    build: String,
    score_pixel_samples_per_s: u64,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let offers_render = ctx
        .provider(&sender)?
        .is_some_and(|provider| provider.services.iter().any(|o| o.service == SERVICE));
    if !offers_render {
        return Err(reject(
            "not_a_render_provider",
            format!("{sender} is not registered as a render provider"),
        ));
    }
    let limit = p.max_ad_name_bytes as usize;
    for (what, name) in [("device", &device), ("build", &build)] {
        let printable = name.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        if name.is_empty() || name.len() > limit || !printable {
            return Err(reject(
                "bad_ad",
                format!("the {what} name is 1 to {limit} printable ASCII characters"),
            ));
        }
    }
    if score_pixel_samples_per_s == 0 {
        return Err(reject("bad_ad", "a benchmark score is positive"));
    }
    let ad = RenderAd {
        device,
        build: build.clone(),
        score_pixel_samples_per_s,
        height: ctx.block.height,
    };
    ctx.put_encoded(&keys::ad(&sender), &ad);
    Ok(vec![
        RenderEvent::Advertised {
            provider: sender,
            build,
            score_pixel_samples_per_s,
        }
        .to_event(),
    ])
}

/// A render provider that may take work now, with what it advertised and holds.
#[derive(Debug, Clone)]
struct RenderProvider {
    address: Address,
    ad: RenderAd,
    price: u64,
    capacity: u64,
    usage: RenderUsage,
    /// Stake × reputation: the weight of a verifier draw.
    trust_weight: u128,
}

impl RenderProvider {
    /// Stake × reputation × benchmark score: the weight of a renderer draw.
    fn render_weight(&self) -> u128 {
        let score = u128::from(self.ad.score_pixel_samples_per_s / 1000).clamp(1, 1_000_000_000);
        self.trust_weight * score
    }
}

/// Eligible providers (registered for render, staked, above the reputation bar) that have
/// advertised, in registry order, less `excluded`.
fn render_providers(
    ctx: &ServiceContext<'_, '_>,
    excluded: &[Address],
) -> Result<Vec<RenderProvider>, TxError> {
    let mut out = Vec::new();
    for p in ctx.eligible_providers(excluded)? {
        let Some(ad) = ctx.get_decoded::<RenderAd>(&keys::ad(&p.address))? else {
            continue;
        };
        out.push(RenderProvider {
            address: p.address,
            price: p.offer.price_dc_per_unit,
            capacity: p.offer.capacity,
            usage: usage_of(ctx, &p.address)?,
            trust_weight: p.stake_weight * u128::from((p.reputation_ppm / 1000).max(1)),
            ad,
        });
    }
    Ok(out)
}

/// A renderer must have someone of its build (not itself, not the consumer) to check it:
/// pixels are compared exactly, and only the same build reproduces them.
fn has_peer(providers: &[RenderProvider], who: &RenderProvider) -> bool {
    providers
        .iter()
        .any(|o| o.address != who.address && o.ad.build == who.ad.build)
}

fn usage_of(ctx: &ServiceContext<'_, '_>, provider: &Address) -> Result<RenderUsage, TxError> {
    Ok(ctx.get_decoded(&keys::usage(provider))?.unwrap_or_default())
}

/// Adds (`true`) or removes a piece from a provider's render or check list.
fn change_usage(
    ctx: &mut ServiceContext<'_, '_>,
    provider: &Address,
    list: UsageList,
    piece: PieceRef,
    add: bool,
) -> Result<(), TxError> {
    let mut usage = usage_of(ctx, provider)?;
    let entries = match list {
        UsageList::Rendering => &mut usage.rendering,
        UsageList::Verifying => &mut usage.verifying,
    };
    entries.retain(|e| *e != piece);
    if add {
        entries.push(piece);
    }
    if usage == RenderUsage::default() {
        ctx.delete_record(&keys::usage(provider));
    } else {
        ctx.put_encoded(&keys::usage(provider), &usage);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum UsageList {
    Rendering,
    Verifying,
}

fn piece_ref(job: &RenderJob, piece: &Piece) -> PieceRef {
    PieceRef {
        job: job.id,
        piece: piece.index,
        attempt: piece.attempt,
    }
}

fn submit_job(
    ctx: &mut ServiceContext<'_, '_>,
    owner: Address,
    spec: RenderJobSpec,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    check_spec(p, &spec)?;
    let escrow = job_escrow_dc(p, &spec)?;
    let providers = render_providers(ctx, &[owner])?;
    let can_render = providers
        .iter()
        .any(|r| r.price <= spec.max_price_dc_per_gigapixel_sample && has_peer(&providers, r));
    if !can_render {
        return Err(reject(
            "not_enough_providers",
            format!(
                "no render provider at or under {} DC per 10⁹ pixel-samples has a second of its build to check it",
                spec.max_price_dc_per_gigapixel_sample
            ),
        ));
    }
    let counter: u64 = ctx.get_decoded(keys::JOB_COUNTER)?.unwrap_or(0);
    let id = Hash::tagged(
        "depin render job",
        &[
            owner.as_bytes(),
            &ctx.block.height.to_be_bytes(),
            &counter.to_be_bytes(),
            &depin_types::encode(&spec),
        ],
    );
    ctx.lock_data_credits(owner, escrow.total_dc())?;
    let pieces = piece_count(p, &spec);
    let job = RenderJob {
        id,
        owner,
        spec,
        submitted_height: ctx.block.height,
        pieces,
        next_piece: 0,
        approved: 0,
        failed: 0,
        escrow_dc: escrow.frames_dc,
        verify_pool_dc: escrow.verify_pool_dc,
        paid_dc: 0,
        status: RenderJobStatus::Open,
    };
    ctx.put_encoded(
        keys::JOB_COUNTER,
        &counter.checked_add(1).ok_or(TxError::AmountOverflow)?,
    );
    ctx.put_encoded(&keys::job(&id), &job);
    enqueue(
        ctx,
        QueueEntry {
            job: id,
            piece: None,
        },
    )?;
    Ok(vec![
        RenderEvent::JobSubmitted {
            id,
            pieces,
            escrow_dc: escrow.total_dc(),
        }
        .to_event(),
    ])
}

fn load_job(ctx: &ServiceContext<'_, '_>, id: &Hash) -> Result<RenderJob, TxError> {
    ctx.get_decoded(&keys::job(id))?
        .ok_or_else(|| reject("unknown_job", format!("no render job {id}")))
}

fn load_piece(ctx: &ServiceContext<'_, '_>, job: &RenderJob, index: u64) -> Result<Piece, TxError> {
    if index >= job.pieces {
        return Err(reject(
            "unknown_piece",
            format!("job {} has {} pieces, not {index}", job.id, job.pieces),
        ));
    }
    match ctx.get_decoded(&keys::piece(&job.id, index))? {
        Some(piece) => Ok(piece),
        None => Ok(Piece::queued(
            index,
            piece_area(params(ctx)?, &job.spec, index),
        )),
    }
}

fn save(ctx: &mut ServiceContext<'_, '_>, job: &RenderJob, piece: &Piece) {
    ctx.put_encoded(&keys::job(&job.id), job);
    ctx.put_encoded(&keys::piece(&job.id, piece.index), piece);
}

fn enqueue(ctx: &mut ServiceContext<'_, '_>, entry: QueueEntry) -> Result<(), TxError> {
    let tail: u64 = ctx.get_decoded(keys::QUEUE_TAIL)?.unwrap_or(0);
    ctx.put_encoded(&keys::queue(tail), &entry);
    ctx.put_encoded(keys::QUEUE_TAIL, &(tail + 1));
    Ok(())
}

fn schedule(ctx: &mut ServiceContext<'_, '_>, height: u64, due: Due) -> Result<(), TxError> {
    let count: u64 = ctx.get_decoded(&keys::due_count(height))?.unwrap_or(0);
    ctx.put_encoded(&keys::due(height, count), &due);
    ctx.put_encoded(&keys::due_count(height), &(count + 1));
    Ok(())
}

fn due(job: &RenderJob, piece: &Piece, kind: DueKind) -> Due {
    Due {
        job: job.id,
        piece: piece.index,
        attempt: piece.attempt,
        kind,
    }
}

fn commit(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    index: u64,
    attempt: u8,
    commitment: PieceCommitment,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let job = load_job(ctx, id)?;
    let mut piece = load_piece(ctx, &job, index)?;
    if piece.status != PieceStatus::Rendering || piece.attempt != attempt {
        return Err(reject(
            "not_rendering",
            format!("piece {index} of job {id} (attempt {attempt}) takes no commitment"),
        ));
    }
    if piece.renderer != Some(sender) {
        return Err(reject(
            "not_assigned",
            format!("{sender} does not render piece {index} of job {id}"),
        ));
    }
    let height = ctx.block.height;
    if height > piece.deadline {
        return Err(reject(
            "commit_closed",
            format!("piece {index} was due by height {}", piece.deadline),
        ));
    }
    piece.commitment = Some(commitment);
    piece.status = PieceStatus::Committed;
    piece.deadline = height + 1;
    piece.check_wait_until = height + p.verify_blocks;
    schedule(ctx, height + 1, due(&job, &piece, DueKind::DrawChecks))?;
    change_usage(
        ctx,
        &sender,
        UsageList::Rendering,
        piece_ref(&job, &piece),
        false,
    )?;
    save(ctx, &job, &piece);
    Ok(vec![
        RenderEvent::PieceCommitted {
            job: *id,
            piece: index,
            renderer: sender,
        }
        .to_event(),
    ])
}

fn post_verdict(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    index: u64,
    attempt: u8,
    verdict: Verdict,
) -> Result<Vec<Event>, TxError> {
    if verdict.ssim_ppm > 1_000_000 || verdict.psnr_millidb > 100_000 {
        return Err(reject(
            "bad_verdict",
            "SSIM is at most 1,000,000 ppm and PSNR at most 100,000 millidecibels",
        ));
    }
    let p = params(ctx)?;
    let mut job = load_job(ctx, id)?;
    let mut piece = load_piece(ctx, &job, index)?;
    let height = ctx.block.height;
    let passed = verdict_passes(p, &verdict);
    let mut events = vec![
        RenderEvent::VerdictPosted {
            job: *id,
            piece: index,
            verifier: sender,
            passed,
        }
        .to_event(),
    ];
    let disputed = piece.dispute.as_ref().is_some_and(|d| {
        d.attempt == attempt && d.slot.verifier == sender && d.slot.verdict.is_none()
    });
    if disputed {
        let Some(dispute) = piece.dispute.take() else {
            return Err(reject("no_check_open", "no dispute"));
        };
        if height > dispute.slot.deadline {
            return Err(reject(
                "verdict_closed",
                "the dispute's verdict was due earlier",
            ));
        }
        let disputed_ref = PieceRef {
            job: *id,
            piece: index,
            attempt: dispute.attempt,
        };
        change_usage(ctx, &sender, UsageList::Verifying, disputed_ref, false)?;
        events.extend(pay_verifier(ctx, &mut job, sender)?);
        if !passed {
            events.push(ctx.slash(
                dispute.renderer,
                ctx.genesis.slashing.invalid_proof_bps,
                &format!(
                    "render rejected by its consumer and failed a check: job {id} piece {index} ({})",
                    verdict_words(&verdict)
                ),
            )?);
        }
        save(ctx, &job, &piece);
        return Ok(events);
    }
    if piece.status != PieceStatus::Checking || piece.attempt != attempt {
        return Err(reject(
            "no_check_open",
            format!("piece {index} of job {id} (attempt {attempt}) is not being checked"),
        ));
    }
    let Some(slot) = piece
        .verdicts
        .iter_mut()
        .find(|s| s.verifier == sender && s.is_open())
    else {
        return Err(reject(
            "not_a_verifier",
            format!("{sender} was not drawn to check piece {index} of job {id}"),
        ));
    };
    if height > slot.deadline {
        return Err(reject(
            "verdict_closed",
            format!("the verdict was due by height {}", slot.deadline),
        ));
    }
    slot.verdict = Some(verdict);
    change_usage(
        ctx,
        &sender,
        UsageList::Verifying,
        piece_ref(&job, &piece),
        false,
    )?;
    events.extend(decide(ctx, &mut job, &mut piece)?);
    save(ctx, &job, &piece);
    Ok(events)
}

/// Step-asides one render of a piece takes at most: its other verdict slots are kept for
/// verdicts, so stepping aside (which costs no stake) cannot use them all up and leave the
/// honest renderer's work unchecked and unpaid.
const MAX_STEP_ASIDES: usize = 2;
const MAX_STEP_ASIDE_REASON_BYTES: usize = 200;

/// A drawn verifier gives back a check it cannot make: its slot closes with a fault on its
/// record (no stake taken, unlike silence), and another verifier is drawn. A dispute's
/// verifier stepping aside ends the dispute, as its silence would.
fn step_aside(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    index: u64,
    attempt: u8,
    reason: &str,
) -> Result<Vec<Event>, TxError> {
    if reason.len() > MAX_STEP_ASIDE_REASON_BYTES {
        return Err(reject(
            "reason_too_long",
            format!("a step-aside's reason is at most {MAX_STEP_ASIDE_REASON_BYTES} bytes"),
        ));
    }
    let mut job = load_job(ctx, id)?;
    let mut piece = load_piece(ctx, &job, index)?;
    let height = ctx.block.height;
    let fault = format!("stepped aside from checking job {id} piece {index}: {reason}");
    let mut events = vec![
        RenderEvent::VerifierSteppedAside {
            job: *id,
            piece: index,
            verifier: sender,
            reason: reason.to_string(),
        }
        .to_event(),
    ];
    let disputed = piece
        .dispute
        .as_ref()
        .is_some_and(|d| d.attempt == attempt && d.slot.verifier == sender && d.slot.is_open());
    if disputed {
        let Some(dispute) = piece.dispute.take() else {
            return Err(reject("no_check_open", "no dispute"));
        };
        if height > dispute.slot.deadline {
            return Err(reject(
                "verdict_closed",
                "the dispute's verdict was due earlier",
            ));
        }
        let disputed_ref = PieceRef {
            job: *id,
            piece: index,
            attempt: dispute.attempt,
        };
        change_usage(ctx, &sender, UsageList::Verifying, disputed_ref, false)?;
        ctx.record_fault(sender, &fault)?;
        save(ctx, &job, &piece);
        return Ok(events);
    }
    if piece.status != PieceStatus::Checking || piece.attempt != attempt {
        return Err(reject(
            "no_check_open",
            format!("piece {index} of job {id} (attempt {attempt}) is not being checked"),
        ));
    }
    let stepped = piece.verdicts.iter().filter(|s| s.stepped_aside).count();
    let Some(slot) = piece
        .verdicts
        .iter_mut()
        .find(|s| s.verifier == sender && s.is_open())
    else {
        return Err(reject(
            "not_a_verifier",
            format!("{sender} was not drawn to check piece {index} of job {id}"),
        ));
    };
    if height > slot.deadline {
        return Err(reject(
            "verdict_closed",
            format!("the verdict was due by height {}", slot.deadline),
        ));
    }
    if stepped >= MAX_STEP_ASIDES {
        return Err(reject(
            "step_asides_used",
            format!(
                "{stepped} verifiers of this render already stepped aside: post a verdict or be slashed as silent"
            ),
        ));
    }
    slot.stepped_aside = true;
    change_usage(
        ctx,
        &sender,
        UsageList::Verifying,
        piece_ref(&job, &piece),
        false,
    )?;
    ctx.record_fault(sender, &fault)?;
    events.extend(draw_verifier(ctx, &mut job, &mut piece)?);
    save(ctx, &job, &piece);
    Ok(events)
}

fn verdict_words(verdict: &Verdict) -> String {
    format!(
        "SSIM {}.{:06}, PSNR {}.{:03} dB",
        verdict.ssim_ppm / 1_000_000,
        verdict.ssim_ppm % 1_000_000,
        verdict.psnr_millidb / 1000,
        verdict.psnr_millidb % 1000
    )
}

/// Settles a piece's check once its verdicts say enough: one pass with no failure, or two
/// passes, accept it (offered to the consumer); two failures reject it (the renderer is
/// slashed and the piece rendered elsewhere). The losing side of a split is outvoted by two
/// and slashed; the winning side is paid. Otherwise another verifier is drawn.
fn decide(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
    piece: &mut Piece,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let mut passes = Vec::new();
    let mut fails = Vec::new();
    for slot in &piece.verdicts {
        if let Some(verdict) = slot.verdict {
            if verdict_passes(p, &verdict) {
                passes.push(slot.verifier);
            } else {
                fails.push((slot.verifier, verdict));
            }
        }
    }
    let accepted = (fails.is_empty() && !passes.is_empty()) || passes.len() >= 2;
    let rejected = fails.len() >= 2;
    if !accepted && !rejected {
        return draw_verifier(ctx, job, piece);
    }
    let slashing = ctx.genesis.slashing.clone();
    let (id, index) = (job.id, piece.index);
    let mut events = Vec::new();
    if accepted {
        for verifier in passes {
            events.extend(pay_verifier(ctx, job, verifier)?);
        }
        for (verifier, _) in fails {
            events.push(ctx.slash(
                verifier,
                slashing.invalid_proof_bps,
                &format!("render verdict outvoted by two: job {id} piece {index}"),
            )?);
        }
        let height = ctx.block.height;
        piece.status = PieceStatus::Offered;
        piece.deadline = height + p.approval_blocks;
        schedule(ctx, piece.deadline, due(job, piece, DueKind::AutoApprove))?;
        events.push(
            RenderEvent::PieceOffered {
                job: id,
                piece: index,
            }
            .to_event(),
        );
        return Ok(events);
    }
    let worst = fails
        .iter()
        .map(|(_, v)| *v)
        .min_by_key(|v| v.ssim_ppm)
        .unwrap_or(Verdict {
            ssim_ppm: 0,
            psnr_millidb: 0,
        });
    if let Some(renderer) = piece.renderer {
        events.push(ctx.slash(
            renderer,
            slashing.invalid_proof_bps,
            &format!(
                "render failed its check: job {id} piece {index} ({})",
                verdict_words(&worst)
            ),
        )?);
    }
    for (verifier, _) in fails {
        events.extend(pay_verifier(ctx, job, verifier)?);
    }
    for verifier in passes {
        events.push(ctx.slash(
            verifier,
            slashing.invalid_proof_bps,
            &format!("render verdict outvoted by two: job {id} piece {index}"),
        )?);
    }
    events.extend(render_again(ctx, job, piece, "it failed its check")?);
    Ok(events)
}

/// Draws the next verifier of a piece's check among providers of its renderer's build (not
/// the renderer, the consumer, an earlier renderer of it or a verifier already drawn),
/// weighted by stake and reputation. With none to draw it waits a block, until
/// `check_wait_until`; then the piece is rendered again elsewhere, nobody at fault.
fn draw_verifier(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
    piece: &mut Piece,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let height = ctx.block.height;
    let Some(renderer) = piece.renderer else {
        return Ok(Vec::new());
    };
    let build = ctx
        .get_decoded::<RenderAd>(&keys::ad(&renderer))?
        .map(|ad| ad.build);
    let mut excluded = vec![job.owner, renderer];
    excluded.extend(piece.verdicts.iter().map(|s| s.verifier));
    excluded.extend(piece.tried.iter().copied());
    let candidates: Vec<RenderProvider> = if piece.verdicts.len() >= MAX_VERDICT_SLOTS {
        Vec::new()
    } else {
        render_providers(ctx, &excluded)?
            .into_iter()
            .filter(|r| Some(&r.ad.build) == build.as_ref())
            .collect()
    };
    let weights: Vec<u128> = candidates.iter().map(|r| r.trust_weight).collect();
    let seed = piece.check_seed.unwrap_or(ctx.block.parent);
    let draw = weighted_distinct(&weights, 1, |n| {
        Hash::tagged(
            "depin render verifier",
            &[
                seed.as_bytes(),
                ctx.block.parent.as_bytes(),
                &[piece.attempt, piece.verdicts.len() as u8],
                &n.to_be_bytes(),
            ],
        )
    });
    if let Some(verifier) = draw.first().map(|i| candidates[*i].address) {
        let deadline = height + p.verify_blocks;
        piece.verdicts.push(VerdictSlot::new(verifier, deadline));
        schedule(ctx, deadline, due(job, piece, DueKind::VerdictTimeout))?;
        change_usage(
            ctx,
            &verifier,
            UsageList::Verifying,
            piece_ref(job, piece),
            true,
        )?;
        return Ok(vec![
            RenderEvent::VerifierDrawn {
                job: job.id,
                piece: piece.index,
                verifier,
            }
            .to_event(),
        ]);
    }
    if height < piece.check_wait_until {
        schedule(ctx, height + 1, due(job, piece, DueKind::DrawChecks))?;
        return Ok(Vec::new());
    }
    render_again(ctx, job, piece, "no verifier of its build was free")
}

/// Pays a verifier its fee for a verdict on the winning side, from the job's verdict pool
/// while it lasts.
fn pay_verifier(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
    verifier: Address,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let frame = piece_price_dc(
        &job.spec,
        job.spec.height,
        job.spec.max_price_dc_per_gigapixel_sample,
    )
    .ok_or(TxError::AmountOverflow)?;
    let strips = u128::from(super::strips_per_frame(p, &job.spec));
    let fee = (frame / strips)
        .checked_mul(u128::from(p.verify_fee_bps))
        .ok_or(TxError::AmountOverflow)?
        .div_ceil(10_000)
        .min(job.verify_pool_dc);
    if fee == 0 {
        return Ok(Vec::new());
    }
    job.verify_pool_dc -= fee;
    job.paid_dc += fee;
    ctx.pay_for_work(
        job.owner,
        verifier,
        fee,
        p.payment_burn_bps,
        0,
        &keys::epoch_work(ctx.epoch()),
    )
}

/// Puts a piece back in the queue for a renderer it has not had, or gives it up after
/// `max_attempts` renders (its price is refunded when the job ends).
fn render_again(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
    piece: &mut Piece,
    reason: &str,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    if let Some(renderer) = piece.renderer.take() {
        piece.tried.push(renderer);
    }
    piece.commitment = None;
    piece.check_seed = None;
    piece.verdicts.clear();
    piece.attempt = piece.attempt.saturating_add(1);
    let (id, index) = (job.id, piece.index);
    if piece.attempt >= p.max_attempts {
        piece.status = PieceStatus::Failed;
        job.failed += 1;
        let mut events = vec![
            RenderEvent::PieceFailed {
                job: id,
                piece: index,
            }
            .to_event(),
        ];
        events.extend(finish_if_done(ctx, job)?);
        return Ok(events);
    }
    piece.status = PieceStatus::Queued;
    enqueue(
        ctx,
        QueueEntry {
            job: id,
            piece: Some(index),
        },
    )?;
    Ok(vec![
        RenderEvent::PieceRequeued {
            job: id,
            piece: index,
            reason: reason.into(),
        }
        .to_event(),
    ])
}

/// Ends a job whose every piece is approved or given up: what is left of its escrow and its
/// verdict pool goes back to the consumer.
fn finish_if_done(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
) -> Result<Vec<Event>, TxError> {
    if job.status == RenderJobStatus::Done || job.approved + job.failed < job.pieces {
        return Ok(Vec::new());
    }
    let refund = job.escrow_dc + job.verify_pool_dc;
    if refund > 0 {
        ctx.refund_data_credits(job.owner, refund)?;
    }
    job.escrow_dc = 0;
    job.verify_pool_dc = 0;
    job.status = RenderJobStatus::Done;
    Ok(vec![
        RenderEvent::JobDone {
            id: job.id,
            refunded_dc: refund,
        }
        .to_event(),
    ])
}

fn owned_job(
    ctx: &ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
) -> Result<RenderJob, TxError> {
    let job = load_job(ctx, id)?;
    if job.owner != sender {
        return Err(reject(
            "not_owner",
            format!("job {id} belongs to {}", job.owner),
        ));
    }
    Ok(job)
}

fn offered(piece: &Piece, id: &Hash) -> Result<(), TxError> {
    if piece.status != PieceStatus::Offered {
        return Err(reject(
            "not_offered",
            format!(
                "piece {} of job {id} is not checked and waiting for approval",
                piece.index
            ),
        ));
    }
    Ok(())
}

fn approve(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    pieces: &[u64],
) -> Result<Vec<Event>, TxError> {
    let mut job = owned_job(ctx, sender, id)?;
    let mut sorted = pieces.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if pieces.is_empty() || pieces.len() > MAX_APPROVE_PIECES || sorted.len() != pieces.len() {
        return Err(reject(
            "bad_pieces",
            format!("name 1 to {MAX_APPROVE_PIECES} distinct pieces"),
        ));
    }
    let mut events = Vec::new();
    for index in pieces {
        let mut piece = load_piece(ctx, &job, *index)?;
        offered(&piece, id)?;
        events.extend(pay_renderer(ctx, &mut job, &mut piece)?);
        save(ctx, &job, &piece);
    }
    Ok(events)
}

/// Pays an approved piece's renderer its price from the escrow (the burn share destroyed)
/// and counts its megapixel-samples as work, at most what the payment covers at the floor.
fn pay_renderer(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
    piece: &mut Piece,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let Some(renderer) = piece.renderer else {
        return Ok(Vec::new());
    };
    let dc = piece_price_dc(
        &job.spec,
        piece.area.rows(),
        piece.price_dc_per_gigapixel_sample,
    )
    .ok_or(TxError::AmountOverflow)?
    .min(job.escrow_dc);
    let megapixel_samples =
        u128::from(job.spec.width) * u128::from(piece.area.rows()) * u128::from(job.spec.samples)
            / 1_000_000;
    let paid_for = dc * 1000 / u128::from(p.min_price_dc_per_gigapixel_sample.max(1));
    let units = u64::try_from(megapixel_samples.min(paid_for)).unwrap_or(u64::MAX);
    let mut events = ctx.pay_for_work(
        job.owner,
        renderer,
        dc,
        p.payment_burn_bps,
        units,
        &keys::epoch_work(ctx.epoch()),
    )?;
    job.escrow_dc -= dc;
    job.paid_dc += dc;
    job.approved += 1;
    piece.paid_dc = dc;
    piece.status = PieceStatus::Approved;
    events.push(
        RenderEvent::PieceApproved {
            job: job.id,
            piece: piece.index,
            renderer,
            paid_dc: dc,
        }
        .to_event(),
    );
    events.extend(finish_if_done(ctx, job)?);
    Ok(events)
}

/// The consumer turns down an offered piece: it is rendered again by another provider and
/// the rejected render is not paid. A verifier checks the rejected render; only if it fails
/// does the rejection count against the renderer. `max_rejections` a piece at most, so a
/// consumer cannot have frames rendered for ever.
fn consumer_reject(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    index: u64,
) -> Result<Vec<Event>, TxError> {
    let p = params(ctx)?;
    let mut job = owned_job(ctx, sender, id)?;
    let mut piece = load_piece(ctx, &job, index)?;
    offered(&piece, id)?;
    if piece.rejections >= p.max_rejections {
        return Err(reject(
            "rejections_used",
            format!(
                "piece {index} was rejected {} times already, the most a piece may be",
                piece.rejections
            ),
        ));
    }
    if piece.dispute.is_some() {
        return Err(reject(
            "dispute_pending",
            format!("the last rejection of piece {index} is still being checked"),
        ));
    }
    let (Some(renderer), Some(commitment), Some(check_seed)) =
        (piece.renderer, piece.commitment, piece.check_seed)
    else {
        return Err(reject("not_offered", "the piece has no checked render"));
    };
    let mut events = Vec::new();
    let mut excluded = vec![job.owner, renderer];
    excluded.extend(piece.verdicts.iter().map(|s| s.verifier));
    let build = ctx
        .get_decoded::<RenderAd>(&keys::ad(&renderer))?
        .map(|ad| ad.build);
    let candidates: Vec<RenderProvider> = render_providers(ctx, &excluded)?
        .into_iter()
        .filter(|r| Some(&r.ad.build) == build.as_ref())
        .collect();
    let weights: Vec<u128> = candidates.iter().map(|r| r.trust_weight).collect();
    let draw = weighted_distinct(&weights, 1, |n| {
        Hash::tagged(
            "depin render dispute",
            &[
                check_seed.as_bytes(),
                ctx.block.parent.as_bytes(),
                &n.to_be_bytes(),
            ],
        )
    });
    if let Some(verifier) = draw.first().map(|i| candidates[*i].address) {
        let deadline = ctx.block.height + p.verify_blocks;
        piece.dispute = Some(Dispute {
            renderer,
            attempt: piece.attempt,
            commitment,
            check_seed,
            slot: VerdictSlot::new(verifier, deadline),
        });
        schedule(ctx, deadline, due(&job, &piece, DueKind::DisputeTimeout))?;
        change_usage(
            ctx,
            &verifier,
            UsageList::Verifying,
            piece_ref(&job, &piece),
            true,
        )?;
        events.push(
            RenderEvent::VerifierDrawn {
                job: *id,
                piece: index,
                verifier,
            }
            .to_event(),
        );
    }
    piece.rejections += 1;
    events.extend(render_again(
        ctx,
        &mut job,
        &mut piece,
        "rejected by its consumer",
    )?);
    save(ctx, &job, &piece);
    Ok(events)
}

/// Everything that comes due at this height: render and verdict timeouts, check draws and
/// automatic approvals. Entries of pieces that moved on are skipped.
fn process_due(ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
    let height = ctx.block.height;
    let count: u64 = ctx.get_decoded(&keys::due_count(height))?.unwrap_or(0);
    for n in 0..count {
        let key = keys::due(height, n);
        let entry: Option<Due> = ctx.get_decoded(&key)?;
        ctx.delete_record(&key);
        let Some(entry) = entry else { continue };
        let Some(mut job) = ctx.get_decoded::<RenderJob>(&keys::job(&entry.job))? else {
            continue;
        };
        // A dispute may outlive its job (the piece was rendered again and approved); its
        // verifier's timeout still counts.
        if job.status == RenderJobStatus::Done && entry.kind != DueKind::DisputeTimeout {
            continue;
        }
        let mut piece = load_piece(ctx, &job, entry.piece)?;
        if come_due(ctx, &mut job, &mut piece, &entry)? {
            save(ctx, &job, &piece);
        }
    }
    ctx.delete_record(&keys::due_count(height));
    Ok(())
}

/// Acts on one due entry; false when the piece had moved on and nothing changed.
fn come_due(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut RenderJob,
    piece: &mut Piece,
    entry: &Due,
) -> Result<bool, TxError> {
    let height = ctx.block.height;
    let slashing = ctx.genesis.slashing.clone();
    let (id, index) = (job.id, piece.index);
    let current = piece.attempt == entry.attempt;
    match entry.kind {
        DueKind::RenderTimeout => {
            if !current || piece.status != PieceStatus::Rendering || piece.deadline != height {
                return Ok(false);
            }
            if let Some(renderer) = piece.renderer {
                ctx.slash(
                    renderer,
                    slashing.missed_proof_bps,
                    &format!("render not committed in time: job {id} piece {index}"),
                )?;
                let rendered = piece_ref(job, piece);
                change_usage(ctx, &renderer, UsageList::Rendering, rendered, false)?;
            }
            render_again(ctx, job, piece, "its renderer did not commit in time")?;
        }
        DueKind::DrawChecks => {
            if !current {
                return Ok(false);
            }
            match piece.status {
                PieceStatus::Committed => {
                    // The parent is the block that carried the commitment: its hash was not
                    // known when the renderer sent it.
                    piece.check_seed = Some(Hash::tagged(
                        "depin render check seed",
                        &[
                            ctx.block.parent.as_bytes(),
                            id.as_bytes(),
                            &index.to_be_bytes(),
                            &[piece.attempt],
                        ],
                    ));
                    piece.status = PieceStatus::Checking;
                }
                PieceStatus::Checking if piece.verdicts.iter().all(|s| !s.is_open()) => {}
                _ => return Ok(false),
            }
            draw_verifier(ctx, job, piece)?;
        }
        DueKind::VerdictTimeout => {
            if !current || piece.status != PieceStatus::Checking {
                return Ok(false);
            }
            let Some(slot) = piece
                .verdicts
                .iter_mut()
                .find(|s| s.deadline == height && s.is_open())
            else {
                return Ok(false);
            };
            slot.timed_out = true;
            let verifier = slot.verifier;
            ctx.slash(
                verifier,
                slashing.missed_proof_bps,
                &format!("no render verdict in time: job {id} piece {index}"),
            )?;
            change_usage(
                ctx,
                &verifier,
                UsageList::Verifying,
                piece_ref(job, piece),
                false,
            )?;
            draw_verifier(ctx, job, piece)?;
        }
        DueKind::AutoApprove => {
            if !current || piece.status != PieceStatus::Offered || piece.deadline != height {
                return Ok(false);
            }
            pay_renderer(ctx, job, piece)?;
        }
        DueKind::DisputeTimeout => {
            let open = piece.dispute.as_ref().is_some_and(|d| {
                d.attempt == entry.attempt && d.slot.deadline == height && d.slot.verdict.is_none()
            });
            let Some(dispute) = piece.dispute.take().filter(|_| open) else {
                return Ok(false);
            };
            let verifier = dispute.slot.verifier;
            ctx.slash(
                verifier,
                slashing.missed_proof_bps,
                &format!("no render verdict in time: job {id} piece {index} (disputed)"),
            )?;
            let disputed = PieceRef {
                job: id,
                piece: index,
                attempt: dispute.attempt,
            };
            change_usage(ctx, &verifier, UsageList::Verifying, disputed, false)?;
        }
    }
    Ok(true)
}

/// Hands queued pieces to renderers, up to `max_assignments_per_block`: each goes to a free
/// render provider at or under the job's price, not its consumer nor an earlier renderer of
/// it, with a peer of its build to check it, drawn by stake × reputation × score. A job goes
/// back to the end of the queue after each fresh piece, so jobs share the renderers; a piece
/// nobody may take now waits at the end.
fn assign_queued(ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
    // Hooks carry no events: a renderer learns of its piece from the piece's record.
    let p = params(ctx)?;
    let mut head: u64 = ctx.get_decoded(keys::QUEUE_HEAD)?.unwrap_or(0);
    let tail = |ctx: &ServiceContext<'_, '_>| -> Result<u64, TxError> {
        Ok(ctx.get_decoded(keys::QUEUE_TAIL)?.unwrap_or(0))
    };
    if head >= tail(ctx)? {
        return Ok(());
    }
    let mut providers = render_providers(ctx, &[])?;
    let interval = ctx.genesis.chain.block_interval_ms;
    let height = ctx.block.height;
    let mut assigned = 0u32;
    let mut looked = 0u64;
    // A job goes back to the end after each piece and may be seen again in the same block;
    // entries nobody may take are pushed back too, so the looks are bounded.
    let budget = u64::from(p.max_assignments_per_block) * 2;
    while assigned < p.max_assignments_per_block && head < tail(ctx)? && looked < budget {
        if !providers
            .iter()
            .any(|r| (r.usage.rendering.len() as u64) < r.capacity)
        {
            break;
        }
        looked += 1;
        let Some(entry) = ctx.get_decoded::<QueueEntry>(&keys::queue(head))? else {
            head += 1;
            continue;
        };
        ctx.delete_record(&keys::queue(head));
        head += 1;
        let Some(mut job) = ctx.get_decoded::<RenderJob>(&keys::job(&entry.job))? else {
            continue;
        };
        let index = entry.piece.unwrap_or(job.next_piece);
        if job.status == RenderJobStatus::Done || index >= job.pieces {
            continue;
        }
        let mut piece = load_piece(ctx, &job, index)?;
        if piece.status != PieceStatus::Queued {
            continue;
        }
        let free: Vec<usize> = (0..providers.len())
            .filter(|i| {
                let r = &providers[*i];
                (r.usage.rendering.len() as u64) < r.capacity
                    && r.price <= job.spec.max_price_dc_per_gigapixel_sample
                    && r.address != job.owner
                    && !piece.tried.contains(&r.address)
                    && providers.iter().any(|o| {
                        o.address != r.address && o.address != job.owner && o.ad.build == r.ad.build
                    })
            })
            .collect();
        let weights: Vec<u128> = free.iter().map(|i| providers[*i].render_weight()).collect();
        let draw = weighted_distinct(&weights, 1, |n| {
            Hash::tagged(
                "depin render assignment",
                &[
                    ctx.block.parent.as_bytes(),
                    job.id.as_bytes(),
                    &index.to_be_bytes(),
                    &[piece.attempt],
                    &n.to_be_bytes(),
                ],
            )
        });
        let Some(chosen) = draw.first().map(|i| free[*i]) else {
            enqueue(ctx, entry)?;
            continue;
        };
        piece.status = PieceStatus::Rendering;
        let rendered = piece_ref(&job, &piece);
        let renderer = &mut providers[chosen];
        renderer.usage.rendering.push(rendered);
        let (address, price, score) = (
            renderer.address,
            renderer.price,
            renderer.ad.score_pixel_samples_per_s,
        );
        change_usage(ctx, &address, UsageList::Rendering, rendered, true)?;
        piece.renderer = Some(address);
        piece.price_dc_per_gigapixel_sample = price.min(job.spec.max_price_dc_per_gigapixel_sample);
        piece.deadline = height + render_blocks(p, &job.spec, piece.area.rows(), score, interval);
        schedule(
            ctx,
            piece.deadline,
            due(&job, &piece, DueKind::RenderTimeout),
        )?;
        if entry.piece.is_none() {
            job.next_piece += 1;
            if job.next_piece < job.pieces {
                enqueue(ctx, entry)?;
            }
        }
        save(ctx, &job, &piece);
        assigned += 1;
    }
    ctx.put_encoded(keys::QUEUE_HEAD, &head);
    Ok(())
}
