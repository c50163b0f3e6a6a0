//! What a segment holds, as ffprobe decodes it: the first video stream's codec, size, frame
//! count and duration, and so the decoded pixels the segment is paid by.

use crate::ffmpeg::{Ffmpeg, VideoError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A decoded segment's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFacts {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames decoded (ffprobe `-count_frames`, not the container's claim).
    pub frames: u64,
    /// The video stream's duration in milliseconds.
    pub duration_ms: u64,
    pub has_audio: bool,
}

impl SegmentFacts {
    /// Decoded pixels: what a rendition is paid by.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * self.frames
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

#[derive(Deserialize)]
struct ProbeStream {
    #[serde(default)]
    codec_type: String,
    #[serde(default)]
    codec_name: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
    #[serde(default)]
    nb_read_frames: Option<String>,
    #[serde(default)]
    nb_read_packets: Option<String>,
    #[serde(default)]
    duration: Option<String>,
}

impl Ffmpeg {
    /// Decodes `path` and reports its first video stream; a file with none (or one ffmpeg
    /// cannot read) is [`VideoError::NotVideo`].
    pub fn probe(&self, path: &Path) -> Result<SegmentFacts, VideoError> {
        self.probe_counting(path, true)
    }

    /// As [`Ffmpeg::probe`], counting the frames by their packets without decoding them:
    /// for a source whose frames set the price, not for a rendition being checked.
    pub fn probe_packets(&self, path: &Path) -> Result<SegmentFacts, VideoError> {
        self.probe_counting(path, false)
    }

    fn probe_counting(&self, path: &Path, decode: bool) -> Result<SegmentFacts, VideoError> {
        let (count, entry) = if decode {
            ("-count_frames", "nb_read_frames")
        } else {
            ("-count_packets", "nb_read_packets")
        };
        let args: Vec<std::ffi::OsString> = vec![
            "-v".into(),
            "error".into(),
            count.into(),
            "-show_entries".into(),
            format!("stream=codec_type,codec_name,width,height,{entry},duration").into(),
            "-of".into(),
            "json".into(),
            path.into(),
        ];
        let out = match self.ffprobe(&args) {
            Ok(out) => out,
            Err(VideoError::Failed { .. }) => {
                return Err(VideoError::NotVideo(path.display().to_string()));
            }
            Err(e) => return Err(e),
        };
        let unreadable = |reason: String| VideoError::Unreadable {
            program: "ffprobe".into(),
            reason,
        };
        let probe: Probe =
            serde_json::from_slice(&out.stdout).map_err(|e| unreadable(e.to_string()))?;
        let has_audio = probe.streams.iter().any(|s| s.codec_type == "audio");
        let video = probe
            .streams
            .into_iter()
            .find(|s| s.codec_type == "video" && s.width > 0 && s.height > 0)
            .ok_or_else(|| VideoError::NotVideo(path.display().to_string()))?;
        let frames = if decode {
            video.nb_read_frames.as_deref()
        } else {
            video.nb_read_packets.as_deref()
        };
        let frames = frames.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        if frames == 0 {
            return Err(VideoError::NotVideo(path.display().to_string()));
        }
        let duration_ms = video
            .duration
            .as_deref()
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map_or(0, |d| (d * 1000.0).round() as u64);
        Ok(SegmentFacts {
            codec: video.codec_name,
            width: video.width,
            height: video.height,
            frames,
            duration_ms,
            has_audio,
        })
    }
}
