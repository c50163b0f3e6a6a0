//! The storage service's consensus rules: deals, provider placement, epoch challenges,
//! possession-proof checks, payment from escrow and slashing. Pure: the runtime that encodes,
//! stores and serves pieces is `depin-storage`.

/// The name this service is registered under.
pub const SERVICE: depin_types::ServiceKind = depin_types::ServiceKind::new("storage");

pub mod merkle;
mod module;
mod params;
mod types;

pub use module::{
    MAX_ITEMS_PER_TX, MIN_PLACEMENT_REPUTATION_PPM, StorageModule, challenge_chunk, epoch_seed,
    piece_epoch_dc, sample_pieces,
};
pub use params::{ErasureProfile, StorageParams};
pub use types::{
    Deal, DealStatus, EpochFaults, MAX_PIECES_PER_PROVIDER, Piece, PieceProof, PieceRef,
    PieceState, ProofFaults, ProviderUsage, SegmentInfo, SegmentSpec, StorageEvent, StorageTx,
    keys,
};
