//! The render service's consensus rules, first part: the genesis section (limits, price per
//! megapixel × sample, the check parameters), the checks a job spec must pass, the escrow it
//! costs, and the chain's draw of check regions from entropy. Pure. Jobs, assignment, verdicts
//! and approval (issue 15, points 4–6) build on these; the service is not registered yet.
//! Running Blender is `depin-render`'s job.

/// The name this service will be registered under.
pub const SERVICE: depin_types::ServiceKind = depin_types::ServiceKind::new("render");

mod job;
mod params;

pub use job::{
    CheckRegion, RenderJobSpec, check_spec, draw_check_regions, frame_price_dc, job_escrow_dc,
};
pub use params::RenderParams;
