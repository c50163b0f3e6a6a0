//! Pinned encodings: the canonical borsh bytes of every consensus type and every service
//! transaction, as hex. A change of bytes forks a network, so it must be deliberate: a test
//! here fails until its fixture is updated with it (`DEPIN_BLESS=1` prints the new hex).

use super::*;
use crate::block::{BlockHeader, Finality, Receipt};
use crate::compute::{ComputeEvent, ComputeTx, ExitKind, JobOutcome, JobSpec};
use crate::coverage::verify::{BeaconReport, Region, WitnessReport};
use crate::coverage::{CoverageEvent, CoverageTx, HotspotAssertion, PacketReceipt};
use crate::render::{PieceCommitment, RenderJobSpec, RenderTx, Verdict};
use crate::service::ServiceEvent;
use crate::storage::merkle::ChunkProof;
use crate::storage::{PieceProof, PieceRef, SegmentSpec, StorageEvent, StorageTx};
use crate::tx::ActionKind;
use depin_types::{Hash, Keypair};

fn hash(tag: &str) -> Hash {
    Hash::of(tag.as_bytes())
}

fn key(seed: &str) -> Keypair {
    Keypair::from_seed(seed.as_bytes())
}

fn piece_ref() -> PieceRef {
    PieceRef {
        deal: hash("deal"),
        segment: 1,
        piece: 2,
    }
}

fn job_outcome() -> JobOutcome {
    JobOutcome {
        exit: ExitKind::Exited(0),
        fuel_used: 1_234,
        outputs: hash("outputs"),
    }
}

fn storage_txs() -> Vec<(&'static str, StorageTx)> {
    vec![
        (
            "storage open_deal",
            StorageTx::OpenDeal {
                object_bytes: 1_000,
                encrypted: true,
                epochs: 3,
                segments: vec![SegmentSpec {
                    segment_bytes: 1_000,
                    piece_bytes: 250,
                    roots: vec![hash("root 0"), hash("root 1")],
                }],
            },
        ),
        (
            "storage confirm_pieces",
            StorageTx::ConfirmPieces {
                pieces: vec![piece_ref()],
            },
        ),
        (
            "storage submit_proofs",
            StorageTx::SubmitProofs {
                epoch: 4,
                proofs: vec![PieceProof {
                    piece: piece_ref(),
                    proof: ChunkProof {
                        chunk: vec![1, 2, 3],
                        siblings: vec![[7; 32]],
                    },
                }],
            },
        ),
        (
            "storage delete_deal",
            StorageTx::DeleteDeal { deal: hash("deal") },
        ),
        (
            "storage repair_segment",
            StorageTx::RepairSegment {
                deal: hash("deal"),
                segment: 1,
            },
        ),
        ("storage begin_exit", StorageTx::BeginExit),
    ]
}

fn compute_txs() -> Vec<(&'static str, ComputeTx)> {
    vec![
        (
            "compute submit_job",
            ComputeTx::SubmitJob(JobSpec {
                module: hash("module"),
                module_bytes: 100,
                input: Some(hash("input")),
                input_bytes: 200,
                args: vec!["--fast".into()],
                env: vec![("K".into(), "V".into())],
                stdin: Some("in.txt".into()),
                seed: hash("seed"),
                max_fuel: 1_000_000,
                max_memory_mib: 64,
                replicas: 3,
                deadline_blocks: 50,
                max_price_dc_per_mfuel: 2,
            }),
        ),
        (
            "compute commit",
            ComputeTx::Commit {
                job: hash("job"),
                commitment: hash("commitment"),
            },
        ),
        (
            "compute reveal",
            ComputeTx::Reveal {
                job: hash("job"),
                outcome: job_outcome(),
                salt: hash("salt"),
            },
        ),
        ("compute finalize", ComputeTx::Finalize { job: hash("job") }),
    ]
}

fn render_txs() -> Vec<(&'static str, RenderTx)> {
    vec![
        (
            "render advertise",
            RenderTx::Advertise {
                device: "CPU".into(),
                build: "Blender 3.4.1 x86_64 CPU".into(),
                score_pixel_samples_per_s: 12_345_678,
            },
        ),
        (
            "render submit_job",
            RenderTx::SubmitJob(RenderJobSpec {
                bundle: hash("bundle"),
                bundle_bytes: 4096,
                frame_start: 1,
                frame_end: 48,
                width: 1280,
                height: 720,
                samples: 64,
                max_price_dc_per_gigapixel_sample: 200,
            }),
        ),
        (
            "render commit",
            RenderTx::Commit {
                job: hash("job"),
                piece: 3,
                attempt: 1,
                commitment: PieceCommitment {
                    image: hash("image"),
                    tiles_root: hash("tiles"),
                },
            },
        ),
        (
            "render verdict",
            RenderTx::Verdict {
                job: hash("job"),
                piece: 3,
                attempt: 1,
                verdict: Verdict {
                    ssim_ppm: 999_000,
                    psnr_millidb: 51_000,
                },
            },
        ),
        (
            "render approve",
            RenderTx::Approve {
                job: hash("job"),
                pieces: vec![0, 1, 2],
            },
        ),
        (
            "render reject",
            RenderTx::Reject {
                job: hash("job"),
                piece: 2,
            },
        ),
        (
            "render step_aside",
            RenderTx::StepAside {
                job: hash("job"),
                piece: 3,
                attempt: 1,
                reason: "out of memory".into(),
            },
        ),
    ]
}

fn coverage_txs() -> Vec<(&'static str, CoverageTx)> {
    let device = key("device");
    vec![
        (
            "coverage assert_hotspot",
            CoverageTx::AssertHotspot(HotspotAssertion {
                // The resolution-12 cell of 52.37° N, 4.89° E.
                location: 0x08c1_969c_9b66_c9ff,
                gain_dbi_x10: 30,
                elevation_m: 12,
                region: Region::Eu868,
                full_capability: true,
                gateway_eui: 0x0102_0304_0506_0708,
            }),
        ),
        (
            "coverage beacon",
            CoverageTx::Beacon(BeaconReport {
                beaconer: key("beaconer").address(),
                entropy: hash("entropy"),
                sent_ms: 1_000,
                frequency_hz: 868_100_000,
                payload: vec![9; 4],
            }),
        ),
        (
            "coverage witness",
            CoverageTx::Witness(WitnessReport {
                witness: key("witness").address(),
                beaconer: key("beaconer").address(),
                entropy: hash("entropy"),
                received_ms: 1_050,
                frequency_hz: 868_100_000,
                signal_dbm_x10: -1_050,
                snr_db_x10: 55,
                payload: vec![9; 4],
            }),
        ),
        (
            "coverage register_device",
            CoverageTx::RegisterDevice {
                dev_addr: 0x2601_1bda,
                device_key: device.address(),
            },
        ),
        (
            "coverage packet_receipts",
            CoverageTx::PacketReceipts(vec![PacketReceipt {
                dev_addr: 0x2601_1bda,
                fcnt: 7,
                payload_bytes: 24,
                payload_hash: hash("payload"),
                device_signature: device.sign(b"golden packet"),
                received_ms: 2_000,
            }]),
        ),
        (
            "coverage commit_receipts",
            CoverageTx::CommitReceipts {
                root: hash("receipts"),
            },
        ),
    ]
}

fn transaction() -> SignedTransaction {
    Transaction {
        chain_id: "depin-golden".into(),
        sender: key("sender").address(),
        nonce: 5,
        fee: Amount(10_000),
        action: Action::Transfer {
            to: key("recipient").address(),
            amount: Amount(1_500_000),
        },
    }
    .sign(&key("sender"))
}

fn header() -> BlockHeader {
    BlockHeader {
        chain_id: "depin-golden".into(),
        height: 42,
        parent: hash("parent"),
        timestamp_ms: 1_700_000_000_000,
        proposer: key("proposer").address(),
        tx_root: hash("tx root"),
        tx_count: 1,
        state_root: hash("state root"),
    }
}

/// Every pinned encoding: a name and its bytes.
fn encodings() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("transaction".into(), transaction().to_bytes()),
        ("block header".into(), depin_types::encode(&header())),
        (
            "finality genesis".into(),
            depin_types::encode(&Finality::Genesis),
        ),
        (
            "finality quorum".into(),
            depin_types::encode(&Finality::Quorum {
                certificate: vec![1, 2, 3, 4],
            }),
        ),
        (
            "finality descendant".into(),
            depin_types::encode(&Finality::Descendant),
        ),
        (
            "state key account".into(),
            StateKey::Account(key("sender").address()).to_bytes(),
        ),
        (
            "state key validator set".into(),
            StateKey::ValidatorSet(3).to_bytes(),
        ),
        (
            "state key service".into(),
            StateKey::Service(crate::storage::SERVICE, b"d/x".to_vec()).to_bytes(),
        ),
        (
            "receipt".into(),
            depin_types::encode(&Receipt {
                tx_hash: hash("tx"),
                height: 42,
                index: 0,
                sender: key("sender").address(),
                kind: ActionKind::Service,
                fee: Amount(10_000),
                events: vec![
                    Event::FeePaid {
                        to: key("proposer").address(),
                        amount: Amount(10_000),
                    },
                    StorageEvent::DealOpened {
                        id: hash("deal"),
                        escrow_dc: 77,
                    }
                    .to_event(),
                    ComputeEvent::JobDone {
                        id: hash("job"),
                        fuel_used: 9,
                    }
                    .to_event(),
                    CoverageEvent::PacketsPaid {
                        paid: 1,
                        duplicates: 2,
                        owner_out_of_dc: 0,
                    }
                    .to_event(),
                    Event::ServiceHookFailed {
                        service: crate::coverage::SERVICE,
                        hook: ServiceHook::EndEpoch,
                        reason: "amount overflow".into(),
                    },
                ],
            }),
        ),
    ];
    let service = |service: ServiceKind, payload: Vec<u8>| {
        depin_types::encode(&Action::Service { service, payload })
    };
    for (name, tx) in storage_txs() {
        out.push((
            name.into(),
            service(crate::storage::SERVICE, depin_types::encode(&tx)),
        ));
    }
    for (name, tx) in compute_txs() {
        out.push((
            name.into(),
            service(crate::compute::SERVICE, depin_types::encode(&tx)),
        ));
    }
    for (name, tx) in coverage_txs() {
        out.push((
            name.into(),
            service(crate::coverage::SERVICE, depin_types::encode(&tx)),
        ));
    }
    for (name, tx) in render_txs() {
        out.push((
            name.into(),
            service(crate::render::SERVICE, depin_types::encode(&tx)),
        ));
    }
    out
}

/// The pinned hex of each encoding, in the order of [`encodings`].
const FIXTURES: &[(&str, &str)] = &[
    (
        "transaction",
        "0c000000646570696e2d676f6c64656efd5c0ff3ca469558f402482d4ae611e8e754b58643d976b7c390f8a226bdfb2f0500000000000000102700000000000000000000000000000024d1f9cd09975186d2b90973e3ab05d0767aa2c4078082d0e404167369ed47df60e316000000000000000000000000002e159582e73fe72a0ba1382712dc15eae0807f61fc0fec86d7e4cf293b1830b432d449c64ac372ea560b2a6be55297520c41e454d65570e9075e1968c8f0fd0e",
    ),
    (
        "block header",
        "0c000000646570696e2d676f6c64656e2a00000000000000ebdea6058df2230dc25b7a7c7b487b470c508c2e0a5119c96893c443de3a9e790068e5cf8b010000258907e81229673058bfe4a66b719eb2359beda398073b636be6efde25c409ec004912bedee14ba0de7f410644fefd01888393770224ed5346f383949b8bc8a90100000091bbc552a06f36b86a561c63ce63ae6dd84beda2990742f8e4f51d5a296e2060",
    ),
    ("finality genesis", "00"),
    ("finality quorum", "020400000001020304"),
    ("finality descendant", "03"),
    (
        "state key account",
        "00fd5c0ff3ca469558f402482d4ae611e8e754b58643d976b7c390f8a226bdfb2f",
    ),
    ("state key validator set", "040300000000000000"),
    (
        "state key service",
        "090700000073746f7261676503000000642f78",
    ),
    (
        "receipt",
        "412441cd65b967b996ae77a249427678d701591a6de6336c808d48ae9c36b2f72a0000000000000000000000fd5c0ff3ca469558f402482d4ae611e8e754b58643d976b7c390f8a226bdfb2f09102700000000000000000000000000000500000000258907e81229673058bfe4a66b719eb2359beda398073b636be6efde25c409ec102700000000000000000000000000000d0700000073746f726167653100000000814b539d5bb47453e5d22e0ed3f2780e22550b5ede1c4649365417229bcfc19c4d0000000000000000000000000000000d07000000636f6d70757465290000000363a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e609000000000000000d08000000636f7665726167650d000000040100000002000000000000001008000000636f766572616765010f000000616d6f756e74206f766572666c6f77",
    ),
    (
        "storage open_deal",
        "090700000073746f726167656a00000000e80300000000000001030000000000000001000000e803000000000000fa0000000000000002000000ebcebd7cf21ed2af72c262326785a3260d461001bda5edbc909109f340b5f8741ac74667684e53cb83275375a066ac8a17970c000a441ee0de152626cf80a8c4",
    ),
    (
        "storage confirm_pieces",
        "090700000073746f726167652b0000000101000000814b539d5bb47453e5d22e0ed3f2780e22550b5ede1c4649365417229bcfc19c010000000200",
    ),
    (
        "storage submit_proofs",
        "090700000073746f726167655e00000002040000000000000001000000814b539d5bb47453e5d22e0ed3f2780e22550b5ede1c4649365417229bcfc19c01000000020003000000010203010000000707070707070707070707070707070707070707070707070707070707070707",
    ),
    (
        "storage delete_deal",
        "090700000073746f726167652100000003814b539d5bb47453e5d22e0ed3f2780e22550b5ede1c4649365417229bcfc19c",
    ),
    (
        "storage repair_segment",
        "090700000073746f726167652500000004814b539d5bb47453e5d22e0ed3f2780e22550b5ede1c4649365417229bcfc19c01000000",
    ),
    ("storage begin_exit", "090700000073746f726167650100000005"),
    (
        "compute submit_job",
        "0907000000636f6d70757465b600000000f42578c55d5c75569566e601ea5072c5a6d791e617aae2d1674ea29cc70fb37a640000000000000001e33fb19325cbc72b5905e783e0c47290468c610090e376de9215e8b5f8ba83d3c80000000000000001000000060000002d2d6661737401000000010000004b01000000560106000000696e2e747874606ec154e4634e71c6bc67b6614417192a7e7ac2944523c1a55435f1b7c54f4740420f0000000000400000000332000000000000000200000000000000",
    ),
    (
        "compute commit",
        "0907000000636f6d70757465410000000163a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e6d59bdccbe35361cc073a3510681f3455eece54822fe9cc8f4daf0d37523bb954",
    ),
    (
        "compute reveal",
        "0907000000636f6d707574656e0000000263a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e60000000000d20400000000000076f0654b7a179e3b720f54eb9fb147168baaa67ebb652d1688658466ea137acf722e00723fa81ce64a4c10b12720107397e6e5f3a03913831715d02d9e541cf9",
    ),
    (
        "compute finalize",
        "0907000000636f6d70757465210000000363a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e6",
    ),
    (
        "coverage assert_hotspot",
        "0908000000636f7665726167651b00000000ffc9669b9c96c1081e0000000c00000000010807060504030201",
    ),
    (
        "coverage beacon",
        "0908000000636f7665726167655900000001e32258a5aa9f8dbafb63e177e29f44323bbec28f47b7800b5dd72e1226f4097c3bce0f0fca4e05be76032271b9ecaa75547af13ceb05a3a2fdc73195de4fef00e803000000000000a027be33000000000400000009090909",
    ),
    (
        "coverage witness",
        "0908000000636f7665726167658100000002989440a39528a8039c77051dc3a820fddf6d97d8342d12a870ed11379522e615e32258a5aa9f8dbafb63e177e29f44323bbec28f47b7800b5dd72e1226f4097c3bce0f0fca4e05be76032271b9ecaa75547af13ceb05a3a2fdc73195de4fef001a04000000000000a027be3300000000e6fbffff370000000400000009090909",
    ),
    (
        "coverage register_device",
        "0908000000636f7665726167652500000003da1b012663a0b841cfe486c80975253332a17bbdc4b77e1828262eadf372f8d1681c9e40",
    ),
    (
        "coverage packet_receipts",
        "0908000000636f766572616765790000000401000000da1b01260700000018000000ec90915fa26ab012a89a88ecc8b47e4dd76c4adfd6abd1fc10e321b0fca18d1deb66fcaee0735b07ed452fd55e0a861b3830a9f799d683ed3d6c1999999160d1717418e5c05b4b69ca30877a008dfe1877aede81de46b0d57581b04bf2d7770ad007000000000000",
    ),
    (
        "coverage commit_receipts",
        "0908000000636f7665726167652100000005128724a9ed14c079db448fdf57694fad59449b4710c9f08e9870075fae94ff28",
    ),
    (
        "render advertise",
        "090600000072656e6465722c000000000300000043505518000000426c656e64657220332e342e31207838365f3634204350554e61bc0000000000",
    ),
    (
        "render submit_job",
        "090600000072656e646572450000000141ee67d2cddda00309b8e6e72cac36f81439d04ad95077aeaf8dc159578bf2860010000000000000010000003000000000050000d002000040000000c800000000000000",
    ),
    (
        "render commit",
        "090600000072656e6465726a0000000263a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e60300000000000000010229ff7dec8a365f7300835d175494866d46e56fec330dad33cd3dc93df3c16d89dad8fcfd1633f810bf9e054c41fac78d484fd06e4e787772af1728fe9e7851",
    ),
    (
        "render verdict",
        "090600000072656e646572320000000363a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e6030000000000000001583e0f0038c70000",
    ),
    (
        "render approve",
        "090600000072656e6465723d0000000463a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e603000000000000000000000001000000000000000200000000000000",
    ),
    (
        "render reject",
        "090600000072656e646572290000000563a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e60200000000000000",
    ),
    (
        "render step_aside",
        "090600000072656e6465723b0000000663a2265e5c677a2d89fceda7adffcf95a8597d0927d2c1a27c00d89af997f9e60300000000000000010d0000006f7574206f66206d656d6f7279",
    ),
];

#[test]
fn encodings_match_their_pinned_fixtures() {
    let actual = encodings();
    if std::env::var_os("DEPIN_BLESS").is_some() {
        for (name, bytes) in &actual {
            println!("    (\"{name}\", \"{}\"),", hex::encode(bytes));
        }
    }
    let names: Vec<&str> = actual.iter().map(|(n, _)| n.as_str()).collect();
    let pinned: Vec<&str> = FIXTURES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, pinned,
        "every encoding has a fixture (DEPIN_BLESS=1 prints them)"
    );
    for ((name, bytes), (_, hex_fixture)) in actual.iter().zip(FIXTURES) {
        assert_eq!(
            hex::encode(bytes),
            *hex_fixture,
            "the encoding of {name} changed: if that is meant, update its fixture"
        );
    }
}

#[test]
fn pinned_encodings_decode_back_to_their_values() {
    assert_eq!(
        SignedTransaction::from_bytes(&transaction().to_bytes(), 1 << 16).expect("decodes"),
        transaction()
    );
    for (_, tx) in storage_txs() {
        let bytes = depin_types::encode(&tx);
        assert_eq!(
            depin_types::decode_bounded::<StorageTx>(&bytes, 1 << 16),
            Ok(tx)
        );
    }
    for (_, tx) in compute_txs() {
        let bytes = depin_types::encode(&tx);
        assert_eq!(
            depin_types::decode_bounded::<ComputeTx>(&bytes, 1 << 16),
            Ok(tx)
        );
    }
    for (_, tx) in coverage_txs() {
        let bytes = depin_types::encode(&tx);
        assert_eq!(
            depin_types::decode_bounded::<CoverageTx>(&bytes, 1 << 16),
            Ok(tx)
        );
    }
    for (_, tx) in render_txs() {
        let bytes = depin_types::encode(&tx);
        assert_eq!(
            depin_types::decode_bounded::<RenderTx>(&bytes, 1 << 16),
            Ok(tx)
        );
    }
}
