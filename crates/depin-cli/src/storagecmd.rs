//! `depin storage put|get|ls|status|delete`: the storage client. Files are encrypted with a
//! key derived from the owner's key (unless `--public`), cut into segments, erasure-coded and
//! uploaded straight to the providers the chain picked, over the libp2p service network;
//! downloads fetch any k pieces per segment from providers, verifying every 16 KiB group.

use crate::Ctx;
use crate::keycmd::read_key;
use crate::txcmd::{Network, TxOpts, send};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use depin_net::{NetConfig, NetHandle};
use depin_node::api_types::{DealResponse, DealsResponse, StatusResponse};
use depin_protocol::Action;
use depin_protocol::storage::{DealStatus, PieceRef, PieceState, StorageTx};
use depin_storage::client::{ClientError, download_piece, upload_piece};
use depin_storage::erasure::ReedSolomon;
use depin_storage::object::{
    Seal, plain_segment_bytes, prepare_segment, restore_segment, segment_nonce,
};
use depin_types::{Hash, Keypair, ServiceKind};
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Store a file: encrypt (unless --public), erasure-code, open a deal, upload the pieces.
    Put(PutArgs),
    /// Fetch a stored object back into a file.
    Get(GetArgs),
    /// Open deals of an owner.
    Ls {
        /// Owner address (default: the key's).
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// A deal's state and every piece's provider and health.
    Status { id: String },
    /// End a deal now; unused escrow comes back.
    Delete {
        id: String,
        #[command(flatten)]
        tx: TxOpts,
    },
}

#[derive(Args, Debug)]
pub struct PutArgs {
    pub file: PathBuf,
    /// Epochs to store it for.
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Store the bytes as they are (no encryption): anyone with the id can read them.
    #[arg(long)]
    pub public: bool,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    pub id: String,
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Key file of the owner (needed for encrypted objects).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, command: StorageCommand) -> anyhow::Result<()> {
    match command {
        StorageCommand::Put(args) => put(ctx, args),
        StorageCommand::Get(args) => get(ctx, args),
        StorageCommand::Ls { owner, key } => ls(ctx, owner, key),
        StorageCommand::Status { id } => status(ctx, &id),
        StorageCommand::Delete { id, tx } => delete(ctx, &id, tx),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Network diagnostics on stderr when asked for (RUST_LOG=depin_net=debug).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A libp2p client bootstrapped from the node the CLI talks to.
async fn join_network(ctx: &Ctx, chain_id: &str) -> anyhow::Result<NetHandle> {
    let status: StatusResponse = ctx.client.get("/v1/status")?;
    if status.net_addrs.is_empty() {
        bail!(
            "the node at {} is not on the service network (no net_listen)",
            ctx.client.base()
        );
    }
    let key = Keypair::generate().context("cannot make a session key")?;
    let mut config = NetConfig::new(key, chain_id);
    config.listen_tcp = "/ip4/127.0.0.1/tcp/0".parse().context("listen address")?;
    config.listen_quic = None;
    config.max_request_bytes = depin_storage::protocol::MAX_MESSAGE_BYTES;
    config.max_response_bytes = depin_storage::protocol::MAX_MESSAGE_BYTES;
    config.discovery_interval = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(30);
    config.bootstrap = status
        .net_addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let (net, _events) = depin_net::Network::start(config)
        .await
        .context("cannot join the service network")?;
    // Wait for the bootstrap connection; providers are found through it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while net.peers().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(net)
}

fn erasure(deal_k: u16, deal_n: u16) -> anyhow::Result<ReedSolomon> {
    ReedSolomon::new(usize::from(deal_k), usize::from(deal_n)).map_err(|e| anyhow::anyhow!("{e}"))
}

fn read_segment(
    file: &mut File,
    index: u64,
    per_segment: u64,
    total: u64,
) -> anyhow::Result<Vec<u8>> {
    let start = index * per_segment;
    let len = per_segment.min(total.saturating_sub(start));
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; len as usize];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

#[derive(Serialize)]
struct PutOutcome {
    id: Hash,
    object_bytes: u64,
    segments: usize,
    encrypted: bool,
    epochs: u64,
    status: String,
}

fn put(ctx: &Ctx, args: PutArgs) -> anyhow::Result<()> {
    let key = read_key(&args.tx.key)?;
    let network = Network::fetch(&ctx.client)?;
    let params = network.genesis.storage.clone();
    let profile = params.erasure;
    let coder = erasure(profile.data_pieces, profile.total_pieces)?;
    let mut file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let total = file.metadata()?.len();
    let encrypted = !args.public;
    let per_segment = plain_segment_bytes(params.max_segment_bytes, encrypted)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let segments = total.div_ceil(per_segment).max(1);
    if segments > u64::from(params.max_segments_per_deal) {
        bail!(
            "{} bytes need {segments} segments; a deal holds at most {}",
            total,
            params.max_segments_per_deal
        );
    }
    let secret = key.secret_bytes();
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let seal = |i: u64| {
        encrypted.then_some(Seal {
            owner_secret: &secret,
            nonce: segment_nonce(&salt, i),
        })
    };
    // Pass 1: the roots the deal commits to.
    let mut specs = Vec::new();
    for i in 0..segments {
        let plain = read_segment(&mut file, i, per_segment, total)?;
        let prepared =
            prepare_segment(&coder, &plain, seal(i)).map_err(|e| anyhow::anyhow!("{e}"))?;
        specs.push(prepared.spec());
        eprintln!("coded segment {}/{segments}", i + 1);
    }
    let open = StorageTx::OpenDeal {
        object_bytes: total,
        encrypted,
        epochs: args.epochs,
        segments: specs,
    };
    let outcome = send(
        &ctx.client,
        &network,
        &key,
        args.tx.nonce,
        Action::Service {
            service: ServiceKind::Storage,
            payload: depin_types::encode(&open),
        },
        true,
    )?;
    let id = outcome
        .events
        .iter()
        .filter_map(|e| e["name"].as_str())
        .find_map(|n| n.strip_prefix("deal_opened "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse::<Hash>().ok())
        .context("the deal transaction did not report a deal id")?;
    eprintln!("deal {id} opened; uploading");
    let deal: DealResponse = ctx.client.get(&format!("/v1/storage/deals/{id}"))?;

    // Pass 2: code each segment again and upload its pieces in parallel.
    let rt = runtime()?;
    rt.block_on(async {
        let net = join_network(ctx, &network.chain_id).await?;
        // Code segment i+1 on another thread while segment i uploads.
        let (ready, mut prepared_rx) = tokio::sync::mpsc::channel(1);
        let path = args.file.clone();
        std::thread::spawn(move || {
            let produce = || -> anyhow::Result<()> {
                let mut file = File::open(&path)?;
                for i in 0..segments {
                    let plain = read_segment(&mut file, i, per_segment, total)?;
                    let seal = encrypted.then_some(Seal {
                        owner_secret: &secret,
                        nonce: segment_nonce(&salt, i),
                    });
                    let prepared = prepare_segment(&coder, &plain, seal)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    if ready.blocking_send(Ok(prepared)).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = produce() {
                let _ = ready.blocking_send(Err(e));
            }
        });
        for i in 0..segments {
            let prepared = prepared_rx
                .recv()
                .await
                .context("the coding thread stopped")??;
            let segment = &deal.segments[i as usize];
            let mut uploads = Vec::new();
            for piece in &segment.pieces {
                let Some(provider) = piece.provider else {
                    continue;
                };
                let data = prepared.pieces[usize::from(piece.index)].clone();
                let net = net.clone();
                let r = PieceRef {
                    deal: id,
                    segment: i as u32,
                    piece: piece.index,
                };
                uploads.push(tokio::spawn(async move {
                    upload_with_retry(&net, &provider, r, &data).await
                }));
            }
            let mut stored = 0;
            for u in uploads {
                match u.await {
                    Ok(Ok(())) => stored += 1,
                    Ok(Err(e)) => eprintln!("  a piece upload failed: {e}"),
                    Err(e) => eprintln!("  a piece upload stopped: {e}"),
                }
            }
            eprintln!(
                "segment {}/{segments}: {stored} of {} pieces stored ({:.0}%)",
                i + 1,
                segment
                    .pieces
                    .iter()
                    .filter(|p| p.provider.is_some())
                    .count(),
                100.0 * (i + 1) as f64 / segments as f64
            );
            if stored < usize::from(profile.success_threshold) {
                bail!(
                    "segment {i}: only {stored} pieces stored, {} needed",
                    profile.success_threshold
                );
            }
        }
        net.shutdown().await;
        Ok::<(), anyhow::Error>(())
    })?;
    // The providers confirm on chain; the deal activates at the success threshold.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let deal: DealResponse = ctx.client.get(&format!("/v1/storage/deals/{id}"))?;
        if deal.deal.status != DealStatus::Pending || Instant::now() > deadline {
            break deal.deal.status;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let outcome = PutOutcome {
        id,
        object_bytes: total,
        segments: segments as usize,
        encrypted,
        epochs: args.epochs,
        status: format!("{status:?}").to_lowercase(),
    };
    ctx.out.emit(&outcome, || {
        Ok(format!(
            "{id}\nstored {total} bytes in {segments} segment(s), {}, deal {}",
            if encrypted { "encrypted" } else { "public" },
            outcome.status
        ))
    })
}

/// Uploads a piece, retrying while the provider has not seen the deal yet (its copy of the
/// chain may be a block behind) or cannot be reached yet.
async fn upload_with_retry(
    net: &NetHandle,
    provider: &depin_types::Address,
    piece: PieceRef,
    data: &[u8],
) -> Result<(), ClientError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match upload_piece(net, provider, piece, data).await {
            Ok(()) => return Ok(()),
            Err(ClientError::Refused { code, message }) if code != "unknown_piece" => {
                return Err(ClientError::Refused { code, message });
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Downloads a piece, retrying while the provider cannot be reached yet (discovery) but not
/// after it refused or sent bad bytes.
async fn download_with_retry(
    net: &NetHandle,
    provider: &depin_types::Address,
    root: Hash,
    size: u64,
) -> Result<Vec<u8>, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match download_piece(net, provider, root, size).await {
            Err(ClientError::Net(e)) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "retrying a piece download");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

#[derive(Serialize)]
struct GetOutcome {
    id: Hash,
    output: PathBuf,
    bytes: u64,
}

fn get(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let id: Hash = args.id.parse().context("a deal id is 64 hex digits")?;
    let network = Network::fetch(&ctx.client)?;
    let deal: DealResponse = ctx.client.get(&format!("/v1/storage/deals/{id}"))?;
    let secret = match (&args.key, deal.deal.encrypted) {
        (Some(path), true) => Some(read_key(path)?.secret_bytes()),
        (None, true) => bail!("this object is encrypted: give the owner's key with --key"),
        (_, false) => None,
    };
    let coder = erasure(deal.deal.data_pieces, deal.deal.total_pieces)?;
    let k = usize::from(deal.deal.data_pieces);
    let tmp = args.output.with_extension("part");
    let mut out = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let rt = runtime()?;
    let written = rt.block_on(async {
        let net = join_network(ctx, &network.chain_id).await?;
        let mut written = 0u64;
        let count = deal.segments.len();
        for segment in &deal.segments {
            let mut candidates: Vec<_> = segment
                .pieces
                .iter()
                .filter(|p| matches!(p.state, PieceState::Stored | PieceState::Assigned))
                .filter_map(|p| p.provider.map(|a| (p.index, p.root, a)))
                .collect();
            // Data pieces first (popped from the end): with all of them, decoding is a copy.
            candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
            // Ask k + 1 at once and keep the first k good ones; ask more if some fail.
            let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
            let mut tasks = tokio::task::JoinSet::new();
            let launch = |tasks: &mut tokio::task::JoinSet<_>, candidates: &mut Vec<_>| {
                if let Some((index, root, provider)) = candidates.pop() {
                    let net = net.clone();
                    let size = segment.piece_bytes;
                    tasks.spawn(async move {
                        (
                            index,
                            download_with_retry(&net, &provider, root, size).await,
                        )
                    });
                }
            };
            for _ in 0..k + 1 {
                launch(&mut tasks, &mut candidates);
            }
            while pieces.len() < k {
                let Some(done) = tasks.join_next().await else {
                    bail!(
                        "segment {}: only {} of the {k} pieces needed could be fetched",
                        segment.index,
                        pieces.len()
                    );
                };
                match done {
                    Ok((index, Ok(bytes))) => pieces.push((usize::from(index), bytes)),
                    Ok((index, Err(e))) => {
                        eprintln!("  piece {index} of segment {}: {e}", segment.index);
                        launch(&mut tasks, &mut candidates);
                    }
                    Err(e) => eprintln!("  a download stopped: {e}"),
                }
            }
            tasks.abort_all();
            let plain = restore_segment(&coder, segment.segment_bytes, &pieces, secret.as_ref())
                .map_err(|e| anyhow::anyhow!("segment {}: {e}", segment.index))?;
            out.write_all(&plain)?;
            written += plain.len() as u64;
            eprintln!("segment {}/{count} fetched", segment.index + 1);
        }
        net.shutdown().await;
        Ok::<u64, anyhow::Error>(written)
    })?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&tmp, &args.output)?;
    let outcome = GetOutcome {
        id,
        output: args.output.clone(),
        bytes: written,
    };
    ctx.out.emit(&outcome, || {
        Ok(format!(
            "wrote {written} bytes to {}",
            args.output.display()
        ))
    })
}

fn ls(ctx: &Ctx, owner: Option<String>, key: Option<PathBuf>) -> anyhow::Result<()> {
    let owner = match (owner, key) {
        (Some(o), _) => o,
        (None, Some(k)) => read_key(&k)?.address().to_string(),
        (None, None) => bail!("give --owner ADDRESS or --key FILE"),
    };
    let deals: DealsResponse = ctx
        .client
        .get(&format!("/v1/storage/deals?owner={owner}"))?;
    ctx.out.emit(&deals, || {
        let mut text = format!("{} open deal(s)\n", deals.deals.len());
        for d in &deals.deals {
            text.push_str(&format!(
                "{}  {:>12} bytes  {:?}  epochs {:?}..{:?}\n",
                d.id, d.object_bytes, d.status, d.start_epoch, d.end_epoch
            ));
        }
        Ok(text)
    })
}

fn status(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let deal: DealResponse = ctx.client.get(&format!("/v1/storage/deals/{id}"))?;
    ctx.out.emit(&deal, || {
        let d = &deal.deal;
        let mut text = format!(
            "deal {}\n  owner {}\n  {} bytes, {}, {:?}, epochs {:?}..{:?}\n  escrow {} DC, repair budget {} DC, paid {} DC\n",
            d.id,
            d.owner,
            d.object_bytes,
            if d.encrypted { "encrypted" } else { "public" },
            d.status,
            d.start_epoch,
            d.end_epoch,
            d.escrow_dc,
            d.repair_budget_dc,
            d.paid_dc
        );
        for s in &deal.segments {
            text.push_str(&format!(
                "  segment {}: {} bytes, {} healthy of {}{}\n",
                s.index,
                s.segment_bytes,
                s.healthy_pieces,
                s.pieces.len(),
                if s.needs_repair { ", needs repair" } else { "" }
            ));
        }
        Ok(text)
    })
}

fn delete(ctx: &Ctx, id: &str, opts: TxOpts) -> anyhow::Result<()> {
    let deal: Hash = id.parse().context("a deal id is 64 hex digits")?;
    let key = read_key(&opts.key)?;
    let network = Network::fetch(&ctx.client)?;
    let outcome = send(
        &ctx.client,
        &network,
        &key,
        opts.nonce,
        Action::Service {
            service: ServiceKind::Storage,
            payload: depin_types::encode(&StorageTx::DeleteDeal { deal }),
        },
        !opts.no_wait,
    )?;
    ctx.out.emit(&outcome, || {
        Ok(format!("deleted deal {deal} ({})", outcome.status))
    })
}
