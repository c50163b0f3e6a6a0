//! Sandbox overhead: the example jobs run natively (built for the host) and under the
//! sandbox (wasmtime, fuel metering on), on the same input, with the module compiled as part
//! of the run and compiled beforehand. Prints a table of medians.
//! Run: `cargo bench -p depin-compute --bench compute`. BENCH_MIB sets the input (default 64),
//! BENCH_JOBS the jobs (default all).

use depin_compute::examples;
use depin_compute::runner::{JobRun, Runner};
use std::process::Command;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mib: usize = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let input = tempfile::tempdir().expect("tmp");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let text: Vec<u8> = (0..mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Letters and spaces, so wordcount has words to count.
            b"abcdefgh ijklmnop qrstuvwxyz\n"[(state % 29) as usize]
        })
        .collect();
    std::fs::write(input.path().join("input.txt"), &text).expect("write input");
    let wasm = examples::build(false).expect("wasm examples");
    let native = examples::build(true).expect("native examples");
    // BENCH_JOBS picks jobs by name (e.g. "digest"); all by default.
    let only = std::env::var("BENCH_JOBS").unwrap_or_default();
    println!("compute: {mib} MiB input, medians of 3 runs, this machine");
    println!(
        "| job | native s | sandbox, compile + run s | ratio | sandbox, compiled module s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (module_path, native_path) in wasm.iter().zip(&native) {
        let name = native_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !only.is_empty() && !only.split(',').any(|j| j == name) {
            continue;
        }
        let out = tempfile::tempdir().expect("tmp");
        let native_secs = median(
            (0..3)
                .map(|_| {
                    let started = Instant::now();
                    let status = Command::new(native_path)
                        .arg(input.path())
                        .arg(out.path())
                        .stdout(std::process::Stdio::null())
                        .status()
                        .expect("native run");
                    assert!(status.success());
                    started.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let module = std::fs::read(module_path).expect("module");
        let job = JobRun {
            module: &module,
            input_dir: Some(input.path()),
            stdin: b"",
            args: &[],
            env: &[],
            seed: [0; 32],
            max_fuel: u64::MAX / 2,
            max_memory_bytes: 4 << 30,
            deadline: None,
            stop: None,
        };
        let mut fuel = 0;
        let mut timed = |runner: &Runner| {
            let started = Instant::now();
            let run = runner.run(&job).expect("sandbox run");
            fuel = run.outcome.fuel_used;
            started.elapsed().as_secs_f64()
        };
        // Cold: a fresh runner each time, so the module is compiled as part of the run.
        let cold_secs = median(
            (0..3)
                .map(|_| timed(&Runner::new().expect("engine")))
                .collect(),
        );
        // Warm: a provider that has run this module before keeps it compiled.
        let runner = Runner::new().expect("engine");
        timed(&runner);
        let warm_secs = median((0..3).map(|_| timed(&runner)).collect());
        println!(
            "| {name} ({fuel} fuel) | {native_secs:.3} | {cold_secs:.3} | {:.2}x | {warm_secs:.3} | {:.2}x |",
            cold_secs / native_secs,
            warm_secs / native_secs
        );
    }
}
