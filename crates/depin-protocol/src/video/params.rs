//! The video service's genesis section (`[services.video]`).

use crate::params::ServiceParams;
use depin_types::ServiceKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoParams {
    /// The lowest price work counts at: Data Credits per 10⁹ output pixels. A winning
    /// ticket counts its face value's pixels at this floor as work (emission is split by
    /// paid work and capped at what the payments burned).
    pub min_price_dc_per_gigapixel: u64,
    /// Blocks a ticket may live: a ticket whose expiry is further than this from the block
    /// redeeming it is refused, so the record of redeemed tickets can be dropped at expiry.
    pub max_ticket_validity_blocks: u64,
    /// Blocks between `Unlock` and the moment deposit and reserve can be withdrawn; longer
    /// than any ticket lives, so every ticket sent before the unlock can still be redeemed.
    pub unlock_blocks: u64,
    /// Blocks the reserve waits, once a winner found the deposit spent, for the other
    /// orchestrators the broadcaster owes to claim their share.
    pub reserve_claim_blocks: u64,
    /// Orchestrators that may claim from one frozen reserve (bounds the record).
    pub max_reserve_claimants: u32,
    /// Largest face value of one ticket, in DC.
    pub max_face_value_dc: u64,
    /// Share of every payment burned rather than paid (basis points): a provider's emission
    /// is capped at the value it burned, so self-dealt tickets cannot farm it.
    pub payment_burn_bps: u16,
    /// Longest encoder or build name an orchestrator may advertise, in bytes.
    #[serde(default = "default_max_ad_name_bytes")]
    pub max_ad_name_bytes: u32,
    /// Share of a stream's segments (basis points) a broadcaster also sends to a second
    /// orchestrator, comparing the renditions (fast verification); a broadcaster may ask
    /// for more, never less.
    #[serde(default = "default_second_opinion_bps")]
    pub second_opinion_bps: u16,
    /// Data Credits a broadcaster locks to dispute a rendition: back if upheld, paid to the
    /// accused orchestrator if two verifiers find the rendition faithful.
    #[serde(default = "default_dispute_bond_dc")]
    pub dispute_bond_dc: u64,
    /// Blocks the drawn verifiers have to attest.
    #[serde(default = "default_dispute_blocks")]
    pub dispute_blocks: u64,
    /// Verifiers drawn per dispute (two attesting alike decide it).
    #[serde(default = "default_dispute_verifiers")]
    pub dispute_verifiers: u32,
}

fn default_dispute_bond_dc() -> u64 {
    1000
}

fn default_dispute_blocks() -> u64 {
    100
}

fn default_dispute_verifiers() -> u32 {
    3
}

fn default_second_opinion_bps() -> u16 {
    1000
}

fn default_max_ad_name_bytes() -> u32 {
    64
}

impl VideoParams {
    pub fn devnet() -> VideoParams {
        VideoParams {
            min_price_dc_per_gigapixel: 100,
            max_ticket_validity_blocks: 120,
            unlock_blocks: 200,
            reserve_claim_blocks: 20,
            max_reserve_claimants: 64,
            max_face_value_dc: 1_000_000,
            payment_burn_bps: 1000,
            max_ad_name_bytes: default_max_ad_name_bytes(),
            second_opinion_bps: default_second_opinion_bps(),
            dispute_bond_dc: default_dispute_bond_dc(),
            dispute_blocks: default_dispute_blocks(),
            dispute_verifiers: default_dispute_verifiers(),
        }
    }
}

impl ServiceParams for VideoParams {
    const SERVICE: ServiceKind = super::SERVICE;

    fn validate(&self) -> Result<(), String> {
        if self.min_price_dc_per_gigapixel == 0 {
            return Err(
                "min_price_dc_per_gigapixel must be positive: free transcoding cannot count as work"
                    .into(),
            );
        }
        if self.max_ticket_validity_blocks == 0
            || self.reserve_claim_blocks == 0
            || self.max_reserve_claimants == 0
            || self.max_face_value_dc == 0
        {
            return Err(
                "ticket validity, reserve claim window, claimants and face value must be positive"
                    .into(),
            );
        }
        if self.unlock_blocks <= self.max_ticket_validity_blocks {
            return Err(
                "unlock_blocks must exceed max_ticket_validity_blocks: a deposit withdrawn while its tickets live pays nobody"
                    .into(),
            );
        }
        if self.dispute_bond_dc == 0 || self.dispute_blocks == 0 {
            return Err("dispute_bond_dc and dispute_blocks must be positive: a free accusation costs an honest orchestrator its time".into());
        }
        if !(2..=7).contains(&self.dispute_verifiers) {
            return Err("dispute_verifiers is 2 to 7: two attesting alike decide a dispute".into());
        }
        if self.second_opinion_bps > 10_000 {
            return Err("second_opinion_bps is at most 10000 (every segment)".into());
        }
        if self.payment_burn_bps == 0 || self.payment_burn_bps > 10_000 {
            return Err("payment_burn_bps must be 1..=10000: without a burn, self-dealt tickets earn emission for free".into());
        }
        Ok(())
    }
}
