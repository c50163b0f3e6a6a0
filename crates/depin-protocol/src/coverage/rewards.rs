//! Proof-of-coverage reward math in fixed point (parts per million): HIP-15 beacon and witness
//! reward units, and HIP-17 hex density scaling over the H3 parents of each hotspot.

use borsh::{BorshDeserialize, BorshSerialize};
use h3o::{CellIndex, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub const PPM: u64 = 1_000_000;

/// 0.8^k in ppm (rounded down; exact arithmetic on integers, the same everywhere).
fn point_eight_pow_ppm(k: u32) -> u64 {
    let mut value: u128 = 1_000_000_000_000_000_000; // 1e18
    for _ in 0..k.min(200) {
        value = value * 4 / 5;
    }
    (value / 1_000_000_000_000) as u64
}

/// HIP-15: the beaconer's reward units for a beacon with `n` rewarded witnesses, in ppm.
pub fn beaconer_units_ppm(n: u32) -> u64 {
    if n <= 4 {
        u64::from(n) * PPM / 4
    } else {
        2 * PPM - point_eight_pow_ppm(n - 4)
    }
}

/// HIP-15: each witness's reward units when `n` witnesses of a beacon are rewarded, in ppm.
pub fn witness_units_ppm(n: u32) -> u64 {
    if n == 0 {
        0
    } else if n <= 4 {
        PPM
    } else {
        (3 * PPM + point_eight_pow_ppm(n - 4)) / u64::from(n)
    }
}

/// HIP-17 parameters of one resolution: neighbours needed before the limit grows, the target
/// hotspots per hex, and the most any hex counts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct DensityTier {
    pub resolution: u8,
    pub neighbours: u32,
    pub target: u32,
    pub max: u32,
}

/// Helium's HIP-17 table, resolutions 4 to 10.
pub fn hip17_tiers() -> Vec<DensityTier> {
    let tier = |resolution, neighbours, target, max| DensityTier {
        resolution,
        neighbours,
        target,
        max,
    };
    vec![
        tier(4, 2, 500, 1000),
        tier(5, 4, 100, 200),
        tier(6, 4, 25, 50),
        tier(7, 4, 5, 10),
        tier(8, 2, 1, 1),
        tier(9, 2, 1, 1),
        tier(10, 2, 1, 1),
    ]
}

/// The hex limit: `min(max, target × max(occupied_neighbours − N + 1, 1))`.
pub fn hex_limit(tier: &DensityTier, occupied_neighbours: u32) -> u32 {
    let factor = (occupied_neighbours + 1)
        .saturating_sub(tier.neighbours)
        .max(1);
    tier.target.saturating_mul(factor).min(tier.max)
}

/// HIP-17 scale of each hotspot location (H3 cells, any resolution ≥ 10), in ppm: the product
/// over its parent hexes of clipped count / count. Cells that are not valid get 0. The result
/// is in the order of `locations`.
pub fn hex_scales_ppm(locations: &[u64], tiers: &[DensityTier]) -> Vec<u64> {
    let cells: Vec<Option<CellIndex>> = locations
        .iter()
        .map(|c| CellIndex::try_from(*c).ok())
        .collect();
    let mut scales: Vec<u64> = cells
        .iter()
        .map(|c| if c.is_some() { PPM } else { 0 })
        .collect();
    for tier in tiers {
        let Ok(resolution) = Resolution::try_from(tier.resolution) else {
            continue;
        };
        let parents: Vec<Option<CellIndex>> = cells
            .iter()
            .map(|c| c.and_then(|c| c.parent(resolution)))
            .collect();
        let mut counts: BTreeMap<CellIndex, u32> = BTreeMap::new();
        for parent in parents.iter().flatten() {
            *counts.entry(*parent).or_default() += 1;
        }
        let occupied: BTreeSet<CellIndex> = counts.keys().copied().collect();
        let mut clipped: BTreeMap<CellIndex, (u32, u32)> = BTreeMap::new();
        for (hex, count) in &counts {
            let neighbours = hex
                .grid_disk::<Vec<CellIndex>>(1)
                .into_iter()
                .filter(|n| n != hex && occupied.contains(n))
                .count() as u32;
            clipped.insert(*hex, ((*count).min(hex_limit(tier, neighbours)), *count));
        }
        for (scale, parent) in scales.iter_mut().zip(&parents) {
            if let Some((kept, count)) = parent.and_then(|p| clipped.get(&p)) {
                *scale = *scale * u64::from(*kept) / u64::from(*count).max(1);
            }
        }
    }
    scales
}

/// One hotspot's verified work in an epoch, as the split wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochUnits {
    pub location: Option<u64>,
    /// Counts toward hex density: it beaconed validly within the reciprocity window.
    pub beaconed_recently: bool,
    pub beacon_units_ppm: u64,
    pub witness_units_ppm: u64,
    pub data_dc: u64,
}

/// How the coverage emission divides, in basis points of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverageShares {
    pub beacon_bps: u16,
    pub witness_bps: u16,
    pub data_bps: u16,
    pub flowback_witness_bps: u16,
}

/// One hotspot's share of an epoch, in token base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotspotShare {
    pub scale_ppm: u64,
    pub beacon: u128,
    pub witness: u128,
    pub data: u128,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochSplit {
    pub beacon_pool: u128,
    pub witness_pool: u128,
    pub data_pool: u128,
    pub data_flowback: u128,
    /// In the order of the units given.
    pub shares: Vec<HotspotShare>,
}

impl EpochSplit {
    pub fn total(&self) -> u128 {
        self.shares
            .iter()
            .map(|s| s.beacon + s.witness + s.data)
            .sum()
    }
}

/// `amount × part / whole`, rounded down; the parts of one whole never sum above `amount`.
fn pro_rata(amount: u128, part: u128, whole: u128) -> u128 {
    if whole == 0 {
        return 0;
    }
    // amount = q·whole + r, so only r·part (r < whole) is multiplied at full width.
    let (q, r) = (amount / whole, amount % whole);
    q.saturating_mul(part)
        .saturating_add(r.saturating_mul(part) / whole)
}

/// Splits an epoch's coverage `allocation`: data transfer is paid the token value of the Data
/// Credits delivered (`dc_value`), up to its share, pro rata beyond it; what packets left of
/// that share flows back to proof of coverage; beacon and witness pools go by reward units
/// times each hotspot's HIP-17 hex scale. Never pays more than `allocation`.
pub fn split_epoch(
    allocation: u128,
    units: &[EpochUnits],
    tiers: &[DensityTier],
    shares: CoverageShares,
    dc_value: impl Fn(u64) -> u128,
) -> EpochSplit {
    let bps = |amount: u128, b: u16| pro_rata(amount, u128::from(b), 10_000);
    let mut beacon_pool = bps(allocation, shares.beacon_bps);
    let mut witness_pool = bps(allocation, shares.witness_bps);
    let data_pool = allocation
        .saturating_sub(beacon_pool)
        .saturating_sub(witness_pool)
        .min(bps(allocation, shares.data_bps));

    let values: Vec<u128> = units.iter().map(|u| dc_value(u.data_dc)).collect();
    let data_value: u128 = values.iter().sum();
    let (data_paid, data_flowback) = if data_value <= data_pool {
        (values.clone(), data_pool - data_value)
    } else {
        let paid = values
            .iter()
            .map(|v| pro_rata(data_pool, *v, data_value))
            .collect();
        (paid, 0)
    };
    let to_witnesses = bps(data_flowback, shares.flowback_witness_bps);
    witness_pool += to_witnesses;
    beacon_pool += data_flowback - to_witnesses;

    // Density counts only hotspots that beaconed recently; the others earn no PoC units
    // (reciprocity), so their scale does not matter.
    let counted: Vec<usize> = (0..units.len())
        .filter(|i| units[*i].beaconed_recently && units[*i].location.is_some())
        .collect();
    let locations: Vec<u64> = counted.iter().filter_map(|i| units[*i].location).collect();
    let counted_scales = hex_scales_ppm(&locations, tiers);
    let mut scales = vec![PPM; units.len()];
    for (i, scale) in counted.iter().zip(counted_scales) {
        scales[*i] = scale;
    }

    let beacon_weights: Vec<u128> = units
        .iter()
        .zip(&scales)
        .map(|(u, s)| u128::from(u.beacon_units_ppm) * u128::from(*s))
        .collect();
    let witness_weights: Vec<u128> = units
        .iter()
        .zip(&scales)
        .map(|(u, s)| u128::from(u.witness_units_ppm) * u128::from(*s))
        .collect();
    let beacon_total: u128 = beacon_weights.iter().sum();
    let witness_total: u128 = witness_weights.iter().sum();

    let shares = (0..units.len())
        .map(|i| HotspotShare {
            scale_ppm: scales[i],
            beacon: pro_rata(beacon_pool, beacon_weights[i], beacon_total),
            witness: pro_rata(witness_pool, witness_weights[i], witness_total),
            data: data_paid[i],
        })
        .collect();
    EpochSplit {
        beacon_pool,
        witness_pool,
        data_pool,
        data_flowback,
        shares,
    }
}
