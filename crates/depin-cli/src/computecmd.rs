//! `depin compute submit|status|result`: the compute client. A job's module and input are
//! content-addressed (BLAKE3); the chain escrows the Data Credits and assigns the replicas;
//! the client then pushes the bytes to each replica over the libp2p service network, and
//! later fetches the result from a replica that agreed, checking it against the outcome the
//! chain accepted.

use crate::Ctx;
use crate::client::CodedError;
use crate::keycmd::read_key;
use crate::output;
use crate::progress::Progress;
use crate::storagecmd::{join_network, runtime};
use crate::txcmd::{Network, TxOpts, send};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use depin_blobs::transfer::{TransferError, fetch_output, push_blob};
use depin_compute::bundle::{MAX_RESULT_BYTES, ResultBundle, exit_text, pack};
use depin_protocol::Action;
use depin_protocol::compute::{
    ComputeEvent, ComputeParams, ComputeTx, ExitKind, Job, JobSpec, JobStatus, fuel_cost_dc,
};
use depin_types::{Address, Hash};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum ComputeCommand {
    /// Submit a WebAssembly job (WASI preview 1): escrow, assignment, then the module and
    /// input go to every replica.
    Submit(SubmitArgs),
    /// A job's state: replicas, commitments, reveals, the accepted outcome.
    Status { id: String },
    /// Fetch a finished job's stdout, stderr, exit and output files into a folder.
    Result {
        id: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The module (.wasm, WASI preview 1).
    pub module: PathBuf,
    /// A file or folder the job sees read-only under /input.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// A file of the input (its path inside --input) fed to the job as stdin.
    #[arg(long)]
    pub stdin: Option<String>,
    /// Environment variables, KEY=VALUE (repeat the option).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Independent providers that run it; more than half must agree.
    #[arg(long, default_value_t = 3)]
    pub replicas: u8,
    /// Fuel each replica may burn (about one unit per WebAssembly instruction).
    #[arg(long, default_value_t = 10_000_000_000)]
    pub max_fuel: u64,
    #[arg(long, default_value_t = 256)]
    pub max_memory_mib: u32,
    /// Blocks the replicas have to run it and commit.
    #[arg(long, default_value_t = 600)]
    pub deadline_blocks: u64,
    /// Most Data Credits paid per million fuel; providers asking more are not assigned.
    #[arg(long, default_value_t = 1)]
    pub max_price: u64,
    /// The job's randomness, 64 hex digits (default: fresh).
    #[arg(long)]
    pub seed: Option<String>,
    /// Wait until the job is settled and print its final state.
    #[arg(long)]
    pub wait: bool,
    /// Do not send the module and input to the replicas: they fetch them from another holder,
    /// or the job ends as unfetchable (the replicas paid the attempt fee).
    #[arg(long)]
    pub no_send: bool,
    #[command(flatten)]
    pub tx: TxOpts,
    /// Arguments for the module (after the module name); put this option last.
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

pub fn run(ctx: &Ctx, command: ComputeCommand) -> anyhow::Result<()> {
    match command {
        ComputeCommand::Submit(args) => submit(ctx, args),
        ComputeCommand::Status { id } => status(ctx, &id),
        ComputeCommand::Result { id, output } => result(ctx, &id, &output),
    }
}

fn parse_job_id(text: &str) -> anyhow::Result<Hash> {
    text.parse()
        .map_err(|_| CodedError::new("bad_job_id", "a job id is 64 hex digits").into())
}

fn fetch_job(ctx: &Ctx, id: &Hash) -> anyhow::Result<Job> {
    ctx.client.get(&format!("/v1/compute/jobs/{id}"))
}

fn hash_file(path: &Path) -> anyhow::Result<(Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bytes = std::io::copy(&mut file, &mut hasher)?;
    Ok((Hash(*hasher.finalize().as_bytes()), bytes))
}

#[derive(Serialize)]
struct Submitted {
    id: Hash,
    escrow_dc: u128,
    replicas: Vec<Address>,
    module: Hash,
    input: Option<Hash>,
    seed: Hash,
    /// Replicas that did not take the bytes from us (they fetch them from the others).
    not_delivered: Vec<Address>,
    status: JobStatus,
    /// Milliseconds: the escrow transaction until its block, pushing the bytes to every
    /// replica, and (with --wait) from then until the job settled.
    timings_ms: Timings,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<Job>,
}

#[derive(Serialize)]
struct Timings {
    submit: u64,
    transfer: u64,
    settle: Option<u64>,
}

fn submit(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<()> {
    let key = read_key(&args.tx.key)?;
    let network = Network::fetch(&ctx.client)?;
    let limits = network.genesis.service_params::<ComputeParams>()?;
    let (module, module_bytes) = hash_file(&args.module)?;
    if module_bytes == 0 || module_bytes > limits.max_module_bytes {
        bail!(
            "{} is {module_bytes} bytes; a module is 1..={} bytes",
            args.module.display(),
            limits.max_module_bytes
        );
    }
    // The input is packed once into a bundle file; its hash is what the job names.
    let bundle_file = tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
    let (input, input_bytes) = match &args.input {
        Some(path) => {
            let (hash, len) = pack(path, bundle_file.as_file())
                .with_context(|| format!("cannot pack {}", path.display()))?;
            if len > limits.max_input_bytes {
                bail!(
                    "the input packs to {len} bytes; at most {}",
                    limits.max_input_bytes
                );
            }
            (Some(hash), len)
        }
        None => (None, 0),
    };
    if let Some(name) = &args.stdin {
        let inside = match &args.input {
            Some(path) if path.is_dir() => path.join(name).is_file(),
            Some(path) => path
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == *name),
            None => false,
        };
        if !inside {
            bail!("--stdin {name:?} must name a file of --input (its path inside it)");
        }
    }
    let seed = match &args.seed {
        Some(text) => text
            .parse::<Hash>()
            .map_err(|_| CodedError::new("bad_seed", "a seed is 64 hex digits"))?,
        None => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            Hash(seed)
        }
    };
    let spec = JobSpec {
        module,
        module_bytes,
        input,
        input_bytes,
        args: args.args.clone(),
        env: args.env.clone(),
        stdin: args.stdin.clone(),
        seed,
        max_fuel: args.max_fuel,
        max_memory_mib: args.max_memory_mib,
        replicas: args.replicas,
        deadline_blocks: args.deadline_blocks,
        max_price_dc_per_mfuel: args.max_price,
    };
    let escrow = u128::from(args.replicas) * fuel_cost_dc(args.max_fuel, args.max_price);
    let started = Instant::now();
    eprintln!("escrowing {escrow} DC for {} replica(s)", args.replicas);
    let outcome = send(
        &ctx.client,
        &network,
        &key,
        args.tx.nonce,
        Action::Service {
            service: depin_protocol::compute::SERVICE,
            payload: depin_types::encode(&ComputeTx::SubmitJob(spec)),
        },
        true,
    )?;
    let id = outcome
        .service_events::<ComputeEvent>()
        .find_map(|e| match e {
            ComputeEvent::JobSubmitted { id, .. } => Some(id),
            _ => None,
        })
        .context("the job transaction did not report a job id")?;
    eprintln!("job {id} submitted");
    let job = fetch_job(ctx, &id)?;
    let submit_ms = started.elapsed().as_millis() as u64;
    let replicas: Vec<Address> = job.replicas.iter().map(|r| r.provider).collect();
    let mut blobs: Vec<(Hash, PathBuf, u64)> = vec![(module, args.module.clone(), module_bytes)];
    if let Some(input) = input {
        blobs.push((input, bundle_file.path().to_path_buf(), input_bytes));
    }
    let per_replica: u64 = blobs.iter().map(|(_, _, len)| len).sum();
    let send_to: &[Address] = if args.no_send { &[] } else { &replicas };
    let not_delivered = runtime()?.block_on(async {
        if send_to.is_empty() {
            return Ok(Vec::new());
        }
        let net = join_network(ctx, &network.chain_id, None).await?;
        let progress = Arc::new(Progress::new(
            "sending",
            per_replica * send_to.len() as u64,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for provider in send_to {
            let (net, progress, blobs, provider) =
                (net.clone(), progress.clone(), blobs.clone(), *provider);
            tasks.spawn(async move {
                for (blob, path, _) in &blobs {
                    let sent = |bytes: u64| progress.add(bytes);
                    if let Err(e) =
                        push_blob(&net, &provider, *blob, path, Duration::from_secs(60), &sent)
                            .await
                    {
                        return Err((provider, e));
                    }
                }
                Ok(())
            });
        }
        let mut failed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err((provider, e))) => {
                    eprintln!("replica {provider} did not take the job's bytes: {e}");
                    failed.push(provider);
                }
                Err(e) => eprintln!("a transfer stopped: {e}"),
            }
        }
        progress.finish();
        net.shutdown().await;
        if failed.len() == replicas.len() {
            bail!("no replica took the job's bytes; it will end as unfetchable, the replicas paid the attempt fee");
        }
        Ok::<Vec<Address>, anyhow::Error>(failed)
    })?;
    let transfer_ms = started.elapsed().as_millis() as u64 - submit_ms;
    let job = if args.wait {
        Some(wait_settled(ctx, &id)?)
    } else {
        None
    };
    let timings_ms = Timings {
        submit: submit_ms,
        transfer: transfer_ms,
        settle: job
            .as_ref()
            .map(|_| started.elapsed().as_millis() as u64 - submit_ms - transfer_ms),
    };
    let submitted = Submitted {
        id,
        escrow_dc: escrow,
        replicas,
        module,
        input,
        seed,
        not_delivered,
        status: job.as_ref().map_or(JobStatus::Committing, |j| j.status),
        timings_ms,
        job,
    };
    ctx.out.emit(&submitted, || {
        let mut text = format!("{id}\n");
        match &submitted.job {
            Some(job) => text.push_str(&describe(job)),
            None => text.push_str(&format!(
                "escrowed {escrow} DC; {} replica(s) running it; follow it with `depin compute status {id}`\n",
                submitted.replicas.len()
            )),
        }
        Ok(text)
    })
}

/// Polls the job until it is done or failed. Its reveal deadline bounds the wait; a retry
/// moves the deadline, so each new one is waited for too.
fn wait_settled(ctx: &Ctx, id: &Hash) -> anyhow::Result<Job> {
    let mut last_progress = Instant::now();
    let mut last_state = String::new();
    loop {
        let job = fetch_job(ctx, id)?;
        if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            return Ok(job);
        }
        let state = format!("{:?}", (job.status, job.round, &job.replicas));
        if state != last_state {
            last_state = state;
            last_progress = Instant::now();
            let committed = job
                .replicas
                .iter()
                .filter(|r| r.commitment.is_some())
                .count();
            let revealed = job.replicas.iter().filter(|r| r.revealed.is_some()).count();
            eprintln!(
                "job {id}: {} (round {}): {committed} committed, {revealed} revealed of {}",
                output::word(&job.status),
                job.round,
                job.replicas.len()
            );
        }
        if last_progress.elapsed() > Duration::from_secs(600) {
            bail!("job {id} has not moved for 10 minutes; see `depin compute status {id}`");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn describe(job: &Job) -> String {
    let mut text = format!(
        "status {}, round {}, submitted at height {}, commit until {}, reveal until {}\n",
        output::word(&job.status),
        job.round,
        job.submitted_height,
        job.commit_deadline,
        job.reveal_deadline
    );
    text.push_str(&format!(
        "module {} ({} bytes), input {}\n",
        job.spec.module,
        job.spec.module_bytes,
        job.spec.input.map_or("none".into(), |h| format!(
            "{h} ({} bytes)",
            job.spec.input_bytes
        ))
    ));
    for r in &job.replicas {
        let verdict = match (&r.revealed, &job.accepted) {
            (Some(o), Some(a)) if o == a => "agreed",
            (Some(_), Some(_)) => "outvoted",
            (Some(_), None) => "revealed",
            (None, _) if r.commitment.is_some() => "committed",
            (None, _) => "assigned",
        };
        text.push_str(&format!("  {} {verdict}\n", r.provider));
    }
    if let Some(a) = &job.accepted {
        text.push_str(&format!(
            "accepted: {}, {} fuel, outputs {}\n",
            exit_text(a.exit),
            a.fuel_used,
            a.outputs
        ));
    }
    if job.status == JobStatus::Failed {
        text.push_str(
            "failed: no majority of the replicas revealed the same result before the deadlines \
             (a run that outlasts its deadline is stopped); the escrow was refunded\n",
        );
    }
    text.push_str(&format!(
        "paid {} DC, {} DC still escrowed\n",
        job.paid_dc, job.escrow_dc
    ));
    text
}

fn status(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let id = parse_job_id(id)?;
    let job = fetch_job(ctx, &id)?;
    ctx.out
        .emit(&job, || Ok(format!("job {id}\n{}", describe(&job))))
}

#[derive(Serialize)]
struct Fetched {
    id: Hash,
    exit: String,
    exit_code: Option<i32>,
    fuel_used: u64,
    agreed: Vec<Address>,
    from: Address,
    stdout_bytes: usize,
    stderr_bytes: usize,
    files: Vec<String>,
    output: PathBuf,
}

fn result(ctx: &Ctx, id: &str, output: &Path) -> anyhow::Result<()> {
    let id = parse_job_id(id)?;
    let job = fetch_job(ctx, &id)?;
    let Some(accepted) = job.accepted.filter(|_| job.status == JobStatus::Done) else {
        return Err(CodedError::new(
            "job_not_done",
            format!(
                "job {id} is {}: no accepted result",
                output::word(&job.status)
            ),
        )
        .into());
    };
    let network = Network::fetch(&ctx.client)?;
    let (bundle, from) = runtime()?.block_on(async {
        let net = join_network(ctx, &network.chain_id, None).await?;
        // A fresh session finds the replicas through the network's discovery: an
        // unreachable replica is asked again for a while before giving up.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut found = None;
        let mut reasons = Vec::new();
        while found.is_none() {
            reasons.clear();
            let mut retry = false;
            for holder in &job.agreed {
                match fetch_output(&net, holder, id, MAX_RESULT_BYTES).await {
                    Ok(bytes) => match ResultBundle::decode(&bytes) {
                        Ok(bundle) if bundle.matches(&accepted) => {
                            found = Some((bundle, *holder));
                            break;
                        }
                        Ok(_) => reasons.push(format!("{holder}: not the accepted result")),
                        Err(e) => reasons.push(format!("{holder}: {e}")),
                    },
                    Err(e) => {
                        retry |= matches!(e, TransferError::Net(_));
                        reasons.push(format!("{holder}: {e}"));
                    }
                }
            }
            if found.is_some() || !retry || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        net.shutdown().await;
        found.ok_or_else(|| anyhow::anyhow!("no replica served the result: {}", reasons.join("; ")))
    })?;
    bundle
        .write_to(output)
        .with_context(|| format!("cannot write into {}", output.display()))?;
    let fetched = Fetched {
        id,
        exit: exit_text(bundle.exit),
        exit_code: match bundle.exit {
            ExitKind::Exited(code) => Some(code),
            _ => None,
        },
        fuel_used: bundle.fuel_used,
        agreed: job.agreed.clone(),
        from,
        stdout_bytes: bundle.stdout.len(),
        stderr_bytes: bundle.stderr.len(),
        files: bundle.files.iter().map(|(name, _)| name.clone()).collect(),
        output: output.to_path_buf(),
    };
    // The chain's side of the result (fuel, who agreed) next to the files.
    std::fs::write(
        output.join("result.json"),
        serde_json::to_vec_pretty(&fetched)?,
    )
    .with_context(|| format!("cannot write into {}", output.display()))?;
    ctx.out.emit(&fetched, || {
        Ok(format!(
            "{}, {} fuel, checked against the result {} replica(s) agreed on\nstdout ({} bytes), stderr ({} bytes), exit, result.json and {} file(s) in {}",
            fetched.exit,
            fetched.fuel_used,
            fetched.agreed.len(),
            fetched.stdout_bytes,
            fetched.stderr_bytes,
            fetched.files.len(),
            output.display()
        ))
    })
}
