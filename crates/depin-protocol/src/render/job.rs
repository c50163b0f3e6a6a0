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
    if spec.bundle_bytes == 0 || spec.bundle_bytes > params.max_bundle_bytes {
        return Err(reject(
            "bad_bundle",
            format!(
                "a scene bundle is 1 to {} bytes, not {}",
                params.max_bundle_bytes, spec.bundle_bytes
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

/// Data Credits for `rows` rows of a frame of `spec` at `price_dc_per_gigapixel_sample`,
/// rounded up (at least 1: no piece is free); `None` past `u128` (only a genesis far beyond
/// the defaults' limits gets there).
pub fn piece_price_dc(
    spec: &RenderJobSpec,
    rows: u32,
    price_dc_per_gigapixel_sample: u64,
) -> Option<u128> {
    let pixel_samples = u128::from(spec.width)
        .checked_mul(u128::from(rows))?
        .checked_mul(u128::from(spec.samples))?;
    Some(
        pixel_samples
            .checked_mul(u128::from(price_dc_per_gigapixel_sample))?
            .div_ceil(1_000_000_000)
            .max(1),
    )
}

/// Data Credits for one whole frame of `spec` (a single piece).
pub fn frame_price_dc(spec: &RenderJobSpec, price_dc_per_gigapixel_sample: u64) -> Option<u128> {
    piece_price_dc(spec, spec.height, price_dc_per_gigapixel_sample)
}

/// Where a piece lies: its frame and its rows `y0..y1` from the top.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct PieceArea {
    pub frame: u32,
    pub y0: u32,
    pub y1: u32,
}

impl PieceArea {
    pub fn rows(&self) -> u32 {
        self.y1 - self.y0
    }
}

/// How many strips each frame of `spec` is cut into: one up to `split_above_pixels`, more
/// above, never more than the frame has rows.
pub fn strips_per_frame(params: &RenderParams, spec: &RenderJobSpec) -> u32 {
    let pixels = u64::from(spec.width) * u64::from(spec.height);
    let strips = pixels.div_ceil(params.split_above_pixels.max(1)).max(1);
    strips.min(u64::from(spec.height.max(1))) as u32
}

/// Pieces of a job: every frame's strips.
pub fn piece_count(params: &RenderParams, spec: &RenderJobSpec) -> u64 {
    u64::from(spec.frames()) * u64::from(strips_per_frame(params, spec))
}

/// The area of piece `index` (frames in order, each frame's strips from the top; strips are
/// of equal height but the last, which takes what is left).
pub fn piece_area(params: &RenderParams, spec: &RenderJobSpec, index: u64) -> PieceArea {
    let strips = u64::from(strips_per_frame(params, spec));
    let frame = spec.frame_start + (index / strips) as u32;
    let strip = (index % strips) as u32;
    let rows = spec.height.div_ceil(strips as u32);
    let y0 = (strip * rows).min(spec.height);
    let y1 = if u64::from(strip) + 1 == strips {
        spec.height
    } else {
        (y0 + rows).min(spec.height)
    };
    PieceArea { frame, y0, y1 }
}

/// What a job locks: every piece at the consumer's maximum price, and beside it the pool its
/// verdicts are paid from (`verify_escrow_bps` of that, rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobEscrow {
    pub frames_dc: u128,
    pub verify_pool_dc: u128,
}

impl JobEscrow {
    pub fn total_dc(&self) -> u128 {
        self.frames_dc + self.verify_pool_dc
    }
}

pub fn job_escrow_dc(params: &RenderParams, spec: &RenderJobSpec) -> Result<JobEscrow, TxError> {
    let strips = strips_per_frame(params, spec);
    let price = spec.max_price_dc_per_gigapixel_sample;
    let mut per_frame: u128 = 0;
    for strip in 0..u64::from(strips) {
        let area = piece_area(params, spec, strip);
        per_frame = piece_price_dc(spec, area.rows(), price)
            .and_then(|dc| per_frame.checked_add(dc))
            .ok_or(TxError::AmountOverflow)?;
    }
    let frames_dc = per_frame
        .checked_mul(u128::from(spec.frames()))
        .ok_or(TxError::AmountOverflow)?;
    let verify_pool_dc = frames_dc
        .checked_mul(u128::from(params.verify_escrow_bps))
        .ok_or(TxError::AmountOverflow)?
        .div_ceil(10_000);
    frames_dc
        .checked_add(verify_pool_dc)
        .ok_or(TxError::AmountOverflow)?;
    Ok(JobEscrow {
        frames_dc,
        verify_pool_dc,
    })
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

/// The check regions of a piece in frame coordinates: drawn over the piece's own rows from
/// `seed`, so a strip is checked inside itself.
pub fn piece_check_regions(
    params: &RenderParams,
    area: &PieceArea,
    width: u32,
    seed: &Hash,
) -> Vec<CheckRegion> {
    draw_check_regions(params, seed, width, area.rows())
        .into_iter()
        .map(|r| CheckRegion {
            y0: r.y0 + area.y0,
            y1: r.y1 + area.y0,
            ..r
        })
        .collect()
}

/// Blocks a renderer is given for a piece: the genesis base, plus its pixel-samples at the
/// renderer's advertised score slowed `render_slack` times, in blocks of `block_interval_ms`.
pub fn render_blocks(
    params: &RenderParams,
    spec: &RenderJobSpec,
    rows: u32,
    score_pixel_samples_per_s: u64,
    block_interval_ms: u64,
) -> u64 {
    let pixel_samples = u128::from(spec.width) * u128::from(rows) * u128::from(spec.samples);
    let ms = pixel_samples * u128::from(params.render_slack) * 1000
        / u128::from(score_pixel_samples_per_s.max(1));
    let blocks = ms.div_ceil(u128::from(block_interval_ms.max(1)));
    params
        .render_base_blocks
        .saturating_add(u64::try_from(blocks).unwrap_or(u64::MAX))
}

/// The Cycles seed of a frame of a job: fixed per frame (no animated seed), the same for its
/// renderer and its verifiers, and under 2³¹ as Blender's seed is a signed int.
pub fn frame_seed(job: &Hash, frame: u32) -> u32 {
    let draw = Hash::tagged("depin render seed", &[job.as_bytes(), &frame.to_be_bytes()]);
    let mut word = [0u8; 4];
    word.copy_from_slice(&draw.as_bytes()[..4]);
    u32::from_be_bytes(word) & 0x7fff_ffff
}

/// A verdict passes at or above both genesis thresholds.
pub fn verdict_passes(params: &RenderParams, verdict: &super::Verdict) -> bool {
    verdict.ssim_ppm >= params.min_ssim_ppm && verdict.psnr_millidb >= params.min_psnr_millidb
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
        assert_eq!(with(|s| s.bundle_bytes = 0), "bad_bundle");
        assert_eq!(with(|s| s.bundle_bytes = u64::MAX), "bad_bundle");
    }

    #[test]
    fn a_frame_costs_its_pixel_samples_at_the_price_rounded_up() {
        let s = spec();
        // 1920 × 1080 × 128 = 265,420,800 pixel-samples; at 100 DC per 10⁹: 26.54 → 27.
        let p = RenderParams::devnet();
        assert_eq!(frame_price_dc(&s, 100), Some(27));
        assert_eq!(
            job_escrow_dc(&p, &s),
            Ok(JobEscrow {
                frames_dc: 27 * 48,
                verify_pool_dc: (27 * 48 * 2000u128).div_ceil(10_000)
            })
        );
        let tiny = RenderJobSpec {
            width: 1,
            height: 1,
            samples: 1,
            ..s.clone()
        };
        assert_eq!(frame_price_dc(&tiny, 1), Some(1), "no frame is free");
        // The largest job within limits cannot overflow.
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
        assert!(job_escrow_dc(&p, &huge).is_ok_and(|e| e.total_dc() > 0));
        let beyond = RenderJobSpec {
            width: u32::MAX,
            height: u32::MAX,
            samples: u32::MAX,
            ..huge
        };
        assert_eq!(job_escrow_dc(&p, &beyond), Err(TxError::AmountOverflow));
    }

    #[test]
    fn frames_above_the_split_are_cut_into_strips_that_cover_them_once() {
        let p = RenderParams::devnet();
        let hd = spec();
        assert_eq!(strips_per_frame(&p, &hd), 1);
        assert_eq!(piece_count(&p, &hd), 48);
        assert_eq!(
            piece_area(&p, &hd, 47),
            PieceArea {
                frame: 48,
                y0: 0,
                y1: 1080
            }
        );
        let eight_k = RenderJobSpec {
            width: 7680,
            height: 4321,
            frame_end: 2,
            ..spec()
        };
        let strips = strips_per_frame(&p, &eight_k);
        assert_eq!(strips, 5);
        assert_eq!(piece_count(&p, &eight_k), 10);
        let mut next_row = 0;
        for i in 0..u64::from(strips) {
            let a = piece_area(&p, &eight_k, i);
            assert_eq!((a.frame, a.y0), (1, next_row));
            assert!(u64::from(a.rows()) * 7680 <= p.split_above_pixels);
            next_row = a.y1;
        }
        assert_eq!(next_row, 4321);
        assert_eq!(piece_area(&p, &eight_k, 5).frame, 2);
        // A tall one-pixel-wide frame never has empty strips.
        let thin = RenderJobSpec {
            width: 1,
            height: 3,
            ..spec()
        };
        assert_eq!(strips_per_frame(&p, &thin), 1);
    }

    #[test]
    fn check_regions_are_drawn_inside_the_frame_the_same_way_by_everyone() {
        let p = RenderParams::devnet();
        let seed = Hash::of(b"entropy after the commitment");
        let regions = draw_check_regions(&p, &seed, 1920, 1080);
        assert_eq!(regions, draw_check_regions(&p, &seed, 1920, 1080));
        assert_eq!(regions.len(), 8);
        for r in &regions {
            assert_eq!((r.x1 - r.x0, r.y1 - r.y0), (134, 75));
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
                    8.min(w).max((w as u64 * 700 / 10_000) as u32).min(w)
                );
            }
        }
    }
}
