//! `depin render …`: the render client. `local` runs one frame (or region) through exactly
//! the render provider's path (the scene inspected in the sandbox, then rendered with the
//! seed, samples and tile settings pinned); `benchmark` is the provider's score; `submit`
//! packs a scene with the files it uses, escrows its pieces and sends the bundle to each
//! renderer the chain picks; `status`, `approve`, `reject` and `fetch` follow a job to its
//! frames, each checked against the renderer's commitment.

use crate::client::CodedError;
use crate::output::{self, Printer};
use crate::progress::Progress;
use clap::{Args, Subcommand};
use depin_render::{Blender, BlenderConfig, Device, Region, RenderSpec};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RenderCommand {
    /// Render one frame of a .blend (or a region of it) as a provider would.
    Local(LocalArgs),
    /// Render the fixed benchmark scene and print the score a provider advertises.
    Benchmark(BenchmarkArgs),
    /// Submit a scene: packed with the files it uses, its frames escrowed and rendered by
    /// providers, each checked by re-rendering before it is offered to you.
    Submit(crate::renderjob::SubmitArgs),
    /// A job's pieces: queued, rendering, checking, offered, approved or failed, with who
    /// rendered and checked each.
    Status { id: String },
    /// Approve checked pieces (every offered one unless --pieces): they are paid now.
    Approve(crate::renderjob::ApproveArgs),
    /// Reject a checked piece: it is rendered again by another provider and not paid.
    Reject(crate::renderjob::RejectArgs),
    /// Download the approved frames, each checked against its commitment; --video encodes
    /// them with ffmpeg.
    Fetch(crate::renderjob::FetchArgs),
    /// Render providers: device, Blender build, benchmark score and current work.
    Providers,
    /// Build one of the example scenes (glass_and_light, textured_mesh, camera_flight) into
    /// DIR/scene.blend, to try the service with.
    Example {
        name: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[arg(long, default_value = "blender")]
        blender: PathBuf,
    },
}

#[derive(Args)]
pub struct BenchmarkArgs {
    /// The Blender binary (an official build for GPU rendering).
    #[arg(long, default_value = "blender")]
    blender: PathBuf,
    /// Cycles device: CPU, CUDA, OPTIX or HIP.
    #[arg(long, default_value = "CPU")]
    device: Device,
}

fn benchmark(out: Printer, args: BenchmarkArgs) -> anyhow::Result<()> {
    let blender = Blender::new(BlenderConfig {
        binary: args.blender,
        device: args.device,
        ..BlenderConfig::default()
    });
    let coded = |e: depin_render::RenderError| CodedError::new(e.code(), e.to_string());
    let capabilities = blender.probe().map_err(coded)?;
    let score = depin_render::scenes::benchmark(&blender, &capabilities).map_err(coded)?;
    out.emit(&score, || {
        let (w, h) = depin_render::scenes::BENCHMARK_SIZE;
        Ok(output::rows(&[
            (
                "score",
                format!("{:.2} megapixel-samples/s", score.megapixel_samples_per_s),
            ),
            (
                "scene",
                format!(
                    "glass_and_light at {w}×{h}, {} samples, in {:.2} s",
                    depin_render::scenes::BENCHMARK_SAMPLES,
                    score.seconds
                ),
            ),
            (
                "renderer",
                format!("Blender {} on {}", score.blender, score.device),
            ),
        ]))
    })
}

fn example(out: Printer, name: &str, dir: &std::path::Path, binary: PathBuf) -> anyhow::Result<()> {
    use depin_render::scenes::Example;
    let Some(example) = Example::ALL.into_iter().find(|e| e.name() == name) else {
        let names: Vec<&str> = Example::ALL.iter().map(|e| e.name()).collect();
        return Err(CodedError::new(
            "unknown_example",
            format!("no example {name:?}; there are {}", names.join(", ")),
        )
        .into());
    };
    let blender = Blender::new(BlenderConfig {
        binary,
        ..BlenderConfig::default()
    });
    let scene = depin_render::scenes::build(&blender, example, dir)
        .map_err(|e| CodedError::new(e.code(), e.to_string()))?;
    let built = serde_json::json!({ "example": name, "scene": scene });
    out.emit(&built, || Ok(format!("{name} built: {}", scene.display())))
}

#[derive(Args)]
pub struct LocalArgs {
    /// The scene; the folder it is in is its bundle (textures and other files it reads).
    scene: PathBuf,
    /// The frame to render.
    #[arg(short = 'f', long, default_value_t = 1)]
    frame: i64,
    /// Where to write the PNG.
    #[arg(short = 'o', long, default_value = "frame.png")]
    output: PathBuf,
    /// Cycles samples per pixel (default: the scene's).
    #[arg(long)]
    samples: Option<u32>,
    /// Only this region: X0,Y0,X1,Y1 in pixels, rows from the top.
    #[arg(long)]
    region: Option<Region>,
    /// The frame size, WxH (default: the scene's).
    #[arg(long, value_parser = parse_resolution)]
    resolution: Option<(u32, u32)>,
    /// Cycles seed (default: the frame number); the same seed gives the same pixels.
    #[arg(long)]
    seed: Option<u32>,
    /// CPU threads (0: every core); the pixels do not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// The Blender binary (an official build for GPU rendering).
    #[arg(long, default_value = "blender")]
    blender: PathBuf,
    /// Cycles device: CPU, CUDA, OPTIX or HIP.
    #[arg(long, default_value = "CPU")]
    device: Device,
    /// Render with the scene's denoiser off (needed for a denoising scene on a Blender build
    /// without OpenImageDenoise, such as Debian's; the image then differs from the artist's).
    #[arg(long)]
    no_denoise: bool,
    /// Stop Blender after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_s: u64,
}

pub(crate) fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("resolution {s:?} is not WxH"))?;
    let parse = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=65_536).contains(n))
            .ok_or_else(|| format!("resolution {s:?}: sides are whole pixels from 1 to 65536"))
    };
    Ok((parse(w)?, parse(h)?))
}

#[derive(Serialize)]
struct LocalReport {
    scene: String,
    blender: String,
    device: Device,
    frame: i64,
    samples: u32,
    seed: u32,
    frame_width: u32,
    frame_height: u32,
    region: Option<Region>,
    image_width: u32,
    image_height: u32,
    pixel_hash: String,
    seconds: f64,
    output: String,
}

pub fn run(ctx: &crate::Ctx, cmd: RenderCommand) -> anyhow::Result<()> {
    let out = ctx.out;
    let args = match cmd {
        RenderCommand::Local(args) => args,
        RenderCommand::Benchmark(args) => return benchmark(out, args),
        RenderCommand::Submit(args) => return crate::renderjob::submit(ctx, args),
        RenderCommand::Status { id } => return crate::renderjob::status(ctx, &id),
        RenderCommand::Approve(args) => return crate::renderjob::approve(ctx, args),
        RenderCommand::Reject(args) => return crate::renderjob::reject(ctx, args),
        RenderCommand::Fetch(args) => return crate::renderjob::fetch(ctx, args),
        RenderCommand::Providers => return crate::renderjob::providers(ctx),
        RenderCommand::Example {
            name,
            output,
            blender,
        } => return example(out, &name, &output, blender),
    };
    let blender = Blender::new(BlenderConfig {
        binary: args.blender.clone(),
        device: args.device,
        threads: args.threads,
        wall_clock_limit_s: args.timeout_s,
        ..BlenderConfig::default()
    });
    let coded = |e: depin_render::RenderError| CodedError::new(e.code(), e.to_string());
    let bar: std::sync::Arc<std::sync::Mutex<Option<Progress>>> = Default::default();
    let shown = bar.clone();
    let blender = blender.with_progress(std::sync::Arc::new(move |done, total| {
        let mut bar = shown.lock().unwrap_or_else(|p| p.into_inner());
        let bar =
            bar.get_or_insert_with(|| Progress::counting("rendering", total.into(), "samples"));
        bar.set(done.into());
    }));
    let scene = args
        .scene
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.scene.display()))?;
    let bundle = scene
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no folder", scene.display()))?
        .to_path_buf();
    // One Blender start, as a provider's render: the driver checks the scene and this
    // build itself, and keeps the scene's own samples unless told.
    let spec = RenderSpec {
        frame: args.frame,
        samples: 0,
        seed: args.seed.unwrap_or(args.frame.unsigned_abs() as u32),
        resolution: args.resolution,
        region: args.region,
        denoise_off: args.no_denoise,
    };
    let local = blender
        .render_local(&bundle, &scene, &spec, args.samples.map(|n| n.max(1)))
        .map_err(coded)?;
    let rendered = local.rendered;
    if let Some(bar) = bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        bar.finish();
    }
    std::fs::write(&args.output, &rendered.png)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.output.display()))?;
    let report = LocalReport {
        scene: scene.display().to_string(),
        blender: local.blender_version,
        device: args.device,
        frame: spec.frame,
        samples: local.samples,
        seed: spec.seed,
        frame_width: rendered.frame_width,
        frame_height: rendered.frame_height,
        region: spec.region,
        image_width: rendered.image.width,
        image_height: rendered.image.height,
        pixel_hash: rendered.image.pixel_hash().to_string(),
        seconds: rendered.seconds,
        output: args.output.display().to_string(),
    };
    out.emit(&report, || {
        Ok(output::rows(&[
            ("scene", report.scene.clone()),
            (
                "rendered",
                format!(
                    "frame {} at {}×{}, {} samples, seed {}",
                    report.frame,
                    report.frame_width,
                    report.frame_height,
                    report.samples,
                    report.seed
                ),
            ),
            (
                "region",
                report.region.map_or("whole frame".into(), |r| {
                    format!("{r} ({}×{})", report.image_width, report.image_height)
                }),
            ),
            (
                "renderer",
                format!("Blender {} on {}", report.blender, report.device),
            ),
            ("time", format!("{:.2} s", report.seconds)),
            ("pixels", report.pixel_hash.clone()),
            ("written", report.output.clone()),
        ]))
    })
}
