//! Reads through blocks that are executed but not final yet: consensus builds on notarized
//! blocks, so a proposal's parent may be a pending block, and its state and JMT nodes are
//! the head's overlaid with those pending writes.

use crate::store::*;
use crate::*;

/// Longest run of executed, not yet final blocks a proposal may build on.
pub(crate) const MAX_PENDING_DEPTH: usize = 256;

/// The parent a block builds on: its height and time, and the pending blocks (nearest first)
/// whose writes sit between the committed state and that parent.
pub(crate) struct ParentView {
    pub(crate) height: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) layers: Vec<Arc<ExecutedBlock>>,
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

impl Chain {
    pub(crate) fn root_after(
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
    pub(crate) fn parent_view(&self, parent: Hash) -> Result<ParentView, ChainError> {
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

    pub(crate) fn layered_state(&self, view: &ParentView) -> Result<LayeredState, ChainError> {
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
}

pub(crate) fn compute_root(
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
