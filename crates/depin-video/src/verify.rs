//! The checks a broadcaster makes on every rendition that comes back, and the comparisons
//! of fast verification: a rendition against its rung and its source (size, frames,
//! duration), against another orchestrator's rendition by MPEG-7 video signature, and
//! against the source at its size by SSIM.

use crate::ffmpeg::{Ffmpeg, VideoError};
use crate::ladder::Rung;
use crate::probe::SegmentFacts;
use std::ffi::OsString;
use std::path::Path;

/// Why a rendition does not match what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("rendition is {got_width}×{got_height}, the rung is {width}×{height}")]
    Resolution {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("rendition has {got} frames, the source {expected}")]
    Frames { expected: u64, got: u64 },
    #[error("rendition lasts {got_ms} ms, the source {expected_ms} ms")]
    Duration { expected_ms: u64, got_ms: u64 },
    #[error("rendition is {0}, not H.264")]
    Codec(String),
}

/// Most a rendition's duration may differ from its source's: a frame at 24 fps.
const DURATION_SLACK_MS: u64 = 42;

/// Checks a decoded rendition against the rung it was asked for and the decoded source.
pub fn check_rendition(
    rung: &Rung,
    source: &SegmentFacts,
    rendition: &SegmentFacts,
) -> Result<(), Mismatch> {
    if rendition.codec != "h264" {
        return Err(Mismatch::Codec(rendition.codec.clone()));
    }
    if (rendition.width, rendition.height) != (rung.width, rung.height) {
        return Err(Mismatch::Resolution {
            width: rung.width,
            height: rung.height,
            got_width: rendition.width,
            got_height: rendition.height,
        });
    }
    if rendition.frames != source.frames {
        return Err(Mismatch::Frames {
            expected: source.frames,
            got: rendition.frames,
        });
    }
    if rendition.duration_ms.abs_diff(source.duration_ms) > DURATION_SLACK_MS {
        return Err(Mismatch::Duration {
            expected_ms: source.duration_ms,
            got_ms: rendition.duration_ms,
        });
    }
    Ok(())
}

impl Ffmpeg {
    /// Whether two renditions (of any sizes) show the same video, by their MPEG-7 video
    /// signatures (ffmpeg's `signature` filter, whole-video detection), as Livepeer's fast
    /// verification compares an untrusted orchestrator's rendition with a trusted one's.
    pub fn signatures_match(&self, a: &Path, b: &Path) -> Result<bool, VideoError> {
        let args: Vec<OsString> = vec![
            "-hide_banner".into(),
            "-nostdin".into(),
            "-nostats".into(),
            "-i".into(),
            a.into(),
            "-i".into(),
            b.into(),
            "-filter_complex".into(),
            "[0:v][1:v]signature=nb_inputs=2:detectmode=full".into(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ];
        // A partial match (some frames in common) is not the same segment.
        Ok(self.ffmpeg(&args)?.log.contains("whole video matching"))
    }

    /// SSIM (all planes) of `rendition` against `source` scaled to the rendition's size.
    pub fn ssim(
        &self,
        rendition: &Path,
        source: &Path,
        width: u32,
        height: u32,
    ) -> Result<f64, VideoError> {
        let args: Vec<OsString> = vec![
            "-hide_banner".into(),
            "-nostdin".into(),
            "-nostats".into(),
            "-i".into(),
            rendition.into(),
            "-i".into(),
            source.into(),
            "-filter_complex".into(),
            format!("[1:v]scale={width}:{height}:flags=bicubic,setsar=1[ref];[0:v][ref]ssim")
                .into(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ];
        let out = self.ffmpeg(&args)?;
        let all = out
            .log
            .lines()
            .rev()
            .find_map(|line| line.split("All:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite());
        all.ok_or_else(|| VideoError::Unreadable {
            program: "ffmpeg ssim".into(),
            reason: crate::ffmpeg::log_tail(&out.log),
        })
    }
}

/// What a second orchestrator's rendition of the same rung says about the first's.
#[derive(Debug, Clone, PartialEq)]
pub enum Opinion {
    /// Same bytes, or the same picture at quality within the margin.
    Agree,
    /// The first rendition is the worse one, by this much SSIM against the source.
    FirstWorse { ssim_first: f64, ssim_second: f64 },
    /// The second rendition is the worse one.
    SecondWorse { ssim_first: f64, ssim_second: f64 },
}

/// Most two honest encoders' renditions of one rung differ in SSIM against the source.
/// Measured with Debian's ffmpeg 5.1 on `testsrc2` (2 s, 1080p source) at the ladder's
/// bitrates: libx264 `ultrafast` to `medium` and 1 or 2 threads lie within 0.0035 of each
/// other at 360p and 1080p; a quarter of the bitrate costs 0.009 to 0.011, a twentieth 0.04
/// (1080p) to 0.11 (360p). 0.02 lets different encoders pass and catches a starved encode.
pub const SSIM_MARGIN: f64 = 0.02;

/// Judges two renditions of one rung that are not byte-identical. `exact_expected`: both
/// orchestrators run the same build with the stream's pinned settings and threads, so an
/// honest pair would have matched byte for byte and one of them deviated: the one further
/// from the source is wrong. Otherwise different encoders may differ: they must show the
/// same video (MPEG-7 signatures), and neither may be worse than the other by more than
/// [`SSIM_MARGIN`].
pub fn judge(
    exact_expected: bool,
    signatures_match: bool,
    ssim_first: f64,
    ssim_second: f64,
) -> Opinion {
    let margin = if exact_expected || !signatures_match {
        0.0
    } else {
        SSIM_MARGIN
    };
    if ssim_first + margin < ssim_second {
        Opinion::FirstWorse {
            ssim_first,
            ssim_second,
        }
    } else if ssim_second + margin < ssim_first {
        Opinion::SecondWorse {
            ssim_first,
            ssim_second,
        }
    } else {
        Opinion::Agree
    }
}

impl Ffmpeg {
    /// Compares two renditions of `rung` made from `source` by two orchestrators (see
    /// [`judge`]); byte-identical renditions agree without decoding either.
    pub fn second_opinion(
        &self,
        rung: &Rung,
        source: &Path,
        first: &Path,
        second: &Path,
        exact_expected: bool,
    ) -> Result<Opinion, VideoError> {
        let bytes = |p: &Path| std::fs::read(p).map_err(|e| VideoError::io(p, e));
        if bytes(first)? == bytes(second)? {
            return Ok(Opinion::Agree);
        }
        let signatures = self.signatures_match(first, second)?;
        let ssim_first = self.ssim(first, source, rung.width, rung.height)?;
        let ssim_second = self.ssim(second, source, rung.width, rung.height)?;
        Ok(judge(exact_expected, signatures, ssim_first, ssim_second))
    }
}
