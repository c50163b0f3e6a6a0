//! Owns: the video runtime: ffmpeg and ffprobe runs, the rendition ladder, pinned encoder
//! settings, cutting a source into segments, and the checks of a rendition against its
//! rung, its source and another orchestrator's rendition.
//! Must not: decide what the chain pays, or import another service.
//!
//! depin-video: transcodes a segment of a live stream into a ladder of renditions with the
//! real ffmpeg (libx264 on CPU, `h264_nvenc` where the build and a GPU offer it), with every
//! setting that changes the bytes pinned, so two orchestrators with the same settings and
//! thread count produce byte-identical segments; probes what a rendition holds (size, frames,
//! duration, decoded pixels); compares renditions across encoders by MPEG-7 video signature
//! and SSIM against the source; cuts a file, URL or RTMP push into segments as they arrive.
//! What a segment is worth and how it is paid is
//! `depin_protocol::video`.

mod ffmpeg;
mod ingest;
mod ladder;
mod probe;
mod transcode;
mod verify;

pub use ffmpeg::{Ffmpeg, VideoError};
pub use ingest::{CutSegment, Cutter, Source};
pub use ladder::{Ladder, RUNGS, Rung};
pub use probe::SegmentFacts;
pub use transcode::{Encoder, EncoderSettings, Rendition};
pub use verify::{Mismatch, Opinion, SSIM_MARGIN, check_rendition, judge};

#[cfg(test)]
mod tests;
