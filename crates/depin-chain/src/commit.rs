//! Finalizing: the certificate check, and the one redb write transaction that commits a
//! block (state, JMT nodes, block, certificate, receipts, indexes, head) exactly once.

use crate::store::*;
use crate::*;

impl Chain {
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
}

pub(crate) fn rewards_key(address: &Address, epoch: u64) -> Vec<u8> {
    let mut k = address.as_bytes().to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

/// Writes everything a block changes in one redb transaction and returns the new head.
pub(crate) fn commit_block(
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
