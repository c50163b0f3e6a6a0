//! The compute service module: job submission (escrow and deterministic assignment),
//! commit-reveal of replica results, settlement by majority (payment by fuel, slashing of
//! dissenters and silent replicas, retry or refund), and the epoch sweep of expired jobs.

use super::types::*;
use crate::block::Event;
use crate::error::TxError;
use crate::service::{ServiceContext, ServiceEvent, ServiceModule, weighted_distinct};
use depin_types::{Address, Amount, Hash, ServiceKind};
use std::collections::BTreeMap;

/// Fuel units a price is quoted for.
pub const FUEL_PER_PRICE_UNIT: u128 = 1_000_000;

/// The pure compute rules, registered as the `compute` service.
#[derive(Debug, Default, Clone, Copy)]
pub struct ComputeModule;

fn reject(code: &'static str, reason: impl Into<String>) -> TxError {
    TxError::ServiceRejected {
        service: crate::compute::SERVICE,
        code,
        reason: reason.into(),
    }
}

/// Data Credits for `fuel` at `price_dc_per_mfuel` (at least 1 for any fuel burned).
pub fn fuel_cost_dc(fuel: u64, price_dc_per_mfuel: u64) -> u128 {
    if fuel == 0 || price_dc_per_mfuel == 0 {
        return 0;
    }
    (u128::from(fuel) * u128::from(price_dc_per_mfuel))
        .div_ceil(FUEL_PER_PRICE_UNIT)
        .max(1)
}

impl ServiceModule for ComputeModule {
    fn service(&self) -> ServiceKind {
        crate::compute::SERVICE
    }

    fn event_json(&self, data: &[u8]) -> Option<serde_json::Value> {
        crate::service::event_json::<ComputeEvent>(data)
    }

    fn load_params(
        &self,
        genesis: &crate::params::Genesis,
    ) -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::params::GenesisError> {
        crate::services::load_params::<super::ComputeParams>(genesis)
    }

    fn devnet(&self) -> crate::services::DevnetDefaults {
        crate::services::DevnetDefaults::new(2000, 100, &super::ComputeParams::devnet())
    }

    fn max_payload_bytes(&self) -> usize {
        256 * 1024
    }

    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let tx: ComputeTx = depin_types::decode_bounded(payload, self.max_payload_bytes())
            .map_err(|e| reject("malformed_compute_tx", e.to_string()))?;
        match tx {
            ComputeTx::SubmitJob(spec) => submit_job(ctx, sender, spec),
            ComputeTx::Commit { job, commitment } => commit(ctx, sender, &job, commitment),
            ComputeTx::Reveal { job, outcome, salt } => reveal(ctx, sender, &job, outcome, &salt),
            ComputeTx::Finalize { job } => {
                let job = load_job(ctx, &job)?;
                if job_closed(&job) {
                    return Err(reject("job_closed", format!("job {} is settled", job.id)));
                }
                if ctx.block.height <= job.reveal_deadline {
                    return Err(reject(
                        "too_early",
                        format!(
                            "job {} reveals until height {}",
                            job.id, job.reveal_deadline
                        ),
                    ));
                }
                settle(ctx, job)
            }
        }
    }

    fn end_epoch(&self, ctx: &mut ServiceContext<'_, '_>, epoch: u64) -> Result<(), TxError> {
        sweep_expired(ctx, epoch)
    }

    /// The jobs a provider is a replica of: a graceful exit for compute is waiting until
    /// they settle (at most the job's deadlines).
    fn open_obligations(
        &self,
        ctx: &ServiceContext<'_, '_>,
        provider: Address,
    ) -> Result<u64, TxError> {
        let usage: ComputeUsage = ctx
            .get_decoded(&keys::usage(&provider))?
            .unwrap_or_default();
        Ok(usage.running.len() as u64)
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

fn load_job(ctx: &ServiceContext<'_, '_>, id: &Hash) -> Result<Job, TxError> {
    ctx.get_decoded(&keys::job(id))?
        .ok_or_else(|| reject("unknown_job", format!("no job {id}")))
}

fn job_closed(job: &Job) -> bool {
    matches!(job.status, JobStatus::Done | JobStatus::Failed)
}

fn check_spec(ctx: &ServiceContext<'_, '_>, spec: &JobSpec) -> Result<(), TxError> {
    let p = ctx.params::<super::ComputeParams>()?;
    let bad = |reason: String| Err(reject("bad_job", reason));
    if spec.replicas == 0 || spec.replicas > p.max_replicas {
        return bad(format!("replicas must be 1..={}", p.max_replicas));
    }
    if spec.max_price_dc_per_mfuel < p.min_price_dc_per_mfuel {
        return Err(reject(
            "price_below_floor",
            format!(
                "a job pays at least {} DC per million fuel, the network's floor",
                p.min_price_dc_per_mfuel
            ),
        ));
    }
    if spec.max_fuel == 0 || spec.max_fuel > p.max_fuel {
        return bad(format!("max fuel must be 1..={}", p.max_fuel));
    }
    if spec.max_memory_mib == 0 || spec.max_memory_mib > p.max_memory_mib {
        return bad(format!("max memory must be 1..={} MiB", p.max_memory_mib));
    }
    if spec.deadline_blocks < p.min_deadline_blocks || spec.deadline_blocks > p.max_deadline_blocks
    {
        return bad(format!(
            "deadline must be {}..={} blocks",
            p.min_deadline_blocks, p.max_deadline_blocks
        ));
    }
    if spec.module_bytes == 0 || spec.module_bytes > p.max_module_bytes {
        return bad(format!("module must be 1..={} bytes", p.max_module_bytes));
    }
    if spec.input.is_none() != (spec.input_bytes == 0) || spec.input_bytes > p.max_input_bytes {
        return bad(format!(
            "an input is 1..={} bytes, and no input is 0",
            p.max_input_bytes
        ));
    }
    if spec.stdin.is_some() && spec.input.is_none() {
        return bad("stdin names a file of the input, and there is no input".into());
    }
    let strings = spec
        .args
        .iter()
        .chain(spec.env.iter().flat_map(|(k, v)| [k, v]))
        .chain(spec.stdin.iter());
    let mut count = 0;
    for s in strings {
        count += 1;
        if s.len() > MAX_JOB_STRING_BYTES || s.contains('\0') {
            return bad(format!(
                "arguments and environment strings are at most {MAX_JOB_STRING_BYTES} bytes, without NUL"
            ));
        }
    }
    if count > MAX_JOB_STRINGS {
        return bad(format!(
            "at most {MAX_JOB_STRINGS} argument and environment strings"
        ));
    }
    Ok(())
}

fn submit_job(
    ctx: &mut ServiceContext<'_, '_>,
    owner: Address,
    spec: JobSpec,
) -> Result<Vec<Event>, TxError> {
    check_spec(ctx, &spec)?;
    let mut counter: u64 = ctx.get_decoded(keys::JOB_COUNTER)?.unwrap_or(0);
    let id = Hash::tagged(
        "depin compute job",
        &[
            owner.as_bytes(),
            &ctx.block.height.to_be_bytes(),
            &counter.to_be_bytes(),
            &depin_types::encode(&spec),
        ],
    );
    counter = counter.checked_add(1).ok_or(TxError::AmountOverflow)?;
    let escrow = u128::from(spec.replicas)
        .checked_mul(fuel_cost_dc(spec.max_fuel, spec.max_price_dc_per_mfuel))
        .ok_or(TxError::AmountOverflow)?;
    // The owner is never a replica of its own job.
    let assigned = assign(ctx, &id, 0, &spec, &[owner])?;
    if assigned.len() < usize::from(spec.replicas) {
        return Err(reject(
            "not_enough_providers",
            format!(
                "{} replicas asked, {} compute providers free at that price",
                spec.replicas,
                assigned.len()
            ),
        ));
    }
    ctx.lock_data_credits(owner, escrow)?;
    let height = ctx.block.height;
    let commit_deadline = height + spec.deadline_blocks;
    let job = Job {
        id,
        owner,
        replicas: assigned
            .iter()
            .map(|provider| Replica {
                provider: *provider,
                commitment: None,
                revealed: None,
            })
            .collect(),
        spec,
        submitted_height: height,
        round: 0,
        excluded: Vec::new(),
        commit_deadline,
        reveal_deadline: commit_deadline + ctx.params::<super::ComputeParams>()?.reveal_blocks,
        status: JobStatus::Committing,
        escrow_dc: escrow,
        paid_dc: 0,
        accepted: None,
        agreed: Vec::new(),
    };
    occupy(ctx, &job)?;
    ctx.put_encoded(keys::JOB_COUNTER, &counter);
    list_for_sweep(ctx, &job)?;
    ctx.put_encoded(&keys::job(&id), &job);
    Ok(vec![
        ComputeEvent::JobSubmitted {
            id,
            escrow_dc: escrow,
            replicas: assigned,
        }
        .to_event(),
    ])
}

/// Draws the replicas of a job's round from the block's entropy, weighted by stake and free
/// slots, among eligible providers (a provider below the reputation bar is jailed) offering
/// compute at or under the job's price, and not excluded.
fn assign(
    ctx: &ServiceContext<'_, '_>,
    job: &Hash,
    round: u8,
    spec: &JobSpec,
    excluded: &[Address],
) -> Result<Vec<Address>, TxError> {
    let mut candidates = Vec::new();
    let mut weights = Vec::new();
    let eligible = ctx.eligible_providers(excluded)?;
    for p in eligible {
        if p.offer.price_dc_per_unit > spec.max_price_dc_per_mfuel {
            continue;
        }
        let usage: ComputeUsage = ctx
            .get_decoded(&keys::usage(&p.address))?
            .unwrap_or_default();
        let free_slots = p.offer.capacity.saturating_sub(usage.running.len() as u64);
        if free_slots == 0 {
            continue;
        }
        candidates.push(p.address);
        weights.push(p.stake_weight * u128::from(free_slots.min(1_000_000)));
    }
    let picks = weighted_distinct(&weights, usize::from(spec.replicas), |draw| {
        Hash::tagged(
            "depin compute assignment",
            &[
                ctx.block.parent.as_bytes(),
                job.as_bytes(),
                &[round],
                &draw.to_be_bytes(),
            ],
        )
    });
    Ok(picks.into_iter().map(|i| candidates[i]).collect())
}

/// Takes a slot on each replica's provider.
fn occupy(ctx: &mut ServiceContext<'_, '_>, job: &Job) -> Result<(), TxError> {
    for replica in &job.replicas {
        let key = keys::usage(&replica.provider);
        let mut usage: ComputeUsage = ctx.get_decoded(&key)?.unwrap_or_default();
        usage.running.push(job.id);
        ctx.put_encoded(&key, &usage);
    }
    Ok(())
}

/// Gives the replicas' slots back.
fn vacate(ctx: &mut ServiceContext<'_, '_>, job: &Job) -> Result<(), TxError> {
    for replica in &job.replicas {
        let key = keys::usage(&replica.provider);
        let mut usage: ComputeUsage = ctx.get_decoded(&key)?.unwrap_or_default();
        usage.running.retain(|id| *id != job.id);
        ctx.put_encoded(&key, &usage);
    }
    Ok(())
}

fn replica_of(job: &Job, sender: &Address) -> Result<usize, TxError> {
    job.replicas
        .iter()
        .position(|r| r.provider == *sender)
        .ok_or_else(|| {
            reject(
                "not_assigned",
                format!("{sender} is not a replica of job {}", job.id),
            )
        })
}

fn commit(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    commitment: Hash,
) -> Result<Vec<Event>, TxError> {
    let mut job = load_job(ctx, id)?;
    if job.status != JobStatus::Committing || ctx.block.height > job.commit_deadline {
        return Err(reject(
            "commit_closed",
            format!("job {id} takes no more commitments"),
        ));
    }
    let index = replica_of(&job, &sender)?;
    if job.replicas[index].commitment.is_some() {
        return Err(reject("already_committed", format!("job {id}")));
    }
    job.replicas[index].commitment = Some(commitment);
    if job.replicas.iter().all(|r| r.commitment.is_some()) {
        // Everyone is bound: reveals open now, and the reveal window starts now.
        job.status = JobStatus::Revealing;
        let listed = sweep_epoch(ctx, &job);
        job.reveal_deadline =
            ctx.block.height + ctx.params::<super::ComputeParams>()?.reveal_blocks;
        if sweep_epoch(ctx, &job) != listed {
            list_for_sweep(ctx, &job)?;
        }
    }
    ctx.put_encoded(&keys::job(id), &job);
    Ok(vec![
        ComputeEvent::JobCommitted {
            id: *id,
            provider: sender,
        }
        .to_event(),
    ])
}

fn reveal(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    id: &Hash,
    outcome: JobOutcome,
    salt: &Hash,
) -> Result<Vec<Event>, TxError> {
    let mut job = load_job(ctx, id)?;
    let height = ctx.block.height;
    let open = match job.status {
        JobStatus::Revealing => height <= job.reveal_deadline,
        JobStatus::Committing => height > job.commit_deadline && height <= job.reveal_deadline,
        JobStatus::Done | JobStatus::Failed => false,
    };
    if !open {
        return Err(reject(
            "reveal_closed",
            format!("job {id} takes no reveals at height {height}"),
        ));
    }
    let index = replica_of(&job, &sender)?;
    let replica = &job.replicas[index];
    let Some(committed) = replica.commitment else {
        return Err(reject("not_committed", format!("job {id}: commit first")));
    };
    if replica.revealed.is_some() {
        return Err(reject("already_revealed", format!("job {id}")));
    }
    if commitment(id, &sender, &outcome, salt) != committed {
        return Err(reject(
            "commitment_mismatch",
            "the result and salt do not match the commitment",
        ));
    }
    if outcome.fuel_used > job.spec.max_fuel {
        return Err(reject(
            "fuel_over_limit",
            format!(
                "{} fuel used, the job allows {}",
                outcome.fuel_used, job.spec.max_fuel
            ),
        ));
    }
    if outcome.exit.is_job_fault() && outcome.fuel_used != 0 {
        return Err(reject(
            "bad_outcome",
            "a job that could not run, or ran to its deadline, reports no fuel",
        ));
    }
    job.replicas[index].revealed = Some(outcome);
    job.status = JobStatus::Revealing;
    let mut events = vec![
        ComputeEvent::JobRevealed {
            id: *id,
            provider: sender,
        }
        .to_event(),
    ];
    let everyone_revealed = job
        .replicas
        .iter()
        .filter(|r| r.commitment.is_some())
        .all(|r| r.revealed.is_some());
    let everyone_committed = job.replicas.iter().all(|r| r.commitment.is_some());
    if everyone_revealed && everyone_committed {
        events.extend(settle(ctx, job)?);
    } else {
        ctx.put_encoded(&keys::job(id), &job);
    }
    Ok(events)
}

/// Settles a round: the majority result (more than half the replicas) is accepted and its
/// replicas paid by fuel at their own price; dissenters and silent replicas are slashed.
/// Without a majority the job is retried on fresh providers, or refunded.
fn settle(ctx: &mut ServiceContext<'_, '_>, mut job: Job) -> Result<Vec<Event>, TxError> {
    let mut tally: BTreeMap<JobOutcome, Vec<Address>> = BTreeMap::new();
    for r in &job.replicas {
        if let Some(outcome) = r.revealed {
            tally.entry(outcome).or_default().push(r.provider);
        }
    }
    let needed = job.replicas.len() / 2 + 1;
    let majority = tally
        .iter()
        .find(|(_, who)| who.len() >= needed)
        .map(|(outcome, who)| (*outcome, who.clone()));
    let slashing = ctx.genesis.slashing.clone();
    let mut events = Vec::new();
    let id = job.id;
    for r in &job.replicas {
        match (&r.revealed, &majority) {
            (None, _) => events.push(ctx.slash(
                r.provider,
                slashing.missed_proof_bps,
                &format!("no compute result revealed: job {id} round {}", job.round),
            )?),
            (Some(outcome), Some((accepted, _))) if outcome != accepted => events.push(ctx.slash(
                r.provider,
                slashing.invalid_proof_bps,
                &format!("compute result outvoted: job {id} round {}", job.round),
            )?),
            _ => {}
        }
    }
    vacate(ctx, &job)?;
    match majority {
        Some((accepted, agreed)) => {
            // A job the consumer got wrong (or that ran to its deadline) pays each agreeing
            // replica its share of the genesis fraction of the escrow for the attempt; a job
            // that ran pays the fuel used at each replica's own price.
            let attempt_share = if accepted.exit.is_job_fault() {
                let p = ctx.params::<super::ComputeParams>()?;
                let fee_bps = if accepted.exit == ExitKind::DeadlineExceeded {
                    p.deadline_fee_bps
                } else {
                    p.attempt_fee_bps
                };
                let share = job
                    .escrow_dc
                    .checked_mul(u128::from(fee_bps))
                    .ok_or(TxError::AmountOverflow)?
                    / 10_000
                    / (job.replicas.len().max(1) as u128);
                Some(share)
            } else {
                None
            };
            for provider in &agreed {
                let dc = match attempt_share {
                    Some(share) => share,
                    None => {
                        let price = ctx
                            .provider(provider)?
                            .and_then(|p| {
                                p.services
                                    .iter()
                                    .find(|o| o.service == crate::compute::SERVICE)
                                    .map(|o| o.price_dc_per_unit)
                            })
                            .unwrap_or(job.spec.max_price_dc_per_mfuel)
                            .min(job.spec.max_price_dc_per_mfuel);
                        fuel_cost_dc(accepted.fuel_used, price)
                    }
                }
                .min(job.escrow_dc);
                // A job fault reports no fuel (refused at reveal), so it counts no work.
                events.extend(pay_replica(
                    ctx,
                    &mut job,
                    *provider,
                    dc,
                    accepted.fuel_used,
                )?);
            }
            job.accepted = Some(accepted);
            job.agreed = agreed;
            job.status = JobStatus::Done;
            events.push(
                ComputeEvent::JobDone {
                    id,
                    fuel_used: accepted.fuel_used,
                }
                .to_event(),
            );
        }
        None if job.round < ctx.params::<super::ComputeParams>()?.max_retries => {
            job.excluded.extend(job.replicas.iter().map(|r| r.provider));
            let round = job.round + 1;
            let mut excluded = job.excluded.clone();
            excluded.push(job.owner);
            let fresh = assign(ctx, &id, round, &job.spec, &excluded)?;
            if fresh.len() < usize::from(job.spec.replicas) {
                job.status = JobStatus::Failed;
            } else {
                let height = ctx.block.height;
                job.round = round;
                job.replicas = fresh
                    .iter()
                    .map(|provider| Replica {
                        provider: *provider,
                        commitment: None,
                        revealed: None,
                    })
                    .collect();
                job.commit_deadline = height + job.spec.deadline_blocks;
                job.reveal_deadline =
                    job.commit_deadline + ctx.params::<super::ComputeParams>()?.reveal_blocks;
                job.status = JobStatus::Committing;
                occupy(ctx, &job)?;
                list_for_sweep(ctx, &job)?;
                events.push(ComputeEvent::JobRetried { id, round }.to_event());
            }
        }
        None => job.status = JobStatus::Failed,
    }
    if job_closed(&job) {
        if job.escrow_dc > 0 {
            ctx.refund_data_credits(job.owner, job.escrow_dc)?;
            job.escrow_dc = 0;
        }
        if job.status == JobStatus::Failed {
            events.push(ComputeEvent::JobFailed { id }.to_event());
        }
    }
    ctx.put_encoded(&keys::job(&id), &job);
    Ok(events)
}

/// Pays a replica `dc` of the job's escrow: the genesis burn share is destroyed, the rest
/// paid out, and the work counted as the fuel that was paid for at the price floor (no fuel
/// burned or nothing paid: no work), with the burn as the cap of its emission.
fn pay_replica(
    ctx: &mut ServiceContext<'_, '_>,
    job: &mut Job,
    provider: Address,
    dc: u128,
    fuel_used: u64,
) -> Result<Vec<Event>, TxError> {
    let p = ctx.params::<super::ComputeParams>()?;
    let floor = p.min_price_dc_per_mfuel;
    let units = (u128::from(fuel_used) / FUEL_PER_PRICE_UNIT).min(dc / u128::from(floor.max(1)));
    let units = u64::try_from(units).unwrap_or(u64::MAX);
    let events = ctx.pay_for_work(
        job.owner,
        provider,
        dc,
        p.payment_burn_bps,
        units,
        &keys::epoch_work(ctx.epoch()),
    )?;
    job.escrow_dc -= dc;
    job.paid_dc += dc;
    Ok(events)
}

/// The epoch whose end is the first past the job's reveal deadline: `end_epoch` runs at
/// the epoch's last block, height `(epoch + 1) × epoch_blocks`, which must exceed it.
fn sweep_epoch(ctx: &ServiceContext<'_, '_>, job: &Job) -> u64 {
    job.reveal_deadline / ctx.genesis.chain.epoch_blocks.max(1)
}

/// Lists the job to be swept at the end of the epoch its reveal window closes in: one entry
/// and a count, so a submission costs the same however many jobs are open. A job whose
/// deadline moves is listed again; entries of jobs settled or not yet due are skipped.
fn list_for_sweep(ctx: &mut ServiceContext<'_, '_>, job: &Job) -> Result<(), TxError> {
    let epoch = sweep_epoch(ctx, job);
    let count: u64 = ctx.get_decoded(&keys::sweep_count(epoch))?.unwrap_or(0);
    ctx.put_encoded(&keys::sweep_entry(epoch, count), &job.id);
    ctx.put_encoded(&keys::sweep_count(epoch), &(count + 1));
    Ok(())
}

/// Settles every job listed for this epoch whose reveal window has passed, so none stays
/// open forever, and forgets the list.
fn sweep_expired(ctx: &mut ServiceContext<'_, '_>, epoch: u64) -> Result<(), TxError> {
    let count: u64 = ctx.get_decoded(&keys::sweep_count(epoch))?.unwrap_or(0);
    for index in 0..count {
        let entry = keys::sweep_entry(epoch, index);
        let id: Option<Hash> = ctx.get_decoded(&entry)?;
        ctx.delete_record(&entry);
        let Some(id) = id else { continue };
        let job = load_job(ctx, &id)?;
        if !job_closed(&job) && ctx.block.height > job.reveal_deadline {
            settle(ctx, job)?;
        }
    }
    ctx.delete_record(&keys::sweep_count(epoch));
    Ok(())
}
