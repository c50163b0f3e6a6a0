//! Owns: the consensus rules: genesis, transactions, state, execution, epochs, the service seam and each service's rules.
//! Must not: do I/O, read a clock or OS randomness, use floating point, or import a runtime crate.
//!
//! depin-protocol: the consensus-critical rules of depin — transactions, state transitions,
//! epoch emission and rewards, slashing hooks, genesis parameters, and the seam through which
//! services add their own transactions and proof checks.
//!
//! Everything here is pure and deterministic: no tokio, no disk, no clock, no OS randomness.
//! State is read through [`state::StateRead`] and written to an [`state::Overlay`]; the chain
//! decides where bytes live and how they are committed to.

pub mod block;
pub mod compute;
pub mod coverage;
pub mod equivocation;
pub mod error;
pub mod params;
pub mod render;
pub mod service;
pub mod services;
pub mod state;
pub mod storage;
pub mod tx;
pub mod video;

pub use block::{Block, BlockHeader, Event, Finality, Receipt};
pub use error::TxError;
pub use params::{Genesis, GenesisError};
pub use service::{BlockContext, ServiceContext, ServiceHook, ServiceModule};
pub use state::{Overlay, StateError, StateKey, StateRead};
pub use tx::{Action, ActionKind, SignedTransaction, Transaction};

use depin_types::{Address, Amount, ServiceKind};
use params::BPS_DENOMINATOR;
use service::{burn, mint_to, update_supply};
use state::{
    Account, BucketOutcome, EpochRewards, EpochWork, OraclePrice, OracleReport, OracleReports,
    Provider, ProviderHistory, RewardEntry, RewardKind, Stake, Supply, Unbonding,
    ValidatorCandidate, ValidatorSet, next_oracle_price,
};
use std::sync::Arc;
use tx::{GeoLocation, MAX_SERVICE_OFFERS, ServiceOffer};

/// Most accounts standing for the validator set at once; bounds the set selection work.
pub const MAX_VALIDATOR_CANDIDATES: usize = 256;

/// Longest `host:port` a validator may register as its consensus endpoint.
pub const MAX_CONSENSUS_ADDRESS_BYTES: usize = 128;

/// The validator-set era of a block height: heights `e * epoch_blocks ..= (e + 1) * epoch_blocks - 1`
/// (commonware's fixed epocher, which calls it an epoch). The set of era `e + 1` is chosen at
/// height `e * epoch_blocks`. Not the reward epoch of [`BlockContext::epoch`], which counts
/// blocks `1..=epoch_blocks` as epoch 0: the two windows are offset by one block.
pub fn validator_era(height: u64, epoch_blocks: u64) -> u64 {
    height / epoch_blocks.max(1)
}

/// Why a block is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("transaction {index} ({tx_hash}) is invalid: {error}")]
    InvalidTx {
        index: usize,
        tx_hash: depin_types::Hash,
        error: TxError,
    },
    #[error("block has {count} transactions, limit {limit}")]
    TooManyTxs { count: usize, limit: u32 },
    /// The ledger's own end-of-block work (emission, the validator set) failed.
    #[error("end of block processing failed")]
    EndBlock(#[source] TxError),
    #[error(transparent)]
    Store(#[from] StateError),
}

/// Longest failure reason a [`Event::ServiceHookFailed`] keeps.
pub const MAX_HOOK_REASON_CHARS: usize = 300;

/// What executing a block produced, besides the state writes in the overlay.
#[derive(Debug, Clone, Default)]
pub struct BlockOutcome {
    pub receipts: Vec<Receipt>,
    pub epoch_rewards: Option<EpochRewards>,
    /// What the end of the block did outside any transaction (a service hook that failed).
    pub events: Vec<Event>,
}

/// What [`Protocol::end_block`] produced besides state writes.
#[derive(Debug, Clone, Default)]
pub struct EndBlockOutcome {
    pub epoch_rewards: Option<EpochRewards>,
    pub events: Vec<Event>,
}

/// A registered service: its rules and its genesis section as it decoded it.
#[derive(Clone)]
struct RegisteredService {
    module: Arc<dyn ServiceModule>,
    params: Arc<dyn std::any::Any + Send + Sync>,
}

/// The protocol: genesis parameters plus the registered service modules.
#[derive(Clone)]
pub struct Protocol {
    genesis: Genesis,
    /// In registration order, which is the order their hooks run in.
    services: Vec<RegisteredService>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("chain_id", &self.genesis.chain_id)
            .field("services", &self.enabled_services())
            .finish()
    }
}

impl Protocol {
    /// The protocol with every service of the registry ([`services::builtin`]), each with its
    /// genesis section decoded and checked.
    pub fn new(genesis: Genesis) -> Result<Protocol, GenesisError> {
        genesis.validate()?;
        let mut protocol = Protocol {
            genesis,
            services: Vec::new(),
        };
        for module in services::builtin() {
            protocol.register_service(module)?;
        }
        Ok(protocol)
    }

    /// Plugs a service's rules into the ledger (the registry's do so in [`Protocol::new`];
    /// tests add their own). A service of the same name is replaced in place.
    pub fn register_service(&mut self, module: Arc<dyn ServiceModule>) -> Result<(), GenesisError> {
        let entry = RegisteredService {
            params: module.load_params(&self.genesis)?,
            module,
        };
        match self
            .services
            .iter_mut()
            .find(|s| s.module.service() == entry.module.service())
        {
            Some(slot) => *slot = entry,
            None => self.services.push(entry),
        }
        Ok(())
    }

    /// Service `P`'s genesis section as its module decoded it; `None` when `P`'s service is
    /// not registered.
    pub fn service_params<P: params::ServiceParams>(&self) -> Option<&P> {
        self.service(&P::SERVICE)?.params.downcast_ref::<P>()
    }

    fn service(&self, service: &ServiceKind) -> Option<&RegisteredService> {
        self.services
            .iter()
            .find(|s| s.module.service() == *service)
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// An event as the API shows it: tagged JSON, with a service event's bytes decoded by
    /// its service into `"event"` (the bytes stay in `"data"`).
    pub fn event_json(&self, event: &Event) -> serde_json::Value {
        let mut value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
        if let Event::Service { service, data } = event
            && let Some(decoded) = self
                .service(service)
                .and_then(|s| s.module.event_json(data))
            && let Some(object) = value.as_object_mut()
        {
            object.insert("event".into(), decoded);
        }
        value
    }

    pub fn enabled_services(&self) -> Vec<ServiceKind> {
        self.services.iter().map(|s| s.module.service()).collect()
    }

    /// Writes the state of height 0.
    pub fn init_genesis(&self, state: &mut Overlay<'_>) -> Result<(), TxError> {
        let g = &self.genesis;
        let mut total = Amount::ZERO;
        for b in &g.balances {
            let account = Account {
                balance: b.amount,
                ..Account::default()
            };
            state.put(&StateKey::Account(b.address), &account);
            total = total.checked_add(b.amount).ok_or(TxError::AmountOverflow)?;
        }
        let mut validators = Vec::new();
        let mut candidates = Vec::new();
        for v in &g.validators {
            let key = StateKey::Account(v.address);
            if state.get::<Account>(&key)?.is_none() {
                state.put(&key, &Account::default());
            }
            state.put(
                &StateKey::Stake(v.address),
                &Stake {
                    bonded: v.stake,
                    ..Stake::default()
                },
            );
            total = total.checked_add(v.stake).ok_or(TxError::AmountOverflow)?;
            validators.push(v.address);
            state.put(
                &StateKey::ValidatorCandidate(v.address),
                &ValidatorCandidate {
                    address: v.address,
                    consensus_address: None,
                    registered_height: 0,
                },
            );
            candidates.push(v.address);
        }
        candidates.sort();
        state.put(&StateKey::ValidatorCandidates, &candidates);
        // Sets are chosen one epoch ahead, so the first two epochs run the genesis set.
        let set = ValidatorSet { validators };
        state.put(&StateKey::ValidatorSet(0), &set);
        state.put(&StateKey::ValidatorSet(1), &set);
        state.put(
            &StateKey::Supply,
            &Supply {
                total,
                initial: total,
                ..Supply::default()
            },
        );
        state.put(
            &StateKey::OraclePrice,
            &OraclePrice {
                price_usd_micro: g.data_credits.initial_token_price_usd_micro,
                updated_height: 0,
            },
        );
        state.put(&StateKey::ProviderSet, &Vec::<Address>::new());
        Ok(())
    }

    /// The smallest fee accepted for a transaction of `size_bytes`.
    pub fn min_fee(&self, size_bytes: usize) -> Amount {
        let per_byte = self.genesis.fees.fee_per_byte.0;
        Amount(
            self.genesis
                .fees
                .base_fee
                .0
                .saturating_add(per_byte.saturating_mul(size_bytes as u128)),
        )
    }

    /// Decodes transaction bytes as received from a client or peer.
    pub fn decode_tx(&self, bytes: &[u8]) -> Result<SignedTransaction, TxError> {
        SignedTransaction::from_bytes(bytes, self.genesis.chain.max_tx_bytes as usize).map_err(
            |e| match e {
                tx::TxDecodeError::TooLarge {
                    size_bytes,
                    max_bytes,
                } => TxError::TooLarge {
                    size_bytes,
                    max_bytes,
                },
                tx::TxDecodeError::Malformed(m) => TxError::Malformed(m),
            },
        )
    }

    /// Checks that need no state: size, chain id, minimum fee. The signature is checked
    /// separately so that blocks can verify signatures in batches.
    pub fn check_stateless(&self, tx: &SignedTransaction) -> Result<(), TxError> {
        let size_bytes = tx.size_bytes();
        let max_bytes = self.genesis.chain.max_tx_bytes as usize;
        if size_bytes > max_bytes {
            return Err(TxError::TooLarge {
                size_bytes,
                max_bytes,
            });
        }
        if tx.tx.chain_id != self.genesis.chain_id {
            return Err(TxError::WrongChain {
                expected: self.genesis.chain_id.clone(),
                got: tx.tx.chain_id.chars().take(64).collect(),
            });
        }
        let minimum = self.min_fee(size_bytes);
        if tx.tx.fee < minimum {
            return Err(TxError::FeeTooLow {
                offered: tx.tx.fee,
                minimum,
            });
        }
        Ok(())
    }

    /// Verifies every signature of `txs` under the one consensus rule (ZIP-215, see
    /// [`depin_types::verify`]), in one batch when all are good. On a failure returns the index
    /// of the first bad one. The verdict is that of checking each alone, whatever the batch.
    pub fn verify_signatures(txs: &[SignedTransaction]) -> Result<(), usize> {
        let messages: Vec<Vec<u8>> = txs.iter().map(|t| t.tx.signing_bytes()).collect();
        let items: Vec<_> = txs
            .iter()
            .zip(&messages)
            .map(|(t, m)| (&t.tx.sender, m.as_slice(), &t.signature))
            .collect();
        if depin_types::verify_batch(&items).is_ok() {
            return Ok(());
        }
        for (i, (address, message, signature)) in items.iter().enumerate() {
            if depin_types::verify(address, message, signature).is_err() {
                return Err(i);
            }
        }
        // The batch failed but each passed alone (a 2^-128 event under ZIP-215, where batch
        // and single checks agree): the verdict is the single checks', the rule every path
        // shares.
        Ok(())
    }

    /// Applies one transaction whose signature has already been verified. On error nothing
    /// it wrote remains in `state`.
    pub fn apply_tx(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        tx: &SignedTransaction,
        index: u32,
    ) -> Result<Receipt, TxError> {
        self.check_stateless(tx)?;
        state.begin();
        match self.apply_tx_inner(state, block, tx, index) {
            Ok(receipt) => {
                state.commit();
                Ok(receipt)
            }
            Err(e) => {
                state.rollback();
                Err(e)
            }
        }
    }

    fn apply_tx_inner(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        signed: &SignedTransaction,
        index: u32,
    ) -> Result<Receipt, TxError> {
        let tx = &signed.tx;
        let sender_key = StateKey::Account(tx.sender);
        let mut sender: Account = state
            .get(&sender_key)?
            .ok_or_else(|| TxError::UnknownAccount(tx.sender.to_string()))?;
        if tx.nonce < sender.nonce {
            return Err(TxError::NonceReplayed {
                expected: sender.nonce,
                got: tx.nonce,
            });
        }
        if tx.nonce > sender.nonce {
            return Err(TxError::NonceGap {
                expected: sender.nonce,
                got: tx.nonce,
            });
        }
        if sender.balance < tx.fee {
            return Err(TxError::InsufficientBalance {
                needed: tx.fee,
                available: sender.balance,
            });
        }
        sender.balance = sender.balance.saturating_sub(tx.fee);
        sender.nonce = sender.nonce.checked_add(1).ok_or(TxError::AmountOverflow)?;
        state.put(&sender_key, &sender);
        let mut events = Vec::new();
        if !tx.fee.is_zero() {
            credit(state, block.proposer, tx.fee)?;
            events.push(Event::FeePaid {
                to: block.proposer,
                amount: tx.fee,
            });
        }
        events.extend(self.apply_action(state, block, tx.sender, tx.fee, &tx.action)?);
        Ok(Receipt {
            tx_hash: signed.hash(),
            height: block.height,
            index,
            sender: tx.sender,
            kind: tx.action.kind(),
            fee: tx.fee,
            events,
        })
    }

    fn apply_action(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        fee: Amount,
        action: &Action,
    ) -> Result<Vec<Event>, TxError> {
        match action {
            Action::Transfer { to, amount } => self.transfer(state, sender, fee, to, amount),
            Action::Bond { amount } => self.bond(state, sender, fee, amount),
            Action::Unbond { amount } => self.unbond(state, block, sender, amount),
            Action::Withdraw => self.withdraw(state, block, sender),
            Action::RegisterProvider { services, location } => {
                self.register_provider(state, block, sender, services, location)
            }
            Action::UpdateProvider { services, location } => {
                self.update_provider(state, block, sender, services, location)
            }
            Action::DeregisterProvider => self.deregister_provider(state, block, sender),
            Action::BuyDataCredits { amount } => self.buy_data_credits(state, sender, fee, amount),
            Action::SetOraclePrice { price_usd_micro } => {
                self.set_oracle_price(state, block, sender, price_usd_micro)
            }
            Action::RegisterValidator { consensus_address } => {
                self.register_validator(state, block, sender, consensus_address)
            }
            Action::DeregisterValidator => self.deregister_validator(state, sender),
            Action::ReportEquivocation { evidence } => {
                self.report_equivocation(state, block, evidence)
            }
            Action::Service { service, payload } => {
                self.apply_service_action(state, block, sender, service, payload)
            }
        }
    }

    fn transfer(
        &self,
        state: &mut Overlay<'_>,
        sender: Address,
        fee: Amount,
        to: &Address,
        amount: &Amount,
    ) -> Result<Vec<Event>, TxError> {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount);
        }
        // The fee was taken already; a total above u128 is still an overflow, not a
        // shortfall, so say so.
        amount.checked_add(fee).ok_or(TxError::AmountOverflow)?;
        debit(state, sender, *amount, fee)?;
        credit(state, *to, *amount)?;
        Ok(vec![Event::Transfer {
            from: sender,
            to: *to,
            amount: *amount,
        }])
    }

    fn bond(
        &self,
        state: &mut Overlay<'_>,
        sender: Address,
        fee: Amount,
        amount: &Amount,
    ) -> Result<Vec<Event>, TxError> {
        if amount.is_zero() {
            return Err(TxError::ZeroAmount);
        }
        debit(state, sender, *amount, fee)?;
        let key = StateKey::Stake(sender);
        let mut stake: Stake = state.get(&key)?.unwrap_or_default();
        stake.bonded = stake
            .bonded
            .checked_add(*amount)
            .ok_or(TxError::AmountOverflow)?;
        state.put(&key, &stake);
        Ok(vec![Event::Bonded { amount: *amount }])
    }

    fn unbond(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        amount: &Amount,
    ) -> Result<Vec<Event>, TxError> {
        let g = &self.genesis;
        if amount.is_zero() {
            return Err(TxError::ZeroAmount);
        }
        let key = StateKey::Stake(sender);
        let mut stake: Stake = state.get(&key)?.unwrap_or_default();
        let remaining = stake
            .bonded
            .checked_sub(*amount)
            .ok_or(TxError::InsufficientStake {
                requested: *amount,
                bonded: stake.bonded,
            })?;
        let required = self.required_stake(state, &sender, block.height)?;
        if remaining < required {
            return Err(TxError::StakeBelowMinimum {
                required,
                bonded: remaining,
            });
        }
        if stake.unbonding.len() >= usize::from(g.staking.max_unbonding_entries) {
            return Err(TxError::TooManyUnbonding {
                limit: g.staking.max_unbonding_entries,
            });
        }
        let release_height = block.height.saturating_add(g.staking.unbonding_blocks);
        stake.bonded = remaining;
        stake.unbonding.push(Unbonding {
            amount: *amount,
            release_height,
        });
        state.put(&key, &stake);
        Ok(vec![Event::Unbonding {
            amount: *amount,
            release_height,
        }])
    }

    fn withdraw(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
    ) -> Result<Vec<Event>, TxError> {
        let key = StateKey::Stake(sender);
        let mut stake: Stake = state.get(&key)?.unwrap_or_default();
        let (matured, pending): (Vec<_>, Vec<_>) = stake
            .unbonding
            .into_iter()
            .partition(|u| u.release_height <= block.height);
        stake.unbonding = pending;
        let amount = matured
            .iter()
            .try_fold(Amount::ZERO, |acc, u| acc.checked_add(u.amount))
            .ok_or(TxError::AmountOverflow)?;
        if amount.is_zero() {
            return Err(TxError::NothingToWithdraw);
        }
        state.put(&key, &stake);
        credit(state, sender, amount)?;
        Ok(vec![Event::Withdrawn { amount }])
    }

    fn register_provider(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        services: &[ServiceOffer],
        location: &Option<GeoLocation>,
    ) -> Result<Vec<Event>, TxError> {
        let key = StateKey::Provider(sender);
        if state.get::<Provider>(&key)?.is_some() {
            return Err(TxError::ProviderExists);
        }
        self.check_offers(services, location)?;
        self.check_stake_covers(state, &sender, services, block.height)?;
        // Re-registering picks up the address's old record: reputation is not reset by leaving.
        let history: ProviderHistory = state
            .get(&StateKey::ProviderHistory(sender))?
            .unwrap_or_default();
        let provider = Provider {
            address: sender,
            services: services.to_vec(),
            location: *location,
            registered_height: block.height,
            updated_height: block.height,
            reputation_alpha: history.reputation_alpha,
            reputation_beta: history.reputation_beta,
            failures: history.failures,
        };
        state.put(&key, &provider);
        let mut set: Vec<Address> = state.get(&StateKey::ProviderSet)?.unwrap_or_default();
        if let Err(pos) = set.binary_search(&sender) {
            set.insert(pos, sender);
        }
        state.put(&StateKey::ProviderSet, &set);
        Ok(vec![Event::ProviderRegistered])
    }

    fn update_provider(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        services: &[ServiceOffer],
        location: &Option<GeoLocation>,
    ) -> Result<Vec<Event>, TxError> {
        let key = StateKey::Provider(sender);
        let mut provider: Provider = state.get(&key)?.ok_or(TxError::NotAProvider)?;
        self.check_offers(services, location)?;
        self.check_stake_covers(state, &sender, services, block.height)?;
        // Dropping a service must not drop what is owed to it.
        for dropped in provider
            .services
            .iter()
            .filter(|old| !services.iter().any(|new| new.service == old.service))
        {
            let count = self.open_obligations(state, block, sender, &dropped.service)?;
            if count > 0 {
                return Err(TxError::ObligationsOpen {
                    service: dropped.service,
                    count,
                });
            }
        }
        provider.services = services.to_vec();
        provider.location = *location;
        provider.updated_height = block.height;
        state.put(&key, &provider);
        Ok(vec![Event::ProviderUpdated])
    }

    /// What `provider` still owes `service` (0 for a service not registered here).
    fn open_obligations(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        provider: Address,
        service: &ServiceKind,
    ) -> Result<u64, TxError> {
        let Some(registered) = self.service(service) else {
            return Ok(0);
        };
        let ctx = ServiceContext::new(
            state,
            &self.genesis,
            block,
            *service,
            registered.params.as_ref(),
        );
        registered.module.open_obligations(&ctx, provider)
    }

    /// Leaves the provider set. With obligations still open (a graceful exit not finished)
    /// it forfeits `exit_forfeit_bps` of its stake per service owed, and the services treat
    /// what it held as lost.
    fn deregister_provider(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
    ) -> Result<Vec<Event>, TxError> {
        let key = StateKey::Provider(sender);
        let Some(offered) = state.get::<Provider>(&key)? else {
            return Err(TxError::NotAProvider);
        };
        let mut events = Vec::new();
        for offer in &offered.services {
            let count = self.open_obligations(state, block, sender, &offer.service)?;
            if count == 0 {
                continue;
            }
            let Some(registered) = self.service(&offer.service) else {
                continue;
            };
            let mut ctx = ServiceContext::new(
                state,
                &self.genesis,
                block,
                offer.service,
                registered.params.as_ref(),
            );
            events.push(ctx.slash(
                sender,
                self.genesis.slashing.exit_forfeit_bps,
                &format!(
                    "left {} with {count} open obligations, without a graceful exit",
                    offer.service
                ),
            )?);
        }
        // Re-read: the slash counted a failure on the record.
        let provider = state.get::<Provider>(&key)?.unwrap_or(offered);
        state.delete(&key);
        state.put(
            &StateKey::ProviderHistory(sender),
            &ProviderHistory {
                reputation_alpha: provider.reputation_alpha,
                reputation_beta: provider.reputation_beta,
                failures: provider.failures,
            },
        );
        let mut set: Vec<Address> = state.get(&StateKey::ProviderSet)?.unwrap_or_default();
        set.retain(|a| *a != sender);
        state.put(&StateKey::ProviderSet, &set);
        events.push(Event::ProviderDeregistered);
        Ok(events)
    }

    fn buy_data_credits(
        &self,
        state: &mut Overlay<'_>,
        sender: Address,
        fee: Amount,
        amount: &Amount,
    ) -> Result<Vec<Event>, TxError> {
        let g = &self.genesis;
        if amount.is_zero() {
            return Err(TxError::ZeroAmount);
        }
        let price: OraclePrice = state
            .get(&StateKey::OraclePrice)?
            .ok_or(StateError::Missing("oracle price"))?;
        let scale = 10u128.pow(u32::from(g.token.decimals));
        let usd_micro = amount
            .mul_div(u128::from(price.price_usd_micro), scale)
            .ok_or(TxError::AmountOverflow)?;
        let data_credits = usd_micro.0 / u128::from(g.data_credits.dc_price_usd_micro);
        if data_credits == 0 {
            return Err(TxError::AmountTooSmall);
        }
        debit(state, sender, *amount, fee)?;
        burn(state, *amount)?;
        let key = StateKey::Account(sender);
        let mut account: Account = state.get(&key)?.unwrap_or_default();
        account.data_credits = account
            .data_credits
            .checked_add(data_credits)
            .ok_or(TxError::AmountOverflow)?;
        state.put(&key, &account);
        update_supply(state, |supply| {
            supply.data_credits_outstanding =
                supply.data_credits_outstanding.checked_add(data_credits)?;
            Some(())
        })?;
        Ok(vec![Event::DataCreditsMinted {
            tokens_burned: *amount,
            data_credits,
            price_usd_micro: price.price_usd_micro,
        }])
    }

    /// Records an oracle key's report; the price changes only at the epoch boundary
    /// ([`Protocol::apply_oracle_reports`]), so purchases and payouts within an epoch all use
    /// the price everyone saw at its start.
    fn set_oracle_price(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        price_usd_micro: &u64,
    ) -> Result<Vec<Event>, TxError> {
        let g = &self.genesis;
        if !g.data_credits.oracle_keys.contains(&sender) {
            return Err(TxError::Unauthorized);
        }
        if *price_usd_micro == 0 {
            return Err(TxError::InvalidPrice);
        }
        let mut reports: OracleReports = state.get(&StateKey::OracleReports)?.unwrap_or_default();
        reports.insert(
            sender,
            OracleReport {
                price_usd_micro: *price_usd_micro,
                height: block.height,
            },
        );
        state.put(&StateKey::OracleReports, &reports);
        Ok(vec![Event::OraclePriceReported {
            oracle: sender,
            price_usd_micro: *price_usd_micro,
        }])
    }

    /// After the epoch's payouts: the next epoch's token price from the oracle reports,
    /// bounded by `max_price_move_bps`.
    fn apply_oracle_reports(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        events: &mut Vec<Event>,
    ) -> Result<(), TxError> {
        let current: OraclePrice = state
            .get(&StateKey::OraclePrice)?
            .ok_or(StateError::Missing("oracle price"))?;
        let reports: OracleReports = state.get(&StateKey::OracleReports)?.unwrap_or_default();
        let next = next_oracle_price(
            current.price_usd_micro,
            &reports,
            self.genesis.data_credits.max_price_move_bps,
        );
        if next != current.price_usd_micro {
            state.put(
                &StateKey::OraclePrice,
                &OraclePrice {
                    price_usd_micro: next,
                    updated_height: block.height,
                },
            );
            events.push(Event::OraclePriceSet {
                price_usd_micro: next,
            });
        }
        Ok(())
    }

    fn register_validator(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        consensus_address: &str,
    ) -> Result<Vec<Event>, TxError> {
        let g = &self.genesis;
        check_consensus_address(consensus_address)?;
        if state
            .get::<state::EquivocationRecord>(&StateKey::Equivocation(sender))?
            .is_some()
        {
            return Err(TxError::ValidatorTombstoned);
        }
        let stake: Stake = state.get(&StateKey::Stake(sender))?.unwrap_or_default();
        let required = g.staking.min_stake_validator;
        if stake.bonded < required {
            return Err(TxError::StakeBelowMinimum {
                required,
                bonded: stake.bonded,
            });
        }
        let mut candidates: Vec<Address> = state
            .get(&StateKey::ValidatorCandidates)?
            .unwrap_or_default();
        if let Err(at) = candidates.binary_search(&sender) {
            if candidates.len() >= MAX_VALIDATOR_CANDIDATES {
                return Err(TxError::TooManyValidatorCandidates {
                    limit: MAX_VALIDATOR_CANDIDATES,
                });
            }
            candidates.insert(at, sender);
            state.put(&StateKey::ValidatorCandidates, &candidates);
        }
        state.put(
            &StateKey::ValidatorCandidate(sender),
            &ValidatorCandidate {
                address: sender,
                consensus_address: Some(consensus_address.to_string()),
                registered_height: block.height,
            },
        );
        Ok(vec![Event::ValidatorRegistered {
            consensus_address: consensus_address.to_string(),
        }])
    }

    /// Checks equivocation evidence against the era's validator set, slashes the offender
    /// `double_sign_bps` (once per era) and bars it: it leaves candidacy, and the next set
    /// chosen leaves it out (a carried-over set too, unless that would leave none). A set
    /// already chosen is left alone: the consensus layer has learnt its keys.
    fn report_equivocation(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        evidence: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let invalid = |e: equivocation::EvidenceError| TxError::InvalidEvidence(e.to_string());
        let ev = equivocation::Evidence::decode(evidence).map_err(invalid)?;
        let era_now = validator_era(block.height, self.genesis.chain.epoch_blocks);
        if ev.epoch > era_now + 1 {
            return Err(TxError::InvalidEvidence(format!(
                "era {} has not started (now {era_now})",
                ev.epoch
            )));
        }
        let mut set: Vec<Address> = state
            .get::<ValidatorSet>(&StateKey::ValidatorSet(ev.epoch))?
            .unwrap_or_default()
            .validators;
        // Simplex numbers an era's participants in key order.
        set.sort();
        let offender = *set.get(ev.signer as usize).ok_or_else(|| {
            TxError::InvalidEvidence(format!(
                "era {} has {} validators, no signer {}",
                ev.epoch,
                set.len(),
                ev.signer
            ))
        })?;
        ev.verify(&self.genesis.chain_id, &offender)
            .map_err(invalid)?;
        let key = StateKey::Equivocation(offender);
        let mut record: state::EquivocationRecord = state.get(&key)?.unwrap_or_default();
        if let Err(at) = record.eras.binary_search(&ev.epoch) {
            record.eras.insert(at, ev.epoch);
        } else {
            return Err(TxError::EquivocationAlreadySlashed { era: ev.epoch });
        }
        state.put(&key, &record);
        let amount = service::slash_stake(state, offender, self.genesis.slashing.double_sign_bps)?;
        state.delete(&StateKey::ValidatorCandidate(offender));
        let mut candidates: Vec<Address> = state
            .get(&StateKey::ValidatorCandidates)?
            .unwrap_or_default();
        if let Ok(at) = candidates.binary_search(&offender) {
            candidates.remove(at);
            state.put(&StateKey::ValidatorCandidates, &candidates);
        }
        Ok(vec![Event::ValidatorSlashed {
            validator: offender,
            epoch: ev.epoch,
            view: ev.view,
            amount,
            reason: format!("{} in era {} view {}", ev.kind.as_str(), ev.epoch, ev.view),
        }])
    }

    fn deregister_validator(
        &self,
        state: &mut Overlay<'_>,
        sender: Address,
    ) -> Result<Vec<Event>, TxError> {
        let key = StateKey::ValidatorCandidate(sender);
        if state.get::<ValidatorCandidate>(&key)?.is_none() {
            return Err(TxError::NotAValidatorCandidate);
        }
        state.delete(&key);
        let mut candidates: Vec<Address> = state
            .get(&StateKey::ValidatorCandidates)?
            .unwrap_or_default();
        candidates.retain(|a| *a != sender);
        state.put(&StateKey::ValidatorCandidates, &candidates);
        Ok(vec![Event::ValidatorDeregistered])
    }

    fn apply_service_action(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        sender: Address,
        service: &ServiceKind,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let g = &self.genesis;
        let registered = self
            .service(service)
            .ok_or(TxError::ServiceNotEnabled(*service))?;
        let module = registered.module.as_ref();
        if payload.len() > module.max_payload_bytes() {
            return Err(TxError::TooLarge {
                size_bytes: payload.len(),
                max_bytes: module.max_payload_bytes(),
            });
        }
        let mut ctx = ServiceContext::new(state, g, block, *service, registered.params.as_ref());
        module.apply(&mut ctx, sender, payload)
    }

    fn check_offers(
        &self,
        services: &[ServiceOffer],
        location: &Option<GeoLocation>,
    ) -> Result<(), TxError> {
        if services.is_empty() || services.len() > MAX_SERVICE_OFFERS {
            return Err(TxError::InvalidServices(format!(
                "offer between 1 and {MAX_SERVICE_OFFERS} services"
            )));
        }
        for (i, offer) in services.iter().enumerate() {
            if self.service(&offer.service).is_none() {
                return Err(TxError::ServiceNotEnabled(offer.service));
            }
            if services[..i].iter().any(|o| o.service == offer.service) {
                return Err(TxError::InvalidServices(format!(
                    "{} listed twice",
                    offer.service
                )));
            }
            if offer.capacity == 0 {
                return Err(TxError::InvalidServices(format!(
                    "{} capacity must be positive",
                    offer.service
                )));
            }
        }
        if let Some(loc) = location
            && !loc.is_valid()
        {
            return Err(TxError::InvalidLocation);
        }
        Ok(())
    }

    fn check_stake_covers(
        &self,
        state: &Overlay<'_>,
        sender: &Address,
        services: &[ServiceOffer],
        height: u64,
    ) -> Result<(), TxError> {
        let mut required = self.validator_stake_required(state, sender, height)?;
        for offer in services {
            required = required
                .checked_add(self.genesis.staking.min_stake(offer.service))
                .ok_or(TxError::AmountOverflow)?;
        }
        let stake: Stake = state.get(&StateKey::Stake(*sender))?.unwrap_or_default();
        if stake.bonded < required {
            return Err(TxError::StakeBelowMinimum {
                required,
                bonded: stake.bonded,
            });
        }
        Ok(())
    }

    /// The validator minimum for a candidate, and for a validator of the current or the next
    /// set, candidate or not: one that could unbond below the minimum while it still signs
    /// would leave nothing for an equivocation slash to take.
    fn validator_stake_required(
        &self,
        state: &Overlay<'_>,
        who: &Address,
        height: u64,
    ) -> Result<Amount, TxError> {
        let candidate = state.get::<ValidatorCandidate>(&StateKey::ValidatorCandidate(*who))?;
        let era = validator_era(height, self.genesis.chain.epoch_blocks);
        let mut in_set = false;
        for e in [era, era + 1] {
            let set: ValidatorSet = state.get(&StateKey::ValidatorSet(e))?.unwrap_or_default();
            in_set |= set.validators.contains(who);
        }
        Ok(if candidate.is_some() || in_set {
            self.genesis.staking.min_stake_validator
        } else {
            Amount::ZERO
        })
    }

    /// Stake an account must keep bonded: the sum of the minimums of the services it offers,
    /// plus the validator minimum if it validates.
    pub fn required_stake(
        &self,
        state: &Overlay<'_>,
        who: &Address,
        height: u64,
    ) -> Result<Amount, TxError> {
        let mut required = self.validator_stake_required(state, who, height)?;
        if let Some(p) = state.get::<Provider>(&StateKey::Provider(*who))? {
            for offer in &p.services {
                required = required
                    .checked_add(self.genesis.staking.min_stake(offer.service))
                    .ok_or(TxError::AmountOverflow)?;
            }
        }
        Ok(required)
    }

    /// Emission for `epoch`: the initial amount halved once per completed halving interval.
    pub fn epoch_emission(&self, epoch: u64) -> Amount {
        let halvings = epoch / self.genesis.emission.halving_interval_epochs;
        if halvings >= 128 {
            return Amount::ZERO;
        }
        Amount(self.genesis.emission.initial_epoch_emission.0 >> halvings)
    }

    /// Runs after the block's transactions. At an epoch boundary: service epoch hooks, then
    /// emission and rewards for the epoch that just ended. Each service hook runs in its own
    /// layer: a failing one leaves no writes and an [`Event::ServiceHookFailed`], and the
    /// block goes on. Only a failure of this node's store stops it.
    pub fn end_block(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
    ) -> Result<EndBlockOutcome, TxError> {
        let mut outcome = EndBlockOutcome::default();
        let epoch_blocks = self.genesis.chain.epoch_blocks;
        if block.height == 0 {
            return Ok(outcome);
        }
        for registered in &self.services {
            self.run_hook(
                state,
                block,
                registered,
                ServiceHook::EndBlock,
                &mut outcome.events,
                |module, ctx| module.end_block(ctx),
            )?;
        }
        if !block.height.is_multiple_of(epoch_blocks) {
            return Ok(outcome);
        }
        let epoch = block.epoch(epoch_blocks);
        for registered in &self.services {
            self.run_hook(
                state,
                block,
                registered,
                ServiceHook::EndEpoch,
                &mut outcome.events,
                |module, ctx| module.end_epoch(ctx, epoch),
            )?;
        }
        let rewards = self.distribute_epoch_rewards(state, block, epoch, &mut outcome.events)?;
        state.put(&StateKey::EpochRewards(epoch), &rewards);
        self.apply_oracle_reports(state, block, &mut outcome.events)?;
        self.choose_next_validator_set(state, block.height)?;
        outcome.epoch_rewards = Some(rewards);
        Ok(outcome)
    }

    /// Runs one service hook in its own overlay layer. On failure its writes are dropped and
    /// the failure becomes an event; `Ok(None)` then. A failure of the node's own store is
    /// not the service's and is returned.
    fn run_hook<T>(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        registered: &RegisteredService,
        hook: ServiceHook,
        events: &mut Vec<Event>,
        run: impl FnOnce(&dyn ServiceModule, &mut ServiceContext<'_, '_>) -> Result<T, TxError>,
    ) -> Result<Option<T>, TxError> {
        let service = registered.module.service();
        state.begin();
        let result = {
            let mut ctx = ServiceContext::new(
                state,
                &self.genesis,
                block,
                service,
                registered.params.as_ref(),
            );
            run(registered.module.as_ref(), &mut ctx)
        };
        match result {
            Ok(value) => {
                state.commit();
                Ok(Some(value))
            }
            Err(TxError::Store(e)) if e.is_backend() => {
                state.rollback();
                Err(TxError::Store(e))
            }
            Err(e) => {
                state.rollback();
                events.push(Event::ServiceHookFailed {
                    service,
                    hook,
                    reason: error::error_chain(&e)
                        .chars()
                        .take(MAX_HOOK_REASON_CHARS)
                        .collect(),
                });
                Ok(None)
            }
        }
    }

    /// At the first block of validator-set era `e`, fixes the set of era `e + 1`: the top
    /// genesis-N candidates by bonded stake (ties by address) that still hold the validator
    /// minimum. With no eligible candidate the current set carries over.
    fn choose_next_validator_set(
        &self,
        state: &mut Overlay<'_>,
        height: u64,
    ) -> Result<(), TxError> {
        let era = validator_era(height, self.genesis.chain.epoch_blocks);
        let candidates: Vec<Address> = state
            .get(&StateKey::ValidatorCandidates)?
            .unwrap_or_default();
        let minimum = self.genesis.staking.min_stake_validator;
        let mut ranked = Vec::with_capacity(candidates.len());
        for address in candidates {
            let stake: Stake = state.get(&StateKey::Stake(address))?.unwrap_or_default();
            if stake.bonded >= minimum && !stake.bonded.is_zero() {
                ranked.push((stake.bonded, address));
            }
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.truncate(self.genesis.validators.len().max(1));
        let next = if ranked.is_empty() {
            // No candidates: the set carries over, less any validator that equivocated
            // (unless that would leave none).
            let mut current: ValidatorSet =
                state.get(&StateKey::ValidatorSet(era))?.unwrap_or_default();
            let mut honest = Vec::with_capacity(current.validators.len());
            for v in &current.validators {
                if state
                    .get::<state::EquivocationRecord>(&StateKey::Equivocation(*v))?
                    .is_none()
                {
                    honest.push(*v);
                }
            }
            if !honest.is_empty() {
                current.validators = honest;
            }
            current
        } else {
            let mut validators: Vec<Address> = ranked.into_iter().map(|(_, a)| a).collect();
            validators.sort();
            ValidatorSet { validators }
        };
        state.put(&StateKey::ValidatorSet(era + 1), &next);
        Ok(())
    }

    fn distribute_epoch_rewards(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        epoch: u64,
        events: &mut Vec<Event>,
    ) -> Result<EpochRewards, TxError> {
        let height = block.height;
        let emission = self.epoch_emission(epoch);
        let split = &self.genesis.reward_split;
        let mut buckets = Vec::new();
        let mut rewards = Vec::new();

        // Validators of the era that just ended, weighted by bonded stake.
        let previous = validator_era(height.saturating_sub(1), self.genesis.chain.epoch_blocks);
        let set: ValidatorSet = state
            .get(&StateKey::ValidatorSet(previous))?
            .unwrap_or_default();
        let mut weights = Vec::new();
        for v in &set.validators {
            let stake: Stake = state.get(&StateKey::Stake(*v))?.unwrap_or_default();
            weights.push((*v, stake.bonded.0));
        }
        let allocation = emission
            .mul_div(u128::from(split.validators_bps), BPS_DENOMINATOR)
            .ok_or(TxError::AmountOverflow)?;
        buckets.push(split_bucket(
            RewardKind::Validator,
            allocation,
            &weights,
            &mut rewards,
        )?);

        // Services, weighted by verified work units of the epoch.
        let work: EpochWork = state.get(&StateKey::EpochWork(epoch))?.unwrap_or_default();
        for registered in &self.services {
            let service = registered.module.service();
            let allocation = emission
                .mul_div(u128::from(split.service_bps(service)), BPS_DENOMINATOR)
                .ok_or(TxError::AmountOverflow)?;
            let split = self.run_hook(
                state,
                block,
                registered,
                ServiceHook::EpochRewards,
                events,
                |module, ctx| {
                    let payouts = module.epoch_rewards(ctx, epoch, allocation)?;
                    if let Some(payouts) = &payouts {
                        check_own_split(allocation, payouts)?;
                    }
                    Ok(payouts)
                },
            )?;
            match split {
                Some(Some(payouts)) => {
                    buckets.push(own_split_bucket(
                        service,
                        allocation,
                        &payouts,
                        &mut rewards,
                    )?);
                    continue;
                }
                // A service whose split failed pays nothing this epoch: its share is
                // unallocated rather than guessed.
                None => {
                    buckets.push(split_bucket(
                        RewardKind::Service(service),
                        allocation,
                        &[],
                        &mut rewards,
                    )?);
                    continue;
                }
                Some(None) => {}
            }
            let weights: Vec<(Address, u128)> = work
                .units
                .get(&service)
                .map(|m| m.iter().map(|(a, u)| (*a, u128::from(*u))).collect())
                .unwrap_or_default();
            buckets.push(split_bucket(
                RewardKind::Service(service),
                allocation,
                &weights,
                &mut rewards,
            )?);
        }

        let mut minted = Amount::ZERO;
        for entry in &rewards {
            mint_to(state, entry.account, entry.amount)?;
            minted = minted
                .checked_add(entry.amount)
                .ok_or(TxError::AmountOverflow)?;
        }
        let unallocated = emission.saturating_sub(minted);
        Ok(EpochRewards {
            epoch,
            height,
            emission,
            minted,
            unallocated,
            buckets,
            rewards,
        })
    }

    /// Executes a block's transactions and end-of-block logic on `state`. Signatures must
    /// already be verified (see [`Protocol::verify_signatures`]). Any invalid transaction makes
    /// the whole block invalid: producers drop failing transactions before proposing.
    pub fn execute_block(
        &self,
        state: &mut Overlay<'_>,
        block: &BlockContext,
        txs: &[SignedTransaction],
    ) -> Result<BlockOutcome, BlockError> {
        if txs.len() > self.genesis.chain.max_block_txs as usize {
            return Err(BlockError::TooManyTxs {
                count: txs.len(),
                limit: self.genesis.chain.max_block_txs,
            });
        }
        let mut receipts = Vec::with_capacity(txs.len());
        for (index, tx) in txs.iter().enumerate() {
            match self.apply_tx(state, block, tx, index as u32) {
                Ok(r) => receipts.push(r),
                Err(TxError::Store(e)) => return Err(BlockError::Store(e)),
                Err(error) => {
                    return Err(BlockError::InvalidTx {
                        index,
                        tx_hash: tx.hash(),
                        error,
                    });
                }
            }
        }
        let end = self.end_block(state, block).map_err(|e| match e {
            TxError::Store(s) => BlockError::Store(s),
            other => BlockError::EndBlock(other),
        })?;
        Ok(BlockOutcome {
            receipts,
            epoch_rewards: end.epoch_rewards,
            events: end.events,
        })
    }
}

/// Splits `allocation` pro rata to `weights` (rounding down); whatever is not paid out —
/// everything when the total weight is zero — is unallocated and never minted.
fn split_bucket(
    kind: RewardKind,
    allocation: Amount,
    weights: &[(Address, u128)],
    rewards: &mut Vec<RewardEntry>,
) -> Result<BucketOutcome, TxError> {
    let total: u128 = weights
        .iter()
        .try_fold(0u128, |acc, (_, w)| acc.checked_add(*w))
        .ok_or(TxError::AmountOverflow)?;
    let mut minted = Amount::ZERO;
    if total > 0 {
        for (account, weight) in weights {
            let amount = allocation
                .mul_div(*weight, total)
                .ok_or(TxError::AmountOverflow)?;
            if amount.is_zero() {
                continue;
            }
            minted = minted.checked_add(amount).ok_or(TxError::AmountOverflow)?;
            rewards.push(RewardEntry {
                account: *account,
                kind,
                amount,
            });
        }
    }
    Ok(BucketOutcome {
        kind,
        allocation,
        minted,
        unallocated: allocation.saturating_sub(minted),
        work_units: total,
    })
}

/// Refuses a service's own split that pays out more than its allocation.
fn check_own_split(allocation: Amount, payouts: &[(Address, Amount)]) -> Result<(), TxError> {
    let mut total = Amount::ZERO;
    for (_, amount) in payouts {
        total = total.checked_add(*amount).ok_or(TxError::AmountOverflow)?;
    }
    if total > allocation {
        return Err(TxError::Store(StateError::Inconsistent(format!(
            "split {total} of an allocation of {allocation}"
        ))));
    }
    Ok(())
}

/// Records a service's own split of its allocation (already checked by [`check_own_split`]).
fn own_split_bucket(
    service: ServiceKind,
    allocation: Amount,
    payouts: &[(Address, Amount)],
    rewards: &mut Vec<RewardEntry>,
) -> Result<BucketOutcome, TxError> {
    let kind = RewardKind::Service(service);
    let mut minted = Amount::ZERO;
    for (account, amount) in payouts {
        minted = minted.checked_add(*amount).ok_or(TxError::AmountOverflow)?;
        if !amount.is_zero() {
            rewards.push(RewardEntry {
                account: *account,
                kind,
                amount: *amount,
            });
        }
    }
    Ok(BucketOutcome {
        kind,
        allocation,
        minted,
        unallocated: allocation.saturating_sub(minted),
        work_units: payouts.len() as u128,
    })
}

/// Takes `amount` out of `who`'s balance (the fee was already taken: `fee` only improves the
/// error message).
fn debit(
    state: &mut Overlay<'_>,
    who: Address,
    amount: Amount,
    fee: Amount,
) -> Result<(), TxError> {
    let key = StateKey::Account(who);
    let mut account: Account = state
        .get(&key)?
        .ok_or_else(|| TxError::UnknownAccount(who.to_string()))?;
    account.balance = account
        .balance
        .checked_sub(amount)
        .ok_or(TxError::InsufficientBalance {
            needed: amount.checked_add(fee).unwrap_or(Amount(u128::MAX)),
            available: account.balance.checked_add(fee).unwrap_or(account.balance),
        })?;
    state.put(&key, &account);
    Ok(())
}

fn credit(state: &mut Overlay<'_>, who: Address, amount: Amount) -> Result<(), TxError> {
    let key = StateKey::Account(who);
    let mut account: Account = state.get(&key)?.unwrap_or_default();
    account.balance = account
        .balance
        .checked_add(amount)
        .ok_or(TxError::AmountOverflow)?;
    state.put(&key, &account);
    Ok(())
}

#[cfg(test)]
mod tests;

/// A consensus endpoint is `host:port`: printable ASCII, bounded, with a numeric port.
fn check_consensus_address(address: &str) -> Result<(), TxError> {
    let bad = |why: &str| Err(TxError::InvalidConsensusAddress(why.to_string()));
    if address.is_empty() || address.len() > MAX_CONSENSUS_ADDRESS_BYTES {
        return bad("must be 1 to 128 bytes");
    }
    if !address.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("must be printable ASCII without spaces");
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("must be host:port");
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return bad("must be host:port with a port from 1 to 65535");
    }
    Ok(())
}
