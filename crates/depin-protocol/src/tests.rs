//! Ledger rules as a user sees them: the balances that move, the error codes of rejected
//! transactions, epoch rewards, the service hooks, and randomized blocks that must conserve
//! supply and keep nonces strict.
//!
//! Every transaction goes through [`Fixture::apply`], which asserts that a rejected transaction
//! left no write behind, so each rejection test also checks that the state is untouched.

use super::*;
use crate::params::GenesisValidator;
use crate::state::{ProofFailure, RewardKind};
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::Keypair;
use proptest::prelude::*;
use std::collections::BTreeMap;

const CHAIN_ID: &str = "depin-test";
/// Base units per whole token (devnet genesis has 6 decimals).
const UNIT: u128 = 1_000_000;
const USER_FUNDS: u128 = 10_000 * UNIT;
/// Comfortably above the minimum fee of every transaction these tests send.
const FEE: Amount = Amount(10_000);
const EPOCH_BLOCKS: u64 = 4;
const UNBONDING_BLOCKS: u64 = 3;
const MAX_UNBONDING_ENTRIES: u16 = 2;
/// Devnet genesis: 1000 tokens per epoch, 20% validators, 25% storage, 20% compute,
/// 20% coverage, 10% render, 5% video.
const EMISSION: u128 = 1_000 * UNIT;
/// Index into `Fixture::users` of the oracle authority.
const ORACLE: usize = 0;

type Store = BTreeMap<Vec<u8>, Vec<u8>>;

/// What the toy service's payload asks the ledger to do: one call per [`ServiceContext`] hook.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
enum ToyOp {
    Work {
        provider: Address,
        units: u64,
    },
    Slash {
        provider: Address,
        fraction_bps: u16,
    },
    Pay {
        provider: Address,
        data_credits: u128,
    },
}

/// A storage service with no rules of its own: it forwards each payload to a ledger hook.
struct ToyService;

const TOY_MAX_PAYLOAD_BYTES: usize = 128;
const TOY_SLASH_REASON: &str = "toy proof failed";

impl ServiceModule for ToyService {
    fn service(&self) -> ServiceKind {
        crate::storage::SERVICE
    }

    fn max_payload_bytes(&self) -> usize {
        TOY_MAX_PAYLOAD_BYTES
    }

    fn event_json(&self, _data: &[u8]) -> Option<serde_json::Value> {
        None
    }

    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let op: ToyOp = borsh::from_slice(payload).map_err(|e| TxError::ServiceRejected {
            service: crate::storage::SERVICE,
            code: "toy_bad_payload",
            reason: e.to_string(),
        })?;
        let event = match op {
            ToyOp::Work { provider, units } => ctx.record_work(provider, units)?,
            ToyOp::Slash {
                provider,
                fraction_bps,
            } => ctx.slash(provider, fraction_bps, TOY_SLASH_REASON)?,
            ToyOp::Pay {
                provider,
                data_credits,
            } => ctx.pay_with_data_credits(sender, provider, data_credits)?,
        };
        Ok(vec![event])
    }
}

fn toy(op: ToyOp) -> Action {
    Action::Service {
        service: crate::storage::SERVICE,
        payload: depin_types::encode(&op),
    }
}

fn send(to: &Keypair, amount: u128) -> Action {
    Action::Transfer {
        to: to.address(),
        amount: Amount(amount),
    }
}

fn bond(amount: u128) -> Action {
    Action::Bond {
        amount: Amount(amount),
    }
}

fn unbond(amount: u128) -> Action {
    Action::Unbond {
        amount: Amount(amount),
    }
}

fn buy_credits(amount: u128) -> Action {
    Action::BuyDataCredits {
        amount: Amount(amount),
    }
}

fn offer(service: ServiceKind) -> ServiceOffer {
    ServiceOffer {
        service,
        capacity: 1_000,
        price_dc_per_unit: 5,
    }
}

/// Where the providers of these tests register.
const AMSTERDAM: GeoLocation = GeoLocation {
    lat_e7: 523_700_000,
    lon_e7: 48_900_000,
};

fn register(services: &[ServiceKind]) -> Action {
    Action::RegisterProvider {
        services: services.iter().copied().map(offer).collect(),
        location: Some(AMSTERDAM),
    }
}

fn validator_key() -> Keypair {
    Keypair::from_seed(b"validator")
}

fn user_key(index: usize) -> Keypair {
    Keypair::from_seed(format!("user-{index}").as_bytes())
}

/// A key that genesis never funded.
fn stranger_key() -> Keypair {
    Keypair::from_seed(b"stranger")
}

/// Applies an overlay's writes to the committed map, as the chain does once a block is final.
fn commit(state: &mut Store, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    for (key, value) in writes {
        match value {
            Some(value) => state.insert(key, value),
            None => state.remove(&key),
        };
    }
}

/// A chain in memory: committed state plus the height of the block being built.
struct Fixture {
    protocol: Protocol,
    state: Store,
    validator: Keypair,
    users: Vec<Keypair>,
    height: u64,
}

/// Four funded users (user 0 is the oracle authority), one funded validator that proposes every
/// block, a 4-block epoch, a 3-block unbonding period and the toy storage service.
fn setup() -> Fixture {
    setup_with(|_| {})
}

fn setup_with(tweak: impl FnOnce(&mut Genesis)) -> Fixture {
    setup_services(tweak, true)
}

/// The fixture with the registry's real services only (no toy storage in their place).
fn setup_real(tweak: impl FnOnce(&mut Genesis)) -> Fixture {
    setup_services(tweak, false)
}

fn setup_services(tweak: impl FnOnce(&mut Genesis), toy_storage: bool) -> Fixture {
    let validator = validator_key();
    let users: Vec<Keypair> = (0..4).map(user_key).collect();
    let balances: Vec<(Address, Amount)> = users
        .iter()
        .chain([&validator])
        .map(|k| (k.address(), Amount(USER_FUNDS)))
        .collect();
    let mut genesis = Genesis::devnet(
        CHAIN_ID,
        0,
        &[validator.address()],
        users[ORACLE].address(),
        &balances,
    );
    genesis.chain.epoch_blocks = EPOCH_BLOCKS;
    genesis.staking.unbonding_blocks = UNBONDING_BLOCKS;
    genesis.staking.max_unbonding_entries = MAX_UNBONDING_ENTRIES;
    tweak(&mut genesis);
    let mut protocol = Protocol::new(genesis).expect("test genesis is valid");
    if toy_storage {
        protocol
            .register_service(Arc::new(ToyService))
            .expect("toy service registers");
    }
    let empty = Store::new();
    let mut overlay = Overlay::new(&empty);
    protocol
        .init_genesis(&mut overlay)
        .expect("genesis state is written");
    let mut state = Store::new();
    commit(&mut state, overlay.into_writes());
    Fixture {
        protocol,
        state,
        validator,
        users,
        height: 1,
    }
}

impl Fixture {
    fn user(&self, index: usize) -> Keypair {
        self.users[index].clone()
    }

    fn block(&self) -> BlockContext {
        BlockContext {
            height: self.height,
            parent: depin_types::Hash::tagged("test parent", &[&self.height.to_le_bytes()]),
            timestamp_ms: self.height * 1_000,
            proposer: self.validator.address(),
        }
    }

    fn get<T: BorshDeserialize>(&self, key: &StateKey) -> Option<T> {
        Overlay::new(&self.state)
            .get(key)
            .expect("test state decodes")
    }

    fn account(&self, who: &Keypair) -> Account {
        self.get(&StateKey::Account(who.address()))
            .unwrap_or_default()
    }

    fn balance(&self, who: &Keypair) -> u128 {
        self.account(who).balance.0
    }

    fn stake(&self, who: &Keypair) -> Stake {
        self.get(&StateKey::Stake(who.address()))
            .unwrap_or_default()
    }

    fn provider(&self, who: &Keypair) -> Option<Provider> {
        self.get(&StateKey::Provider(who.address()))
    }

    fn provider_set(&self) -> Vec<Address> {
        self.get(&StateKey::ProviderSet)
            .expect("provider set exists")
    }

    fn supply(&self) -> Supply {
        self.get(&StateKey::Supply).expect("supply exists")
    }

    /// Signs `action` from `key` with its next nonce and [`FEE`], after `edit` had its say.
    fn sign(
        &self,
        key: &Keypair,
        action: Action,
        edit: impl FnOnce(&mut Transaction),
    ) -> SignedTransaction {
        let mut tx = Transaction {
            chain_id: CHAIN_ID.into(),
            sender: key.address(),
            nonce: self.account(key).nonce,
            fee: FEE,
            action,
        };
        edit(&mut tx);
        tx.sign(key)
    }

    fn tx(&self, key: &Keypair, action: Action) -> SignedTransaction {
        self.sign(key, action, |_| {})
    }

    /// Applies one transaction in the current block. A rejected one must leave no write behind.
    fn apply(&mut self, tx: &SignedTransaction) -> Result<Receipt, TxError> {
        let mut overlay = Overlay::new(&self.state);
        let result = self.protocol.apply_tx(&mut overlay, &self.block(), tx, 0);
        let writes = overlay.into_writes();
        match &result {
            Ok(_) => commit(&mut self.state, writes),
            Err(e) => assert!(writes.is_empty(), "rejected ({e}) but wrote {writes:?}"),
        }
        result
    }

    /// Applies a transaction that must be accepted.
    fn ok(&mut self, key: &Keypair, action: Action) -> Receipt {
        let tx = self.tx(key, action);
        self.apply(&tx)
            .unwrap_or_else(|e| panic!("{:?} rejected: {e}", tx.tx.action))
    }

    /// Applies a transaction that must be rejected and returns its error.
    fn reject(&mut self, tx: &SignedTransaction) -> TxError {
        let before = self.state.clone();
        let error = self.apply(tx).expect_err("transaction must be rejected");
        assert_eq!(self.state, before, "rejected transaction changed the state");
        error
    }

    /// Finishes the current block (epoch processing included) and starts the next one.
    fn end_block(&mut self) -> Option<EpochRewards> {
        let mut overlay = Overlay::new(&self.state);
        let outcome = self
            .protocol
            .end_block(&mut overlay, &self.block())
            .expect("end_block succeeds");
        let failed: Vec<&Event> = outcome
            .events
            .iter()
            .filter(|e| matches!(e, Event::ServiceHookFailed { .. }))
            .collect();
        assert_eq!(failed, Vec::<&Event>::new(), "no service hook failed");
        let writes = overlay.into_writes();
        commit(&mut self.state, writes);
        self.height += 1;
        outcome.epoch_rewards
    }

    /// Finishes every block up to and including `height`; returns the epochs that ended.
    fn end_blocks_through(&mut self, height: u64) -> Vec<EpochRewards> {
        let mut ended = Vec::new();
        while self.height <= height {
            ended.extend(self.end_block());
        }
        ended
    }

    /// The height of the last block of the current epoch.
    fn epoch_end(&self) -> u64 {
        self.height.div_ceil(EPOCH_BLOCKS) * EPOCH_BLOCKS
    }

    fn token_price(&self) -> u64 {
        self.get::<OraclePrice>(&StateKey::OraclePrice)
            .expect("oracle price exists")
            .price_usd_micro
    }

    /// The oracle reports `price_usd_micro`; epochs end until the bounded steps reach it.
    fn reach_price(&mut self, price_usd_micro: u64) {
        let oracle = self.user(ORACLE);
        self.ok(&oracle, Action::SetOraclePrice { price_usd_micro });
        for _ in 0..32 {
            if self.token_price() == price_usd_micro {
                return;
            }
            let end = self.epoch_end();
            self.end_blocks_through(end);
        }
        panic!("the price never reached {price_usd_micro}");
    }

    /// Bonds `stake` and registers as a provider of `services`.
    fn make_provider(&mut self, key: &Keypair, stake: u128, services: &[ServiceKind]) {
        self.ok(key, bond(stake));
        self.ok(key, register(services));
    }

    /// Supply conservation and Data Credit accounting over every record of the state.
    fn check_supply(&self) {
        let mut held = Amount::ZERO;
        let mut data_credits = 0u128;
        for (key, value) in &self.state {
            let amounts = match borsh::from_slice::<StateKey>(key).expect("state key decodes") {
                StateKey::Account(_) => {
                    let account: Account = borsh::from_slice(value).expect("account decodes");
                    data_credits = data_credits
                        .checked_add(account.data_credits)
                        .expect("data credits fit u128");
                    vec![account.balance]
                }
                StateKey::Service(crate::storage::SERVICE, k) if k.starts_with(b"d/") => {
                    // Data Credits held in a deal's escrow still exist.
                    let deal: crate::storage::Deal =
                        borsh::from_slice(value).expect("deal decodes");
                    data_credits += deal.escrow_dc + deal.repair_budget_dc;
                    Vec::new()
                }
                StateKey::Service(crate::compute::SERVICE, k) if k.starts_with(b"j/") => {
                    // Data Credits held for a job still exist.
                    let job: crate::compute::Job = borsh::from_slice(value).expect("job decodes");
                    data_credits += job.escrow_dc;
                    Vec::new()
                }
                StateKey::Service(crate::render::SERVICE, k) if k.starts_with(b"j/") => {
                    let job: crate::render::RenderJob =
                        borsh::from_slice(value).expect("render job decodes");
                    data_credits += job.escrow_dc + job.verify_pool_dc;
                    Vec::new()
                }
                StateKey::Service(crate::video::SERVICE, k) if k.starts_with(b"b/") => {
                    let b: crate::video::Broadcaster =
                        borsh::from_slice(value).expect("broadcaster decodes");
                    data_credits += b.deposit_dc + b.reserve_dc;
                    Vec::new()
                }
                StateKey::Stake(_) => {
                    let stake: Stake = borsh::from_slice(value).expect("stake decodes");
                    let unbonding = stake.unbonding_total().expect("unbonding fits u128");
                    vec![stake.bonded, unbonding]
                }
                _ => Vec::new(),
            };
            for amount in amounts {
                held = held.checked_add(amount).expect("holdings fit u128");
            }
        }
        let supply = self.supply();
        let expected = supply
            .initial
            .checked_add(supply.minted)
            .and_then(|a| a.checked_sub(supply.burned))
            .expect("initial + minted - burned is a valid amount");
        assert_eq!(supply.total, expected, "total != initial + minted - burned");
        assert_eq!(supply.total, held, "total != balances + bonded + unbonding");
        assert_eq!(supply.data_credits_outstanding, data_credits);
    }
}

fn bucket(rewards: &EpochRewards, kind: RewardKind) -> &state::BucketOutcome {
    rewards
        .buckets
        .iter()
        .find(|b| b.kind == kind)
        .expect("every kind has a bucket")
}

fn paid(rewards: &EpochRewards, to: &Keypair, kind: RewardKind) -> u128 {
    rewards
        .rewards
        .iter()
        .filter(|r| r.account == to.address() && r.kind == kind)
        .map(|r| r.amount.0)
        .sum()
}

#[test]
fn transfer_moves_amount_and_pays_fee_to_proposer() {
    let mut f = setup();
    let (alice, bob, validator) = (f.user(1), f.user(2), f.validator.clone());
    let supply = f.supply();
    let receipt = f.ok(&alice, send(&bob, 5 * UNIT));
    assert_eq!(f.balance(&alice), USER_FUNDS - 5 * UNIT - FEE.0);
    assert_eq!(f.balance(&bob), USER_FUNDS + 5 * UNIT);
    assert_eq!(f.balance(&validator), USER_FUNDS + FEE.0);
    assert_eq!(f.account(&alice).nonce, 1);
    assert_eq!(f.supply(), supply, "a transfer mints and burns nothing");
    assert_eq!(receipt.kind, ActionKind::Transfer);
    assert_eq!(
        receipt.events,
        vec![
            Event::FeePaid {
                to: validator.address(),
                amount: FEE,
            },
            Event::Transfer {
                from: alice.address(),
                to: bob.address(),
                amount: Amount(5 * UNIT),
            },
        ]
    );
    // A transfer to a new address creates its account.
    let stranger = stranger_key();
    f.ok(&alice, send(&stranger, 7));
    assert_eq!(
        f.account(&stranger),
        Account {
            balance: Amount(7),
            ..Account::default()
        }
    );
    f.check_supply();
}

#[test]
fn fee_must_cover_the_size_of_the_transaction() {
    let mut f = setup();
    let (alice, bob) = (f.user(1), f.user(2));
    let minimum = f.protocol.min_fee(f.tx(&alice, send(&bob, 1)).size_bytes());
    let short = f.sign(&alice, send(&bob, 1), |t| t.fee = Amount(minimum.0 - 1));
    assert_eq!(
        f.reject(&short),
        TxError::FeeTooLow {
            offered: Amount(minimum.0 - 1),
            minimum,
        }
    );
    let exact = f.sign(&alice, send(&bob, 1), |t| t.fee = minimum);
    f.apply(&exact).expect("the minimum fee is enough");
    assert_eq!(f.balance(&alice), USER_FUNDS - 1 - minimum.0);
}

#[test]
fn bond_unbond_and_withdraw_after_the_unbonding_period() {
    let mut f = setup();
    let alice = f.user(1);
    f.ok(&alice, bond(500 * UNIT));
    assert_eq!(f.balance(&alice), USER_FUNDS - 500 * UNIT - FEE.0);
    assert_eq!(f.stake(&alice).bonded, Amount(500 * UNIT));

    let unbond_height = f.height;
    let release_height = unbond_height + UNBONDING_BLOCKS;
    let receipt = f.ok(&alice, unbond(200 * UNIT));
    assert_eq!(
        receipt.events.last(),
        Some(&Event::Unbonding {
            amount: Amount(200 * UNIT),
            release_height,
        })
    );
    assert_eq!(
        f.stake(&alice),
        Stake {
            bonded: Amount(300 * UNIT),
            unbonding: vec![Unbonding {
                amount: Amount(200 * UNIT),
                release_height,
            }],
            slashed: Amount::ZERO,
        }
    );

    // Not withdrawable in the unbonding block nor in the last block before release.
    let early = f.tx(&alice, Action::Withdraw);
    assert_eq!(f.reject(&early), TxError::NothingToWithdraw);
    f.end_blocks_through(release_height - 2);
    assert_eq!(f.height, release_height - 1);
    let early = f.tx(&alice, Action::Withdraw);
    assert_eq!(f.reject(&early).code(), "nothing_to_withdraw");

    f.end_block();
    let balance = f.balance(&alice);
    let receipt = f.ok(&alice, Action::Withdraw);
    assert_eq!(
        receipt.events.last(),
        Some(&Event::Withdrawn {
            amount: Amount(200 * UNIT),
        })
    );
    assert_eq!(f.balance(&alice), balance + 200 * UNIT - FEE.0);
    assert_eq!(f.stake(&alice).bonded, Amount(300 * UNIT));
    assert!(f.stake(&alice).unbonding.is_empty());
    f.check_supply();
}

#[test]
fn provider_lifecycle_keeps_the_set_sorted() {
    let mut f = setup();
    let keys = [f.user(3), f.user(1), f.user(2)];
    for key in &keys {
        f.make_provider(key, 100 * UNIT, &[crate::storage::SERVICE]);
    }
    let mut sorted: Vec<Address> = keys.iter().map(Keypair::address).collect();
    sorted.sort();
    assert_eq!(f.provider_set(), sorted);
    assert_eq!(
        f.provider(&keys[1]),
        Some(Provider {
            address: keys[1].address(),
            services: vec![offer(crate::storage::SERVICE)],
            location: Some(AMSTERDAM),
            registered_height: 1,
            updated_height: 1,
            reputation_alpha: 0,
            reputation_beta: 0,
            failures: Vec::new(),
        })
    );

    f.end_block();
    let moved = Some(GeoLocation {
        lat_e7: -338_600_000,
        lon_e7: 1_512_100_000,
    });
    f.ok(
        &keys[1],
        Action::UpdateProvider {
            services: vec![offer(crate::coverage::SERVICE)],
            location: moved,
        },
    );
    let updated = f.provider(&keys[1]).expect("still registered");
    assert_eq!(updated.services, vec![offer(crate::coverage::SERVICE)]);
    assert_eq!(updated.location, moved);
    assert_eq!((updated.registered_height, updated.updated_height), (1, 2));

    f.ok(&keys[0], Action::DeregisterProvider);
    assert_eq!(f.provider(&keys[0]), None);
    sorted.retain(|a| *a != keys[0].address());
    assert_eq!(f.provider_set(), sorted);
    // With no service to back, all of the stake may leave.
    f.ok(&keys[0], unbond(100 * UNIT));
    f.check_supply();
}

#[test]
fn data_credits_are_bought_at_the_oracle_price() {
    let mut f = setup();
    let (oracle, alice) = (f.user(ORACLE), f.user(1));
    let before = f.supply();
    let receipt = f.ok(&alice, buy_credits(UNIT));
    // One whole token at $1.00, a Data Credit at $0.00001: 100_000 credits.
    assert_eq!(
        receipt.events.last(),
        Some(&Event::DataCreditsMinted {
            tokens_burned: Amount(UNIT),
            data_credits: 100_000,
            price_usd_micro: 1_000_000,
        })
    );
    assert_eq!(f.account(&alice).data_credits, 100_000);
    assert_eq!(f.balance(&alice), USER_FUNDS - UNIT - FEE.0);
    let after = f.supply();
    assert_eq!(after.burned.0, before.burned.0 + UNIT);
    assert_eq!(after.total.0, before.total.0 - UNIT);
    assert_eq!(after.data_credits_outstanding, 100_000);

    // A report changes nothing within its epoch: everyone buys at the price seen at its start.
    let receipt = f.ok(
        &oracle,
        Action::SetOraclePrice {
            price_usd_micro: 2_500_000,
        },
    );
    assert_eq!(
        receipt.events.last(),
        Some(&Event::OraclePriceReported {
            oracle: oracle.address(),
            price_usd_micro: 2_500_000,
        })
    );
    f.ok(&alice, buy_credits(UNIT));
    assert_eq!(f.account(&alice).data_credits, 200_000);
    f.reach_price(2_500_000);
    f.ok(&alice, buy_credits(2 * UNIT));
    assert_eq!(f.account(&alice).data_credits, 200_000 + 500_000);
    f.check_supply();
}

/// The attack: an oracle key (stolen or dishonest) reports a price 100 times the market's,
/// buys Data Credits at it within the same block, or spends them at it later. The price
/// moves only at epoch boundaries and by at most `max_price_move_bps` a step.
#[test]
fn an_oracle_report_moves_the_price_only_at_the_epoch_boundary_and_within_the_bound() {
    let mut f = setup();
    let (oracle, alice) = (f.user(ORACLE), f.user(1));
    let bound = u64::from(f.protocol.genesis().data_credits.max_price_move_bps);
    f.ok(
        &oracle,
        Action::SetOraclePrice {
            price_usd_micro: 100_000_000,
        },
    );
    f.ok(&alice, buy_credits(UNIT));
    assert_eq!(f.account(&alice).data_credits, 100_000, "bought at $1.00");
    assert_eq!(f.token_price(), 1_000_000);
    let end = f.epoch_end();
    f.end_blocks_through(end);
    let stepped = 1_000_000 + 1_000_000 * bound / 10_000;
    assert_eq!(f.token_price(), stepped, "one bounded step");
    assert_eq!(
        f.get::<OraclePrice>(&StateKey::OraclePrice)
            .map(|p| p.updated_height),
        Some(end)
    );
    // Down as far: never to zero, and one micro-USD at least per step from the floor.
    let mut reports = OracleReports::new();
    reports.insert(
        oracle.address(),
        OracleReport {
            price_usd_micro: 1,
            height: 0,
        },
    );
    assert_eq!(next_oracle_price(1, &reports, 1), 1);
    assert_eq!(next_oracle_price(10, &reports, 1), 9);
    assert_eq!(next_oracle_price(u64::MAX, &reports, 10_000), 1);
    reports.clear();
    assert_eq!(
        next_oracle_price(7, &reports, 10_000),
        7,
        "no report, no change"
    );
    f.check_supply();
}

/// The attack: one of three oracle keys reports a price far from the others'. The price
/// follows the median of the keys' latest reports, so a minority moves nothing; anyone but
/// a genesis key is refused.
#[test]
fn a_minority_of_oracle_keys_cannot_move_the_median() {
    let mut f = setup_with(|g| {
        g.data_credits.oracle_keys = (0..3).map(|i| user_key(i).address()).collect();
        g.data_credits.max_price_move_bps = 10_000;
    });
    let report = |price_usd_micro| Action::SetOraclePrice { price_usd_micro };
    let (liar, honest_a, honest_b) = (f.user(0), f.user(1), f.user(2));
    f.ok(&liar, report(50_000_000));
    f.ok(&honest_a, report(1_100_000));
    f.ok(&honest_b, report(1_050_000));
    let end = f.epoch_end();
    f.end_blocks_through(end);
    assert_eq!(f.token_price(), 1_100_000, "the median of three");
    // A later report replaces the key's earlier one: the liar cannot stack reports.
    f.ok(&liar, report(60_000_000));
    f.ok(&liar, report(70_000_000));
    let end = f.epoch_end();
    f.end_blocks_through(end);
    assert_eq!(f.token_price(), 1_100_000);
    let outsider = f.user(3);
    let tx = f.tx(&outsider, report(1));
    assert_eq!(f.reject(&tx).code(), "unauthorized");
}

#[test]
fn rejections_have_specific_codes_and_leave_state_untouched() {
    let mut f = setup();
    let (oracle, alice, bob, carol) = (f.user(ORACLE), f.user(1), f.user(2), f.user(3));
    let validator = f.validator.clone();
    f.ok(&alice, send(&bob, 1));
    // Carol backs her storage offer with exactly the minimum stake.
    f.make_provider(&carol, 100 * UNIT, &[crate::storage::SERVICE]);
    // Bob has as many unbonding entries as allowed.
    f.ok(&bob, bond(10 * UNIT));
    for _ in 0..MAX_UNBONDING_ENTRIES {
        f.ok(&bob, unbond(1));
    }
    let with_offers = |services: Vec<ServiceOffer>| Action::RegisterProvider {
        services,
        location: None,
    };
    let zero_capacity = ServiceOffer {
        capacity: 0,
        ..offer(crate::storage::SERVICE)
    };
    let five_offers = vec![offer(crate::storage::SERVICE); MAX_SERVICE_OFFERS + 1];
    let max_tx_bytes = f.protocol.genesis().chain.max_tx_bytes as usize;
    let service = |service: ServiceKind, payload: Vec<u8>| Action::Service { service, payload };
    let cases: Vec<(&str, SignedTransaction, &str)> = vec![
        (
            "other network",
            f.sign(&alice, send(&bob, 1), |t| t.chain_id = "depin-other".into()),
            "wrong_chain",
        ),
        (
            "replayed nonce",
            f.sign(&alice, send(&bob, 1), |t| t.nonce = 0),
            "nonce_replayed",
        ),
        (
            "nonce gap",
            f.sign(&alice, send(&bob, 1), |t| t.nonce += 1),
            "nonce_gap",
        ),
        (
            "no fee",
            f.sign(&alice, send(&bob, 1), |t| t.fee = Amount::ZERO),
            "fee_too_low",
        ),
        (
            "fee above balance",
            f.sign(&alice, send(&bob, 1), |t| t.fee = Amount(u128::MAX)),
            "insufficient_balance",
        ),
        (
            "transfer above balance",
            f.tx(&alice, send(&bob, USER_FUNDS)),
            "insufficient_balance",
        ),
        (
            "bond above balance",
            f.tx(&alice, bond(USER_FUNDS)),
            "insufficient_balance",
        ),
        (
            "amount plus fee overflows",
            f.tx(&alice, send(&bob, u128::MAX - 5)),
            "amount_overflow",
        ),
        (
            "sender without account",
            f.tx(&stranger_key(), send(&bob, 1)),
            "unknown_account",
        ),
        ("zero transfer", f.tx(&alice, send(&bob, 0)), "zero_amount"),
        ("zero bond", f.tx(&alice, bond(0)), "zero_amount"),
        ("zero unbond", f.tx(&carol, unbond(0)), "zero_amount"),
        (
            "zero data credit purchase",
            f.tx(&alice, buy_credits(0)),
            "zero_amount",
        ),
        (
            "purchase worth less than a credit",
            f.tx(&alice, buy_credits(9)),
            "amount_too_small",
        ),
        (
            "price set by someone else",
            f.tx(&alice, Action::SetOraclePrice { price_usd_micro: 1 }),
            "unauthorized",
        ),
        (
            "zero price",
            f.tx(&oracle, Action::SetOraclePrice { price_usd_micro: 0 }),
            "invalid_price",
        ),
        (
            "register without stake",
            f.tx(&alice, register(&[crate::storage::SERVICE])),
            "stake_below_minimum",
        ),
        (
            "unbond below the provider minimum",
            f.tx(&carol, unbond(1)),
            "stake_below_minimum",
        ),
        (
            "update to offers the stake does not cover",
            f.tx(
                &carol,
                Action::UpdateProvider {
                    services: vec![
                        offer(crate::storage::SERVICE),
                        offer(crate::compute::SERVICE),
                    ],
                    location: None,
                },
            ),
            "stake_below_minimum",
        ),
        (
            "unbond below the validator minimum",
            f.tx(&validator, unbond(9_000 * UNIT + 1)),
            "stake_below_minimum",
        ),
        (
            "unbond more than bonded",
            f.tx(&alice, unbond(1)),
            "insufficient_stake",
        ),
        (
            "unbond past the entry limit",
            f.tx(&bob, unbond(1)),
            "too_many_unbonding",
        ),
        (
            "withdraw with nothing matured",
            f.tx(&bob, Action::Withdraw),
            "nothing_to_withdraw",
        ),
        (
            "register twice",
            f.tx(&carol, register(&[crate::storage::SERVICE])),
            "provider_exists",
        ),
        (
            "update a non-provider",
            f.tx(
                &alice,
                Action::UpdateProvider {
                    services: vec![offer(crate::storage::SERVICE)],
                    location: None,
                },
            ),
            "not_a_provider",
        ),
        (
            "deregister a non-provider",
            f.tx(&alice, Action::DeregisterProvider),
            "not_a_provider",
        ),
        (
            "no services",
            f.tx(
                &carol,
                Action::UpdateProvider {
                    services: Vec::new(),
                    location: None,
                },
            ),
            "invalid_services",
        ),
        (
            "duplicate services",
            f.tx(
                &validator,
                with_offers(vec![
                    offer(crate::coverage::SERVICE),
                    offer(crate::coverage::SERVICE),
                ]),
            ),
            "invalid_services",
        ),
        (
            "too many services",
            f.tx(&validator, with_offers(five_offers)),
            "invalid_services",
        ),
        (
            "zero capacity",
            f.tx(&validator, with_offers(vec![zero_capacity])),
            "invalid_services",
        ),
        (
            "latitude past the pole",
            f.tx(
                &validator,
                Action::RegisterProvider {
                    services: vec![offer(crate::coverage::SERVICE)],
                    location: Some(GeoLocation {
                        lat_e7: 900_000_001,
                        lon_e7: 0,
                    }),
                },
            ),
            "invalid_location",
        ),
        (
            "service with no module",
            f.tx(&alice, service(ServiceKind::new("weather"), Vec::new())),
            "service_not_enabled",
        ),
        (
            "payload above the service limit",
            f.tx(
                &alice,
                service(crate::storage::SERVICE, vec![0; TOY_MAX_PAYLOAD_BYTES + 1]),
            ),
            "tx_too_large",
        ),
        (
            "transaction above max_tx_bytes",
            f.tx(
                &alice,
                service(crate::compute::SERVICE, vec![0; max_tx_bytes]),
            ),
            "tx_too_large",
        ),
        (
            "payload the service cannot decode",
            f.tx(&alice, service(crate::storage::SERVICE, vec![9, 9, 9])),
            "toy_bad_payload",
        ),
        (
            "pay without data credits",
            f.tx(
                &alice,
                toy(ToyOp::Pay {
                    provider: carol.address(),
                    data_credits: 1,
                }),
            ),
            "insufficient_data_credits",
        ),
    ];
    let before = f.state.clone();
    for (name, tx, code) in &cases {
        let error = f.reject(tx);
        assert_eq!(error.code(), *code, "{name}: {error}");
        assert!(!error.is_internal(), "{name}");
    }
    assert_eq!(f.state, before);
    // Structured fields say what was expected.
    let replay = f.sign(&alice, send(&bob, 1), |t| t.nonce = 0);
    assert_eq!(
        f.reject(&replay),
        TxError::NonceReplayed {
            expected: 1,
            got: 0,
        }
    );
}

#[test]
fn decode_rejects_oversized_and_malformed_bytes() {
    let f = setup();
    let (alice, bob) = (f.user(1), f.user(2));
    let tx = f.tx(&alice, send(&bob, 1));
    let bytes = tx.to_bytes();
    assert_eq!(f.protocol.decode_tx(&bytes), Ok(tx));

    let max_tx_bytes = f.protocol.genesis().chain.max_tx_bytes as usize;
    let oversized = vec![0u8; max_tx_bytes + 1];
    let error = f.protocol.decode_tx(&oversized).expect_err("too large");
    assert_eq!(error.code(), "tx_too_large");

    let mut trailing = bytes.clone();
    trailing.push(0);
    let long_chain_id = f
        .sign(&alice, send(&bob, 1), |t| t.chain_id = "x".repeat(65))
        .to_bytes();
    for bad in [
        &bytes[..bytes.len() - 1],
        &trailing[..],
        &[0xff; 40][..],
        &long_chain_id[..],
    ] {
        let error = f.protocol.decode_tx(bad).expect_err("malformed");
        assert_eq!(error.code(), "malformed_tx", "{error}");
    }
}

#[test]
fn verify_signatures_names_the_first_bad_one() {
    let f = setup();
    let (alice, bob) = (f.user(1), f.user(2));
    let good: Vec<SignedTransaction> = (1..=3).map(|i| f.tx(&alice, send(&bob, i))).collect();
    assert_eq!(Protocol::verify_signatures(&good), Ok(()));
    assert_eq!(Protocol::verify_signatures(&[]), Ok(()));

    let mut tampered = good.clone();
    tampered[1].tx.fee = Amount(FEE.0 + 1);
    assert_eq!(Protocol::verify_signatures(&tampered), Err(1));

    let mut forged = good.clone();
    forged[2] = f.sign(&bob, send(&bob, 1), |t| t.sender = alice.address());
    assert_eq!(Protocol::verify_signatures(&forged), Err(2));
    assert_eq!(TxError::BadSignature.code(), "bad_signature");
}

#[test]
fn execute_block_rejects_the_whole_block_on_one_bad_tx() {
    let f = setup();
    let (alice, bob) = (f.user(1), f.user(2));
    let first = f.tx(&alice, send(&bob, 1));
    let replayed = [first.clone(), first.clone()];
    let mut overlay = Overlay::new(&f.state);
    match f
        .protocol
        .execute_block(&mut overlay, &f.block(), &replayed)
    {
        Err(BlockError::InvalidTx {
            index,
            tx_hash,
            error,
        }) => {
            assert_eq!((index, tx_hash), (1, first.hash()));
            assert_eq!(error.code(), "nonce_replayed");
        }
        other => panic!("expected an invalid block, got {other:?}"),
    }

    let mut overlay = Overlay::new(&f.state);
    let outcome = f
        .protocol
        .execute_block(&mut overlay, &f.block(), &[first])
        .expect("valid block");
    assert_eq!(outcome.receipts.len(), 1);
    assert!(outcome.epoch_rewards.is_none());
}

#[test]
fn epoch_end_pays_validators_by_stake_and_leaves_idle_services_unallocated() {
    let second = Keypair::from_seed(b"validator-2");
    let mut f = setup_with(|g| {
        g.validators.push(GenesisValidator {
            address: second.address(),
            stake: Amount(30_000 * UNIT),
        });
    });
    let first = f.validator.clone();
    let initial = f.supply();
    assert!(f.end_blocks_through(EPOCH_BLOCKS - 1).is_empty());
    let ended = f.end_blocks_through(EPOCH_BLOCKS);
    assert_eq!(ended.len(), 1);
    let rewards = &ended[0];
    assert_eq!((rewards.epoch, rewards.height), (0, EPOCH_BLOCKS));
    assert_eq!(rewards.emission, Amount(EMISSION));

    // 20% of emission to validators, split 10_000 : 30_000 by bonded stake.
    let validator_share = EMISSION / 5;
    assert_eq!(
        paid(rewards, &first, RewardKind::Validator),
        validator_share / 4
    );
    assert_eq!(
        paid(rewards, &second, RewardKind::Validator),
        validator_share * 3 / 4
    );
    assert_eq!(f.balance(&first), USER_FUNDS + validator_share / 4);
    assert_eq!(f.account(&second).balance.0, validator_share * 3 / 4);

    // No service did any work: their whole share stays unminted.
    for service in f.protocol.enabled_services() {
        let b = bucket(rewards, RewardKind::Service(service));
        assert_eq!((b.minted, b.work_units), (Amount::ZERO, 0));
        assert_eq!(b.unallocated, b.allocation);
    }
    assert_eq!(rewards.minted, Amount(validator_share));
    assert_eq!(rewards.unallocated, Amount(EMISSION - validator_share));
    assert_eq!(
        f.get::<EpochRewards>(&StateKey::EpochRewards(0)).as_ref(),
        Some(rewards)
    );
    let supply = f.supply();
    assert_eq!(supply.minted, Amount(validator_share));
    assert_eq!(supply.total.0, initial.total.0 + validator_share);
    f.check_supply();
}

#[test]
fn storage_share_is_minted_pro_rata_to_recorded_work() {
    let mut f = setup();
    let (alice, p1, p2) = (f.user(1), f.user(2), f.user(3));
    for p in [&p1, &p2] {
        f.make_provider(p, 100 * UNIT, &[crate::storage::SERVICE]);
    }
    let balances = [f.balance(&p1), f.balance(&p2)];
    for (provider, units) in [(&p1, 2), (&p2, 3), (&p2, 2)] {
        let receipt = f.ok(
            &alice,
            toy(ToyOp::Work {
                provider: provider.address(),
                units,
            }),
        );
        assert_eq!(
            receipt.events.last(),
            Some(&Event::WorkRecorded {
                service: crate::storage::SERVICE,
                provider: provider.address(),
                units,
            })
        );
    }
    let p2_record = f.provider(&p2).expect("registered");
    assert_eq!(p2_record.reputation_alpha, 2);
    let ended = f.end_blocks_through(EPOCH_BLOCKS);
    let rewards = &ended[0];

    // 25% of 1000 tokens split 2 : 5, rounded down; the rounding dust is unallocated.
    let storage = RewardKind::Service(crate::storage::SERVICE);
    let storage_share = EMISSION / 4;
    assert_eq!(paid(rewards, &p1, storage), 71_428_571);
    assert_eq!(paid(rewards, &p2, storage), 178_571_428);
    let b = bucket(rewards, storage);
    assert_eq!(b.allocation, Amount(storage_share));
    assert_eq!(b.work_units, 7);
    assert_eq!(b.minted, Amount(249_999_999));
    assert_eq!(b.unallocated, Amount(1));
    assert_eq!(f.balance(&p1), balances[0] + 71_428_571);
    assert_eq!(f.balance(&p2), balances[1] + 178_571_428);

    let validator_share = EMISSION / 5;
    assert_eq!(rewards.minted, Amount(validator_share + 249_999_999));
    // Compute, coverage, render and video did nothing (the rest) plus the storage dust.
    assert_eq!(
        rewards.unallocated,
        Amount(EMISSION - validator_share - storage_share + 1)
    );
    f.check_supply();
}

#[test]
fn slash_burns_bonded_stake_and_records_the_failure() {
    let mut f = setup();
    let (alice, provider) = (f.user(1), f.user(2));
    f.make_provider(&provider, 200 * UNIT, &[crate::storage::SERVICE]);
    let supply = f.supply();
    let receipt = f.ok(
        &alice,
        toy(ToyOp::Slash {
            provider: provider.address(),
            fraction_bps: 1_000,
        }),
    );
    let slashed = Amount(20 * UNIT);
    assert_eq!(
        receipt.events.last(),
        Some(&Event::Slashed {
            provider: provider.address(),
            service: crate::storage::SERVICE,
            amount: slashed,
            reason: TOY_SLASH_REASON.into(),
        })
    );
    let stake = f.stake(&provider);
    assert_eq!((stake.bonded, stake.slashed), (Amount(180 * UNIT), slashed));
    let after = f.supply();
    assert_eq!(after.burned.0, supply.burned.0 + slashed.0);
    assert_eq!(after.total.0, supply.total.0 - slashed.0);
    let record = f.provider(&provider).expect("still registered");
    assert_eq!(record.reputation_beta, 1);
    assert_eq!(
        record.failures,
        vec![ProofFailure {
            height: f.height,
            service: crate::storage::SERVICE,
            reason: TOY_SLASH_REASON.into(),
            slashed,
        }]
    );
    f.check_supply();
}

/// Genesis bounds its own slashing fractions to 10_000 basis points, but `slash` takes any
/// `u16`: above 100% it empties the stake yet burns (and records as slashed) the full product.
#[test]
fn slash_above_100_percent_burns_only_what_was_bonded() {
    let mut f = setup();
    let (alice, provider) = (f.user(1), f.user(2));
    f.make_provider(&provider, 200 * UNIT, &[crate::storage::SERVICE]);
    let supply = f.supply();
    let slash_twice = f.tx(
        &alice,
        toy(ToyOp::Slash {
            provider: provider.address(),
            fraction_bps: 20_000,
        }),
    );
    // Either rejected, or at most the bonded stake is burned; never more.
    if f.apply(&slash_twice).is_ok() {
        assert_eq!(f.stake(&provider).slashed, Amount(200 * UNIT));
        assert_eq!(f.supply().burned.0, supply.burned.0 + 200 * UNIT);
    }
    f.check_supply();
}

#[test]
fn data_credit_payment_burns_credits_and_mints_equal_value() {
    let mut f = setup();
    let (consumer, provider) = (f.user(1), f.user(2));
    f.ok(&consumer, buy_credits(UNIT));
    let pay = |data_credits| {
        toy(ToyOp::Pay {
            provider: provider.address(),
            data_credits,
        })
    };
    // 50_000 credits are $0.50: half a token at $1.00, a fifth of a token at $2.50.
    for (price_usd_micro, tokens) in [(1_000_000, UNIT / 2), (2_500_000, UNIT / 5)] {
        f.reach_price(price_usd_micro);
        let (balance, minted) = (f.balance(&provider), f.supply().minted);
        let receipt = f.ok(&consumer, pay(50_000));
        assert_eq!(
            receipt.events.last(),
            Some(&Event::ServicePaid {
                service: crate::storage::SERVICE,
                consumer: consumer.address(),
                provider: provider.address(),
                data_credits: 50_000,
                tokens_minted: Amount(tokens),
            })
        );
        assert_eq!(f.balance(&provider), balance + tokens);
        assert_eq!(f.supply().minted.0, minted.0 + tokens);
    }
    assert_eq!(f.account(&consumer).data_credits, 0);
    assert_eq!(f.supply().data_credits_outstanding, 0);
    let overdraft = f.tx(&consumer, pay(1));
    assert_eq!(f.reject(&overdraft).code(), "insufficient_data_credits");
    f.check_supply();
}

#[test]
fn emission_halves_every_interval() {
    let f = setup();
    let interval = f.protocol.genesis().emission.halving_interval_epochs;
    assert_eq!(f.protocol.epoch_emission(0), Amount(EMISSION));
    assert_eq!(f.protocol.epoch_emission(interval - 1), Amount(EMISSION));
    assert_eq!(f.protocol.epoch_emission(interval), Amount(EMISSION / 2));
    assert_eq!(
        f.protocol.epoch_emission(2 * interval),
        Amount(EMISSION / 4)
    );
    assert_eq!(f.protocol.epoch_emission(128 * interval), Amount::ZERO);
}

/// One randomly generated transaction: who sends it, how far its nonce is off, what it pays.
#[derive(Debug, Clone)]
struct TxSpec {
    sender: usize,
    nonce_offset: i64,
    fee: Amount,
    action: Action,
}

/// The keys that send in the random test: the users, the validator and an unfunded stranger.
fn random_test_keys() -> Vec<Keypair> {
    let mut keys: Vec<Keypair> = (0..4).map(user_key).collect();
    keys.extend([validator_key(), stranger_key()]);
    keys
}

fn arb_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        1 => Just(0u128),
        4 => 1..=10 * UNIT,
        4 => 1..=1_000 * UNIT,
        1 => (u128::MAX - 1_000_000)..=u128::MAX,
        1 => any::<u128>(),
    ]
    .prop_map(Amount)
}

fn arb_offers() -> impl Strategy<Value = Vec<ServiceOffer>> {
    let offer = (
        prop::sample::select(
            crate::services::builtin()
                .iter()
                .map(|m| m.service())
                .collect::<Vec<_>>(),
        ),
        prop_oneof![9 => 1u64..1_000, 1 => Just(0u64)],
    )
        .prop_map(|(service, capacity)| ServiceOffer {
            capacity,
            ..offer(service)
        });
    prop_oneof![
        9 => prop::collection::vec(offer.clone(), 1..=2),
        1 => prop::collection::vec(offer, 0..=MAX_SERVICE_OFFERS + 1),
    ]
}

fn arb_location() -> impl Strategy<Value = Option<GeoLocation>> {
    let valid = (
        -900_000_000..=900_000_000i32,
        -1_800_000_000..=1_800_000_000i32,
    );
    let coordinates = prop_oneof![4 => valid, 1 => (any::<i32>(), any::<i32>())];
    prop::option::of(coordinates.prop_map(|(lat_e7, lon_e7)| GeoLocation { lat_e7, lon_e7 }))
}

fn arb_toy_op(address: prop::sample::Select<Address>) -> impl Strategy<Value = ToyOp> {
    prop_oneof![
        (address.clone(), prop_oneof![1u64..1_000, Just(u64::MAX)])
            .prop_map(|(provider, units)| ToyOp::Work { provider, units }),
        // Genesis bounds slashing fractions to 10_000 basis points; a module passes those.
        (address.clone(), 0u16..=10_000).prop_map(|(provider, fraction_bps)| ToyOp::Slash {
            provider,
            fraction_bps
        }),
        (address, prop_oneof![1u128..200_000, any::<u128>()]).prop_map(
            |(provider, data_credits)| ToyOp::Pay {
                provider,
                data_credits
            }
        ),
    ]
}

fn arb_action(addresses: Vec<Address>) -> impl Strategy<Value = Action> {
    let address = prop::sample::select(addresses);
    prop_oneof![
        4 => (address.clone(), arb_amount())
            .prop_map(|(to, amount)| Action::Transfer { to, amount }),
        3 => arb_amount().prop_map(|amount| Action::Bond { amount }),
        3 => arb_amount().prop_map(|amount| Action::Unbond { amount }),
        2 => Just(Action::Withdraw),
        2 => (arb_offers(), arb_location())
            .prop_map(|(services, location)| Action::RegisterProvider { services, location }),
        1 => (arb_offers(), arb_location())
            .prop_map(|(services, location)| Action::UpdateProvider { services, location }),
        1 => Just(Action::DeregisterProvider),
        2 => arb_amount().prop_map(|amount| Action::BuyDataCredits { amount }),
        1 => prop_oneof![Just(0u64), 100_000u64..10_000_000, any::<u64>()]
            .prop_map(|price_usd_micro| Action::SetOraclePrice { price_usd_micro }),
        3 => arb_toy_op(address).prop_map(toy),
        1 => Just(Action::Service {
            service: crate::compute::SERVICE,
            payload: Vec::new(),
        }),
    ]
}

fn arb_tx() -> impl Strategy<Value = TxSpec> {
    let keys = random_test_keys();
    let addresses: Vec<Address> = keys.iter().map(Keypair::address).collect();
    (
        0..keys.len(),
        prop_oneof![8 => Just(0i64), 1 => Just(-1i64), 1 => Just(1i64)],
        prop_oneof![8 => Just(FEE.0), 1 => 0u128..2_000, 1 => any::<u128>()].prop_map(Amount),
        arb_action(addresses),
    )
        .prop_map(|(sender, nonce_offset, fee, action)| TxSpec {
            sender,
            nonce_offset,
            fee,
            action,
        })
}

proptest! {
    // A failing case prints its shrunk input; PROPTEST_RNG_SEED=<u64> replays a run.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Up to 12 blocks of up to 5 random transactions (three epochs of 4 blocks). The producer
    /// applies each transaction and drops the rejected ones; after every block the accepted
    /// ones must replay to the same state through `execute_block`, the supply must be
    /// conserved, and every nonce must have moved by exactly the number of accepted
    /// transactions of its sender.
    #[test]
    fn random_blocks_conserve_supply_and_nonces(
        blocks in prop::collection::vec(prop::collection::vec(arb_tx(), 0..6), 1..=12),
    ) {
        let mut f = setup();
        let keys = random_test_keys();
        // Some stake to start with, so that unbonds and registrations can succeed.
        for user in f.users.clone() {
            f.ok(&user, bond(300 * UNIT));
        }
        f.end_block();
        let mut nonces: BTreeMap<Address, u64> =
            keys.iter().map(|k| (k.address(), f.account(k).nonce)).collect();
        for specs in blocks {
            let start = f.state.clone();
            let context = f.block();
            let mut accepted = Vec::new();
            for spec in specs {
                let key = &keys[spec.sender];
                let expected = nonces.entry(key.address()).or_default();
                let nonce = expected.saturating_add_signed(spec.nonce_offset);
                let tx = f.sign(key, spec.action, |t| {
                    t.nonce = nonce;
                    t.fee = spec.fee;
                });
                if f.apply(&tx).is_ok() {
                    prop_assert_eq!(nonce, *expected, "accepted a transaction with a wrong nonce");
                    *expected += 1;
                    accepted.push(tx);
                }
            }
            if let Some(rewards) = f.end_block() {
                let accounted = rewards.minted.checked_add(rewards.unallocated);
                prop_assert_eq!(accounted, Some(rewards.emission));
            }

            prop_assert_eq!(Protocol::verify_signatures(&accepted), Ok(()));
            let mut overlay = Overlay::new(&start);
            let outcome = f.protocol.execute_block(&mut overlay, &context, &accepted);
            let outcome = outcome.map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
            prop_assert_eq!(outcome.receipts.len(), accepted.len());
            let mut replayed = start.clone();
            commit(&mut replayed, overlay.into_writes());
            prop_assert!(replayed == f.state, "execute_block disagrees with the producer");

            f.check_supply();
            for key in &keys {
                let expected = nonces.get(&key.address()).copied().unwrap_or_default();
                prop_assert_eq!(f.account(key).nonce, expected);
            }
        }
    }
}

fn register_validator(consensus_address: &str) -> Action {
    Action::RegisterValidator {
        consensus_address: consensus_address.into(),
    }
}

fn validator_set(f: &Fixture, epoch: u64) -> Vec<Address> {
    f.get::<crate::state::ValidatorSet>(&StateKey::ValidatorSet(epoch))
        .map(|s| s.validators)
        .unwrap_or_default()
}

#[test]
fn the_validator_set_is_the_top_stake_among_candidates_one_epoch_ahead() {
    let mut f = setup_with(|g| g.validators[0].stake = Amount(2_000 * UNIT));
    let genesis = f.validator.address();
    let (a, b) = (f.user(1), f.user(2));
    assert_eq!(validator_set(&f, 0), vec![genesis]);
    assert_eq!(validator_set(&f, 1), vec![genesis]);

    // Candidacy needs the validator minimum bonded and a host:port endpoint.
    let tx = f.tx(&a, register_validator("10.0.0.1:7301"));
    assert!(matches!(f.reject(&tx), TxError::StakeBelowMinimum { .. }));
    f.ok(&a, bond(3_000 * UNIT));
    let long = format!("{}:1", "x".repeat(130));
    for bad in [
        "",
        "nohost",
        ":7301",
        "host:0",
        "host:99999",
        "a b:1",
        long.as_str(),
    ] {
        let tx = f.tx(&a, register_validator(bad));
        assert!(
            matches!(f.reject(&tx), TxError::InvalidConsensusAddress(_)),
            "{bad:?} accepted"
        );
    }
    let receipt = f.ok(&a, register_validator("10.0.0.1:7301"));
    assert!(receipt.events.contains(&Event::ValidatorRegistered {
        consensus_address: "10.0.0.1:7301".into()
    }));
    // A candidate keeps the validator minimum bonded.
    let tx = f.tx(&a, unbond(2_500 * UNIT));
    assert!(matches!(f.reject(&tx), TxError::StakeBelowMinimum { .. }));

    // Height 4 starts consensus epoch 1 and fixes the set of epoch 2: one seat (the genesis
    // size), taken by the larger stake.
    f.end_blocks_through(EPOCH_BLOCKS);
    assert_eq!(
        validator_set(&f, 1),
        vec![genesis],
        "epoch 1 does not change"
    );
    assert_eq!(validator_set(&f, 2), vec![a.address()]);

    // A larger newcomer takes the seat at the next choice; a withdrawn candidate is out.
    f.ok(&b, bond(5_000 * UNIT));
    f.ok(&b, register_validator("validator-b.example:7301"));
    f.ok(&b, Action::DeregisterValidator);
    let tx = f.tx(&b, Action::DeregisterValidator);
    assert_eq!(f.reject(&tx), TxError::NotAValidatorCandidate);
    f.end_blocks_through(EPOCH_BLOCKS * 2);
    assert_eq!(validator_set(&f, 3), vec![a.address()]);
    f.ok(&b, register_validator("validator-b.example:7301"));
    f.end_blocks_through(EPOCH_BLOCKS * 3);
    assert_eq!(validator_set(&f, 4), vec![b.address()]);

    // With no eligible candidate left the set carries over rather than emptying.
    f.ok(&a, Action::DeregisterValidator);
    f.ok(&b, Action::DeregisterValidator);
    f.ok(&f.validator.clone(), Action::DeregisterValidator);
    f.end_blocks_through(EPOCH_BLOCKS * 4);
    assert_eq!(validator_set(&f, 5), vec![b.address()]);
    f.check_supply();
}

mod compute;
mod coverage;
mod golden;
mod render;
mod services;
mod storage;
mod video;

/// A service no genesis knows, registered by tests only.
const VIDEO: ServiceKind = ServiceKind::new("video");

/// A service whose hooks write a record and then fail, at every block and every epoch.
struct FailingHooks;

const FAILING_HOOK_RECORD: &[u8] = b"written before failing";

impl ServiceModule for FailingHooks {
    fn service(&self) -> ServiceKind {
        ServiceKind::new("video")
    }

    fn max_payload_bytes(&self) -> usize {
        16
    }

    fn event_json(&self, _data: &[u8]) -> Option<serde_json::Value> {
        None
    }

    fn apply(
        &self,
        _ctx: &mut ServiceContext<'_, '_>,
        _sender: Address,
        _payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        Ok(Vec::new())
    }

    fn end_block(&self, ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
        ctx.put_encoded(FAILING_HOOK_RECORD, &ctx.block.height);
        Err(TxError::AmountOverflow)
    }

    fn end_epoch(&self, ctx: &mut ServiceContext<'_, '_>, _epoch: u64) -> Result<(), TxError> {
        ctx.put_encoded(FAILING_HOOK_RECORD, &ctx.block.height);
        Err(TxError::Store(StateError::Inconsistent(
            "a record went missing".into(),
        )))
    }

    fn epoch_rewards(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        _epoch: u64,
        allocation: Amount,
    ) -> Result<Option<Vec<(Address, Amount)>>, TxError> {
        // More than it was given: the ledger must refuse the split, not mint it.
        let greedy = allocation
            .checked_add(Amount(1))
            .ok_or(TxError::AmountOverflow)?;
        Ok(Some(vec![(ctx.block.proposer, greedy)]))
    }
}

#[test]
fn a_failing_service_hook_is_dropped_and_reported_and_blocks_go_on() {
    let mut f = setup();
    f.protocol
        .register_service(Arc::new(FailingHooks))
        .expect("failing service registers");
    let supply = f.supply();
    let mut failures = Vec::new();
    let mut rewards = Vec::new();
    // Two whole epochs of blocks, each with a transaction, through `execute_block`.
    for _ in 0..2 * EPOCH_BLOCKS {
        let tx = f.tx(&f.user(1), send(&f.user(2), 1));
        let mut overlay = Overlay::new(&f.state);
        let outcome = f
            .protocol
            .execute_block(&mut overlay, &f.block(), &[tx])
            .expect("a failing hook does not make the block invalid");
        assert_eq!(outcome.receipts.len(), 1);
        failures.extend(outcome.events.clone());
        rewards.extend(outcome.epoch_rewards);
        let writes = overlay.into_writes();
        commit(&mut f.state, writes);
        f.height += 1;
    }
    // The hook's writes were dropped every time.
    assert_eq!(
        f.get::<u64>(&StateKey::Service(
            ServiceKind::new("video"),
            FAILING_HOOK_RECORD.to_vec()
        )),
        None
    );
    let hooks = |hook: ServiceHook| {
        failures
            .iter()
            .filter(|e| {
                matches!(e, Event::ServiceHookFailed { service, hook: h, .. } if *h == hook && *service == VIDEO)
            })
            .count()
    };
    assert_eq!(hooks(ServiceHook::EndBlock), 2 * EPOCH_BLOCKS as usize);
    assert_eq!(hooks(ServiceHook::EndEpoch), 2);
    assert_eq!(hooks(ServiceHook::EpochRewards), 2);
    assert!(failures.iter().any(|e| matches!(
        e,
        Event::ServiceHookFailed { hook: ServiceHook::EndEpoch, reason, .. }
            if reason == "inconsistent state: a record went missing"
    )));
    assert!(failures.iter().any(|e| matches!(
        e,
        Event::ServiceHookFailed { hook: ServiceHook::EpochRewards, reason, .. }
            if reason.contains("of an allocation of")
    )));
    // Both epochs were paid, and the failed service's share was left unallocated.
    assert_eq!(rewards.len(), 2);
    for epoch in &rewards {
        let video = bucket(epoch, RewardKind::Service(ServiceKind::new("video")));
        assert_eq!(video.minted, Amount::ZERO);
        assert_eq!(video.unallocated, video.allocation);
        assert!(bucket(epoch, RewardKind::Validator).minted > Amount::ZERO);
    }
    assert!(f.supply().minted > supply.minted);
    f.check_supply();
}

#[test]
fn slashing_reaches_stake_that_is_unbonding() {
    let mut f = setup();
    let (alice, provider) = (f.user(1), f.user(2));
    f.make_provider(&provider, 200 * UNIT, &[crate::storage::SERVICE]);
    // Bond more than the minimum and start unbonding the surplus: it is still at stake.
    f.ok(&provider, bond(300 * UNIT));
    f.ok(&provider, unbond(300 * UNIT));
    assert_eq!(f.stake(&provider).bonded, Amount(200 * UNIT));
    let supply = f.supply();
    let receipt = f.ok(
        &alice,
        toy(ToyOp::Slash {
            provider: provider.address(),
            fraction_bps: 5_000,
        }),
    );
    // Half of 500 at stake is 250: all 200 bonded, then 50 of the 300 unbonding.
    assert!(matches!(
        receipt.events.last(),
        Some(Event::Slashed { amount, .. }) if *amount == Amount(250 * UNIT)
    ));
    let stake = f.stake(&provider);
    assert_eq!(stake.bonded, Amount::ZERO);
    assert_eq!(
        stake.unbonding.iter().map(|u| u.amount).collect::<Vec<_>>(),
        vec![Amount(250 * UNIT)]
    );
    assert_eq!(stake.slashed, Amount(250 * UNIT));
    assert_eq!(f.supply().burned.0, supply.burned.0 + 250 * UNIT);
    f.check_supply();
}

#[test]
fn service_events_are_typed_in_receipts_and_tagged_in_json() {
    use crate::service::ServiceEvent;
    use crate::storage::StorageEvent;
    let id = depin_types::Hash::of(b"deal");
    let event = StorageEvent::DealOpened { id, escrow_dc: 7 }.to_event();
    assert_eq!(
        event.service_event::<StorageEvent>(),
        Some(StorageEvent::DealOpened { id, escrow_dc: 7 })
    );
    // Another service's decoder does not claim it.
    assert_eq!(event.service_event::<crate::compute::ComputeEvent>(), None);
    let protocol = Protocol::new(setup().protocol.genesis().clone()).expect("protocol");
    let json = protocol.event_json(&event);
    assert_eq!(json["type"], "service");
    assert_eq!(json["service"], "storage");
    assert_eq!(json["event"]["type"], "deal_opened");
    assert_eq!(json["event"]["id"], id.to_hex());
    assert_eq!(json["event"]["escrow_dc"], "7");
    // The JSON reads back as the same event.
    let back: Event = serde_json::from_value(json).expect("event from json");
    assert_eq!(back, event);
    // Junk bytes decode to nothing rather than to a wrong event.
    let junk = Event::Service {
        service: crate::storage::SERVICE,
        data: vec![0xff; 3],
    };
    assert_eq!(junk.service_event::<StorageEvent>(), None);
    assert!(protocol.event_json(&junk).get("event").is_none());
}

/// The escape: a validator deregisters its candidacy and unbonds everything at once while it
/// still signs in the current and next set, leaving nothing for an equivocation slash. Its
/// validator minimum stays bonded while it is in either set.
#[test]
fn a_validator_in_the_set_cannot_unbond_below_the_validator_minimum() {
    let mut f = setup();
    let v = f.validator.clone();
    f.ok(&v, Action::DeregisterValidator);
    let bonded = f.stake(&v).bonded;
    let minimum = f.protocol.genesis().staking.min_stake_validator;
    assert!(!minimum.is_zero() && bonded >= minimum);
    let tx = f.tx(&v, unbond(bonded.0));
    assert!(matches!(
        f.reject(&tx),
        TxError::StakeBelowMinimum { required, .. } if required == minimum
    ));
    // What is above the minimum can go.
    let excess = bonded.0 - minimum.0;
    if excess > 0 {
        f.ok(&v, unbond(excess));
    }
}

/// Washing a record: a provider with failures deregisters and registers again to start over
/// with a clean reputation. Its reputation and failures come back with the address.
#[test]
fn re_registering_keeps_the_address_reputation_and_failures() {
    let mut f = setup();
    let (p, alice) = (f.user(1), f.user(2));
    f.make_provider(&p, 200 * UNIT, &[crate::storage::SERVICE]);
    f.ok(
        &alice,
        toy(ToyOp::Slash {
            provider: p.address(),
            fraction_bps: 100,
        }),
    );
    let before = f.provider(&p).expect("provider");
    assert_eq!(before.reputation_beta, 1);
    f.ok(&p, Action::DeregisterProvider);
    assert!(f.provider(&p).is_none());
    f.ok(&p, register(&[crate::storage::SERVICE]));
    let after = f.provider(&p).expect("registered again");
    assert_eq!(after.reputation_beta, before.reputation_beta);
    assert_eq!(after.reputation_alpha, before.reputation_alpha);
    assert_eq!(after.failures, before.failures);
}

/// The attack: a validator signs two conflicting votes in one round (a fork attempt, or a
/// careless double-run). Anyone holding the two votes (simplex reports them) proves it on
/// chain: the validator loses `double_sign_bps` of its stake once per era and is barred from
/// the validator set; forged, replayed or malformed evidence is refused and changes nothing.
#[test]
fn equivocation_evidence_slashes_the_validator_once_and_bars_it_from_the_set() {
    use crate::equivocation::{NOTARIZE_SUFFIX, signed_bytes, write_varint};
    let offender = Keypair::from_seed(b"validator-2");
    let mut f = setup_with(|g| {
        g.validators.push(GenesisValidator {
            address: offender.address(),
            stake: Amount(30_000 * UNIT),
        });
    });
    let mut sorted = validator_set(&f, 0);
    sorted.sort();
    let signer = sorted
        .iter()
        .position(|a| *a == offender.address())
        .expect("in the set") as u64;
    let vote = |key: &Keypair, view: u64, digest: u8| -> Vec<u8> {
        let mut subject = Vec::new();
        write_varint(0, &mut subject);
        write_varint(view, &mut subject);
        write_varint(view - 1, &mut subject);
        subject.extend_from_slice(&[digest; 32]);
        let signature = key.sign(&signed_bytes(CHAIN_ID, NOTARIZE_SUFFIX, &subject));
        write_varint(signer, &mut subject);
        subject.extend_from_slice(&signature.0);
        subject
    };
    let evidence =
        |key: &Keypair, view: u64| [vec![7], vote(key, view, 1), vote(key, view, 2)].concat();
    let report = |bytes: Vec<u8>| Action::ReportEquivocation { evidence: bytes };
    let reporter = f.user(0);

    // Forged: the "offender's" votes signed by someone else.
    let tx = f.tx(&reporter, report(evidence(&f.user(1), 5)));
    assert_eq!(f.reject(&tx).code(), "invalid_evidence");
    let mut truncated = evidence(&offender, 5);
    truncated.pop();
    let tx = f.tx(&reporter, report(truncated));
    assert_eq!(f.reject(&tx).code(), "invalid_evidence");

    let before = f.stake(&offender);
    let receipt = f.ok(&reporter, report(evidence(&offender, 5)));
    let bps = u128::from(f.protocol.genesis().slashing.double_sign_bps);
    let expected = Amount(before.bonded.0 * bps / 10_000);
    assert!(
        receipt.events.iter().any(|e| matches!(
            e,
            Event::ValidatorSlashed { validator, amount, epoch: 0, view: 5, .. }
                if *validator == offender.address() && *amount == expected
        )),
        "{:?}",
        receipt.events
    );
    assert_eq!(f.stake(&offender).bonded.0, before.bonded.0 - expected.0);
    f.check_supply();

    // The same evidence again, or another conflict of the same era: one slash per era.
    for view in [5, 9] {
        let tx = f.tx(&reporter, report(evidence(&offender, view)));
        assert_eq!(f.reject(&tx).code(), "equivocation_already_slashed");
    }
    // Barred: it cannot stand again, and the next set chosen leaves it out.
    let funder = f.validator.clone();
    f.ok(
        &funder,
        Action::Transfer {
            to: offender.address(),
            amount: Amount(UNIT),
        },
    );
    let tx = f.tx(&offender, register_validator("10.0.0.2:7301"));
    assert_eq!(f.reject(&tx).code(), "validator_tombstoned");
    f.end_blocks_through(2 * EPOCH_BLOCKS);
    assert_eq!(validator_set(&f, 2), vec![f.validator.address()]);
    f.check_supply();
}
