//! The compute service's genesis section (`[services.compute]`): job limits and the
//! commit-reveal windows.

use crate::params::ServiceParams;
use depin_types::ServiceKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeParams {
    pub max_replicas: u8,
    pub max_fuel: u64,
    pub max_memory_mib: u32,
    pub max_deadline_blocks: u64,
    pub max_module_bytes: u64,
    pub max_input_bytes: u64,
    /// Blocks for reveals once every replica committed or the commit deadline passed.
    pub reveal_blocks: u64,
    /// Rounds on fresh providers after a round without a majority.
    pub max_retries: u8,
    /// The lowest price a job may offer (DC per million fuel). Work units count only fuel
    /// paid for at this floor, so price-0 jobs earn no emission.
    pub min_price_dc_per_mfuel: u64,
    /// Share of every job payment burned rather than paid to the replica (basis points). A
    /// provider's emission in an epoch is capped at the value it burned, so self-dealing at
    /// any price burns at least what it earns.
    pub payment_burn_bps: u16,
    /// The fewest blocks a job may give its replicas to run and commit: a consumer cannot
    /// set a deadline no replica can make.
    pub min_deadline_blocks: u64,
    /// Share of the escrow (basis points) the replicas agreeing that a job cannot run (an
    /// invalid module, bytes nobody could fetch, an input that does not unpack, output over
    /// the limit) are paid for the attempt, split among the replicas.
    pub attempt_fee_bps: u16,
    /// Share of the escrow paid to the replicas agreeing that a job ran to its deadline,
    /// for the time they gave, split among the replicas.
    pub deadline_fee_bps: u16,
}

impl ComputeParams {
    pub fn devnet() -> ComputeParams {
        ComputeParams {
            max_replicas: 7,
            max_fuel: 1_000_000_000_000,
            max_memory_mib: 4096,
            max_deadline_blocks: 100_000,
            max_module_bytes: 64 << 20,
            max_input_bytes: 4 << 30,
            reveal_blocks: 60,
            max_retries: 1,
            min_price_dc_per_mfuel: 1,
            payment_burn_bps: 1000,
            min_deadline_blocks: 8,
            attempt_fee_bps: 200,
            deadline_fee_bps: 2000,
        }
    }
}

impl ServiceParams for ComputeParams {
    const SERVICE: ServiceKind = super::SERVICE;

    fn validate(&self) -> Result<(), String> {
        if self.max_replicas == 0
            || self.max_fuel == 0
            || self.max_memory_mib == 0
            || self.max_deadline_blocks == 0
            || self.reveal_blocks == 0
        {
            return Err("limits must be positive".into());
        }
        if self.min_deadline_blocks < 3 || self.min_deadline_blocks > self.max_deadline_blocks {
            return Err(
                "min_deadline_blocks must be 3 (fetch, run, commit) up to max_deadline_blocks"
                    .into(),
            );
        }
        if u64::from(self.attempt_fee_bps) > 10_000 || u64::from(self.deadline_fee_bps) > 10_000 {
            return Err("attempt_fee_bps and deadline_fee_bps are at most 10000".into());
        }
        if self.min_price_dc_per_mfuel == 0 {
            return Err(
                "min_price_dc_per_mfuel must be positive: free fuel cannot count as work".into(),
            );
        }
        if self.payment_burn_bps == 0 || u64::from(self.payment_burn_bps) > 10_000 {
            return Err("payment_burn_bps must be 1..=10000: without a burn, self-dealt jobs earn emission for free".into());
        }
        Ok(())
    }
}
