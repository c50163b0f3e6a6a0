//! Compute overhead: the digest example job (SHA-256 of every input file) run natively
//! (built for the host), in the sandbox (wasmtime with fuel metering, compile included), and
//! through the whole network: `depin compute submit --wait` with 3 replicas on a loopback
//! devnet (escrow, assignment, transfer of module and input to each replica, runs,
//! commit-reveal, settlement). Prints a table of medians.
//! Run: `cargo bench -p depin-cli --bench compute`.
//! Environment: BENCH_MIB (input size, default 64), BENCH_BLOCK_MS (devnet block interval,
//! default 200), BENCH_RUNS (default 3).

use depin_compute::examples;
use depin_compute::runner::{JobRun, Runner};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Instant;

mod common;

use common::{depin_json, env_u64, start_devnet};

const BIN: &str = env!("CARGO_BIN_EXE_depin");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn depin(rpc: &str, args: &[&str]) -> Value {
    depin_json(BIN, rpc, args)
}

fn main() {
    let mib = env_u64("BENCH_MIB", 64);
    let block_ms = env_u64("BENCH_BLOCK_MS", 200);
    let runs = env_u64("BENCH_RUNS", 3).max(1) as usize;
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(input.join("data.bin"), &bytes).expect("write input");
    let pick = |paths: Vec<std::path::PathBuf>| {
        paths
            .into_iter()
            .find(|p| p.file_stem().is_some_and(|s| s == "digest"))
            .expect("digest example")
    };
    let wasm = pick(examples::build(false).expect("wasm examples"));
    let native = pick(examples::build(true).expect("native examples"));

    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let native_s = median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                let status = Command::new(&native)
                    .arg(&input)
                    .arg(&out)
                    .stdout(Stdio::null())
                    .status()
                    .expect("native run");
                assert!(status.success());
                started.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let module = std::fs::read(&wasm).expect("module");
    let runner = Runner::new().expect("engine");
    let sandbox_s = median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                runner
                    .run(&JobRun {
                        module: &module,
                        input_dir: Some(&input),
                        stdin: b"",
                        args: &[],
                        env: &[],
                        seed: [0; 32],
                        max_fuel: 1_000_000_000_000,
                        max_memory_bytes: 1 << 30,
                        deadline: None,
                        stop: None,
                    })
                    .expect("sandbox run");
                started.elapsed().as_secs_f64()
            })
            .collect(),
    );

    let (_devnet, state) = start_devnet(BIN, &tmp.path().join("net"), 3, block_ms);
    let rpc = state["nodes"][0]["api_url"]
        .as_str()
        .expect("api")
        .to_string();
    let key = state["user_key_file"].as_str().expect("key").to_string();
    depin(&rpc, &["dc", "buy", "--amount", "1000", "--key", &key]);
    let (wasm_s, input_s) = (
        wasm.to_string_lossy().into_owned(),
        input.to_string_lossy().into_owned(),
    );
    let mut totals = Vec::new();
    let mut transfers = Vec::new();
    let mut settles = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let done = depin(
            &rpc,
            &[
                "compute",
                "submit",
                &wasm_s,
                "--input",
                &input_s,
                "--replicas",
                "3",
                "--max-fuel",
                "1000000000000",
                "--wait",
                "--key",
                &key,
            ],
        );
        totals.push(started.elapsed().as_secs_f64());
        assert_eq!(done["status"], "Done", "{done}");
        let ms = |k: &str| done["timings_ms"][k].as_f64().unwrap_or(0.0) / 1000.0;
        transfers.push(ms("transfer"));
        settles.push(ms("submit") + ms("settle"));
    }
    let (total, transfer, settle) = (median(totals), median(transfers), median(settles));
    let overhead = total - transfer - sandbox_s;

    println!(
        "compute: digest (SHA-256) of a {mib} MiB input, medians of {runs} runs, this machine; network: 3 replicas and a validator on loopback, {block_ms} ms blocks"
    );
    println!("| path | s | × native |");
    println!("|---|---:|---:|");
    println!("| native | {native_s:.3} | 1.00 |");
    println!(
        "| sandbox (wasmtime, fuel; compile included) | {sandbox_s:.3} | {:.2} |",
        sandbox_s / native_s
    );
    println!(
        "| network: submit → settled, 3 replicas | {total:.3} | {:.2} |",
        total / native_s
    );
    println!("| of which: transfer to 3 replicas | {transfer:.3} | |");
    println!("| of which: escrow + runs + commit-reveal + settle | {settle:.3} | |");
    println!("| network overhead (total − transfer − one sandbox run) | {overhead:.3} | |");
}
