//! Running ffmpeg and ffprobe: found on the PATH (or configured), bounded in time and in the
//! log kept, every failure a typed error with the end of ffmpeg's own words.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{0} is not installed (scripts/setup.sh installs ffmpeg)")]
    NotInstalled(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no video ffmpeg can decode")]
    NotVideo(String),
    #[error("segment of {bytes} bytes is over the {limit_bytes}-byte limit")]
    TooLarge { bytes: u64, limit_bytes: u64 },
    #[error("{program} stopped after the {limit_s} s limit")]
    TimedOut { program: String, limit_s: u64 },
    #[error("{program} failed ({status}): {log_tail}")]
    Failed {
        program: String,
        status: String,
        log_tail: String,
    },
    #[error("unexpected output from {program}: {reason}")]
    Unreadable { program: String, reason: String },
}

impl VideoError {
    /// A stable code for users and logs.
    pub fn code(&self) -> &'static str {
        match self {
            VideoError::NotInstalled(_) => "ffmpeg_not_installed",
            VideoError::Io { .. } => "io",
            VideoError::NotVideo(_) => "not_video",
            VideoError::TooLarge { .. } => "segment_too_large",
            VideoError::TimedOut { .. } => "timed_out",
            VideoError::Failed { .. } => "ffmpeg_failed",
            VideoError::Unreadable { .. } => "ffmpeg_unreadable",
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> VideoError {
        VideoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The end of a program's log kept for an error: enough to see why, never unbounded.
const LOG_TAIL_BYTES: usize = 2048;
/// Most log bytes read from a run (the rest is drained and dropped).
const MAX_LOG_BYTES: usize = 4 << 20;

/// The ffmpeg and ffprobe binaries, and how long one run may take.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    pub wall_clock_limit_s: u64,
}

impl Default for Ffmpeg {
    fn default() -> Ffmpeg {
        Ffmpeg {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            wall_clock_limit_s: 120,
        }
    }
}

/// What a finished run printed.
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub log: String,
}

impl Ffmpeg {
    pub(crate) fn ffmpeg(&self, args: &[std::ffi::OsString]) -> Result<Output, VideoError> {
        self.run(&self.ffmpeg, args)
    }

    pub(crate) fn ffprobe(&self, args: &[std::ffi::OsString]) -> Result<Output, VideoError> {
        self.run(&self.ffprobe, args)
    }

    fn run(&self, program: &Path, args: &[std::ffi::OsString]) -> Result<Output, VideoError> {
        let name = program.display().to_string();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => VideoError::NotInstalled(name.clone()),
                _ => VideoError::io(program, e),
            })?;
        // Both pipes are drained on their own threads so a chatty run never blocks on a
        // full pipe while we wait for it.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                if let Some(mut pipe) = pipe {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = pipe.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if kept.len() < MAX_LOG_BYTES {
                            kept.extend_from_slice(&buf[..n]);
                        }
                    }
                }
                kept
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let limit = Duration::from_secs(self.wall_clock_limit_s);
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(VideoError::TimedOut {
                        program: name,
                        limit_s: self.wall_clock_limit_s,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(VideoError::io(program, e)),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let log = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        if !status.success() {
            return Err(VideoError::Failed {
                program: name,
                status: status.to_string(),
                log_tail: log_tail(&log),
            });
        }
        Ok(Output { stdout, log })
    }
}

pub(crate) fn log_tail(log: &str) -> String {
    let start = log.len().saturating_sub(LOG_TAIL_BYTES);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(log.len());
    log[start..].trim().to_string()
}
