//! A compute provider inside the node: serves the blob protocol (job bytes in, results out)
//! and runs a worker that picks up the jobs the chain assigned to this node, gets their
//! module and input (pushed by the consumer, or fetched from another holder), runs them in
//! the sandbox, commits to the outcome, reveals it once reveals open, and settles jobs whose
//! reveal window passed.

use crate::api::{ApiError, ApiResult, NodeState, ServiceRoutes};
use crate::config::ComputeFault;
use crate::openapi::{BAD_REQUEST, object, ok_response, operation, path_param};
use crate::{Node, NodeError, Role};
use axum::Json;
use axum::extract::{Path, State};
use borsh::{BorshDeserialize, BorshSerialize};
use depin_blobs::store::BlobStore;
use depin_blobs::transfer::{WantedBlobs, fetch_blob};
use depin_compute::bundle::{ResultBundle, unpack};
use depin_compute::runner::{JobRun, RunError, Runner, fault_outcome};
use depin_protocol::compute::{
    ComputeTx, ComputeUsage, ExitKind, Job, JobOutcome, JobStatus, commitment, keys,
};
use depin_types::{Address, Hash};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a replica waits for the consumer's push before fetching from other holders.
const PUSH_WAIT: Duration = Duration::from_secs(5);
/// Worker loop period when nothing wakes it.
const TICK: Duration = Duration::from_millis(250);

/// What this provider keeps of a job it ran, durably, so a restart can still reveal.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
struct LocalJob {
    job: Hash,
    module: Hash,
    input: Option<Hash>,
    outcome: JobOutcome,
    salt: Hash,
}

fn job_record(node: &Node, id: &Hash) -> Option<Job> {
    node.chain()
        .service_record(depin_protocol::compute::SERVICE, &keys::job(id))
        .ok()
        .flatten()
}

fn running_jobs(node: &Node, provider: &Address) -> Vec<Hash> {
    node.chain()
        .service_record::<ComputeUsage>(depin_protocol::compute::SERVICE, &keys::usage(provider))
        .ok()
        .flatten()
        .map(|u| u.running)
        .unwrap_or_default()
}

/// Blobs the chain says this provider's current jobs need.
struct ChainWanted(Arc<Node>);

impl WantedBlobs for ChainWanted {
    fn wanted(&self, blob: &Hash) -> Option<u64> {
        let me = self.0.key.address();
        running_jobs(&self.0, &me).iter().find_map(|id| {
            let job = job_record(&self.0, id)?;
            if job.spec.module == *blob {
                Some(job.spec.module_bytes)
            } else if job.spec.input == Some(*blob) {
                Some(job.spec.input_bytes)
            } else {
                None
            }
        })
    }
}

/// Starts the compute provider on a provider node with a service network.
fn start(node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), NodeError> {
    if node.config.role != Role::Provider {
        return Ok(());
    }
    let Some(net) = node.net.get().cloned() else {
        return Ok(());
    };
    let Some(blobs) = node.blobs.get().cloned() else {
        return Ok(());
    };
    let dir = node.config.data_dir.join("compute");
    let store = blobs.store.clone();
    let stored = blobs.subscribe();
    let runner = Runner::new()?;
    let worker = Worker {
        node: node.clone(),
        net,
        store,
        runner,
        jobs_dir: dir.join("jobs"),
    };
    std::fs::create_dir_all(&worker.jobs_dir).map_err(|source| NodeError::Io {
        what: "compute jobs folder",
        source,
    })?;
    tokio::spawn(worker.run(stored, stop));
    tracing::info!(dir = %dir.display(), "compute provider started");
    Ok(())
}

#[derive(Clone)]
struct Worker {
    node: Arc<Node>,
    net: depin_net::NetHandle,
    store: Arc<BlobStore>,
    runner: Runner,
    jobs_dir: PathBuf,
}

impl Worker {
    fn load_local(&self) -> BTreeMap<Hash, LocalJob> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.jobs_dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            if let Ok(local) = depin_types::decode_bounded::<LocalJob>(&bytes, 4096) {
                out.insert(local.job, local);
            }
        }
        out
    }

    /// Writes the outcome and salt of a job: the file and then its directory are synced, so
    /// the rename survives a power cut and the commitment that follows can be revealed.
    fn save_local(&self, local: &LocalJob) -> std::io::Result<()> {
        let path = self.jobs_dir.join(local.job.to_string());
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, depin_types::encode(local))?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(temp, path)?;
        std::fs::File::open(&self.jobs_dir)?.sync_all()
    }

    async fn run(self, mut stored: tokio::sync::broadcast::Receiver<Hash>, stop: Arc<AtomicBool>) {
        let me = self.node.key.address();
        let mut local = self.load_local();
        let mut running: BTreeSet<Hash> = BTreeSet::new();
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::unbounded_channel::<(Hash, Option<LocalJob>)>();
        while !stop.load(Ordering::SeqCst) {
            tokio::select! {
                _ = stored.recv() => {},
                _ = tokio::time::sleep(TICK) => {},
            }
            while let Ok((id, ran)) = done_rx.try_recv() {
                running.remove(&id);
                if let Some(ran) = ran {
                    local.insert(id, ran);
                }
            }
            let height = self.node.chain().head().height;
            for id in running_jobs(&self.node, &me) {
                if running.contains(&id) || local.contains_key(&id) {
                    continue;
                }
                let Some(job) = job_record(&self.node, &id) else {
                    continue;
                };
                let mine = job.replicas.iter().find(|r| r.provider == me);
                if job.status != JobStatus::Committing
                    || height > job.commit_deadline
                    || mine.is_none_or(|r| r.commitment.is_some())
                {
                    continue;
                }
                running.insert(id);
                let (worker, done) = (self.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let ran = worker.run_job(&job).await;
                    let _ = done.send((id, ran));
                });
            }
            let ids: Vec<Hash> = local.keys().copied().collect();
            for id in ids {
                let Some(ran) = local.get(&id).cloned() else {
                    continue;
                };
                if !self.advance(&ran, height).await {
                    self.forget(&ran, &local);
                    local.remove(&id);
                }
            }
        }
    }

    /// Moves a job this provider ran one step on: commit, reveal or finalize. Returns false
    /// once the job is settled (or gone) and nothing is left to do.
    async fn advance(&self, ran: &LocalJob, height: u64) -> bool {
        let me = self.node.key.address();
        let Some(job) = job_record(&self.node, &ran.job) else {
            return false;
        };
        if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            return false;
        }
        let Some(mine) = job.replicas.iter().find(|r| r.provider == me) else {
            // A later round runs on other providers; this one only serves the bytes.
            return true;
        };
        let tx = if mine.commitment.is_none() {
            if job.status != JobStatus::Committing || height > job.commit_deadline {
                return true;
            }
            ComputeTx::Commit {
                job: job.id,
                commitment: commitment(&job.id, &me, &ran.outcome, &ran.salt),
            }
        } else if mine.revealed.is_none() {
            let open = match job.status {
                JobStatus::Revealing => height <= job.reveal_deadline,
                _ => height > job.commit_deadline && height <= job.reveal_deadline,
            };
            if !open {
                return true;
            }
            ComputeTx::Reveal {
                job: job.id,
                outcome: ran.outcome,
                salt: ran.salt,
            }
        } else if height > job.reveal_deadline {
            ComputeTx::Finalize { job: job.id }
        } else {
            return true;
        };
        let committing = matches!(tx, ComputeTx::Commit { .. });
        let sent = crate::own_tx::submit_and_wait(
            &self.node,
            depin_protocol::compute::SERVICE,
            depin_types::encode(&tx),
        )
        .await;
        if sent && committing {
            tracing::info!(job = %job.id, "compute result committed");
            if self.node.config.compute_fault == Some(ComputeFault::ExitAfterCommit) {
                tracing::warn!(job = %job.id, "compute fault: leaving after the commitment");
                std::process::exit(3);
            }
        }
        true
    }

    /// Drops a settled job's module and input unless another job here still needs them (one
    /// it ran, or one the chain assigned to it or to another service here: the same bytes may
    /// already be here for a new job, its consumer told they arrived). Its result stays, for
    /// the consumer to fetch.
    fn forget(&self, ran: &LocalJob, local: &BTreeMap<Hash, LocalJob>) {
        let _ = std::fs::remove_file(self.jobs_dir.join(ran.job.to_string()));
        for blob in std::iter::once(ran.module).chain(ran.input) {
            let shared = local
                .values()
                .filter(|other| other.job != ran.job)
                .any(|other| other.module == blob || other.input == Some(blob))
                || crate::blobs::any_service_wants(&self.node, &blob);
            if !shared {
                self.store.remove(&blob);
            }
        }
    }

    /// Gets the job's bytes, runs it, keeps its result and commitment salt. None when the
    /// bytes could not be had before the commit deadline or the sandbox failed.
    async fn run_job(&self, job: &Job) -> Option<LocalJob> {
        let me = self.node.key.address();
        let mut blobs = vec![(job.spec.module, job.spec.module_bytes)];
        if let Some(input) = job.spec.input {
            blobs.push((input, job.spec.input_bytes));
        }
        // Holders besides the consumer: the other replicas, and those of earlier rounds.
        let holders: Vec<Address> = job
            .replicas
            .iter()
            .map(|r| r.provider)
            .chain(job.excluded.iter().copied())
            .filter(|p| *p != me)
            .collect();
        let assigned = Instant::now();
        for (blob, size) in &blobs {
            loop {
                if self.store.has(blob) {
                    break;
                }
                // Near the deadline the fault is committed instead: nobody could send the
                // bytes, which is the consumer's doing, not this replica's.
                if self.node.chain().head().height + commit_reserve_blocks(job)
                    >= job.commit_deadline
                {
                    tracing::warn!(job = %job.id, %blob, "job bytes never arrived");
                    return self.keep_fault(job, ExitKind::Unfetchable).ok();
                }
                if assigned.elapsed() >= PUSH_WAIT {
                    match fetch_blob(&self.net, &holders, *blob, *size, &self.store).await {
                        Ok(()) => break,
                        Err(e) => tracing::debug!(job = %job.id, error = %e, "no holder yet"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // The run stops by the chain's height as well as by the clock: blocks may come faster
        // than the genesis interval (a validator catching up) and the clock would run late.
        let stop = Arc::new(AtomicBool::new(false));
        let reserve = commit_reserve_blocks(job);
        let mut run = tokio::task::spawn_blocking({
            let (worker, job, stop) = (self.clone(), job.clone(), stop.clone());
            move || worker.execute(&job, &stop)
        });
        let ran = loop {
            tokio::select! {
                ran = &mut run => break ran,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if self.node.chain().head().height + reserve >= job.commit_deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        };
        match ran {
            Ok(Ok(local)) => Some(local),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "compute job not run");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "compute job panicked");
                None
            }
        }
    }

    /// Keeps the outcome of a job that could not run, with a result saying why for the
    /// consumer, ready to commit.
    fn keep_fault(&self, job: &Job, exit: ExitKind) -> Result<LocalJob, String> {
        let bundle = ResultBundle {
            exit,
            fuel_used: 0,
            stdout: Vec::new(),
            stderr: depin_compute::bundle::exit_text(exit).into_bytes(),
            files: Vec::new(),
        };
        self.keep(job, fault_outcome(exit), &bundle)
    }

    /// Stores the result for the consumer and the outcome with its salt, both durable before
    /// anything is committed: a crash after the commitment must not leave this replica
    /// unable to reveal.
    fn keep(
        &self,
        job: &Job,
        mut outcome: JobOutcome,
        bundle: &ResultBundle,
    ) -> Result<LocalJob, String> {
        self.store
            .put_output(&job.id, &depin_types::encode(bundle))
            .map_err(|e| e.to_string())?;
        if self.node.config.compute_fault == Some(ComputeFault::WrongResult) {
            outcome.outputs = Hash::tagged("depin compute fault", &[outcome.outputs.as_bytes()]);
            tracing::warn!(job = %job.id, "compute fault: committing to a wrong result");
        }
        // Only this node can compute the salt, so its commitment reveals nothing early.
        let salt = Hash::tagged(
            "depin compute salt",
            &[
                &self.node.key.secret_bytes(),
                job.id.as_bytes(),
                &[job.round],
            ],
        );
        let local = LocalJob {
            job: job.id,
            module: job.spec.module,
            input: job.spec.input,
            outcome,
            salt,
        };
        self.save_local(&local).map_err(|e| e.to_string())?;
        Ok(local)
    }

    /// Runs the job in the sandbox (blocking) and keeps what the consumer will fetch. A run
    /// still going when the commit deadline nears is stopped and ends as deadline exceeded;
    /// an input that does not unpack, or output over the limit, ends as that fault.
    fn execute(&self, job: &Job, stop: &AtomicBool) -> Result<LocalJob, String> {
        let started = Instant::now();
        let module = std::fs::read(self.store.path(&job.spec.module)).map_err(|e| e.to_string())?;
        let input_dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(self.store.dir())
            .map_err(|e| e.to_string())?;
        if let Some(input) = job.spec.input {
            let file = std::fs::File::open(self.store.path(&input)).map_err(|e| e.to_string())?;
            if let Err(e) = unpack(file, job.spec.input_bytes, input_dir.path()) {
                tracing::warn!(job = %job.id, error = %e, "the job's input does not unpack");
                return self.keep_fault(job, ExitKind::Unrunnable);
            }
        }
        // A stdin path that is not a plain path inside the input reads as empty, on every
        // replica alike.
        let stdin = job
            .spec
            .stdin
            .as_deref()
            .map(std::path::Path::new)
            .filter(|p| {
                p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .and_then(|p| std::fs::read(input_dir.path().join(p)).ok())
            .unwrap_or_default();
        let output = match self.runner.run(&JobRun {
            module: &module,
            input_dir: job.spec.input.map(|_| input_dir.path()),
            stdin: &stdin,
            args: &job.spec.args,
            env: &job.spec.env,
            seed: *job.spec.seed.as_bytes(),
            max_fuel: job.spec.max_fuel,
            max_memory_bytes: u64::from(job.spec.max_memory_mib) << 20,
            deadline: Some(run_deadline(&self.node, job)),
            stop: Some(stop),
        }) {
            Ok(output) => output,
            Err(RunError::OutputTooLarge) => return self.keep_fault(job, ExitKind::OutputTooLarge),
            Err(e) => return Err(e.to_string()),
        };
        let bundle = ResultBundle {
            exit: output.outcome.exit,
            fuel_used: output.outcome.fuel_used,
            stdout: output.stdout,
            stderr: output.stderr,
            files: output.files,
        };
        let local = self.keep(job, output.outcome, &bundle)?;
        let outcome = local.outcome;
        tracing::info!(
            job = %job.id,
            exit = ?outcome.exit,
            fuel = outcome.fuel_used,
            ms = started.elapsed().as_millis() as u64,
            "compute job ran"
        );
        Ok(local)
    }
}

/// When a run must stop so its commitment can still make the commit deadline: the blocks left
/// at the chain's block interval, less those kept back for the commitment itself.
fn run_deadline(node: &Node, job: &Job) -> Instant {
    let height = node.chain().head().height;
    let interval = node.chain().protocol().genesis().chain.block_interval_ms;
    let blocks = job
        .commit_deadline
        .saturating_sub(height)
        .saturating_sub(commit_reserve_blocks(job));
    Instant::now() + Duration::from_millis(blocks.saturating_mul(interval))
}

/// Blocks kept back from a run for its commitment to reach the chain: a quarter of the job's
/// window, at least three. A busy validator or a slow disk must not cost an honest replica
/// its commitment; two blocks were too few on a loaded 2-core machine.
fn commit_reserve_blocks(job: &Job) -> u64 {
    (job.spec.deadline_blocks / 4).max(3)
}

/// The compute service in the node: the job route, and the provider's blob server and worker.
pub(crate) struct ComputeService;

impl crate::services::NodeService for ComputeService {
    fn service(&self) -> depin_types::ServiceKind {
        depin_protocol::compute::SERVICE
    }

    fn routes(&self, routes: ServiceRoutes) -> ServiceRoutes {
        routes.get("/jobs/{id}", compute_job)
    }

    fn openapi_paths(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "/jobs/{id}",
            serde_json::json!({"get": operation("A compute job: its spec, status, replicas with their commitments and reveals, the accepted outcome and who agreed",
            vec![path_param("id", "job id (64 hex)")],
            ok_response("Job", object("Job")), &[BAD_REQUEST, ("404", "unknown_job")])}),
        )]
    }

    fn start(&self, node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), NodeError> {
        start(node, stop)
    }

    fn wanted_blobs(&self, node: &Arc<Node>) -> Option<Arc<dyn WantedBlobs>> {
        Some(Arc::new(ChainWanted(node.clone())))
    }
}

async fn compute_job(
    State(node): NodeState,
    Path(id): Path<String>,
) -> ApiResult<Json<depin_protocol::compute::Job>> {
    use depin_protocol::compute::{Job, keys};
    let id: depin_types::Hash = id
        .parse()
        .map_err(|_| ApiError::bad_request("bad_job_id", "a job id is 64 hex digits"))?;
    node.chain()
        .service_record::<Job>(depin_protocol::compute::SERVICE, &keys::job(&id))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {id}")))
}
