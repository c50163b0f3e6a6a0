//! The compute service's consensus rules: jobs (escrow, deterministic assignment of replicas),
//! commit-reveal of their results, settlement by majority with payment by fuel, slashing of
//! dissenting and silent replicas, retry or refund. Pure: running the WebAssembly is
//! `depin-compute`'s job.

/// The name this service is registered under.
pub const SERVICE: depin_types::ServiceKind = depin_types::ServiceKind::new("compute");

mod module;
mod params;
mod types;

pub use module::{ComputeModule, FUEL_PER_PRICE_UNIT, fuel_cost_dc};
pub use params::ComputeParams;
pub use types::{
    ComputeEvent, ComputeTx, ComputeUsage, ExitKind, Job, JobOutcome, JobSpec, JobStatus,
    MAX_JOB_STRING_BYTES, MAX_JOB_STRINGS, Replica, commitment, keys,
};
