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
