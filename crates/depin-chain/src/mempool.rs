//! The bounded pool of transactions waiting for a block, ordered per sender by nonce.

use depin_protocol::{SignedTransaction, TxError};
use depin_types::{Address, Hash};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Limits of the pool.
#[derive(Debug, Clone)]
pub struct MempoolLimits {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// How far past a sender's account nonce a transaction may be queued.
    pub max_nonce_ahead: u64,
    /// How many dropped transactions are remembered (to answer "what happened to my tx").
    pub max_dropped_remembered: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 50_000,
            max_bytes: 64 * 1024 * 1024,
            max_nonce_ahead: 64,
            max_dropped_remembered: 10_000,
        }
    }
}

/// Why the pool refused a transaction (beyond the protocol's own checks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error("transaction already in the mempool")]
    AlreadyKnown,
    #[error("another transaction with nonce {nonce} from this sender is already pending")]
    NonceTaken { nonce: u64 },
    #[error("nonce {got} is more than {max_ahead} ahead of the account nonce {expected}")]
    NonceTooFarAhead {
        expected: u64,
        got: u64,
        max_ahead: u64,
    },
    #[error("mempool is full ({max_txs} transactions or {max_bytes} bytes)")]
    Full { max_txs: usize, max_bytes: usize },
}

impl MempoolError {
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::AlreadyKnown => "already_known",
            MempoolError::NonceTaken { .. } => "nonce_taken",
            MempoolError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            MempoolError::Full { .. } => "mempool_full",
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    tx: SignedTransaction,
    hash: Hash,
    size_bytes: usize,
}

/// A transaction the pool gave up on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub code: String,
    pub message: String,
}

/// Pending transactions by sender and nonce. Senders are served in the order they first
/// arrived, so one busy sender cannot starve the rest.
#[derive(Debug, Default)]
pub struct Mempool {
    limits: MempoolLimits,
    by_sender: HashMap<Address, BTreeMap<u64, Pending>>,
    sender_order: VecDeque<Address>,
    by_hash: HashMap<Hash, (Address, u64)>,
    total_bytes: usize,
    dropped: HashMap<Hash, Dropped>,
    dropped_order: VecDeque<Hash>,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            ..Mempool::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn size_bytes(&self) -> usize {
        self.total_bytes
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    pub fn dropped(&self, hash: &Hash) -> Option<&Dropped> {
        self.dropped.get(hash)
    }

    /// Admits a transaction whose signature and state checks already passed. `account_nonce`
    /// is the sender's nonce in the latest committed state.
    pub fn insert(
        &mut self,
        tx: SignedTransaction,
        hash: Hash,
        account_nonce: u64,
    ) -> Result<(), MempoolError> {
        if self.by_hash.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown);
        }
        let nonce = tx.tx.nonce;
        if nonce > account_nonce.saturating_add(self.limits.max_nonce_ahead) {
            return Err(MempoolError::NonceTooFarAhead {
                expected: account_nonce,
                got: nonce,
                max_ahead: self.limits.max_nonce_ahead,
            });
        }
        let sender = tx.tx.sender;
        if self
            .by_sender
            .get(&sender)
            .is_some_and(|q| q.contains_key(&nonce))
        {
            return Err(MempoolError::NonceTaken { nonce });
        }
        let size_bytes = tx.size_bytes();
        if self.by_hash.len() >= self.limits.max_txs
            || self.total_bytes.saturating_add(size_bytes) > self.limits.max_bytes
        {
            return Err(MempoolError::Full {
                max_txs: self.limits.max_txs,
                max_bytes: self.limits.max_bytes,
            });
        }
        let queue = self.by_sender.entry(sender).or_default();
        if queue.is_empty() {
            self.sender_order.push_back(sender);
        }
        queue.insert(
            nonce,
            Pending {
                tx,
                hash,
                size_bytes,
            },
        );
        self.by_hash.insert(hash, (sender, nonce));
        self.total_bytes += size_bytes;
        Ok(())
    }

    /// Picks transactions for a block: for each sender in arrival order, its run of
    /// consecutive nonces starting at the account nonce given by `nonce_of`. Round-robin one
    /// transaction per sender per pass keeps blocks fair.
    pub fn select(
        &self,
        max_txs: usize,
        max_bytes: usize,
        mut nonce_of: impl FnMut(&Address) -> u64,
    ) -> Vec<SignedTransaction> {
        let mut cursors: Vec<(Address, u64)> = self
            .sender_order
            .iter()
            .map(|s| (*s, nonce_of(s)))
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            let mut progressed = false;
            for (sender, next) in cursors.iter_mut() {
                if out.len() >= max_txs {
                    return out;
                }
                let Some(p) = self.by_sender.get(sender).and_then(|q| q.get(next)) else {
                    continue;
                };
                if bytes.saturating_add(p.size_bytes) > max_bytes {
                    return out;
                }
                bytes += p.size_bytes;
                out.push(p.tx.clone());
                *next += 1;
                progressed = true;
            }
            if !progressed {
                return out;
            }
        }
    }

    fn remove(&mut self, hash: &Hash) -> Option<SignedTransaction> {
        let (sender, nonce) = self.by_hash.remove(hash)?;
        let queue = self.by_sender.get_mut(&sender)?;
        let p = queue.remove(&nonce)?;
        self.total_bytes = self.total_bytes.saturating_sub(p.size_bytes);
        if queue.is_empty() {
            self.by_sender.remove(&sender);
            self.sender_order.retain(|s| *s != sender);
        }
        Some(p.tx)
    }

    /// Forgets transactions that made it into a block, and any of the same senders whose
    /// nonce is now stale.
    pub fn remove_included(
        &mut self,
        included: &[(Hash, Address)],
        nonce_of: impl Fn(&Address) -> u64,
    ) {
        for (hash, _) in included {
            self.remove(hash);
        }
        let mut stale = Vec::new();
        for (_, sender) in included {
            let next = nonce_of(sender);
            if let Some(queue) = self.by_sender.get(sender) {
                stale.extend(queue.range(..next).map(|(_, p)| p.hash));
            }
        }
        for hash in stale {
            if self.remove(&hash).is_some() {
                self.remember_dropped(
                    hash,
                    Dropped {
                        code: "nonce_replayed".into(),
                        message: "another transaction with this nonce was included".into(),
                    },
                );
            }
        }
    }

    /// Removes a transaction that failed while building a block and remembers why.
    pub fn drop_failed(&mut self, hash: &Hash, error: &TxError) {
        if self.remove(hash).is_some() {
            self.remember_dropped(
                *hash,
                Dropped {
                    code: error.code().to_string(),
                    message: error.to_string(),
                },
            );
        }
    }

    fn remember_dropped(&mut self, hash: Hash, why: Dropped) {
        if self.dropped.insert(hash, why).is_none() {
            self.dropped_order.push_back(hash);
        }
        while self.dropped_order.len() > self.limits.max_dropped_remembered {
            if let Some(old) = self.dropped_order.pop_front() {
                self.dropped.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use depin_protocol::{Action, Transaction};
    use depin_types::{Amount, Keypair};

    fn tx(key: &Keypair, nonce: u64) -> (SignedTransaction, Hash) {
        let t = Transaction {
            chain_id: "t".into(),
            sender: key.address(),
            nonce,
            fee: Amount(1),
            action: Action::Withdraw,
        }
        .sign(key);
        let h = t.hash();
        (t, h)
    }

    #[test]
    fn orders_by_nonce_and_round_robins_senders() {
        let (a, b) = (Keypair::from_seed(b"a"), Keypair::from_seed(b"b"));
        let mut pool = Mempool::new(MempoolLimits::default());
        for n in [1, 0, 2] {
            let (t, h) = tx(&a, n);
            pool.insert(t, h, 0).expect("insert a");
        }
        let (t, h) = tx(&b, 5);
        pool.insert(t, h, 5).expect("insert b");
        let picked = pool.select(10, usize::MAX, |s| if *s == a.address() { 0 } else { 5 });
        let order: Vec<(Address, u64)> = picked.iter().map(|t| (t.tx.sender, t.tx.nonce)).collect();
        assert_eq!(
            order,
            vec![
                (a.address(), 0),
                (b.address(), 5),
                (a.address(), 1),
                (a.address(), 2)
            ]
        );
        // A gap stops the sender's run.
        let picked = pool.select(10, usize::MAX, |s| if *s == a.address() { 1 } else { 9 });
        assert_eq!(picked.len(), 2);
    }

    #[test]
    fn enforces_limits() {
        let a = Keypair::from_seed(b"a");
        let mut pool = Mempool::new(MempoolLimits {
            max_txs: 2,
            ..MempoolLimits::default()
        });
        let (t0, h0) = tx(&a, 0);
        pool.insert(t0.clone(), h0, 0).expect("first");
        assert_eq!(pool.insert(t0, h0, 0), Err(MempoolError::AlreadyKnown));
        let (t1, h1) = tx(&a, 1);
        pool.insert(t1, h1, 0).expect("second");
        let (t2, h2) = tx(&a, 2);
        assert!(matches!(
            pool.insert(t2, h2, 0),
            Err(MempoolError::Full { .. })
        ));
        let (t99, h99) = tx(&a, 99);
        assert!(matches!(
            pool.insert(t99, h99, 0),
            Err(MempoolError::NonceTooFarAhead { .. })
        ));
        pool.remove_included(&[(h0, a.address())], |_| 1);
        assert_eq!(pool.len(), 1);
        assert!(pool.size_bytes() > 0);
    }
}
