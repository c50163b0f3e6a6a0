//! Reads of the committed chain for the API and the node's workers.

use crate::commit::rewards_key;
use crate::store::*;
use crate::*;

impl Chain {
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

    /// The latest report of each oracle key.
    pub fn oracle_reports(&self) -> Result<depin_protocol::state::OracleReports, ChainError> {
        Ok(self
            .get_state(&StateKey::OracleReports)?
            .unwrap_or_default())
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

    /// The next nonce of an account in the committed state (0 when it does not exist).
    pub fn nonce_of(&self, address: &Address) -> u64 {
        self.account(address)
            .ok()
            .flatten()
            .map(|a| a.nonce)
            .unwrap_or(0)
    }
}
