//! How close two renders of the same pixels are: SSIM and PSNR over RGB, the scores a
//! verifier reports. Written here rather than taken from a crate because every verifier must
//! compute exactly this variant (8×8 windows, stride 4, the usual constants); it is a few
//! lines of arithmetic, not a codec.

use crate::image::{Image, ImageError};

/// PSNR reported for identical images (the true value is infinite).
pub const IDENTICAL_PSNR_DB: f64 = 100.0;

const WINDOW: usize = 8;
const STRIDE: usize = 4;
const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// The similarity of two images of the same size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Similarity {
    /// Mean SSIM over the windows and the three colour channels, −1 to 1 (1: identical).
    pub ssim: f64,
    /// Peak signal-to-noise ratio over RGB in dB ([`IDENTICAL_PSNR_DB`] when identical).
    pub psnr_db: f64,
}

/// Compares `a` with `b` (alpha ignored: Cycles writes it from coverage, which the colour
/// already shows).
pub fn compare(a: &Image, b: &Image) -> Result<Similarity, ImageError> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(ImageError::SizeMismatch {
            left: (a.width, a.height),
            right: (b.width, b.height),
        });
    }
    let (w, h) = (a.width as usize, a.height as usize);
    let mut squared_error = 0.0f64;
    for (pa, pb) in a.rgba.chunks_exact(4).zip(b.rgba.chunks_exact(4)) {
        for c in 0..3 {
            let d = f64::from(pa[c]) - f64::from(pb[c]);
            squared_error += d * d;
        }
    }
    let samples = (w * h * 3).max(1) as f64;
    let mse = squared_error / samples;
    let psnr_db = if mse == 0.0 {
        IDENTICAL_PSNR_DB
    } else {
        (10.0 * (255.0 * 255.0 / mse).log10()).min(IDENTICAL_PSNR_DB)
    };
    let (win_w, win_h) = (WINDOW.min(w), WINDOW.min(h));
    let starts = |len: usize, win: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..=len.saturating_sub(win)).step_by(STRIDE).collect();
        if v.last() != Some(&(len - win)) {
            v.push(len - win);
        }
        v
    };
    let (xs, ys) = (starts(w, win_w), starts(h, win_h));
    let mut total = 0.0f64;
    let mut windows = 0usize;
    for &y0 in &ys {
        for &x0 in &xs {
            for c in 0..3 {
                total += window_ssim(a, b, x0, y0, win_w, win_h, c);
                windows += 1;
            }
        }
    }
    Ok(Similarity {
        ssim: if windows == 0 {
            1.0
        } else {
            total / windows as f64
        },
        psnr_db,
    })
}

fn window_ssim(a: &Image, b: &Image, x0: usize, y0: usize, w: usize, h: usize, c: usize) -> f64 {
    let stride = a.width as usize * 4;
    let n = (w * h) as f64;
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            let i = y * stride + x * 4 + c;
            let (va, vb) = (f64::from(a.rgba[i]), f64::from(b.rgba[i]));
            sa += va;
            sb += vb;
            saa += va * va;
            sbb += vb * vb;
            sab += va * vb;
        }
    }
    let (ma, mb) = (sa / n, sb / n);
    let var_a = (saa / n - ma * ma).max(0.0);
    let var_b = (sbb / n - mb * mb).max(0.0);
    let cov = sab / n - ma * mb;
    ((2.0 * ma * mb + C1) * (2.0 * cov + C2)) / ((ma * ma + mb * mb + C1) * (var_a + var_b + C2))
}
