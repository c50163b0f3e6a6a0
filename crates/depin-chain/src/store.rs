//! The on-disk layout (redb tables) and the adapters that let the protocol read state and the
//! Jellyfish Merkle tree read and write its nodes in the same database.

use depin_protocol::{StateError, StateRead};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use redb::{ReadOnlyTable, TableDefinition};

/// Chain metadata: `head` (the last finalized block) and `genesis` (its TOML).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Finalized blocks by height, borsh-encoded.
pub const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// The finality certificate of each block, by height.
pub const FINALITY: TableDefinition<u64, &[u8]> = TableDefinition::new("finality");
/// Block hash to height.
pub const BLOCK_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("block_index");
/// Transaction hash to (height, index in block), borsh-encoded.
pub const TX_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_index");
/// Transaction hash to its receipt.
pub const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
/// Height to what the end of that block did outside any transaction (failed service hooks);
/// only blocks with such events have an entry.
pub const BLOCK_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("block_events");
/// The latest ledger state: state key to record.
pub const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// Jellyfish Merkle tree nodes, every version (pruning is a later concern).
pub const JMT_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
/// Derived index for queries: address ++ epoch (big endian) to that epoch's reward entries.
pub const REWARDS_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rewards_index");

/// JMT's hash function: BLAKE3, as everywhere else in depin.
#[derive(Debug)]
pub struct Blake3Hasher(blake3::Hasher);

impl jmt::SimpleHasher for Blake3Hasher {
    fn new() -> Self {
        Blake3Hasher(blake3::Hasher::new())
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

pub fn key_hash(state_key: &[u8]) -> KeyHash {
    KeyHash::with::<Blake3Hasher>(state_key)
}

/// The state as of one read transaction.
pub struct StateSnapshot {
    pub table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl StateRead for StateSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.table
            .get(key)
            .map(|v| v.map(|g| g.value().to_vec()))
            .map_err(StateError::backend)
    }
}

/// JMT nodes as of one read transaction.
pub struct NodeSnapshot {
    pub table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl TreeReader for NodeSnapshot {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = borsh::to_vec(node_key)?;
        match self.table.get(key.as_slice())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(borsh::from_slice(bytes.value())?)),
        }
    }

    // Values are kept in the STATE table, latest version only; historical reads through the
    // tree are not offered.
    fn get_value_option(
        &self,
        _max_version: Version,
        _key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Err(anyhow::anyhow!("historical state values are not stored"))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Err(anyhow::anyhow!("tree restore is not supported"))
    }
}
