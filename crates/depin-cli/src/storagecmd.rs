//! `depin storage put|get|ls|status|delete`: the storage client. Files are encrypted with a
//! key derived from the owner's key (unless `--public`), cut into segments, erasure-coded and
//! uploaded straight to the providers the chain picked, over the libp2p service network;
//! downloads fetch any k pieces per segment from providers, verifying every 16 KiB group.

use crate::Ctx;
use crate::keycmd::read_key;
use crate::output;
use crate::progress::Progress;
use crate::txcmd::{Network, TxOpts, TxOutcome, send};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use depin_net::{NetConfig, NetHandle};
use depin_node::api_types::{DealResponse, DealsResponse, SegmentView, StatusResponse};
use depin_protocol::Action;
use depin_protocol::storage::{DealStatus, PieceState, StorageEvent, StorageParams, StorageTx};
use depin_storage::client::{FetchEvent, FetchPlan, PieceHolder, fetch_pieces};
use depin_storage::erasure::ReedSolomon;
use depin_storage::object::{SegmentCoder, plain_segment_bytes};
use depin_storage::upload::{SealKey, SegmentPlacement, UploadEvent, UploadJob, Uploader};
use depin_types::{Hash, Keypair};
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Leave storage by graceful exit: take no new pieces, hand every held piece to another
    /// provider by repair; then `provider deregister` forfeits nothing.
    Exit {
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
    /// Pieces asked for beyond the k needed, per segment; the slowest are cancelled once k
    /// arrive. More are asked for anyway when one fails or nothing arrives for 3 s.
    #[arg(long, default_value_t = 1)]
    pub extra: usize,
}

pub fn run(ctx: &Ctx, command: StorageCommand) -> anyhow::Result<()> {
    match command {
        StorageCommand::Put(args) => put(ctx, args),
        StorageCommand::Get(args) => get(ctx, args),
        StorageCommand::Ls { owner, key } => ls(ctx, owner, key),
        StorageCommand::Status { id } => status(ctx, &id),
        StorageCommand::Delete { id, tx } => delete(ctx, &id, tx),
        StorageCommand::Exit { tx } => exit(ctx, tx),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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

/// A libp2p client bootstrapped from the node the CLI talks to, as `identity` (providers take
/// a deal's pieces only from its owner's peer) or a session key.
pub(crate) async fn join_network(
    ctx: &Ctx,
    chain_id: &str,
    identity: Option<&Keypair>,
) -> anyhow::Result<NetHandle> {
    let status: StatusResponse = ctx.client.get("/v1/status")?;
    if status.net_addrs.is_empty() {
        bail!(
            "the node at {} is not on the service network (no net_listen)",
            ctx.client.base()
        );
    }
    let key = match identity {
        // Two peers with one key cannot connect to each other.
        Some(key) if key.address() == status.node_address => bail!(
            "{} is the key of the node at {} itself: store from another account (providers take pieces only from their owner's peer)",
            key.address(),
            ctx.client.base()
        ),
        Some(key) => key.clone(),
        None => Keypair::generate().context("cannot make a session key")?,
    };
    let mut config = NetConfig::new(key, chain_id);
    config.listen_tcp = "/ip4/127.0.0.1/tcp/0".parse().context("listen address")?;
    config.listen_quic = None;
    // Storage pieces travel in 1 MiB parts; a video segment whole, its renditions back.
    config.max_request_bytes =
        depin_storage::protocol::MAX_MESSAGE_BYTES.max(depin_node::video::wire::MAX_REQUEST_BYTES);
    config.max_response_bytes = depin_storage::protocol::MAX_MESSAGE_BYTES.max(16 << 20);
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
    let params = network.genesis.service_params::<StorageParams>()?;
    let profile = params.erasure;
    let total = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?
        .len();
    let encrypted = !args.public;
    let per_segment = plain_segment_bytes(params.max_segment_bytes, encrypted)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let seal = if encrypted {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Some(SealKey {
            owner_secret: key.secret_bytes(),
            salt,
        })
    } else {
        None
    };
    let job = UploadJob {
        path: args.file.clone(),
        object_bytes: total,
        plain_segment_bytes: per_segment,
        data_pieces: profile.data_pieces,
        total_pieces: profile.total_pieces,
        seal,
    };
    let segments = job.segments();
    if segments > u64::from(params.max_segments_per_deal) {
        bail!(
            "{} bytes need {segments} segments; a deal holds at most {}",
            total,
            params.max_segments_per_deal
        );
    }
    // Pass 1: the deal commits to every piece root before any piece may be uploaded.
    let coding = Progress::new("coding", total);
    let specs = job.piece_roots(&|bytes| coding.add(bytes))?;
    coding.finish();
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
            service: depin_protocol::storage::SERVICE,
            payload: depin_types::encode(&open),
        },
        true,
    )?;
    let id = outcome
        .service_events::<StorageEvent>()
        .find_map(|e| match e {
            StorageEvent::DealOpened { id, .. } => Some(id),
            _ => None,
        })
        .context("the deal transaction did not report a deal id")?;
    eprintln!("deal {id} opened");
    let deal: DealResponse = ctx.client.get(&format!("/v1/storage/deals/{id}"))?;
    let placement: Vec<SegmentPlacement> = deal
        .segments
        .iter()
        .map(|segment| SegmentPlacement {
            segment: segment.index,
            pieces: segment
                .pieces
                .iter()
                .filter_map(|p| Some((p.index, p.provider?)))
                .collect(),
        })
        .collect();
    // The bar counts the pieces the chain placed: a network with fewer providers than pieces
    // per segment places only some of them.
    let upload_bytes: u64 = deal
        .segments
        .iter()
        .zip(&placement)
        .map(|(segment, placed)| segment.piece_bytes * placed.pieces.len() as u64)
        .sum();
    // Pass 2: the library codes again while earlier segments upload, and cuts the long tail.
    let rt = runtime()?;
    rt.block_on(async {
        let net = join_network(ctx, &network.chain_id, Some(&key)).await?;
        let progress = Arc::new(Progress::new("uploading", upload_bytes));
        let shown = progress.clone();
        let events: Arc<dyn Fn(UploadEvent) + Send + Sync> = Arc::new(move |event| match event {
            UploadEvent::Sent(bytes) => shown.add(bytes),
            UploadEvent::PieceFailed { piece, error } => eprintln!(
                "piece {} of segment {} was not stored: {error}",
                piece.piece, piece.segment
            ),
            UploadEvent::TailCancelled { pieces } => eprintln!(
                "cancelling {pieces} slow piece upload(s): every segment has its {} pieces",
                profile.success_threshold
            ),
        });
        let result = Uploader::new(profile.success_threshold)
            .upload(&job, id, &placement, &net, events)
            .await;
        progress.finish();
        net.shutdown().await;
        result.map(|_| ()).map_err(anyhow::Error::from)
    })?;
    // The providers confirm on chain; the deal activates at the success threshold.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let deal: DealResponse = ctx.client.get(&format!("/v1/storage/deals/{id}"))?;
        if deal.deal.status != DealStatus::Pending || Instant::now() > deadline {
            break deal.deal.status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let outcome = PutOutcome {
        id,
        object_bytes: total,
        segments: segments as usize,
        encrypted,
        epochs: args.epochs,
        status: output::word(&status),
    };
    ctx.out.emit(&outcome, || {
        Ok(format!(
            "{id}\nstored {total} bytes in {segments} segment(s), {}, deal {}",
            if encrypted { "encrypted" } else { "public" },
            outcome.status
        ))
    })
}

/// A segment's pieces as the chain lists them, fetched with k + `extra` asked at once.
async fn fetch_segment(
    net: &NetHandle,
    segment: &SegmentView,
    k: usize,
    extra: usize,
    progress: &Arc<Progress>,
) -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
    let holders = segment
        .pieces
        .iter()
        .filter(|p| matches!(p.state, PieceState::Stored | PieceState::Assigned))
        .filter_map(|p| {
            p.provider.map(|provider| PieceHolder {
                index: p.index,
                root: p.root,
                provider,
            })
        })
        .collect();
    let plan = FetchPlan {
        piece_bytes: segment.piece_bytes,
        needed: k,
        extra,
        hedge_after: Duration::from_secs(3),
        retry_for: Duration::from_secs(15),
    };
    let report = |event: FetchEvent<'_>| match event {
        FetchEvent::Piece { bytes } => progress.add(bytes),
        FetchEvent::Failed { index, error } => {
            eprintln!("piece {index} of segment {}: {error}", segment.index)
        }
    };
    fetch_pieces(net, holders, &plan, &report)
        .await
        .map_err(|e| anyhow::anyhow!("segment {}: {e}", segment.index))
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
    // Segment i is decoded, decrypted and written on this thread while i + 1 downloads.
    let (fetched, mut to_restore) = tokio::sync::mpsc::channel::<(u64, Vec<(usize, Vec<u8>)>)>(1);
    let restorer = std::thread::spawn(move || -> anyhow::Result<(File, u64)> {
        let mut segments = SegmentCoder::new(&coder);
        let mut plain = Vec::new();
        let mut written = 0u64;
        let mut index = 0u64;
        while let Some((segment_bytes, pieces)) = to_restore.blocking_recv() {
            segments
                .restore(segment_bytes, &pieces, secret.as_ref(), &mut plain)
                .map_err(|e| anyhow::anyhow!("segment {index}: {e}"))?;
            index += 1;
            out.write_all(&plain)?;
            written += plain.len() as u64;
        }
        Ok((out, written))
    });
    let fetch_bytes = deal.segments.iter().map(|s| s.piece_bytes * k as u64).sum();
    let rt = runtime()?;
    let fetching = rt.block_on(async {
        let net = join_network(ctx, &network.chain_id, None).await?;
        let progress = Arc::new(Progress::new("fetching", fetch_bytes));
        for segment in &deal.segments {
            let pieces = fetch_segment(&net, segment, k, args.extra, &progress).await?;
            if fetched.send((segment.segment_bytes, pieces)).await.is_err() {
                break; // the restorer failed; its error is reported below
            }
        }
        progress.finish();
        net.shutdown().await;
        Ok::<(), anyhow::Error>(())
    });
    drop(fetched);
    let restored = restorer
        .join()
        .map_err(|_| anyhow::anyhow!("the decoding thread panicked"))?;
    let (out, written) = restored?;
    fetching?;
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
                "{}  {:>12} bytes  {}  epochs {}..{}\n",
                d.id,
                d.object_bytes,
                output::word(&d.status),
                output::or_dash(d.start_epoch),
                output::or_dash(d.end_epoch)
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
            "deal {}\n  owner {}\n  {} bytes, {}, {}, epochs {}..{}\n  escrow {} DC, repair budget {} DC, paid {} DC\n",
            d.id,
            d.owner,
            d.object_bytes,
            if d.encrypted { "encrypted" } else { "public" },
            output::word(&d.status),
            output::or_dash(d.start_epoch),
            output::or_dash(d.end_epoch),
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

/// Signs and sends one storage transaction with the options' key.
fn send_storage(ctx: &Ctx, opts: &TxOpts, tx: &StorageTx) -> anyhow::Result<TxOutcome> {
    let key = read_key(&opts.key)?;
    let network = Network::fetch(&ctx.client)?;
    send(
        &ctx.client,
        &network,
        &key,
        opts.nonce,
        Action::Service {
            service: depin_protocol::storage::SERVICE,
            payload: depin_types::encode(tx),
        },
        !opts.no_wait,
    )
}

fn delete(ctx: &Ctx, id: &str, opts: TxOpts) -> anyhow::Result<()> {
    let deal: Hash = id.parse().context("a deal id is 64 hex digits")?;
    let outcome = send_storage(ctx, &opts, &StorageTx::DeleteDeal { deal })?;
    ctx.out.emit(&outcome, || {
        Ok(format!("deleted deal {deal} ({})", outcome.status))
    })
}

fn exit(ctx: &Ctx, opts: TxOpts) -> anyhow::Result<()> {
    let outcome = send_storage(ctx, &opts, &StorageTx::BeginExit)?;
    let pieces = outcome
        .service_events::<StorageEvent>()
        .find_map(|e| match e {
            StorageEvent::ExitStarted { pieces, .. } => Some(pieces),
            _ => None,
        });
    ctx.out.emit(&outcome, || {
        Ok(match pieces {
            Some(0) => format!(
                "graceful exit started ({}): no pieces held, `depin provider deregister` forfeits nothing",
                outcome.status
            ),
            Some(n) => format!(
                "graceful exit started ({}): {n} pieces move to other providers by repair; deregister once `depin storage status` shows none on this provider",
                outcome.status
            ),
            None => format!("graceful exit sent ({})", outcome.status),
        })
    })
}
