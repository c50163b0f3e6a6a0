//! The example jobs of `examples/compute`, built from their Rust source for wasm32-wasip1 and
//! for the host, give the same answers in the sandbox as natively, with inputs and outputs
//! through `/input` and `/output`.

use crate::runner::{JobRun, Runner};
use depin_protocol::compute::ExitKind;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The example jobs, built once per test binary.
fn built(native: bool) -> Vec<PathBuf> {
    static WASM: OnceLock<Vec<PathBuf>> = OnceLock::new();
    static NATIVE: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let cell = if native { &NATIVE } else { &WASM };
    cell.get_or_init(|| crate::examples::build(native).unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

fn example(name: &str, native: bool) -> PathBuf {
    built(native)
        .into_iter()
        .find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy() == name))
        .expect("example built")
}

fn input_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("a.txt"),
        "the quick brown fox\njumps over the lazy dog\n",
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("sub/big.bin"), big).expect("write");
    std::fs::write(dir.path().join("sub/c.txt"), "The end. the END\n").expect("write");
    dir
}

#[test]
fn the_example_jobs_give_native_answers_in_the_sandbox() {
    let runner = Runner::new().expect("engine");
    let input = input_dir();
    for name in ["digest", "wordcount"] {
        let module = std::fs::read(example(name, false)).expect("module");
        let sandboxed = || {
            runner
                .run(&JobRun {
                    module: &module,
                    input_dir: Some(input.path()),
                    stdin: b"",
                    args: &[],
                    env: &[],
                    seed: [0; 32],
                    max_fuel: 50_000_000_000,
                    max_memory_bytes: 256 << 20,
                    deadline: None,
                    stop: None,
                })
                .expect("run")
        };
        let run = sandboxed();
        assert_eq!(
            run.outcome.exit,
            ExitKind::Exited(0),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let out = tempfile::tempdir().expect("tmp");
        let native = Command::new(example(name, true))
            .arg(input.path())
            .arg(out.path())
            .output()
            .expect("native run");
        assert!(native.status.success());
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&native.stdout),
            "{name}: sandbox and native agree"
        );
        if name == "wordcount" {
            let report = String::from_utf8_lossy(&run.stdout).into_owned();
            assert!(
                report.contains(" words ") && report.contains(" bytes\n"),
                "{report}"
            );
            let counts = run
                .files
                .iter()
                .find(|(path, _)| path == "counts.txt")
                .expect("an output file");
            assert_eq!(counts.1, run.stdout);
        }
        // A replica running it again commits to the same outcome.
        let again = sandboxed();
        assert_eq!(again.outcome, run.outcome);
    }
}
