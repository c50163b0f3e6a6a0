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
