//! The consensus seam. A consensus engine sees the ledger only through [`ConsensusApp`]:
//! build a block on a parent, check someone else's block, apply a finalized one. The solo
//! producer below is the single-validator engine; the BFT engine plugs into the same trait.

use crate::{Chain, ChainError, Mempool, MempoolError};
use depin_protocol::{Block, Finality, SignedTransaction, TxError};
use depin_types::{Address, Hash};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a consensus engine may ask of the application.
pub trait ConsensusApp: Send + Sync {
    /// Builds a block on `parent` from pending transactions.
    fn propose(
        &self,
        parent: Hash,
        timestamp_ms: u64,
        proposer: Address,
    ) -> Result<Block, ChainError>;
    /// Re-executes a proposed block and checks its state root.
    fn verify(&self, block: &Block) -> Result<(), ChainError>;
    /// Applies a finalized block exactly once; `Ok(false)` when it was already applied.
    fn finalize(&self, block: &Block, finality: &Finality) -> Result<bool, ChainError>;
}

/// Submission outcome counters, by reason code.
#[derive(Debug, Default)]
pub struct SubmitStats {
    pub accepted: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

/// The chain together with its mempool: the application that consensus drives.
#[derive(Debug)]
pub struct ChainApp {
    pub chain: Arc<Chain>,
    mempool: Mutex<Mempool>,
    stats: Mutex<SubmitStats>,
    /// Verified equivocation evidence from consensus, waiting to be put on chain.
    evidence: Mutex<std::collections::VecDeque<Vec<u8>>>,
}

/// Most equivocation evidence queued at once; more is dropped (one per offender and era
/// counts on chain anyway).
const MAX_QUEUED_EVIDENCE: usize = 64;

/// Why a submitted transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Mempool(#[from] MempoolError),
}

impl SubmitError {
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::Tx(e) => e.code(),
            SubmitError::Mempool(e) => e.code(),
        }
    }
}

impl ChainApp {
    pub fn new(chain: Arc<Chain>, mempool: Mempool) -> ChainApp {
        ChainApp {
            chain,
            mempool: Mutex::new(mempool),
            stats: Mutex::new(SubmitStats::default()),
            evidence: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Queues verified equivocation evidence (consensus calls this).
    pub fn report_evidence(&self, bytes: Vec<u8>) {
        let mut queue = self.evidence.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() < MAX_QUEUED_EVIDENCE && !queue.contains(&bytes) {
            tracing::warn!("a validator signed conflicting votes; evidence queued");
            queue.push_back(bytes);
        }
    }

    /// Takes the queued equivocation evidence, oldest first.
    pub fn take_evidence(&self) -> Vec<Vec<u8>> {
        self.evidence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts of accepted and rejected submissions (for metrics).
    pub fn submit_stats(&self) -> (u64, BTreeMap<&'static str, u64>) {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        (s.accepted, s.rejected.clone())
    }

    /// Decodes, checks and queues transaction bytes from a client or peer. Returns the hash.
    pub fn submit_bytes(&self, bytes: &[u8]) -> Result<Hash, SubmitError> {
        let result = self
            .chain
            .protocol()
            .decode_tx(bytes)
            .map_err(SubmitError::from)
            .and_then(|tx| self.submit(tx));
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => stats.accepted += 1,
            Err(e) => *stats.rejected.entry(e.code()).or_insert(0) += 1,
        }
        result
    }

    fn submit(&self, tx: SignedTransaction) -> Result<Hash, SubmitError> {
        let hash = tx.hash();
        if self.chain.transaction(&hash).ok().flatten().is_some() {
            return Err(MempoolError::AlreadyKnown.into());
        }
        let account_nonce = self.chain.check_tx(&tx)?;
        self.mempool().insert(tx, hash, account_nonce)?;
        Ok(hash)
    }
}

impl ConsensusApp for ChainApp {
    fn propose(
        &self,
        parent: Hash,
        timestamp_ms: u64,
        proposer: Address,
    ) -> Result<Block, ChainError> {
        let g = &self.chain.protocol().genesis().chain;
        // Nonces as of the parent, which may be a pending block that already includes some
        // of the pool's transactions.
        let nonces = self.chain.nonce_reader(parent)?;
        let txs =
            self.mempool()
                .select(g.max_block_txs as usize, g.max_block_bytes as usize, |a| {
                    nonces.nonce(a)
                });
        let (executed, rejected) = self.chain.propose(parent, timestamp_ms, proposer, txs)?;
        let mut pool = self.mempool();
        for (hash, error) in rejected {
            // A gap means an earlier transaction of the sender failed or is still missing;
            // keep the later ones queued rather than guessing.
            if !matches!(error, TxError::NonceGap { .. }) {
                pool.drop_failed(&hash, &error);
            }
        }
        Ok(executed.block.clone())
    }

    fn verify(&self, block: &Block) -> Result<(), ChainError> {
        self.chain.verify(block).map(|_| ())
    }

    fn finalize(&self, block: &Block, finality: &Finality) -> Result<bool, ChainError> {
        let applied = self.chain.finalize(block, finality)?;
        self.forget_included(block);
        Ok(applied)
    }
}

impl ChainApp {
    /// Commits a block the consensus engine finalized and verified (see
    /// [`Chain::finalize_certified`]), and forgets its transactions from the pool.
    pub fn finalize_certified(
        &self,
        block: &Block,
        finality: &Finality,
    ) -> Result<bool, ChainError> {
        let applied = self.chain.finalize_certified(block, finality)?;
        self.forget_included(block);
        Ok(applied)
    }

    fn forget_included(&self, block: &Block) {
        let included: Vec<(Hash, Address)> =
            block.txs.iter().map(|t| (t.hash(), t.tx.sender)).collect();
        self.mempool()
            .remove_included(&included, |a| self.chain.nonce_of(a));
    }
}

/// The single-validator engine of tests and the ledger benchmark: proposes on the head, signs,
/// finalizes. Same seam as BFT. Test-only (`test-utils`): nodes use the BFT engine for every
/// N, and production builds refuse its solo signatures.
#[cfg(feature = "test-utils")]
#[derive(Debug)]
pub struct SoloProducer {
    app: Arc<ChainApp>,
    key: depin_types::Keypair,
}

#[cfg(feature = "test-utils")]
impl SoloProducer {
    pub fn new(app: Arc<ChainApp>, key: depin_types::Keypair) -> SoloProducer {
        SoloProducer { app, key }
    }

    /// Produces and commits the next block; returns it.
    pub fn produce(&self, timestamp_ms: u64) -> Result<Block, ChainError> {
        let head = self.app.chain.head();
        let block = self
            .app
            .propose(head.hash, timestamp_ms, self.key.address())?;
        let finality = Finality::solo(&self.key, &block.hash());
        self.app.finalize(&block, &finality)?;
        Ok(block)
    }
}
