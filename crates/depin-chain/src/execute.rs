//! Executing blocks: `propose` (drop what fails) and `verify` (refuse the block if anything
//! fails) share one path, and signatures are checked once per node, in parallel batches.

use crate::layered::ParentView;
use crate::*;

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
pub(crate) struct VerifiedSignatures {
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
/// The verdict does not depend on the split: batch and single checks share one rule.
pub fn verify_signatures_parallel(txs: &[SignedTransaction]) -> Result<(), usize> {
    verify_signatures_split(txs, verify_threads())
}

/// [`verify_signatures_parallel`] on `threads` threads.
pub(crate) fn verify_signatures_split(
    txs: &[SignedTransaction],
    threads: usize,
) -> Result<(), usize> {
    if txs.len() < 64 || threads <= 1 {
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

/// What to do with a transaction that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failures {
    /// Building a block: leave it out.
    LeaveOut,
    /// Checking someone else's block: the block is invalid.
    RefuseBlock,
}

/// What executing a block's transactions gave, before it becomes an [`ExecutedBlock`].
struct Execution {
    /// Indexes of the transactions that went in.
    included: Vec<usize>,
    left_out: Vec<(Hash, TxError)>,
    receipts: Vec<Receipt>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    node_batch: jmt::storage::NodeBatch,
    state_root: Hash,
    epoch_rewards: Option<EpochRewards>,
    events: Vec<Event>,
}

impl Chain {
    /// Executes `txs` on the parent's state and returns a block with its state root.
    /// Transactions that fail are left out and returned with their error.
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
        let ctx = BlockContext {
            height: view.height + 1,
            parent,
            timestamp_ms: timestamp_ms.max(view.timestamp_ms),
            proposer,
        };
        let mut run = self.execute(&view, &ctx, &candidates, Failures::LeaveOut)?;
        rejected.extend(std::mem::take(&mut run.left_out));
        let mut kept = vec![false; candidates.len()];
        for index in &run.included {
            kept[*index] = true;
        }
        let included: Vec<SignedTransaction> = candidates
            .into_iter()
            .zip(kept)
            .filter_map(|(tx, kept)| kept.then_some(tx))
            .collect();
        let header = BlockHeader {
            chain_id: self.protocol.genesis().chain_id.clone(),
            height: ctx.height,
            parent,
            timestamp_ms: ctx.timestamp_ms,
            proposer,
            tx_root: Block::compute_tx_root(&included),
            tx_count: included.len() as u32,
            state_root: run.state_root,
        };
        let block = Block {
            header,
            txs: included,
        };
        Ok((self.executed_block(block, run, started), rejected))
    }

    /// Keeps an executed block until it is finalized or left behind.
    fn executed_block(&self, block: Block, run: Execution, started: Instant) -> Arc<ExecutedBlock> {
        let executed = Arc::new(ExecutedBlock {
            hash: block.hash(),
            block,
            state_writes: run.writes,
            node_batch: run.node_batch,
            receipts: run.receipts,
            epoch_rewards: run.epoch_rewards,
            events: run.events,
        });
        self.remember_executed(&executed);
        self.metrics
            .last_execute_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        executed
    }

    /// The one execution path of `propose` and `verify`: the transactions in order on the
    /// parent's state, the end of the block, the new state root. A proposal leaves out what
    /// fails; a block from someone else is refused if anything fails.
    fn execute(
        &self,
        view: &ParentView,
        ctx: &BlockContext,
        txs: &[SignedTransaction],
        failures: Failures,
    ) -> Result<Execution, ChainError> {
        let limit = self.protocol.genesis().chain.max_block_txs;
        if failures == Failures::RefuseBlock && txs.len() > limit as usize {
            return Err(BlockError::TooManyTxs {
                count: txs.len(),
                limit,
            }
            .into());
        }
        let state = self.layered_state(view)?;
        let mut overlay = Overlay::new(&state);
        let mut included = Vec::with_capacity(txs.len());
        let mut receipts = Vec::with_capacity(txs.len());
        let mut left_out = Vec::new();
        for (index, tx) in txs.iter().enumerate() {
            match self
                .protocol
                .apply_tx(&mut overlay, ctx, tx, included.len() as u32)
            {
                Ok(r) => {
                    receipts.push(r);
                    included.push(index);
                }
                Err(TxError::Store(e)) => return Err(e.into()),
                Err(error) if failures == Failures::RefuseBlock => {
                    return Err(BlockError::InvalidTx {
                        index,
                        tx_hash: tx.hash(),
                        error,
                    }
                    .into());
                }
                Err(e) => left_out.push((tx.hash(), e)),
            }
        }
        let end = self
            .protocol
            .end_block(&mut overlay, ctx)
            .map_err(|e| match e {
                TxError::Store(s) => ChainError::State(s),
                other => ChainError::Block(BlockError::EndBlock(other)),
            })?;
        let writes = overlay.into_writes();
        let (state_root, node_batch) = self.root_after(&writes, ctx.height, view)?;
        Ok(Execution {
            included,
            left_out,
            receipts,
            writes,
            node_batch,
            state_root,
            epoch_rewards: end.epoch_rewards,
            events: end.events,
        })
    }

    pub(crate) fn remember_executed(&self, executed: &Arc<ExecutedBlock>) {
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
        let ctx = BlockContext {
            height: h.height,
            parent: h.parent,
            timestamp_ms: h.timestamp_ms,
            proposer: h.proposer,
        };
        let run = self.execute(&view, &ctx, &block.txs, Failures::RefuseBlock)?;
        if run.state_root != h.state_root {
            return Err(BlockRejected::StateRootMismatch {
                claimed: h.state_root,
                computed: run.state_root,
            }
            .into());
        }
        Ok(self.executed_block(block.clone(), run, started))
    }

    pub(crate) fn signature_seen(&self, hash: &Hash) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .contains(hash)
    }

    /// Verifies the signatures of `txs` not verified before (see [`VerifiedSignatures`]);
    /// returns the index of the first bad one.
    pub(crate) fn verify_unseen_signatures(&self, txs: &[SignedTransaction]) -> Result<(), usize> {
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
}
