//! The storage service's rules through real transactions: escrow and placement, confirmation
//! and activation, challenges answered with real BLAKE3 proofs, payment, slashing for wrong
//! and missing proofs, repair marking, expiry, deletion and cancellation.

use super::*;
use crate::storage::{
    Deal, DealStatus, Piece, PieceProof, PieceRef, PieceState, ProviderUsage, SegmentSpec,
    StorageEvent, StorageModule, StorageTx, challenge_chunk, keys, merkle,
};
use crate::storage::{ErasureProfile, StorageParams};
use depin_types::Hash;

const PIECE_BYTES: u64 = 600;
const PIECES: u16 = 4;
const EPOCHS: u64 = 3;
/// One Data Credit per piece byte per epoch.
const DC_PER_PIECE_EPOCH: u128 = PIECE_BYTES as u128;

fn storage(tx: StorageTx) -> Action {
    Action::Service {
        service: crate::storage::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

fn piece_data(index: u16) -> Vec<u8> {
    (0..PIECE_BYTES)
        .map(|b| (b * 7 + u64::from(index) * 13) as u8)
        .collect()
}

fn open_tx(epochs: u64) -> StorageTx {
    StorageTx::OpenDeal {
        object_bytes: 1100,
        encrypted: false,
        epochs,
        segments: vec![SegmentSpec {
            segment_bytes: 2 * PIECE_BYTES,
            piece_bytes: PIECE_BYTES,
            roots: (0..PIECES).map(|i| Hash::of(&piece_data(i))).collect(),
        }],
    }
}

/// Users 0-3 are storage providers (1,000 bytes of capacity each), the validator key owns
/// deals and holds 1,000,000 DC; 2-of-4 coding, activation at 3 stored pieces.
fn storage_setup() -> Fixture {
    storage_setup_with(|_| {})
}

fn storage_setup_with(tweak: impl FnOnce(&mut StorageParams)) -> Fixture {
    storage_setup_funded(tweak, &[])
}

/// The storage fixture with more genesis accounts holding 250 tokens each.
fn storage_setup_funded(tweak: impl FnOnce(&mut StorageParams), funded: &[Address]) -> Fixture {
    let mut f = setup_with(|g| {
        for address in funded {
            g.balances.push(crate::params::GenesisBalance {
                address: *address,
                amount: Amount(250 * UNIT),
            });
        }
        g.update_service_params::<StorageParams>(|p| {
            p.erasure = ErasureProfile {
                data_pieces: 2,
                repair_threshold: 2,
                success_threshold: 3,
                total_pieces: PIECES,
            };
            p.price_dc_per_gib_epoch = 1 << 30;
            tweak(p);
        })
        .expect("storage params");
    });
    f.protocol
        .register_service(Arc::new(StorageModule))
        .expect("storage registers");
    for i in 0..4 {
        let u = f.user(i);
        f.make_provider(&u, 200 * UNIT, &[crate::storage::SERVICE]);
    }
    let owner = f.validator.clone();
    f.ok(&owner, buy_credits(10 * UNIT));
    assert_eq!(f.account(&owner).data_credits, 1_000_000);
    f
}

impl Fixture {
    fn record<T: BorshDeserialize>(&self, key: Vec<u8>) -> Option<T> {
        self.get(&StateKey::Service(crate::storage::SERVICE, key))
    }

    fn deal(&self, id: &Hash) -> Deal {
        self.record(keys::deal(id)).expect("deal exists")
    }

    fn piece(&self, id: &Hash, piece: u16) -> Piece {
        self.record(keys::piece(&piece_ref(id, piece)))
            .expect("piece exists")
    }

    fn usage(&self, who: &Keypair) -> ProviderUsage {
        self.usage_of(&who.address())
    }

    fn usage_of(&self, who: &Address) -> ProviderUsage {
        self.record(keys::usage(who)).unwrap_or_default()
    }

    fn held_by(&self, who: &Address) -> Vec<PieceRef> {
        self.record(keys::held(who)).unwrap_or_default()
    }

    /// Every deal opened so far, oldest first.
    pub(super) fn storage_deals(&self) -> Vec<Hash> {
        let count: u64 = self.record(keys::NEXT_DEAL.to_vec()).unwrap_or(0);
        (0..count)
            .filter_map(|n| self.record(keys::deal_number(n)))
            .collect()
    }

    /// The deals pending or active.
    pub(super) fn open_deals(&self) -> Vec<Hash> {
        self.storage_deals()
            .into_iter()
            .filter(|id| {
                matches!(
                    self.deal(id).status,
                    DealStatus::Pending | DealStatus::Active
                )
            })
            .collect()
    }

    /// Opens a deal from the validator key and returns its id.
    fn open(&mut self, epochs: u64) -> Hash {
        let owner = self.validator.clone();
        self.ok(&owner, storage(open_tx(epochs)));
        *self.storage_deals().last().expect("a new deal")
    }

    /// The user key a piece was placed on.
    fn holder(&self, id: &Hash, piece: u16) -> Keypair {
        let address = self.piece(id, piece).provider.expect("placed");
        self.users
            .iter()
            .chain(std::iter::once(&self.validator))
            .find(|u| u.address() == address)
            .expect("a provider key")
            .clone()
    }

    /// A proof of `piece` for the current epoch's challenge, from `data`.
    fn proof(&self, id: &Hash, piece: u16, data: &[u8]) -> PieceProof {
        let epoch = self.block().epoch(EPOCH_BLOCKS);
        let seed: Hash = self.record(keys::seed(epoch)).expect("seed of the epoch");
        let r = piece_ref(id, piece);
        let index = challenge_chunk(&seed, &r, epoch, PIECE_BYTES);
        PieceProof {
            piece: r,
            proof: merkle::prove_chunk(data, index).expect("chunk in range"),
        }
    }

    fn prove(&mut self, id: &Hash, piece: u16, data: &[u8]) -> Receipt {
        let proof = self.proof(id, piece, data);
        let holder = self.holder(id, piece);
        let epoch = self.block().epoch(EPOCH_BLOCKS);
        self.ok(
            &holder,
            storage(StorageTx::SubmitProofs {
                epoch,
                proofs: vec![proof],
            }),
        )
    }
}

fn piece_ref(id: &Hash, piece: u16) -> PieceRef {
    PieceRef {
        deal: *id,
        segment: 0,
        piece,
    }
}

fn service_code(error: TxError) -> &'static str {
    match error {
        TxError::ServiceRejected { code, .. } => code,
        other => panic!("expected a storage rejection, got {other:?}"),
    }
}

#[test]
fn a_deal_escrows_places_activates_pays_valid_proofs_and_slashes_bad_ones() {
    let mut f = storage_setup();
    let owner = f.validator.clone();
    let dc_before = f.account(&owner).data_credits;
    let id = f.open(EPOCHS);

    // Escrow: every placed piece for every epoch, plus the 20% repair budget.
    let deal = f.deal(&id);
    let storage_escrow = DC_PER_PIECE_EPOCH * u128::from(PIECES) * u128::from(EPOCHS);
    assert_eq!(deal.status, DealStatus::Pending);
    assert_eq!(deal.escrow_dc, storage_escrow);
    assert_eq!(deal.repair_budget_dc, storage_escrow / 5);
    assert_eq!(
        f.account(&owner).data_credits,
        dc_before - storage_escrow - storage_escrow / 5
    );
    // Placement: four distinct providers, each with the piece's bytes reserved.
    let mut holders: Vec<Address> = (0..PIECES)
        .map(|p| f.piece(&id, p).provider.expect("placed"))
        .collect();
    holders.sort();
    holders.dedup();
    assert_eq!(holders.len(), usize::from(PIECES));
    for p in 0..PIECES {
        let holder = f.holder(&id, p);
        assert_eq!(f.usage(&holder).committed_bytes, PIECE_BYTES);
        assert_eq!(f.piece(&id, p).state, PieceState::Assigned);
    }
    f.check_supply();

    // Only the assigned provider confirms, once.
    let (h0, h1) = (f.holder(&id, 0), f.holder(&id, 1));
    let confirm = |p: u16| {
        storage(StorageTx::ConfirmPieces {
            pieces: vec![piece_ref(&id, p)],
        })
    };
    let tx = f.tx(&h1, confirm(0));
    assert_eq!(service_code(f.reject(&tx)), "not_assigned_provider");
    f.ok(&h0, confirm(0));
    let tx = f.tx(&h0, confirm(0));
    assert_eq!(service_code(f.reject(&tx)), "piece_not_assigned");
    f.ok(&h1, confirm(1));
    assert_eq!(f.deal(&id).status, DealStatus::Pending);
    // The third confirmation reaches the success threshold: active from the next epoch, the
    // fourth piece (long tail) is released and its escrow refunded.
    let h2 = f.holder(&id, 2);
    let h3 = f.holder(&id, 3);
    let receipt = f.ok(&h2, confirm(2));
    assert!(receipt.events.iter().any(|e| matches!(
        e.service_event::<StorageEvent>(),
        Some(StorageEvent::DealActive { .. })
    )));
    let deal = f.deal(&id);
    assert_eq!(deal.status, DealStatus::Active);
    assert_eq!(
        (deal.start_epoch, deal.end_epoch),
        (Some(1), Some(1 + EPOCHS))
    );
    assert_eq!(deal.escrow_dc, storage_escrow * 3 / 4);
    assert_eq!(f.piece(&id, 3).state, PieceState::Released);
    assert_eq!(f.usage(&h3).committed_bytes, 0);
    f.check_supply();

    // Epoch 1: the first epoch with proofs due.
    f.end_blocks_through(EPOCH_BLOCKS);
    let balance = f.balance(&h0);
    let receipt = f.prove(&id, 0, &piece_data(0));
    let tokens_per_piece_epoch = 6_000; // 600 DC x $0.00001 at $1 per token, 6 decimals
    assert_eq!(f.balance(&h0), balance - FEE.0 + tokens_per_piece_epoch);
    assert!(receipt.events.iter().any(|e| matches!(
        e,
        Event::ServicePaid { data_credits, .. } if *data_credits == DC_PER_PIECE_EPOCH
    )));
    let work: EpochWork = f.get(&StateKey::EpochWork(1)).expect("work recorded");
    assert_eq!(work.units[&crate::storage::SERVICE][&h0.address()], 1);
    // The same proof again, a proof for another epoch, a proof from someone else: refused.
    let again = f.tx(
        &h0,
        storage(StorageTx::SubmitProofs {
            epoch: 1,
            proofs: vec![f.proof(&id, 0, &piece_data(0))],
        }),
    );
    assert_eq!(service_code(f.reject(&again)), "already_proven");
    let later = f.tx(
        &h1,
        storage(StorageTx::SubmitProofs {
            epoch: 2,
            proofs: vec![f.proof(&id, 1, &piece_data(1))],
        }),
    );
    assert_eq!(service_code(f.reject(&later)), "wrong_epoch");
    let theft = f.tx(
        &h0,
        storage(StorageTx::SubmitProofs {
            epoch: 1,
            proofs: vec![f.proof(&id, 1, &piece_data(1))],
        }),
    );
    assert_eq!(service_code(f.reject(&theft)), "not_assigned_provider");

    // A proof over data the provider does not hold is included, and slashed (once, for the
    // epoch) at the epoch's end.
    let stake_before_invalid = f.stake(&h1).bonded.0;
    let mut wrong = piece_data(1);
    wrong.iter_mut().for_each(|b| *b ^= 0x55);
    let receipt = f.prove(&id, 1, &wrong);
    assert!(
        !receipt
            .events
            .iter()
            .any(|e| matches!(e, Event::Slashed { .. }))
    );

    // Piece 2's provider says nothing: slashed at the end of the epoch too.
    let stake_before = f.stake(&h2).bonded.0;
    f.end_blocks_through(2 * EPOCH_BLOCKS);
    assert_eq!(
        f.stake(&h1).bonded.0,
        stake_before_invalid - stake_before_invalid / 10
    );
    let failures = f.provider(&h1).expect("provider").failures;
    assert_eq!(
        failures.last().expect("a failure").reason,
        "storage proofs failed in epoch 1: 1 invalid of 1 due"
    );
    assert_eq!(f.stake(&h2).bonded.0, stake_before - stake_before / 100);
    let failures = f.provider(&h2).expect("provider").failures;
    assert_eq!(
        failures.last().expect("a failure").reason,
        "storage proofs failed in epoch 1: 1 missed of 1 due"
    );
    assert_eq!(f.piece(&id, 2).misses, 1);
    f.check_supply();

    // Epoch 2: two good proofs; the second miss of piece 2 loses it and the segment falls to
    // the repair threshold.
    f.prove(&id, 0, &piece_data(0));
    f.prove(&id, 1, &piece_data(1));
    assert_eq!(f.piece(&id, 1).misses, 0, "a good proof resets the misses");
    f.end_blocks_through(3 * EPOCH_BLOCKS);
    assert_eq!(f.piece(&id, 2).state, PieceState::Lost);
    assert_eq!(f.usage(&h2).committed_bytes, 0);
    assert!(f.deal(&id).segments[0].needs_repair);

    // Epoch 3 is the last: the deal ends, unused escrow and repair budget go back.
    f.prove(&id, 0, &piece_data(0));
    let dc_before_end = f.account(&owner).data_credits;
    let deal = f.deal(&id);
    let unused = deal.escrow_dc + deal.repair_budget_dc;
    f.end_blocks_through(4 * EPOCH_BLOCKS);
    let deal = f.deal(&id);
    assert_eq!(deal.status, DealStatus::Ended);
    assert_eq!(deal.paid_dc, DC_PER_PIECE_EPOCH * 4);
    assert_eq!(f.account(&owner).data_credits, dc_before_end + unused);
    assert!(f.open_deals().is_empty());
    for holder in [&h0, &h1, &h2, &h3] {
        assert_eq!(f.usage(holder).committed_bytes, 0);
    }
    f.check_supply();
}

#[test]
fn bad_deals_are_refused_and_leave_state_untouched() {
    let mut f = storage_setup();
    let owner = f.validator.clone();
    // No Data Credits.
    let poor = f.user(1);
    let tx = f.tx(&poor, storage(open_tx(EPOCHS)));
    assert!(matches!(
        f.reject(&tx),
        TxError::InsufficientDataCredits { .. }
    ));
    // Malformed shapes.
    let mut bad = Vec::new();
    bad.push(open_tx(0));
    let StorageTx::OpenDeal { segments, .. } = open_tx(1) else {
        unreachable!()
    };
    let mut short = segments.clone();
    short[0].roots.pop();
    bad.push(StorageTx::OpenDeal {
        object_bytes: 1,
        encrypted: false,
        epochs: 1,
        segments: short,
    });
    let mut padded = segments.clone();
    padded[0].piece_bytes += 100;
    bad.push(StorageTx::OpenDeal {
        object_bytes: 1,
        encrypted: false,
        epochs: 1,
        segments: padded,
    });
    bad.push(StorageTx::OpenDeal {
        object_bytes: 10_000,
        encrypted: false,
        epochs: 1,
        segments: segments.clone(),
    });
    bad.push(StorageTx::OpenDeal {
        object_bytes: 0,
        encrypted: false,
        epochs: 1,
        segments: Vec::new(),
    });
    for tx in bad {
        let signed = f.tx(&owner, storage(tx));
        assert_eq!(service_code(f.reject(&signed)), "bad_deal");
    }
    // Pieces larger than every provider's free space.
    let big = StorageTx::OpenDeal {
        object_bytes: 4000,
        encrypted: false,
        epochs: 1,
        segments: vec![SegmentSpec {
            segment_bytes: 4000,
            piece_bytes: 2000,
            roots: vec![Hash::ZERO; usize::from(PIECES)],
        }],
    };
    let tx = f.tx(&owner, storage(big));
    assert_eq!(service_code(f.reject(&tx)), "not_enough_providers");
    // Bytes that are not a storage transaction; an unknown deal.
    let junk = f.tx(
        &owner,
        Action::Service {
            service: crate::storage::SERVICE,
            payload: vec![9, 9, 9],
        },
    );
    assert_eq!(service_code(f.reject(&junk)), "malformed_storage_tx");
    let unknown = f.tx(&owner, storage(StorageTx::DeleteDeal { deal: Hash::ZERO }));
    assert_eq!(service_code(f.reject(&unknown)), "unknown_deal");
    f.check_supply();
}

/// The attack: open deals and never upload them (or delete them just before they would be
/// cancelled), holding providers' capacity away from paying users for nothing. A deal that
/// never activated pays the providers it held, at the storage price for bytes × epochs held.
#[test]
fn a_deal_that_never_activates_pays_the_providers_it_held_for_bytes_times_epochs() {
    let mut f = storage_setup();
    let owner = f.validator.clone();
    let dc_before = f.account(&owner).data_credits;
    let providers: Vec<Keypair> = (0..4).map(|i| f.user(i)).collect();
    let balances = |f: &Fixture| -> Vec<u128> { providers.iter().map(|p| f.balance(p)).collect() };
    // 1 DC is $0.00001, a token $1: a piece-epoch of 600 DC pays 6,000 base units.
    let units_per_dc = 10;
    let before = balances(&f);
    let id = f.open(EPOCHS);
    let stranger = f.user(2);
    let tx = f.tx(&stranger, storage(StorageTx::DeleteDeal { deal: id }));
    assert_eq!(service_code(f.reject(&tx)), "not_deal_owner");
    let receipt = f.ok(&owner, storage(StorageTx::DeleteDeal { deal: id }));
    let fee = 4 * DC_PER_PIECE_EPOCH;
    assert!(
        receipt
            .events
            .iter()
            .any(|e| e.service_event::<StorageEvent>()
                == Some(StorageEvent::ReservationFeePaid {
                    id,
                    fee_dc: fee,
                    epochs_held: 1
                }))
    );
    assert_eq!(f.deal(&id).status, DealStatus::Deleted);
    assert_eq!(f.account(&owner).data_credits, dc_before - fee);
    let paid: Vec<u128> = balances(&f)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(paid, vec![DC_PER_PIECE_EPOCH * units_per_dc; 4]);
    let tx = f.tx(&owner, storage(StorageTx::DeleteDeal { deal: id }));
    assert_eq!(service_code(f.reject(&tx)), "deal_closed");
    for p in 0..PIECES {
        assert_eq!(f.piece(&id, p).state, PieceState::Released);
    }

    // Nobody confirms: cancelled after the activation window (2 epochs), two epochs paid.
    let (dc_before, before) = (f.account(&owner).data_credits, balances(&f));
    let id = f.open(EPOCHS);
    f.end_blocks_through(EPOCH_BLOCKS);
    assert_eq!(f.deal(&id).status, DealStatus::Pending);
    f.end_blocks_through(2 * EPOCH_BLOCKS);
    assert_eq!(f.deal(&id).status, DealStatus::Cancelled);
    assert_eq!(f.account(&owner).data_credits, dc_before - 2 * fee);
    let paid: Vec<u128> = balances(&f)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(paid, vec![2 * DC_PER_PIECE_EPOCH * units_per_dc; 4]);
    assert!(f.open_deals().is_empty());
    f.check_supply();
}

#[test]
fn a_segment_that_lost_pieces_is_repaired_onto_a_new_provider_and_the_repairer_paid() {
    let mut f = storage_setup();
    let owner = f.validator.clone();
    // A fifth provider: the one the deal does not use takes the repaired piece.
    f.make_provider(&owner, 200 * UNIT, &[crate::storage::SERVICE]);
    // Long enough for a loss, a stalled repair and its hand-over.
    let id = f.open(8);
    let holders: Vec<Keypair> = (0..PIECES)
        .map(|p| {
            let address = f.piece(&id, p).provider.expect("placed");
            f.users
                .iter()
                .chain(std::iter::once(&owner))
                .find(|k| k.address() == address)
                .expect("a provider")
                .clone()
        })
        .collect();
    for p in 0..3 {
        f.ok(
            &holders[usize::from(p)],
            storage(StorageTx::ConfirmPieces {
                pieces: vec![piece_ref(&id, p)],
            }),
        );
    }
    assert_eq!(f.deal(&id).status, DealStatus::Active);
    let repair = storage(StorageTx::RepairSegment {
        deal: id,
        segment: 0,
    });
    let tx = f.tx(&f.user(0), repair.clone());
    assert_eq!(service_code(f.reject(&tx)), "no_repair_needed");

    // Piece 2's holder never proves: lost after two epochs, the segment needs repair.
    f.end_blocks_through(EPOCH_BLOCKS);
    for _ in 0..2 {
        f.prove(&id, 0, &piece_data(0));
        f.prove(&id, 1, &piece_data(1));
        let next = f.height + EPOCH_BLOCKS - 1;
        f.end_blocks_through(next);
    }
    assert_eq!(f.piece(&id, 2).state, PieceState::Lost);
    assert!(f.deal(&id).segments[0].needs_repair);

    // The attack: a provider with no piece of the segment (here the spare one, or the one
    // that lost its piece) claims the repair to collect the repair budget. Only a holder of
    // a stored piece of the segment may rebuild it.
    let spare = f
        .users
        .iter()
        .chain(std::iter::once(&owner))
        .find(|k| holders.iter().all(|h| h.address() != k.address()))
        .expect("a fifth provider")
        .clone();
    for outsider in [&spare, &holders[2]] {
        let tx = f.tx(outsider, repair.clone());
        assert_eq!(service_code(f.reject(&tx)), "not_a_holder");
    }

    // A holder starts the repair: the lost piece goes to a provider with no piece of this
    // segment, with the same root (coding is deterministic).
    f.ok(&holders[0], repair.clone());
    let placed = f.piece(&id, 2);
    assert_eq!(placed.state, PieceState::Assigned);
    assert_eq!(placed.root, Hash::of(&piece_data(2)));
    assert_eq!(placed.repairer, Some(holders[0].address()));
    let first = placed.provider.expect("re-placed");
    assert!(holders[..3].iter().all(|h| h.address() != first));

    // Its new provider never confirms: once the activation window passed, the stalled repair
    // passes to another holder, not back to the one that stalled.
    for _ in 0..2 {
        f.prove(&id, 0, &piece_data(0));
        f.prove(&id, 1, &piece_data(1));
        let next = f.height + EPOCH_BLOCKS - 1;
        f.end_blocks_through(next);
    }
    let tx = f.tx(&holders[0], repair.clone());
    assert_eq!(service_code(f.reject(&tx)), "repair_passed_on");
    let repairer = holders[1].clone();
    f.ok(&repairer, repair);
    let placed = f.piece(&id, 2);
    assert_eq!(placed.repairer, Some(repairer.address()));
    assert_eq!(placed.state, PieceState::Assigned);
    let newcomer = placed.provider.expect("re-placed");
    assert!(holders[..3].iter().all(|h| h.address() != newcomer));
    assert!(
        f.held_by(&first).iter().all(|r| r.deal != id),
        "the stalled placement is released"
    );
    let newcomer = f
        .users
        .iter()
        .chain(std::iter::once(&owner))
        .find(|k| k.address() == newcomer)
        .expect("a provider")
        .clone();
    let budget = f.deal(&id).repair_budget_dc;
    let balance = f.balance(&repairer);
    let receipt = f.ok(
        &newcomer,
        storage(StorageTx::ConfirmPieces {
            pieces: vec![piece_ref(&id, 2)],
        }),
    );
    assert!(receipt.events.iter().any(|e| matches!(
        e,
        Event::ServicePaid { provider, data_credits, .. }
            if *provider == repairer.address() && *data_credits == DC_PER_PIECE_EPOCH
    )));
    assert_eq!(f.deal(&id).repair_budget_dc, budget - DC_PER_PIECE_EPOCH);
    assert!(!f.deal(&id).segments[0].needs_repair);
    // The repairer may be the block proposer too, paid the confirmation's fee.
    let fee = if repairer.address() == f.validator.address() {
        FEE.0
    } else {
        0
    };
    assert_eq!(f.balance(&repairer), balance + 6_000 + fee);
    f.check_supply();

    // A holder that deregisters is gone at the next epoch's end: its piece is lost at once,
    // without waiting for missed proofs, and its space released.
    f.ok(&holders[1], Action::DeregisterProvider);
    assert_eq!(f.piece(&id, 1).state, PieceState::Stored);
    let next = f.height + EPOCH_BLOCKS;
    f.end_blocks_through(next);
    let gone = f.piece(&id, 1);
    assert_eq!(gone.state, PieceState::Lost);
    assert_eq!(gone.misses, 0, "lost for leaving, not for missing proofs");
    f.check_supply();
}

/// The griefing of a brief outage: a provider holding many tiny pieces misses one epoch. The
/// old rule slashed 1% of what was left per piece (1,000 tiny pieces took almost everything);
/// now the epoch costs `missed_proof_bps` times the share of due pieces that failed, once.
#[test]
fn a_missed_epoch_costs_the_share_of_pieces_that_failed_once() {
    const TINY: u64 = 40;
    const DEALS: usize = 12;
    let mut f = storage_setup();
    let owner = f.validator.clone();
    let data = |deal: usize, piece: u16| -> Vec<u8> {
        (0..TINY)
            .map(|b| (b as u8) ^ (deal as u8).wrapping_mul(31) ^ (piece as u8).wrapping_mul(7))
            .collect()
    };
    let mut ids = Vec::new();
    for d in 0..DEALS {
        f.ok(
            &owner,
            storage(StorageTx::OpenDeal {
                object_bytes: TINY,
                encrypted: false,
                epochs: 5,
                segments: vec![SegmentSpec {
                    segment_bytes: 2 * TINY,
                    piece_bytes: TINY,
                    roots: (0..PIECES).map(|i| Hash::of(&data(d, i))).collect(),
                }],
            }),
        );
        let id = *f.open_deals().last().expect("opened");
        for p in 0..3 {
            let holder = f.holder(&id, p);
            f.ok(
                &holder,
                storage(StorageTx::ConfirmPieces {
                    pieces: vec![piece_ref(&id, p)],
                }),
            );
        }
        ids.push(id);
    }
    let victim = f.holder(&ids[0], 0);
    let held: Vec<(usize, u16)> = (0..DEALS)
        .flat_map(|d| (0..3).map(move |p| (d, p)))
        .filter(|(d, p)| f.holder(&ids[*d], *p).address() == victim.address())
        .collect();
    assert!(held.len() >= 3, "the victim holds many pieces");

    // Proves `pieces` (deal, piece) for the current epoch, one transaction per holder.
    let prove_all = |f: &mut Fixture, pieces: &[(usize, u16)]| {
        let epoch = f.block().epoch(EPOCH_BLOCKS);
        let seed: Hash = f.record(keys::seed(epoch)).expect("seed");
        let mut by_holder: BTreeMap<Address, (Keypair, Vec<PieceProof>)> = BTreeMap::new();
        for (d, p) in pieces {
            let r = piece_ref(&ids[*d], *p);
            let index = challenge_chunk(&seed, &r, epoch, TINY);
            let proof = PieceProof {
                piece: r,
                proof: merkle::prove_chunk(&data(*d, *p), index).expect("chunk"),
            };
            let holder = f.holder(&ids[*d], *p);
            by_holder
                .entry(holder.address())
                .or_insert_with(|| (holder.clone(), Vec::new()))
                .1
                .push(proof);
        }
        for (_, (key, proofs)) in by_holder {
            f.ok(&key, storage(StorageTx::SubmitProofs { epoch, proofs }));
        }
    };
    let everyone_else: Vec<(usize, u16)> = (0..DEALS)
        .flat_map(|d| (0..3).map(move |p| (d, p)))
        .filter(|piece| !held.contains(piece))
        .collect();

    // Epoch 1: the victim is offline and proves nothing.
    f.end_blocks_through(EPOCH_BLOCKS);
    prove_all(&mut f, &everyone_else);
    let before = f.stake(&victim).bonded.0;
    f.end_blocks_through(2 * EPOCH_BLOCKS);
    let missed_bps = u128::from(f.protocol.genesis().slashing.missed_proof_bps);
    assert_eq!(
        f.stake(&victim).bonded.0,
        before - before * missed_bps / 10_000,
        "one slash of missed_proof_bps for the epoch, not one per piece"
    );
    let failures = f.provider(&victim).expect("provider").failures;
    assert_eq!(
        failures.last().expect("a failure").reason,
        format!(
            "storage proofs failed in epoch 1: {n} missed of {n} due",
            n = held.len()
        )
    );

    // Epoch 2: back, it proves all but one: slashed for that one's share only.
    prove_all(&mut f, &everyone_else);
    prove_all(&mut f, &held[1..]);
    let before = f.stake(&victim).bonded.0;
    f.end_blocks_through(3 * EPOCH_BLOCKS);
    let bps = (missed_bps).div_ceil(held.len() as u128);
    assert_eq!(f.stake(&victim).bonded.0, before - before * bps / 10_000);
    f.check_supply();
}

/// Proving keeps up with capacity: each provider proves a random sample of
/// `proof_sample_pieces` of what it holds each epoch (one transaction whatever it holds), and
/// a good proof pays every epoch since the piece's last payment, so honest providers are paid
/// for every epoch of every piece. The attack: drop a piece and hope it is not sampled. Once
/// challenged, the missed piece forfeits its unpaid epochs, is challenged again every epoch
/// until proven, and is lost (and repaired) at the second miss.
#[test]
fn a_provider_proves_a_sample_each_epoch_and_a_dropped_piece_is_caught() {
    const TINY: u64 = 40;
    const DEALS: usize = 12;
    const SAMPLE: usize = 4;
    const TERM: u64 = 5;
    let dc_per_piece_epoch = u128::from(TINY);
    let mut f = storage_setup_with(|p| p.proof_sample_pieces = SAMPLE as u32);
    let owner = f.validator.clone();
    let data = |deal: usize, piece: u16| -> Vec<u8> {
        (0..TINY)
            .map(|b| (b as u8) ^ (deal as u8).wrapping_mul(31) ^ (piece as u8).wrapping_mul(7))
            .collect()
    };
    let mut ids = Vec::new();
    for d in 0..DEALS {
        f.ok(
            &owner,
            storage(StorageTx::OpenDeal {
                object_bytes: TINY,
                encrypted: false,
                epochs: TERM,
                segments: vec![SegmentSpec {
                    segment_bytes: 2 * TINY,
                    piece_bytes: TINY,
                    roots: (0..PIECES).map(|i| Hash::of(&data(d, i))).collect(),
                }],
            }),
        );
        let id = *f.storage_deals().last().expect("opened");
        for p in 0..3 {
            let holder = f.holder(&id, p);
            f.ok(
                &holder,
                storage(StorageTx::ConfirmPieces {
                    pieces: vec![piece_ref(&id, p)],
                }),
            );
        }
        ids.push(id);
    }
    let providers: Vec<Keypair> = (0..4).map(|i| f.user(i)).collect();
    let deal_index = |id: &Hash| ids.iter().position(|d| d == id).expect("a bench deal");
    let cheater = providers[0].clone();
    let mut dropped: Option<PieceRef> = None;
    let mut caught_in = None;
    for epoch in 1..=TERM {
        f.end_blocks_through(epoch * EPOCH_BLOCKS);
        let seed: Hash = f.record(keys::seed(epoch)).expect("seed");
        for key in &providers {
            let held = f.held_by(&key.address()).len();
            let challenges: Vec<PieceRef> = f
                .record(keys::challenges(epoch, &key.address()))
                .unwrap_or_default();
            if key.address() != cheater.address() {
                assert_eq!(
                    challenges.len(),
                    held.min(SAMPLE),
                    "a sample of what it holds"
                );
            }
            if epoch == 2 && key.address() == cheater.address() {
                // The cheater throws away a piece it is about to be asked for.
                dropped = challenges.first().copied();
            }
            let proofs: Vec<PieceProof> = challenges
                .iter()
                .filter(|r| Some(**r) != dropped)
                .map(|r| PieceProof {
                    piece: *r,
                    proof: merkle::prove_chunk(
                        &data(deal_index(&r.deal), r.piece),
                        challenge_chunk(&seed, r, epoch, TINY),
                    )
                    .expect("chunk"),
                })
                .collect();
            if !proofs.is_empty() {
                f.ok(key, storage(StorageTx::SubmitProofs { epoch, proofs }));
            }
            if let Some(r) = dropped
                && key.address() == cheater.address()
                && challenges.contains(&r)
                && caught_in.is_none()
            {
                caught_in = Some(epoch);
            }
        }
        if caught_in == Some(epoch) {
            let before = f.stake(&cheater).bonded.0;
            let due = f
                .record::<Vec<PieceRef>>(keys::challenges(epoch, &cheater.address()))
                .expect("challenged")
                .len();
            f.end_blocks_through((epoch + 1) * EPOCH_BLOCKS);
            let bps =
                u128::from(f.protocol.genesis().slashing.missed_proof_bps).div_ceil(due as u128);
            assert_eq!(
                f.stake(&cheater).bonded.0,
                before - before * bps / 10_000,
                "slashed for the sampled share that failed"
            );
            let r = dropped.expect("dropped");
            let next: Vec<PieceRef> = f
                .record(keys::challenges(epoch + 1, &cheater.address()))
                .expect("challenged again");
            assert!(next.contains(&r), "a missed piece is challenged again");
        }
    }
    let r = dropped.expect("the cheater dropped a piece");
    assert_eq!(caught_in, Some(2));
    let lost: Piece = f.record(keys::piece(&r)).expect("piece");
    assert_eq!(lost.state, PieceState::Lost, "the second miss loses it");
    assert!(f.deal(&r.deal).segments[0].needs_repair);

    // The end of the term: every piece that never failed is paid for all its epochs, the
    // ones the sample skipped included.
    f.end_blocks_through((TERM + 1) * EPOCH_BLOCKS);
    for id in &ids {
        let deal = f.deal(id);
        assert_eq!(deal.status, DealStatus::Ended);
        if *id != r.deal {
            assert_eq!(deal.paid_dc, 3 * u128::from(TERM) * dc_per_piece_epoch);
        } else {
            // The dropped piece was paid at most for epoch 1, before it was dropped.
            assert!(deal.paid_dc <= (2 * u128::from(TERM) + 1) * dc_per_piece_epoch);
            assert!(deal.paid_dc >= 2 * u128::from(TERM) * dc_per_piece_epoch);
        }
    }
    f.check_supply();
}

/// The escape: a provider holding pieces deregisters (or drops the storage offer) the moment
/// a fault is likely, leaving the network to repair what it held for free. It leaves by
/// graceful exit — no new pieces, each of its pieces moved by a holder's repair — or it
/// forfeits `exit_forfeit_bps` of its stake.
#[test]
fn a_provider_leaves_by_graceful_exit_or_forfeits_a_slash() {
    let mut f = storage_setup();
    let owner = f.validator.clone();
    f.make_provider(&owner, 200 * UNIT, &[crate::storage::SERVICE]);
    let id = f.open(EPOCHS);
    let holders: Vec<Keypair> = (0..PIECES).map(|p| f.holder(&id, p)).collect();
    for p in 0..3 {
        f.ok(
            &holders[usize::from(p)],
            storage(StorageTx::ConfirmPieces {
                pieces: vec![piece_ref(&id, p)],
            }),
        );
    }
    assert_eq!(f.deal(&id).status, DealStatus::Active);
    let leaver = holders[0].clone();

    // Dropping the storage offer with a piece held is refused.
    let drop_storage = f.tx(
        &leaver,
        Action::UpdateProvider {
            services: vec![offer(crate::compute::SERVICE)],
            location: None,
        },
    );
    assert_eq!(f.reject(&drop_storage).code(), "obligations_open");

    // A graceful exit: the segment is flagged, and the leaver gets nothing new.
    let receipt = f.ok(&leaver, storage(StorageTx::BeginExit));
    assert!(
        receipt
            .events
            .iter()
            .any(|e| e.service_event::<StorageEvent>()
                == Some(StorageEvent::ExitStarted {
                    provider: leaver.address(),
                    pieces: 1,
                }))
    );
    assert!(f.deal(&id).segments[0].needs_repair);
    // Another holder moves its piece: the leaver's space is released at once.
    let repairer = holders[1].clone();
    f.ok(
        &repairer,
        storage(StorageTx::RepairSegment {
            deal: id,
            segment: 0,
        }),
    );
    let moved = f.piece(&id, 0);
    assert_eq!(moved.state, PieceState::Assigned);
    assert_ne!(moved.provider, Some(leaver.address()));
    assert!(f.held_by(&leaver.address()).is_empty());
    assert_eq!(f.usage(&leaver).piece_count, 0);
    let newcomer = f.holder(&id, 0);
    f.ok(
        &newcomer,
        storage(StorageTx::ConfirmPieces {
            pieces: vec![piece_ref(&id, 0)],
        }),
    );
    assert!(!f.deal(&id).segments[0].needs_repair);
    // Its space is free again, yet a new deal does not count it: the one other provider with
    // room is all placement finds.
    let tx = f.tx(&owner, storage(open_tx(EPOCHS)));
    match f.reject(&tx) {
        TxError::ServiceRejected { code, reason, .. } => {
            assert_eq!(code, "not_enough_providers");
            assert!(reason.ends_with("1 found"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Holding nothing, it leaves without a slash.
    let bonded = f.stake(&leaver).bonded;
    let receipt = f.ok(&leaver, Action::DeregisterProvider);
    assert!(
        !receipt
            .events
            .iter()
            .any(|e| matches!(e, Event::Slashed { .. }))
    );
    assert_eq!(f.stake(&leaver).bonded, bonded);

    // A holder that deregisters with a piece held forfeits the exit slash.
    let quitter = holders[2].clone();
    let bonded = f.stake(&quitter).bonded;
    let receipt = f.ok(&quitter, Action::DeregisterProvider);
    let forfeit = f.protocol.genesis().slashing.exit_forfeit_bps;
    let forfeited = bonded.0 * u128::from(forfeit) / 10_000;
    assert!(forfeited > 0);
    assert!(
        receipt.events.iter().any(|e| matches!(
            e,
            Event::Slashed { provider, amount, .. }
                if *provider == quitter.address() && amount.0 == forfeited
        )),
        "{:?}",
        receipt.events
    );
    assert_eq!(f.stake(&quitter).bonded.0, bonded.0 - forfeited);
    f.check_supply();
}

/// Benchmark, not a test (run with `cargo test -p depin-protocol --release --lib -- --ignored
/// epoch_with_open_deals --nocapture`): the end of an epoch with N active deals of one tiny
/// segment each (4 pieces, 3 stored), none proven, on 256 providers; what opening the last
/// deal cost; and the challenges drawn for the next epoch (each provider's sample of 256).
/// Epoch work follows the deals falling due and the providers' samples, not every open deal.
#[test]
#[ignore = "benchmark"]
fn epoch_with_open_deals() {
    const TINY: u64 = 40;
    println!(
        "| open deals | open one deal (µs) | epoch end (ms) | providers challenged | pieces challenged |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for deals in [1_000usize, 10_000, 100_000] {
        let providers: Vec<Keypair> = (10..266).map(user_key).collect();
        let funded: Vec<Address> = providers.iter().map(|k| k.address()).collect();
        let mut f = storage_setup_funded(|_| {}, &funded);
        let owner = f.validator.clone();
        f.ok(&owner, buy_credits(3_000 * UNIT));
        for p in &providers {
            f.ok(p, bond(200 * UNIT));
            f.ok(
                p,
                Action::RegisterProvider {
                    services: vec![ServiceOffer {
                        service: crate::storage::SERVICE,
                        capacity: 1 << 30,
                        price_dc_per_unit: 5,
                    }],
                    location: Some(AMSTERDAM),
                },
            );
        }
        f.users.extend(providers);
        let mut last_open = std::time::Duration::ZERO;
        for d in 0..deals {
            let roots: Vec<Hash> = (0..PIECES)
                .map(|i| Hash::tagged("bench piece", &[&d.to_le_bytes(), &i.to_le_bytes()]))
                .collect();
            let started = std::time::Instant::now();
            let receipt = f.ok(
                &owner,
                storage(StorageTx::OpenDeal {
                    object_bytes: TINY,
                    encrypted: false,
                    epochs: 10,
                    segments: vec![SegmentSpec {
                        segment_bytes: 2 * TINY,
                        piece_bytes: TINY,
                        roots,
                    }],
                }),
            );
            last_open = started.elapsed();
            let id = receipt
                .events
                .iter()
                .find_map(|e| match e.service_event::<StorageEvent>() {
                    Some(StorageEvent::DealOpened { id, .. }) => Some(id),
                    _ => None,
                })
                .expect("opened");
            for p in 0..3 {
                let holder = f.holder(&id, p);
                f.ok(
                    &holder,
                    storage(StorageTx::ConfirmPieces {
                        pieces: vec![piece_ref(&id, p)],
                    }),
                );
            }
        }
        // Into the next epoch, where the deals owe proofs, then time its end.
        let end = f.epoch_end();
        f.end_blocks_through(end);
        let end = f.epoch_end();
        f.end_blocks_through(end - 1);
        let started = std::time::Instant::now();
        f.end_block();
        let epoch_end = started.elapsed();
        let epoch = f.block().epoch(EPOCH_BLOCKS);
        let challenged: Vec<Address> = f.record(keys::challenged(epoch)).unwrap_or_default();
        let pieces: usize = challenged
            .iter()
            .map(|p| {
                f.record::<Vec<PieceRef>>(keys::challenges(epoch, p))
                    .map_or(0, |c| c.len())
            })
            .sum();
        println!(
            "| {deals} | {} | {} | {} | {pieces} |",
            last_open.as_micros(),
            epoch_end.as_millis(),
            challenged.len(),
        );
    }
}
