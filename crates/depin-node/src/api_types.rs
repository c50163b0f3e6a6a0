//! The JSON bodies of the HTTP API, shared by the server and the CLI client so the two cannot
//! drift apart. Amounts are strings of base units; addresses are `depin1...`; hashes are hex.

use depin_protocol::block::{BlockHeader, Finality};
use depin_protocol::state::{EpochRewards, ProofFailure, RewardEntry, Stake, Unbonding};
use depin_protocol::tx::{Action, GeoLocation, ServiceOffer};
use depin_types::{Address, Amount, Hash};
use serde::{Deserialize, Serialize};

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub symbol: String,
    pub decimals: u8,
}

/// GET /v1/status
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    pub chain_id: String,
    pub role: String,
    pub node_address: Address,
    pub height: u64,
    pub head_hash: Hash,
    pub state_root: Hash,
    pub timestamp_ms: u64,
    /// The reward epoch of the head block (blocks `1..=epoch_blocks` are epoch 0).
    pub epoch: u64,
    pub epoch_blocks: u64,
    /// The validator-set era of the next block (heights `era * epoch_blocks ..`), whose set
    /// is `validators`.
    pub era: u64,
    pub block_interval_ms: u64,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    pub validators: Vec<Address>,
    pub token: TokenInfo,
    /// For followers: the node they follow.
    pub upstream: Option<String>,
    /// Where this node listens on the libp2p service network (bootstrap addresses).
    #[serde(default)]
    pub net_addrs: Vec<String>,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnbondingView {
    pub amount: Amount,
    pub release_height: u64,
}

impl From<&Unbonding> for UnbondingView {
    fn from(u: &Unbonding) -> Self {
        UnbondingView {
            amount: u.amount,
            release_height: u.release_height,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StakeView {
    pub bonded: Amount,
    pub unbonding: Vec<UnbondingView>,
    pub slashed: Amount,
}

impl From<&Stake> for StakeView {
    fn from(s: &Stake) -> Self {
        StakeView {
            bonded: s.bonded,
            unbonding: s.unbonding.iter().map(UnbondingView::from).collect(),
            slashed: s.slashed,
        }
    }
}

/// GET /v1/accounts/{address}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountResponse {
    pub address: Address,
    pub balance: Amount,
    pub nonce: u64,
    /// Data Credits as a string (u128).
    pub data_credits: String,
    pub stake: StakeView,
    pub is_provider: bool,
    pub is_validator: bool,
}

/// One transaction inside a block or a lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxView {
    pub hash: Hash,
    pub sender: Address,
    pub nonce: u64,
    pub fee: Amount,
    pub kind: String,
    /// The action as JSON (tagged by `type`).
    pub action: serde_json::Value,
}

impl TxView {
    pub fn from_tx(tx: &depin_protocol::SignedTransaction) -> TxView {
        TxView {
            hash: tx.hash(),
            sender: tx.tx.sender,
            nonce: tx.tx.nonce,
            fee: tx.tx.fee,
            kind: tx.tx.action.kind().to_string(),
            action: action_json(&tx.tx.action),
        }
    }
}

pub fn action_json(action: &Action) -> serde_json::Value {
    serde_json::to_value(action).unwrap_or(serde_json::Value::Null)
}

/// GET /v1/blocks/{height or hash}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockResponse {
    pub hash: Hash,
    pub header: serde_json::Value,
    pub txs: Vec<TxView>,
    pub finality: serde_json::Value,
    /// What the end of the block did outside any transaction (a failed service hook), as
    /// tagged JSON events.
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
}

impl BlockResponse {
    pub fn new(
        hash: Hash,
        header: &BlockHeader,
        txs: Vec<TxView>,
        finality: &Finality,
        events: Vec<serde_json::Value>,
    ) -> Self {
        BlockResponse {
            hash,
            header: serde_json::to_value(header).unwrap_or_default(),
            txs,
            finality: serde_json::to_value(finality).unwrap_or_default(),
            events,
        }
    }
}

/// GET /v1/blocks/{height}/raw: canonical bytes for followers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawBlockResponse {
    pub height: u64,
    /// Hex of the borsh-encoded block.
    pub block: String,
    /// Hex of the borsh-encoded finality certificate.
    pub finality: String,
}

/// POST /v1/txs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitTxRequest {
    /// Hex of the borsh-encoded signed transaction.
    pub tx: String,
}

/// Where a transaction stands on the node that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// In the mempool, or handed on towards the validators.
    Pending,
    /// In a finalized block.
    Committed,
    /// Left out of every block; `error` says why.
    Dropped,
}

impl TxStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Committed => "committed",
            TxStatus::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for TxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitTxResponse {
    pub hash: Hash,
    pub status: TxStatus,
}

/// GET /v1/txs/{hash}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxStatusResponse {
    pub hash: Hash,
    pub status: TxStatus,
    pub height: Option<u64>,
    pub index: Option<u32>,
    pub tx: Option<TxView>,
    /// Tagged JSON events (`Protocol::event_json`): a service event carries its bytes in
    /// `data` and its decoded form in `event`.
    pub events: Option<Vec<serde_json::Value>>,
    pub error: Option<ErrorDetail>,
}

/// A provider as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderView {
    pub address: Address,
    pub services: Vec<ServiceOfferView>,
    pub location: Option<LocationView>,
    pub registered_height: u64,
    pub updated_height: u64,
    pub reputation_ppm: u64,
    pub bonded: Amount,
    pub failures: Vec<ProofFailureView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceOfferView {
    pub service: String,
    pub capacity: u64,
    pub price_dc_per_unit: u64,
}

impl From<&ServiceOffer> for ServiceOfferView {
    fn from(o: &ServiceOffer) -> Self {
        ServiceOfferView {
            service: o.service.to_string(),
            capacity: o.capacity,
            price_dc_per_unit: o.price_dc_per_unit,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocationView {
    pub lat: f64,
    pub lon: f64,
}

impl From<&GeoLocation> for LocationView {
    fn from(g: &GeoLocation) -> Self {
        LocationView {
            lat: f64::from(g.lat_e7) / 1e7,
            lon: f64::from(g.lon_e7) / 1e7,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofFailureView {
    pub height: u64,
    pub service: String,
    pub reason: String,
    pub slashed: Amount,
}

impl From<&ProofFailure> for ProofFailureView {
    fn from(p: &ProofFailure) -> Self {
        ProofFailureView {
            height: p.height,
            service: p.service.to_string(),
            reason: p.reason.clone(),
            slashed: p.slashed,
        }
    }
}

/// GET /v1/providers
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvidersResponse {
    pub providers: Vec<ProviderView>,
    pub total: usize,
}

/// GET /v1/rewards/{epoch}: the epoch record as the protocol wrote it.
pub type EpochRewardsResponse = EpochRewards;

/// GET /v1/accounts/{address}/rewards
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRewardsResponse {
    pub address: Address,
    pub epochs: Vec<AccountEpochRewards>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountEpochRewards {
    pub epoch: u64,
    pub total: Amount,
    pub entries: Vec<RewardEntryView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewardEntryView {
    pub kind: String,
    pub amount: Amount,
}

impl From<&RewardEntry> for RewardEntryView {
    fn from(e: &RewardEntry) -> Self {
        let kind = match e.kind {
            depin_protocol::state::RewardKind::Validator => "validator".to_string(),
            depin_protocol::state::RewardKind::Service(s) => s.to_string(),
        };
        RewardEntryView {
            kind,
            amount: e.amount,
        }
    }
}

/// GET /v1/validators: the sets of the validator-set era of the next block and of the one
/// after (chosen one era ahead; empty while not chosen), and every candidate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidatorsResponse {
    /// The validator-set era of the next block: heights `era * era_blocks ..` (not a reward
    /// epoch, which starts one block later).
    pub era: u64,
    pub era_blocks: u64,
    pub current: Vec<Address>,
    pub next: Vec<Address>,
    pub candidates: Vec<ValidatorCandidateView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidatorCandidateView {
    pub address: Address,
    pub consensus_address: Option<String>,
    pub bonded: Amount,
    pub registered_height: u64,
}

/// GET /v1/supply
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupplyResponse {
    pub total: Amount,
    pub initial: Amount,
    pub minted: Amount,
    pub burned: Amount,
    pub data_credits_outstanding: String,
    pub token_price_usd_micro: u64,
    pub price_updated_height: u64,
    /// What the oracle reports make the price at the next epoch boundary.
    pub next_token_price_usd_micro: u64,
    /// The height whose end applies it.
    pub next_price_height: u64,
    pub oracle_reports: usize,
    pub dc_price_usd_micro: u64,
}

/// GET /v1/storage/deals/{id}: a deal with every piece and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DealResponse {
    pub deal: depin_protocol::storage::Deal,
    pub segments: Vec<SegmentView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentView {
    pub index: u32,
    pub segment_bytes: u64,
    pub piece_bytes: u64,
    pub needs_repair: bool,
    pub healthy_pieces: u16,
    pub pieces: Vec<PieceView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PieceView {
    pub index: u16,
    pub root: Hash,
    pub provider: Option<Address>,
    pub state: depin_protocol::storage::PieceState,
    pub checked_epoch: Option<u64>,
    pub misses: u8,
}

/// GET /v1/storage/deals: open (pending or active) deals, optionally of one owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DealsResponse {
    pub deals: Vec<depin_protocol::storage::Deal>,
}

/// GET /v1/storage/providers/{address}: what the chain assigned to a storage provider, and
/// when this node is that provider, its store's exact space figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageProviderResponse {
    pub address: Address,
    pub committed_bytes: u64,
    pub pieces: Vec<depin_protocol::storage::PieceRef>,
    pub store_used_bytes: Option<u64>,
    pub store_capacity_bytes: Option<u64>,
}
