//! Proof-of-coverage checks, after Helium's iot verifier: is a beacon valid, is a witness of it
//! valid. Pure functions of the reports and what the chain knows of the hotspots; every
//! rejection names its reason so the operator can see it.
//!
//! No floating point: locations are H3 cells (chosen off chain, checked as cells), distances
//! are grid steps between them times the cells' spacing in millimetres, and path loss is a
//! fixed-point logarithm in tenths of dB, so every validator computes the same verdict.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash};
use h3o::{CellIndex, LatLng, Resolution};

/// The resolution hotspots assert their location at.
pub const LOCATION_RESOLUTION: Resolution = Resolution::Twelve;

/// Centre-to-centre spacing of neighbouring resolution-12 cells, mm (the average hexagon
/// edge, 9.4155 m, times √3). Grid steps times this overstate a straight line by at most
/// 15% (a path at 30° to the grid's axes), which only makes the signal bound stricter.
pub const CELL_SPACING_MM: u64 = 16_308;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Frequency plans. The transmit power is what a beacon is sent with, in dBm × 10.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub enum Region {
    Eu868,
    Us915,
    Au915,
    As923,
    Kr920,
    In865,
}

impl Region {
    pub fn tx_power_dbm_x10(self) -> i32 {
        match self {
            Region::Eu868 | Region::As923 => 160,
            Region::Us915 => 270,
            Region::Au915 | Region::In865 => 300,
            Region::Kr920 => 140,
        }
    }
}

/// The proof-of-coverage limits (Helium's defaults).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PocParams {
    /// One beacon per hotspot per interval.
    pub beacon_interval_ms: u64,
    /// How long an entropy value may be beaconed or witnessed after it was published.
    pub entropy_lifetime_ms: u64,
    /// A witness heard the beacon at most this long after it was sent...
    pub max_witness_lag_ms: u64,
    /// ...and at most this long after the first witness heard it.
    pub max_lag_after_first_ms: u64,
    pub max_frequency_diff_hz: u64,
    /// Beaconer and witness at least this many cells apart at resolution 11.
    pub min_separation_cells: u32,
    pub max_distance_m: u64,
    /// Allowance over the free-space bound, dB × 10 (antennas, reflections, calibration).
    pub signal_margin_db_x10: i32,
    /// Witnesses rewarded per beacon, in arrival order.
    pub max_witnesses_per_beacon: u32,
    /// A hotspot is rewarded only with a valid beacon and a valid witness of its own within
    /// this window.
    pub reciprocity_window_ms: u64,
}

impl PocParams {
    pub fn helium() -> PocParams {
        PocParams {
            beacon_interval_ms: 6 * 3600 * 1000,
            entropy_lifetime_ms: 180_000,
            max_witness_lag_ms: 4_000,
            max_lag_after_first_ms: 1_500,
            max_frequency_diff_hz: 100_000,
            min_separation_cells: 8,
            max_distance_m: 100_000,
            signal_margin_db_x10: 30,
            max_witnesses_per_beacon: 14,
            reciprocity_window_ms: 48 * 3600 * 1000,
        }
    }
}

/// What the chain knows of a hotspot.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct HotspotInfo {
    pub address: Address,
    /// Asserted location, an H3 cell at resolution 12.
    pub location: Option<u64>,
    pub gain_dbi_x10: i32,
    pub elevation_m: i32,
    pub region: Region,
    /// Data-only hotspots take part in neither beacons nor witnesses.
    pub full_capability: bool,
    pub denylisted: bool,
}

/// An entropy value the chain published (from a block hash) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entropy {
    pub value: Hash,
    pub published_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BeaconReport {
    pub beaconer: Address,
    pub entropy: Hash,
    pub sent_ms: u64,
    pub frequency_hz: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WitnessReport {
    pub witness: Address,
    pub beaconer: Address,
    /// The entropy of the beacon heard (with `beaconer`, names the beacon).
    pub entropy: Hash,
    pub received_ms: u64,
    pub frequency_hz: u64,
    pub signal_dbm_x10: i32,
    pub snr_db_x10: i32,
    pub payload: Vec<u8>,
}

/// Why a beacon or witness is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
pub enum Rejection {
    #[error("unknown hotspot")]
    UnknownHotspot,
    #[error("the hotspot has asserted no location")]
    NotLocated,
    #[error("the hotspot is denylisted")]
    Denylisted,
    #[error("a data-only hotspot takes no part in proof of coverage")]
    NotFullCapability,
    #[error("unknown entropy")]
    UnknownEntropy,
    #[error("outside the entropy's window")]
    EntropyWindow,
    #[error("a beacon {since_ms} ms after the previous one; one per {interval_ms} ms")]
    TooSoon { since_ms: u64, interval_ms: u64 },
    #[error("the payload is not the one the entropy gives")]
    PayloadMismatch,
    #[error("a hotspot cannot witness its own beacon")]
    SelfWitness,
    #[error("this hotspot already witnessed this beacon")]
    Duplicate,
    #[error("heard {lag_ms} ms after the beacon (at most {max_ms})")]
    LagTooLong { lag_ms: u64, max_ms: u64 },
    #[error("heard {lag_ms} ms after the first witness (at most {max_ms})")]
    LateAfterFirst { lag_ms: u64, max_ms: u64 },
    #[error("frequency {witness_hz} Hz, the beacon was sent at {beacon_hz} Hz")]
    Frequency { witness_hz: u64, beacon_hz: u64 },
    #[error("witness in another region")]
    Region,
    #[error("{cells} cells from the beaconer at resolution 11 (at least {min})")]
    TooClose { cells: u32, min: u32 },
    #[error("{meters} m from the beaconer (at most {max})")]
    TooFar { meters: u64, max: u64 },
    #[error("too far from the beaconer to measure on the H3 grid")]
    Unmeasurable,
    #[error("signal {reported_dbm_x10} dBm×10 is stronger than free space allows ({max_dbm_x10})")]
    SignalTooStrong {
        reported_dbm_x10: i32,
        max_dbm_x10: i32,
    },
    #[error("no valid {missing} of its own within the reciprocity window")]
    NoReciprocity { missing: &'static str },
    #[error("the beaconer reported no beacon for this entropy")]
    NoBeacon,
    #[error("the beacon heard was not valid")]
    BeaconInvalid,
    #[error("valid, but only the first {max} witnesses of a beacon are rewarded")]
    NotSelected { max: u32 },
}

impl Rejection {
    /// A short, stable name of the reason, for tallies and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownHotspot => "unknown_hotspot",
            Rejection::NotLocated => "not_located",
            Rejection::Denylisted => "denylisted",
            Rejection::NotFullCapability => "not_full_capability",
            Rejection::UnknownEntropy => "unknown_entropy",
            Rejection::EntropyWindow => "entropy_window",
            Rejection::TooSoon { .. } => "too_soon",
            Rejection::PayloadMismatch => "payload_mismatch",
            Rejection::SelfWitness => "self_witness",
            Rejection::Duplicate => "duplicate",
            Rejection::LagTooLong { .. } => "lag_too_long",
            Rejection::LateAfterFirst { .. } => "late_after_first",
            Rejection::Frequency { .. } => "frequency",
            Rejection::Region => "region",
            Rejection::TooClose { .. } => "too_close",
            Rejection::TooFar { .. } => "too_far",
            Rejection::Unmeasurable => "unmeasurable",
            Rejection::SignalTooStrong { .. } => "signal_too_strong",
            Rejection::NoReciprocity { .. } => "no_reciprocity",
            Rejection::NoBeacon => "no_beacon",
            Rejection::BeaconInvalid => "beacon_invalid",
            Rejection::NotSelected { .. } => "not_selected",
        }
    }
}

/// Bytes of the beaconer's address a beacon opens with, so a witness knows whose it heard.
pub const BEACON_ID_BYTES: usize = 8;
/// The beaconer's own fresh randomness in each beacon (Helium's local entropy).
pub const LOCAL_ENTROPY_BYTES: usize = 16;
const BEACON_TAG_BYTES: usize = 16;
/// Bytes of a beacon's payload.
pub const BEACON_PAYLOAD_BYTES: usize = BEACON_ID_BYTES + LOCAL_ENTROPY_BYTES + BEACON_TAG_BYTES;

/// The payload a beacon for `entropy` carries: the beaconer's short id, its own fresh
/// `local` randomness, then a tag of the chain's entropy, the beaconer, the local randomness,
/// its region and its gain. The chain entropy means nobody sends it before the entropy
/// exists; the local randomness, shown on chain only in the beacon's report (which comes
/// after its witnesses'), means nobody can report having heard it without hearing it.
pub fn beacon_payload(
    entropy: &Hash,
    beaconer: &Address,
    region: Region,
    gain_dbi_x10: i32,
    local: &[u8; LOCAL_ENTROPY_BYTES],
) -> Vec<u8> {
    let tag = Hash::tagged(
        "depin coverage beacon",
        &[
            entropy.as_bytes(),
            beaconer.as_bytes(),
            local,
            &depin_types::encode(&region),
            &gain_dbi_x10.to_le_bytes(),
        ],
    );
    let mut payload = beaconer.as_bytes()[..BEACON_ID_BYTES].to_vec();
    payload.extend_from_slice(local);
    payload.extend_from_slice(&tag.as_bytes()[..BEACON_TAG_BYTES]);
    payload
}

/// The local randomness a beacon payload carries, if it is a beacon's length.
pub fn payload_local_entropy(payload: &[u8]) -> Option<[u8; LOCAL_ENTROPY_BYTES]> {
    if payload.len() != BEACON_PAYLOAD_BYTES {
        return None;
    }
    payload[BEACON_ID_BYTES..BEACON_ID_BYTES + LOCAL_ENTROPY_BYTES]
        .try_into()
        .ok()
}

fn located(hotspot: Option<&HotspotInfo>) -> Result<(&HotspotInfo, CellIndex), Rejection> {
    let hotspot = hotspot.ok_or(Rejection::UnknownHotspot)?;
    if hotspot.denylisted {
        return Err(Rejection::Denylisted);
    }
    if !hotspot.full_capability {
        return Err(Rejection::NotFullCapability);
    }
    let cell = hotspot
        .location
        .and_then(|c| CellIndex::try_from(c).ok())
        .ok_or(Rejection::NotLocated)?;
    Ok((hotspot, cell))
}

fn in_entropy_window(
    params: &PocParams,
    entropy: Option<&Entropy>,
    at_ms: u64,
) -> Result<(), Rejection> {
    let entropy = entropy.ok_or(Rejection::UnknownEntropy)?;
    if at_ms < entropy.published_ms || at_ms - entropy.published_ms > params.entropy_lifetime_ms {
        return Err(Rejection::EntropyWindow);
    }
    Ok(())
}

/// Checks a beacon: a known, located, full-capability hotspot, not denylisted; the entropy
/// known and current; one beacon per interval; the payload the entropy gives.
pub fn check_beacon(
    params: &PocParams,
    beaconer: Option<&HotspotInfo>,
    entropy: Option<&Entropy>,
    last_beacon_ms: Option<u64>,
    report: &BeaconReport,
) -> Result<(), Rejection> {
    let (hotspot, _) = located(beaconer)?;
    in_entropy_window(params, entropy, report.sent_ms)?;
    if let Some(last) = last_beacon_ms {
        let since_ms = report.sent_ms.saturating_sub(last);
        if report.sent_ms < last || since_ms < params.beacon_interval_ms {
            return Err(Rejection::TooSoon {
                since_ms,
                interval_ms: params.beacon_interval_ms,
            });
        }
    }
    let local = payload_local_entropy(&report.payload).ok_or(Rejection::PayloadMismatch)?;
    if report.payload
        != beacon_payload(
            &report.entropy,
            &hotspot.address,
            hotspot.region,
            hotspot.gain_dbi_x10,
            &local,
        )
    {
        return Err(Rejection::PayloadMismatch);
    }
    Ok(())
}

/// log2(x) in Q16 fixed point (x ≥ 1): the integer part from the highest bit, 16 fractional
/// bits by repeated squaring of the normalised mantissa. Integers only.
pub fn log2_q16(x: u64) -> u64 {
    let x = x.max(1);
    let whole = 63 - u64::from(x.leading_zeros());
    // The mantissa in [1, 2) as Q62.
    let mut m: u128 = (u128::from(x) << 62) >> whole;
    let mut frac = 0u64;
    for bit in (0..16).rev() {
        m = (m * m) >> 62;
        if m >= 1 << 63 {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    (whole << 16) | frac
}

/// 200·log10(4π/c) in millionths of a tenth of a dB (c = 2.998e8 m/s).
const FSPL_CONSTANT_MICRO_DB_X10: i128 = -1_475_524_353;
/// log10(2) × 1e9.
const LOG10_2_E9: i128 = 301_029_996;

/// Free-space path loss, dB × 10 rounded to the nearest: 20·log10(4πdf/c), in integers.
pub fn fspl_db_x10(distance_m: u64, frequency_hz: u64) -> i32 {
    let log2_sum = i128::from(log2_q16(distance_m.max(1))) + i128::from(log2_q16(frequency_hz));
    // log2 (Q16) → 200·log10, in millionths: × 200 × log10(2) / 2^16.
    let micro = log2_sum * 200 * LOG10_2_E9 / (65_536 * 1_000) + FSPL_CONSTANT_MICRO_DB_X10;
    let rounded = (micro + 500_000).div_euclid(1_000_000);
    i32::try_from(rounded).unwrap_or(i32::MAX)
}

/// The strongest signal, dBm × 10, a witness `distance_m` away can hear: beacon power plus
/// both antenna gains less free-space loss, plus the margin.
pub fn max_signal_dbm_x10(
    params: &PocParams,
    beaconer: &HotspotInfo,
    witness: &HotspotInfo,
    distance_m: u64,
    frequency_hz: u64,
) -> i32 {
    beaconer.region.tx_power_dbm_x10() + beaconer.gain_dbi_x10 + witness.gain_dbi_x10
        - fspl_db_x10(distance_m, frequency_hz)
        + params.signal_margin_db_x10
}

/// Metres between two asserted locations: grid steps at the location resolution times the
/// cell spacing. `None` where H3 has no common local grid for them (far apart).
pub fn distance_m(a: CellIndex, b: CellIndex) -> Option<u64> {
    let (a, b) = (
        a.parent(LOCATION_RESOLUTION)?,
        b.parent(LOCATION_RESOLUTION)?,
    );
    let steps = a.grid_distance(b).ok()?;
    Some(u64::from(steps.unsigned_abs()) * CELL_SPACING_MM / 1000)
}

/// The beacon a witness is checked against, as the verifier found it.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedBeacon<'a> {
    pub report: &'a BeaconReport,
    pub beaconer: &'a HotspotInfo,
    pub entropy: Option<&'a Entropy>,
    /// When the first witness of this beacon heard it.
    pub first_witness_ms: Option<u64>,
}

/// Checks a witness of a valid beacon. `already_witnessed` says whether this witness has a
/// report of this beacon counted already.
pub fn check_witness(
    params: &PocParams,
    beacon: &VerifiedBeacon<'_>,
    witness: Option<&HotspotInfo>,
    already_witnessed: bool,
    report: &WitnessReport,
) -> Result<(), Rejection> {
    let (witness, witness_cell) = located(witness)?;
    if witness.address == beacon.beaconer.address {
        return Err(Rejection::SelfWitness);
    }
    if already_witnessed {
        return Err(Rejection::Duplicate);
    }
    in_entropy_window(params, beacon.entropy, report.received_ms)?;
    let lag_ms = report.received_ms.saturating_sub(beacon.report.sent_ms);
    if report.received_ms < beacon.report.sent_ms || lag_ms > params.max_witness_lag_ms {
        return Err(Rejection::LagTooLong {
            lag_ms,
            max_ms: params.max_witness_lag_ms,
        });
    }
    if let Some(first) = beacon.first_witness_ms {
        let after = report.received_ms.saturating_sub(first);
        if after > params.max_lag_after_first_ms {
            return Err(Rejection::LateAfterFirst {
                lag_ms: after,
                max_ms: params.max_lag_after_first_ms,
            });
        }
    }
    if report.payload != beacon.report.payload {
        return Err(Rejection::PayloadMismatch);
    }
    if report.frequency_hz.abs_diff(beacon.report.frequency_hz) > params.max_frequency_diff_hz {
        return Err(Rejection::Frequency {
            witness_hz: report.frequency_hz,
            beacon_hz: beacon.report.frequency_hz,
        });
    }
    if witness.region != beacon.beaconer.region {
        return Err(Rejection::Region);
    }
    let beaconer_cell = beacon
        .beaconer
        .location
        .and_then(|c| CellIndex::try_from(c).ok())
        .ok_or(Rejection::NotLocated)?;
    let cells = separation_cells(beaconer_cell, witness_cell);
    if cells < params.min_separation_cells {
        return Err(Rejection::TooClose {
            cells,
            min: params.min_separation_cells,
        });
    }
    let distance_m = distance_m(beaconer_cell, witness_cell).ok_or(Rejection::Unmeasurable)?;
    if distance_m > params.max_distance_m {
        return Err(Rejection::TooFar {
            meters: distance_m,
            max: params.max_distance_m,
        });
    }
    let max_dbm_x10 = max_signal_dbm_x10(
        params,
        beacon.beaconer,
        witness,
        distance_m,
        report.frequency_hz,
    );
    if report.signal_dbm_x10 > max_dbm_x10 {
        return Err(Rejection::SignalTooStrong {
            reported_dbm_x10: report.signal_dbm_x10,
            max_dbm_x10,
        });
    }
    Ok(())
}

/// Grid distance between two locations at resolution 11; far-apart cells (where H3 has no
/// local coordinates) count as far apart.
fn separation_cells(a: CellIndex, b: CellIndex) -> u32 {
    let (Some(a), Some(b)) = (a.parent(Resolution::Eleven), b.parent(Resolution::Eleven)) else {
        return 0;
    };
    a.grid_distance(b).map_or(u32::MAX, |d| d.unsigned_abs())
}

/// Reciprocity: a hotspot is rewarded only if it both beaconed validly and witnessed validly
/// within the window before `now_ms`.
pub fn check_reciprocity(
    params: &PocParams,
    now_ms: u64,
    last_valid_beacon_ms: Option<u64>,
    last_valid_witness_ms: Option<u64>,
) -> Result<(), Rejection> {
    let recent = |t: Option<u64>| {
        t.is_some_and(|t| now_ms.saturating_sub(t) <= params.reciprocity_window_ms)
    };
    if !recent(last_valid_beacon_ms) {
        return Err(Rejection::NoReciprocity { missing: "beacon" });
    }
    if !recent(last_valid_witness_ms) {
        return Err(Rejection::NoReciprocity { missing: "witness" });
    }
    Ok(())
}

/// The H3 resolution-12 cell of a location, for wallets and tools choosing the cell a hotspot
/// asserts: off chain only (floating point); the chain checks the cell it is given.
pub fn location_cell(lat_deg: f64, lon_deg: f64) -> Option<u64> {
    LatLng::new(lat_deg, lon_deg)
        .ok()
        .map(|ll| u64::from(ll.to_cell(LOCATION_RESOLUTION)))
}

/// [`location_cell`] of degrees × 1e7 (what wallets and the CLI take); off chain only.
pub fn location_cell_e7(lat_e7: i32, lon_e7: i32) -> Option<u64> {
    location_cell(f64::from(lat_e7) / 1e7, f64::from(lon_e7) / 1e7)
}

/// Whether `cell` is a valid H3 cell at the location resolution.
pub fn is_location_cell(cell: u64) -> bool {
    CellIndex::try_from(cell).is_ok_and(|c| c.resolution() == LOCATION_RESOLUTION)
}
