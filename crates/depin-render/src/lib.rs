//! Owns: the render runtime: Blender (Cycles) in a sandbox, scene checks, decoded frames.
//! Must not: decide what the chain accepts, run a scene's own scripts, or import another
//! service.
//!
//! depin-render: the render service's runtime. Runs Blender headless in a sandbox with every
//! setting that changes pixels pinned, so that a frame or a region of it renders to the same
//! pixels on any provider with the same Blender build; inspects a scene before rendering
//! (files outside the bundle, features the build lacks); decodes PNGs into plain RGBA pixels.
//! What a frame is worth, who renders and who checks is `depin_protocol::render`.

mod blender;
mod compare;
mod image;
mod sandbox;
pub mod scenes;
pub mod tiles;

pub use blender::{
    Blender, BlenderConfig, Capabilities, Device, LocalRender, Region, RegionRenders, RenderError,
    RenderSpec, Rendered, SampleProgress, SceneInfo,
};
pub use compare::{IDENTICAL_PSNR_DB, Similarity, compare};
pub use image::{Image, ImageError};

/// The key a renderer keeps a piece's image under and serves it by (the blob protocol's
/// outputs): the job, the piece and which render of it.
pub fn piece_output_key(job: &depin_types::Hash, piece: u64, attempt: u8) -> depin_types::Hash {
    depin_types::Hash::tagged(
        "depin render piece output",
        &[job.as_bytes(), &piece.to_be_bytes(), &[attempt]],
    )
}

#[cfg(test)]
mod tests;
