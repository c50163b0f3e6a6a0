//! Supply conservation through the real services: random storage, compute and coverage
//! transactions (most of them refused, some paying, escrowing, slashing and burning) across
//! epochs whose hooks expire deals, slash missed proofs, sweep jobs and split the coverage
//! share. After every block the supply must equal the sum of balances and stake, and every
//! Data Credit must be in an account or in an escrow.

use super::*;
use crate::compute::{ComputeTx, ExitKind, JobOutcome, JobSpec, commitment, keys as job_keys};
use crate::coverage::verify::Region;
use crate::coverage::{CoverageTx, HotspotAssertion, PacketReceipt, packet_message};
use crate::storage::{ErasureProfile, PieceRef, SegmentSpec, StorageParams, StorageTx};
use depin_types::Hash;

const PIECE_BYTES: u64 = 64;

/// One random step; ids are picked at run time from what the state holds.
#[derive(Debug, Clone)]
enum Op {
    BuyCredits { who: usize, amount: u128 },
    Transfer { who: usize, to: usize, amount: u128 },
    Unbond { who: usize, amount: u128 },
    Withdraw { who: usize },
    Deregister { who: usize },
    OpenDeal { epochs: u64, segments: usize },
    ConfirmPieces { deal: usize },
    ProveOrLie { deal: usize, lie: bool },
    DeleteDeal { deal: usize },
    SubmitJob { replicas: u8, fuel: u64 },
    Commit { job: usize, liar: usize },
    Reveal { job: usize },
    Finalize { job: usize },
    MoveHotspot { who: usize, north_e7: i32 },
    Packets { fcnt: u32, bytes: u32 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    let who = 0usize..5;
    prop_oneof![
        (
            who.clone(),
            prop_oneof![Just(0u128), 1..=20 * UNIT, any::<u128>()]
        )
            .prop_map(|(who, amount)| Op::BuyCredits { who, amount }),
        (who.clone(), who.clone(), 0..=100 * UNIT).prop_map(|(who, to, amount)| Op::Transfer {
            who,
            to,
            amount
        }),
        (who.clone(), 0..=900 * UNIT).prop_map(|(who, amount)| Op::Unbond { who, amount }),
        who.clone().prop_map(|who| Op::Withdraw { who }),
        who.clone().prop_map(|who| Op::Deregister { who }),
        (0u64..=3, 0usize..=2).prop_map(|(epochs, segments)| Op::OpenDeal { epochs, segments }),
        (0usize..4).prop_map(|deal| Op::ConfirmPieces { deal }),
        (0usize..4, any::<bool>()).prop_map(|(deal, lie)| Op::ProveOrLie { deal, lie }),
        (0usize..4).prop_map(|deal| Op::DeleteDeal { deal }),
        (0u8..=4, prop_oneof![1u64..=1_000_000, Just(u64::MAX)])
            .prop_map(|(replicas, fuel)| Op::SubmitJob { replicas, fuel }),
        (0usize..4, 0usize..6).prop_map(|(job, liar)| Op::Commit { job, liar }),
        (0usize..4).prop_map(|job| Op::Reveal { job }),
        (0usize..4).prop_map(|job| Op::Finalize { job }),
        (0usize..4, -2_000_000i32..2_000_000)
            .prop_map(|(who, north_e7)| Op::MoveHotspot { who, north_e7 }),
        (0u32..40, 0u32..200).prop_map(|(fcnt, bytes)| Op::Packets { fcnt, bytes }),
    ]
}

fn action(service: ServiceKind, payload: &impl borsh::BorshSerialize) -> Action {
    Action::Service {
        service,
        payload: depin_types::encode(payload),
    }
}

fn piece_data(deal_nonce: u64, index: u16) -> Vec<u8> {
    (0..PIECE_BYTES)
        .map(|b| (b * 7 + u64::from(index) * 13 + deal_nonce) as u8)
        .collect()
}

/// Packet `fcnt` of the test device, and the hotspot that hears it.
fn packet(fcnt: u32, bytes: u32) -> (Keypair, PacketReceipt) {
    let payload_hash = Hash::of(&fcnt.to_le_bytes());
    let receipt = PacketReceipt {
        dev_addr: DEV_ADDR,
        fcnt,
        payload_bytes: bytes,
        payload_hash,
        device_signature: device().sign(&packet_message(DEV_ADDR, fcnt, bytes, &payload_hash)),
        received_ms: 0,
    };
    (random_test_keys()[(fcnt as usize) % 4].clone(), receipt)
}

fn device() -> Keypair {
    Keypair::from_seed(b"random device")
}

const DEV_ADDR: u32 = 0x2601_0001;

fn site(i: usize) -> (i32, i32) {
    (523_700_000 + 180_000 * i as i32, 49_000_000)
}

impl Fixture {
    fn service_state<T: BorshDeserialize>(&self, service: ServiceKind, key: Vec<u8>) -> Option<T> {
        self.get(&StateKey::Service(service, key))
    }

    /// Every Data Credit in accounts plus every one held in a deal's or a job's escrow.
    fn data_credits_held(&self) -> u128 {
        let accounts: u128 = random_test_keys()
            .iter()
            .map(|k| self.account(k).data_credits)
            .sum();
        let deals: Vec<Hash> = self.open_deals();
        let in_deals: u128 = deals
            .iter()
            .filter_map(|id| {
                self.service_state::<crate::storage::Deal>(
                    crate::storage::SERVICE,
                    crate::storage::keys::deal(id),
                )
            })
            .map(|d| d.escrow_dc + d.repair_budget_dc)
            .sum();
        let in_jobs: u128 = self
            .jobs()
            .iter()
            .filter_map(|id| {
                self.service_state::<crate::compute::Job>(
                    crate::compute::SERVICE,
                    job_keys::job(id),
                )
            })
            .map(|j| j.escrow_dc)
            .sum();
        accounts + in_deals + in_jobs
    }

    /// Every job submitted so far, oldest first (jobs are listed for the sweep of an epoch).
    fn jobs(&self) -> Vec<Hash> {
        let mut jobs = Vec::new();
        for epoch in 0..64 {
            let count: u64 = self
                .service_state(crate::compute::SERVICE, job_keys::sweep_count(epoch))
                .unwrap_or(0);
            for index in 0..count {
                if let Some(id) = self.service_state::<Hash>(
                    crate::compute::SERVICE,
                    job_keys::sweep_entry(epoch, index),
                ) && !jobs.contains(&id)
                {
                    jobs.push(id);
                }
            }
        }
        jobs
    }

    fn deals(&self) -> Vec<Hash> {
        self.open_deals()
    }

    fn known_key(&self, address: &Address) -> Option<Keypair> {
        random_test_keys()
            .into_iter()
            .find(|k| k.address() == *address)
    }

    /// The transactions an op makes, with their senders (none when it has nothing to act on).
    fn op_txs(&self, op: &Op, deals_opened: u64) -> Vec<(Keypair, Action)> {
        let keys = random_test_keys();
        let owner = self.validator.clone();
        let pick = |list: &[Hash], i: usize| (!list.is_empty()).then(|| list[i % list.len()]);
        match op.clone() {
            Op::BuyCredits { who, amount } => vec![(keys[who].clone(), buy_credits(amount))],
            Op::Transfer { who, to, amount } => {
                vec![(keys[who].clone(), send(&keys[to], amount))]
            }
            Op::Unbond { who, amount } => vec![(keys[who].clone(), unbond(amount))],
            Op::Withdraw { who } => vec![(keys[who].clone(), Action::Withdraw)],
            Op::Deregister { who } => vec![(keys[who].clone(), Action::DeregisterProvider)],
            Op::OpenDeal { epochs, segments } => {
                let spec = SegmentSpec {
                    segment_bytes: 2 * PIECE_BYTES,
                    piece_bytes: PIECE_BYTES,
                    roots: (0..4)
                        .map(|i| Hash::of(&piece_data(deals_opened, i)))
                        .collect(),
                };
                let tx = StorageTx::OpenDeal {
                    object_bytes: 100,
                    encrypted: false,
                    epochs,
                    segments: vec![spec; segments],
                };
                vec![(owner, action(crate::storage::SERVICE, &tx))]
            }
            Op::ConfirmPieces { deal } => {
                let Some(id) = pick(&self.deals(), deal) else {
                    return Vec::new();
                };
                self.pieces_by_holder(&id)
                    .into_iter()
                    .map(|(key, pieces)| {
                        let tx = StorageTx::ConfirmPieces { pieces };
                        (key, action(crate::storage::SERVICE, &tx))
                    })
                    .collect()
            }
            Op::ProveOrLie { deal, lie } => {
                let Some(id) = pick(&self.deals(), deal) else {
                    return Vec::new();
                };
                let epoch = self.block().epoch(EPOCH_BLOCKS);
                let Some(seed) = self.service_state::<Hash>(
                    crate::storage::SERVICE,
                    crate::storage::keys::seed(epoch),
                ) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                for (key, pieces) in self.pieces_by_holder(&id) {
                    let proofs = pieces
                        .iter()
                        .filter_map(|r| {
                            // The deal's data is not known here: a wrong chunk is a lie.
                            let data = if lie {
                                vec![0xee; PIECE_BYTES as usize]
                            } else {
                                piece_data(0, r.piece)
                            };
                            let index =
                                crate::storage::challenge_chunk(&seed, r, epoch, PIECE_BYTES);
                            Some(crate::storage::PieceProof {
                                piece: *r,
                                proof: crate::storage::merkle::prove_chunk(&data, index)?,
                            })
                        })
                        .collect();
                    let tx = StorageTx::SubmitProofs { epoch, proofs };
                    out.push((key, action(crate::storage::SERVICE, &tx)));
                }
                out
            }
            Op::DeleteDeal { deal } => match pick(&self.deals(), deal) {
                Some(deal) => vec![(
                    owner,
                    action(crate::storage::SERVICE, &StorageTx::DeleteDeal { deal }),
                )],
                None => Vec::new(),
            },
            Op::SubmitJob { replicas, fuel } => {
                let spec = JobSpec {
                    module: Hash::of(b"module"),
                    module_bytes: 1_000,
                    input: None,
                    input_bytes: 0,
                    args: Vec::new(),
                    env: Vec::new(),
                    stdin: None,
                    seed: Hash::of(&fuel.to_le_bytes()),
                    max_fuel: fuel,
                    max_memory_mib: 64,
                    replicas,
                    deadline_blocks: 3,
                    max_price_dc_per_mfuel: 10,
                };
                vec![(
                    owner,
                    action(crate::compute::SERVICE, &ComputeTx::SubmitJob(spec)),
                )]
            }
            Op::Commit { job, liar } => {
                let Some(id) = pick(&self.jobs(), job) else {
                    return Vec::new();
                };
                self.replicas(&id)
                    .into_iter()
                    .enumerate()
                    .map(|(i, key)| {
                        let outcome = job_outcome(i == liar);
                        let salt = Hash::of(key.address().as_bytes());
                        let tx = ComputeTx::Commit {
                            job: id,
                            commitment: commitment(&id, &key.address(), &outcome, &salt),
                        };
                        (key, action(crate::compute::SERVICE, &tx))
                    })
                    .collect()
            }
            Op::Reveal { job } => {
                let Some(id) = pick(&self.jobs(), job) else {
                    return Vec::new();
                };
                // Replicas reveal what they committed to; the liar of `Commit` is unknown
                // here, so some reveals do not match their commitment and are refused.
                self.replicas(&id)
                    .into_iter()
                    .map(|key| {
                        let tx = ComputeTx::Reveal {
                            job: id,
                            outcome: job_outcome(false),
                            salt: Hash::of(key.address().as_bytes()),
                        };
                        (key, action(crate::compute::SERVICE, &tx))
                    })
                    .collect()
            }
            Op::Finalize { job } => match pick(&self.jobs(), job) {
                Some(job) => vec![(
                    owner,
                    action(crate::compute::SERVICE, &ComputeTx::Finalize { job }),
                )],
                None => Vec::new(),
            },
            Op::MoveHotspot { who, north_e7 } => {
                let (lat, lon) = site(who);
                let tx = CoverageTx::AssertHotspot(HotspotAssertion {
                    // Off the map is no cell, refused like any bad location.
                    location: crate::coverage::verify::location_cell_e7(
                        lat.saturating_add(north_e7),
                        lon,
                    )
                    .unwrap_or(0),
                    gain_dbi_x10: 30,
                    elevation_m: 5,
                    region: Region::Eu868,
                    full_capability: true,
                    gateway_eui: 0xA0 + who as u64,
                });
                vec![(keys[who].clone(), action(crate::coverage::SERVICE, &tx))]
            }
            Op::Packets { fcnt, bytes } => {
                // The commitment now; the report comes at the start of the next block
                // ([`Fixture::op_deferred`]).
                let (hotspot, receipt) = packet(fcnt, bytes);
                let root = crate::coverage::receipts_root(&hotspot.address(), &[receipt]);
                vec![(
                    hotspot,
                    action(
                        crate::coverage::SERVICE,
                        &CoverageTx::CommitReceipts { root },
                    ),
                )]
            }
        }
    }

    /// What an op sends in the next block: a packet's report after its commitment.
    fn op_deferred(&self, op: &Op) -> Vec<(Keypair, Action)> {
        match op {
            Op::Packets { fcnt, bytes } => {
                let (hotspot, receipt) = packet(*fcnt, *bytes);
                vec![(
                    hotspot,
                    action(
                        crate::coverage::SERVICE,
                        &CoverageTx::PacketReceipts(vec![receipt]),
                    ),
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The pieces of a deal grouped by the key of the provider they were placed on.
    fn pieces_by_holder(&self, id: &Hash) -> Vec<(Keypair, Vec<PieceRef>)> {
        let Some(deal) = self.service_state::<crate::storage::Deal>(
            crate::storage::SERVICE,
            crate::storage::keys::deal(id),
        ) else {
            return Vec::new();
        };
        let mut by: Vec<(Keypair, Vec<PieceRef>)> = Vec::new();
        for segment in 0..deal.segments.len() as u32 {
            for piece in 0..deal.total_pieces {
                let r = PieceRef {
                    deal: *id,
                    segment,
                    piece,
                };
                let Some(p) = self.service_state::<crate::storage::Piece>(
                    crate::storage::SERVICE,
                    crate::storage::keys::piece(&r),
                ) else {
                    continue;
                };
                let Some(key) = p.provider.and_then(|a| self.known_key(&a)) else {
                    continue;
                };
                match by.iter_mut().find(|(k, _)| k.address() == key.address()) {
                    Some((_, list)) => list.push(r),
                    None => by.push((key, vec![r])),
                }
            }
        }
        by
    }

    fn replicas(&self, id: &Hash) -> Vec<Keypair> {
        self.service_state::<crate::compute::Job>(crate::compute::SERVICE, job_keys::job(id))
            .map(|j| {
                j.replicas
                    .iter()
                    .filter_map(|r| self.known_key(&r.provider))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn job_outcome(lie: bool) -> JobOutcome {
    JobOutcome {
        exit: ExitKind::Exited(0),
        fuel_used: 500,
        outputs: Hash::of(if lie { b"lie" } else { b"out" }),
    }
}

proptest! {
    // A failing case prints its shrunk input; PROPTEST_RNG_SEED=<u64> replays a run.
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Up to 16 blocks (four epochs of 4) of up to 6 random service steps each.
    #[test]
    fn random_service_blocks_conserve_supply_and_data_credits(
        blocks in prop::collection::vec(prop::collection::vec(arb_op(), 0..7), 1..=16),
    ) {
        let mut f = setup_real(|g| {
            g.update_service_params::<StorageParams>(|p| {
                p.erasure = ErasureProfile {
                    data_pieces: 2,
                    repair_threshold: 2,
                    success_threshold: 3,
                    total_pieces: 4,
                };
                p.price_dc_per_gib_epoch = 1 << 30;
            })
            .expect("storage params");
        });
        let all = [
            crate::storage::SERVICE,
            crate::compute::SERVICE,
            crate::coverage::SERVICE,
        ];
        for i in 0..4 {
            let u = f.user(i);
            f.ok(&u, bond(1_000 * UNIT));
            f.ok(&u, Action::RegisterProvider {
                services: all
                    .iter()
                    .map(|s| ServiceOffer { service: *s, capacity: 1_000, price_dc_per_unit: 1 })
                    .collect(),
                location: Some(AMSTERDAM),
            });
            let (lat_e7, lon_e7) = site(i);
            f.ok(&u, action(crate::coverage::SERVICE, &CoverageTx::AssertHotspot(HotspotAssertion {
                location: crate::coverage::verify::location_cell_e7(lat_e7, lon_e7).expect("a cell"),
                gain_dbi_x10: 30,
                elevation_m: 5,
                region: Region::Eu868,
                full_capability: true,
                gateway_eui: 0xA0 + i as u64,
            })));
        }
        let owner = f.validator.clone();
        f.ok(&owner, buy_credits(20 * UNIT));
        f.ok(&owner, action(crate::coverage::SERVICE, &CoverageTx::RegisterDevice {
            dev_addr: DEV_ADDR,
            device_key: device().address(),
        }));
        f.end_block();
        let mut deals_opened = 0u64;
        let mut accepted = 0usize;
        let mut deferred: Vec<(Keypair, Action)> = Vec::new();
        for ops in blocks {
            for (key, action) in std::mem::take(&mut deferred) {
                let tx = f.tx(&key, action);
                if f.apply(&tx).is_ok() {
                    accepted += 1;
                }
            }
            for op in ops {
                deferred.extend(f.op_deferred(&op));
                for (key, action) in f.op_txs(&op, deals_opened) {
                    let tx = f.tx(&key, action);
                    if f.apply(&tx).is_ok() {
                        accepted += 1;
                        if matches!(op, Op::OpenDeal { .. }) {
                            deals_opened += 1;
                        }
                    }
                }
            }
            if let Some(rewards) = f.end_block() {
                prop_assert_eq!(
                    rewards.minted.checked_add(rewards.unallocated),
                    Some(rewards.emission)
                );
            }
            f.check_supply();
            prop_assert_eq!(
                f.data_credits_held(),
                f.supply().data_credits_outstanding,
                "Data Credits in accounts and escrows equal those outstanding"
            );
        }
        let _ = accepted;
    }
}
