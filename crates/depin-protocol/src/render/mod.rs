//! The render service's consensus rules: render providers advertise their build and benchmark
//! score; a job escrows its pieces (frames, or strips of large ones) priced per pixel-sample;
//! the chain hands pieces to renderers weighted by stake, reputation and score; a renderer
//! commits each piece's pixel hash and tile root; from later entropy the chain draws check
//! regions and a verifier of the same build, whose verdicts accept or reject the piece (a
//! second and third verifier break a failing verdict); the consumer approves or rejects
//! checked pieces (approved after a deadline otherwise); approval pays renderer and
//! verifiers and counts work. Timeouts, failed checks and outvoted verdicts are slashed.
//! Pure: running Blender is `depin-render`'s job.

/// The name this service is registered under.
pub const SERVICE: depin_types::ServiceKind = depin_types::ServiceKind::new("render");

mod job;
mod module;
mod params;
mod types;

pub use job::{
    CheckRegion, JobEscrow, PieceArea, RenderJobSpec, check_spec, draw_check_regions,
    frame_price_dc, frame_seed, job_escrow_dc, piece_area, piece_check_regions, piece_count,
    piece_price_dc, render_blocks, strips_per_frame, verdict_passes,
};
pub use module::RenderModule;
pub use params::RenderParams;
pub use types::{
    Dispute, Due, DueKind, Piece, PieceCommitment, PieceRef, PieceStatus, QueueEntry, RenderAd,
    RenderEvent, RenderJob, RenderJobStatus, RenderTx, RenderUsage, Verdict, VerdictSlot, keys,
};
