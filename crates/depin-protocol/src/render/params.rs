//! The render service's genesis section (`[services.render]`).

use crate::params::ServiceParams;
use depin_types::ServiceKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderParams {
    /// The lowest price a job may offer: Data Credits per 10⁹ pixel-samples (a 1920×1080
    /// frame at 128 samples is 0.265 × 10⁹). Work counts only at this floor or above.
    pub min_price_dc_per_gigapixel_sample: u64,
    pub max_width: u32,
    pub max_height: u32,
    /// Largest frame in pixels (8K UHD by default).
    pub max_frame_pixels: u64,
    pub max_samples: u32,
    pub max_frames: u32,
    /// Side of the square pixel tiles a frame's commitment is built over.
    pub tile_px: u32,
    /// Check regions drawn per frame, and each one's width and height as a share of the
    /// frame's (basis points; Golem re-rendered 3 crops of 10%).
    pub check_regions: u8,
    pub check_region_bps: u16,
    /// The smallest side of a check region in pixels.
    pub min_check_region_px: u32,
}

impl RenderParams {
    pub fn devnet() -> RenderParams {
        RenderParams {
            min_price_dc_per_gigapixel_sample: 100,
            max_width: 16_384,
            max_height: 16_384,
            max_frame_pixels: 7680 * 4320,
            max_samples: 65_536,
            max_frames: 10_000,
            tile_px: 32,
            check_regions: 3,
            check_region_bps: 1000,
            min_check_region_px: 8,
        }
    }
}

impl ServiceParams for RenderParams {
    const SERVICE: ServiceKind = super::SERVICE;

    fn validate(&self) -> Result<(), String> {
        if self.max_width == 0
            || self.max_height == 0
            || self.max_frame_pixels == 0
            || self.max_samples == 0
            || self.max_frames == 0
            || self.tile_px == 0
        {
            return Err("limits must be positive".into());
        }
        if self.min_price_dc_per_gigapixel_sample == 0 {
            return Err(
                "min_price_dc_per_gigapixel_sample must be positive: free renders cannot count as work"
                    .into(),
            );
        }
        if self.check_regions == 0 || self.check_region_bps == 0 || self.check_region_bps > 10_000 {
            return Err("check_regions must be positive and check_region_bps 1..=10000".into());
        }
        Ok(())
    }
}
