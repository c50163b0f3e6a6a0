//! The coverage service's consensus rules (Helium-style proof of coverage): hotspots and their
//! asserted locations, beacon and witness reports verified in batches once their entropy's
//! window closes, HIP-15 reward units with HIP-17 hex density scaling, and device packets paid
//! in Data Credits. Pure: the radio side (the packet-forwarder endpoint) is `depin-coverage`'s.

/// The name this service is registered under.
pub const SERVICE: depin_types::ServiceKind = depin_types::ServiceKind::new("coverage");

mod module;
pub mod rewards;
mod types;
pub mod verify;

pub use module::CoverageModule;
pub use types::{
    CoverageEpoch, CoverageEvent, CoverageParams, CoverageTx, Device, EntropyRecord, FCNT_WINDOW,
    Hotspot, HotspotAssertion, HotspotEpochReward, MAX_OUTCOMES_KEPT, MAX_RECEIPT_COMMITMENTS,
    PacketReceipt, PendingBeacon, ReportOutcome, keys, packet_message, receipts_root,
};

#[cfg(test)]
mod tests;
