//! Genesis: every protocol parameter, the initial balances and the validator set, as TOML.
//! The ledger's own parameters are fields here; each service's are its own section under
//! `[services.<name>]`, with its reward share and minimum stake in per-service maps, all
//! decoded and checked by the service the registry names (`crate::services`).

use depin_types::{Address, Amount, ServiceKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Basis points: 10_000 = 100%.
pub const BPS_DENOMINATOR: u128 = 10_000;

/// The whole genesis document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Each registered service's own section, keyed by service name; decoded and validated
    /// by that service ([`ServiceParams`]).
    pub services: BTreeMap<ServiceKind, toml::Table>,
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
}

/// `params` as a genesis section.
pub fn params_section<P: Serialize>(params: &P) -> toml::Table {
    match toml::Value::try_from(params) {
        Ok(toml::Value::Table(table)) => table,
        // A params struct always serializes as a table; nothing else is a section.
        _ => toml::Table::new(),
    }
}

/// A service's genesis section, decoded and checked by the service itself.
pub trait ServiceParams: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const SERVICE: ServiceKind;

    /// Refuses values the service cannot run with (a short reason, no trailing period).
    fn validate(&self) -> Result<(), String>;
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

/// How an epoch's emission is split, in basis points summing to 10_000: the validators' share
/// and one share per registered service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSplit {
    pub validators_bps: u16,
    pub services_bps: BTreeMap<ServiceKind, u16>,
}

impl RewardSplit {
    /// A service's share; one the split does not name gets nothing.
    pub fn service_bps(&self, service: ServiceKind) -> u16 {
        self.services_bps.get(&service).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StakingParams {
    /// Stake a provider must keep bonded for each service it offers.
    pub min_stake: BTreeMap<ServiceKind, Amount>,
    pub min_stake_validator: Amount,
    /// Blocks between an unbond and the earliest withdraw of that stake.
    pub unbonding_blocks: u64,
    /// Most unbonding entries an account may have in flight (bounds the state record).
    pub max_unbonding_entries: u16,
}

impl StakingParams {
    /// A service's minimum stake; one the map does not name needs none.
    pub fn min_stake(&self, service: ServiceKind) -> Amount {
        self.min_stake
            .get(&service)
            .copied()
            .unwrap_or(Amount::ZERO)
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
    /// Fraction slashed from a provider that deregisters with open obligations (pieces held,
    /// jobs running) instead of finishing a graceful exit.
    pub exit_forfeit_bps: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataCreditParams {
    /// Price of one Data Credit in micro-USD (10 = $0.00001).
    pub dc_price_usd_micro: u64,
    /// Token price at genesis, micro-USD per whole token.
    pub initial_token_price_usd_micro: u64,
    /// The keys whose price reports count: the token price of an epoch is the median of
    /// their latest reports, applied at the epoch boundary.
    pub oracle_keys: Vec<Address>,
    /// Most the token price may move from one epoch to the next, in basis points of it.
    pub max_price_move_bps: u16,
}

/// Most oracle keys a genesis may name; bounds the report record.
pub const MAX_ORACLE_KEYS: usize = 32;

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
    Toml(#[from] toml::de::Error),
    #[error("invalid genesis: {0}")]
    Invalid(String),
    #[error("genesis has no section for the registered service {0} ([services.{0}])")]
    MissingService(ServiceKind),
    #[error("genesis {section} names {service}, which is not a registered service")]
    UnknownService {
        section: &'static str,
        service: ServiceKind,
    },
    #[error("genesis {section} has no entry for the registered service {service}")]
    MissingServiceEntry {
        section: &'static str,
        service: ServiceKind,
    },
    #[error("genesis [services.{service}]: {reason}")]
    ServiceSection {
        service: ServiceKind,
        reason: String,
    },
}

impl Genesis {
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = toml::from_str(text)?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Service `P`'s section, decoded and checked by `P`.
    pub fn service_params<P: ServiceParams>(&self) -> Result<P, GenesisError> {
        let section = self
            .services
            .get(&P::SERVICE)
            .ok_or(GenesisError::MissingService(P::SERVICE))?;
        let bad = |reason: String| GenesisError::ServiceSection {
            service: P::SERVICE,
            reason,
        };
        let params =
            P::deserialize(toml::Value::Table(section.clone())).map_err(|e| bad(e.to_string()))?;
        params.validate().map_err(bad)?;
        Ok(params)
    }

    /// Replaces service `P`'s section with `params`.
    pub fn set_service_params<P: ServiceParams>(&mut self, params: &P) {
        self.services.insert(P::SERVICE, params_section(params));
    }

    /// Changes service `P`'s section in place (tests, devnet tweaks).
    pub fn update_service_params<P: ServiceParams>(
        &mut self,
        change: impl FnOnce(&mut P),
    ) -> Result<(), GenesisError> {
        let mut params = self.service_params::<P>()?;
        change(&mut params);
        self.set_service_params(&params);
        Ok(())
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
        let total = s
            .services_bps
            .values()
            .fold(u32::from(s.validators_bps), |acc, bps| {
                acc + u32::from(*bps)
            });
        if u128::from(total) != BPS_DENOMINATOR {
            return bad("reward_split must sum to 10000 basis points");
        }
        let sl = &self.slashing;
        for v in [
            sl.missed_proof_bps,
            sl.invalid_proof_bps,
            sl.double_sign_bps,
            sl.exit_forfeit_bps,
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
        let oracles = &self.data_credits.oracle_keys;
        if oracles.is_empty()
            || oracles.len() > MAX_ORACLE_KEYS
            || oracles.iter().collect::<BTreeSet<_>>().len() != oracles.len()
        {
            return bad("data_credits.oracle_keys needs 1 to 32 distinct keys");
        }
        let max_move = u128::from(self.data_credits.max_price_move_bps);
        if max_move == 0 || max_move > BPS_DENOMINATOR {
            return bad("data_credits.max_price_move_bps must be 1 to 10000");
        }
        crate::services::check_genesis(self)?;
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
        oracle_key: Address,
        balances: &[(Address, Amount)],
    ) -> Genesis {
        let unit = 1_000_000u128; // 6 decimals
        let services: Vec<(ServiceKind, crate::services::DevnetDefaults)> =
            crate::services::builtin()
                .iter()
                .map(|m| (m.service(), m.devnet()))
                .collect();
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
                services_bps: services
                    .iter()
                    .map(|(service, d)| (*service, d.reward_bps))
                    .collect(),
            },
            staking: StakingParams {
                min_stake: services
                    .iter()
                    .map(|(service, d)| (*service, Amount(u128::from(d.min_stake_tokens) * unit)))
                    .collect(),
                min_stake_validator: Amount(1_000 * unit),
                unbonding_blocks: 20,
                max_unbonding_entries: 16,
            },
            slashing: SlashingParams {
                missed_proof_bps: 100,
                invalid_proof_bps: 1000,
                double_sign_bps: 500,
                exit_forfeit_bps: 1000,
            },
            data_credits: DataCreditParams {
                dc_price_usd_micro: 10,
                initial_token_price_usd_micro: 1_000_000,
                oracle_keys: vec![oracle_key],
                // A devnet's price follows a demo's within an epoch or two; a production genesis
                // keeps it to 1000 (10% an epoch) or less.
                max_price_move_bps: 2500,
            },
            fees: FeeParams {
                base_fee: Amount(1_000),
                fee_per_byte: Amount(1),
            },
            services: services
                .into_iter()
                .map(|(service, d)| (service, d.params))
                .collect(),
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
        g.reward_split.validators_bps += 1;
        assert!(g.validate().is_err());
        let text = Genesis::devnet("depin-test", 1, &[v], v, &[]).to_toml() + "\nsurprise = 1\n";
        assert!(Genesis::from_toml(&text).is_err());
    }

    #[test]
    fn every_registered_service_needs_its_section_share_and_stake_and_nothing_unknown() {
        let v = Keypair::from_seed(b"v").address();
        let good = Genesis::devnet("depin-test", 1, &[v], v, &[]);
        let storage = crate::storage::SERVICE;
        // A missing section is named, not filled in with devnet values.
        let mut g = good.clone();
        g.services.remove(&storage);
        assert_eq!(g.validate(), Err(GenesisError::MissingService(storage)));
        let text = good
            .to_toml()
            .replace("[services.storage]", "[services.storage_gone]");
        assert!(matches!(
            Genesis::from_toml(&text),
            Err(GenesisError::UnknownService {
                section: "services",
                ..
            })
        ));
        // A section the service cannot decode or run with, with the service's reason.
        let mut g = good.clone();
        g.services
            .get_mut(&storage)
            .expect("storage section")
            .insert("surprise".into(), toml::Value::Integer(1));
        assert!(
            matches!(g.validate(), Err(GenesisError::ServiceSection { service, .. }) if service == storage)
        );
        let mut g = good.clone();
        g.update_service_params::<crate::storage::StorageParams>(|p| p.max_segment_bytes = 0)
            .expect("update");
        assert!(matches!(
            g.validate(),
            Err(GenesisError::ServiceSection { reason, .. }) if reason == "limits must be positive"
        ));
        // Shares and stakes per registered service: none missing, none unknown.
        let mut g = good.clone();
        let share = g.reward_split.services_bps.remove(&storage).expect("share");
        g.reward_split.validators_bps += share;
        assert_eq!(
            g.validate(),
            Err(GenesisError::MissingServiceEntry {
                section: "reward_split.services_bps",
                service: storage
            })
        );
        let mut g = good.clone();
        let weather = ServiceKind::new("weather");
        g.staking.min_stake.insert(weather, Amount(1));
        assert_eq!(
            g.validate(),
            Err(GenesisError::UnknownService {
                section: "staking.min_stake",
                service: weather
            })
        );
    }
}
