//! What can go wrong in the chain: the node's own faults (database, disk, state backend),
//! each with its source, and structured reasons a block is refused.

use depin_protocol::{BlockError, TxError};
use depin_types::Hash;

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
