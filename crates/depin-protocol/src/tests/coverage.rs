//! The coverage service's rules through real transactions: hotspot assertions and the fee on a
//! move, beacon and witness reports verified once their entropy's window closes (with the
//! reason of every refusal kept on the hotspot), reciprocity, the epoch split of the coverage
//! emission, and packets paid once in Data Credits.

use super::*;
use crate::coverage::verify::{
    BeaconReport, LOCAL_ENTROPY_BYTES, Region, WitnessReport, beacon_payload,
};
use crate::coverage::{
    CoverageEpoch, CoverageEvent, CoverageParams, CoverageTx, Device, EntropyRecord, Hotspot,
    HotspotAssertion, HotspotEpochReward, PacketReceipt, keys, packet_message,
};
use depin_types::Hash;

/// How many packets of a receipts transaction were already paid, from its typed event.
fn packets_duplicated(receipt: &Receipt) -> Option<u32> {
    receipt
        .events
        .iter()
        .find_map(|e| match e.service_event::<CoverageEvent>() {
            Some(CoverageEvent::PacketsPaid { duplicates, .. }) => Some(duplicates),
            _ => None,
        })
}

/// Long enough for several beacon rounds in one epoch.
const COVERAGE_EPOCH_BLOCKS: u64 = 400;
const FREQ: u64 = 868_100_000;
/// Amsterdam and points about 2 and 4 km north (far enough apart, close enough to hear).
const SITES: [(i32, i32); 3] = [
    (523_700_000, 49_000_000),
    (523_880_000, 49_000_000),
    (524_060_000, 49_000_000),
];

fn coverage(tx: CoverageTx) -> Action {
    Action::Service {
        service: crate::coverage::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

fn assertion(site: (i32, i32), eui: u64) -> HotspotAssertion {
    HotspotAssertion {
        location: crate::coverage::verify::location_cell_e7(site.0, site.1).expect("a cell"),
        gain_dbi_x10: 30,
        elevation_m: 5,
        region: Region::Eu868,
        full_capability: true,
        gateway_eui: eui,
    }
}

/// Users 0..3 are hotspots at [`SITES`]; the validator owns devices and holds Data Credits.
fn coverage_setup() -> Fixture {
    coverage_setup_with(|_| {})
}

fn coverage_setup_with(tweak: impl FnOnce(&mut CoverageParams)) -> Fixture {
    let mut f = setup_with(|g| {
        g.chain.epoch_blocks = COVERAGE_EPOCH_BLOCKS;
        g.update_service_params::<CoverageParams>(|p| tweak(p))
            .expect("coverage params");
    });
    for (i, site) in SITES.iter().enumerate() {
        let u = f.user(i);
        f.make_provider(&u, 200 * UNIT, &[crate::coverage::SERVICE]);
        f.ok(
            &u,
            coverage(CoverageTx::AssertHotspot(assertion(*site, 0xA0 + i as u64))),
        );
    }
    let owner = f.validator.clone();
    f.ok(&owner, buy_credits(10 * UNIT));
    f
}

impl Fixture {
    fn hotspot(&self, who: &Keypair) -> Hotspot {
        self.get(&StateKey::Service(
            crate::coverage::SERVICE,
            keys::hotspot(&who.address()),
        ))
        .expect("hotspot exists")
    }

    fn live_entropy(&self) -> Vec<EntropyRecord> {
        self.get(&StateKey::Service(
            crate::coverage::SERVICE,
            keys::LIVE_ENTROPY.to_vec(),
        ))
        .unwrap_or_default()
    }

    /// Ends blocks until a new entropy is published; returns it.
    fn next_entropy(&mut self) -> EntropyRecord {
        let known = self.live_entropy().last().map(|e| e.value);
        loop {
            self.end_block();
            if let Some(e) = self.live_entropy().last()
                && Some(e.value) != known
            {
                return *e;
            }
        }
    }

    /// Ends blocks until `entropy`'s reports have been verified.
    fn verify(&mut self, entropy: &EntropyRecord) {
        while self.live_entropy().iter().any(|e| e.value == entropy.value) {
            self.end_block();
        }
    }

    fn now_ms(&self) -> u64 {
        self.block().timestamp_ms
    }

    fn data_credits(&self, who: &Keypair) -> u128 {
        self.account(who).data_credits
    }

    /// Commits to `receipts` from `who`, ends the block, and reports them.
    fn deliver(&mut self, who: &Keypair, receipts: &[PacketReceipt]) -> Receipt {
        let root = crate::coverage::receipts_root(&who.address(), receipts);
        self.ok(who, coverage(CoverageTx::CommitReceipts { root }));
        self.end_block();
        self.ok(who, coverage(CoverageTx::PacketReceipts(receipts.to_vec())))
    }
}

fn beacon(f: &Fixture, who: &Keypair, entropy: &EntropyRecord) -> BeaconReport {
    BeaconReport {
        beaconer: who.address(),
        entropy: entropy.value,
        sent_ms: f.now_ms(),
        frequency_hz: FREQ,
        payload: beacon_payload(
            &entropy.value,
            &who.address(),
            Region::Eu868,
            30,
            &local_entropy(who, entropy),
        ),
    }
}

/// The beaconer's own randomness for a beacon (fixed per beaconer and entropy here).
fn local_entropy(who: &Keypair, entropy: &EntropyRecord) -> [u8; LOCAL_ENTROPY_BYTES] {
    let h = Hash::tagged(
        "test local entropy",
        &[who.address().as_bytes(), entropy.value.as_bytes()],
    );
    let mut local = [0u8; LOCAL_ENTROPY_BYTES];
    local.copy_from_slice(&h.as_bytes()[..LOCAL_ENTROPY_BYTES]);
    local
}

fn witness(who: &Keypair, of: &BeaconReport, signal_dbm_x10: i32) -> WitnessReport {
    WitnessReport {
        witness: who.address(),
        beaconer: of.beaconer,
        entropy: of.entropy,
        received_ms: of.sent_ms + 300,
        frequency_hz: FREQ,
        signal_dbm_x10,
        snr_db_x10: 50,
        payload: of.payload.clone(),
    }
}

/// One round: `beaconer` beacons on a fresh entropy and `witnesses` hear it; they report
/// first, the beaconer after them; then verified.
fn round(f: &mut Fixture, beaconer: usize, witnesses: &[usize]) -> EntropyRecord {
    let entropy = f.next_entropy();
    let b = f.user(beaconer);
    let report = beacon(f, &b, &entropy);
    for w in witnesses {
        let key = f.user(*w);
        f.ok(
            &key,
            coverage(CoverageTx::Witness(witness(&key, &report, -900))),
        );
    }
    f.ok(&b, coverage(CoverageTx::Beacon(report.clone())));
    f.verify(&entropy);
    entropy
}

fn last_rejection(h: &Hotspot) -> Option<String> {
    h.recent.last().expect("an outcome").rejection.clone()
}

#[test]
fn a_hotspot_asserts_its_location_and_pays_to_move() {
    let mut f = coverage_setup();
    let a = f.user(0);
    let h = f.hotspot(&a);
    assert_eq!(
        h.info.location,
        crate::coverage::verify::location_cell(52.37, 4.9)
    );
    assert_eq!(h.location_changes, 0);

    // Moving costs the location fee in Data Credits, which are burned.
    let fee = u128::from(
        f.protocol
            .genesis()
            .service_params::<CoverageParams>()
            .expect("coverage params")
            .location_fee_dc,
    );
    let too_poor = f.tx(
        &a,
        coverage(CoverageTx::AssertHotspot(assertion(SITES[2], 0xA0))),
    );
    assert!(matches!(
        f.reject(&too_poor),
        TxError::InsufficientDataCredits { .. }
    ));
    f.ok(&a, buy_credits(UNIT));
    let credits = f.data_credits(&a);
    let outstanding = f.supply().data_credits_outstanding;
    // Same place, new gain: free.
    let mut same = assertion(SITES[0], 0xA0);
    same.gain_dbi_x10 = 50;
    f.ok(&a, coverage(CoverageTx::AssertHotspot(same)));
    assert_eq!(f.data_credits(&a), credits);
    f.ok(
        &a,
        coverage(CoverageTx::AssertHotspot(assertion(
            (523_000_000, 49_000_000),
            0xA0,
        ))),
    );
    assert_eq!(f.data_credits(&a), credits - fee);
    assert_eq!(f.supply().data_credits_outstanding, outstanding - fee);
    assert_eq!(f.hotspot(&a).location_changes, 1);
    f.check_supply();

    // Refusals leave the state untouched.
    let stranger = f.user(3);
    let not_provider = f.tx(
        &stranger,
        coverage(CoverageTx::AssertHotspot(assertion(SITES[0], 0xB0))),
    );
    assert!(f.reject(&not_provider).to_string().contains("coverage"));
    // A location is an H3 cell at resolution 12, nothing else (no coordinates to round).
    for not_a_cell in [0, u64::MAX, 0x8b19_69a3_0d4c_cfff] {
        let mut bad = assertion(SITES[0], 0xA0);
        bad.location = not_a_cell;
        let tx = f.tx(&a, coverage(CoverageTx::AssertHotspot(bad)));
        assert!(
            f.reject(&tx).to_string().contains("H3 cell"),
            "{not_a_cell:x}"
        );
    }
    let taken = f.tx(
        &a,
        coverage(CoverageTx::AssertHotspot(assertion(SITES[0], 0xA1))),
    );
    assert!(f.reject(&taken).to_string().contains("belongs to"));
    let mut loud = assertion(SITES[0], 0xA0);
    loud.gain_dbi_x10 = 900;
    let loud = f.tx(&a, coverage(CoverageTx::AssertHotspot(loud)));
    assert!(f.reject(&loud).to_string().contains("gain"));
    let junk = f.tx(
        &a,
        Action::Service {
            service: crate::coverage::SERVICE,
            payload: vec![9, 9, 9],
        },
    );
    assert!(f.reject(&junk).to_string().contains("malformed"));
}

#[test]
fn reports_are_verified_when_the_entropy_closes_and_rewarded_with_reciprocity() {
    let mut f = coverage_setup();
    let (a, b, c) = (f.user(0), f.user(1), f.user(2));

    // Round 1: everything is valid, but nobody has the other half of reciprocity yet.
    round(&mut f, 0, &[1, 2]);
    let ha = f.hotspot(&a);
    assert!(
        last_rejection(&ha)
            .expect("unrewarded")
            .contains("no valid witness")
    );
    assert!(ha.last_valid_beacon_ms.is_some());
    assert!(
        last_rejection(&f.hotspot(&b))
            .expect("unrewarded")
            .contains("no valid beacon")
    );

    // Rounds 2 and 3 give b and c their beacons and a its witness; from then on all earn.
    round(&mut f, 1, &[0, 2]);
    round(&mut f, 2, &[0, 1]);
    // The beacon interval (60 s on devnet) has passed for a by now.
    while f.now_ms() < ha.last_beacon_ms.expect("beaconed") + 61_000 {
        f.end_block();
    }
    round(&mut f, 0, &[1, 2]);
    let ha = f.hotspot(&a);
    let last = ha.recent.last().expect("outcome");
    assert_eq!(
        (last.kind.as_str(), last.rejection.clone()),
        ("beacon", None)
    );
    // HIP-15 with two witnesses: the beaconer earns 2/4, each witness 1.
    assert_eq!(last.units_ppm, 500_000);
    assert_eq!(
        f.hotspot(&b).recent.last().expect("outcome").units_ppm,
        1_000_000
    );
    assert!(f.hotspot(&c).witness_units_ppm >= 1_000_000);

    // The epoch pays the coverage share by units and hex scale.
    let rewards = f.end_blocks_through(COVERAGE_EPOCH_BLOCKS);
    let epoch = rewards.last().expect("the epoch ended");
    let bucket = epoch
        .buckets
        .iter()
        .find(|b| b.kind == RewardKind::Service(crate::coverage::SERVICE))
        .expect("coverage bucket");
    assert!(bucket.minted <= bucket.allocation);
    // No packets: the whole data share flowed back, so PoC pays out nearly everything.
    assert!(
        bucket.minted.0 * 1000 >= bucket.allocation.0 * 999,
        "{bucket:?}"
    );
    let record: CoverageEpoch = f
        .get(&StateKey::Service(
            crate::coverage::SERVICE,
            keys::LAST_EPOCH.to_vec(),
        ))
        .expect("epoch record");
    assert_eq!(record.data_flowback, record.data_pool);
    assert_eq!(record.hotspots_counted, 3);
    for who in [&a, &b, &c] {
        let paid = epoch.rewards.iter().find(|r| {
            r.account == who.address() && r.kind == RewardKind::Service(crate::coverage::SERVICE)
        });
        assert!(paid.is_some_and(|r| r.amount.0 > 0), "{who:?} unpaid");
    }
    f.check_supply();
}

#[test]
fn every_refused_report_says_why_on_the_hotspot() {
    let mut f = coverage_setup();
    let (a, b, c) = (f.user(0), f.user(1), f.user(2));

    // A witness louder than free space allows, and one for a beacon never sent.
    let entropy = f.next_entropy();
    let report = beacon(&f, &a, &entropy);
    f.ok(&b, coverage(CoverageTx::Witness(witness(&b, &report, 0))));
    let mut phantom = witness(&c, &report, -900);
    phantom.beaconer = b.address();
    f.ok(&c, coverage(CoverageTx::Witness(phantom)));
    f.ok(&a, coverage(CoverageTx::Beacon(report.clone())));
    f.verify(&entropy);
    assert!(
        last_rejection(&f.hotspot(&b))
            .expect("refused")
            .contains("stronger than free space")
    );
    assert!(
        last_rejection(&f.hotspot(&c))
            .expect("refused")
            .contains("no beacon")
    );
    // a's beacon was heard by nobody valid: not a valid beacon for reciprocity.
    assert_eq!(f.hotspot(&a).last_valid_beacon_ms, None);

    // A beacon whose payload is not the entropy's.
    let entropy = f.next_entropy();
    let mut forged = beacon(&f, &b, &entropy);
    forged.payload = vec![7; 20];
    f.ok(
        &c,
        coverage(CoverageTx::Witness(witness(&c, &forged, -900))),
    );
    f.ok(&b, coverage(CoverageTx::Beacon(forged.clone())));
    f.verify(&entropy);
    assert!(
        last_rejection(&f.hotspot(&b))
            .expect("refused")
            .contains("payload")
    );
    assert!(
        last_rejection(&f.hotspot(&c))
            .expect("refused")
            .contains("not valid")
    );
}

#[test]
fn bad_reports_are_refused_outright_and_change_nothing() {
    let mut f = coverage_setup();
    let (a, b) = (f.user(0), f.user(1));
    let entropy = f.next_entropy();
    let report = beacon(&f, &a, &entropy);

    let mut unknown = report.clone();
    unknown.entropy = Hash::of(b"never published");
    let tx = f.tx(&a, coverage(CoverageTx::Beacon(unknown)));
    assert!(f.reject(&tx).to_string().contains("not live"));
    let tx = f.tx(&b, coverage(CoverageTx::Beacon(report.clone())));
    assert!(f.reject(&tx).to_string().contains("hotspot it names"));
    let stranger = f.user(3);
    let mut theirs = report.clone();
    theirs.beaconer = stranger.address();
    let tx = f.tx(&stranger, coverage(CoverageTx::Beacon(theirs)));
    assert!(f.reject(&tx).to_string().contains("not a hotspot"));

    f.ok(
        &b,
        coverage(CoverageTx::Witness(witness(&b, &report, -900))),
    );
    let tx = f.tx(
        &b,
        coverage(CoverageTx::Witness(witness(&b, &report, -950))),
    );
    assert!(f.reject(&tx).to_string().contains("already reported"));
    f.ok(&a, coverage(CoverageTx::Beacon(report.clone())));
    let tx = f.tx(&a, coverage(CoverageTx::Beacon(report.clone())));
    assert!(f.reject(&tx).to_string().contains("already reported"));

    // Once verified, the entropy is closed: late reports are refused.
    f.verify(&entropy);
    let c = f.user(2);
    let tx = f.tx(
        &c,
        coverage(CoverageTx::Witness(witness(&c, &report, -900))),
    );
    assert!(f.reject(&tx).to_string().contains("not live"));
}

fn device_key() -> Keypair {
    Keypair::from_seed(b"device 1")
}

fn receipt(dev_addr: u32, fcnt: u32, payload: &[u8], signer: &Keypair) -> PacketReceipt {
    let payload_hash = Hash::of(payload);
    let payload_bytes = payload.len() as u32;
    PacketReceipt {
        dev_addr,
        fcnt,
        payload_bytes,
        payload_hash,
        device_signature: signer.sign(&packet_message(
            dev_addr,
            fcnt,
            payload_bytes,
            &payload_hash,
        )),
        received_ms: 0,
    }
}

#[test]
fn packets_burn_the_owners_credits_once_and_pay_the_first_hotspot() {
    let mut f = coverage_setup();
    let (a, b) = (f.user(0), f.user(1));
    let owner = f.validator.clone();
    let device = device_key();
    f.ok(
        &owner,
        coverage(CoverageTx::RegisterDevice {
            dev_addr: 0x2601_0001,
            device_key: device.address(),
        }),
    );
    let taken = f.tx(
        &a,
        coverage(CoverageTx::RegisterDevice {
            dev_addr: 0x2601_0001,
            device_key: a.address(),
        }),
    );
    assert!(f.reject(&taken).to_string().contains("belongs to"));

    let credits = f.data_credits(&owner);
    // 1 byte costs 1 DC, 24 bytes 1 DC, 25 bytes 2 DC, 100 bytes 5 DC.
    let packets = [
        receipt(0x2601_0001, 1, &[1], &device),
        receipt(0x2601_0001, 2, &[2; 24], &device),
        receipt(0x2601_0001, 3, &[3; 25], &device),
        receipt(0x2601_0001, 4, &[4; 100], &device),
    ];
    f.deliver(&a, &packets);
    assert_eq!(f.data_credits(&owner), credits - 9);
    assert_eq!(f.hotspot(&a).data_dc, 9);

    // The same packets heard by b are paid once: to a, who reported them first.
    let r = f.deliver(&b, &packets[2..]);
    assert_eq!(packets_duplicated(&r), Some(2));
    assert_eq!(f.data_credits(&owner), credits - 9);
    assert_eq!(f.hotspot(&b).data_dc, 0);
    let dev: Device = f
        .get(&StateKey::Service(
            crate::coverage::SERVICE,
            keys::device(0x2601_0001),
        ))
        .expect("device");
    assert_eq!((dev.packets_paid, dev.data_credits_paid), (4, 9));

    // Forged, unknown and empty receipts are refused and change nothing.
    let forged = receipt(0x2601_0001, 9, &[9], &a);
    let tx = f.tx(&b, coverage(CoverageTx::PacketReceipts(vec![forged])));
    assert!(f.reject(&tx).to_string().contains("not signed"));
    let unknown = receipt(0x0BAD_0001, 1, &[1], &device);
    let tx = f.tx(&b, coverage(CoverageTx::PacketReceipts(vec![unknown])));
    assert!(f.reject(&tx).to_string().contains("not registered"));
    let tx = f.tx(&b, coverage(CoverageTx::PacketReceipts(Vec::new())));
    assert!(
        f.reject(&tx)
            .to_string()
            .contains("receipts per transaction")
    );
    // A counter far behind the highest paid is a replay.
    let late = receipt(0x2601_0001, 200, &[1], &device);
    f.deliver(&b, &[late]);
    let replay = receipt(0x2601_0001, 5, &[1], &device);
    let r = f.deliver(&b, &[replay]);
    assert_eq!(packets_duplicated(&r), Some(1));

    // The epoch pays a the token value of its Data Credits from the data share.
    let rewards = f.end_blocks_through(COVERAGE_EPOCH_BLOCKS);
    let record: CoverageEpoch = f
        .get(&StateKey::Service(
            crate::coverage::SERVICE,
            keys::LAST_EPOCH.to_vec(),
        ))
        .expect("epoch record");
    let line: HotspotEpochReward = f
        .get(&StateKey::Service(
            crate::coverage::SERVICE,
            keys::last_reward(&a.address()),
        ))
        .expect("a earned");
    assert_eq!(line.epoch, record.epoch);
    // 1 DC = $0.00001 = 10 base units at $1 a token.
    assert_eq!(line.data_reward.0, 90);
    assert_eq!(record.data_flowback.0, record.data_pool.0 - 100);
    assert!(rewards.last().is_some());
    f.check_supply();
}

/// The precomputation attacks on proof of coverage: a witness that heard nothing copies the
/// beacon's payload from its report on chain, or guesses it from the chain's entropy; claims
/// an early reception time to be selected first; names a beaconer that does not exist to
/// grow the pending reports without bound.
#[test]
fn a_witness_cannot_copy_guess_or_reorder_its_way_to_a_reward() {
    let mut f = coverage_setup();
    let (a, b, c) = (f.user(0), f.user(1), f.user(2));
    let entropy = f.next_entropy();
    let report = beacon(&f, &a, &entropy);

    // Guessing: the payload without a's local randomness is not the beacon's.
    let mut guessed = witness(&b, &report, -900);
    guessed.payload = beacon_payload(&entropy.value, &a.address(), Region::Eu868, 30, &[0; 16]);
    f.ok(&b, coverage(CoverageTx::Witness(guessed)));
    // Naming a beaconer that is no hotspot is refused outright.
    let stranger = f.user(3);
    let mut nobody = witness(&c, &report, -900);
    nobody.beaconer = stranger.address();
    let tx = f.tx(&c, coverage(CoverageTx::Witness(nobody)));
    assert_eq!(f.reject(&tx).code(), "unknown_beaconer");
    // c heard it; the beaconer reports after its witnesses.
    f.ok(
        &c,
        coverage(CoverageTx::Witness(witness(&c, &report, -900))),
    );
    f.ok(&a, coverage(CoverageTx::Beacon(report.clone())));
    // Copying: once the report (and its local randomness) is on chain, witnesses are refused.
    let copied = f.tx(
        &b,
        coverage(CoverageTx::Witness(witness(&b, &report, -900))),
    );
    assert_eq!(f.reject(&copied).code(), "witness_after_beacon");
    f.verify(&entropy);
    assert!(
        last_rejection(&f.hotspot(&b))
            .expect("refused")
            .contains("payload")
    );
    assert_eq!(
        f.hotspot(&c).recent.last().expect("an outcome").kind,
        "witness"
    );
    assert!(
        !last_rejection(&f.hotspot(&c))
            .is_some_and(|r| r.contains("payload") || r.contains("selected"))
    );
}

/// Witnesses are selected in the order the chain included them, whatever time they claim;
/// and pending beacons per entropy are bounded.
#[test]
fn witnesses_are_selected_by_inclusion_and_pending_beacons_are_bounded() {
    let mut f = coverage_setup_with(|p| {
        p.poc.max_witnesses_per_beacon = 1;
        p.max_pending_beacons_per_entropy = 1;
    });
    let (a, b, c) = (f.user(0), f.user(1), f.user(2));
    let entropy = f.next_entropy();
    let report = beacon(&f, &a, &entropy);
    f.ok(
        &b,
        coverage(CoverageTx::Witness(witness(&b, &report, -900))),
    );
    // c claims to have heard it earlier than b, but is included after b.
    let mut early = witness(&c, &report, -900);
    early.received_ms = report.sent_ms + 1;
    f.ok(&c, coverage(CoverageTx::Witness(early)));
    f.ok(&a, coverage(CoverageTx::Beacon(report.clone())));
    // A second beaconer under the same entropy is past the bound.
    let second = beacon(&f, &b, &entropy);
    let tx = f.tx(&b, coverage(CoverageTx::Beacon(second)));
    assert_eq!(f.reject(&tx).code(), "too_many_beacons");
    f.verify(&entropy);
    assert!(
        last_rejection(&f.hotspot(&c))
            .expect("not selected")
            .contains("only the first 1")
    );
    assert!(!last_rejection(&f.hotspot(&b)).is_some_and(|r| r.contains("only the first")));
}

/// The copy: a hotspot that heard nothing takes another's packet receipts from the mempool
/// (or the chain) and reports them first, to be paid for the other's coverage. Receipts count
/// only against a commitment the reporter made in an earlier block, before they were public.
#[test]
fn packet_receipts_are_bound_to_the_hotspot_that_committed_to_them_first() {
    let mut f = coverage_setup();
    let (a, b) = (f.user(0), f.user(1));
    let owner = f.validator.clone();
    let device = device_key();
    f.ok(
        &owner,
        coverage(CoverageTx::RegisterDevice {
            dev_addr: 0x2601_0001,
            device_key: device.address(),
        }),
    );
    let packets = vec![receipt(0x2601_0001, 1, &[1; 10], &device)];
    let reveal = || coverage(CoverageTx::PacketReceipts(packets.clone()));
    // a heard it and commits; its report goes out in the next block.
    f.ok(
        &a,
        coverage(CoverageTx::CommitReceipts {
            root: crate::coverage::receipts_root(&a.address(), &packets),
        }),
    );
    // Reported in the same block as its commitment: too early.
    let same_block = f.tx(&a, reveal());
    assert_eq!(f.reject(&same_block).code(), "receipts_not_committed");
    f.end_block();
    // b copies a's receipts seen in the mempool: with no commitment of its own it is refused;
    // a's commitment does not count for b (the root binds the hotspot).
    let copied = f.tx(&b, reveal());
    assert_eq!(f.reject(&copied).code(), "receipts_not_committed");
    // b commits now, but a's report lands first: b's comes a block later, a duplicate.
    f.ok(
        &b,
        coverage(CoverageTx::CommitReceipts {
            root: crate::coverage::receipts_root(&b.address(), &packets),
        }),
    );
    f.ok(&a, reveal());
    f.end_block();
    let late = f.ok(&b, reveal());
    assert_eq!(packets_duplicated(&late), Some(1));
    assert_eq!(f.hotspot(&a).packets, 1);
    assert_eq!(f.hotspot(&b).packets, 0);
    // A commitment is used once, and at most 16 stay open per hotspot.
    assert!(f.hotspot(&a).receipt_commitments.is_empty());
    for i in 0..20u8 {
        f.ok(
            &b,
            coverage(CoverageTx::CommitReceipts {
                root: Hash::of(&[i]),
            }),
        );
    }
    assert_eq!(
        f.hotspot(&b).receipt_commitments.len(),
        crate::coverage::MAX_RECEIPT_COMMITMENTS
    );
}

impl Fixture {
    fn coverage_record<T: BorshDeserialize>(&self, key: Vec<u8>) -> Option<T> {
        self.get(&StateKey::Service(crate::coverage::SERVICE, key))
    }

    fn split_list(&self, epoch: u64) -> Vec<Address> {
        let count: u64 = self.coverage_record(keys::split_count(epoch)).unwrap_or(0);
        (0..count)
            .filter_map(|n| self.coverage_record(keys::split_entry(epoch, n)))
            .collect()
    }
}

/// Registering hotspots that never work must not slow every validator's epoch end (the
/// split once read every hotspot that ever asserted): only a hotspot that earned or whose
/// beacon still counts is listed for the split, a counting beacon carries it into the next
/// epoch's list until the reciprocity window passes, and a list is deleted once read.
#[test]
fn the_epoch_split_reads_only_the_hotspots_that_count() {
    let mut f = coverage_setup_with(|p| p.poc.reciprocity_window_ms = 600_000);
    let (a, b, c) = (f.user(0), f.user(1), f.user(2));
    let count: u64 = f
        .coverage_record(keys::HOTSPOT_COUNT.to_vec())
        .expect("count");
    let numbered: Vec<Address> = (0..count)
        .filter_map(|n| f.coverage_record(keys::hotspot_number(n)))
        .collect();
    assert_eq!(numbered, vec![a.address(), b.address(), c.address()]);

    // a's beacon is valid (no reward yet: nobody has reciprocity); b and c earn nothing.
    round(&mut f, 0, &[1, 2]);
    let beaconed_ms = f.hotspot(&a).last_valid_beacon_ms.expect("valid beacon");
    assert!(beaconed_ms < 200_000, "the window ends inside epoch 1");
    assert_eq!(f.split_list(0), vec![a.address()]);
    // Re-listing is idempotent however often the hotspot is touched.
    assert_eq!(f.hotspot(&a).split_epoch, Some(0));

    // Epoch 0 counts a toward density, and carries it: its beacon still counts.
    f.end_blocks_through(COVERAGE_EPOCH_BLOCKS);
    let record: CoverageEpoch = f
        .coverage_record(keys::LAST_EPOCH.to_vec())
        .expect("epoch record");
    assert_eq!((record.epoch, record.hotspots_counted), (0, 1));
    assert_eq!(f.split_list(0), Vec::<Address>::new(), "read lists go");
    assert_eq!(f.split_list(1), vec![a.address()]);
    assert_eq!(f.hotspot(&a).split_epoch, Some(1));
    let line: HotspotEpochReward = f
        .coverage_record(keys::last_reward(&a.address()))
        .expect("a's line");
    assert_eq!(line.epoch, 0);
    for idle in [&b, &c] {
        assert_eq!(
            f.coverage_record::<HotspotEpochReward>(keys::last_reward(&idle.address())),
            None
        );
    }

    // By the end of epoch 1 the window has passed: a is read once more and dropped.
    f.end_blocks_through(2 * COVERAGE_EPOCH_BLOCKS);
    let record: CoverageEpoch = f
        .coverage_record(keys::LAST_EPOCH.to_vec())
        .expect("epoch record");
    assert_eq!((record.epoch, record.hotspots_counted), (1, 0));
    assert_eq!(f.split_list(1), Vec::<Address>::new());
    assert_eq!(f.split_list(2), Vec::<Address>::new());
    f.check_supply();
}

/// docs/BENCHMARKS.md: the epoch end with many asserted hotspots, few or many of them active.
/// `cargo test -p depin-protocol --release --lib -- --ignored epoch_end_with_asserted_hotspots --nocapture`
#[test]
#[ignore = "benchmark"]
fn epoch_end_with_asserted_hotspots() {
    const SIDE: u64 = 316;
    println!("| hotspots asserted | active in the epoch | epoch end (ms) |");
    println!("|---:|---:|---:|");
    for (asserted, active) in [
        (1_000u64, 1_000u64),
        (100_000, 1_000),
        (100_000, 10_000),
        (100_000, 100_000),
    ] {
        let mut f = coverage_setup();
        let template = f.hotspot(&f.user(0));
        let epoch = f.block().epoch(COVERAGE_EPOCH_BLOCKS);
        let now_ms = f.now_ms();
        let mut overlay = Overlay::new(&f.state);
        let key = |k: Vec<u8>| StateKey::Service(crate::coverage::SERVICE, k);
        let base: u64 = f
            .coverage_record(keys::HOTSPOT_COUNT.to_vec())
            .expect("count");
        for i in 0..asserted {
            let address = Address(Hash::of(&i.to_le_bytes()).0);
            let (row, col) = ((i / SIDE) as i32, (i % SIDE) as i32);
            let mut h = template.clone();
            h.info.address = address;
            h.info.location = crate::coverage::verify::location_cell_e7(
                480_000_000 + row * 110_000,
                20_000_000 + col * 160_000,
            );
            if i < active {
                h.units_epoch = epoch;
                h.beacon_units_ppm = 500_000;
                h.witness_units_ppm = 1_000_000;
                h.last_valid_beacon_ms = Some(now_ms);
                h.split_epoch = Some(epoch);
                overlay.put(&key(keys::split_entry(epoch, i)), &address);
            }
            overlay.put(&key(keys::hotspot(&address)), &h);
            overlay.put(&key(keys::hotspot_number(base + i)), &address);
        }
        overlay.put(&key(keys::split_count(epoch)), &active);
        overlay.put(&key(keys::HOTSPOT_COUNT.to_vec()), &(base + asserted));
        let writes = overlay.into_writes();
        commit(&mut f.state, writes);
        let end = f.height.div_ceil(COVERAGE_EPOCH_BLOCKS) * COVERAGE_EPOCH_BLOCKS;
        f.end_blocks_through(end - 1);
        let started = std::time::Instant::now();
        let rewards = f.end_block().expect("the epoch ended");
        let elapsed = started.elapsed();
        assert!(rewards.rewards.len() as u64 >= active);
        println!("| {asserted} | {active} | {} |", elapsed.as_millis());
    }
}
