//! The render service's runtime: Blender (Cycles) run headless in a sandbox, with every
//! setting that changes pixels pinned, so that a frame or a region of it renders to the same
//! pixels on any provider with the same Blender build; scene inspection before rendering
//! (files outside the bundle, features the build lacks); PNG decoding into plain RGBA pixels.
//!
//! It owns no rules: what a frame is worth, who renders and who checks live in
//! `depin-protocol`'s `render` folder. It never runs a scene's own scripts.

mod blender;
mod image;
mod sandbox;
pub mod scenes;

pub use blender::{
    Blender, BlenderConfig, Capabilities, Device, Region, RegionRenders, RenderError, RenderSpec,
    Rendered, SceneInfo,
};
pub use image::{Image, ImageError};

#[cfg(test)]
mod tests;
