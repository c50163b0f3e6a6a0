//! Runs one job: a WASI preview 1 module with its arguments, environment and stdin, a
//! read-only `/input` and a writable `/output`, under deterministic fuel metering and a
//! memory cap. No network, a clock fixed at one instant, and randomness from the job's seed,
//! so honest replicas produce the same outcome, fuel included.

use depin_protocol::compute::{ExitKind, JobOutcome};
use depin_types::Hash;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Most bytes kept of stdout and of stderr; a guest writing more gets a write error.
pub const MAX_STREAM_BYTES: usize = 16 << 20;

/// Most bytes of output files collected.
pub const MAX_OUTPUT_BYTES: u64 = 256 << 20;

/// The instant the guest's clocks show: 2026-01-01T00:00:00Z.
const FIXED_TIME: Duration = Duration::from_secs(1_767_225_600);

#[derive(Debug, Error)]
pub enum RunError {
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("the job's outputs exceed {MAX_OUTPUT_BYTES} bytes")]
    OutputTooLarge,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct JobRun<'a> {
    pub module: &'a [u8],
    pub input_dir: Option<&'a Path>,
    pub stdin: &'a [u8],
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub seed: [u8; 32],
    pub max_fuel: u64,
    pub max_memory_bytes: u64,
    /// Stop the run once this instant has passed: it ends as [`ExitKind::DeadlineExceeded`].
    pub deadline: Option<std::time::Instant>,
    /// Stop the run once this is set (the caller's own view of its deadline, e.g. the chain's
    /// height): it ends as [`ExitKind::DeadlineExceeded`] too.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// What a run produced; `outcome` is what a replica commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    pub outcome: JobOutcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Files the guest left under `/output`, by path relative to it, sorted.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The engine and the compiled-module cache shared by every run (clones share both).
#[derive(Clone)]
pub struct Runner {
    engine: Engine,
    compiled: Arc<Mutex<CompiledModules>>,
}

/// Modules kept compiled: a provider sees the same program again with new inputs, and
/// compiling costs about as much as a short run (~0.2 s for a Rust module with std).
const CACHED_MODULES: usize = 16;

/// Fuel between the run's checks of its wall-clock deadline (a few milliseconds of guest
/// code). Fuel is metered anyway, so the check costs nothing in the guest's loops.
const DEADLINE_CHECK_FUEL: u64 = 10_000_000;

/// Compiled modules by the BLAKE3 of their bytes, least recently used evicted first.
#[derive(Default)]
struct CompiledModules {
    entries: Vec<(Hash, Module, u64)>,
    uses: u64,
}

impl CompiledModules {
    fn get(&mut self, id: &Hash) -> Option<Module> {
        self.uses += 1;
        let uses = self.uses;
        self.entries
            .iter_mut()
            .find(|(h, _, _)| h == id)
            .map(|(_, module, used)| {
                *used = uses;
                module.clone()
            })
    }

    fn insert(&mut self, id: Hash, module: Module) {
        if self.entries.len() >= CACHED_MODULES
            && let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].2)
        {
            self.entries.swap_remove(oldest);
        }
        self.uses += 1;
        self.entries.push((id, module, self.uses));
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runner")
    }
}

/// The guest's state: its WASI context and the memory cap.
struct Guest {
    wasi: WasiP1Ctx,
    limits: MemoryCap,
}

/// Refuses memory beyond the cap and remembers that it did, so the run ends as out of memory
/// rather than as a generic trap.
struct MemoryCap {
    max_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        FIXED_TIME
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The guest's randomness: BLAKE3's output stream keyed by the job's seed. A fixed
/// algorithm, so replicas built from different versions of a RNG crate still agree.
struct SeededRandom(blake3::OutputReader);

impl SeededRandom {
    fn new(seed: &[u8; 32], purpose: &str) -> SeededRandom {
        let mut hasher = blake3::Hasher::new_derive_key("depin compute guest randomness");
        hasher.update(seed);
        hasher.update(purpose.as_bytes());
        SeededRandom(hasher.finalize_xof())
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

fn sandbox(e: impl std::fmt::Display) -> RunError {
    RunError::Sandbox(e.to_string())
}

impl Runner {
    pub fn new() -> Result<Runner, RunError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        // Deterministic across hosts: canonical NaNs and no relaxed SIMD (threads are not
        // compiled in).
        config.cranelift_nan_canonicalization(true);
        config.wasm_relaxed_simd(false);
        // No epoch interruption: runs are futures that yield every DEADLINE_CHECK_FUEL, so
        // the wall-clock deadline costs no extra load and compare in every guest loop.
        let engine = Engine::new(&config).map_err(sandbox)?;
        Ok(Runner {
            engine,
            compiled: Arc::default(),
        })
    }

    /// The module compiled, from the cache when these exact bytes were compiled before.
    fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Module> {
        let id = Hash(*blake3::hash(bytes).as_bytes());
        let cached = self.cache().get(&id);
        if let Some(module) = cached {
            return Ok(module);
        }
        let module = Module::new(&self.engine, bytes)?;
        self.cache().insert(id, module.clone());
        Ok(module)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, CompiledModules> {
        // A panic elsewhere cannot leave the cache half-updated in a harmful way.
        self.compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a job to its end: exit, fuel exhausted, memory refused or trap are all
    /// outcomes. `Err` is for the host failing (temporary directory, disk).
    pub fn run(&self, job: &JobRun<'_>) -> Result<RunOutput, RunError> {
        let output_dir = tempfile::tempdir()?;
        let stdout = MemoryOutputPipe::new(MAX_STREAM_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_STREAM_BYTES);
        let invalid = |stderr: String| RunOutput {
            outcome: JobOutcome {
                exit: ExitKind::InvalidModule,
                fuel_used: 0,
                // The reason is for people; wasmtime's wording is not part of the result.
                outputs: outputs_hash(ExitKind::InvalidModule, &[], &[], &[]),
            },
            stdout: Vec::new(),
            stderr: stderr.into_bytes(),
            files: Vec::new(),
        };
        let module = match self.compile(job.module) {
            Ok(m) => m,
            Err(e) => return Ok(invalid(format!("not a valid WebAssembly module: {e}"))),
        };
        let mut builder = WasiCtxBuilder::new();
        let mut argv = vec!["job".to_string()];
        argv.extend(job.args.iter().cloned());
        builder
            .args(&argv)
            .envs(job.env)
            .stdin(MemoryInputPipe::new(job.stdin.to_vec()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(SeededRandom::new(&job.seed, "secure"))
            .insecure_random(SeededRandom::new(&job.seed, "insecure"))
            .insecure_random_seed(u128::from_le_bytes(
                job.seed[..16].try_into().unwrap_or_default(),
            ))
            .allow_blocking_current_thread(true);
        if let Some(input) = job.input_dir {
            builder
                .preopened_dir(input, "/input", FsPerms::ReadOnly)
                .map_err(sandbox)?;
        }
        builder
            .preopened_dir(output_dir.path(), "/output", FsPerms::ReadWrite)
            .map_err(sandbox)?;
        let guest = Guest {
            wasi: builder.build_p1(),
            limits: MemoryCap {
                max_bytes: usize::try_from(job.max_memory_bytes).unwrap_or(usize::MAX),
                refused: false,
            },
        };
        let mut store = Store::new(&self.engine, guest);
        store.limiter(|g| &mut g.limits);
        store.set_fuel(job.max_fuel).map_err(sandbox)?;
        store
            .fuel_async_yield_interval(Some(DEADLINE_CHECK_FUEL))
            .map_err(sandbox)?;
        let mut linker: Linker<Guest> = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |g| &mut g.wasi).map_err(sandbox)?;
        let ended =
            wasmtime_wasi::runtime::in_tokio(until_deadline(job.deadline, job.stop, async {
                let instance = linker.instantiate_async(&mut store, &module).await;
                match instance {
                    Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                        Ok(start) => Ok(start.call_async(&mut store, ()).await),
                        Err(_) => Err(Ended::NoStart),
                    },
                    Err(e) => Err(Ended::NotInstantiated(e)),
                }
            }));
        let (exit, note) = match ended {
            None => (
                ExitKind::DeadlineExceeded,
                Some("stopped at the wall-clock deadline".into()),
            ),
            Some(Err(Ended::NoStart)) => {
                return Ok(invalid(
                    "the module has no `_start` function (not a WASI command)".into(),
                ));
            }
            Some(Err(Ended::NotInstantiated(e))) if store.data().limits.refused => {
                (ExitKind::OutOfMemory, Some(e.to_string()))
            }
            Some(Err(Ended::NotInstantiated(e))) => {
                return Ok(invalid(format!("cannot instantiate the module: {e}")));
            }
            Some(Ok(Ok(()))) => (ExitKind::Exited(0), None),
            Some(Ok(Err(e))) => {
                if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    (ExitKind::Exited(exit.0), None)
                } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) {
                    (ExitKind::OutOfFuel, Some(e.to_string()))
                } else if store.data().limits.refused {
                    (ExitKind::OutOfMemory, Some(e.to_string()))
                } else {
                    (ExitKind::Trapped, Some(format!("{e:#}")))
                }
            }
        };
        self.finish(&store, job, exit, &stdout, &stderr, &output_dir, note)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        store: &Store<Guest>,
        job: &JobRun<'_>,
        exit: ExitKind,
        stdout: &MemoryOutputPipe,
        stderr: &MemoryOutputPipe,
        output_dir: &tempfile::TempDir,
        note: Option<String>,
    ) -> Result<RunOutput, RunError> {
        // A run stopped at its deadline got as far as its machine allowed: that is not
        // something replicas can agree on, so it counts no fuel (and `outputs_hash` takes the
        // kind alone; what it printed so far is kept for the consumer).
        let fuel_used = match exit {
            ExitKind::DeadlineExceeded => 0,
            _ => job.max_fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
        };
        let stdout = stdout.contents().to_vec();
        let mut stderr = stderr.contents().to_vec();
        if let Some(note) = note {
            // How the run ended, after the guest's own words. Only the kind goes into the
            // result: wasmtime's message (backtraces, offsets) may differ between versions.
            tracing::debug!(%note, "job ended abnormally");
            stderr.extend_from_slice(format!("\n[depin: {}]\n", exit_words(exit)).as_bytes());
        }
        let mut files = Vec::new();
        let mut total = 0u64;
        collect_files(output_dir.path(), output_dir.path(), &mut files, &mut total)?;
        files.sort();
        Ok(RunOutput {
            outcome: JobOutcome {
                exit,
                fuel_used,
                outputs: outputs_hash(exit, &stdout, &stderr, &files),
            },
            stdout,
            stderr,
            files,
        })
    }
}

/// A run that did not reach the guest's code.
enum Ended {
    NotInstantiated(wasmtime::Error),
    NoStart,
}

/// Drives `run` until it finishes (`Some`), or stops it (dropping it, and with it the
/// guest) once `deadline` has passed or `stop` is set (`None`). The guest yields every
/// [`DEADLINE_CHECK_FUEL`], so it is polled again at least that often.
async fn until_deadline<T>(
    deadline: Option<std::time::Instant>,
    stop: Option<&std::sync::atomic::AtomicBool>,
    run: impl Future<Output = T>,
) -> Option<T> {
    let mut run = std::pin::pin!(run);
    std::future::poll_fn(|cx| {
        let stopped = stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        if stopped || deadline.is_some_and(|at| std::time::Instant::now() >= at) {
            return std::task::Poll::Ready(None);
        }
        run.as_mut().poll(cx).map(Some)
    })
    .await
}

fn exit_words(exit: ExitKind) -> &'static str {
    match exit {
        ExitKind::Exited(_) => "exited",
        ExitKind::OutOfFuel => "out of fuel",
        ExitKind::OutOfMemory => "out of memory",
        ExitKind::Trapped => "trapped",
        ExitKind::InvalidModule => "invalid module",
        ExitKind::DeadlineExceeded => "deadline exceeded",
        ExitKind::Unfetchable => "unfetchable",
        ExitKind::Unrunnable => "unrunnable input",
        ExitKind::OutputTooLarge => "output too large",
    }
}

/// The outcome of a job that could not run (or ran to its deadline): its kind alone, no fuel,
/// so every replica that saw the same fault commits to the same outcome.
pub fn fault_outcome(exit: ExitKind) -> JobOutcome {
    JobOutcome {
        exit,
        fuel_used: 0,
        outputs: outputs_hash(exit, &[], &[], &[]),
    }
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), RunError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path: PathBuf = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out, total)?;
        } else if kind.is_file() {
            *total += entry.metadata()?.len();
            if *total > MAX_OUTPUT_BYTES {
                return Err(RunError::OutputTooLarge);
            }
            let name = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, std::fs::read(&path)?));
        }
    }
    Ok(())
}

/// The digest of everything a run produced besides its fuel: what replicas must agree on.
/// A job that could not run (a module that did not load, bytes nobody had, an input that does
/// not unpack, output over the limit) or a run stopped at its deadline is its kind alone:
/// what it printed (a loader's message, a partial run) is for people, not for agreement.
pub fn outputs_hash(
    exit: ExitKind,
    stdout: &[u8],
    stderr: &[u8],
    files: &[(String, Vec<u8>)],
) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key("depin compute outputs");
    hasher.update(&depin_types::encode(&exit));
    if exit.is_job_fault() {
        return Hash(*hasher.finalize().as_bytes());
    }
    for part in [stdout, stderr] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(&(files.len() as u64).to_le_bytes());
    for (name, bytes) in files {
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    Hash(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: &str = r#"(import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))"#;

    fn run(module: &str, max_fuel: u64, seed: u8) -> RunOutput {
        let runner = Runner::new().expect("engine");
        runner
            .run(&JobRun {
                module: module.as_bytes(),
                input_dir: None,
                stdin: b"",
                args: &[],
                env: &[],
                seed: [seed; 32],
                max_fuel,
                max_memory_bytes: 2 << 20,
                deadline: None,
                stop: None,
            })
            .expect("run")
    }

    #[test]
    fn a_run_past_its_deadline_ends_as_deadline_exceeded() {
        let runner = Runner::new().expect("engine");
        let endless = r#"(module (func (export "_start") (loop (br 0))))"#;
        let started = std::time::Instant::now();
        let result = runner.run(&JobRun {
            module: endless.as_bytes(),
            input_dir: None,
            stdin: b"",
            args: &[],
            env: &[],
            seed: [0; 32],
            max_fuel: u64::MAX / 2,
            max_memory_bytes: 2 << 20,
            deadline: Some(started + Duration::from_millis(300)),
            stop: None,
        });
        let ended = result.expect("an outcome");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(ended.outcome.exit, ExitKind::DeadlineExceeded);
        assert_eq!(
            ended.outcome.fuel_used, 0,
            "how far it got is not the result"
        );
        assert_eq!(
            ended.outcome.outputs,
            outputs_hash(ExitKind::DeadlineExceeded, b"", b"", &[])
        );
        assert!(String::from_utf8_lossy(&ended.stderr).contains("deadline exceeded"));

        // The caller's own stop (a provider watching the chain's height) ends it alike.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let started = std::time::Instant::now();
        let stopped = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            runner.run(&JobRun {
                module: endless.as_bytes(),
                input_dir: None,
                stdin: b"",
                args: &[],
                env: &[],
                seed: [0; 32],
                max_fuel: u64::MAX / 2,
                max_memory_bytes: 2 << 20,
                deadline: None,
                stop: Some(&stop),
            })
        });
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(stopped.expect("an outcome").outcome, ended.outcome);
    }

    #[test]
    fn modules_are_compiled_once_and_the_least_recently_used_evicted() {
        let runner = Runner::new().expect("engine");
        let module =
            |n: usize| format!(r#"(module (func (export "_start") (drop (i32.const {n}))))"#);
        let job = |text: &str| {
            let run = JobRun {
                module: text.as_bytes(),
                input_dir: None,
                stdin: b"",
                args: &[],
                env: &[],
                seed: [0; 32],
                max_fuel: 1_000,
                max_memory_bytes: 2 << 20,
                deadline: None,
                stop: None,
            };
            runner.run(&run).expect("run").outcome
        };
        let first = job(&module(0));
        let clone = runner.clone();
        assert_eq!(clone.cache().entries.len(), 1, "clones share the cache");
        assert_eq!(job(&module(0)), first, "the cached module runs the same");
        assert_eq!(runner.cache().entries.len(), 1);
        for n in 1..CACHED_MODULES {
            job(&module(n));
        }
        job(&module(0));
        job(&module(CACHED_MODULES));
        let cached: Vec<Hash> = runner.cache().entries.iter().map(|e| e.0).collect();
        assert_eq!(cached.len(), CACHED_MODULES);
        let id = |n: usize| Hash(*blake3::hash(module(n).as_bytes()).as_bytes());
        assert!(cached.contains(&id(0)), "used again, so kept");
        assert!(!cached.contains(&id(1)), "least recently used, so evicted");
        assert_eq!(job("not wasm").exit, ExitKind::InvalidModule);
        assert_eq!(
            runner.cache().entries.len(),
            CACHED_MODULES,
            "failures are not kept"
        );
    }

    #[test]
    fn a_job_runs_deterministically_and_reports_its_fuel() {
        let hello = format!(
            r#"(module {WRITE}
                (memory (export "memory") 1)
                (data (i32.const 16) "hello")
                (func (export "_start")
                    (i32.store (i32.const 0) (i32.const 16))
                    (i32.store (i32.const 4) (i32.const 5))
                    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
        );
        let first = run(&hello, 1_000_000, 1);
        assert_eq!(first.outcome.exit, ExitKind::Exited(0));
        assert_eq!(first.stdout, b"hello");
        assert!(first.outcome.fuel_used > 0 && first.outcome.fuel_used < 1_000_000);
        assert_eq!(run(&hello, 1_000_000, 1), first, "same job, same outcome");
        assert_eq!(
            run(&hello, 5_000_000, 1).outcome,
            first.outcome,
            "fuel used, not fuel given"
        );
    }

    #[test]
    fn randomness_comes_from_the_seed_and_exit_codes_are_results() {
        let random = format!(
            r#"(module {WRITE}
                (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "_start")
                    (drop (call $random (i32.const 16) (i32.const 8)))
                    (i32.store (i32.const 0) (i32.const 16))
                    (i32.store (i32.const 4) (i32.const 8))
                    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
                    (call $exit (i32.const 3))))"#
        );
        let a = run(&random, 1_000_000, 1);
        assert_eq!(a.outcome.exit, ExitKind::Exited(3));
        assert_eq!(a.stdout.len(), 8);
        assert_eq!(run(&random, 1_000_000, 1).stdout, a.stdout);
        assert_ne!(run(&random, 1_000_000, 2).stdout, a.stdout, "another seed");
    }

    #[test]
    fn loops_bombs_junk_and_missing_imports_end_as_results() {
        let spin = r#"(module (memory (export "memory") 1)
            (func (export "_start") (loop $l (br $l))))"#;
        let spun = run(spin, 100_000, 0);
        assert_eq!(spun.outcome.exit, ExitKind::OutOfFuel);
        assert_eq!(spun.outcome.fuel_used, 100_000);

        let bomb = r#"(module (memory (export "memory") 1)
            (func (export "_start")
                (loop $l
                    (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
                unreachable))"#;
        assert_eq!(run(bomb, 10_000_000, 0).outcome.exit, ExitKind::OutOfMemory);

        let trap = r#"(module (memory (export "memory") 1)
            (func (export "_start") unreachable))"#;
        assert_eq!(run(trap, 1_000, 0).outcome.exit, ExitKind::Trapped);

        let junk = run("this is not wasm", 1_000, 0);
        assert_eq!(junk.outcome.exit, ExitKind::InvalidModule);
        assert_eq!(junk.outcome.fuel_used, 0);
        assert!(String::from_utf8_lossy(&junk.stderr).contains("not a valid WebAssembly"));

        let foreign = r#"(module
            (import "env" "launch_missiles" (func))
            (memory (export "memory") 1)
            (func (export "_start")))"#;
        let refused = run(foreign, 1_000, 0);
        assert_eq!(refused.outcome.exit, ExitKind::InvalidModule);
        assert!(String::from_utf8_lossy(&refused.stderr).contains("launch_missiles"));

        let library = r#"(module (memory (export "memory") 1) (func (export "f")))"#;
        assert_eq!(run(library, 1_000, 0).outcome.exit, ExitKind::InvalidModule);
    }
}
