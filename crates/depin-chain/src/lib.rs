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
mod commit;
pub mod consensus;
mod error;
mod execute;
mod layered;
pub mod mempool;
mod queries;
pub mod store;

#[cfg(feature = "test-utils")]
pub use app::SoloProducer;
pub use app::{ChainApp, ConsensusApp, SubmitError};
use commit::commit_block;
pub use error::{BlockRejected, ChainError};
use execute::VerifiedSignatures;
pub use execute::verify_signatures_parallel;
use layered::compute_root;
pub use layered::{LayeredState, NonceReader};
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
    BLOCK_INDEX, BLOCKS, FINALITY, JMT_NODES, META, NodeSnapshot, RECEIPTS, REWARDS_INDEX, STATE,
    StateSnapshot, TX_INDEX,
};

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
}

#[cfg(test)]
mod tests;
