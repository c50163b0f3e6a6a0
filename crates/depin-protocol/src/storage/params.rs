//! The storage service's genesis section (`[services.storage]`): the erasure profile, prices
//! and deal limits.

use crate::params::ServiceParams;
use depin_types::ServiceKind;
use serde::{Deserialize, Serialize};

/// How objects are erasure-coded: any `data_pieces` of a segment's pieces rebuild it; repair
/// starts when healthy pieces fall to `repair_threshold`; a deal activates once
/// `success_threshold` pieces of every segment are stored; `total_pieces` are placed at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureProfile {
    pub data_pieces: u16,
    pub repair_threshold: u16,
    pub success_threshold: u16,
    pub total_pieces: u16,
}

impl ErasureProfile {
    /// Fits a devnet of 6 to 8 providers.
    pub const DEVNET: ErasureProfile = ErasureProfile {
        data_pieces: 4,
        repair_threshold: 5,
        success_threshold: 6,
        total_pieces: 8,
    };

    /// Storj-like durability for a large network.
    pub const PRODUCTION: ErasureProfile = ErasureProfile {
        data_pieces: 16,
        repair_threshold: 24,
        success_threshold: 40,
        total_pieces: 52,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageParams {
    pub erasure: ErasureProfile,
    /// Largest segment (the unit that is erasure-coded) in bytes.
    pub max_segment_bytes: u64,
    pub max_segments_per_deal: u32,
    /// Storage price in Data Credits per GiB of piece bytes per epoch.
    pub price_dc_per_gib_epoch: u64,
    /// Escrowed on top of the storage payments to pay repairers, in basis points of them.
    pub repair_budget_bps: u16,
    pub max_deal_epochs: u64,
    /// A deal not active (success threshold stored) within this many epochs is cancelled
    /// and its escrow refunded.
    pub activation_epochs: u64,
    /// Consecutive missed proofs after which a piece counts as lost (and is repaired).
    pub missed_proofs_to_lose: u8,
    /// What a deal that never activated (deleted while pending, or cancelled) pays the
    /// providers it held capacity on, in basis points of the storage price of its placed
    /// pieces for the epochs they were held. Not refunded.
    pub reservation_fee_bps: u16,
    /// Pieces of each provider challenged per epoch, drawn at random from what it holds (a
    /// provider with fewer proves all of them): bounds proof traffic and epoch work whatever
    /// the capacity. Pieces that missed a challenge are challenged again every epoch on top.
    pub proof_sample_pieces: u32,
}

impl StorageParams {
    pub fn devnet() -> StorageParams {
        StorageParams {
            erasure: ErasureProfile::DEVNET,
            max_segment_bytes: 64 * 1024 * 1024,
            max_segments_per_deal: 64,
            price_dc_per_gib_epoch: 100,
            repair_budget_bps: 2000,
            max_deal_epochs: 1_000_000,
            activation_epochs: 2,
            missed_proofs_to_lose: 2,
            reservation_fee_bps: 10_000,
            proof_sample_pieces: 256,
        }
    }

    pub fn production() -> StorageParams {
        StorageParams {
            erasure: ErasureProfile::PRODUCTION,
            ..StorageParams::devnet()
        }
    }
}

impl ServiceParams for StorageParams {
    const SERVICE: ServiceKind = super::SERVICE;

    fn validate(&self) -> Result<(), String> {
        let e = &self.erasure;
        if !(1 <= e.data_pieces
            && e.data_pieces <= e.repair_threshold
            && e.repair_threshold < e.success_threshold
            && e.success_threshold <= e.total_pieces
            && e.total_pieces <= 256)
        {
            return Err("erasure needs 1 <= data_pieces <= repair_threshold < success_threshold <= total_pieces <= 256".into());
        }
        if self.max_segment_bytes == 0
            || self.max_segments_per_deal == 0
            || self.max_deal_epochs == 0
            || self.activation_epochs == 0
            || self.missed_proofs_to_lose == 0
            || self.proof_sample_pieces == 0
        {
            return Err("limits must be positive".into());
        }
        if self.proof_sample_pieces as usize > super::MAX_ITEMS_PER_TX {
            return Err(format!(
                "proof_sample_pieces must be at most {} (one proof transaction)",
                super::MAX_ITEMS_PER_TX
            ));
        }
        if u128::from(self.reservation_fee_bps) > crate::params::BPS_DENOMINATOR {
            return Err("reservation_fee_bps must be at most 10000".into());
        }
        Ok(())
    }
}
