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
        Ok(())
    }
}
