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
    pub max_bundle_bytes: u64,
    /// Frames above this many pixels are cut into horizontal strips of about this many (a
    /// row more at most), each rendered, checked and paid as a piece of its own.
    pub split_above_pixels: u64,
    /// Side of the square pixel tiles a piece's commitment is built over.
    pub tile_px: u32,
    /// Check regions drawn per piece, and each one's width and height as a share of the
    /// piece's (basis points). Golem re-rendered 3 crops of 10%: 3% of the pixels, which a
    /// paint over the middle quarter of the frame escapes one time in six. 8 crops of 7% leave
    /// it about 1.3% for 3.9% of the pixels, in the same one Blender run (verification stays
    /// under 10% of the render from frames of about 15 s up).
    pub check_regions: u8,
    pub check_region_bps: u16,
    /// The smallest side of a check region in pixels.
    pub min_check_region_px: u32,
    /// Blocks a renderer has to commit a piece: this many, plus its work at the score it
    /// advertised slowed `render_slack` times. Overclaiming a score buys assignments that
    /// then time out.
    pub render_base_blocks: u64,
    pub render_slack: u32,
    /// Blocks a verifier has to post its verdict.
    pub verify_blocks: u64,
    /// Blocks a checked piece waits for the consumer before it is approved (the Render
    /// Network approves after 72 h).
    pub approval_blocks: u64,
    /// A verdict passes at or above both: SSIM in parts per million and PSNR in millidecibels
    /// (an identical render is SSIM 1 and PSNR 100 dB, the cap).
    pub min_ssim_ppm: u32,
    pub min_psnr_millidb: u32,
    /// Renders of a piece (timeouts, failed checks, rejections) before it is given up and its
    /// escrow refunded.
    pub max_attempts: u8,
    /// Times the consumer may reject one piece; the render after that is final.
    pub max_rejections: u8,
    /// Each verdict on the winning side is paid this share of the piece's price at the
    /// consumer's maximum (basis points), from a pool escrowed beside the frames' price.
    pub verify_fee_bps: u16,
    pub verify_escrow_bps: u16,
    /// Share of every payment burned rather than paid (basis points): a provider's emission
    /// is capped at the value it burned, so self-dealt jobs cannot farm it.
    pub payment_burn_bps: u16,
    /// Pieces the chain hands out per block at most (bounds the end-of-block work).
    pub max_assignments_per_block: u32,
    /// Longest device and build names a provider may advertise.
    pub max_ad_name_bytes: u32,
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
            max_bundle_bytes: 2 << 30,
            split_above_pixels: 3840 * 2160,
            tile_px: 32,
            check_regions: 8,
            check_region_bps: 700,
            min_check_region_px: 8,
            render_base_blocks: 100,
            render_slack: 4,
            verify_blocks: 100,
            approval_blocks: 20,
            min_ssim_ppm: 995_000,
            min_psnr_millidb: 50_000,
            max_attempts: 6,
            max_rejections: 1,
            verify_fee_bps: 500,
            verify_escrow_bps: 2000,
            payment_burn_bps: 1000,
            max_assignments_per_block: 32,
            max_ad_name_bytes: 64,
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
            || self.max_bundle_bytes == 0
            || self.split_above_pixels == 0
            || self.tile_px == 0
            || self.render_base_blocks == 0
            || self.render_slack == 0
            || self.verify_blocks == 0
            || self.approval_blocks == 0
            || self.max_attempts == 0
            || self.max_assignments_per_block == 0
        {
            return Err("limits and windows must be positive".into());
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
        if self.min_ssim_ppm > 1_000_000 {
            return Err("min_ssim_ppm is at most 1000000 (SSIM 1)".into());
        }
        if self.payment_burn_bps == 0 || self.payment_burn_bps > 10_000 {
            return Err("payment_burn_bps must be 1..=10000: without a burn, self-dealt jobs earn emission for free".into());
        }
        if self.verify_fee_bps > 10_000 || self.verify_escrow_bps > 10_000 {
            return Err("verify_fee_bps and verify_escrow_bps are at most 10000".into());
        }
        Ok(())
    }
}
