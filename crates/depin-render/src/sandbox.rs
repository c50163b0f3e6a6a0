//! One Blender run in a sandbox: bubblewrap with every namespace unshared (so no network),
//! the system read-only, the job's bundle read-only, one writable output directory, an empty
//! home and temp dir, and `prlimit` caps on address space and file size; a wall-clock limit
//! kills the whole process group.

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::blender::RenderError;

/// Where the sandbox sees the job's bundle, depin's scripts and the output directory.
pub(crate) const BUNDLE_DIR: &str = "/job/in";
pub(crate) const TOOL_DIR: &str = "/job/tool";
pub(crate) const OUT_DIR: &str = "/job/out";

/// What one run may use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub memory_bytes: u64,
    pub output_bytes: u64,
    pub wall_clock: Duration,
}

pub(crate) struct Mounts<'a> {
    pub blender: &'a Path,
    pub bundle: &'a Path,
    pub tool: &'a Path,
    pub out: &'a Path,
    pub gpu: bool,
}

pub(crate) struct Outcome {
    pub status: ExitStatus,
    /// The end of Blender's output, for error messages.
    pub log_tail: String,
}

const LOG_TAIL_BYTES: u64 = 4096;

/// The absolute path of `program`, looked up on `PATH` when it has no slash.
pub(crate) fn resolve_program(program: &Path) -> Result<PathBuf, RenderError> {
    let found = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
    };
    found
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| RenderError::NotInstalled(program.display().to_string()))
}

/// Called with (samples done, samples in all) as Blender reports them.
pub(crate) type OnSamples<'a> = &'a (dyn Fn(u32, u32) + Sync);

/// The scheduling niceness Blender runs at (0 is the default, 19 the lowest priority).
const RENDER_NICENESS: u8 = 10;

pub(crate) fn run(
    mounts: &Mounts<'_>,
    blender_args: &[OsString],
    limits: Limits,
    log_path: &Path,
    on_samples: Option<OnSamples<'_>>,
) -> Result<Outcome, RenderError> {
    let bwrap = resolve_program(Path::new("bwrap"))?;
    let prlimit = resolve_program(Path::new("prlimit"))?;
    let mut args: Vec<OsString> = Vec::new();
    push(
        &mut args,
        &[
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/job/home",
            "--clearenv",
            "--setenv",
            "HOME",
            "/job/home",
            "--setenv",
            "TMPDIR",
            "/tmp",
            "--setenv",
            "PATH",
            "/usr/bin",
            "--chdir",
            "/job",
        ],
    );
    // Only what Blender's libraries read from /etc: not the host's configuration and secrets.
    for etc in ["/etc/fonts", "/etc/ld.so.cache", "/etc/alternatives"] {
        if Path::new(etc).exists() {
            push(&mut args, &["--ro-bind", etc, etc]);
        }
    }
    // An official Blender build lives outside /usr with its libraries beside it.
    if let Some(dir) = mounts.blender.parent()
        && !dir.starts_with("/usr")
    {
        args.extend(["--ro-bind".into(), dir.into(), dir.into()]);
    }
    if mounts.gpu {
        for dev in gpu_devices() {
            args.extend(["--dev-bind".into(), dev.clone().into(), dev.into()]);
        }
    }
    args.extend(["--ro-bind".into(), mounts.bundle.into(), BUNDLE_DIR.into()]);
    args.extend(["--ro-bind".into(), mounts.tool.into(), TOOL_DIR.into()]);
    args.extend(["--bind".into(), mounts.out.into(), OUT_DIR.into()]);
    // The sandbox's own root (where /etc and /job were made) becomes read-only too.
    push(&mut args, &["--remount-ro", "/"]);
    // Blender's C stdio buffers a file fully; line buffering lets the node follow the
    // samples while it renders.
    if let Ok(stdbuf) = resolve_program(Path::new("stdbuf"))
        && stdbuf.starts_with("/usr")
    {
        args.extend([stdbuf.into(), "-oL".into(), "-eL".into()]);
    }
    args.push(mounts.blender.into());
    args.extend(blender_args.iter().cloned());

    let log = std::fs::File::create(log_path).map_err(|e| RenderError::io(log_path, e))?;
    let log_err = log.try_clone().map_err(|e| RenderError::io(log_path, e))?;
    let mut command = Command::new(&prlimit);
    command
        .arg(format!("--as={}", limits.memory_bytes))
        .arg(format!("--fsize={}", limits.output_bytes))
        .arg("--");
    // A render must not starve the node beside it: its blocks, votes and proofs come first.
    if let Ok(nice) = resolve_program(Path::new("nice")) {
        command.arg(nice).arg(format!("-n{RENDER_NICENESS}"));
    }
    let mut child = command
        .arg(&bwrap)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| RenderError::Spawn {
            program: bwrap.display().to_string(),
            source: e,
        })?;
    let deadline = Instant::now() + limits.wall_clock;
    let mut follower = on_samples.and_then(|f| LogFollower::open(log_path).map(|l| (l, f)));
    let status = loop {
        if let Some((log, report)) = follower.as_mut()
            && let Some((done, total)) = log.last_sample()
        {
            report(done, total);
        }
        match child.try_wait().map_err(|e| RenderError::io(log_path, e))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(RenderError::TimedOut {
                    limit_s: limits.wall_clock.as_secs(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Ok(Outcome {
        status,
        log_tail: read_tail(log_path),
    })
}

/// Reads what Blender appended to its log since the last call, for its `Sample N/M` lines.
struct LogFollower {
    file: std::fs::File,
    partial: String,
}

impl LogFollower {
    fn open(path: &Path) -> Option<Self> {
        std::fs::File::open(path).ok().map(|file| LogFollower {
            file,
            partial: String::new(),
        })
    }

    fn last_sample(&mut self) -> Option<(u32, u32)> {
        let mut buf = Vec::new();
        let _ = (&mut self.file).take(1 << 20).read_to_end(&mut buf);
        if buf.is_empty() {
            return None;
        }
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let cut = self.partial.rfind('\n').map_or(0, |i| i + 1);
        let complete: String = self.partial.drain(..cut).collect();
        complete.lines().rev().find_map(parse_sample)
    }
}

/// `… | Sample 12/64` in a Cycles status line.
fn parse_sample(line: &str) -> Option<(u32, u32)> {
    let rest = &line[line.rfind("Sample ")? + "Sample ".len()..];
    let (done, total) = rest.split_once('/')?;
    let total: String = total.chars().take_while(char::is_ascii_digit).collect();
    Some((done.trim().parse().ok()?, total.parse().ok()?))
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

fn kill_group(pid: u32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn gpu_devices() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("nvidia") || name == "dri" || name == "kfd" {
                out.push(format!("/dev/{name}"));
            }
        }
    }
    out.sort();
    out
}

fn read_tail(path: &Path) -> String {
    use std::io::Seek as _;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut buf = Vec::new();
    let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cycles_status_lines_give_their_samples() {
        let line = "Fra:1 Mem:9.50M (Peak 9.50M) | Time:00:00.06 | Mem:0.10M, Peak:0.10M | Scene, ViewLayer | Sample 12/64";
        assert_eq!(super::parse_sample(line), Some((12, 64)));
        assert_eq!(super::parse_sample("Fra:1 | Updating Scene"), None);
        assert_eq!(super::parse_sample("Sample x/64"), None);
    }
}
