//! The render path beside plain Blender, on the 48-frame example (docs/BENCHMARKS.md):
//! `cargo bench -p depin-render --bench render` (DEPIN_BENCH_FRAMES=48 for every frame;
//! DEPIN_BENCH_SIZE=WxH, DEPIN_BENCH_SAMPLES=N to change the work per frame).
//!
//! Per frame: plain `blender -b SCENE -f N` (the scene's own settings, every core), then the
//! provider's path (inspect + sandboxed render with pinned seed and tiles), then a verifier's
//! three check regions of 10% × 10% in one sandboxed run. Medians over the frames.

use std::process::Command;
use std::time::Instant;

use depin_render::scenes::{Example, build};
use depin_render::{Blender, BlenderConfig, Region, RenderSpec};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames: i64 = env_or("DEPIN_BENCH_FRAMES", 8);
    let samples: u32 = env_or("DEPIN_BENCH_SAMPLES", 64);
    let size: String = env_or("DEPIN_BENCH_SIZE", "640x360".to_string());
    let (w, h) = size.split_once('x').ok_or("DEPIN_BENCH_SIZE is WxH")?;
    let (width, height): (u32, u32) = (w.parse()?, h.parse()?);
    let dir = tempfile::tempdir()?;
    let blender = Blender::new(BlenderConfig::default());
    let caps = blender.probe()?;
    let scene = build(&blender, Example::CameraFlight, dir.path())?;
    // The same work for plain Blender: the bench's size and samples saved into the scene.
    let status = Command::new("blender")
        .args(["-b", "--factory-startup"])
        .arg(&scene)
        .arg("--python-expr")
        .arg(format!(
            "import bpy; s = bpy.context.scene; s.render.resolution_x = {width}; \
             s.render.resolution_y = {height}; s.cycles.samples = {samples}; \
             s.cycles.use_adaptive_sampling = False; s.cycles.use_denoising = False; \
             bpy.ops.wm.save_mainfile()"
        ))
        .output()?
        .status;
    if !status.success() {
        return Err("could not resave the scene".into());
    }
    let step = (48 / frames.clamp(1, 48)).max(1);
    let frame_list: Vec<i64> = (1..=48)
        .step_by(step as usize)
        .take(frames as usize)
        .collect();
    let rw = (width / 10).max(8);
    let rh = (height / 10).max(8);
    let (mut plain, mut ours, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    for &frame in &frame_list {
        let out = dir.path().join(format!("plain-{frame}-"));
        let started = Instant::now();
        let status = Command::new("blender")
            .args(["-b", "--factory-startup"])
            .arg(&scene)
            .arg("-o")
            .arg(&out)
            .args(["-F", "PNG", "-f", &frame.to_string()])
            .output()?
            .status;
        plain.push(started.elapsed().as_secs_f64());
        if !status.success() {
            return Err(format!("plain blender failed on frame {frame}").into());
        }
        let spec = RenderSpec {
            frame,
            samples,
            seed: frame as u32,
            resolution: None,
            region: None,
            denoise_off: false,
        };
        let started = Instant::now();
        blender.render_checked(&caps, dir.path(), &scene, &spec)?;
        ours.push(started.elapsed().as_secs_f64());
        let regions =
            [(0, 0), (width / 2, height / 3), (width - rw, height - rh)].map(|(x, y)| Region {
                x0: x,
                y0: y,
                x1: x + rw,
                y1: y + rh,
            });
        let started = Instant::now();
        blender.render_regions(&caps, dir.path(), &scene, &spec, &regions)?;
        checks.push(started.elapsed().as_secs_f64());
    }
    let (p, o, c) = (median(plain), median(ours), median(checks));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Blender {} on CPU, {cores} cores; {} frames of camera_flight at {width}×{height}, {samples} samples; medians",
        caps.blender,
        frame_list.len()
    );
    println!(
        "| plain `blender -b -f N` (s/frame) | depin render path (s/frame) | sandbox + inspect overhead | 3 check regions of {rw}×{rh}, one run (s) | verification share of render |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {p:.2} | {o:.2} | {:+.1}% | {c:.2} | {:.1}% |",
        (o / p - 1.0) * 100.0,
        c / o * 100.0
    );
    println!(
        "frames/hour: plain {:.0}, depin {:.0}",
        3600.0 / p,
        3600.0 / o
    );
    Ok(())
}
