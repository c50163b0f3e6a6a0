//! Finality latency and sustained transfers/s through the whole node: real `depin` processes
//! (a devnet) on loopback, transactions signed here and posted over HTTP, their commit seen
//! through the API. Prints a table. Run: `cargo bench -p depin-cli --bench finality`.
//! Environment: BENCH_VALIDATORS (default "1,4"), BENCH_TXS (default 200),
//! BENCH_BURST (default 640), BENCH_INTERVAL_MS (default 200).

use depin_protocol::{Action, Genesis, Transaction};
use depin_types::{Address, Amount, Hash, KeyFile, Keypair};
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_depin");

struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn free_base_port(nodes: u16) -> u16 {
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> Option<Value> {
    let mut r = agent.get(url).call().ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.body_mut().read_json().ok()
}

fn read_key(path: &Path) -> Keypair {
    let text = std::fs::read_to_string(path).expect("key file");
    let file: KeyFile = serde_json::from_str(&text).expect("key json");
    file.to_keypair().expect("key")
}

struct Net {
    _devnet: Devnet,
    _dir: tempfile::TempDir,
    apis: Vec<String>,
    genesis: Genesis,
    senders: Vec<Keypair>,
}

fn start(validators: u64, interval_ms: u64) -> Net {
    let dir = tempfile::tempdir().expect("tmp");
    let base = free_base_port(validators as u16);
    let child = Command::new(BIN)
        .args([
            "devnet",
            "--dir",
            &dir.path().join("net").to_string_lossy(),
            "--validators",
            &validators.to_string(),
            "--providers",
            "0",
            "--base-port",
            &base.to_string(),
            "--block-interval-ms",
            &interval_ms.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("devnet");
    let devnet = Devnet(child);
    let state_path = dir.path().join("net/devnet.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    let state: Value = loop {
        assert!(Instant::now() < deadline, "devnet did not start");
        if let Some(v) = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| v["nodes"][0]["pid"].as_u64().unwrap_or(0) > 0)
        {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let nodes = state["nodes"].as_array().expect("nodes");
    let apis: Vec<String> = nodes
        .iter()
        .map(|n| n["api_url"].as_str().expect("api").to_string())
        .collect();
    let agent = agent();
    let params = loop {
        if let Some(p) = get(&agent, &format!("{}/v1/params", apis[0])) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let genesis: Genesis = serde_json::from_value(params).expect("genesis");
    // The user and every node account are funded at genesis: they are the senders.
    let mut senders = vec![read_key(Path::new(
        state["user_key_file"].as_str().expect("user"),
    ))];
    senders.extend(
        nodes
            .iter()
            .map(|n| read_key(Path::new(n["key_file"].as_str().expect("key")))),
    );
    Net {
        _devnet: devnet,
        _dir: dir,
        apis,
        genesis,
        senders,
    }
}

fn transfer(genesis: &Genesis, key: &Keypair, nonce: u64, to: Address) -> (Hash, String) {
    let signed = Transaction {
        chain_id: genesis.chain_id.clone(),
        sender: key.address(),
        nonce,
        fee: Amount(100_000),
        action: Action::Transfer {
            to,
            amount: Amount(1),
        },
    }
    .sign(key);
    (signed.hash(), hex::encode(signed.to_bytes()))
}

/// Posts to one validator; gossip carries the transaction to the others' mempools.
fn submit(agent: &ureq::Agent, apis: &[String], hex_tx: &str) {
    let _ = agent
        .post(&format!("{}/v1/txs", apis[0]))
        .send_json(serde_json::json!({ "tx": hex_tx }));
}

fn committed(agent: &ureq::Agent, api: &str, hash: &Hash) -> bool {
    get(agent, &format!("{api}/v1/txs/{hash}")).is_some_and(|v| v["status"] == "committed")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let interval_ms = env_list("BENCH_INTERVAL_MS", "200")[0];
    let txs = env_list("BENCH_TXS", "100")[0] as usize;
    let burst = env_list("BENCH_BURST", "640")[0] as usize;
    println!(
        "finality: devnet processes on loopback, block interval {interval_ms} ms; latency = POST to committed (polled every 5 ms)"
    );
    println!(
        "| validators | txs | latency p50 ms | latency p99 ms | burst txs | burst transfers/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for validators in env_list("BENCH_VALIDATORS", "1,4") {
        let net = start(validators, interval_ms);
        let agent = agent();
        let to = net.senders[0].address();
        // Latency: one transfer at a time from the user.
        let mut latencies = Vec::with_capacity(txs);
        let user = &net.senders[0];
        for nonce in 0..txs as u64 {
            let (hash, hex_tx) = transfer(&net.genesis, user, nonce, to);
            let started = Instant::now();
            submit(&agent, &net.apis, &hex_tx);
            while !committed(&agent, &net.apis[0], &hash) {
                std::thread::sleep(Duration::from_millis(5));
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "tx not committed"
                );
            }
            latencies.push(started.elapsed());
        }
        latencies.sort();
        // Throughput: a burst spread over the funded senders (64 queued nonces each at most).
        let per_sender = burst.div_ceil(net.senders.len() - 1).min(64);
        let mut hashes = Vec::new();
        let started = Instant::now();
        for key in &net.senders[1..] {
            for nonce in 0..per_sender as u64 {
                let (hash, hex_tx) = transfer(&net.genesis, key, nonce, to);
                submit(&agent, &net.apis, &hex_tx);
                hashes.push(hash);
            }
        }
        for hash in &hashes {
            while !committed(&agent, &net.apis[0], hash) {
                std::thread::sleep(Duration::from_millis(5));
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "burst not committed"
                );
            }
        }
        let burst_secs = started.elapsed().as_secs_f64();
        println!(
            "| {validators} | {txs} | {:.0} | {:.0} | {} | {:.0} |",
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            hashes.len(),
            hashes.len() as f64 / burst_secs
        );
    }
}
