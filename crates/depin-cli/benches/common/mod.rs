//! Helpers shared by the benchmarks that run a devnet.

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `depin devnet`; stopped with SIGTERM when dropped.
pub struct Devnet(pub Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// A base port whose node ports (base + 10 i + 0..3) are all free.
pub fn free_base_port(nodes: u16) -> u16 {
    loop {
        let base = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(20_000);
        if u32::from(base) + 10 * u32::from(nodes) + 3 > 65_535 {
            continue;
        }
        if (0..nodes)
            .all(|i| (0..3).all(|o| TcpListener::bind(("127.0.0.1", base + 10 * i + o)).is_ok()))
        {
            return base;
        }
    }
}

/// Starts `depin devnet` with `providers` providers in `dir` and waits until every node runs
/// and has had a few seconds to connect; returns it with its devnet.json.
#[allow(dead_code)] // the finality bench starts its own validators
pub fn start_devnet(bin: &str, dir: &Path, providers: u16, block_ms: u64) -> (Devnet, Value) {
    let base = free_base_port(providers + 1);
    let child = Command::new(bin)
        .args([
            "devnet",
            "--dir",
            &dir.to_string_lossy(),
            "--providers",
            &providers.to_string(),
            "--base-port",
            &base.to_string(),
            "--block-interval-ms",
            &block_ms.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("devnet");
    let devnet = Devnet(child);
    let state_path = dir.join("devnet.json");
    let deadline = Instant::now() + Duration::from_secs(180);
    let state: Value = loop {
        assert!(Instant::now() < deadline, "devnet did not start");
        if let Some(v) = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| {
                v["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().all(|n| n["pid"].as_u64().unwrap_or(0) > 0))
            })
        {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(5));
    (devnet, state)
}

/// An environment variable as a number, or `default`.
#[allow(dead_code)] // not every bench is sized from the environment
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `depin --rpc RPC --json ARGS...` (the binary at `bin`), which must succeed, parsed.
#[allow(dead_code)] // the finality bench talks to its nodes itself
pub fn depin_json(bin: &str, rpc: &str, args: &[&str]) -> Value {
    let out = Command::new(bin)
        .args(["--rpc", rpc, "--json"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run depin");
    assert!(
        out.status.success(),
        "depin {args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}
