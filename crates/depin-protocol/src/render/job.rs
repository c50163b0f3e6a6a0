//! A render job as the consumer asks for it: the checks against genesis limits, its price, and
//! the chain's draw of the regions a verifier re-renders.

use super::RenderParams;
use crate::TxError;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::Hash;
use serde::{Deserialize, Serialize};

/// What a consumer asks to render.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RenderJobSpec {
    /// BLAKE3 of the scene bundle (the .blend and the files it reads).
    pub bundle: Hash,
    pub bundle_bytes: u64,
    pub frame_start: u32,
    pub frame_end: u32,
    pub width: u32,
    pub height: u32,
    pub samples: u32,
    /// The most the consumer pays: DC per 10⁹ pixel-samples.
    pub max_price_dc_per_gigapixel_sample: u64,
}

impl RenderJobSpec {
    pub fn frames(&self) -> u32 {
        self.frame_end
            .saturating_sub(self.frame_start)
            .saturating_add(1)
    }
}

fn reject(code: &'static str, reason: impl Into<String>) -> TxError {
    TxError::ServiceRejected {
        service: super::SERVICE,
        code,
        reason: reason.into(),
    }
}

/// Refuses a spec outside the genesis limits (an absurd resolution, sample or frame count, a
/// price under the floor), with a code a client can act on.
pub fn check_spec(params: &RenderParams, spec: &RenderJobSpec) -> Result<(), TxError> {
    if spec.width == 0 || spec.height == 0 {
        return Err(reject(
            "bad_resolution",
            "width and height must be positive",
        ));
    }
    if spec.width > params.max_width || spec.height > params.max_height {
        return Err(reject(
            "resolution_too_large",
            format!(
                "{}×{} is over the {}×{} limit",
                spec.width, spec.height, params.max_width, params.max_height
            ),
        ));
    }
    let pixels = u64::from(spec.width) * u64::from(spec.height);
    if pixels > params.max_frame_pixels {
        return Err(reject(
            "resolution_too_large",
            format!(
                "{pixels} pixels a frame is over the {} limit",
                params.max_frame_pixels
            ),
        ));
    }
    if spec.samples == 0 || spec.samples > params.max_samples {
        return Err(reject(
            "bad_samples",
            format!("samples must be 1 to {}", params.max_samples),
        ));
    }
    if spec.frame_end < spec.frame_start {
        return Err(reject(
            "bad_frames",
            format!(
                "the last frame {} is before the first {}",
                spec.frame_end, spec.frame_start
            ),
        ));
    }
    if spec.frames() > params.max_frames {
        return Err(reject(
            "too_many_frames",
            format!(
                "{} frames is over the {} limit",
                spec.frames(),
                params.max_frames
            ),
        ));
    }
    if spec.max_price_dc_per_gigapixel_sample < params.min_price_dc_per_gigapixel_sample {
        return Err(reject(
            "price_below_floor",
            format!(
                "{} DC per 10⁹ pixel-samples is under the floor of {}",
                spec.max_price_dc_per_gigapixel_sample, params.min_price_dc_per_gigapixel_sample
            ),
        ));
    }
    Ok(())
}

/// Data Credits for one frame of `spec` at `price_dc_per_gigapixel_sample`, rounded up (at
/// least 1: no frame is free); `None` past `u128` (only a genesis far beyond the defaults'
/// limits gets there).
pub fn frame_price_dc(spec: &RenderJobSpec, price_dc_per_gigapixel_sample: u64) -> Option<u128> {
    let pixel_samples = u128::from(spec.width)
        .checked_mul(u128::from(spec.height))?
        .checked_mul(u128::from(spec.samples))?;
    Some(
        pixel_samples
            .checked_mul(u128::from(price_dc_per_gigapixel_sample))?
            .div_ceil(1_000_000_000)
            .max(1),
    )
}

/// The escrow a job locks: every frame at the consumer's maximum price.
pub fn job_escrow_dc(spec: &RenderJobSpec) -> Result<u128, TxError> {
    frame_price_dc(spec, spec.max_price_dc_per_gigapixel_sample)
        .and_then(|frame| frame.checked_mul(u128::from(spec.frames())))
        .ok_or(TxError::AmountOverflow)
}

/// A rectangle of a frame: columns `x0..x1`, rows `y0..y1` from the top.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct CheckRegion {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

/// The regions of a `width` × `height` frame a verifier re-renders, drawn from `seed` (entropy
/// published after the frame's commitment, so the renderer cannot know them when it renders).
/// Integer arithmetic only: every validator draws the same regions.
pub fn draw_check_regions(
    params: &RenderParams,
    seed: &Hash,
    width: u32,
    height: u32,
) -> Vec<CheckRegion> {
    let side = |len: u32| {
        let share = (u64::from(len) * u64::from(params.check_region_bps) / 10_000) as u32;
        share.max(params.min_check_region_px).min(len)
    };
    let (rw, rh) = (side(width), side(height));
    (0..params.check_regions)
        .map(|i| {
            let draw = Hash::tagged("depin render check region", &[seed.as_bytes(), &[i]]);
            let bytes = draw.as_bytes();
            let pick = |at: usize, span: u32| {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[at..at + 8]);
                (u64::from_be_bytes(word) % u64::from(span)) as u32
            };
            let x0 = pick(0, width - rw + 1);
            let y0 = pick(8, height - rh + 1);
            CheckRegion {
                x0,
                y0,
                x1: x0 + rw,
                y1: y0 + rh,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RenderJobSpec {
        RenderJobSpec {
            bundle: Hash::of(b"scene"),
            bundle_bytes: 1 << 20,
            frame_start: 1,
            frame_end: 48,
            width: 1920,
            height: 1080,
            samples: 128,
            max_price_dc_per_gigapixel_sample: 100,
        }
    }

    fn code(r: Result<(), TxError>) -> &'static str {
        match r {
            Err(TxError::ServiceRejected { code, .. }) => code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn absurd_jobs_are_refused_by_the_genesis_limits() {
        let p = RenderParams::devnet();
        assert_eq!(check_spec(&p, &spec()), Ok(()));
        let with = |f: fn(&mut RenderJobSpec)| {
            let mut s = spec();
            f(&mut s);
            code(check_spec(&p, &s))
        };
        assert_eq!(with(|s| s.width = 0), "bad_resolution");
        assert_eq!(with(|s| s.width = 100_000), "resolution_too_large");
        assert_eq!(
            with(|s| {
                s.width = 16_384;
                s.height = 16_384
            }),
            "resolution_too_large"
        );
        assert_eq!(with(|s| s.samples = 0), "bad_samples");
        assert_eq!(with(|s| s.samples = u32::MAX), "bad_samples");
        assert_eq!(with(|s| s.frame_end = 0), "bad_frames");
        assert_eq!(
            with(|s| {
                s.frame_start = 0;
                s.frame_end = u32::MAX
            }),
            "too_many_frames"
        );
        assert_eq!(
            with(|s| s.max_price_dc_per_gigapixel_sample = 0),
            "price_below_floor"
        );
    }

    #[test]
    fn a_frame_costs_its_pixel_samples_at_the_price_rounded_up() {
        let s = spec();
        // 1920 × 1080 × 128 = 265,420,800 pixel-samples; at 100 DC per 10⁹: 26.54 → 27.
        assert_eq!(frame_price_dc(&s, 100), Some(27));
        assert_eq!(job_escrow_dc(&s), Ok(27 * 48));
        let tiny = RenderJobSpec {
            width: 1,
            height: 1,
            samples: 1,
            ..s.clone()
        };
        assert_eq!(frame_price_dc(&tiny, 1), Some(1), "no frame is free");
        // The largest job within limits cannot overflow.
        let p = RenderParams::devnet();
        let huge = RenderJobSpec {
            width: 7680,
            height: 4320,
            samples: p.max_samples,
            frame_start: 0,
            frame_end: p.max_frames - 1,
            max_price_dc_per_gigapixel_sample: u64::MAX,
            ..s
        };
        assert_eq!(check_spec(&p, &huge), Ok(()));
        assert!(job_escrow_dc(&huge).is_ok_and(|dc| dc > 0));
        let beyond = RenderJobSpec {
            width: u32::MAX,
            height: u32::MAX,
            samples: u32::MAX,
            ..huge
        };
        assert_eq!(job_escrow_dc(&beyond), Err(TxError::AmountOverflow));
    }

    #[test]
    fn check_regions_are_drawn_inside_the_frame_the_same_way_by_everyone() {
        let p = RenderParams::devnet();
        let seed = Hash::of(b"entropy after the commitment");
        let regions = draw_check_regions(&p, &seed, 1920, 1080);
        assert_eq!(regions, draw_check_regions(&p, &seed, 1920, 1080));
        assert_eq!(regions.len(), 3);
        for r in &regions {
            assert_eq!((r.x1 - r.x0, r.y1 - r.y0), (192, 108));
            assert!(r.x1 <= 1920 && r.y1 <= 1080);
        }
        assert_ne!(
            regions,
            draw_check_regions(&p, &Hash::of(b"other"), 1920, 1080)
        );
        // Small frames: at least 8 px, never more than the frame.
        for (w, h) in [(1, 1), (8, 8), (20, 9), (79, 81)] {
            for r in draw_check_regions(&p, &seed, w, h) {
                assert!(
                    r.x0 < r.x1 && r.x1 <= w && r.y0 < r.y1 && r.y1 <= h,
                    "{w}x{h}: {r:?}"
                );
                assert_eq!(
                    r.x1 - r.x0,
                    8.min(w).max((w as u64 * 1000 / 10_000) as u32).min(w)
                );
            }
        }
    }
}
