//! The render service in the node: the job route (a job with its pieces, for `depin render
//! status`), and on a render provider the worker: it measures the benchmark scene and
//! advertises its build and score, renders the pieces the chain hands it (sandboxed
//! Blender, pinned seed and samples) and commits each one's pixel hash and tile root, and
//! checks the pieces it is drawn to verify by re-rendering their check regions in one run.

use crate::api::{ApiError, ApiResult, NodeState, ServiceRoutes};
use crate::config::RenderFault;
use crate::openapi::{BAD_REQUEST, object, ok_response, operation, path_param};
use crate::{Node, NodeError, Role};
use axum::Json;
use axum::extract::{Path, State};
use depin_blobs::store::BlobStore;
use depin_blobs::transfer::{WantedBlobs, fetch_blob};
use depin_protocol::render::{
    Piece, PieceCommitment, PieceRef, PieceStatus, RenderAd, RenderJob, RenderJobStatus,
    RenderParams, RenderTx, RenderUsage, Verdict, frame_seed, keys, piece_area,
    piece_check_regions,
};
use depin_render::{
    Blender, BlenderConfig, Capabilities, Device, Image, Region, RenderSpec, piece_output_key,
};
use depin_types::{Address, Hash};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Worker loop period.
const TICK: Duration = Duration::from_millis(300);
/// How long a renderer waits for the consumer's push of a scene before asking other holders.
const PUSH_WAIT: Duration = Duration::from_secs(5);
/// How often the worker removes what no one can need any more: superseded renders, scenes.
const SWEEP_EVERY: Duration = Duration::from_secs(20);
/// Entries of each folder looked at per sweep (the rest wait for the next).
const SWEEP_BATCH: usize = 10_000;

/// Pieces listed by the job route at most (the rest are counted).
const MAX_LISTED_PIECES: u64 = 10_000;

/// A job and its pieces: those handed out at least once, as the chain holds them, and the
/// count still waiting for their first renderer.
#[derive(Debug, Serialize)]
pub struct RenderJobView {
    pub job: RenderJob,
    pub pieces: Vec<Piece>,
    pub never_assigned: u64,
}

fn job_record(node: &Node, id: &Hash) -> Option<RenderJob> {
    node.chain()
        .service_record(depin_protocol::render::SERVICE, &keys::job(id))
        .ok()
        .flatten()
}

fn piece_record(node: &Node, job: &RenderJob, index: u64) -> Option<Piece> {
    let stored: Option<Piece> = node
        .chain()
        .service_record(
            depin_protocol::render::SERVICE,
            &keys::piece(&job.id, index),
        )
        .ok()
        .flatten();
    stored.or_else(|| {
        let params = node
            .chain()
            .protocol()
            .genesis()
            .service_params::<depin_protocol::render::RenderParams>()
            .ok()?;
        Some(Piece::queued(index, piece_area(&params, &job.spec, index)))
    })
}

/// Who may fetch a rendered piece from its renderer: the verifiers drawn to check that
/// render, and the consumer once the piece is approved (before that the consumer sees no
/// full frame, so rejecting a good one to get it free gains nothing).
pub(crate) fn may_fetch_piece(
    job: &RenderJob,
    piece: &Piece,
    attempt: u8,
    requester: Option<&Address>,
) -> bool {
    let Some(requester) = requester else {
        return false;
    };
    let verifier =
        piece.attempt == attempt && piece.verdicts.iter().any(|s| s.verifier == *requester);
    let disputer = piece
        .dispute
        .as_ref()
        .is_some_and(|d| d.attempt == attempt && d.slot.verifier == *requester);
    let owner = *requester == job.owner
        && piece.attempt == attempt
        && piece.status == PieceStatus::Approved;
    verifier || disputer || owner
}

pub(crate) struct RenderService;

impl crate::services::NodeService for RenderService {
    fn service(&self) -> depin_types::ServiceKind {
        depin_protocol::render::SERVICE
    }

    fn routes(&self, routes: ServiceRoutes) -> ServiceRoutes {
        routes
            .get("/jobs/{id}", render_job)
            .get("/providers", render_providers)
    }

    fn openapi_paths(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "/jobs/{id}",
                serde_json::json!({"get": operation("A render job with its pieces: each piece's status, renderer, commitment, check seed and verdicts, and the count never assigned yet",
                vec![path_param("id", "job id (64 hex)")],
                ok_response("RenderJobView", object("RenderJobView")), &[BAD_REQUEST, ("404", "unknown_job")])}),
            ),
            (
                "/providers",
                serde_json::json!({"get": operation("Render providers that advertised: device, Blender build, benchmark score, reputation and the pieces each renders and checks now",
                vec![],
                ok_response("RenderProviders", object("RenderProviders")), &[])}),
            ),
        ]
    }

    fn start(&self, node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), NodeError> {
        if node.config.role != Role::Provider {
            return Ok(());
        }
        let (Some(binary), Some(net), Some(blobs)) = (
            node.config.render_blender.clone(),
            node.net.get().cloned(),
            node.blobs.get().cloned(),
        ) else {
            return Ok(());
        };
        let device: Device =
            node.config
                .render_device
                .parse()
                .map_err(|e: String| NodeError::Io {
                    what: "render_device",
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })?;
        let dir = node.config.data_dir.join("render");
        std::fs::create_dir_all(dir.join("scenes")).map_err(|source| NodeError::Io {
            what: "render folder",
            source,
        })?;
        let worker = Worker {
            node: node.clone(),
            net,
            store: blobs.store.clone(),
            blender: Blender::new(BlenderConfig {
                binary,
                device,
                threads: node.config.render_threads,
                ..BlenderConfig::default()
            }),
            dir,
            busy: Arc::new(Mutex::new(BTreeSet::new())),
            scene_used: Arc::new(Mutex::new(BTreeMap::new())),
            // Unpacking again from the kept bundle is cheap; the config says how long.
            scene_keep: Duration::from_secs(node.config.render_scene_keep_s),
        };
        tokio::spawn(worker.run(stop));
        Ok(())
    }

    fn wanted_blobs(&self, node: &Arc<Node>) -> Option<Arc<dyn WantedBlobs>> {
        Some(Arc::new(ChainWanted(node.clone())))
    }
}

/// The pieces this provider renders or checks.
fn my_usage(node: &Node) -> RenderUsage {
    node.chain()
        .service_record(
            depin_protocol::render::SERVICE,
            &keys::usage(&node.key.address()),
        )
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// What the chain says this provider needs and may serve for render.
struct ChainWanted(Arc<Node>);

impl WantedBlobs for ChainWanted {
    fn wanted(&self, blob: &Hash) -> Option<u64> {
        let usage = my_usage(&self.0);
        usage
            .rendering
            .iter()
            .chain(&usage.verifying)
            .find_map(|r| {
                let job = job_record(&self.0, &r.job)?;
                (job.spec.bundle == *blob).then_some(job.spec.bundle_bytes)
            })
    }

    fn may_serve_output(&self, key: &Hash, requester: Option<&Address>) -> bool {
        let Some(made) = read_made(&self.0, key) else {
            // Not a piece this node rendered: another service's output.
            return true;
        };
        let Some(job) = job_record(&self.0, &made.job) else {
            return false;
        };
        piece_record(&self.0, &job, made.piece)
            .is_some_and(|piece| may_fetch_piece(&job, &piece, made.attempt, requester))
    }
}

/// The record a renderer keeps beside each piece image it serves: which render it is.
fn made_path(node: &Node, key: &Hash) -> std::path::PathBuf {
    node.config
        .data_dir
        .join("render")
        .join("made")
        .join(key.to_string())
}

fn read_made(node: &Node, key: &Hash) -> Option<PieceRef> {
    let bytes = std::fs::read(made_path(node, key)).ok()?;
    depin_types::decode_bounded(&bytes, 256).ok()
}

#[derive(Clone)]
struct Worker {
    node: Arc<Node>,
    net: depin_net::NetHandle,
    store: Arc<BlobStore>,
    blender: Blender,
    dir: std::path::PathBuf,
    /// Renders and checks in progress here.
    busy: Arc<Mutex<BTreeSet<(PieceRef, bool)>>>,
    /// When each unpacked scene was last needed by a piece here.
    scene_used: Arc<Mutex<BTreeMap<Hash, Instant>>>,
    /// How long an unpacked scene stays after its last piece here.
    scene_keep: Duration,
}

impl Worker {
    async fn run(self, stop: Arc<AtomicBool>) {
        let blender = self.blender.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let capabilities = blender.probe()?;
            let score = depin_render::scenes::benchmark(&blender, &capabilities)?;
            Ok::<_, depin_render::RenderError>((capabilities, score))
        })
        .await;
        let (capabilities, score) = match measured {
            Ok(Ok(measured)) => measured,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no render provider here: Blender cannot render");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the render benchmark stopped");
                return;
            }
        };
        let score_pixel_samples_per_s = (score.megapixel_samples_per_s * 1e6) as u64;
        let build = format!(
            "Blender {} {} {}",
            capabilities.blender,
            std::env::consts::ARCH,
            self.blender.config().device.as_str()
        );
        tracing::info!(%build, score_pixel_samples_per_s, "render provider started");
        let capabilities = Arc::new(capabilities);
        tokio::spawn(serve_tiles(
            self.node.clone(),
            self.net.clone(),
            self.store.clone(),
        ));
        let mut swept = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(TICK).await;
            self.advertise(&build, score_pixel_samples_per_s).await;
            let usage = my_usage(&self.node);
            if swept.elapsed() >= SWEEP_EVERY {
                self.note_scenes_in_use(&usage);
                swept = Instant::now();
                let worker = self.clone();
                // In step with the loop: no piece is handed a scene while its folder goes.
                match tokio::task::spawn_blocking(move || worker.sweep()).await {
                    Ok(removed) if removed.renders + removed.scenes + removed.bundles > 0 => {
                        tracing::info!(
                            renders = removed.renders,
                            scenes = removed.scenes,
                            bundles = removed.bundles,
                            "render files no one can need removed"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the render sweep stopped"),
                }
            }
            for (piece, verifying) in usage
                .rendering
                .iter()
                .map(|r| (*r, false))
                .chain(usage.verifying.iter().map(|r| (*r, true)))
            {
                let fresh = self
                    .busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((piece, verifying));
                if !fresh {
                    continue;
                }
                let (worker, capabilities) = (self.clone(), capabilities.clone());
                tokio::spawn(async move {
                    let done = if verifying {
                        worker.verify(&piece, &capabilities).await
                    } else {
                        worker.render(&piece, &capabilities).await
                    };
                    if let Err(e) = done {
                        tracing::warn!(job = %piece.job, piece = piece.piece, error = %e, "render work failed");
                    }
                    // Kept as busy a while: the chain's record lags our own transaction.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    worker
                        .busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(piece, verifying));
                });
            }
        }
    }

    /// Advertises the build and score once this node is registered for render, and again
    /// when they change.
    async fn advertise(&self, build: &str, score: u64) {
        let me = self.node.key.address();
        let offers_render = self
            .node
            .chain()
            .provider(&me)
            .ok()
            .flatten()
            .is_some_and(|p| {
                p.services
                    .iter()
                    .any(|o| o.service == depin_protocol::render::SERVICE)
            });
        if !offers_render {
            return;
        }
        let current: Option<RenderAd> = self
            .node
            .chain()
            .service_record(depin_protocol::render::SERVICE, &keys::ad(&me))
            .ok()
            .flatten();
        if current.is_some_and(|ad| ad.build == build && ad.score_pixel_samples_per_s == score) {
            return;
        }
        let tx = RenderTx::Advertise {
            device: self.blender.config().device.as_str().into(),
            build: build.into(),
            score_pixel_samples_per_s: score,
        };
        if crate::own_tx::submit_and_wait(
            &self.node,
            depin_protocol::render::SERVICE,
            depin_types::encode(&tx),
        )
        .await
        {
            tracing::info!(build, score, "render build and score advertised");
        }
    }

    /// Marks the scenes of the pieces this provider renders or checks now as in use (a
    /// piece's work marks its scene as it starts, in [`Worker::scene`]; this keeps the scene
    /// of a long one).
    fn note_scenes_in_use(&self, usage: &RenderUsage) {
        for r in usage.rendering.iter().chain(&usage.verifying) {
            if let Some(job) = job_record(&self.node, &r.job) {
                self.scene_in_use(job.spec.bundle);
            }
        }
    }

    fn scene_in_use(&self, bundle: Hash) {
        self.scene_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bundle, Instant::now());
    }

    /// Removes the renders no one may fetch any more, the unpacked scenes not used for
    /// `scene_keep`, and the bundles of finished jobs that no service wants.
    fn sweep(&self) -> Swept {
        let mut swept = Swept::default();
        let made_dir = self.dir.join("made");
        for entry in list_dir(&made_dir) {
            let Some(key) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Hash>().ok())
            else {
                continue;
            };
            let Some(made) = read_made(&self.node, &key) else {
                continue;
            };
            let job = job_record(&self.node, &made.job);
            let piece = job
                .as_ref()
                .and_then(|j| piece_record(&self.node, j, made.piece));
            if render_is_dead(piece.as_ref(), made.attempt) {
                self.store.remove_output(&key);
                let _ = std::fs::remove_file(entry.path());
                swept.renders += 1;
            }
        }
        let scenes = self.dir.join("scenes");
        let now = Instant::now();
        let mut idle = Vec::new();
        let mut used = self.scene_used.lock().unwrap_or_else(|p| p.into_inner());
        for entry in list_dir(&scenes) {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(bundle) = name
                .strip_suffix(".job")
                .and_then(|b| b.parse::<Hash>().ok())
            {
                let job = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|id| id.trim().parse::<Hash>().ok())
                    .and_then(|id| job_record(&self.node, &id));
                let open = job.is_some_and(|j| j.status == RenderJobStatus::Open);
                if !open
                    && !used.contains_key(&bundle)
                    && !crate::blobs::any_service_wants(&self.node, &bundle)
                {
                    self.store.remove(&bundle);
                    let _ = std::fs::remove_file(&path);
                    swept.bundles += 1;
                }
                continue;
            }
            let Ok(bundle) = name.trim_end_matches(".partial").parse::<Hash>() else {
                continue;
            };
            // A scene found at start counts as used now: it gets the full keep.
            let last = *used.entry(bundle).or_insert(now);
            if now.duration_since(last) >= self.scene_keep {
                used.remove(&bundle);
                idle.push(path);
            }
        }
        // Removed under the lock: a piece starting meanwhile waits, then unpacks again.
        for path in idle {
            let _ = std::fs::remove_dir_all(&path);
            swept.scenes += 1;
        }
        swept
    }

    fn params(&self) -> Result<RenderParams, String> {
        self.node
            .chain()
            .protocol()
            .genesis()
            .service_params::<RenderParams>()
            .map_err(|e| e.to_string())
    }

    /// Gets the job's scene bundle (pushed by the consumer, or from another holder after a
    /// while) and unpacks it once per bundle; returns its folder.
    async fn scene(
        &self,
        job: &RenderJob,
        holders: &[Address],
    ) -> Result<std::path::PathBuf, String> {
        let bundle = job.spec.bundle;
        let folder = self.dir.join("scenes").join(bundle.to_string());
        self.scene_in_use(bundle);
        if folder.join("scene.blend").is_file() {
            return Ok(folder);
        }
        let started = Instant::now();
        while !self.store.has(&bundle) {
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!("scene bundle {bundle} never arrived"));
            }
            if started.elapsed() >= PUSH_WAIT {
                match fetch_blob(
                    &self.net,
                    holders,
                    bundle,
                    job.spec.bundle_bytes,
                    &self.store,
                )
                .await
                {
                    Ok(()) => break,
                    Err(e) => tracing::debug!(%bundle, error = %e, "no holder of the scene yet"),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (path, total, target) = (
            self.store.path(&bundle),
            job.spec.bundle_bytes,
            folder.clone(),
        );
        // Which job the bundle came for: it is kept while that job is open, for later
        // renderers to fetch.
        let job_note = self.dir.join("scenes").join(format!("{bundle}.job"));
        std::fs::write(&job_note, job.id.to_string()).map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || {
            let partial = target.with_extension("partial");
            let _ = std::fs::remove_dir_all(&partial);
            let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            depin_blobs::folder::unpack(file, total, &partial).map_err(|e| e.to_string())?;
            std::fs::rename(&partial, &target).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(folder)
    }

    /// Providers that may hold a job's scene: its renderers so far.
    fn holders(&self, job: &RenderJob) -> Vec<Address> {
        let me = self.node.key.address();
        let mut out: Vec<Address> = (0..job.next_piece.min(256))
            .filter_map(|i| piece_record(&self.node, job, i))
            .flat_map(|p| p.renderer.into_iter().chain(p.tried))
            .filter(|a| *a != me)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    async fn render(&self, r: &PieceRef, capabilities: &Capabilities) -> Result<(), String> {
        let me = self.node.key.address();
        let job = job_record(&self.node, &r.job).ok_or("the job is gone")?;
        let piece = piece_record(&self.node, &job, r.piece).ok_or("the piece is gone")?;
        if piece.status != PieceStatus::Rendering
            || piece.attempt != r.attempt
            || piece.renderer != Some(me)
        {
            return Ok(());
        }
        let params = self.params()?;
        let folder = self.scene(&job, &self.holders(&job)).await?;
        let fault = self.node.config.render_fault;
        let (width, height) = (job.spec.width, job.spec.height);
        let mut spec = RenderSpec {
            frame: i64::from(piece.area.frame),
            samples: job.spec.samples,
            seed: frame_seed(&job.id, piece.area.frame),
            resolution: Some((width, height)),
            region: Some(Region {
                x0: 0,
                y0: piece.area.y0,
                x1: width,
                y1: piece.area.y1,
            }),
            denoise_off: true,
        };
        match fault {
            Some(RenderFault::FewSamples) => spec.samples = (spec.samples / 8).max(1),
            Some(RenderFault::OtherFrame) => spec.frame += 1,
            _ => {}
        }
        if fault == Some(RenderFault::ExitMidRender) {
            tracing::warn!(job = %job.id, piece = piece.index, "render fault: stopping mid-render");
            std::process::exit(3);
        }
        let (blender, caps) = (self.blender.clone(), capabilities.clone());
        let started = Instant::now();
        let rendered = tokio::task::spawn_blocking(move || {
            blender.render(&caps, &folder, &folder.join("scene.blend"), &spec)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let blender_ms = (rendered.seconds * 1000.0) as u64;
        let mut image = rendered.image;
        match fault {
            Some(RenderFault::Blank) => image.rgba.iter_mut().for_each(|b| *b = 0),
            Some(RenderFault::Paint) => paint_region(&mut image),
            _ => {}
        }
        let tiles = depin_render::tiles::TileTree::new(&image, params.tile_px)
            .map_err(|e| e.to_string())?;
        let commitment = PieceCommitment {
            image: image.pixel_hash(),
            tiles_root: tiles.root(),
        };
        let png = image.encode_png().map_err(|e| e.to_string())?;
        let key = piece_output_key(&job.id, piece.index, piece.attempt);
        self.store
            .put_output(&key, &png)
            .map_err(|e| e.to_string())?;
        let made = made_path(&self.node, &key);
        if let Some(parent) = made.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&made, depin_types::encode(r)).map_err(|e| e.to_string())?;
        if fault.is_some() {
            tracing::warn!(job = %job.id, piece = piece.index, ?fault, "render fault: committing a cheat");
        }
        let tx = RenderTx::Commit {
            job: job.id,
            piece: piece.index,
            attempt: piece.attempt,
            commitment,
        };
        let sent = crate::own_tx::submit_and_wait(
            &self.node,
            depin_protocol::render::SERVICE,
            depin_types::encode(&tx),
        )
        .await;
        tracing::info!(
            job = %job.id,
            piece = piece.index,
            blender_ms,
            ms = started.elapsed().as_millis() as u64,
            sent,
            "render piece committed"
        );
        Ok(())
    }

    async fn verify(&self, r: &PieceRef, capabilities: &Capabilities) -> Result<(), String> {
        let me = self.node.key.address();
        let job = job_record(&self.node, &r.job).ok_or("the job is gone")?;
        let piece = piece_record(&self.node, &job, r.piece).ok_or("the piece is gone")?;
        // The render to check: the current one, or a disputed earlier one.
        let (renderer, commitment, seed, deadline) = match &piece.dispute {
            Some(d)
                if d.attempt == r.attempt && d.slot.verifier == me && d.slot.verdict.is_none() =>
            {
                (d.renderer, d.commitment, d.check_seed, d.slot.deadline)
            }
            _ => {
                let pending = piece.verdicts.iter().find(|s| {
                    piece.attempt == r.attempt
                        && piece.status == PieceStatus::Checking
                        && s.verifier == me
                        && s.is_open()
                });
                let (Some(renderer), Some(commitment), Some(seed), Some(slot)) =
                    (piece.renderer, piece.commitment, piece.check_seed, pending)
                else {
                    return Ok(());
                };
                (renderer, commitment, seed, slot.deadline)
            }
        };
        let started = Instant::now();
        let checked = self
            .check(
                &job,
                &piece,
                r.attempt,
                &renderer,
                &commitment,
                &seed,
                deadline,
                capabilities,
            )
            .await;
        let (tx, blender_ms) = match checked {
            Ok((verdict, blender_ms)) => (
                RenderTx::Verdict {
                    job: job.id,
                    piece: piece.index,
                    attempt: r.attempt,
                    verdict,
                },
                blender_ms,
            ),
            // Our own failure (no scene, Blender failed here): give the check back rather
            // than fall silent and be slashed for it.
            Err(why) => {
                tracing::warn!(job = %job.id, piece = piece.index, why, "stepping aside from a render check");
                let mut reason = why;
                while reason.len() > 200 {
                    reason.pop();
                }
                (
                    RenderTx::StepAside {
                        job: job.id,
                        piece: piece.index,
                        attempt: r.attempt,
                        reason,
                    },
                    0,
                )
            }
        };
        let sent = crate::own_tx::submit_and_wait(
            &self.node,
            depin_protocol::render::SERVICE,
            depin_types::encode(&tx),
        )
        .await;
        let (ssim_ppm, psnr_millidb) = match &tx {
            RenderTx::Verdict { verdict, .. } => (verdict.ssim_ppm, verdict.psnr_millidb),
            _ => (0, 0),
        };
        tracing::info!(
            job = %job.id,
            piece = piece.index,
            ssim_ppm,
            psnr_millidb,
            stepped_aside = matches!(tx, RenderTx::StepAside { .. }),
            blender_ms,
            ms = started.elapsed().as_millis() as u64,
            sent,
            "render verdict posted"
        );
        Ok(())
    }

    /// The check itself: the renderer's committed tiles under the regions against our own
    /// render of them. An error is ours (no scene, Blender failed); a renderer that does not
    /// serve its tiles, or serves others, gets a failing verdict.
    #[allow(clippy::too_many_arguments)]
    async fn check(
        &self,
        job: &RenderJob,
        piece: &Piece,
        attempt: u8,
        renderer: &Address,
        commitment: &PieceCommitment,
        seed: &Hash,
        deadline: u64,
        capabilities: &Capabilities,
    ) -> Result<(Verdict, u64), String> {
        let params = self.params()?;
        let mut holders = vec![*renderer];
        holders.extend(self.holders(job));
        let folder = self.scene(job, &holders).await?;
        let mut blender_ms = 0u64;
        let verdict = match self
            .committed_tiles(
                job, piece, attempt, renderer, commitment, &params, seed, deadline,
            )
            .await
        {
            Err(why) => {
                tracing::warn!(job = %job.id, piece = piece.index, %renderer, why, "render check failed before rendering");
                Verdict {
                    ssim_ppm: 0,
                    psnr_millidb: 0,
                }
            }
            Ok(image) => {
                let regions = piece_check_regions(&params, &piece.area, job.spec.width, seed);
                let spec = RenderSpec {
                    frame: i64::from(piece.area.frame),
                    samples: job.spec.samples,
                    seed: frame_seed(&job.id, piece.area.frame),
                    resolution: Some((job.spec.width, job.spec.height)),
                    region: None,
                    denoise_off: true,
                };
                let frame_regions: Vec<Region> = regions
                    .iter()
                    .map(|c| Region {
                        x0: c.x0,
                        y0: c.y0,
                        x1: c.x1,
                        y1: c.y1,
                    })
                    .collect();
                let (blender, caps, scene) = (
                    self.blender.clone(),
                    capabilities.clone(),
                    folder.join("scene.blend"),
                );
                let asked = frame_regions.clone();
                let renders = tokio::task::spawn_blocking(move || {
                    blender.render_regions(&caps, &folder, &scene, &spec, &asked)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                blender_ms = (renders.seconds * 1000.0) as u64;
                let mut worst = Verdict {
                    ssim_ppm: 1_000_000,
                    psnr_millidb: 100_000,
                };
                for (region, mine) in frame_regions.iter().zip(&renders.images) {
                    let theirs = image
                        .crop(Region {
                            y0: region.y0 - piece.area.y0,
                            y1: region.y1 - piece.area.y0,
                            ..*region
                        })
                        .map_err(|e| e.to_string())?;
                    let s = depin_render::compare(mine, &theirs).map_err(|e| e.to_string())?;
                    worst.ssim_ppm = worst.ssim_ppm.min((s.ssim.clamp(0.0, 1.0) * 1e6) as u32);
                    worst.psnr_millidb = worst
                        .psnr_millidb
                        .min((s.psnr_db.clamp(0.0, 100.0) * 1000.0) as u32);
                }
                worst
            }
        };
        Ok((verdict, blender_ms))
    }

    /// The renderer's committed pixels under the check regions: the tiles covering them,
    /// fetched with their Merkle paths and each checked against the committed tile root, laid
    /// on a piece-sized canvas (the rest stays blank; only the regions are compared).
    #[allow(clippy::too_many_arguments)]
    async fn committed_tiles(
        &self,
        job: &RenderJob,
        piece: &Piece,
        attempt: u8,
        renderer: &Address,
        commitment: &PieceCommitment,
        params: &RenderParams,
        seed: &Hash,
        verdict_deadline: u64,
    ) -> Result<Image, String> {
        let (width, rows, tile_px) = (job.spec.width, piece.area.rows(), params.tile_px);
        let mut wanted = BTreeSet::new();
        for c in piece_check_regions(params, &piece.area, width, seed) {
            let region = Region {
                x0: c.x0,
                y0: c.y0 - piece.area.y0,
                x1: c.x1,
                y1: c.y1 - piece.area.y0,
            };
            wanted.extend(depin_render::tiles::tiles_covering(
                width, rows, tile_px, region,
            ));
        }
        let wanted: Vec<u32> = wanted.into_iter().collect();
        let mut canvas = Image {
            width,
            height: rows,
            rgba: vec![0; width as usize * rows as usize * 4],
        };
        let peer = depin_net::peer_id_of(renderer).map_err(|e| e.to_string())?;
        for chunk in wanted.chunks(MAX_TILES_PER_REQUEST) {
            let request = TilesRequest {
                job: job.id,
                piece: piece.index,
                attempt,
                tiles: chunk.to_vec(),
            };
            // The renderer's view of the chain may lag behind ours (it has not seen this
            // verifier drawn yet): a refusal is asked again within the window, like silence,
            // until only the blocks kept for the re-render and the verdict are left.
            let ask_until = verdict_deadline.saturating_sub(verdict_reserve_blocks(params));
            let tiles = loop {
                let asked = self
                    .net
                    .request(peer, TILES_PROTOCOL, depin_types::encode(&request))
                    .await;
                let why = match asked {
                    Ok(bytes) => match depin_types::decode_bounded::<TilesResponse>(
                        &bytes,
                        MAX_TILES_RESPONSE_BYTES,
                    ) {
                        Ok(TilesResponse::Tiles(tiles)) => break tiles,
                        Ok(TilesResponse::Refused { code, message }) => {
                            format!("it refused: {message} ({code})")
                        }
                        Err(e) => return Err(format!("the renderer's tiles do not decode: {e}")),
                    },
                    Err(e) => e.to_string(),
                };
                if self.node.chain().head().height >= ask_until {
                    return Err(format!("the renderer did not serve its tiles: {why}"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            if tiles.len() != chunk.len() || tiles.iter().zip(chunk).any(|(t, i)| t.index != *i) {
                return Err("the renderer served other tiles than asked".into());
            }
            for tile in tiles {
                let image = Image {
                    width: tile.width,
                    height: tile.height,
                    rgba: tile.rgba,
                };
                let proof = depin_render::tiles::TileProof {
                    index: tile.index,
                    siblings: tile.siblings,
                };
                if !depin_render::tiles::verify_tile(
                    &commitment.tiles_root,
                    width,
                    rows,
                    tile_px,
                    &image,
                    &proof,
                ) {
                    return Err(format!("tile {} is not the committed one", tile.index));
                }
                let at = depin_render::tiles::tile_region(width, rows, tile_px, tile.index);
                for y in 0..image.height as usize {
                    let from = y * image.width as usize * 4;
                    let to = ((at.y0 as usize + y) * width as usize + at.x0 as usize) * 4;
                    let len = image.width as usize * 4;
                    canvas.rgba[to..to + len].copy_from_slice(&image.rgba[from..from + len]);
                }
            }
        }
        Ok(canvas)
    }
}

/// Request-response protocol for a piece's committed tiles (depin-net adds the chain id).
const TILES_PROTOCOL: &str = "render/tiles/1";
/// Blocks of a verdict's window (genesis `verify_blocks`) a verifier keeps for its re-render
/// and its verdict to reach the chain: it asks a silent renderer for tiles until then.
fn verdict_reserve_blocks(params: &RenderParams) -> u64 {
    (params.verify_blocks / 4).max(3)
}
/// Tiles one request may ask for: 512 KiB of pixels at 32-pixel tiles.
const MAX_TILES_PER_REQUEST: usize = 128;
const MAX_TILES_REQUEST_BYTES: usize = 4096;
/// The pixels of a full request at tiles of up to 64 pixels, with paths and framing.
const MAX_TILES_RESPONSE_BYTES: usize = MAX_TILES_PER_REQUEST * (64 * 64 * 4 + 32 * 40) + 4096;

#[derive(Debug, borsh::BorshSerialize, borsh::BorshDeserialize)]
struct TilesRequest {
    job: Hash,
    piece: u64,
    attempt: u8,
    tiles: Vec<u32>,
}

#[derive(Debug, borsh::BorshSerialize, borsh::BorshDeserialize)]
enum TilesResponse {
    Tiles(Vec<ServedTile>),
    Refused { code: String, message: String },
}

/// One tile's pixels (RGBA) and the sibling hashes from it to the committed root.
#[derive(Debug, borsh::BorshSerialize, borsh::BorshDeserialize)]
struct ServedTile {
    index: u32,
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    siblings: Vec<Hash>,
}

/// Serves [`TILES_PROTOCOL`]: the tiles of a piece this node rendered, with their paths, to
/// the verifiers drawn for that render (see [`may_fetch_piece`]).
async fn serve_tiles(node: Arc<Node>, net: depin_net::NetHandle, store: Arc<BlobStore>) {
    let mut requests = match net.serve(TILES_PROTOCOL).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the render tiles protocol");
            return;
        }
    };
    while let Some(mut request) = requests.recv().await {
        let (node, store) = (node.clone(), store.clone());
        tokio::spawn(async move {
            let bytes = std::mem::take(&mut request.bytes);
            let requester = depin_net::address_of(&request.peer);
            let answer = tokio::task::spawn_blocking(move || {
                let answer = tiles_for(&node, &store, &bytes, requester.as_ref()).unwrap_or_else(
                    |(code, message)| TilesResponse::Refused {
                        code: code.into(),
                        message,
                    },
                );
                depin_types::encode(&answer)
            })
            .await;
            if let Ok(answer) = answer {
                request.respond(answer);
            }
        });
    }
}

fn tiles_for(
    node: &Node,
    store: &BlobStore,
    request: &[u8],
    requester: Option<&Address>,
) -> Result<TilesResponse, (&'static str, String)> {
    let request: TilesRequest = depin_types::decode_bounded(request, MAX_TILES_REQUEST_BYTES)
        .map_err(|e| ("malformed", e.to_string()))?;
    if request.tiles.len() > MAX_TILES_PER_REQUEST {
        return Err((
            "too_many_tiles",
            format!("at most {MAX_TILES_PER_REQUEST} tiles a request"),
        ));
    }
    let job =
        job_record(node, &request.job).ok_or(("unknown_job", "no such render job".to_string()))?;
    let piece = piece_record(node, &job, request.piece)
        .ok_or(("unknown_piece", "no such piece".to_string()))?;
    if !may_fetch_piece(&job, &piece, request.attempt, requester) {
        return Err((
            "not_allowed",
            "these tiles go to the piece's verifiers only".into(),
        ));
    }
    let key = piece_output_key(&job.id, piece.index, request.attempt);
    let png = std::fs::read(store.output_path(&key)).map_err(|_| {
        (
            "unknown_piece",
            "this node did not render that piece".to_string(),
        )
    })?;
    let pixels = u64::from(job.spec.width) * u64::from(piece.area.rows());
    let image = Image::decode_png(&png, pixels).map_err(|e| ("internal", e.to_string()))?;
    let params = node
        .chain()
        .protocol()
        .genesis()
        .service_params::<RenderParams>()
        .map_err(|e| ("internal", e.to_string()))?;
    let tree = depin_render::tiles::TileTree::new(&image, params.tile_px)
        .map_err(|e| ("internal", e.to_string()))?;
    let mut out = Vec::with_capacity(request.tiles.len());
    for index in request.tiles {
        let proof = tree
            .proof(index)
            .ok_or(("unknown_tile", format!("no tile {index}")))?;
        let region =
            depin_render::tiles::tile_region(image.width, image.height, params.tile_px, index);
        let tile = image
            .crop(region)
            .map_err(|e| ("internal", e.to_string()))?;
        out.push(ServedTile {
            index,
            width: tile.width,
            height: tile.height,
            rgba: tile.rgba,
            siblings: proof.siblings,
        });
    }
    Ok(TilesResponse::Tiles(out))
}

/// What one sweep removed.
#[derive(Debug, Default)]
struct Swept {
    renders: usize,
    scenes: usize,
    bundles: usize,
}

/// Up to [`SWEEP_BATCH`] entries of a folder (none if it cannot be read).
fn list_dir(dir: &std::path::Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().take(SWEEP_BATCH).collect())
        .unwrap_or_default()
}

/// Whether no one may ever fetch this render of a piece again (see [`may_fetch_piece`]): its
/// job is gone (`None`), the piece was given up, or a later attempt replaced it and no dispute is
/// still checking it. The approved render of a piece is kept for its consumer.
fn render_is_dead(piece: Option<&Piece>, attempt: u8) -> bool {
    let Some(piece) = piece else {
        return true;
    };
    let disputed = piece.dispute.as_ref().is_some_and(|d| d.attempt == attempt);
    if disputed {
        return false;
    }
    piece.attempt != attempt || piece.status == PieceStatus::Failed
}

/// The fault `Paint`: a grey block over the left three quarters of the middle rows.
fn paint_region(image: &mut Image) {
    let (w, h) = (image.width as usize, image.height as usize);
    for y in h / 8..h * 7 / 8 {
        for x in 0..w * 3 / 4 {
            let at = (y * w + x) * 4;
            image.rgba[at..at + 3].copy_from_slice(&[128, 128, 128]);
        }
    }
}

/// A registered render provider that advertised.
#[derive(Debug, Serialize)]
pub struct RenderProviderView {
    pub address: Address,
    pub device: String,
    pub build: String,
    pub score_pixel_samples_per_s: u64,
    pub advertised_height: u64,
    pub reputation_ppm: u64,
    pub rendering: usize,
    pub verifying: usize,
}

/// Providers listed at most.
const MAX_LISTED_PROVIDERS: usize = 10_000;

async fn render_providers(State(node): NodeState) -> ApiResult<Json<Vec<RenderProviderView>>> {
    let chain = node.chain();
    let mut out = Vec::new();
    for provider in chain.providers(None, MAX_LISTED_PROVIDERS)? {
        let service = depin_protocol::render::SERVICE;
        let Some(ad) = chain.service_record::<RenderAd>(service, &keys::ad(&provider.address))?
        else {
            continue;
        };
        let usage: RenderUsage = chain
            .service_record(service, &keys::usage(&provider.address))?
            .unwrap_or_default();
        out.push(RenderProviderView {
            address: provider.address,
            reputation_ppm: provider.reputation_ppm(),
            device: ad.device,
            build: ad.build,
            score_pixel_samples_per_s: ad.score_pixel_samples_per_s,
            advertised_height: ad.height,
            rendering: usage.rendering.len(),
            verifying: usage.verifying.len(),
        });
    }
    Ok(Json(out))
}

async fn render_job(
    State(node): NodeState,
    Path(id): Path<String>,
) -> ApiResult<Json<RenderJobView>> {
    let id: Hash = id
        .parse()
        .map_err(|_| ApiError::bad_request("bad_job_id", "a job id is 64 hex digits"))?;
    let job = job_record(&node, &id)
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no render job {id}")))?;
    let listed = job.next_piece.min(MAX_LISTED_PIECES);
    let pieces = (0..listed)
        .filter_map(|i| piece_record(&node, &job, i))
        .collect();
    Ok(Json(RenderJobView {
        never_assigned: job.pieces - job.next_piece,
        pieces,
        job,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use depin_protocol::render::{Dispute, PieceArea};

    #[test]
    fn only_renders_no_one_may_fetch_again_are_swept() {
        let area = PieceArea {
            frame: 1,
            y0: 0,
            y1: 36,
        };
        let mut piece = Piece::queued(0, area);
        piece.attempt = 2;
        piece.status = PieceStatus::Approved;
        assert!(render_is_dead(None, 0), "the job is gone");
        assert!(!render_is_dead(Some(&piece), 2), "the approved render");
        assert!(
            render_is_dead(Some(&piece), 1),
            "replaced by a later attempt"
        );
        piece.status = PieceStatus::Checking;
        assert!(!render_is_dead(Some(&piece), 2), "still being checked");
        piece.status = PieceStatus::Failed;
        assert!(render_is_dead(Some(&piece), 2), "given up");
        piece.status = PieceStatus::Rendering;
        piece.dispute = Some(Dispute {
            renderer: Address([7; 32]),
            attempt: 1,
            commitment: PieceCommitment {
                image: Hash::of(b"image"),
                tiles_root: Hash::of(b"tiles"),
            },
            check_seed: Hash::of(b"seed"),
            slot: depin_protocol::render::VerdictSlot::new(Address([8; 32]), 10),
        });
        assert!(
            !render_is_dead(Some(&piece), 1),
            "a rejection still checked"
        );
        assert!(render_is_dead(Some(&piece), 0));
    }
}
