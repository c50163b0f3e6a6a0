//! Render jobs from the consumer's side: `depin render submit|status|approve|reject|fetch`.
//! A scene travels as a folder bundle (the .blend as `scene.blend` and every file it reads at
//! its relative path) named by its BLAKE3; the chain escrows the pieces and picks renderers;
//! the client pushes the bundle to each renderer as it is picked, and later fetches approved
//! pieces, checking each against the pixel hash and tile root its renderer committed to.

use crate::Ctx;
use crate::client::CodedError;
use crate::keycmd::read_key;
use crate::output;
use crate::progress::Progress;
use crate::storagecmd::{join_network, runtime};
use crate::txcmd::{Network, TxOpts, send};
use anyhow::{Context, bail};
use clap::Args;
use depin_blobs::transfer::{fetch_output, push_blob};
use depin_protocol::Action;
use depin_protocol::render::{
    Piece, PieceStatus, RenderEvent, RenderJob, RenderJobSpec, RenderJobStatus, RenderParams,
    RenderTx, check_spec, job_escrow_dc,
};
use depin_render::{Blender, BlenderConfig, Image, piece_output_key};
use depin_types::{Address, Hash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SubmitArgs {
    /// The scene (.blend); the files it reads must be inside its folder.
    pub scene: PathBuf,
    /// Frames to render, FIRST-LAST or one frame (default: the scene's range).
    #[arg(long)]
    pub frames: Option<String>,
    /// Cycles samples per pixel (default: the scene's).
    #[arg(long)]
    pub samples: Option<u32>,
    /// The frame size, WxH (default: the scene's).
    #[arg(long, value_parser = crate::rendercmd::parse_resolution)]
    pub resolution: Option<(u32, u32)>,
    /// Most Data Credits paid per 10⁹ pixel-samples (default: twice the network's floor);
    /// providers asking more are not picked.
    #[arg(long)]
    pub max_price: Option<u64>,
    /// Wait until every piece is checked (or given up), sending the scene to each renderer.
    #[arg(long)]
    pub wait: bool,
    /// The Blender that inspects the scene here before it is sent.
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args)]
pub struct ApproveArgs {
    pub id: String,
    /// Pieces to approve, e.g. 0,3,5 (default: every piece offered now).
    #[arg(long, value_delimiter = ',')]
    pub pieces: Vec<u64>,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args)]
pub struct RejectArgs {
    pub id: String,
    #[arg(long)]
    pub piece: u64,
    #[command(flatten)]
    pub tx: TxOpts,
}

#[derive(Args)]
pub struct FetchArgs {
    pub id: String,
    /// Folder for the frames (frame_0001.png, ...).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Also encode the frames into this video (H.264, with ffmpeg).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Frames per second of the video.
    #[arg(long, default_value_t = 24)]
    pub fps: u32,
    /// The job's owner key: renderers serve approved frames to it only.
    #[arg(long)]
    pub key: PathBuf,
}

/// The node's `/v1/render/jobs/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobView {
    pub job: RenderJob,
    pub pieces: Vec<Piece>,
    pub never_assigned: u64,
}

fn parse_job_id(text: &str) -> anyhow::Result<Hash> {
    text.parse()
        .map_err(|_| CodedError::new("bad_job_id", "a job id is 64 hex digits").into())
}

fn fetch_view(ctx: &Ctx, id: &Hash) -> anyhow::Result<JobView> {
    ctx.client.get(&format!("/v1/render/jobs/{id}"))
}

fn parse_frames(text: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || CodedError::new("bad_frames", format!("frames {text:?} are not FIRST-LAST"));
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let first: u32 = a.trim().parse().map_err(|_| bad())?;
    let last: u32 = b.trim().parse().map_err(|_| bad())?;
    Ok((first, last))
}

fn coded(e: depin_render::RenderError) -> anyhow::Error {
    CodedError::new(e.code(), e.to_string()).into()
}

/// Copies the scene as `scene.blend` and every file it reads (at its path relative to the
/// scene's folder) into `stage`.
fn stage_scene(scene: &Path, needed: &[String], stage: &Path) -> anyhow::Result<()> {
    std::fs::copy(scene, stage.join("scene.blend"))
        .with_context(|| format!("cannot copy {}", scene.display()))?;
    let folder = scene.parent().unwrap_or(Path::new("."));
    for relative in needed {
        let from = folder.join(relative);
        let to = stage.join(relative);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Submitted {
    id: Hash,
    bundle: Hash,
    bundle_bytes: u64,
    pieces: u64,
    escrow_dc: u128,
    /// Renderers that took the scene from us.
    sent_to: Vec<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    view: Option<JobView>,
}

pub fn submit(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<()> {
    let key = read_key(&args.tx.key)?;
    let network = Network::fetch(&ctx.client)?;
    let params = network.genesis.service_params::<RenderParams>()?;
    let scene_path = std::fs::canonicalize(&args.scene)
        .with_context(|| format!("no scene at {}", args.scene.display()))?;
    let folder = scene_path.parent().unwrap_or(Path::new("/"));
    let blender = Blender::new(BlenderConfig {
        binary: args.blender.clone(),
        ..BlenderConfig::default()
    });
    eprintln!("inspecting {}", scene_path.display());
    let info = blender.inspect(folder, &scene_path).map_err(coded)?;
    if !info.missing_files.is_empty() {
        return Err(CodedError::new(
            "missing_files",
            format!(
                "the scene reads files outside its folder or missing: {}",
                info.missing_files.join(", ")
            ),
        )
        .into());
    }
    let (frame_start, frame_end) = match &args.frames {
        Some(text) => parse_frames(text)?,
        None => (
            u32::try_from(info.frame_start.max(0)).unwrap_or(0),
            u32::try_from(info.frame_end.max(0)).unwrap_or(0),
        ),
    };
    let (width, height) = args.resolution.unwrap_or((info.width, info.height));
    let stage = tempfile::tempdir().context("cannot make a temporary folder")?;
    stage_scene(&scene_path, &info.needed_files, stage.path())?;
    let bundle_file = tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
    let (bundle, bundle_bytes) = depin_blobs::folder::pack(stage.path(), bundle_file.as_file())
        .context("cannot pack the scene")?;
    let spec = RenderJobSpec {
        bundle,
        bundle_bytes,
        frame_start,
        frame_end,
        width,
        height,
        samples: args.samples.unwrap_or(info.samples),
        max_price_dc_per_gigapixel_sample: args
            .max_price
            .unwrap_or(params.min_price_dc_per_gigapixel_sample * 2),
    };
    // Refused here with the chain's own words, before anything is paid.
    check_spec(&params, &spec).map_err(|e| match e {
        depin_protocol::TxError::ServiceRejected { code, reason, .. } => {
            anyhow::Error::from(CodedError::new(code, reason))
        }
        other => anyhow::Error::from(other),
    })?;
    let escrow = job_escrow_dc(&params, &spec)?;
    eprintln!(
        "escrowing {} DC for {} frame(s) at {width}×{height}, {} samples",
        escrow.total_dc(),
        spec.frames(),
        spec.samples
    );
    let outcome = send(
        &ctx.client,
        &network,
        &key,
        args.tx.nonce,
        Action::Service {
            service: depin_protocol::render::SERVICE,
            payload: depin_types::encode(&RenderTx::SubmitJob(spec)),
        },
        true,
    )?;
    let (id, pieces) = outcome
        .service_events::<RenderEvent>()
        .find_map(|e| match e {
            RenderEvent::JobSubmitted { id, pieces, .. } => Some((id, pieces)),
            _ => None,
        })
        .context("the job transaction did not report a job id")?;
    eprintln!("job {id} submitted: {pieces} piece(s)");
    let sent_to = send_scene(
        ctx,
        &network.chain_id,
        &id,
        bundle,
        bundle_file.path(),
        args.wait,
    )?;
    let view = if args.wait {
        Some(wait_checked(ctx, &id)?)
    } else {
        None
    };
    let submitted = Submitted {
        id,
        bundle,
        bundle_bytes,
        pieces,
        escrow_dc: escrow.total_dc(),
        sent_to,
        view,
    };
    ctx.out.emit(&submitted, || {
        let mut text = format!("{id}\n");
        match &submitted.view {
            Some(view) => text.push_str(&describe(view)),
            None => text.push_str(&format!(
                "{} piece(s) escrowed for {} DC; follow it with `depin render status {id}`\n",
                submitted.pieces, submitted.escrow_dc
            )),
        }
        Ok(text)
    })
}

/// Pushes the bundle to every renderer the chain picks for the job: until each piece has had
/// a renderer (later renderers fetch the scene from earlier ones), or with `all` until every
/// piece is checked.
fn send_scene(
    ctx: &Ctx,
    chain_id: &str,
    id: &Hash,
    bundle: Hash,
    path: &Path,
    all: bool,
) -> anyhow::Result<Vec<Address>> {
    runtime()?.block_on(async {
        let net = join_network(ctx, chain_id, None).await?;
        let mut sent: BTreeSet<Address> = BTreeSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        let progress = Arc::new(Progress::new("sending", 0));
        let started = Instant::now();
        loop {
            let view = fetch_view(ctx, id)?;
            let rendering: Vec<Address> = view
                .pieces
                .iter()
                .filter(|p| p.status == PieceStatus::Rendering)
                .filter_map(|p| p.renderer)
                .collect();
            for renderer in rendering {
                if !sent.insert(renderer) {
                    continue;
                }
                let (net, path, progress) = (net.clone(), path.to_path_buf(), progress.clone());
                tasks.spawn(async move {
                    let add = |n: u64| progress.add(n);
                    let pushed = push_blob(
                        &net,
                        &renderer,
                        bundle,
                        &path,
                        Duration::from_secs(60),
                        &add,
                    )
                    .await;
                    (renderer, pushed)
                });
            }
            while let Some(done) = tasks.try_join_next() {
                if let Ok((renderer, Err(e))) = done {
                    eprintln!("renderer {renderer} did not take the scene: {e}");
                }
            }
            let settled = view.job.status == RenderJobStatus::Done
                || view.pieces.iter().all(|p| {
                    !matches!(
                        p.status,
                        PieceStatus::Queued | PieceStatus::Rendering | PieceStatus::Committed
                    )
                });
            let all_assigned = view.never_assigned == 0 && !sent.is_empty();
            if (all && settled && view.never_assigned == 0) || (!all && all_assigned) {
                break;
            }
            if started.elapsed() > Duration::from_secs(3600) {
                bail!("job {id}: pieces still unassigned after an hour");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok((renderer, Err(e))) = done {
                eprintln!("renderer {renderer} did not take the scene: {e}");
            }
        }
        progress.finish();
        net.shutdown().await;
        Ok(sent.into_iter().collect())
    })
}

/// Polls the job until every piece is offered, approved or given up.
fn wait_checked(ctx: &Ctx, id: &Hash) -> anyhow::Result<JobView> {
    let mut last = String::new();
    let mut moved = Instant::now();
    loop {
        let view = fetch_view(ctx, id)?;
        let counts = counts(&view);
        let open = counts.queued + counts.rendering + counts.checking;
        if open == 0 {
            return Ok(view);
        }
        let line = counts.line();
        if line != last {
            eprintln!("job {id}: {line}");
            last = line;
            moved = Instant::now();
        }
        if moved.elapsed() > Duration::from_secs(900) {
            bail!("job {id} has not moved for 15 minutes; see `depin render status {id}`");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    queued: u64,
    rendering: u64,
    checking: u64,
    offered: u64,
    approved: u64,
    failed: u64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "{} queued, {} rendering, {} checking, {} offered, {} approved, {} failed",
            self.queued, self.rendering, self.checking, self.offered, self.approved, self.failed
        )
    }
}

fn counts(view: &JobView) -> Counts {
    let mut c = Counts {
        queued: view.never_assigned,
        ..Counts::default()
    };
    for p in &view.pieces {
        match p.status {
            PieceStatus::Queued => c.queued += 1,
            PieceStatus::Rendering => c.rendering += 1,
            PieceStatus::Committed | PieceStatus::Checking => c.checking += 1,
            PieceStatus::Offered => c.offered += 1,
            PieceStatus::Approved => c.approved += 1,
            PieceStatus::Failed => c.failed += 1,
        }
    }
    c
}

fn describe(view: &JobView) -> String {
    let job = &view.job;
    let mut text = format!(
        "{}: frames {}–{} at {}×{}, {} samples, {} piece(s)\n{}\n",
        output::word(&job.status),
        job.spec.frame_start,
        job.spec.frame_end,
        job.spec.width,
        job.spec.height,
        job.spec.samples,
        job.pieces,
        counts(view).line()
    );
    for p in &view.pieces {
        let renderer = p.renderer.map_or("-".to_string(), |a| a.to_string());
        let verdicts: Vec<String> = p
            .verdicts
            .iter()
            .map(|s| match s.verdict {
                Some(v) => format!(
                    "{} SSIM {:.4} PSNR {:.1} dB",
                    s.verifier,
                    f64::from(v.ssim_ppm) / 1e6,
                    f64::from(v.psnr_millidb) / 1e3
                ),
                None if s.timed_out => format!("{} silent", s.verifier),
                None if s.stepped_aside => format!("{} stepped aside", s.verifier),
                None => format!("{} checking", s.verifier),
            })
            .collect();
        text.push_str(&format!(
            "  piece {} (frame {}, rows {}–{}): {}, attempt {}, renderer {renderer}{}{}\n",
            p.index,
            p.area.frame,
            p.area.y0,
            p.area.y1,
            output::word(&p.status),
            p.attempt + 1,
            if verdicts.is_empty() {
                String::new()
            } else {
                format!("; checked by {}", verdicts.join(", "))
            },
            if p.tried.is_empty() {
                String::new()
            } else {
                format!(
                    "; earlier renderers {}",
                    p.tried
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    text.push_str(&format!(
        "paid {} DC; {} DC escrowed for frames, {} DC for checks\n",
        job.paid_dc, job.escrow_dc, job.verify_pool_dc
    ));
    text
}

pub fn status(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let id = parse_job_id(id)?;
    let view = fetch_view(ctx, &id)?;
    ctx.out
        .emit(&view, || Ok(format!("job {id}\n{}", describe(&view))))
}

fn send_render(ctx: &Ctx, tx: &TxOpts, action: RenderTx) -> anyhow::Result<()> {
    let key = read_key(&tx.key)?;
    let network = Network::fetch(&ctx.client)?;
    send(
        &ctx.client,
        &network,
        &key,
        tx.nonce,
        Action::Service {
            service: depin_protocol::render::SERVICE,
            payload: depin_types::encode(&action),
        },
        !tx.no_wait,
    )?;
    Ok(())
}

#[derive(Serialize)]
struct Acted {
    id: Hash,
    pieces: Vec<u64>,
}

/// Pieces one approval carries (the chain's limit is 4096).
const APPROVE_CHUNK: usize = 1000;

pub fn approve(ctx: &Ctx, args: ApproveArgs) -> anyhow::Result<()> {
    let id = parse_job_id(&args.id)?;
    let pieces = if args.pieces.is_empty() {
        fetch_view(ctx, &id)?
            .pieces
            .iter()
            .filter(|p| p.status == PieceStatus::Offered)
            .map(|p| p.index)
            .collect()
    } else {
        args.pieces.clone()
    };
    if pieces.is_empty() {
        return Err(CodedError::new(
            "nothing_offered",
            format!("job {id} has no piece waiting for approval"),
        )
        .into());
    }
    for chunk in pieces.chunks(APPROVE_CHUNK) {
        send_render(
            ctx,
            &args.tx,
            RenderTx::Approve {
                job: id,
                pieces: chunk.to_vec(),
            },
        )?;
    }
    let acted = Acted { id, pieces };
    ctx.out.emit(&acted, || {
        Ok(format!(
            "approved {} piece(s) of job {id}; they are paid",
            acted.pieces.len()
        ))
    })
}

pub fn reject(ctx: &Ctx, args: RejectArgs) -> anyhow::Result<()> {
    let id = parse_job_id(&args.id)?;
    send_render(
        ctx,
        &args.tx,
        RenderTx::Reject {
            job: id,
            piece: args.piece,
        },
    )?;
    let acted = Acted {
        id,
        pieces: vec![args.piece],
    };
    ctx.out.emit(&acted, || {
        Ok(format!(
            "rejected piece {} of job {id}: another provider renders it, and a verifier checks the rejected one",
            args.piece
        ))
    })
}

#[derive(Serialize)]
struct Fetched {
    id: Hash,
    frames: Vec<PathBuf>,
    /// Frames not approved yet (not fetched).
    waiting: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<PathBuf>,
    bytes: u64,
}

pub fn fetch(ctx: &Ctx, args: FetchArgs) -> anyhow::Result<()> {
    let id = parse_job_id(&args.id)?;
    let key = read_key(&args.key)?;
    let view = fetch_view(ctx, &id)?;
    let network = Network::fetch(&ctx.client)?;
    let params = network.genesis.service_params::<RenderParams>()?;
    let spec = view.job.spec.clone();
    let approved: Vec<&Piece> = view
        .pieces
        .iter()
        .filter(|p| p.status == PieceStatus::Approved)
        .collect();
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot make {}", args.output.display()))?;
    let progress = Progress::counting("fetching", approved.len() as u64, "pieces");
    let images = runtime()?.block_on(async {
        let net = join_network(ctx, &network.chain_id, Some(&key)).await?;
        let mut out: Vec<(u64, Image, u64)> = Vec::new();
        for (n, piece) in approved.iter().enumerate() {
            let (Some(renderer), Some(commitment)) = (piece.renderer, piece.commitment) else {
                continue;
            };
            let output_key = piece_output_key(&id, piece.index, piece.attempt);
            let started = Instant::now();
            let png = loop {
                match fetch_output(&net, &renderer, output_key, 160 << 20).await {
                    Ok(png) => break png,
                    Err(e) if started.elapsed() > Duration::from_secs(30) => {
                        bail!(
                            "renderer {renderer} did not serve piece {}: {e}",
                            piece.index
                        )
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            };
            let pixels = u64::from(spec.width) * u64::from(piece.area.rows());
            let image = Image::decode_png(&png, pixels)
                .with_context(|| format!("piece {}", piece.index))?;
            let tiles = depin_render::tiles::TileTree::new(&image, params.tile_px)?;
            if image.pixel_hash() != commitment.image || tiles.root() != commitment.tiles_root {
                bail!(
                    "renderer {renderer} served piece {} that is not the one it committed to",
                    piece.index
                );
            }
            out.push((piece.index, image, png.len() as u64));
            progress.set(n as u64 + 1);
        }
        net.shutdown().await;
        Ok(out)
    })?;
    progress.finish();
    // Strips of a frame are stacked in order; a frame is written once all its strips are in.
    let strips = depin_protocol::render::strips_per_frame(&params, &spec);
    let mut frames = Vec::new();
    let mut waiting = Vec::new();
    let mut bytes = 0;
    for frame in spec.frame_start..=spec.frame_end {
        let mine: Vec<&(u64, Image, u64)> = images
            .iter()
            .filter(|(index, _, _)| {
                depin_protocol::render::piece_area(&params, &spec, *index).frame == frame
            })
            .collect();
        if mine.len() != strips as usize {
            waiting.push(frame);
            continue;
        }
        let mut ordered = mine.clone();
        ordered.sort_by_key(|(index, _, _)| *index);
        let mut rgba = Vec::with_capacity(spec.width as usize * spec.height as usize * 4);
        for (_, image, len) in ordered {
            rgba.extend_from_slice(&image.rgba);
            bytes += len;
        }
        let whole = Image {
            width: spec.width,
            height: spec.height,
            rgba,
        };
        let path = args.output.join(format!("frame_{frame:04}.png"));
        std::fs::write(&path, whole.encode_png()?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        frames.push(path);
    }
    let video = match &args.video {
        Some(video) if !frames.is_empty() => {
            encode_video(&args.output, spec.frame_start, args.fps, video)?;
            Some(video.clone())
        }
        Some(_) => bail!("no frame of job {id} is approved yet: nothing to encode"),
        None => None,
    };
    let fetched = Fetched {
        id,
        frames,
        waiting,
        video,
        bytes,
    };
    ctx.out.emit(&fetched, || {
        let mut text = format!(
            "{} frame(s) in {}, each checked against its renderer's commitment\n",
            fetched.frames.len(),
            args.output.display()
        );
        if !fetched.waiting.is_empty() {
            text.push_str(&format!(
                "{} frame(s) not approved yet\n",
                fetched.waiting.len()
            ));
        }
        if let Some(video) = &fetched.video {
            text.push_str(&format!("video {}\n", video.display()));
        }
        Ok(text)
    })
}

/// H.264 in an MP4 from frame_NNNN.png with ffmpeg.
fn encode_video(dir: &Path, first: u32, fps: u32, video: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-framerate"])
        .arg(fps.to_string())
        .arg("-start_number")
        .arg(first.to_string())
        .arg("-i")
        .arg(dir.join("frame_%04d.png"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(video)
        .status()
        .context("cannot run ffmpeg (scripts/setup.sh installs it)")?;
    if !status.success() {
        bail!("ffmpeg failed ({status}) encoding {}", video.display());
    }
    Ok(())
}

/// The node's `/v1/render/providers`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderView {
    pub address: Address,
    pub device: String,
    pub build: String,
    pub score_pixel_samples_per_s: u64,
    pub advertised_height: u64,
    pub reputation_ppm: u64,
    pub rendering: usize,
    pub verifying: usize,
}

pub fn providers(ctx: &Ctx) -> anyhow::Result<()> {
    let list: Vec<ProviderView> = ctx.client.get("/v1/render/providers")?;
    ctx.out.emit(&list, || {
        if list.is_empty() {
            return Ok("no render provider has advertised yet\n".into());
        }
        let mut text = String::new();
        for p in &list {
            text.push_str(&format!(
                "{}  {} on {}, {:.2} megapixel-samples/s, reputation {:.0}%, rendering {}, checking {}\n",
                p.address,
                p.build,
                p.device,
                p.score_pixel_samples_per_s as f64 / 1e6,
                p.reputation_ppm as f64 / 1e4,
                p.rendering,
                p.verifying
            ));
        }
        Ok(text)
    })
}
