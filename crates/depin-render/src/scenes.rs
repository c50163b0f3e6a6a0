//! The example scenes: Blender Python scripts in `examples/render/`, built into `.blend` files
//! when a test or benchmark needs them, so the repository holds no binary scenes.

use std::path::{Path, PathBuf};

use crate::blender::{Blender, RenderError};

const COMMON: &str = include_str!("../../../examples/render/common.py");

/// The example scenes, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Example {
    /// A few primitives with a glass and an emissive material.
    GlassAndLight,
    /// A subdivided, procedurally textured mesh under a Nishita sky.
    TexturedMesh,
    /// A 48-frame camera flight.
    CameraFlight,
}

impl Example {
    pub const ALL: [Example; 3] = [
        Example::GlassAndLight,
        Example::TexturedMesh,
        Example::CameraFlight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Example::GlassAndLight => "glass_and_light",
            Example::TexturedMesh => "textured_mesh",
            Example::CameraFlight => "camera_flight",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Example::GlassAndLight => include_str!("../../../examples/render/glass_and_light.py"),
            Example::TexturedMesh => include_str!("../../../examples/render/textured_mesh.py"),
            Example::CameraFlight => include_str!("../../../examples/render/camera_flight.py"),
        }
    }
}

/// Builds `example` into `dir/scene.blend`; returns its path.
pub fn build(blender: &Blender, example: Example, dir: &Path) -> Result<PathBuf, RenderError> {
    build_script(blender, example.script(), &serde_json::json!({}), dir)
}

/// Runs a scene-building `script` (which may `import common`) with `args` and saves what it
/// wrote as `dir/scene.blend`.
pub fn build_script(
    blender: &Blender,
    script: &str,
    args: &serde_json::Value,
    dir: &Path,
) -> Result<PathBuf, RenderError> {
    let work = blender.run(None, &[("scene.py", script), ("common.py", COMMON)], args)?;
    let built = work.path().join("out/scene.blend");
    std::fs::create_dir_all(dir).map_err(|e| RenderError::io(dir, e))?;
    let path = dir.join("scene.blend");
    std::fs::copy(&built, &path).map_err(|e| RenderError::io(&built, e))?;
    Ok(path)
}

/// The fixed benchmark every render provider runs at start: the glass example at 480×270 and
/// 64 samples, frame 1. Its score is what the provider advertises, so the same work on every
/// machine.
pub const BENCHMARK_SIZE: (u32, u32) = (480, 270);
pub const BENCHMARK_SAMPLES: u32 = 64;

/// A benchmark run: the score and what it measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BenchmarkScore {
    /// Pixel-samples rendered per second, in millions (scene load and start included, as in
    /// a real job).
    pub megapixel_samples_per_s: f64,
    pub seconds: f64,
    pub blender: String,
    pub device: crate::Device,
}

/// Builds and renders the benchmark scene once; the score counts the whole run.
pub fn benchmark(
    blender: &Blender,
    capabilities: &crate::Capabilities,
) -> Result<BenchmarkScore, RenderError> {
    let dir = tempfile::tempdir().map_err(|e| RenderError::io(&std::env::temp_dir(), e))?;
    let scene = build(blender, Example::GlassAndLight, dir.path())?;
    let spec = crate::RenderSpec {
        frame: 1,
        samples: BENCHMARK_SAMPLES,
        seed: 1,
        resolution: Some(BENCHMARK_SIZE),
        region: None,
        denoise_off: false,
    };
    let (_, rendered) = blender.render_checked(capabilities, dir.path(), &scene, &spec)?;
    let pixel_samples =
        f64::from(BENCHMARK_SIZE.0) * f64::from(BENCHMARK_SIZE.1) * f64::from(BENCHMARK_SAMPLES);
    Ok(BenchmarkScore {
        megapixel_samples_per_s: pixel_samples / 1e6 / rendered.seconds.max(1e-3),
        seconds: rendered.seconds,
        blender: capabilities.blender.clone(),
        device: blender.config().device,
    })
}
