//! The proof-of-coverage checks at their edges, and the reward math against Helium's numbers.

use super::rewards::*;
use super::verify::*;
use depin_types::{Address, Hash, Keypair};

const SENT: u64 = 1_000_000_000;
const FREQ: u64 = 868_100_000;
/// Amsterdam, and a point about 2 km north of it.
const HERE: (f64, f64) = (52.3700, 4.9000);
const NORTH_2KM: (f64, f64) = (52.3880, 4.9000);

fn addr(name: &str) -> Address {
    Keypair::from_seed(name.as_bytes()).address()
}

fn hotspot(name: &str, at: (f64, f64)) -> HotspotInfo {
    HotspotInfo {
        address: addr(name),
        location: location_cell(at.0, at.1),
        gain_dbi_x10: 30,
        elevation_m: 10,
        region: Region::Eu868,
        full_capability: true,
        denylisted: false,
    }
}

fn entropy() -> Entropy {
    Entropy {
        value: Hash::of(b"block hash"),
        published_ms: SENT - 10_000,
    }
}

fn beacon(beaconer: &HotspotInfo) -> BeaconReport {
    BeaconReport {
        beaconer: beaconer.address,
        entropy: entropy().value,
        sent_ms: SENT,
        frequency_hz: FREQ,
        payload: beacon_payload(
            &entropy().value,
            &beaconer.address,
            beaconer.region,
            beaconer.gain_dbi_x10,
            &LOCAL,
        ),
    }
}

/// The beaconer's own randomness in the test beacon.
const LOCAL: [u8; LOCAL_ENTROPY_BYTES] = [0x5a; LOCAL_ENTROPY_BYTES];

fn witness_of(report: &BeaconReport, witness: &HotspotInfo) -> WitnessReport {
    WitnessReport {
        witness: witness.address,
        beaconer: report.beaconer,
        entropy: report.entropy,
        received_ms: SENT + 1_000,
        frequency_hz: FREQ,
        signal_dbm_x10: -1000,
        snr_db_x10: 50,
        payload: report.payload.clone(),
    }
}

#[test]
fn a_beacon_is_checked_for_its_hotspot_entropy_interval_and_payload() {
    let p = PocParams::helium();
    let b = hotspot("beaconer", HERE);
    let e = entropy();
    let report = beacon(&b);
    assert_eq!(check_beacon(&p, Some(&b), Some(&e), None, &report), Ok(()));
    assert_eq!(
        check_beacon(&p, None, Some(&e), None, &report),
        Err(Rejection::UnknownHotspot)
    );
    let mut h = b.clone();
    h.location = None;
    assert_eq!(
        check_beacon(&p, Some(&h), Some(&e), None, &report),
        Err(Rejection::NotLocated)
    );
    h = b.clone();
    h.denylisted = true;
    assert_eq!(
        check_beacon(&p, Some(&h), Some(&e), None, &report),
        Err(Rejection::Denylisted)
    );
    h = b.clone();
    h.full_capability = false;
    assert_eq!(
        check_beacon(&p, Some(&h), Some(&e), None, &report),
        Err(Rejection::NotFullCapability)
    );
    assert_eq!(
        check_beacon(&p, Some(&b), None, None, &report),
        Err(Rejection::UnknownEntropy)
    );
    // The entropy window: up to its lifetime after publication, never before.
    let mut late = report.clone();
    late.sent_ms = e.published_ms + p.entropy_lifetime_ms;
    assert_eq!(check_beacon(&p, Some(&b), Some(&e), None, &late), Ok(()));
    late.sent_ms += 1;
    assert_eq!(
        check_beacon(&p, Some(&b), Some(&e), None, &late),
        Err(Rejection::EntropyWindow)
    );
    late.sent_ms = e.published_ms - 1;
    assert_eq!(
        check_beacon(&p, Some(&b), Some(&e), None, &late),
        Err(Rejection::EntropyWindow)
    );
    // One beacon per interval.
    let last = SENT - p.beacon_interval_ms;
    assert_eq!(
        check_beacon(&p, Some(&b), Some(&e), Some(last), &report),
        Ok(())
    );
    assert!(matches!(
        check_beacon(&p, Some(&b), Some(&e), Some(last + 1), &report),
        Err(Rejection::TooSoon { .. })
    ));
    assert!(matches!(
        check_beacon(&p, Some(&b), Some(&e), Some(SENT + 5), &report),
        Err(Rejection::TooSoon { .. })
    ));
    // A payload made up, or made for another gain, is not the entropy's.
    let mut forged = report.clone();
    forged.payload = beacon_payload(&e.value, &b.address, b.region, b.gain_dbi_x10 + 10, &LOCAL);
    assert_eq!(
        check_beacon(&p, Some(&b), Some(&e), None, &forged),
        Err(Rejection::PayloadMismatch)
    );
    // Its local randomness is its own: any value makes a valid beacon, but a payload whose
    // tag does not cover the randomness it carries is not one.
    let mut other = report.clone();
    other.payload = beacon_payload(&e.value, &b.address, b.region, b.gain_dbi_x10, &[1; 16]);
    assert_eq!(check_beacon(&p, Some(&b), Some(&e), None, &other), Ok(()));
    other.payload[BEACON_ID_BYTES] ^= 1;
    assert_eq!(
        check_beacon(&p, Some(&b), Some(&e), None, &other),
        Err(Rejection::PayloadMismatch)
    );
}

#[test]
fn a_witness_is_checked_at_every_edge() {
    let p = PocParams::helium();
    let b = hotspot("beaconer", HERE);
    let w = hotspot("witness", NORTH_2KM);
    let e = entropy();
    let report = beacon(&b);
    let verified = VerifiedBeacon {
        report: &report,
        beaconer: &b,
        entropy: Some(&e),
        first_witness_ms: None,
    };
    let good = witness_of(&report, &w);
    let check = |v: &VerifiedBeacon<'_>, who: &HotspotInfo, dup: bool, r: &WitnessReport| {
        check_witness(&p, v, Some(who), dup, r)
    };
    assert_eq!(check(&verified, &w, false, &good), Ok(()));
    assert_eq!(
        check(&verified, &b, false, &witness_of(&report, &b)),
        Err(Rejection::SelfWitness)
    );
    assert_eq!(check(&verified, &w, true, &good), Err(Rejection::Duplicate));
    assert_eq!(
        check_witness(&p, &verified, None, false, &good),
        Err(Rejection::UnknownHotspot)
    );

    // Lag: at most 4000 ms after the beacon, 1500 ms after the first witness.
    let mut r = good.clone();
    r.received_ms = SENT + p.max_witness_lag_ms;
    assert_eq!(check(&verified, &w, false, &r), Ok(()));
    r.received_ms += 1;
    assert!(matches!(
        check(&verified, &w, false, &r),
        Err(Rejection::LagTooLong { .. })
    ));
    r.received_ms = SENT - 1;
    assert!(matches!(
        check(&verified, &w, false, &r),
        Err(Rejection::LagTooLong { .. })
    ));
    let after_first = VerifiedBeacon {
        first_witness_ms: Some(SENT + 100),
        ..verified
    };
    r.received_ms = SENT + 100 + p.max_lag_after_first_ms;
    assert_eq!(check(&after_first, &w, false, &r), Ok(()));
    r.received_ms += 1;
    assert!(matches!(
        check(&after_first, &w, false, &r),
        Err(Rejection::LateAfterFirst { .. })
    ));

    // Frequency within 100 kHz, same region, same payload.
    r = good.clone();
    r.frequency_hz = FREQ + p.max_frequency_diff_hz;
    assert_eq!(check(&verified, &w, false, &r), Ok(()));
    r.frequency_hz += 1;
    assert!(matches!(
        check(&verified, &w, false, &r),
        Err(Rejection::Frequency { .. })
    ));
    let mut elsewhere = w.clone();
    elsewhere.region = Region::Us915;
    assert_eq!(
        check(&verified, &elsewhere, false, &good),
        Err(Rejection::Region)
    );
    r = good.clone();
    r.payload[0] ^= 1;
    assert_eq!(
        check(&verified, &w, false, &r),
        Err(Rejection::PayloadMismatch)
    );

    // Distance: at least 8 cells at resolution 11, at most 100 km.
    let next_door = hotspot("next door", (52.3702, 4.9000));
    assert!(matches!(
        check(
            &verified,
            &next_door,
            false,
            &witness_of(&report, &next_door)
        ),
        Err(Rejection::TooClose { .. })
    ));
    let far = hotspot("far", (53.5, 4.9));
    assert!(matches!(
        check(&verified, &far, false, &witness_of(&report, &far)),
        Err(Rejection::TooFar { .. })
    ));

    // Signal: up to the free-space bound plus the margin, not a tenth of a dB more.
    let bound = {
        let cell =
            |h: &HotspotInfo| h3o::CellIndex::try_from(h.location.unwrap_or(0)).expect("cell");
        let d = distance_m(cell(&b), cell(&w)).expect("measurable");
        max_signal_dbm_x10(&p, &b, &w, d, FREQ)
    };
    // About 97 dB of loss over 2 km at 868 MHz: the bound is near -75 dBm.
    assert!((-800..=-700).contains(&bound), "{bound}");
    r = good.clone();
    r.signal_dbm_x10 = bound;
    assert_eq!(check(&verified, &w, false, &r), Ok(()));
    r.signal_dbm_x10 = bound + 1;
    assert!(matches!(
        check(&verified, &w, false, &r),
        Err(Rejection::SignalTooStrong { .. })
    ));
}

/// The integer path loss, pinned: every validator must get these exact tenths of a dB. Each
/// row is within a rounding step of 20·log10(4πdf/c) (checked in f64 here, in the test only).
#[test]
fn free_space_loss_is_integer_and_pinned_at_its_edges() {
    // (distance m, frequency Hz, loss dB × 10)
    const TABLE: &[(u64, u64, i32)] = &[
        (0, 868_100_000, 312),
        (1, 868_100_000, 312),
        (2, 868_100_000, 372),
        (16, 868_100_000, 553),
        (1_000, 868_000_000, 912),
        (1_000, 868_100_000, 912),
        (2_000, 868_100_000, 972),
        (16_308, 868_100_000, 1155),
        (100_000, 868_100_000, 1312),
        (100_000, 915_000_000, 1317),
        (100_001, 928_000_000, 1318),
        (1_000, 433_000_000, 852),
        (u64::MAX, 868_100_000, 4165),
    ];
    for &(distance_m, frequency_hz, expected) in TABLE {
        assert_eq!(
            fspl_db_x10(distance_m, frequency_hz),
            expected,
            "{distance_m} m at {frequency_hz} Hz"
        );
        let exact = 200.0
            * (4.0 * std::f64::consts::PI * (distance_m.max(1) as f64) * frequency_hz as f64
                / 2.998e8)
                .log10();
        assert!(
            (f64::from(expected) - exact).abs() <= 0.51,
            "{distance_m} m at {frequency_hz} Hz: {expected} against {exact}"
        );
    }
    // Monotone in distance, and a doubling costs 6.02 dB (60 or 61 tenths).
    let mut last = fspl_db_x10(1, 868_100_000);
    for d in (2..200_000).step_by(997) {
        let loss = fspl_db_x10(d, 868_100_000);
        assert!(loss >= last, "{d}");
        last = loss;
        let doubled = fspl_db_x10(2 * d, 868_100_000) - loss;
        assert!((60..=61).contains(&doubled), "{d}: {doubled}");
    }
    // log2 in Q16 at its edges.
    assert_eq!(log2_q16(1), 0);
    assert_eq!(log2_q16(2), 1 << 16);
    assert_eq!(log2_q16(3), 103_872);
    assert_eq!(log2_q16(u64::MAX), (63 << 16) | 0xffff);
}

/// Distances between asserted cells are grid steps times the cell spacing: integers, at
/// the boundaries of `TooClose` and `TooFar` exactly.
#[test]
fn distances_are_grid_steps_and_their_boundaries_are_exact() {
    let p = PocParams::helium();
    let origin =
        h3o::CellIndex::try_from(location_cell(HERE.0, HERE.1).expect("cell")).expect("cell");
    // A cell `steps` away at resolution 12, along one grid axis.
    let at = |steps: u32| -> h3o::CellIndex {
        origin
            .grid_ring_fast(steps)
            .flatten()
            .next()
            .expect("a ring cell")
    };
    for steps in [0u32, 1, 7, 100] {
        assert_eq!(
            distance_m(origin, at(steps)),
            Some(u64::from(steps) * CELL_SPACING_MM / 1000)
        );
    }
    // The separation rule counts resolution-11 cells: 8 of them at least.
    let witness_at = |cell: h3o::CellIndex| HotspotInfo {
        location: Some(u64::from(cell)),
        ..hotspot("witness", HERE)
    };
    let b = hotspot("beaconer", HERE);
    let e = entropy();
    let report = beacon(&b);
    let verified = VerifiedBeacon {
        report: &report,
        beaconer: &b,
        entropy: Some(&e),
        first_witness_ms: None,
    };
    let verdict = |cell: h3o::CellIndex| {
        let w = witness_at(cell);
        let mut r = witness_of(&report, &w);
        r.signal_dbm_x10 = -1400;
        check_witness(&p, &verified, Some(&w), false, &r)
    };
    let res11 = |c: h3o::CellIndex| c.parent(h3o::Resolution::Eleven).expect("parent");
    let separation = |c: h3o::CellIndex| {
        res11(origin)
            .grid_distance(res11(c))
            .expect("distance")
            .unsigned_abs()
    };
    let mut steps = 1;
    while separation(at(steps)) < p.min_separation_cells {
        assert!(matches!(
            verdict(at(steps)),
            Err(Rejection::TooClose { .. })
        ));
        steps += 1;
    }
    assert_eq!(separation(at(steps)), p.min_separation_cells);
    assert_eq!(verdict(at(steps)), Ok(()));
    // 6,132 steps of 16.308 m are 100,000 whole metres, the limit; one more is over it.
    assert_eq!(distance_m(origin, at(6_132)), Some(100_000));
    assert_eq!(verdict(at(6_132)), Ok(()));
    assert_eq!(
        verdict(at(6_133)),
        Err(Rejection::TooFar {
            meters: 100_016,
            max: p.max_distance_m
        })
    );
    // A cell that is no cell at resolution 12 is not a location.
    assert!(is_location_cell(u64::from(origin)));
    assert!(!is_location_cell(u64::from(res11(origin))));
    assert!(!is_location_cell(0));
    assert!(!is_location_cell(u64::MAX));
}

#[test]
fn reciprocity_needs_both_a_beacon_and_a_witness_in_the_window() {
    let p = PocParams::helium();
    let now = 10 * p.reciprocity_window_ms;
    let edge = now - p.reciprocity_window_ms;
    assert_eq!(check_reciprocity(&p, now, Some(edge), Some(now)), Ok(()));
    assert_eq!(
        check_reciprocity(&p, now, Some(edge - 1), Some(now)),
        Err(Rejection::NoReciprocity { missing: "beacon" })
    );
    assert_eq!(
        check_reciprocity(&p, now, Some(now), None),
        Err(Rejection::NoReciprocity { missing: "witness" })
    );
}

#[test]
fn hip15_units_match_helium() {
    let beaconer: Vec<u64> = (0..=4).map(beaconer_units_ppm).collect();
    assert_eq!(beaconer, vec![0, 250_000, 500_000, 750_000, 1_000_000]);
    assert_eq!(
        (0..=4).map(witness_units_ppm).collect::<Vec<_>>(),
        vec![0, PPM, PPM, PPM, PPM]
    );
    // n = 5: beaconer 2 − 0.8 = 1.2; each witness (3 + 0.8) / 5 = 0.76.
    assert_eq!(beaconer_units_ppm(5), 1_200_000);
    assert_eq!(witness_units_ppm(5), 760_000);
    // n = 14: beaconer 2 − 0.8^10 = 2 − 0.1073742 (0.8^10 rounded down to 0.107374).
    assert_eq!(beaconer_units_ppm(14), 1_892_626);
    // More witnesses never lower the beaconer's units, never past 2; the witnesses share a
    // total of 3 + 0.8^(n−4), falling towards 3 (within rounding, a ppm per witness).
    for n in 5..40 {
        assert!(beaconer_units_ppm(n + 1) >= beaconer_units_ppm(n));
        assert!(beaconer_units_ppm(n) < 2 * PPM);
        let total = |n: u32| witness_units_ppm(n) * u64::from(n);
        assert!(total(n + 1) <= total(n) + u64::from(n));
        assert!(total(n) + u64::from(n) >= 3 * PPM);
    }
}

#[test]
fn hip17_scales_crowded_hexes_down() {
    let tiers = hip17_tiers();
    let res8 = tiers.iter().find(|t| t.resolution == 8).expect("res 8");
    assert_eq!(hex_limit(res8, 0), 1);
    let res4 = tiers.iter().find(|t| t.resolution == 4).expect("res 4");
    assert_eq!(hex_limit(res4, 0), 500);
    assert_eq!(hex_limit(res4, 2), 500);
    assert_eq!(hex_limit(res4, 3), 1000);
    assert_eq!(hex_limit(res4, 6), 1000);
    let res7 = tiers.iter().find(|t| t.resolution == 7).expect("res 7");
    assert_eq!(hex_limit(res7, 4), 5);
    assert_eq!(hex_limit(res7, 5), 10);

    // Alone, and far apart: full scale.
    let lone = location_cell(HERE.0, HERE.1).expect("cell");
    let faraway = location_cell(48.85, 2.35).expect("cell");
    assert_eq!(hex_scales_ppm(&[lone, faraway], &tiers), vec![PPM, PPM]);
    // Two in the same resolution-10 hex share it at resolutions 8, 9 and 10: 1/8 each.
    let twin = location_cell(HERE.0 + 0.00001, HERE.1).expect("cell");
    assert_eq!(
        hex_scales_ppm(&[lone, twin], &tiers),
        vec![125_000, 125_000]
    );
    // Not a cell: no scale.
    assert_eq!(hex_scales_ppm(&[0], &tiers), vec![0]);
}

/// Benchmark, not a test (`cargo test -p depin-protocol --release --lib -- --ignored
/// witness_checks --nocapture`): witness checks per second on one core.
#[test]
#[ignore = "benchmark"]
fn witness_checks_per_second() {
    let p = PocParams::helium();
    let b = hotspot("beaconer", HERE);
    let w = hotspot("witness", NORTH_2KM);
    let e = entropy();
    let report = beacon(&b);
    let verified = VerifiedBeacon {
        report: &report,
        beaconer: &b,
        entropy: Some(&e),
        first_witness_ms: None,
    };
    let good = witness_of(&report, &w);
    let n = 1_000_000u32;
    let started = std::time::Instant::now();
    let mut valid = 0u32;
    for i in 0..n {
        let mut r = good.clone();
        r.signal_dbm_x10 -= (i % 100) as i32;
        valid += u32::from(check_witness(&p, &verified, Some(&w), false, &r).is_ok());
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(valid, n);
    println!(
        "| witness checks per second, one core | {:.0} |",
        f64::from(n) / secs
    );
}

fn units(lat: f64, beacon: u64, witness: u64, data_dc: u64) -> EpochUnits {
    EpochUnits {
        location: location_cell(lat, 4.9),
        beaconed_recently: true,
        beacon_units_ppm: beacon,
        witness_units_ppm: witness,
        data_dc,
    }
}

const SHARES: CoverageShares = CoverageShares {
    beacon_bps: 750,
    witness_bps: 3000,
    data_bps: 6250,
    flowback_witness_bps: 8000,
};

#[test]
fn unused_data_share_flows_back_to_beacons_and_witnesses() {
    // Two hotspots far apart (no density clipping); data worth 1,000 of a 625,000 data pool.
    let hotspots = [units(52.0, 1_000_000, 0, 100), units(53.0, 0, 1_000_000, 0)];
    let split = split_epoch(1_000_000, &hotspots, &hip17_tiers(), SHARES, |dc| {
        u128::from(dc) * 10
    });
    assert_eq!(split.data_pool, 625_000);
    assert_eq!(split.data_flowback, 624_000);
    // 20% of the flowback to beacons, 80% to witnesses.
    assert_eq!(split.beacon_pool, 75_000 + 124_800);
    assert_eq!(split.witness_pool, 300_000 + 499_200);
    assert_eq!(split.shares[0].data, 1_000);
    assert_eq!(split.shares[0].beacon, split.beacon_pool);
    assert_eq!(split.shares[1].witness, split.witness_pool);
    assert_eq!(split.total(), 1_000_000);
}

#[test]
fn data_beyond_its_share_is_paid_pro_rata_and_nothing_flows_back() {
    let hotspots = [units(52.0, 0, 0, 300_000), units(53.0, 0, 0, 100_000)];
    let split = split_epoch(1_000_000, &hotspots, &hip17_tiers(), SHARES, |dc| {
        u128::from(dc) * 10
    });
    assert_eq!(split.data_flowback, 0);
    assert_eq!(split.shares[0].data, 468_750);
    assert_eq!(split.shares[1].data, 156_250);
    // No PoC units: those pools stay unminted.
    assert_eq!(split.total(), 625_000);
}

#[test]
fn crowded_hotspots_share_a_hex_scaled_reward() {
    // Two in one resolution-10 hex earn 1/8 each of what the lone one earns per unit.
    let hotspots = [
        units(52.0, 1_000_000, 0, 0),
        units(53.0, 1_000_000, 0, 0),
        units(53.0, 1_000_000, 0, 0),
    ];
    let split = split_epoch(1_000_000, &hotspots, &hip17_tiers(), SHARES, |_| 0);
    assert_eq!(split.shares[1].scale_ppm, 125_000);
    assert_eq!(split.shares[0].beacon, 8 * split.shares[1].beacon);
    assert!(split.total() <= 1_000_000);
}

proptest::proptest! {
    #[test]
    fn a_split_never_pays_more_than_its_allocation(
        allocation in 0u128..1u128 << 96,
        raw in proptest::collection::vec((0u64..5_000_000, 0u64..20_000_000, 0u64..1u64 << 40, 0u8..4), 0..12),
    ) {
        let hotspots: Vec<EpochUnits> = raw
            .iter()
            .map(|(b, w, d, site)| units(50.0 + f64::from(*site) * 0.001, *b, *w, *d))
            .collect();
        let split = split_epoch(allocation, &hotspots, &hip17_tiers(), SHARES, |dc| u128::from(dc) * 10);
        proptest::prop_assert!(split.total() <= allocation);
    }
}

/// Benchmark (`cargo test -p depin-protocol --release --lib -- --ignored epoch_rewards
/// --nocapture`): a day's epoch of 100,000 hotspots on a ~1.2 km grid, each beaconing 4 times
/// and heard by its 14 nearest grid neighbours: every witness checked, HIP-15 units summed,
/// then the HIP-17-scaled split. One core.
#[test]
#[ignore = "benchmark"]
fn epoch_rewards_for_100k_hotspots() {
    const SIDE: usize = 316;
    const BEACONS_PER_DAY: usize = 4;
    let p = PocParams::helium();
    let hotspots: Vec<HotspotInfo> = (0..SIDE * SIDE)
        .map(|i| {
            let (row, col) = ((i / SIDE) as f64, (i % SIDE) as f64);
            let mut h = hotspot(&format!("h{i}"), (48.0 + row * 0.011, 2.0 + col * 0.016));
            h.address = Address(Hash::of(&i.to_le_bytes()).0);
            h
        })
        .collect();
    let neighbours: Vec<(isize, isize)> = [
        (0, 1),
        (1, 0),
        (0, -1),
        (-1, 0),
        (1, 1),
        (-1, -1),
        (1, -1),
        (-1, 1),
        (0, 2),
        (2, 0),
        (0, -2),
        (-2, 0),
        (2, 2),
        (-2, -2),
    ]
    .to_vec();
    let e = entropy();
    let started = std::time::Instant::now();
    let mut beacon_units = vec![0u64; hotspots.len()];
    let mut witness_units = vec![0u64; hotspots.len()];
    let (mut checked, mut valid_total) = (0u64, 0u64);
    for round in 0..BEACONS_PER_DAY {
        for (i, b) in hotspots.iter().enumerate() {
            let mut report = beacon(b);
            report.sent_ms += round as u64;
            let verified = VerifiedBeacon {
                report: &report,
                beaconer: b,
                entropy: Some(&e),
                first_witness_ms: Some(SENT + 1_000),
            };
            let (row, col) = ((i / SIDE) as isize, (i % SIDE) as isize);
            let mut valid = Vec::with_capacity(14);
            for (dr, dc) in &neighbours {
                let (r, c) = (row + dr, col + dc);
                if !(0..SIDE as isize).contains(&r) || !(0..SIDE as isize).contains(&c) {
                    continue;
                }
                let j = r as usize * SIDE + c as usize;
                let mut w = witness_of(&report, &hotspots[j]);
                w.signal_dbm_x10 = -1200;
                checked += 1;
                if check_witness(&p, &verified, Some(&hotspots[j]), false, &w).is_ok() {
                    valid.push(j);
                }
            }
            let n = valid.len() as u32;
            beacon_units[i] += beaconer_units_ppm(n);
            for j in valid {
                witness_units[j] += witness_units_ppm(n);
            }
            valid_total += u64::from(n);
        }
    }
    let verified_s = started.elapsed().as_secs_f64();
    let units: Vec<EpochUnits> = hotspots
        .iter()
        .enumerate()
        .map(|(i, h)| EpochUnits {
            location: h.location,
            beaconed_recently: true,
            beacon_units_ppm: beacon_units[i],
            witness_units_ppm: witness_units[i],
            data_dc: (i % 7) as u64,
        })
        .collect();
    let split_started = std::time::Instant::now();
    let split = split_epoch(1_000_000_000_000, &units, &hip17_tiers(), SHARES, |dc| {
        u128::from(dc) * 10
    });
    let split_s = split_started.elapsed().as_secs_f64();
    assert!(split.total() <= 1_000_000_000_000);
    assert!(
        valid_total * 10 > checked * 9,
        "{valid_total} of {checked} valid"
    );
    println!(
        "| hotspots | beacons | witness checks | verify + units (s) | HIP-17 split (s) | total (s) |"
    );
    println!(
        "| {} | {} | {checked} | {verified_s:.2} | {split_s:.2} | {:.2} |",
        hotspots.len(),
        hotspots.len() * BEACONS_PER_DAY,
        verified_s + split_s
    );
}
