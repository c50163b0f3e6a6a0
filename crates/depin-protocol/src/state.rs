//! The ledger state as a key-value map: the keys, the records, and the write overlay that a
//! block executes on. The protocol only reads through [`StateRead`]; where the bytes live
//! (redb, memory) and how they are committed to (the JMT) is the chain's business.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Amount, ServiceKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::tx::{GeoLocation, ServiceOffer};

/// Reads committed state. Implemented by the chain's store and by in-memory maps in tests.
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

/// An error from outside this crate (the chain's database, a decoder), kept with its chain of
/// sources and shareable so that [`StateError`] stays `Clone` and comparable.
#[derive(Clone)]
pub struct SharedError(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl SharedError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> SharedError {
        SharedError(std::sync::Arc::new(error))
    }
}

impl std::fmt::Debug for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

// Errors are compared by what they say: two nodes' database errors are never the same value.
impl PartialEq for SharedError {
    fn eq(&self, other: &SharedError) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for SharedError {}

/// The state could not be read or holds something the rules cannot use. Not the
/// transaction's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store under the state failed (disk, database). Only this node sees it, so it must
    /// never be mistaken for a verdict on a block.
    #[error("state backend")]
    Backend(#[source] SharedError),
    /// A record's bytes do not decode as the record its key names.
    #[error("corrupt record {key}")]
    Corrupt {
        key: String,
        #[source]
        source: SharedError,
    },
    /// A record every running chain has is absent.
    #[error("missing record {0}")]
    Missing(&'static str),
    /// Records that contradict each other (a service's bookkeeping gone wrong).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}

impl StateError {
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StateError {
        StateError::Backend(SharedError::new(error))
    }

    pub fn corrupt(
        key: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> StateError {
        StateError::Corrupt {
            key: key.into(),
            source: SharedError::new(error),
        }
    }

    /// True when the fault is this node's store rather than the state's content: the same
    /// block may execute fine on every other node.
    pub fn is_backend(&self) -> bool {
        matches!(self, StateError::Backend(_))
    }
}

impl StateRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// Every key of the state. The first byte of the encoding is the variant index, so records of
/// one kind sort together and can be listed by prefix.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    Account(Address),
    Stake(Address),
    Provider(Address),
    /// The sorted list of registered providers.
    ProviderSet,
    /// The validator set of one validator-set era ([`crate::validator_era`]), chosen one era
    /// ahead.
    ValidatorSet(u64),
    Supply,
    OraclePrice,
    /// Verified work units per service and provider in one epoch.
    EpochWork(u64),
    EpochRewards(u64),
    /// Opaque records of a service module: (service, module-defined key).
    Service(ServiceKind, Vec<u8>),
    /// An account that asked to validate.
    ValidatorCandidate(Address),
    /// The sorted list of validator candidates.
    ValidatorCandidates,
    /// What a deregistered provider leaves behind, restored when the address registers again.
    ProviderHistory(Address),
    /// The latest price report of each oracle key ([`OracleReports`]).
    OracleReports,
    /// The eras a validator was slashed for equivocating in ([`EquivocationRecord`]); its
    /// presence bars the address from the validator set.
    Equivocation(Address),
}

/// A validator that equivocated: the eras it was slashed for, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct EquivocationRecord {
    pub eras: Vec<u64>,
}

impl StateKey {
    pub fn to_bytes(&self) -> Vec<u8> {
        depin_types::encode(self)
    }

    /// The one-byte prefix shared by every key of a kind, e.g. all providers.
    pub fn prefix_provider() -> Vec<u8> {
        vec![2]
    }
}

/// A spendable account.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Account {
    pub balance: Amount,
    /// Transactions this account has sent; the next one must carry this value.
    pub nonce: u64,
    /// Data Credits: non-transferable, spent on services.
    #[serde(with = "depin_types::u128_string")]
    pub data_credits: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Unbonding {
    pub amount: Amount,
    pub release_height: u64,
}

/// Bonded and unbonding stake of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Stake {
    pub bonded: Amount,
    pub unbonding: Vec<Unbonding>,
    /// Total ever slashed from this account.
    pub slashed: Amount,
}

impl Stake {
    pub fn unbonding_total(&self) -> Option<Amount> {
        self.unbonding
            .iter()
            .try_fold(Amount::ZERO, |acc, u| acc.checked_add(u.amount))
    }
}

/// A recorded failed proof, visible to the operator.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ProofFailure {
    pub height: u64,
    pub service: ServiceKind,
    pub reason: String,
    pub slashed: Amount,
}

/// Most proof failures kept per provider record (oldest dropped first).
pub const MAX_PROOF_FAILURES_KEPT: usize = 32;

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Provider {
    pub address: Address,
    pub services: Vec<ServiceOffer>,
    pub location: Option<GeoLocation>,
    pub registered_height: u64,
    pub updated_height: u64,
    /// Storj-style beta reputation: alpha grows with good proofs, beta with failures;
    /// the score is alpha / (alpha + beta), in parts per million.
    pub reputation_alpha: u64,
    pub reputation_beta: u64,
    pub failures: Vec<ProofFailure>,
}

/// The reputation and failure record of an address that stopped providing: leaving and
/// coming back must not wash a bad record clean.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ProviderHistory {
    pub reputation_alpha: u64,
    pub reputation_beta: u64,
    pub failures: Vec<ProofFailure>,
}

impl Provider {
    pub fn reputation_ppm(&self) -> u64 {
        let total = self.reputation_alpha.saturating_add(self.reputation_beta);
        if total == 0 {
            return 1_000_000;
        }
        ((u128::from(self.reputation_alpha) * 1_000_000) / u128::from(total)) as u64
    }

    pub fn offers(&self, service: ServiceKind) -> bool {
        self.services.iter().any(|s| s.service == service)
    }
}

/// Token supply accounting. `total == initial + minted - burned` always.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Supply {
    pub total: Amount,
    pub initial: Amount,
    pub minted: Amount,
    pub burned: Amount,
    /// Data Credits in existence (minted by burning tokens, destroyed when spent).
    #[serde(with = "depin_types::u128_string")]
    pub data_credits_outstanding: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct OraclePrice {
    pub price_usd_micro: u64,
    pub updated_height: u64,
}

/// One oracle key's latest report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct OracleReport {
    pub price_usd_micro: u64,
    pub height: u64,
}

/// The latest report of each oracle key that reported, at most one per genesis key.
pub type OracleReports = BTreeMap<Address, OracleReport>;

/// The token price of the next epoch: the median of the reports (the lower one of an even
/// count), moved at most `max_move_bps` of the current price (and at least one micro-USD),
/// never to zero. With no report the price stays.
pub fn next_oracle_price(current: u64, reports: &OracleReports, max_move_bps: u16) -> u64 {
    let mut prices: Vec<u64> = reports.values().map(|r| r.price_usd_micro).collect();
    if prices.is_empty() {
        return current;
    }
    prices.sort_unstable();
    let median = prices[(prices.len() - 1) / 2];
    let step = (u128::from(current) * u128::from(max_move_bps) / 10_000).max(1);
    let step = u64::try_from(step).unwrap_or(u64::MAX);
    median.clamp(
        current.saturating_sub(step).max(1),
        current.saturating_add(step),
    )
}

#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ValidatorSet {
    pub validators: Vec<Address>,
}

/// An account standing for the validator set; the top stakes among candidates validate.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ValidatorCandidate {
    pub address: Address,
    /// Where its consensus endpoint listens (`host:port`). Genesis validators have none on
    /// chain: their addresses come from the node configuration.
    pub consensus_address: Option<String>,
    pub registered_height: u64,
}

/// Verified work units of one epoch, by service then provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct EpochWork {
    pub units: BTreeMap<ServiceKind, BTreeMap<Address, u64>>,
}

/// Why a reward was paid.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    Validator,
    Service(ServiceKind),
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RewardEntry {
    pub account: Address,
    pub kind: RewardKind,
    pub amount: Amount,
}

/// One epoch's share of emission for one bucket (validators or a service).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BucketOutcome {
    pub kind: RewardKind,
    pub allocation: Amount,
    pub minted: Amount,
    /// Not minted: no verified work (or no stake) in the epoch, or rounding dust.
    pub unallocated: Amount,
    #[serde(with = "depin_types::u128_string")]
    pub work_units: u128,
}

/// What an epoch boundary minted and to whom.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EpochRewards {
    pub epoch: u64,
    pub height: u64,
    pub emission: Amount,
    pub minted: Amount,
    pub unallocated: Amount,
    pub buckets: Vec<BucketOutcome>,
    pub rewards: Vec<RewardEntry>,
}

/// Pending writes over a read-only base. Executing a block never touches the base; the chain
/// commits [`Overlay::into_writes`] atomically once the block is final. A transaction runs in
/// its own layer (`begin` / `commit` / `rollback`) so a failing one leaves no trace.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    layer: Option<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Overlay({} writes)", self.writes.len())
    }
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Overlay<'a> {
        Overlay {
            base,
            writes: BTreeMap::new(),
            layer: None,
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(v) = self.layer.as_ref().and_then(|l| l.get(key)) {
            return Ok(v.clone());
        }
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.layer.as_mut() {
            Some(layer) => layer.insert(key, value),
            None => self.writes.insert(key, value),
        };
    }

    pub fn get<T: BorshDeserialize>(&self, key: &StateKey) -> Result<Option<T>, StateError> {
        match self.get_raw(&key.to_bytes())? {
            None => Ok(None),
            Some(bytes) => borsh::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::corrupt(format!("{key:?}"), e)),
        }
    }

    pub fn put<T: BorshSerialize>(&mut self, key: &StateKey, value: &T) {
        self.put_raw(key.to_bytes(), Some(depin_types::encode(value)));
    }

    pub fn delete(&mut self, key: &StateKey) {
        self.put_raw(key.to_bytes(), None);
    }

    /// Starts a transaction layer; writes go there until `commit` or `rollback`.
    pub(crate) fn begin(&mut self) {
        self.layer = Some(BTreeMap::new());
    }

    pub(crate) fn commit(&mut self) {
        if let Some(layer) = self.layer.take() {
            self.writes.extend(layer);
        }
    }

    pub(crate) fn rollback(&mut self) {
        self.layer = None;
    }

    pub fn writes(&self) -> &BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        &self.writes
    }

    pub fn into_writes(mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.commit();
        self.writes
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.get_raw(key)
    }
}
