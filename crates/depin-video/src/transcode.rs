//! One segment in, one rendition per rung out, in a single ffmpeg run (the source is decoded
//! once and split), with every setting that changes the bytes pinned: the same settings and
//! thread count give byte-identical renditions on any machine with the same ffmpeg build
//! (measured with Debian's ffmpeg 5.1 and libx264).

use crate::ffmpeg::{Ffmpeg, VideoError};
use crate::ladder::{Ladder, Rung};
use depin_types::Hash;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The H.264 encoder a rendition is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// libx264 on the CPU: byte-identical across machines at the same settings and threads.
    Libx264,
    /// NVIDIA's NVENC: fast, not byte-identical to libx264 (compared by signature and SSIM).
    H264Nvenc,
}

impl Encoder {
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            Encoder::Libx264 => "libx264",
            Encoder::H264Nvenc => "h264_nvenc",
        }
    }
}

impl std::str::FromStr for Encoder {
    type Err = String;

    fn from_str(text: &str) -> Result<Encoder, String> {
        match text {
            "libx264" => Ok(Encoder::Libx264),
            "h264_nvenc" | "nvenc" => Ok(Encoder::H264Nvenc),
            other => Err(format!("unknown encoder {other:?}: libx264 or h264_nvenc")),
        }
    }
}

/// Everything that changes a rendition's bytes, fixed per stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderSettings {
    pub encoder: Encoder,
    /// libx264's preset (`veryfast` by default, as Livepeer's CPU transcoder).
    pub preset: String,
    /// Encoder threads: renditions of one thread count are byte-identical; 1 and 2 differ.
    pub threads: u32,
    /// Keyframe interval in frames: one GOP per segment, so every segment starts on a
    /// keyframe and plays alone.
    pub gop_frames: u32,
}

impl Default for EncoderSettings {
    fn default() -> EncoderSettings {
        EncoderSettings {
            encoder: Encoder::Libx264,
            preset: "veryfast".into(),
            threads: 1,
            gop_frames: 60,
        }
    }
}

/// One rendition of a segment, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendition {
    pub rung: Rung,
    pub path: PathBuf,
    pub bytes: u64,
    /// BLAKE3 of the file: what an orchestrator commits to.
    pub hash: Hash,
}

impl Ffmpeg {
    /// Transcodes `source` (an MPEG-TS segment) to every rung of `ladder` into `out_dir`
    /// (`<rung>.ts`), audio copied. A source with no decodable video is
    /// [`VideoError::NotVideo`].
    pub fn transcode(
        &self,
        source: &Path,
        ladder: &Ladder,
        settings: &EncoderSettings,
        out_dir: &Path,
    ) -> Result<Vec<Rendition>, VideoError> {
        let rungs = ladder.rungs();
        let mut filter = format!("[0:v]split={}", rungs.len());
        for i in 0..rungs.len() {
            filter.push_str(&format!("[s{i}]"));
        }
        for (i, rung) in rungs.iter().enumerate() {
            filter.push_str(&format!(
                ";[s{i}]scale={}:{}:flags=bicubic,setsar=1[v{i}]",
                rung.width, rung.height
            ));
        }
        let mut args: Vec<OsString> = vec![
            "-hide_banner".into(),
            "-nostdin".into(),
            "-nostats".into(),
            "-loglevel".into(),
            "error".into(),
            "-y".into(),
            "-i".into(),
            source.into(),
            "-filter_complex".into(),
            filter.into(),
        ];
        let mut outputs = Vec::new();
        for (i, rung) in rungs.iter().enumerate() {
            let path = out_dir.join(format!("{}.ts", rung.name));
            let bitrate = format!("{}k", rung.bitrate_kbps);
            args.extend([
                "-map".into(),
                format!("[v{i}]").into(),
                "-map".into(),
                "0:a?".into(),
                "-c:v".into(),
                settings.encoder.ffmpeg_name().into(),
            ]);
            if settings.encoder == Encoder::Libx264 {
                args.extend([
                    "-preset".into(),
                    settings.preset.clone().into(),
                    "-threads".into(),
                    settings.threads.to_string().into(),
                    "-sc_threshold".into(),
                    "0".into(),
                ]);
            }
            args.extend([
                "-b:v".into(),
                bitrate.clone().into(),
                "-maxrate".into(),
                bitrate.into(),
                "-bufsize".into(),
                format!("{}k", rung.bitrate_kbps * 2).into(),
                "-g".into(),
                settings.gop_frames.to_string().into(),
                "-keyint_min".into(),
                settings.gop_frames.to_string().into(),
                "-pix_fmt".into(),
                "yuv420p".into(),
                "-c:a".into(),
                "copy".into(),
                "-map_metadata".into(),
                "-1".into(),
                "-fflags".into(),
                "+bitexact".into(),
                "-flags:v".into(),
                "+bitexact".into(),
                "-f".into(),
                "mpegts".into(),
                path.clone().into(),
            ]);
            outputs.push((*rung, path));
        }
        match self.ffmpeg(&args) {
            Ok(_) => {}
            Err(VideoError::Failed { log_tail, .. }) if decode_failure(&log_tail) => {
                return Err(VideoError::NotVideo(source.display().to_string()));
            }
            Err(e) => return Err(e),
        }
        outputs
            .into_iter()
            .map(|(rung, path)| {
                let bytes = std::fs::read(&path).map_err(|e| VideoError::io(&path, e))?;
                Ok(Rendition {
                    rung,
                    bytes: bytes.len() as u64,
                    hash: Hash::of(&bytes),
                    path,
                })
            })
            .collect()
    }
}

/// ffmpeg's words for an input it cannot read as video.
fn decode_failure(log: &str) -> bool {
    [
        "Invalid data found when processing input",
        "does not contain any stream",
        "matches no streams",
        "Output file #0 does not contain any stream",
    ]
    .iter()
    .any(|m| log.contains(m))
}
