//! Genesis: every protocol parameter, the initial balances and the validator set, as TOML.

use crate::coverage::CoverageParams;
use depin_types::{Address, Amount, ServiceKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Basis points: 10_000 = 100%.
pub const BPS_DENOMINATOR: u128 = 10_000;

/// The whole genesis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Distinguishes networks; signed into every transaction so a transaction cannot be
    /// replayed on another network.
    pub chain_id: String,
    /// Unix milliseconds of block 0.
    pub genesis_time_ms: u64,
    pub token: TokenParams,
    pub chain: ChainParams,
    pub emission: EmissionParams,
    pub reward_split: RewardSplit,
    pub staking: StakingParams,
    pub slashing: SlashingParams,
    pub data_credits: DataCreditParams,
    pub fees: FeeParams,
    /// Storage service: erasure profile, prices, deal limits. Genesis files written before
    /// the storage service get the devnet defaults.
    #[serde(default = "StorageParams::devnet")]
    pub storage: StorageParams,
    /// Compute service: job limits and the commit-reveal windows. Genesis files written
    /// before the compute service get the defaults.
    #[serde(default = "ComputeParams::devnet")]
    pub compute: ComputeParams,
    /// Coverage service: proof-of-coverage limits, hex density tiers, the emission split and
    /// packet prices. Genesis files written before the coverage service get the defaults.
    #[serde(default = "CoverageParams::devnet")]
    pub coverage: CoverageParams,
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenParams {
    pub symbol: String,
    pub decimals: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    pub block_interval_ms: u64,
    pub epoch_blocks: u64,
    pub max_tx_bytes: u32,
    pub max_block_txs: u32,
    pub max_block_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmissionParams {
    /// Tokens minted in each epoch before any halving, in base units.
    pub initial_epoch_emission: Amount,
    /// Emission halves every this many epochs.
    pub halving_interval_epochs: u64,
}

/// How an epoch's emission is split, in basis points summing to 10_000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSplit {
    pub validators_bps: u16,
    pub storage_bps: u16,
    pub compute_bps: u16,
    pub coverage_bps: u16,
    pub video_bps: u16,
}

impl RewardSplit {
    pub fn service_bps(&self, service: ServiceKind) -> u16 {
        match service {
            ServiceKind::Storage => self.storage_bps,
            ServiceKind::Compute => self.compute_bps,
            ServiceKind::Coverage => self.coverage_bps,
            ServiceKind::Video => self.video_bps,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StakingParams {
    pub min_stake_storage: Amount,
    pub min_stake_compute: Amount,
    pub min_stake_coverage: Amount,
    pub min_stake_video: Amount,
    pub min_stake_validator: Amount,
    /// Blocks between an unbond and the earliest withdraw of that stake.
    pub unbonding_blocks: u64,
    /// Most unbonding entries an account may have in flight (bounds the state record).
    pub max_unbonding_entries: u16,
}

impl StakingParams {
    pub fn min_stake(&self, service: ServiceKind) -> Amount {
        match service {
            ServiceKind::Storage => self.min_stake_storage,
            ServiceKind::Compute => self.min_stake_compute,
            ServiceKind::Coverage => self.min_stake_coverage,
            ServiceKind::Video => self.min_stake_video,
        }
    }
}

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
}

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
        }
    }

    pub fn production() -> StorageParams {
        StorageParams {
            erasure: ErasureProfile::PRODUCTION,
            ..StorageParams::devnet()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlashingParams {
    /// Fraction of bonded stake slashed for a missing proof, in basis points.
    pub missed_proof_bps: u16,
    /// Fraction slashed for a provably wrong proof or result.
    pub invalid_proof_bps: u16,
    /// Fraction slashed for a validator double-sign.
    pub double_sign_bps: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataCreditParams {
    /// Price of one Data Credit in micro-USD (10 = $0.00001).
    pub dc_price_usd_micro: u64,
    /// Token price at genesis, micro-USD per whole token.
    pub initial_token_price_usd_micro: u64,
    /// The only key allowed to set the token price.
    pub oracle_authority: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeParams {
    pub base_fee: Amount,
    pub fee_per_byte: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub address: Address,
    /// Self-bonded stake, minted at genesis.
    pub stake: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    pub address: Address,
    pub amount: Amount,
}

/// A genesis document that cannot start a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis toml: {0}")]
    Toml(String),
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

impl Genesis {
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis =
            toml::from_str(text).map_err(|e| GenesisError::Toml(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Rejects parameter sets the protocol cannot run with.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |m: &str| Err(GenesisError::Invalid(m.to_string()));
        if self.chain_id.is_empty() || self.chain_id.len() > MAX_CHAIN_ID_BYTES {
            return bad("chain_id must be 1 to 64 bytes");
        }
        if self.token.decimals > 18 {
            return bad("token.decimals must be at most 18");
        }
        if self.token.symbol.is_empty() || self.token.symbol.len() > 12 {
            return bad("token.symbol must be 1 to 12 characters");
        }
        if self.chain.epoch_blocks == 0 {
            return bad("chain.epoch_blocks must be positive");
        }
        if self.chain.block_interval_ms == 0 {
            return bad("chain.block_interval_ms must be positive");
        }
        if self.chain.max_tx_bytes < 256 || self.chain.max_tx_bytes > self.chain.max_block_bytes {
            return bad("chain.max_tx_bytes must be at least 256 and at most max_block_bytes");
        }
        if self.chain.max_block_txs == 0 {
            return bad("chain.max_block_txs must be positive");
        }
        if self.emission.halving_interval_epochs == 0 {
            return bad("emission.halving_interval_epochs must be positive");
        }
        let s = &self.reward_split;
        let total = u32::from(s.validators_bps)
            + u32::from(s.storage_bps)
            + u32::from(s.compute_bps)
            + u32::from(s.coverage_bps)
            + u32::from(s.video_bps);
        if u128::from(total) != BPS_DENOMINATOR {
            return bad("reward_split must sum to 10000 basis points");
        }
        let sl = &self.slashing;
        for v in [
            sl.missed_proof_bps,
            sl.invalid_proof_bps,
            sl.double_sign_bps,
        ] {
            if u128::from(v) > BPS_DENOMINATOR {
                return bad("slashing fractions must be at most 10000 basis points");
            }
        }
        if self.data_credits.dc_price_usd_micro == 0
            || self.data_credits.initial_token_price_usd_micro == 0
        {
            return bad("data_credits prices must be positive");
        }
        let e = &self.storage.erasure;
        if !(1 <= e.data_pieces
            && e.data_pieces <= e.repair_threshold
            && e.repair_threshold < e.success_threshold
            && e.success_threshold <= e.total_pieces
            && e.total_pieces <= 256)
        {
            return bad(
                "storage.erasure needs 1 <= data_pieces <= repair_threshold < success_threshold <= total_pieces <= 256",
            );
        }
        let st = &self.storage;
        if st.max_segment_bytes == 0
            || st.max_segments_per_deal == 0
            || st.max_deal_epochs == 0
            || st.activation_epochs == 0
            || st.missed_proofs_to_lose == 0
        {
            return bad("storage limits must be positive");
        }
        let c = &self.compute;
        if c.max_replicas == 0
            || c.max_fuel == 0
            || c.max_memory_mib == 0
            || c.max_deadline_blocks == 0
            || c.reveal_blocks == 0
        {
            return bad("compute limits must be positive");
        }
        let cv = &self.coverage;
        if u32::from(cv.beacon_share_bps)
            + u32::from(cv.witness_share_bps)
            + u32::from(cv.data_share_bps)
            != 10_000
            || cv.flowback_witness_bps > 10_000
        {
            return bad("coverage shares must sum to 10000 bps (flowback at most 10000)");
        }
        if cv.entropy_interval_blocks == 0
            || cv.bytes_per_dc == 0
            || cv.max_receipts_per_tx == 0
            || cv.max_witness_reports_per_beacon == 0
            || cv.poc.entropy_lifetime_ms == 0
        {
            return bad("coverage limits must be positive");
        }
        if cv
            .density_tiers
            .iter()
            .any(|t| !(4..=10).contains(&t.resolution) || t.target == 0 || t.max < t.target)
        {
            return bad("coverage.density_tiers need resolutions 4..=10 and 0 < target <= max");
        }
        if self.validators.is_empty() {
            return bad("at least one validator is required");
        }
        let mut seen = BTreeSet::new();
        for v in &self.validators {
            if !seen.insert(v.address) {
                return bad("duplicate validator");
            }
            if v.stake < self.staking.min_stake_validator {
                return bad("validator stake below staking.min_stake_validator");
            }
        }
        let mut seen = BTreeSet::new();
        let mut supply = Amount::ZERO;
        for b in &self.balances {
            if !seen.insert(b.address) {
                return bad("duplicate balance entry");
            }
            supply = supply
                .checked_add(b.amount)
                .ok_or(GenesisError::Invalid("initial supply overflows".into()))?;
        }
        for v in &self.validators {
            supply = supply
                .checked_add(v.stake)
                .ok_or(GenesisError::Invalid("initial supply overflows".into()))?;
        }
        Ok(())
    }

    /// A complete single-validator development genesis, the embedded default of `depin devnet`.
    pub fn devnet(
        chain_id: &str,
        genesis_time_ms: u64,
        validators: &[Address],
        oracle_authority: Address,
        balances: &[(Address, Amount)],
    ) -> Genesis {
        let unit = 1_000_000u128; // 6 decimals
        Genesis {
            chain_id: chain_id.to_string(),
            genesis_time_ms,
            token: TokenParams {
                symbol: "DPN".into(),
                decimals: 6,
            },
            chain: ChainParams {
                block_interval_ms: 1000,
                epoch_blocks: 30,
                max_tx_bytes: 64 * 1024,
                max_block_txs: 10_000,
                max_block_bytes: 8 * 1024 * 1024,
            },
            emission: EmissionParams {
                initial_epoch_emission: Amount(1_000 * unit),
                halving_interval_epochs: 100_000,
            },
            reward_split: RewardSplit {
                validators_bps: 2000,
                storage_bps: 3000,
                compute_bps: 2000,
                coverage_bps: 2000,
                video_bps: 1000,
            },
            staking: StakingParams {
                min_stake_storage: Amount(100 * unit),
                min_stake_compute: Amount(100 * unit),
                min_stake_coverage: Amount(10 * unit),
                min_stake_video: Amount(100 * unit),
                min_stake_validator: Amount(1_000 * unit),
                unbonding_blocks: 20,
                max_unbonding_entries: 16,
            },
            slashing: SlashingParams {
                missed_proof_bps: 100,
                invalid_proof_bps: 1000,
                double_sign_bps: 500,
            },
            data_credits: DataCreditParams {
                dc_price_usd_micro: 10,
                initial_token_price_usd_micro: 1_000_000,
                oracle_authority,
            },
            fees: FeeParams {
                base_fee: Amount(1_000),
                fee_per_byte: Amount(1),
            },
            storage: StorageParams::devnet(),
            compute: ComputeParams::devnet(),
            coverage: CoverageParams::devnet(),
            validators: validators
                .iter()
                .map(|a| GenesisValidator {
                    address: *a,
                    stake: Amount(10_000 * unit),
                })
                .collect(),
            balances: balances
                .iter()
                .map(|(address, amount)| GenesisBalance {
                    address: *address,
                    amount: *amount,
                })
                .collect(),
        }
    }
}

/// Longest chain id accepted in genesis and in transactions.
pub const MAX_CHAIN_ID_BYTES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use depin_types::Keypair;

    #[test]
    fn devnet_genesis_round_trips_through_toml() {
        let v = Keypair::from_seed(b"v").address();
        let g = Genesis::devnet("depin-test", 1, &[v], v, &[(v, Amount(5))]);
        g.validate().expect("valid");
        let text = g.to_toml();
        assert_eq!(Genesis::from_toml(&text).expect("parse"), g);
    }

    #[test]
    fn rejects_bad_split_and_unknown_fields() {
        let v = Keypair::from_seed(b"v").address();
        let mut g = Genesis::devnet("depin-test", 1, &[v], v, &[]);
        g.reward_split.video_bps += 1;
        assert!(g.validate().is_err());
        let text = Genesis::devnet("depin-test", 1, &[v], v, &[]).to_toml() + "\nsurprise = 1\n";
        assert!(Genesis::from_toml(&text).is_err());
    }
}
