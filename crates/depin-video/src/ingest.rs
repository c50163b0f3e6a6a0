//! What an orchestrator can run (its ffmpeg build and working H.264 encoders), and the
//! broadcaster's cutter: a source (a file, any URL ffmpeg reads, or an RTMP listener) cut into
//! MPEG-TS segments at keyframes, each reported as soon as ffmpeg closes it.

use crate::ffmpeg::{Ffmpeg, VideoError};
use crate::transcode::Encoder;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

impl Ffmpeg {
    /// The build, from `ffmpeg -version` (e.g. `5.1.6-0+deb12u1`): two libx264
    /// orchestrators are compared by exact hash only within one build.
    pub fn version(&self) -> Result<String, VideoError> {
        let out = self.ffmpeg(&["-hide_banner".into(), "-version".into()])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(2)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| VideoError::Unreadable {
                program: "ffmpeg -version".into(),
                reason: crate::ffmpeg::log_tail(&text),
            })
    }

    /// The H.264 encoders that work here: each encodes a few frames of a test picture (an
    /// `h264_nvenc` listed by a build without a GPU or driver fails and is left out).
    pub fn working_encoders(&self) -> Vec<Encoder> {
        [Encoder::Libx264, Encoder::H264Nvenc]
            .into_iter()
            .filter(|encoder| {
                let args: Vec<OsString> = [
                    "-hide_banner",
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=256x144:rate=30",
                    "-frames:v",
                    "3",
                    "-c:v",
                    encoder.ffmpeg_name(),
                    "-f",
                    "null",
                    "-",
                ]
                .iter()
                .map(OsString::from)
                .collect();
                self.ffmpeg(&args).is_ok()
            })
            .collect()
    }
}

/// Where a stream comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file or any URL ffmpeg reads.
    Input(String),
    /// An RTMP server ffmpeg listens as, e.g. `127.0.0.1:1935` (OBS or `ffmpeg -f flv` push
    /// to `rtmp://127.0.0.1:1935/live/…`).
    RtmpListen(String),
}

/// ffmpeg cutting a source into `seg-<n>.ts` files in a folder.
pub struct Cutter {
    child: Child,
    list: BufReader<std::process::ChildStdout>,
    dir: PathBuf,
}

/// One segment ffmpeg closed.
#[derive(Debug, Clone, PartialEq)]
pub struct CutSegment {
    pub seq: u64,
    pub path: PathBuf,
    /// Where it starts and ends in the source, in seconds.
    pub start_s: f64,
    pub end_s: f64,
}

impl Cutter {
    /// Starts cutting: video and audio copied as they are (no re-encode), a new segment at
    /// the first keyframe after every `segment_s`; `realtime` reads a file at its own pace
    /// (`-re`) as a live source would arrive.
    pub fn start(
        ffmpeg: &Ffmpeg,
        source: &Source,
        segment_s: f64,
        realtime: bool,
        dir: &Path,
    ) -> Result<Cutter, VideoError> {
        let mut args: Vec<OsString> = vec![
            "-hide_banner".into(),
            "-nostdin".into(),
            "-nostats".into(),
            "-loglevel".into(),
            "error".into(),
        ];
        match source {
            Source::Input(input) => {
                if realtime {
                    args.push("-re".into());
                }
                args.extend(["-i".into(), input.into()]);
            }
            Source::RtmpListen(addr) => args.extend([
                "-listen".into(),
                "1".into(),
                "-i".into(),
                format!("rtmp://{addr}/live/stream").into(),
            ]),
        }
        args.extend(
            [
                "-map",
                "0:v:0",
                "-map",
                "0:a:0?",
                "-c",
                "copy",
                "-f",
                "segment",
                "-segment_format",
                "mpegts",
                "-segment_time",
            ]
            .iter()
            .map(OsString::from),
        );
        args.push(format!("{segment_s}").into());
        args.extend(
            [
                "-reset_timestamps",
                "1",
                "-segment_list",
                "pipe:1",
                "-segment_list_type",
                "csv",
            ]
            .iter()
            .map(OsString::from),
        );
        args.push(dir.join("seg-%d.ts").into());
        // ffmpeg's own words go to a file, so a chatty source never blocks it on a pipe.
        let log_path = dir.join("cut.log");
        let log = std::fs::File::create(&log_path).map_err(|e| VideoError::io(&log_path, e))?;
        let mut child = Command::new(&ffmpeg.ffmpeg)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    VideoError::NotInstalled(ffmpeg.ffmpeg.display().to_string())
                }
                _ => VideoError::io(&ffmpeg.ffmpeg, e),
            })?;
        let stdout = child.stdout.take().ok_or_else(|| VideoError::Unreadable {
            program: "ffmpeg segment".into(),
            reason: "no stdout".into(),
        })?;
        Ok(Cutter {
            child,
            list: BufReader::new(stdout),
            dir: dir.to_path_buf(),
        })
    }

    /// The next segment ffmpeg closed; `None` once the source has ended (a source ffmpeg
    /// could not read at all is an error with ffmpeg's words).
    pub fn next_segment(&mut self) -> Result<Option<CutSegment>, VideoError> {
        let mut line = String::new();
        // The csv list has one bounded line per closed segment: `seg-3.ts,6.000,8.000`.
        let read = std::io::Read::take(&mut self.list, 4096)
            .read_line(&mut line)
            .map_err(|e| VideoError::io(&self.dir, e))?;
        if read == 0 {
            return self.finish().map(|()| None);
        }
        let mut fields = line.trim().split(',');
        let (Some(name), Some(start), Some(end)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(VideoError::Unreadable {
                program: "ffmpeg segment list".into(),
                reason: line.chars().take(200).collect(),
            });
        };
        let seq = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".ts"))
            .and_then(|n| n.parse::<u64>().ok());
        let (Some(seq), Ok(start_s), Ok(end_s)) = (seq, start.parse(), end.parse()) else {
            return Err(VideoError::Unreadable {
                program: "ffmpeg segment list".into(),
                reason: line.chars().take(200).collect(),
            });
        };
        Ok(Some(CutSegment {
            seq,
            path: self.dir.join(name),
            start_s,
            end_s,
        }))
    }

    fn finish(&mut self) -> Result<(), VideoError> {
        let status = self
            .child
            .wait()
            .map_err(|e| VideoError::io(&self.dir, e))?;
        if status.success() {
            return Ok(());
        }
        let log = std::fs::read(self.dir.join("cut.log")).unwrap_or_default();
        let tail = crate::ffmpeg::log_tail(&String::from_utf8_lossy(&log));
        if tail.contains("Invalid data found")
            || tail.contains("does not contain any stream")
            || tail.contains("matches no streams")
        {
            return Err(VideoError::NotVideo(tail));
        }
        Err(VideoError::Failed {
            program: "ffmpeg segment".into(),
            status: status.to_string(),
            log_tail: tail,
        })
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
