//! Blender as the renderer: capabilities, scene inspection and one frame (or region) per run,
//! each in its own sandbox (see `sandbox`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::image::{Image, ImageError};
use crate::sandbox::{self, BUNDLE_DIR, Limits, Mounts, OUT_DIR, TOOL_DIR};

const DRIVER: &str = include_str!("driver.py");
const INSPECT: &str = include_str!("inspect.py");
const PROBE: &str = include_str!("probe.py");
const SCENE_REPORT: &str = include_str!("scene_report.py");

/// A Cycles device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Device {
    Cpu,
    Cuda,
    Optix,
    Hip,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "CPU",
            Device::Cuda => "CUDA",
            Device::Optix => "OPTIX",
            Device::Hip => "HIP",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "CPU" => Ok(Device::Cpu),
            "CUDA" => Ok(Device::Cuda),
            "OPTIX" => Ok(Device::Optix),
            "HIP" => Ok(Device::Hip),
            _ => Err(format!(
                "unknown device {s:?}: choose CPU, CUDA, OPTIX or HIP"
            )),
        }
    }
}

/// A rectangle of a frame in pixels: columns `x0..x1`, rows `y0..y1` counted from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl Region {
    pub fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    pub fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }

    /// Whether it is non-empty and inside a `width × height` frame.
    pub fn fits(&self, width: u32, height: u32) -> bool {
        self.x0 < self.x1 && self.y0 < self.y1 && self.x1 <= width && self.y1 <= height
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{},{}", self.x0, self.y0, self.x1, self.y1)
    }
}

impl std::str::FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("region {s:?} is not X0,Y0,X1,Y1 in whole pixels"))?;
        match parts[..] {
            [x0, y0, x1, y1] if x0 < x1 && y0 < y1 => Ok(Region { x0, y0, x1, y1 }),
            [_, _, _, _] => Err(format!("region {s:?} is empty: need X0 < X1 and Y0 < Y1")),
            _ => Err(format!("region {s:?} is not X0,Y0,X1,Y1 in whole pixels")),
        }
    }
}

/// How this node runs Blender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlenderConfig {
    /// The Blender binary: Debian's `blender` by default, or an official build.
    pub binary: PathBuf,
    pub device: Device,
    /// CPU threads (0: every core).
    pub threads: u32,
    pub memory_limit_bytes: u64,
    /// Caps every file Blender writes, the frame included.
    pub output_limit_bytes: u64,
    pub wall_clock_limit_s: u64,
    /// Largest frame decoded, in pixels.
    pub max_pixels: u64,
}

impl Default for BlenderConfig {
    fn default() -> Self {
        BlenderConfig {
            binary: PathBuf::from("blender"),
            device: Device::Cpu,
            threads: 0,
            memory_limit_bytes: 8 << 30,
            output_limit_bytes: 512 << 20,
            wall_clock_limit_s: 3600,
            max_pixels: 8192 * 8192,
        }
    }
}

/// What a Blender build can render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Blender's version, e.g. `3.4.1`.
    pub blender: String,
    pub devices: Vec<Device>,
    /// Whether Cycles has OpenImageDenoise.
    pub denoise: bool,
}

/// What a scene needs, read by Blender before anything renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneInfo {
    pub blender: String,
    pub scene: String,
    pub engine: String,
    pub frame_start: i64,
    pub frame_end: i64,
    pub width: u32,
    pub height: u32,
    pub samples: u32,
    pub denoise: bool,
    pub has_camera: bool,
    /// Files the scene reads, relative to the bundle when inside it.
    pub needed_files: Vec<String>,
    /// Of those, the ones not in the bundle.
    pub missing_files: Vec<String>,
}

/// One render: a frame, or a region of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderSpec {
    pub frame: i64,
    pub samples: u32,
    /// Cycles' seed: fixed per frame, never animated.
    pub seed: u32,
    /// The frame's size; the scene's own when absent.
    pub resolution: Option<(u32, u32)>,
    pub region: Option<Region>,
    /// Render with Cycles' denoiser off even if the scene has it on (the image then differs
    /// from the artist's: only on the consumer's say-so).
    #[serde(default)]
    pub denoise_off: bool,
}

/// A finished render.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub image: Image,
    /// The PNG as Blender wrote it.
    pub png: Vec<u8>,
    /// The full frame's size (the image is smaller for a region).
    pub frame_width: u32,
    pub frame_height: u32,
    pub seconds: f64,
}

/// The images of one run of [`Blender::render_regions`], in the order asked.
#[derive(Debug, Clone)]
pub struct RegionRenders {
    /// The scene as the driver read it before rendering.
    pub scene: SceneInfo,
    pub images: Vec<Image>,
    pub pngs: Vec<Vec<u8>>,
    pub frame_width: u32,
    pub frame_height: u32,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0} is not installed (scripts/setup.sh installs Blender, bubblewrap and prlimit)")]
    NotInstalled(String),
    #[error("could not start the sandbox ({program}): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the scene {0} is not in its bundle directory")]
    SceneOutsideBundle(String),
    #[error("Blender cannot read the scene: {0}")]
    UnreadableScene(String),
    #[error("the scene needs files that are not in its bundle: {}", .0.join(", "))]
    MissingFiles(Vec<String>),
    #[error(
        "the scene denoises and this Blender has no OpenImageDenoise: turn denoising off in the scene, or render with a Blender build that has it"
    )]
    DenoiseUnavailable,
    #[error("the scene has no camera")]
    NoCamera,
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable { device: Device, reason: String },
    #[error("{0}")]
    BadRegion(String),
    #[error("Blender ran past its wall-clock limit of {limit_s} s and was stopped")]
    TimedOut { limit_s: u64 },
    #[error("Blender's output passed its limit of {limit_bytes} bytes")]
    OutputTooLarge { limit_bytes: u64 },
    #[error("Blender failed ({status}): {log_tail}")]
    Blender { status: String, log_tail: String },
    #[error("Blender's frame is unreadable: {0}")]
    Image(#[from] ImageError),
}

impl RenderError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RenderError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A stable code for logs, the API and job outcomes.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::NotInstalled(_) => "renderer_not_installed",
            RenderError::Spawn { .. } => "sandbox_failed",
            RenderError::Io { .. } => "io",
            RenderError::SceneOutsideBundle(_) => "scene_outside_bundle",
            RenderError::UnreadableScene(_) => "unreadable_scene",
            RenderError::MissingFiles(_) => "missing_files",
            RenderError::DenoiseUnavailable => "denoise_unavailable",
            RenderError::NoCamera => "no_camera",
            RenderError::DeviceUnavailable { .. } => "device_unavailable",
            RenderError::BadRegion(_) => "bad_region",
            RenderError::TimedOut { .. } => "timed_out",
            RenderError::OutputTooLarge { .. } => "output_too_large",
            RenderError::Blender { .. } => "blender_failed",
            RenderError::Image(_) => "bad_image",
        }
    }
}

/// The driver's report (result.json).
#[derive(Deserialize)]
struct DriverResult {
    ok: bool,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
    #[serde(default)]
    missing_files: Vec<String>,
    #[serde(default)]
    samples: u32,
    #[serde(default)]
    blender: String,
}

/// What one driver run is told beyond the render spec: `None` leaves the sample count to
/// the scene, and the denoiser's presence to the driver's own look at the build.
struct Drive<'a> {
    samples: Option<u32>,
    denoise: Option<bool>,
    regions: &'a [Region],
}

/// `depin render local`'s result: the render, the scene as the driver read it, and what
/// the one Blender start used.
#[derive(Debug, Clone)]
pub struct LocalRender {
    pub rendered: Rendered,
    pub scene: SceneInfo,
    pub samples: u32,
    pub blender_version: String,
}

/// Called with (samples done, samples in all) while a frame renders.
pub type SampleProgress = std::sync::Arc<dyn Fn(u32, u32) + Send + Sync>;

/// Blender, configured for this node.
#[derive(Clone)]
pub struct Blender {
    config: BlenderConfig,
    progress: Option<SampleProgress>,
}

impl std::fmt::Debug for Blender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Blender {
    pub fn new(config: BlenderConfig) -> Self {
        Blender {
            config,
            progress: None,
        }
    }

    /// Reports each render's samples as Blender prints them (for a progress bar).
    pub fn with_progress(mut self, progress: SampleProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    pub fn config(&self) -> &BlenderConfig {
        &self.config
    }

    /// The devices and features of this Blender build.
    pub fn probe(&self) -> Result<Capabilities, RenderError> {
        let run = self.run_script(None, PROBE, "probe.json", &serde_json::json!({}))?;
        serde_json::from_slice(&run).map_err(|e| RenderError::Blender {
            status: "probe".into(),
            log_tail: e.to_string(),
        })
    }

    /// Reads what `scene` (a path inside `bundle`) needs, without rendering it.
    pub fn inspect(&self, bundle: &Path, scene: &Path) -> Result<SceneInfo, RenderError> {
        let args = serde_json::json!({ "bundle_dir": BUNDLE_DIR });
        let work = self.run(
            Some((bundle, scene)),
            &[("script.py", INSPECT), ("scene_report.py", SCENE_REPORT)],
            &args,
        )?;
        read_json(&work.path().join("out/inspect.json"))
    }

    /// Checks `scene` against what this build can do, then renders `spec`: the provider's
    /// whole path for one frame or region, in one Blender start (the driver makes the
    /// `inspect` checks itself: files outside the bundle, no camera, denoising it lacks).
    pub fn render_checked(
        &self,
        capabilities: &Capabilities,
        bundle: &Path,
        scene: &Path,
        spec: &RenderSpec,
    ) -> Result<(SceneInfo, Rendered), RenderError> {
        if !capabilities.devices.contains(&self.config.device) {
            return Err(RenderError::DeviceUnavailable {
                device: self.config.device,
                reason: format!(
                    "Blender {} here offers {}",
                    capabilities.blender,
                    capabilities
                        .devices
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let regions: Vec<Region> = spec.region.into_iter().collect();
        let mut run = self.render_regions(capabilities, bundle, scene, spec, &regions)?;
        let image = run.images.pop().ok_or_else(|| RenderError::Blender {
            status: "driver".into(),
            log_tail: "no image written".into(),
        })?;
        let png = run.pngs.pop().unwrap_or_default();
        let rendered = Rendered {
            image,
            png,
            frame_width: run.frame_width,
            frame_height: run.frame_height,
            seconds: run.seconds,
        };
        Ok((run.scene, rendered))
    }

    /// Renders one frame or region of `scene` with every pixel-changing setting pinned.
    pub fn render(
        &self,
        capabilities: &Capabilities,
        bundle: &Path,
        scene: &Path,
        spec: &RenderSpec,
    ) -> Result<Rendered, RenderError> {
        self.render_checked(capabilities, bundle, scene, spec)
            .map(|(_, rendered)| rendered)
    }

    /// Renders each of `regions` of `spec`'s frame in one Blender run (the whole frame when
    /// `regions` is empty; `spec.region` is ignored): a verifier's checks pay for one scene
    /// load, not one per region.
    pub fn render_regions(
        &self,
        capabilities: &Capabilities,
        bundle: &Path,
        scene: &Path,
        spec: &RenderSpec,
        regions: &[Region],
    ) -> Result<RegionRenders, RenderError> {
        let drive = Drive {
            samples: Some(spec.samples),
            denoise: Some(capabilities.denoise),
            regions,
        };
        self.drive(bundle, scene, spec, &drive)
            .map(|(renders, _)| renders)
    }

    /// What `depin render local` runs: the provider's sandboxed checks and render in one
    /// Blender start. The scene keeps its own sample count when `samples` is absent, and the
    /// driver looks up this build's devices and denoiser itself (no probe or inspect run
    /// first); `spec.samples` is ignored.
    pub fn render_local(
        &self,
        bundle: &Path,
        scene: &Path,
        spec: &RenderSpec,
        samples: Option<u32>,
    ) -> Result<LocalRender, RenderError> {
        let regions: Vec<Region> = spec.region.into_iter().collect();
        let drive = Drive {
            samples,
            denoise: None,
            regions: &regions,
        };
        let (mut run, result) = self.drive(bundle, scene, spec, &drive)?;
        let image = run.images.pop().ok_or_else(|| RenderError::Blender {
            status: "driver".into(),
            log_tail: "no image written".into(),
        })?;
        Ok(LocalRender {
            rendered: Rendered {
                image,
                png: run.pngs.pop().unwrap_or_default(),
                frame_width: run.frame_width,
                frame_height: run.frame_height,
                seconds: run.seconds,
            },
            scene: run.scene,
            samples: result.samples,
            blender_version: result.blender,
        })
    }

    fn drive(
        &self,
        bundle: &Path,
        scene: &Path,
        spec: &RenderSpec,
        drive: &Drive<'_>,
    ) -> Result<(RegionRenders, DriverResult), RenderError> {
        let started = Instant::now();
        let regions = drive.regions;
        let threads = match self.config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            n => n,
        };
        let args = serde_json::json!({
            "frame": spec.frame,
            "samples": drive.samples,
            "seed": spec.seed,
            "threads": threads,
            "device": self.config.device.as_str(),
            "denoise": drive.denoise,
            "denoise_off": spec.denoise_off,
            "resolution": spec.resolution.map(|(w, h)| [w, h]),
            "regions": regions.iter().map(|r| [r.x0, r.y0, r.x1, r.y1]).collect::<Vec<_>>(),
            "bundle_dir": BUNDLE_DIR,
        });
        let work = self.run(
            Some((bundle, scene)),
            &[("script.py", DRIVER), ("scene_report.py", SCENE_REPORT)],
            &args,
        )?;
        let result_path = work.path().join("out/result.json");
        let result: DriverResult = read_json(&result_path)?;
        if !result.ok {
            return Err(match result.code.as_str() {
                "denoise_unavailable" => RenderError::DenoiseUnavailable,
                "device_unavailable" => RenderError::DeviceUnavailable {
                    device: self.config.device,
                    reason: result.message,
                },
                "bad_region" => RenderError::BadRegion(result.message),
                "missing_files" => RenderError::MissingFiles(result.missing_files),
                "no_camera" => RenderError::NoCamera,
                _ => RenderError::Blender {
                    status: result.code,
                    log_tail: result.message,
                },
            });
        }
        let names: Vec<String> = if regions.is_empty() {
            vec!["frame.png".into()]
        } else {
            (0..regions.len())
                .map(|i| format!("region-{i}.png"))
                .collect()
        };
        let (mut images, mut pngs) = (Vec::new(), Vec::new());
        for name in names {
            let path = work.path().join("out").join(name);
            let png = std::fs::read(&path).map_err(|e| RenderError::io(&path, e))?;
            images.push(Image::decode_png(&png, self.config.max_pixels)?);
            pngs.push(png);
        }
        let scene = read_json(&work.path().join("out/inspect.json"))?;
        let renders = RegionRenders {
            scene,
            images,
            pngs,
            frame_width: result.width,
            frame_height: result.height,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((renders, result))
    }

    /// Runs `script` on `scene` (or on no file) and returns the JSON file it wrote.
    fn run_script(
        &self,
        scene: Option<(&Path, &Path)>,
        script: &str,
        output: &str,
        args: &serde_json::Value,
    ) -> Result<Vec<u8>, RenderError> {
        let work = self.run(scene, &[("script.py", script)], args)?;
        let path = work.path().join("out").join(output);
        std::fs::read(&path).map_err(|e| RenderError::io(&path, e))
    }

    /// One sandboxed Blender run of `tool_files` (the first is run; the rest sit beside it)
    /// on `scene` (a path inside a bundle directory) or on no file; returns its work
    /// directory (`out/` holds what it wrote).
    pub(crate) fn run(
        &self,
        scene: Option<(&Path, &Path)>,
        tool_files: &[(&str, &str)],
        args: &serde_json::Value,
    ) -> Result<tempfile::TempDir, RenderError> {
        let blender = sandbox::resolve_program(&self.config.binary)?;
        let work = tempfile::Builder::new()
            .prefix("depin-render-")
            .tempdir()
            .map_err(|e| RenderError::io(&std::env::temp_dir(), e))?;
        let (tool, out) = (work.path().join("tool"), work.path().join("out"));
        for dir in [&tool, &out] {
            std::fs::create_dir(dir).map_err(|e| RenderError::io(dir, e))?;
        }
        for (name, text) in tool_files {
            let path = tool.join(name);
            std::fs::write(&path, text).map_err(|e| RenderError::io(&path, e))?;
        }
        let script = tool_files.first().map_or("script.py", |(name, _)| name);
        let empty = work.path().join("empty");
        std::fs::create_dir(&empty).map_err(|e| RenderError::io(&empty, e))?;

        let mut args_json = args.clone();
        args_json["out_dir"] = OUT_DIR.into();
        let mut blender_args: Vec<OsString> = vec![
            "--background".into(),
            "--factory-startup".into(),
            "--disable-autoexec".into(),
            "-noaudio".into(),
        ];
        let bundle = match scene {
            Some((bundle, scene)) => {
                let bundle = bundle
                    .canonicalize()
                    .map_err(|e| RenderError::io(bundle, e))?;
                let scene_path = if scene.is_absolute() {
                    scene.to_path_buf()
                } else {
                    bundle.join(scene)
                };
                let scene_path = scene_path
                    .canonicalize()
                    .map_err(|e| RenderError::io(&scene_path, e))?;
                let inside = scene_path
                    .strip_prefix(&bundle)
                    .map_err(|_| RenderError::SceneOutsideBundle(scene.display().to_string()))?;
                blender_args.push(Path::new(BUNDLE_DIR).join(inside).into());
                bundle
            }
            None => empty.clone(),
        };
        blender_args.extend([
            "--python".into(),
            format!("{TOOL_DIR}/{script}").into(),
            "--".into(),
            args_json.to_string().into(),
        ]);
        let limits = Limits {
            memory_bytes: self.config.memory_limit_bytes,
            output_bytes: self.config.output_limit_bytes,
            wall_clock: Duration::from_secs(self.config.wall_clock_limit_s),
        };
        let mounts = Mounts {
            blender: &blender,
            bundle: &bundle,
            tool: &tool,
            out: &out,
            gpu: self.config.device != Device::Cpu,
        };
        let outcome = sandbox::run(
            &mounts,
            &blender_args,
            limits,
            &work.path().join("log"),
            self.progress
                .as_deref()
                .map(|p| p as sandbox::OnSamples<'_>),
        )?;
        let wrote_result = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some());
        if let Some(message) = unreadable_scene(&outcome.log_tail) {
            return Err(RenderError::UnreadableScene(message));
        }
        // The file-size cap stops Blender's writes (its log included) with SIGXFSZ or EFBIG,
        // whichever way it then ends.
        let log_bytes = std::fs::metadata(work.path().join("log")).map_or(0, |m| m.len());
        let largest_output = std::fs::read_dir(&out)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let xfsz = {
            use std::os::unix::process::ExitStatusExt as _;
            outcome.status.signal() == Some(nix::sys::signal::Signal::SIGXFSZ as i32)
        };
        if xfsz || log_bytes.max(largest_output) >= self.config.output_limit_bytes {
            return Err(RenderError::OutputTooLarge {
                limit_bytes: self.config.output_limit_bytes,
            });
        }
        if !outcome.status.success() || !wrote_result {
            return Err(RenderError::Blender {
                status: describe_status(outcome.status, self.config.memory_limit_bytes),
                log_tail: last_lines(&outcome.log_tail, 12),
            });
        }
        Ok(work)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RenderError> {
    let bytes = std::fs::read(path).map_err(|e| RenderError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| RenderError::Blender {
        status: "driver".into(),
        log_tail: e.to_string(),
    })
}

/// Blender's own words when it could not open the scene file.
fn unreadable_scene(log: &str) -> Option<String> {
    log.lines()
        .find(|l| {
            l.contains("File format is not supported")
                || l.contains("Failed to read blend file")
                || l.contains("Cannot read file")
                || l.contains("Unable to open")
                || l.contains("truncated file")
        })
        .map(|l| l.trim().trim_start_matches("Error: ").to_string())
}

fn describe_status(status: std::process::ExitStatus, memory_limit_bytes: u64) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!(
            "killed by signal {signal}; it may have passed its memory limit of {} MiB",
            memory_limit_bytes >> 20
        ),
        _ => "ended abnormally".into(),
    }
}

fn last_lines(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
