//! The compute service's rules through real transactions: escrow and assignment, commit-reveal,
//! settlement by majority with payment by fuel, slashing of the outvoted and the silent, retry
//! on fresh providers, refunds, and refusals that leave the state untouched.

use super::*;
use crate::compute::{
    ComputeEvent, ComputeTx, ComputeUsage, ExitKind, Job, JobOutcome, JobSpec, JobStatus,
    commitment, fuel_cost_dc, keys,
};
use depin_types::Hash;

const MAX_FUEL: u64 = 10_000_000;
/// Providers ask 5 DC per million fuel (the fixture's offer); the consumer accepts up to 10.
const MAX_PRICE: u64 = 10;

fn compute(tx: ComputeTx) -> Action {
    Action::Service {
        service: crate::compute::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

fn spec(replicas: u8) -> JobSpec {
    JobSpec {
        module: Hash::of(b"module"),
        module_bytes: 1000,
        input: None,
        input_bytes: 0,
        args: vec!["wc".into(), "-w".into()],
        env: vec![("LANG".into(), "C".into())],
        stdin: None,
        seed: Hash::of(b"seed"),
        max_fuel: MAX_FUEL,
        max_memory_mib: 64,
        replicas,
        deadline_blocks: 8,
        max_price_dc_per_mfuel: MAX_PRICE,
    }
}

fn outcome(fuel_used: u64, outputs: &[u8]) -> JobOutcome {
    JobOutcome {
        exit: ExitKind::Exited(0),
        fuel_used,
        outputs: Hash::of(outputs),
    }
}

/// Users 0..providers are compute providers; the validator key submits jobs and holds
/// 1,000,000 DC.
fn compute_setup(providers: usize) -> Fixture {
    let mut f = setup();
    let funder = f.validator.clone();
    // The fixture funds four users; more providers get their stake from the validator.
    for i in f.users.len()..providers.max(6) {
        let key = user_key(i);
        f.ok(
            &funder,
            Action::Transfer {
                to: key.address(),
                amount: Amount(300 * UNIT),
            },
        );
        f.users.push(key);
    }
    for i in 0..providers {
        let u = f.user(i);
        f.make_provider(&u, 200 * UNIT, &[crate::compute::SERVICE]);
    }
    let owner = f.validator.clone();
    f.ok(&owner, buy_credits(10 * UNIT));
    f
}

impl Fixture {
    fn job(&self, id: &Hash) -> Job {
        self.get(&StateKey::Service(crate::compute::SERVICE, keys::job(id)))
            .expect("job exists")
    }

    /// Jobs listed for an epoch-end sweep (up to epoch 1,000) and not yet settled.
    fn open_jobs(&self) -> Vec<Hash> {
        let key = |k: Vec<u8>| StateKey::Service(crate::compute::SERVICE, k);
        let mut open = Vec::new();
        for epoch in 0..1_000 {
            let count: u64 = self.get(&key(keys::sweep_count(epoch))).unwrap_or(0);
            for index in 0..count {
                let Some(id) = self.get::<Hash>(&key(keys::sweep_entry(epoch, index))) else {
                    continue;
                };
                let status = self.job(&id).status;
                if !matches!(status, JobStatus::Done | JobStatus::Failed) && !open.contains(&id) {
                    open.push(id);
                }
            }
        }
        open
    }

    fn compute_usage(&self, who: &Address) -> ComputeUsage {
        self.get(&StateKey::Service(
            crate::compute::SERVICE,
            keys::usage(who),
        ))
        .unwrap_or_default()
    }

    fn submit(&mut self, spec: JobSpec) -> Hash {
        let owner = self.validator.clone();
        let receipt = self.ok(&owner, compute(ComputeTx::SubmitJob(spec)));
        receipt
            .events
            .iter()
            .find_map(|e| match e.service_event::<ComputeEvent>() {
                Some(ComputeEvent::JobSubmitted { id, .. }) => Some(id),
                _ => None,
            })
            .expect("a job_submitted event")
    }

    fn key_of(&self, address: &Address) -> Keypair {
        self.users
            .iter()
            .find(|u| u.address() == *address)
            .expect("a provider key")
            .clone()
    }

    fn replica_keys(&self, id: &Hash) -> Vec<Keypair> {
        self.job(id)
            .replicas
            .iter()
            .map(|r| self.key_of(&r.provider))
            .collect()
    }

    fn commit_to(&mut self, id: &Hash, who: &Keypair, result: &JobOutcome) -> Hash {
        let salt = Hash::tagged("test salt", &[who.address().as_bytes()]);
        let c = commitment(id, &who.address(), result, &salt);
        self.ok(
            who,
            compute(ComputeTx::Commit {
                job: *id,
                commitment: c,
            }),
        );
        salt
    }

    fn reveal_to(&mut self, id: &Hash, who: &Keypair, result: JobOutcome, salt: Hash) -> Receipt {
        self.ok(
            who,
            compute(ComputeTx::Reveal {
                job: *id,
                outcome: result,
                salt,
            }),
        )
    }
}

fn compute_code(error: TxError) -> &'static str {
    match error {
        TxError::ServiceRejected { code, .. } => code,
        other => panic!("expected a compute rejection, got {other:?}"),
    }
}

#[test]
fn a_job_is_escrowed_assigned_settled_by_majority_and_the_liar_slashed() {
    let mut f = compute_setup(4);
    let owner = f.validator.clone();
    let dc_before = f.account(&owner).data_credits;
    let id = f.submit(spec(3));
    let escrow = 3 * fuel_cost_dc(MAX_FUEL, MAX_PRICE);
    assert_eq!(escrow, 300);
    let job = f.job(&id);
    assert_eq!(job.status, JobStatus::Committing);
    assert_eq!(job.escrow_dc, escrow);
    assert_eq!(f.account(&owner).data_credits, dc_before - escrow);
    let replicas = f.replica_keys(&id);
    let mut distinct: Vec<Address> = replicas.iter().map(|k| k.address()).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "distinct providers");
    for r in &replicas {
        assert_eq!(f.compute_usage(&r.address()).running, vec![id]);
    }

    let honest = outcome(4_000_000, b"42 words");
    let lie = outcome(4_000_000, b"0 words");
    let salt0 = f.commit_to(&id, &replicas[0], &honest);
    // No reveal before everyone is bound (or the commit deadline passed).
    let early = f.tx(
        &replicas[0],
        compute(ComputeTx::Reveal {
            job: id,
            outcome: honest,
            salt: salt0,
        }),
    );
    assert_eq!(compute_code(f.reject(&early)), "reveal_closed");
    // Copying another replica's commitment gets nothing: it is bound to the provider.
    let copied = commitment(&id, &replicas[0].address(), &honest, &salt0);
    f.ok(
        &replicas[1],
        compute(ComputeTx::Commit {
            job: id,
            commitment: copied,
        }),
    );
    let salt2 = f.commit_to(&id, &replicas[2], &lie);
    assert_eq!(f.job(&id).status, JobStatus::Revealing);
    let copy_reveal = f.tx(
        &replicas[1],
        compute(ComputeTx::Reveal {
            job: id,
            outcome: honest,
            salt: salt0,
        }),
    );
    assert_eq!(compute_code(f.reject(&copy_reveal)), "commitment_mismatch");
    f.reveal_to(&id, &replicas[0], honest, salt0);
    f.reveal_to(&id, &replicas[2], lie, salt2);
    // Replica 1 cannot reveal what it copied: the job settles at the reveal deadline with
    // replica 0 alone, one of three, so no majority: retried on the one fresh provider left,
    // too few, and refunded.
    let deadline = f.job(&id).reveal_deadline;
    let too_early = f.tx(&replicas[0], compute(ComputeTx::Finalize { job: id }));
    assert_eq!(compute_code(f.reject(&too_early)), "too_early");
    let stake_silent = f.stake(&replicas[1]).bonded;
    f.end_blocks_through(deadline);
    f.ok(&owner, compute(ComputeTx::Finalize { job: id }));
    let job = f.job(&id);
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.escrow_dc, 0);
    assert!(
        f.stake(&replicas[1]).bonded < stake_silent,
        "the silent replica is slashed"
    );
    assert_eq!(
        f.account(&owner).data_credits,
        dc_before,
        "everything refunded"
    );
    assert!(f.open_jobs().is_empty());
    for r in &replicas {
        assert!(f.compute_usage(&r.address()).running.is_empty());
    }
    f.check_supply();

    // A clean round: two agree, the third lies and is outvoted, slashed and unpaid.
    let id = f.submit(spec(3));
    let replicas = f.replica_keys(&id);
    let salts: Vec<Hash> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| f.commit_to(&id, r, if i == 2 { &lie } else { &honest }))
        .collect();
    let stakes: Vec<Amount> = replicas.iter().map(|r| f.stake(r).bonded).collect();
    let balances: Vec<u128> = replicas.iter().map(|r| f.balance(r)).collect();
    f.reveal_to(&id, &replicas[0], honest, salts[0]);
    f.reveal_to(&id, &replicas[1], honest, salts[1]);
    let receipt = f.reveal_to(&id, &replicas[2], lie, salts[2]);
    assert!(receipt.events.iter().any(|e| matches!(
        e,
        Event::Slashed { provider, .. } if *provider == replicas[2].address()
    )));
    let job = f.job(&id);
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.accepted, Some(honest));
    assert_eq!(
        job.agreed,
        vec![replicas[0].address(), replicas[1].address()]
    );
    // Paid at their own price: 4M fuel at 5 DC per million is 20 DC each.
    assert_eq!(job.paid_dc, 40);
    assert_eq!(job.escrow_dc, 0);
    assert_eq!(f.account(&owner).data_credits, dc_before - 40);
    for i in 0..2 {
        assert!(
            f.balance(&replicas[i]) > balances[i] - FEE.0,
            "paid in tokens"
        );
        assert_eq!(f.stake(&replicas[i]).bonded, stakes[i]);
    }
    assert!(f.stake(&replicas[2]).bonded < stakes[2]);
    let liar: Provider = f
        .get(&StateKey::Provider(replicas[2].address()))
        .expect("provider");
    assert!(
        liar.failures
            .iter()
            .any(|x| x.reason.contains("compute result outvoted"))
    );
    f.check_supply();
}

/// The griefing: a consumer submits a job no replica can finish — a module or input nobody
/// can fetch, an input that does not unpack, output over the limit, an invalid module, or a
/// run longer than its deadline — so that honest replicas miss their commitment and are
/// slashed while the consumer is refunded. Such jobs end with the agreed kind: nobody is
/// slashed, nothing counts as work, and the consumer pays the replicas a genesis share of
/// the escrow for the attempt (a larger one for a run that took the whole deadline).
#[test]
fn a_job_nobody_can_finish_ends_typed_without_slashing_and_pays_the_attempt() {
    let (attempt_bps, deadline_bps) = {
        let p = crate::compute::ComputeParams::devnet();
        (
            u128::from(p.attempt_fee_bps),
            u128::from(p.deadline_fee_bps),
        )
    };
    for (exit, fee_bps) in [
        (ExitKind::Unfetchable, attempt_bps),
        (ExitKind::Unrunnable, attempt_bps),
        (ExitKind::OutputTooLarge, attempt_bps),
        (ExitKind::InvalidModule, attempt_bps),
        (ExitKind::DeadlineExceeded, deadline_bps),
    ] {
        let mut f = compute_setup(4);
        let owner = f.validator.clone();
        let dc_before = f.account(&owner).data_credits;
        let id = f.submit(spec(3));
        let escrow = f.job(&id).escrow_dc;
        let replicas = f.replica_keys(&id);
        let failed = JobOutcome {
            exit,
            fuel_used: 0,
            outputs: Hash::of(b"the kind alone"),
        };
        // A job-fault kind carries no fuel: it cannot be paid as work.
        let salt = f.commit_to(
            &id,
            &replicas[0],
            &JobOutcome {
                fuel_used: 5,
                ..failed
            },
        );
        let stakes: Vec<Amount> = replicas.iter().map(|r| f.stake(r).bonded).collect();
        let mut salts = vec![salt];
        for r in &replicas[1..] {
            salts.push(f.commit_to(&id, r, &failed));
        }
        let tx = f.tx(
            &replicas[0],
            compute(ComputeTx::Reveal {
                job: id,
                outcome: JobOutcome {
                    fuel_used: 5,
                    ..failed
                },
                salt: salts[0],
            }),
        );
        assert_eq!(compute_code(f.reject(&tx)), "bad_outcome");
        let mut events = Vec::new();
        for (r, salt) in replicas.iter().zip(&salts).skip(1) {
            events.extend(f.reveal_to(&id, r, failed, *salt).events);
        }
        // The first replica never revealed a valid outcome: the reveal window closes.
        let deadline = f.job(&id).reveal_deadline;
        f.end_blocks_through(deadline);
        let finalize = f.ok(&owner, compute(ComputeTx::Finalize { job: id }));
        events.extend(finalize.events);
        let job = f.job(&id);
        assert_eq!(job.status, JobStatus::Done, "{exit:?}");
        assert_eq!(job.accepted, Some(failed));
        assert_eq!(job.agreed.len(), 2);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::WorkRecorded { .. })),
            "{exit:?}: {events:?}"
        );
        let slashed: Vec<Address> = events
            .iter()
            .filter_map(|e| match e {
                Event::Slashed { provider, .. } => Some(*provider),
                _ => None,
            })
            .collect();
        assert_eq!(slashed, vec![replicas[0].address()], "only the silent one");
        let share = escrow * fee_bps / 10_000 / 3;
        assert!(share > 0);
        assert_eq!(job.paid_dc, 2 * share, "{exit:?}");
        assert_eq!(f.account(&owner).data_credits, dc_before - 2 * share);
        for (r, stake) in replicas.iter().zip(stakes).skip(1) {
            assert_eq!(f.stake(r).bonded, stake, "not slashed");
        }
        f.check_supply();
    }
}

#[test]
fn a_split_vote_is_retried_on_fresh_providers_and_an_epoch_end_settles_stale_jobs() {
    let mut f = compute_setup(6);
    let id = f.submit(spec(3));
    let first = f.replica_keys(&id);
    for (i, r) in first.iter().enumerate() {
        f.commit_to(&id, r, &outcome(1_000_000, &[i as u8]));
    }
    for (i, r) in first.iter().enumerate() {
        let result = outcome(1_000_000, &[i as u8]);
        let salt = Hash::tagged("test salt", &[r.address().as_bytes()]);
        f.reveal_to(&id, r, result, salt);
    }
    // Three different answers: no majority, nobody slashed (nobody can be judged), round 1
    // on the three providers not used yet.
    let job = f.job(&id);
    assert_eq!(job.status, JobStatus::Committing);
    assert_eq!(job.round, 1);
    let second = f.replica_keys(&id);
    assert!(
        second
            .iter()
            .all(|k| first.iter().all(|f| f.address() != k.address()))
    );
    let good = outcome(2_500_000, b"ok");
    for r in &second[..2] {
        f.commit_to(&id, r, &good);
    }
    // The third never answers: after the deadlines the epoch sweep settles with the two.
    let deadline = f.job(&id).reveal_deadline;
    let commit_deadline = f.job(&id).commit_deadline;
    f.end_blocks_through(commit_deadline);
    for r in &second[..2] {
        let salt = Hash::tagged("test salt", &[r.address().as_bytes()]);
        f.reveal_to(&id, r, good, salt);
    }
    assert_eq!(f.job(&id).status, JobStatus::Revealing);
    let next_epoch_end = (deadline / EPOCH_BLOCKS + 1) * EPOCH_BLOCKS + EPOCH_BLOCKS;
    f.end_blocks_through(next_epoch_end);
    let job = f.job(&id);
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.accepted, Some(good));
    assert_eq!(job.agreed.len(), 2);
    assert!(f.open_jobs().is_empty());
    let silent: Provider = f
        .get(&StateKey::Provider(second[2].address()))
        .expect("provider");
    assert!(
        silent
            .failures
            .iter()
            .any(|x| x.reason.contains("no compute result revealed"))
    );
    f.check_supply();
}

#[test]
fn bad_jobs_are_refused_and_leave_state_untouched() {
    let mut f = compute_setup(3);
    let owner = f.validator.clone();
    // More replicas than providers.
    let tx = f.tx(&owner, compute(ComputeTx::SubmitJob(spec(5))));
    assert_eq!(compute_code(f.reject(&tx)), "not_enough_providers");
    // Limits.
    for bad in [
        JobSpec {
            replicas: 0,
            ..spec(1)
        },
        JobSpec {
            max_fuel: 0,
            ..spec(1)
        },
        JobSpec {
            max_memory_mib: 1 << 20,
            ..spec(1)
        },
        JobSpec {
            input: Some(Hash::of(b"x")),
            input_bytes: 0,
            ..spec(1)
        },
        JobSpec {
            args: vec!["a\0b".into()],
            ..spec(1)
        },
        JobSpec {
            stdin: Some("in.txt".into()),
            ..spec(1)
        },
        // One block to commit in: no replica could make it and all would be slashed.
        JobSpec {
            deadline_blocks: 1,
            ..spec(1)
        },
    ] {
        let tx = f.tx(&owner, compute(ComputeTx::SubmitJob(bad)));
        assert_eq!(compute_code(f.reject(&tx)), "bad_job");
    }
    // Nobody at that price.
    let tx = f.tx(
        &owner,
        compute(ComputeTx::SubmitJob(JobSpec {
            max_price_dc_per_mfuel: 1,
            ..spec(1)
        })),
    );
    assert_eq!(compute_code(f.reject(&tx)), "not_enough_providers");
    // Escrow beyond the consumer's Data Credits.
    let poor = f.user(5);
    let tx = f.tx(&poor, compute(ComputeTx::SubmitJob(spec(1))));
    assert!(matches!(
        f.reject(&tx),
        TxError::InsufficientDataCredits { .. } | TxError::UnknownAccount(_)
    ));
    // Unknown job, a stranger's commitment, malformed bytes.
    let unknown = f.tx(
        &owner,
        compute(ComputeTx::Finalize {
            job: Hash::of(b"nope"),
        }),
    );
    assert_eq!(compute_code(f.reject(&unknown)), "unknown_job");
    let id = f.submit(spec(2));
    let stranger = f.user(4);
    let tx = f.tx(
        &stranger,
        compute(ComputeTx::Commit {
            job: id,
            commitment: Hash::of(b"c"),
        }),
    );
    assert_eq!(compute_code(f.reject(&tx)), "not_assigned");
    let junk = f.tx(
        &owner,
        Action::Service {
            service: crate::compute::SERVICE,
            payload: vec![0xff; 10],
        },
    );
    assert_eq!(compute_code(f.reject(&junk)), "malformed_compute_tx");
    f.check_supply();
}

/// Benchmark, not a test (run with `cargo test -p depin-protocol --release -- --ignored
/// scheduler --nocapture`): SubmitJob transactions applied per second (signature check,
/// escrow, the weighted draw among the providers, the job record), in batches, as the open
/// jobs pile up. The state is in memory: redb reads are not counted.
#[test]
#[ignore = "benchmark"]
fn scheduler_assigns_jobs_per_second() {
    // As many as the fixture's validator can fund (300 tokens each).
    const PROVIDERS: usize = 30;
    const BATCH: usize = 500;
    let mut f = compute_setup(PROVIDERS);
    let owner = f.validator.clone();
    f.ok(&owner, buy_credits(100 * UNIT));
    println!("scheduler: {PROVIDERS} compute providers, 3 replicas per job, in-memory state");
    println!("| open jobs before | jobs/s |");
    println!("|---:|---:|");
    let mut seed = 0u64;
    for batch in 0..4 {
        let txs: Vec<_> = (0..BATCH)
            .map(|i| {
                seed += 1;
                let mut s = spec(3);
                s.seed = Hash::of(&seed.to_le_bytes());
                f.sign(&owner, compute(ComputeTx::SubmitJob(s)), |tx| {
                    tx.nonce += i as u64
                })
            })
            .collect();
        let started = std::time::Instant::now();
        for tx in &txs {
            f.apply(tx)
                .unwrap_or_else(|e| panic!("submit rejected: {e}"));
        }
        let secs = started.elapsed().as_secs_f64();
        println!("| {} | {:.0} |", batch * BATCH, BATCH as f64 / secs);
    }
}

/// Everything `who` holds, in tokens: balance, stake, and its Data Credits at the oracle price.
fn wealth(f: &Fixture, who: &Keypair) -> u128 {
    let price: crate::state::OraclePrice = f.get(&StateKey::OraclePrice).expect("a price");
    let dc = f.account(who).data_credits;
    let dc_tokens =
        crate::service::data_credits_to_tokens(f.protocol.genesis(), dc, price.price_usd_micro)
            .expect("converts");
    f.balance(who)
        + f.stake(who).bonded.0
        + f.stake(who).unbonding_total().expect("fits").0
        + dc_tokens.0
}

/// The farming attack: a provider pays itself (through a second account) for jobs it runs,
/// reveals all the fuel it likes, and collects the compute emission. Free jobs are refused,
/// the owner is never its own replica, and what a self-dealt job earns in emission is capped
/// at what its payment burned, so the pair ends no richer than it started.
#[test]
fn self_dealt_jobs_earn_no_more_emission_than_they_burn() {
    let mut f = compute_setup(1);
    let provider = f.user(0);
    let sybil = f.user(1);

    // A job at price 0 would cost nothing and count as work: refused.
    let mut free = spec(1);
    free.max_price_dc_per_mfuel = 0;
    let tx = f.tx(&sybil, compute(ComputeTx::SubmitJob(free)));
    assert_eq!(compute_code(f.reject(&tx)), "price_below_floor");

    // The provider cannot be a replica of its own job (it is the only compute provider).
    f.ok(&provider, buy_credits(UNIT));
    let tx = f.tx(&provider, compute(ComputeTx::SubmitJob(spec(1))));
    assert_eq!(compute_code(f.reject(&tx)), "not_enough_providers");

    // Through a second account it can, so the economics must hold: run jobs for itself.
    f.ok(&sybil, buy_credits(10 * UNIT));
    let before = wealth(&f, &provider) + wealth(&f, &sybil);
    let mut burned_dc = 0u128;
    for n in 0..5u8 {
        let mut s = spec(1);
        s.seed = Hash::of(&[n]);
        let receipt = f.ok(&sybil, compute(ComputeTx::SubmitJob(s)));
        let id = receipt
            .events
            .iter()
            .find_map(|e| match e.service_event::<ComputeEvent>() {
                Some(ComputeEvent::JobSubmitted { id, .. }) => Some(id),
                _ => None,
            })
            .expect("submitted");
        assert_eq!(f.job(&id).replicas[0].provider, provider.address());
        let claim = outcome(MAX_FUEL, b"whatever");
        let salt = f.commit_to(&id, &provider, &claim);
        f.reveal_to(&id, &provider, claim, salt);
        let job = f.job(&id);
        assert_eq!(job.status, JobStatus::Done);
        burned_dc += job.paid_dc.div_ceil(10);
    }
    let ended = f.end_blocks_through(f.height + EPOCH_BLOCKS);
    let emission: u128 = ended
        .iter()
        .map(|r| paid(r, &provider, RewardKind::Service(crate::compute::SERVICE)))
        .sum();
    let price: crate::state::OraclePrice = f.get(&StateKey::OraclePrice).expect("a price");
    let burned_tokens = crate::service::data_credits_to_tokens(
        f.protocol.genesis(),
        burned_dc,
        price.price_usd_micro,
    )
    .expect("converts")
    .0;
    assert!(emission > 0, "paid work still earns emission");
    assert!(
        emission <= burned_tokens,
        "emission {emission} exceeds the {burned_tokens} its payments burned"
    );
    let compute_bucket = ended
        .iter()
        .map(|r| bucket(r, RewardKind::Service(crate::compute::SERVICE)))
        .find(|b| b.allocation.0 > 0)
        .expect("a compute bucket");
    assert!(
        compute_bucket.unallocated.0 > 0,
        "the cap leaves the rest of the share unminted"
    );
    let after = wealth(&f, &provider) + wealth(&f, &sybil);
    assert!(
        after <= before,
        "self-dealing made the pair richer: {before} -> {after}"
    );
    f.check_supply();
}
