//! The seam through which a service (storage, compute, coverage, video) plugs into the ledger:
//! it registers a [`ServiceModule`] that decodes and applies its own transactions and checks its
//! own proofs, purely, and uses a [`ServiceContext`] to record verified work, pay providers in
//! Data Credits and slash them. The core ledger never looks inside a service payload.

use crate::block::Event;
use crate::error::TxError;
use crate::params::{BPS_DENOMINATOR, Genesis, GenesisError};
use crate::services::DevnetDefaults;
use crate::state::{
    Account, EpochWork, MAX_PROOF_FAILURES_KEPT, OraclePrice, Overlay, ProofFailure, Provider,
    Stake, StateError, StateKey, Supply,
};
use depin_types::{Address, Amount, ServiceKind};
use std::any::Any;
use std::sync::Arc;

/// Where in the chain a transaction or epoch hook is executing.
#[derive(Debug, Clone)]
pub struct BlockContext {
    pub height: u64,
    /// Hash of the parent block: the chain's entropy (challenges, placement).
    pub parent: depin_types::Hash,
    pub timestamp_ms: u64,
    pub proposer: Address,
}

impl BlockContext {
    /// The epoch a block at this height belongs to (blocks 1..=epoch_blocks are epoch 0).
    pub fn epoch(&self, epoch_blocks: u64) -> u64 {
        self.height.saturating_sub(1) / epoch_blocks.max(1)
    }
}

/// A service's event enum: borsh bytes in a receipt's [`Event::Service`], tagged JSON in the
/// API. Readers decode it with [`Event::service_event`]; nobody parses event text.
pub trait ServiceEvent:
    borsh::BorshSerialize + borsh::BorshDeserialize + serde::Serialize + serde::de::DeserializeOwned
{
    const SERVICE: ServiceKind;

    /// This event as a receipt carries it.
    fn to_event(&self) -> Event {
        Event::Service {
            service: Self::SERVICE,
            data: depin_types::encode(self),
        }
    }
}

/// The tagged JSON of a service event's bytes, if they decode as `E`.
pub fn event_json<E: ServiceEvent>(data: &[u8]) -> Option<serde_json::Value> {
    let event: E = depin_types::decode_bounded(data, crate::block::MAX_SERVICE_EVENT_BYTES).ok()?;
    serde_json::to_value(event).ok()
}

/// A service's consensus rules. Implementations are pure: no I/O, no clock, no randomness
/// beyond what the context provides.
pub trait ServiceModule: Send + Sync {
    fn service(&self) -> ServiceKind;

    /// Largest payload this service accepts; checked before `apply` sees the bytes.
    fn max_payload_bytes(&self) -> usize;

    /// The tagged JSON of one of this service's events (see [`event_json`]).
    fn event_json(&self, data: &[u8]) -> Option<serde_json::Value>;

    /// Decodes and checks this service's genesis section, once, for its hooks to read
    /// through [`ServiceContext::params`] (see [`crate::services::load_params`]).
    fn load_params(&self, _genesis: &Genesis) -> Result<Arc<dyn Any + Send + Sync>, GenesisError> {
        Ok(Arc::new(()))
    }

    /// What a devnet genesis gives this service.
    fn devnet(&self) -> DevnetDefaults {
        DevnetDefaults {
            reward_bps: 0,
            min_stake_tokens: 0,
            params: toml::Table::new(),
        }
    }

    /// Decodes and applies one service transaction from `sender`.
    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError>;

    /// Runs at each epoch boundary before rewards are computed: expire deals, slash missing
    /// proofs, and so on.
    fn end_epoch(&self, _ctx: &mut ServiceContext<'_, '_>, _epoch: u64) -> Result<(), TxError> {
        Ok(())
    }

    /// Runs after every block's transactions, before any epoch processing.
    fn end_block(&self, _ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
        Ok(())
    }

    /// What `provider` still owes this service (pieces held, jobs running): while any is
    /// open it cannot drop the service, and deregistering forfeits `exit_forfeit_bps`.
    fn open_obligations(
        &self,
        _ctx: &ServiceContext<'_, '_>,
        _provider: Address,
    ) -> Result<u64, TxError> {
        Ok(0)
    }

    /// Splits this service's share of an epoch's emission itself (at most `allocation` in
    /// all). `None`, the default, splits it by the work units recorded in the epoch.
    fn epoch_rewards(
        &self,
        _ctx: &mut ServiceContext<'_, '_>,
        _epoch: u64,
        _allocation: Amount,
    ) -> Result<Option<Vec<(Address, Amount)>>, TxError> {
        Ok(None)
    }
}

/// Which service hook ran (for the event a failing one leaves).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceHook {
    EndBlock,
    EndEpoch,
    EpochRewards,
}

impl ServiceHook {
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceHook::EndBlock => "end_block",
            ServiceHook::EndEpoch => "end_epoch",
            ServiceHook::EpochRewards => "epoch_rewards",
        }
    }
}

impl std::fmt::Display for ServiceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a service may do to the ledger: the only door. Its own records go through the
/// record accessors (stored under the service's prefix); every economic effect (work,
/// slashing, escrow, Data Credit payments and burns) is a method here, so supply accounting
/// stays in the ledger core.
pub struct ServiceContext<'s, 'a> {
    state: &'s mut Overlay<'a>,
    pub genesis: &'s Genesis,
    pub block: &'s BlockContext,
    service: ServiceKind,
    params: &'s (dyn Any + Send + Sync),
}

impl std::fmt::Debug for ServiceContext<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServiceContext({}, h={})",
            self.service, self.block.height
        )
    }
}

/// A provider below this reputation (parts per million) gets no new work from any service:
/// it is jailed until its record improves.
pub const MIN_PLACEMENT_REPUTATION_PPM: u64 = 500_000;

/// A registered provider that may take new work of a service.
#[derive(Debug, Clone)]
pub struct EligibleProvider {
    pub address: Address,
    pub offer: crate::tx::ServiceOffer,
    /// Reputation in parts per million (at least [`MIN_PLACEMENT_REPUTATION_PPM`]).
    pub reputation_ppm: u64,
    /// Bonded stake in whole multiples of the service's minimum, 1..=1,000,000: keeps weight
    /// products far from overflow.
    pub stake_weight: u128,
}

/// The providers, in registry order and not in `excluded`, that offer `service`, are above
/// the reputation bar and have at least the service's minimum stake bonded.
pub fn eligible_providers(
    state: &Overlay<'_>,
    genesis: &Genesis,
    service: ServiceKind,
    excluded: &[Address],
) -> Result<Vec<EligibleProvider>, StateError> {
    let set: Vec<Address> = state.get(&StateKey::ProviderSet)?.unwrap_or_default();
    let minimum = genesis.staking.min_stake(service);
    let mut out = Vec::new();
    for address in set.into_iter().filter(|a| !excluded.contains(a)) {
        let Some(provider) = state.get::<Provider>(&StateKey::Provider(address))? else {
            continue;
        };
        let Some(offer) = provider.services.iter().find(|o| o.service == service) else {
            continue;
        };
        let reputation_ppm = provider.reputation_ppm();
        if reputation_ppm < MIN_PLACEMENT_REPUTATION_PPM {
            continue;
        }
        let stake: Stake = state.get(&StateKey::Stake(address))?.unwrap_or_default();
        if stake.bonded < minimum || stake.bonded.is_zero() {
            continue;
        }
        out.push(EligibleProvider {
            address,
            offer: offer.clone(),
            reputation_ppm,
            stake_weight: (stake.bonded.0 / minimum.0.max(1)).clamp(1, 1_000_000),
        });
    }
    Ok(out)
}

/// Draws up to `count` distinct indices of `weights`, each with probability proportional to
/// its weight among those not drawn yet; draw `n` takes its randomness from `entropy(n)`
/// (e.g. the parent block hash, tagged). Zero weights are never drawn. Deterministic.
pub fn weighted_distinct(
    weights: &[u128],
    count: usize,
    entropy: impl Fn(u32) -> depin_types::Hash,
) -> Vec<usize> {
    let mut eligible: Vec<usize> = (0..weights.len()).filter(|i| weights[*i] > 0).collect();
    let mut chosen = Vec::with_capacity(count.min(eligible.len()));
    let mut draw = 0u32;
    while chosen.len() < count && !eligible.is_empty() {
        let total: u128 = eligible.iter().map(|i| weights[*i]).sum();
        let digest = entropy(draw);
        let mut r = [0u8; 16];
        r.copy_from_slice(&digest.as_bytes()[..16]);
        let mut point = u128::from_be_bytes(r) % total.max(1);
        let mut pick = 0;
        for (pos, i) in eligible.iter().enumerate() {
            if point < weights[*i] {
                pick = pos;
                break;
            }
            point -= weights[*i];
        }
        chosen.push(eligible.remove(pick));
        draw += 1;
    }
    chosen
}

impl<'s, 'a> ServiceContext<'s, 'a> {
    pub(crate) fn new(
        state: &'s mut Overlay<'a>,
        genesis: &'s Genesis,
        block: &'s BlockContext,
        service: ServiceKind,
        params: &'s (dyn Any + Send + Sync),
    ) -> ServiceContext<'s, 'a> {
        ServiceContext {
            state,
            genesis,
            block,
            service,
            params,
        }
    }

    /// The service this context belongs to.
    pub fn service(&self) -> ServiceKind {
        self.service
    }

    /// This service's genesis section as its module loaded it
    /// ([`ServiceModule::load_params`]).
    pub fn params<P: 'static>(&self) -> Result<&'s P, StateError> {
        self.params.downcast_ref::<P>().ok_or_else(|| {
            StateError::Inconsistent(format!(
                "{} parameters are not a {}",
                self.service,
                std::any::type_name::<P>()
            ))
        })
    }

    /// Providers that may take new work of this service (see [`eligible_providers`]).
    pub fn eligible_providers(
        &self,
        excluded: &[Address],
    ) -> Result<Vec<EligibleProvider>, StateError> {
        eligible_providers(self.state, self.genesis, self.service, excluded)
    }

    /// The token price the oracle last set.
    pub fn oracle_price(&self) -> Result<OraclePrice, StateError> {
        self.state
            .get(&StateKey::OraclePrice)?
            .ok_or(StateError::Missing("oracle price"))
    }

    /// Takes `data_credits` from `payer` and destroys them (a fee paid in Data Credits, or a
    /// packet whose value the service pays out of its own epoch share).
    pub fn burn_data_credits(&mut self, payer: Address, data_credits: u128) -> Result<(), TxError> {
        self.lock_data_credits(payer, data_credits)?;
        self.burn_escrowed_data_credits(data_credits)
    }

    /// Destroys `data_credits` this service holds in escrow (a protocol fee on a payment).
    pub fn burn_escrowed_data_credits(&mut self, data_credits: u128) -> Result<(), TxError> {
        update_supply(self.state, |supply| {
            supply.data_credits_outstanding =
                supply.data_credits_outstanding.checked_sub(data_credits)?;
            Some(())
        })
    }

    /// Removes one of this service's records.
    pub fn delete_record(&mut self, key: &[u8]) {
        self.put_record(key, None);
    }

    /// A borsh record of this service, decoded.
    pub fn get_decoded<T: borsh::BorshDeserialize>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StateError> {
        match self.get_record(key)? {
            Some(bytes) => borsh::from_slice(&bytes).map(Some).map_err(|e| {
                StateError::corrupt(format!("{} record {}", self.service, hex::encode(key)), e)
            }),
            None => Ok(None),
        }
    }

    pub fn put_encoded<T: borsh::BorshSerialize>(&mut self, key: &[u8], value: &T) {
        self.put_record(key, Some(depin_types::encode(value)));
    }

    pub fn get_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.state
            .get_raw(&StateKey::Service(self.service, key.to_vec()).to_bytes())
    }

    pub fn put_record(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.state.put_raw(
            StateKey::Service(self.service, key.to_vec()).to_bytes(),
            value,
        );
    }

    pub fn provider(&self, address: &Address) -> Result<Option<Provider>, StateError> {
        self.state.get(&StateKey::Provider(*address))
    }

    /// Credits verified work to `provider` in the current epoch; it earns a share of this
    /// service's emission in proportion. Also raises the provider's reputation.
    pub fn record_work(&mut self, provider: Address, units: u64) -> Result<Event, TxError> {
        let epoch = self.block.epoch(self.genesis.chain.epoch_blocks);
        let key = StateKey::EpochWork(epoch);
        let mut work: EpochWork = self.state.get(&key)?.unwrap_or_default();
        let slot = work
            .units
            .entry(self.service)
            .or_default()
            .entry(provider)
            .or_insert(0);
        *slot = slot.checked_add(units).ok_or(TxError::AmountOverflow)?;
        self.state.put(&key, &work);
        if let Some(mut p) = self.provider(&provider)? {
            p.reputation_alpha = p.reputation_alpha.saturating_add(1);
            self.state.put(&StateKey::Provider(provider), &p);
        }
        Ok(Event::WorkRecorded {
            service: self.service,
            provider,
            units,
        })
    }

    /// Slashes `fraction_bps` of the provider's stake at risk (bonded plus still unbonding:
    /// unbonding does not escape a fault), burned from the bonded stake first and then from
    /// the newest unbonding entries; lowers its reputation and records the reason where the
    /// operator can see it.
    pub fn slash(
        &mut self,
        provider: Address,
        fraction_bps: u16,
        reason: &str,
    ) -> Result<Event, TxError> {
        let amount = slash_stake(self.state, provider, fraction_bps)?;
        if let Some(mut p) = self.provider(&provider)? {
            p.reputation_beta = p.reputation_beta.saturating_add(1);
            p.failures.push(ProofFailure {
                height: self.block.height,
                service: self.service,
                reason: reason.chars().take(200).collect(),
                slashed: amount,
            });
            if p.failures.len() > MAX_PROOF_FAILURES_KEPT {
                p.failures.remove(0);
            }
            self.state.put(&StateKey::Provider(provider), &p);
        }
        Ok(Event::Slashed {
            provider,
            service: self.service,
            amount,
            reason: reason.chars().take(200).collect(),
        })
    }

    /// Records a fault the provider owned up to (it gave back work it could not do): its
    /// reputation drops as for a slash and the reason is on its record, but no stake is taken.
    pub fn record_fault(&mut self, provider: Address, reason: &str) -> Result<(), TxError> {
        if let Some(mut p) = self.provider(&provider)? {
            p.reputation_beta = p.reputation_beta.saturating_add(1);
            p.failures.push(ProofFailure {
                height: self.block.height,
                service: self.service,
                reason: reason.chars().take(200).collect(),
                slashed: Amount(0),
            });
            if p.failures.len() > MAX_PROOF_FAILURES_KEPT {
                p.failures.remove(0);
            }
            self.state.put(&StateKey::Provider(provider), &p);
        }
        Ok(())
    }

    /// Burns `data_credits` from the consumer and mints the provider tokens of the same USD
    /// value at the current oracle price (burn-and-mint equilibrium).
    pub fn pay_with_data_credits(
        &mut self,
        consumer: Address,
        provider: Address,
        data_credits: u128,
    ) -> Result<Event, TxError> {
        self.lock_data_credits(consumer, data_credits)?;
        self.pay_from_escrow(consumer, provider, data_credits)
    }

    /// Takes `data_credits` from the consumer's account into a service escrow (they stay in
    /// existence until paid out or refunded).
    pub fn lock_data_credits(
        &mut self,
        consumer: Address,
        data_credits: u128,
    ) -> Result<(), TxError> {
        let key = StateKey::Account(consumer);
        let mut account: Account = self
            .state
            .get(&key)?
            .ok_or_else(|| TxError::UnknownAccount(consumer.to_string()))?;
        if account.data_credits < data_credits {
            return Err(TxError::InsufficientDataCredits {
                needed: data_credits,
                available: account.data_credits,
            });
        }
        account.data_credits -= data_credits;
        self.state.put(&key, &account);
        Ok(())
    }

    /// Returns escrowed Data Credits to the consumer's account.
    pub fn refund_data_credits(
        &mut self,
        consumer: Address,
        data_credits: u128,
    ) -> Result<(), TxError> {
        let key = StateKey::Account(consumer);
        let mut account: Account = self.state.get(&key)?.unwrap_or_default();
        account.data_credits = account
            .data_credits
            .checked_add(data_credits)
            .ok_or(TxError::AmountOverflow)?;
        self.state.put(&key, &account);
        Ok(())
    }

    /// Pays escrowed Data Credits of `consumer` to `provider`: they are burned and the provider
    /// is minted tokens of the same USD value at the current oracle price.
    pub fn pay_from_escrow(
        &mut self,
        consumer: Address,
        provider: Address,
        data_credits: u128,
    ) -> Result<Event, TxError> {
        update_supply(self.state, |supply| {
            supply.data_credits_outstanding =
                supply.data_credits_outstanding.saturating_sub(data_credits);
            Some(())
        })?;
        let price: OraclePrice = self
            .state
            .get(&StateKey::OraclePrice)?
            .ok_or(StateError::Missing("oracle price"))?;
        let tokens = data_credits_to_tokens(self.genesis, data_credits, price.price_usd_micro)?;
        mint_to(self.state, provider, tokens)?;
        Ok(Event::ServicePaid {
            service: self.service,
            consumer,
            provider,
            data_credits,
            tokens_minted: tokens,
        })
    }

    /// The current epoch (blocks `1..=epoch_blocks` are epoch 0).
    pub fn epoch(&self) -> u64 {
        self.block.epoch(self.genesis.chain.epoch_blocks)
    }

    /// Pays `provider` `dc` of `consumer`'s escrow for work: `burn_bps` of it is destroyed
    /// (rounded up), the rest paid out, and `units` of work counted in this epoch's paid-work
    /// record under `work_key` (see [`ServiceContext::split_paid_work`]), with the burn as
    /// the cap of the emission those units may earn.
    pub fn pay_for_work(
        &mut self,
        consumer: Address,
        provider: Address,
        dc: u128,
        burn_bps: u16,
        units: u64,
        work_key: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let mut events = Vec::new();
        if dc == 0 {
            return Ok(events);
        }
        let burned = dc
            .checked_mul(u128::from(burn_bps))
            .ok_or(TxError::AmountOverflow)?
            .div_ceil(10_000)
            .min(dc);
        self.burn_escrowed_data_credits(burned)?;
        if dc > burned {
            events.push(self.pay_from_escrow(consumer, provider, dc - burned)?);
        }
        if units > 0 {
            let mut work: EpochPaidWork = self.get_decoded(work_key)?.unwrap_or_default();
            let entry = work.entry(provider).or_default();
            entry.units = entry.units.saturating_add(units);
            entry.burned_dc = entry.burned_dc.saturating_add(burned);
            self.put_encoded(work_key, &work);
            events.push(self.record_work(provider, units)?);
        }
        Ok(events)
    }

    /// Splits an epoch's emission `allocation` by the paid work under `work_key`, each
    /// provider capped at the token value of the Data Credits its payments burned: a provider
    /// that pays itself (through any number of consumer accounts) gets back at most what it
    /// burned, so emission cannot be farmed. What the caps leave is not minted; the record is
    /// deleted once read.
    pub fn split_paid_work(
        &mut self,
        work_key: &[u8],
        allocation: Amount,
    ) -> Result<Vec<(Address, Amount)>, TxError> {
        let work: EpochPaidWork = self.get_decoded(work_key)?.unwrap_or_default();
        self.delete_record(work_key);
        let total_units: u128 = work.values().map(|w| u128::from(w.units)).sum();
        if total_units == 0 {
            return Ok(Vec::new());
        }
        let price = self.oracle_price()?.price_usd_micro;
        let mut payouts = Vec::new();
        for (provider, paid) in work {
            let share = allocation
                .mul_div(u128::from(paid.units), total_units)
                .ok_or(TxError::AmountOverflow)?;
            let cap = data_credits_to_tokens(self.genesis, paid.burned_dc, price)?;
            let amount = share.min(cap);
            if !amount.is_zero() {
                payouts.push((provider, amount));
            }
        }
        Ok(payouts)
    }
}

/// What one provider was paid for in an epoch: the emission split's weight and its cap.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct PaidWork {
    /// Work units paid for at the service's price floor or above.
    pub units: u64,
    /// Data Credits of its payments that were burned.
    pub burned_dc: u128,
}

/// Every provider's paid work of an epoch, kept until that epoch's emission is split.
pub type EpochPaidWork = std::collections::BTreeMap<Address, PaidWork>;

/// Tokens (base units) worth `data_credits` at `price_usd_micro` per whole token.
pub fn data_credits_to_tokens(
    genesis: &Genesis,
    data_credits: u128,
    price_usd_micro: u64,
) -> Result<Amount, TxError> {
    let usd_micro = data_credits
        .checked_mul(u128::from(genesis.data_credits.dc_price_usd_micro))
        .ok_or(TxError::AmountOverflow)?;
    let scale = 10u128.pow(u32::from(genesis.token.decimals));
    Amount(usd_micro)
        .mul_div(scale, u128::from(price_usd_micro.max(1)))
        .ok_or(TxError::AmountOverflow)
}

/// Applies `change` to the supply record; `None` from it means an arithmetic overflow.
/// Burns `fraction_bps` of `who`'s stake at risk (bonded plus still unbonding: unbonding does
/// not escape a fault), from the bonded stake first and then from the newest unbonding
/// entries; returns the amount burned.
pub(crate) fn slash_stake(
    state: &mut Overlay<'_>,
    who: Address,
    fraction_bps: u16,
) -> Result<Amount, TxError> {
    let stake_key = StateKey::Stake(who);
    let mut stake: Stake = state.get(&stake_key)?.unwrap_or_default();
    let unbonding = stake
        .unbonding
        .iter()
        .try_fold(Amount::ZERO, |acc, u| acc.checked_add(u.amount))
        .ok_or(TxError::AmountOverflow)?;
    let at_risk = stake
        .bonded
        .checked_add(unbonding)
        .ok_or(TxError::AmountOverflow)?;
    let amount = at_risk
        .mul_div(u128::from(fraction_bps), BPS_DENOMINATOR)
        .ok_or(TxError::AmountOverflow)?
        // A fraction above 100% must not burn more than was at stake.
        .min(at_risk);
    let from_bonded = amount.min(stake.bonded);
    stake.bonded = stake.bonded.saturating_sub(from_bonded);
    let mut rest = amount.saturating_sub(from_bonded);
    for entry in stake.unbonding.iter_mut().rev() {
        let taken = rest.min(entry.amount);
        entry.amount = entry.amount.saturating_sub(taken);
        rest = rest.saturating_sub(taken);
    }
    stake.unbonding.retain(|u| !u.amount.is_zero());
    stake.slashed = stake
        .slashed
        .checked_add(amount)
        .ok_or(TxError::AmountOverflow)?;
    state.put(&stake_key, &stake);
    burn(state, amount)?;
    Ok(amount)
}

pub(crate) fn update_supply(
    state: &mut Overlay<'_>,
    change: impl FnOnce(&mut Supply) -> Option<()>,
) -> Result<(), TxError> {
    let mut supply: Supply = state.get(&StateKey::Supply)?.unwrap_or_default();
    change(&mut supply).ok_or(TxError::AmountOverflow)?;
    state.put(&StateKey::Supply, &supply);
    Ok(())
}

/// Adds newly minted tokens to an account and to the supply.
pub(crate) fn mint_to(state: &mut Overlay<'_>, to: Address, amount: Amount) -> Result<(), TxError> {
    if amount.is_zero() {
        return Ok(());
    }
    let key = StateKey::Account(to);
    let mut account: Account = state.get(&key)?.unwrap_or_default();
    account.balance = account
        .balance
        .checked_add(amount)
        .ok_or(TxError::AmountOverflow)?;
    state.put(&key, &account);
    update_supply(state, |supply| {
        supply.total = supply.total.checked_add(amount)?;
        supply.minted = supply.minted.checked_add(amount)?;
        Some(())
    })
}

/// Removes tokens that have already been taken out of an account or stake from the supply.
pub(crate) fn burn(state: &mut Overlay<'_>, amount: Amount) -> Result<(), TxError> {
    if amount.is_zero() {
        return Ok(());
    }
    update_supply(state, |supply| {
        supply.total = supply.total.checked_sub(amount)?;
        supply.burned = supply.burned.checked_add(amount)?;
        Some(())
    })
}
