//! Owns: the ledger on disk (redb), the state commitment, the mempool, consensus, crash recovery.
//! Must not: hold protocol rules, serve HTTP, or touch a service's runtime.
//!
//! depin-chain: the ledger on disk. It executes `depin-protocol` on redb-backed state, commits
//! to the whole state with a Jellyfish Merkle tree (incremental: only touched paths are
//! rehashed), keeps blocks, transactions and receipts, holds the bounded mempool, and exposes
//! the narrow consensus seam ([`ConsensusApp`]: propose / verify / finalize) that a consensus
//! engine drives.
//!
//! It must not contain protocol rules (those live in depin-protocol) nor networking or HTTP
//! (depin-node). Every finalized block is applied in exactly one redb write transaction, so a
//! crash at any moment leaves the database at the previous or the next block, never between.

mod app;
pub mod consensus;
pub mod mempool;
pub mod store;

pub use app::{ChainApp, ConsensusApp, SoloProducer, SubmitError};
pub use mempool::{Dropped, Mempool, MempoolError, MempoolLimits};

use borsh::{BorshDeserialize, BorshSerialize};
use depin_protocol::state::{
    Account, EpochRewards, OraclePrice, Provider, RewardEntry, Stake, Supply, ValidatorCandidate,
    ValidatorSet,
};
use depin_protocol::{
    Block, BlockContext, BlockError, BlockHeader, Event, Finality, Overlay, Protocol, Receipt,
    ServiceHook, SignedTransaction, StateKey, TxError,
};
use depin_types::{Address, Hash, ServiceKind};
use jmt::JellyfishMerkleTree;
use redb::{Database, ReadableDatabase};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use store::{
    BLOCK_EVENTS, BLOCK_INDEX, BLOCKS, Blake3Hasher, FINALITY, JMT_NODES, META, NodeSnapshot,
    RECEIPTS, REWARDS_INDEX, STATE, StateSnapshot, TX_INDEX,
};

/// Everything that can go wrong in the chain. Database, disk and commitment faults are the
/// node's own ([`ChainError::is_node_fault`]); the rest say what was wrong with a block.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("database: {0}")]
    Database(#[from] redb::DatabaseError),
    #[error("database transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("database table: {0}")]
    Table(#[from] redb::TableError),
    #[error("database storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("database commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    /// A record the chain wrote itself does not decode.
    #[error("stored {what} does not decode: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("state: {0}")]
    State(#[from] depin_protocol::StateError),
    #[error("state commitment: {0}")]
    Commitment(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the database belongs to chain {stored:?}, not {configured:?}")]
    GenesisMismatch { stored: String, configured: String },
    #[error("genesis state could not be built: {0}")]
    Genesis(#[source] TxError),
    #[error("block {height} does not extend the head {head_height} ({head_hash})")]
    NotExtendingHead {
        height: u64,
        head_height: u64,
        head_hash: Hash,
    },
    #[error("a different block is already final at height {height}")]
    ConflictingBlock { height: u64 },
    #[error("unknown parent block {0}")]
    UnknownParent(Hash),
    #[error("invalid block: {0}")]
    Rejected(#[from] BlockRejected),
    #[error("bad finality certificate for block {0}")]
    BadFinality(Hash),
    #[error("block execution: {0}")]
    Block(#[from] BlockError),
}

impl ChainError {
    /// True when this node's database, disk or state backend failed: the block itself may
    /// be fine, so this is no verdict on it.
    pub fn is_node_fault(&self) -> bool {
        match self {
            ChainError::Database(_)
            | ChainError::Transaction(_)
            | ChainError::Table(_)
            | ChainError::Storage(_)
            | ChainError::Commit(_)
            | ChainError::Io(_)
            | ChainError::Corrupt { .. }
            | ChainError::Commitment(_) => true,
            ChainError::State(e) => e.is_backend(),
            ChainError::Block(BlockError::Store(e)) => e.is_backend(),
            _ => false,
        }
    }
}

/// Why a block proposed by someone else is not acceptable, before or after executing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockRejected {
    #[error("height {height} does not follow its parent at {parent_height}")]
    HeightGap { height: u64, parent_height: u64 },
    #[error("chain id {got:?} is not this network's")]
    WrongChain { got: String },
    #[error("timestamp {timestamp_ms} is earlier than its parent's {parent_timestamp_ms}")]
    TimestampBeforeParent {
        timestamp_ms: u64,
        parent_timestamp_ms: u64,
    },
    #[error("transaction root or count does not match the transactions")]
    TxRootMismatch,
    #[error("transaction {index} has a bad signature")]
    BadSignature { index: usize },
    #[error("state root mismatch: block says {claimed}, execution gives {computed}")]
    StateRootMismatch { claimed: Hash, computed: Hash },
}

/// The last finalized block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, serde::Serialize)]
pub struct Head {
    pub height: u64,
    pub hash: Hash,
    pub state_root: Hash,
    pub timestamp_ms: u64,
}

/// Where a transaction ended up.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
struct TxLocation {
    height: u64,
    index: u32,
}

/// A block executed against its parent state, ready to be committed if it is finalized.
#[derive(Debug)]
pub struct ExecutedBlock {
    pub block: Block,
    pub hash: Hash,
    state_writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    node_batch: jmt::storage::NodeBatch,
    pub receipts: Vec<Receipt>,
    pub epoch_rewards: Option<EpochRewards>,
    /// What the end of the block did outside any transaction (failed service hooks).
    pub events: Vec<Event>,
}

/// A proposed block and the transactions left out of it, with why.
pub type Proposal = (Arc<ExecutedBlock>, Vec<(Hash, TxError)>);

/// A block's canonical bytes and its finality certificate's bytes.
pub type RawBlockBytes = (Vec<u8>, Vec<u8>);

/// Longest run of executed, not yet final blocks a proposal may build on.
const MAX_PENDING_DEPTH: usize = 256;

/// The parent a block builds on: its height and time, and the pending blocks (nearest first)
/// whose writes sit between the committed state and that parent.
struct ParentView {
    height: u64,
    timestamp_ms: u64,
    layers: Vec<Arc<ExecutedBlock>>,
}

/// Committed state seen through the writes of pending ancestors.
pub struct LayeredState {
    base: StateSnapshot,
    layers: Vec<Arc<ExecutedBlock>>,
}

impl depin_protocol::StateRead for LayeredState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, depin_protocol::StateError> {
        for layer in &self.layers {
            if let Some(value) = layer.state_writes.get(key) {
                return Ok(value.clone());
            }
        }
        self.base.get(key)
    }
}

/// Committed JMT nodes plus those of pending ancestors.
struct LayeredNodes {
    base: NodeSnapshot,
    layers: Vec<Arc<ExecutedBlock>>,
}

impl jmt::storage::TreeReader for LayeredNodes {
    fn get_node_option(
        &self,
        node_key: &jmt::storage::NodeKey,
    ) -> anyhow::Result<Option<jmt::storage::Node>> {
        for layer in &self.layers {
            if let Some(node) = layer.node_batch.get_node(node_key) {
                return Ok(Some(node.clone()));
            }
        }
        self.base.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: jmt::Version,
        key_hash: jmt::KeyHash,
    ) -> anyhow::Result<Option<jmt::OwnedValue>> {
        self.base.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(
        &self,
    ) -> anyhow::Result<Option<(jmt::storage::NodeKey, jmt::storage::LeafNode)>> {
        self.base.get_rightmost_leaf()
    }
}

/// Reads next nonces as of some parent block.
pub struct NonceReader {
    state: LayeredState,
}

impl NonceReader {
    pub fn nonce(&self, address: &Address) -> u64 {
        let overlay = Overlay::new(&self.state);
        overlay
            .get::<Account>(&StateKey::Account(*address))
            .ok()
            .flatten()
            .map(|a| a.nonce)
            .unwrap_or(0)
    }
}

/// Counters the node exports as metrics.
#[derive(Debug, Default)]
pub struct ChainMetrics {
    pub blocks_committed: AtomicU64,
    pub txs_committed: AtomicU64,
    pub last_commit_micros: AtomicU64,
    pub last_execute_micros: AtomicU64,
    /// Proposals this validator refused to vote for, by reason.
    pub proposals_rejected_timestamp: AtomicU64,
    pub proposals_rejected_proposer: AtomicU64,
    pub proposals_rejected_execution: AtomicU64,
    /// Consensus peers blocked by the engine for invalid messages (bad signatures, malformed
    /// or conflicting votes and certificates).
    pub consensus_peers_blocked: AtomicU64,
    /// Service hooks that failed in committed blocks, by service and hook.
    pub service_hook_failures: Mutex<BTreeMap<(ServiceKind, ServiceHook), u64>>,
}

impl ChainMetrics {
    fn count_block_events(&self, events: &[Event]) {
        let mut failures = self
            .service_hook_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for event in events {
            if let Event::ServiceHookFailed { service, hook, .. } = event {
                *failures.entry((*service, *hook)).or_insert(0) += 1;
            }
        }
    }
}

/// The ledger: database, protocol, head, and blocks executed but not yet final.
pub struct Chain {
    db: Database,
    protocol: Protocol,
    head: RwLock<Head>,
    executed: Mutex<HashMap<Hash, Arc<ExecutedBlock>>>,
    // Serialises finalize so that two callers cannot both apply the next height.
    commit_lock: Mutex<()>,
    verified: Mutex<VerifiedSignatures>,
    pub metrics: ChainMetrics,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({:?})", self.head())
    }
}

/// The verifying threads used for signature batches.
fn verify_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Transactions whose signature this node has already checked (at mempool admission or in an
/// earlier proposal), keyed by the transaction id, which covers the signature bytes. Block
/// execution skips their second check: with gossip every validator has admitted nearly every
/// transaction before it sees it in a block.
#[derive(Default)]
struct VerifiedSignatures {
    set: std::collections::HashSet<Hash>,
    order: std::collections::VecDeque<Hash>,
}

/// Transactions remembered as verified; a few blocks' worth at the largest block size.
const VERIFIED_SIGNATURES_KEPT: usize = 200_000;

impl VerifiedSignatures {
    fn insert(&mut self, hash: Hash) {
        if self.set.insert(hash) {
            self.order.push_back(hash);
        }
        while self.order.len() > VERIFIED_SIGNATURES_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Verifies all signatures, split across threads in batches. Returns the first bad index.
pub fn verify_signatures_parallel(txs: &[SignedTransaction]) -> Result<(), usize> {
    let threads = verify_threads();
    if txs.len() < 64 || threads == 1 {
        return Protocol::verify_signatures(txs);
    }
    let chunk = txs.len().div_ceil(threads);
    let results: Vec<Result<(), usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = txs
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                s.spawn(move || Protocol::verify_signatures(part).map_err(|j| i * chunk + j))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(0)))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, usize>>()?;
    Ok(())
}

impl Chain {
    /// Opens (or creates) the chain database in `dir`. A new database gets the genesis state
    /// as block 0; an existing one must belong to the same genesis.
    pub fn open(dir: &Path, protocol: Protocol) -> Result<Chain, ChainError> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("chain.redb"))?;
        let genesis_toml = protocol.genesis().to_toml();
        let existing = {
            let read = db.begin_read()?;
            match read.open_table(META) {
                Ok(t) => t.get("head")?.map(|v| v.value().to_vec()).map(|head| {
                    let stored = t
                        .get("genesis")
                        .ok()
                        .flatten()
                        .map(|g| g.value().to_vec())
                        .unwrap_or_default();
                    (head, stored)
                }),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let head = match existing {
            Some((head, stored_genesis)) => {
                if stored_genesis != genesis_toml.as_bytes() {
                    let stored = depin_protocol::Genesis::from_toml(&String::from_utf8_lossy(
                        &stored_genesis,
                    ))
                    .map(|g| g.chain_id)
                    .unwrap_or_else(|_| "<unreadable>".into());
                    return Err(ChainError::GenesisMismatch {
                        stored,
                        configured: protocol.genesis().chain_id.clone(),
                    });
                }
                borsh::from_slice(&head).map_err(|source| ChainError::Corrupt {
                    what: "head",
                    source,
                })?
            }
            None => Self::write_genesis(&db, &protocol, &genesis_toml)?,
        };
        Ok(Chain {
            db,
            protocol,
            head: RwLock::new(head),
            executed: Mutex::new(HashMap::new()),
            commit_lock: Mutex::new(()),
            verified: Mutex::new(VerifiedSignatures::default()),
            metrics: ChainMetrics::default(),
        })
    }

    fn write_genesis(db: &Database, protocol: &Protocol, toml: &str) -> Result<Head, ChainError> {
        let empty: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut overlay = Overlay::new(&empty);
        protocol
            .init_genesis(&mut overlay)
            .map_err(ChainError::Genesis)?;
        let writes = overlay.into_writes();
        let write = db.begin_write()?;
        {
            // Tables must exist before a read transaction can open them.
            write.open_table(STATE)?;
            write.open_table(JMT_NODES)?;
            write.open_table(BLOCKS)?;
            write.open_table(FINALITY)?;
            write.open_table(BLOCK_INDEX)?;
            write.open_table(TX_INDEX)?;
            write.open_table(RECEIPTS)?;
            write.open_table(REWARDS_INDEX)?;
        }
        write.commit()?;
        let (root, batch) = {
            let read = db.begin_read()?;
            let nodes = NodeSnapshot {
                table: read.open_table(JMT_NODES)?,
            };
            compute_root(&nodes, &writes, 0)?
        };
        let g = protocol.genesis();
        let header = BlockHeader {
            chain_id: g.chain_id.clone(),
            height: 0,
            parent: Hash::ZERO,
            timestamp_ms: g.genesis_time_ms,
            proposer: Address::default(),
            tx_root: Block::compute_tx_root(&[]),
            tx_count: 0,
            state_root: root,
        };
        let block = Block {
            header,
            txs: Vec::new(),
        };
        let executed = ExecutedBlock {
            hash: block.hash(),
            block,
            state_writes: writes,
            node_batch: batch,
            receipts: Vec::new(),
            epoch_rewards: None,
            events: Vec::new(),
        };
        let head = commit_block(db, &executed, &Finality::Genesis, Some(toml))?;
        Ok(head)
    }

    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    pub fn head(&self) -> Head {
        match self.head.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn state_snapshot(&self) -> Result<StateSnapshot, ChainError> {
        let read = self.db.begin_read()?;
        Ok(StateSnapshot {
            table: read.open_table(STATE)?,
        })
    }

    /// Executes `txs` on the head state and returns a block with its state root. Transactions
    /// that fail are left out and returned with their error.
    pub fn propose(
        &self,
        parent: Hash,
        timestamp_ms: u64,
        proposer: Address,
        txs: Vec<SignedTransaction>,
    ) -> Result<Proposal, ChainError> {
        let started = Instant::now();
        let view = self.parent_view(parent)?;
        let mut rejected = Vec::new();
        let mut candidates = txs;
        if self.verify_unseen_signatures(&candidates).is_err() {
            // Rare (the mempool checks signatures); sort the good from the bad one by one.
            let mut good = Vec::with_capacity(candidates.len());
            for tx in candidates {
                match tx.verify_signature() {
                    Ok(()) => good.push(tx),
                    Err(_) => rejected.push((tx.hash(), TxError::BadSignature)),
                }
            }
            candidates = good;
        }
        let state = self.layered_state(&view)?;
        let mut overlay = Overlay::new(&state);
        let ctx = BlockContext {
            height: view.height + 1,
            parent,
            timestamp_ms: timestamp_ms.max(view.timestamp_ms),
            proposer,
        };
        let mut included = Vec::with_capacity(candidates.len());
        let mut receipts = Vec::with_capacity(candidates.len());
        for tx in candidates {
            match self
                .protocol
                .apply_tx(&mut overlay, &ctx, &tx, included.len() as u32)
            {
                Ok(r) => {
                    receipts.push(r);
                    included.push(tx);
                }
                Err(TxError::Store(e)) => return Err(e.into()),
                Err(e) => rejected.push((tx.hash(), e)),
            }
        }
        let end = self
            .protocol
            .end_block(&mut overlay, &ctx)
            .map_err(|e| match e {
                TxError::Store(s) => ChainError::State(s),
                other => ChainError::Block(BlockError::EndBlock(other)),
            })?;
        let writes = overlay.into_writes();
        let (state_root, node_batch) = self.root_after(&writes, ctx.height, &view)?;
        let header = BlockHeader {
            chain_id: self.protocol.genesis().chain_id.clone(),
            height: ctx.height,
            parent,
            timestamp_ms: ctx.timestamp_ms,
            proposer,
            tx_root: Block::compute_tx_root(&included),
            tx_count: included.len() as u32,
            state_root,
        };
        let block = Block {
            header,
            txs: included,
        };
        let executed = Arc::new(ExecutedBlock {
            hash: block.hash(),
            block,
            state_writes: writes,
            node_batch,
            receipts,
            epoch_rewards: end.epoch_rewards,
            events: end.events,
        });
        self.remember_executed(&executed);
        self.metrics
            .last_execute_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok((executed, rejected))
    }

    fn root_after(
        &self,
        writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        version: u64,
        view: &ParentView,
    ) -> Result<(Hash, jmt::storage::NodeBatch), ChainError> {
        let read = self.db.begin_read()?;
        let nodes = LayeredNodes {
            base: NodeSnapshot {
                table: read.open_table(JMT_NODES)?,
            },
            layers: view.layers.clone(),
        };
        compute_root(&nodes, writes, version)
    }

    /// What a block on `parent` builds on: the committed head, plus the executed but not yet
    /// final blocks between the head and `parent` (consensus may build on a notarized block
    /// before it is finalized).
    fn parent_view(&self, parent: Hash) -> Result<ParentView, ChainError> {
        let head = self.head();
        let mut layers = Vec::new();
        let mut cursor = parent;
        let executed = self.executed.lock().unwrap_or_else(|p| p.into_inner());
        while cursor != head.hash {
            let Some(block) = executed.get(&cursor) else {
                return Err(ChainError::UnknownParent(parent));
            };
            if block.block.header.height <= head.height || layers.len() > MAX_PENDING_DEPTH {
                // A fork below the head, or a chain of pending blocks too long to be real.
                return Err(ChainError::UnknownParent(parent));
            }
            cursor = block.block.header.parent;
            layers.push(block.clone());
        }
        Ok(match layers.first() {
            None => ParentView {
                height: head.height,
                timestamp_ms: head.timestamp_ms,
                layers,
            },
            Some(nearest) => ParentView {
                height: nearest.block.header.height,
                timestamp_ms: nearest.block.header.timestamp_ms,
                layers,
            },
        })
    }

    fn layered_state(&self, view: &ParentView) -> Result<LayeredState, ChainError> {
        Ok(LayeredState {
            base: self.state_snapshot()?,
            layers: view.layers.clone(),
        })
    }

    /// Next nonces of accounts in the state a block on `parent` would see.
    pub fn nonce_reader(&self, parent: Hash) -> Result<NonceReader, ChainError> {
        let view = self.parent_view(parent)?;
        Ok(NonceReader {
            state: self.layered_state(&view)?,
        })
    }

    fn remember_executed(&self, executed: &Arc<ExecutedBlock>) {
        if let Ok(mut map) = self.executed.lock() {
            // Only blocks above the head can still be finalized; keep the map small.
            let head_height = self.head().height;
            map.retain(|_, b| b.block.header.height > head_height);
            map.insert(executed.hash, executed.clone());
        }
    }

    /// Re-executes a block proposed by someone else on the head state and checks every
    /// header field, the signatures and the state root.
    pub fn verify(&self, block: &Block) -> Result<Arc<ExecutedBlock>, ChainError> {
        let hash = block.hash();
        if let Some(done) = self
            .executed
            .lock()
            .ok()
            .and_then(|m| m.get(&hash).cloned())
        {
            return Ok(done);
        }
        let started = Instant::now();
        let h = &block.header;
        let view = self.parent_view(h.parent)?;
        if h.height != view.height + 1 {
            return Err(BlockRejected::HeightGap {
                height: h.height,
                parent_height: view.height,
            }
            .into());
        }
        if h.chain_id != self.protocol.genesis().chain_id {
            return Err(BlockRejected::WrongChain {
                got: h.chain_id.chars().take(64).collect(),
            }
            .into());
        }
        if h.timestamp_ms < view.timestamp_ms {
            return Err(BlockRejected::TimestampBeforeParent {
                timestamp_ms: h.timestamp_ms,
                parent_timestamp_ms: view.timestamp_ms,
            }
            .into());
        }
        if h.tx_count as usize != block.txs.len() || h.tx_root != Block::compute_tx_root(&block.txs)
        {
            return Err(BlockRejected::TxRootMismatch.into());
        }
        if let Err(index) = self.verify_unseen_signatures(&block.txs) {
            return Err(BlockRejected::BadSignature { index }.into());
        }
        let state = self.layered_state(&view)?;
        let mut overlay = Overlay::new(&state);
        let ctx = BlockContext {
            height: h.height,
            parent: h.parent,
            timestamp_ms: h.timestamp_ms,
            proposer: h.proposer,
        };
        let outcome = self
            .protocol
            .execute_block(&mut overlay, &ctx, &block.txs)?;
        let writes = overlay.into_writes();
        let (computed, node_batch) = self.root_after(&writes, h.height, &view)?;
        if computed != h.state_root {
            return Err(BlockRejected::StateRootMismatch {
                claimed: h.state_root,
                computed,
            }
            .into());
        }
        let executed = Arc::new(ExecutedBlock {
            block: block.clone(),
            hash,
            state_writes: writes,
            node_batch,
            receipts: outcome.receipts,
            epoch_rewards: outcome.epoch_rewards,
            events: outcome.events,
        });
        self.remember_executed(&executed);
        self.metrics
            .last_execute_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(executed)
    }

    /// Commits a finalized block. Idempotent: finalizing the block already at its height
    /// again is a no-op returning `false` (consensus engines redeliver after a restart).
    pub fn finalize(&self, block: &Block, finality: &Finality) -> Result<bool, ChainError> {
        self.finalize_inner(block, finality, true)
    }

    /// Commits a block whose finality the consensus engine has already verified (marshal only
    /// delivers blocks with a verified quorum finalization). Idempotent like [`Self::finalize`].
    pub fn finalize_certified(
        &self,
        block: &Block,
        finality: &Finality,
    ) -> Result<bool, ChainError> {
        self.finalize_inner(block, finality, false)
    }

    /// Checks a finality certificate for the block `block_hash` at `height` against the
    /// validator set of that height's consensus epoch (known one epoch ahead, so the head's
    /// state has it for any block the head can be extended by).
    /// `Descendant` is never valid alone: check the descendant's certificate instead.
    pub fn finality_is_valid(
        &self,
        block_hash: &Hash,
        height: u64,
        finality: &Finality,
    ) -> Result<bool, ChainError> {
        let epoch = self.validator_era(height);
        let validators = self.validator_set(epoch)?;
        Ok(match finality {
            Finality::Quorum { certificate } => consensus::certificate::verify_finalization(
                certificate,
                block_hash,
                epoch,
                &validators,
                self.protocol.genesis().chain_id.as_bytes(),
            ),
            other => other.verify(block_hash, &validators),
        })
    }

    /// Timestamp of the head or of an executed, not yet final block.
    pub fn block_timestamp_ms(&self, hash: &Hash) -> Option<u64> {
        let head = self.head();
        if *hash == head.hash {
            return Some(head.timestamp_ms);
        }
        self.executed
            .lock()
            .ok()
            .and_then(|m| m.get(hash).map(|b| b.block.header.timestamp_ms))
    }

    /// True when a block on `parent` can be executed here: it is the head or an executed
    /// block that is not final yet.
    pub fn knows_parent(&self, parent: &Hash) -> bool {
        *parent == self.head().hash
            || self
                .executed
                .lock()
                .map(|m| m.contains_key(parent))
                .unwrap_or(false)
    }

    fn finalize_inner(
        &self,
        block: &Block,
        finality: &Finality,
        check_certificate: bool,
    ) -> Result<bool, ChainError> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let hash = block.hash();
        let head = self.head();
        let height = block.header.height;
        if height <= head.height {
            return match self.block_hash_at(height)? {
                Some(h) if h == hash => Ok(false),
                _ => Err(ChainError::ConflictingBlock { height }),
            };
        }
        if block.header.parent != head.hash || height != head.height + 1 {
            return Err(ChainError::NotExtendingHead {
                height,
                head_height: head.height,
                head_hash: head.hash,
            });
        }
        if check_certificate && !self.finality_is_valid(&hash, height, finality)? {
            return Err(ChainError::BadFinality(hash));
        }
        let executed = self.verify(block)?;
        let started = Instant::now();
        let new_head = commit_block(&self.db, &executed, finality, None)?;
        self.metrics
            .last_commit_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.metrics
            .blocks_committed
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .txs_committed
            .fetch_add(block.txs.len() as u64, Ordering::Relaxed);
        self.metrics.count_block_events(&executed.events);
        match self.head.write() {
            Ok(mut h) => *h = new_head,
            Err(p) => *p.into_inner() = new_head,
        }
        if let Ok(mut map) = self.executed.lock() {
            map.retain(|_, b| b.block.header.height > height);
        }
        Ok(true)
    }

    // ---- queries -------------------------------------------------------------------------

    fn get_state<T: BorshDeserialize>(&self, key: &StateKey) -> Result<Option<T>, ChainError> {
        let snapshot = self.state_snapshot()?;
        let overlay = Overlay::new(&snapshot);
        Ok(overlay.get(key)?)
    }

    /// A record of a service module (e.g. a storage deal), decoded.
    pub fn service_record<T: BorshDeserialize>(
        &self,
        service: depin_types::ServiceKind,
        key: &[u8],
    ) -> Result<Option<T>, ChainError> {
        self.get_state(&StateKey::Service(service, key.to_vec()))
    }

    pub fn account(&self, address: &Address) -> Result<Option<Account>, ChainError> {
        self.get_state(&StateKey::Account(*address))
    }

    pub fn stake(&self, address: &Address) -> Result<Option<Stake>, ChainError> {
        self.get_state(&StateKey::Stake(*address))
    }

    pub fn provider(&self, address: &Address) -> Result<Option<Provider>, ChainError> {
        self.get_state(&StateKey::Provider(*address))
    }

    /// Registered providers in address order, starting after `after`, at most `limit`.
    pub fn providers(
        &self,
        after: Option<Address>,
        limit: usize,
    ) -> Result<Vec<Provider>, ChainError> {
        let set: Vec<Address> = self.get_state(&StateKey::ProviderSet)?.unwrap_or_default();
        let mut out = Vec::new();
        for a in set.iter().filter(|a| after.is_none_or(|x| **a > x)) {
            if out.len() >= limit {
                break;
            }
            if let Some(p) = self.provider(a)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub fn provider_count(&self) -> Result<usize, ChainError> {
        let set: Vec<Address> = self.get_state(&StateKey::ProviderSet)?.unwrap_or_default();
        Ok(set.len())
    }

    pub fn supply(&self) -> Result<Supply, ChainError> {
        Ok(self.get_state(&StateKey::Supply)?.unwrap_or_default())
    }

    pub fn oracle_price(&self) -> Result<Option<OraclePrice>, ChainError> {
        self.get_state(&StateKey::OraclePrice)
    }

    /// The validators that finalize the next block (the set of its era).
    pub fn validators(&self) -> Result<Vec<Address>, ChainError> {
        self.validator_set(self.validator_era(self.head().height + 1))
    }

    /// The validator-set era of a height (what commonware's engine calls its epoch).
    pub fn validator_era(&self, height: u64) -> u64 {
        depin_protocol::validator_era(height, self.protocol.genesis().chain.epoch_blocks)
    }

    /// The validator set of consensus `epoch`; empty when not chosen yet (more than one epoch
    /// past the head).
    pub fn validator_set(&self, epoch: u64) -> Result<Vec<Address>, ChainError> {
        let set: ValidatorSet = self
            .get_state(&StateKey::ValidatorSet(epoch))?
            .unwrap_or_default();
        Ok(set.validators)
    }

    /// Accounts standing for the validator set, in address order.
    pub fn validator_candidates(&self) -> Result<Vec<ValidatorCandidate>, ChainError> {
        let list: Vec<Address> = self
            .get_state(&StateKey::ValidatorCandidates)?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(list.len());
        for address in list {
            if let Some(c) = self.get_state(&StateKey::ValidatorCandidate(address))? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub fn epoch_rewards(&self, epoch: u64) -> Result<Option<EpochRewards>, ChainError> {
        self.get_state(&StateKey::EpochRewards(epoch))
    }

    /// Reward entries of one account, newest epoch first, at most `limit` epochs.
    pub fn account_rewards(
        &self,
        address: &Address,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<RewardEntry>)>, ChainError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(REWARDS_INDEX)?;
        let start = rewards_key(address, 0);
        let end = rewards_key(address, u64::MAX);
        let mut out = Vec::new();
        for item in table.range(start.as_slice()..=end.as_slice())?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let key = k.value();
            let mut epoch_bytes = [0u8; 8];
            epoch_bytes.copy_from_slice(&key[32..40]);
            let entries: Vec<RewardEntry> =
                borsh::from_slice(v.value()).map_err(|source| ChainError::Corrupt {
                    what: "record",
                    source,
                })?;
            out.push((u64::from_be_bytes(epoch_bytes), entries));
        }
        Ok(out)
    }

    pub fn block_hash_at(&self, height: u64) -> Result<Option<Hash>, ChainError> {
        Ok(self.block_by_height(height)?.map(|b| b.hash()))
    }

    pub fn block_by_height(&self, height: u64) -> Result<Option<Block>, ChainError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BLOCKS)?;
        match table.get(height)? {
            None => Ok(None),
            Some(v) => Ok(Some(borsh::from_slice(v.value()).map_err(|source| {
                ChainError::Corrupt {
                    what: "record",
                    source,
                }
            })?)),
        }
    }

    /// What the end of the block at `height` did outside any transaction (failed service
    /// hooks); empty for most blocks.
    pub fn block_events(&self, height: u64) -> Result<Vec<Event>, ChainError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(BLOCK_EVENTS) {
            Ok(table) => table,
            // Databases written before any hook failed have no such table.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        match table.get(height)? {
            None => Ok(Vec::new()),
            Some(v) => borsh::from_slice(v.value()).map_err(|source| ChainError::Corrupt {
                what: "block events",
                source,
            }),
        }
    }

    /// The raw encoded block and its finality certificate, for followers.
    pub fn block_bytes_with_finality(
        &self,
        height: u64,
    ) -> Result<Option<RawBlockBytes>, ChainError> {
        let read = self.db.begin_read()?;
        let blocks = read.open_table(BLOCKS)?;
        let finality = read.open_table(FINALITY)?;
        let (Some(b), Some(f)) = (blocks.get(height)?, finality.get(height)?) else {
            return Ok(None);
        };
        Ok(Some((b.value().to_vec(), f.value().to_vec())))
    }

    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, ChainError> {
        let height = {
            let read = self.db.begin_read()?;
            let table = read.open_table(BLOCK_INDEX)?;
            table.get(hash.as_bytes().as_slice())?.map(|v| v.value())
        };
        match height {
            Some(h) => self.block_by_height(h),
            None => Ok(None),
        }
    }

    pub fn finality(&self, height: u64) -> Result<Option<Finality>, ChainError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(FINALITY)?;
        match table.get(height)? {
            None => Ok(None),
            Some(v) => Ok(Some(borsh::from_slice(v.value()).map_err(|source| {
                ChainError::Corrupt {
                    what: "record",
                    source,
                }
            })?)),
        }
    }

    /// A committed transaction with its receipt.
    pub fn transaction(
        &self,
        hash: &Hash,
    ) -> Result<Option<(SignedTransaction, Receipt)>, ChainError> {
        let (location, receipt) = {
            let read = self.db.begin_read()?;
            let index = read.open_table(TX_INDEX)?;
            let receipts = read.open_table(RECEIPTS)?;
            let Some(loc) = index.get(hash.as_bytes().as_slice())? else {
                return Ok(None);
            };
            let location: TxLocation =
                borsh::from_slice(loc.value()).map_err(|source| ChainError::Corrupt {
                    what: "transaction location",
                    source,
                })?;
            let receipt: Receipt = match receipts.get(hash.as_bytes().as_slice())? {
                Some(r) => borsh::from_slice(r.value()).map_err(|source| ChainError::Corrupt {
                    what: "receipt",
                    source,
                })?,
                None => return Ok(None),
            };
            (location, receipt)
        };
        let Some(block) = self.block_by_height(location.height)? else {
            return Ok(None);
        };
        Ok(block
            .txs
            .get(location.index as usize)
            .cloned()
            .map(|tx| (tx, receipt)))
    }

    fn signature_seen(&self, hash: &Hash) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .contains(hash)
    }

    /// Verifies the signatures of `txs` not verified before (see [`VerifiedSignatures`]);
    /// returns the index of the first bad one.
    fn verify_unseen_signatures(&self, txs: &[SignedTransaction]) -> Result<(), usize> {
        let hashes: Vec<Hash> = txs.iter().map(|t| t.hash()).collect();
        let unseen: Vec<usize> = {
            let seen = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            (0..txs.len())
                .filter(|i| !seen.set.contains(&hashes[*i]))
                .collect()
        };
        if unseen.is_empty() {
            return Ok(());
        }
        let to_check: Vec<SignedTransaction> = unseen.iter().map(|i| txs[*i].clone()).collect();
        verify_signatures_parallel(&to_check).map_err(|j| unseen.get(j).copied().unwrap_or(0))?;
        let mut seen = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        for i in unseen {
            seen.insert(hashes[i]);
        }
        Ok(())
    }

    /// Checks a transaction against the head state as the next block would, without changing
    /// anything. A nonce ahead of the account nonce is accepted here (the mempool queues it);
    /// then only the checks that do not depend on earlier transactions run.
    pub fn check_tx(&self, tx: &SignedTransaction) -> Result<u64, TxError> {
        self.protocol.check_stateless(tx)?;
        let hash = tx.hash();
        if !self.signature_seen(&hash) {
            tx.verify_signature().map_err(|_| TxError::BadSignature)?;
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(hash);
        }
        let snapshot = self
            .state_snapshot()
            .map_err(|e| TxError::Store(depin_protocol::StateError::backend(e)))?;
        let mut overlay = Overlay::new(&snapshot);
        let account: Account = overlay
            .get(&StateKey::Account(tx.tx.sender))?
            .ok_or_else(|| TxError::UnknownAccount(tx.tx.sender.to_string()))?;
        if tx.tx.nonce < account.nonce {
            return Err(TxError::NonceReplayed {
                expected: account.nonce,
                got: tx.tx.nonce,
            });
        }
        if tx.tx.nonce > account.nonce {
            if account.balance < tx.tx.fee {
                return Err(TxError::InsufficientBalance {
                    needed: tx.tx.fee,
                    available: account.balance,
                });
            }
            return Ok(account.nonce);
        }
        let head = self.head();
        let ctx = BlockContext {
            height: head.height + 1,
            parent: head.hash,
            timestamp_ms: head.timestamp_ms,
            proposer: Address::default(),
        };
        self.protocol.apply_tx(&mut overlay, &ctx, tx, 0)?;
        Ok(account.nonce)
    }

    /// The next nonce of an account in the committed state (0 when it does not exist).
    pub fn nonce_of(&self, address: &Address) -> u64 {
        self.account(address)
            .ok()
            .flatten()
            .map(|a| a.nonce)
            .unwrap_or(0)
    }
}

fn rewards_key(address: &Address, epoch: u64) -> Vec<u8> {
    let mut k = address.as_bytes().to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

fn compute_root(
    nodes: &impl jmt::storage::TreeReader,
    writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    version: u64,
) -> Result<(Hash, jmt::storage::NodeBatch), ChainError> {
    let tree = JellyfishMerkleTree::<_, Blake3Hasher>::new(nodes);
    let value_set = writes.iter().map(|(k, v)| (store::key_hash(k), v.clone()));
    let (root, batch) = tree
        .put_value_set(value_set, version)
        .map_err(|e| ChainError::Commitment(e.into()))?;
    Ok((Hash(root.0), batch.node_batch))
}

/// Writes everything a block changes in one redb transaction and returns the new head.
fn commit_block(
    db: &Database,
    executed: &ExecutedBlock,
    finality: &Finality,
    genesis_toml: Option<&str>,
) -> Result<Head, ChainError> {
    let block = &executed.block;
    let height = block.header.height;
    let head = Head {
        height,
        hash: executed.hash,
        state_root: block.header.state_root,
        timestamp_ms: block.header.timestamp_ms,
    };
    let write = db.begin_write()?;
    {
        let mut state = write.open_table(STATE)?;
        for (k, v) in &executed.state_writes {
            match v {
                Some(v) => {
                    state.insert(k.as_slice(), v.as_slice())?;
                }
                None => {
                    state.remove(k.as_slice())?;
                }
            }
        }
        let mut nodes = write.open_table(JMT_NODES)?;
        for (key, node) in executed.node_batch.nodes() {
            let k = borsh::to_vec(key)?;
            let v = borsh::to_vec(node)?;
            nodes.insert(k.as_slice(), v.as_slice())?;
        }
        let mut blocks = write.open_table(BLOCKS)?;
        blocks.insert(height, depin_types::encode(block).as_slice())?;
        let mut fin = write.open_table(FINALITY)?;
        fin.insert(height, depin_types::encode(finality).as_slice())?;
        let mut index = write.open_table(BLOCK_INDEX)?;
        index.insert(executed.hash.as_bytes().as_slice(), height)?;
        let mut tx_index = write.open_table(TX_INDEX)?;
        let mut receipts = write.open_table(RECEIPTS)?;
        for receipt in &executed.receipts {
            let key = receipt.tx_hash.as_bytes().as_slice();
            let loc = TxLocation {
                height,
                index: receipt.index,
            };
            tx_index.insert(key, depin_types::encode(&loc).as_slice())?;
            receipts.insert(key, depin_types::encode(receipt).as_slice())?;
        }
        if let Some(rewards) = &executed.epoch_rewards {
            let mut by_account: BTreeMap<Address, Vec<RewardEntry>> = BTreeMap::new();
            for entry in &rewards.rewards {
                by_account
                    .entry(entry.account)
                    .or_default()
                    .push(entry.clone());
            }
            let mut idx = write.open_table(REWARDS_INDEX)?;
            for (account, entries) in by_account {
                let key = rewards_key(&account, rewards.epoch);
                idx.insert(key.as_slice(), depin_types::encode(&entries).as_slice())?;
            }
        }
        if !executed.events.is_empty() {
            let mut events = write.open_table(BLOCK_EVENTS)?;
            events.insert(height, depin_types::encode(&executed.events).as_slice())?;
        }
        let mut meta = write.open_table(META)?;
        meta.insert("head", depin_types::encode(&head).as_slice())?;
        if let Some(toml) = genesis_toml {
            meta.insert("genesis", toml.as_bytes())?;
        }
    }
    write.commit()?;
    Ok(head)
}

#[cfg(test)]
mod tests;
