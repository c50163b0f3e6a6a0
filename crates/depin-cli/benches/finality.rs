//! Finality latency and sustained transfers/s through the whole node: real `depin` processes
//! (a devnet) on loopback, transactions signed here and posted over HTTP, their commit seen
//! through the API. Prints a table. Run: `cargo bench -p depin-cli --bench finality`.
//! Environment: BENCH_VALIDATORS (default "1,4"), BENCH_TXS (default 200),
//! BENCH_BURST (default 640), BENCH_INTERVAL_MS (default 200), BENCH_SENDERS (default 400
//! accounts funded by the user for the sustained run), BENCH_PER_SENDER (default 40).

use depin_protocol::{Action, Genesis, Transaction};
use depin_types::{Address, Amount, Hash, KeyFile, Keypair};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Devnet, free_base_port};

const BIN: &str = env!("CARGO_BIN_EXE_depin");

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
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
    pids: Vec<u64>,
}

/// CPU seconds (user + system) a process has used, from /proc (Linux only; 0 elsewhere).
fn cpu_seconds(pid: u64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
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
    // Measure a running network: every validator has finalized a few blocks and its gossip
    // mesh has had a moment to form.
    let warm = Instant::now() + Duration::from_secs(60);
    while !apis.iter().all(|api| {
        get(&agent, &format!("{api}/v1/status"))
            .and_then(|s| s["height"].as_u64())
            .is_some_and(|h| h >= 5)
    }) {
        assert!(Instant::now() < warm, "devnet did not start finalizing");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // The user and every node account are funded at genesis: they are the senders.
    let mut senders = vec![read_key(Path::new(
        state["user_key_file"].as_str().expect("user"),
    ))];
    senders.extend(
        nodes
            .iter()
            .map(|n| read_key(Path::new(n["key_file"].as_str().expect("key")))),
    );
    let pids = nodes.iter().filter_map(|n| n["pid"].as_u64()).collect();
    Net {
        _devnet: devnet,
        _dir: dir,
        apis,
        genesis,
        senders,
        pids,
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

/// Transactions the node applied since it started (`depin_txs_applied_total`).
fn applied(agent: &ureq::Agent, api: &str) -> u64 {
    let Ok(mut r) = agent.get(&format!("{api}/metrics")).call() else {
        return 0;
    };
    let text = r.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("depin_txs_applied_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn nonce(agent: &ureq::Agent, api: &str, address: &Address) -> u64 {
    get(agent, &format!("{api}/v1/accounts/{address}"))
        .and_then(|v| v["nonce"].as_u64())
        .unwrap_or(0)
}

/// Funds `count` fresh accounts from the user, 64 queued transfers at a time.
fn fund_senders(net: &Net, count: usize) -> Vec<Keypair> {
    let agent = agent();
    let user = &net.senders[0];
    let mut next = nonce(&agent, &net.apis[0], &user.address());
    let keys: Vec<Keypair> = (0..count)
        .map(|i| Keypair::from_seed(format!("bench sender {i}").as_bytes()))
        .collect();
    for chunk in keys.chunks(64) {
        for key in chunk {
            let signed = Transaction {
                chain_id: net.genesis.chain_id.clone(),
                sender: user.address(),
                nonce: next,
                fee: Amount(100_000),
                action: Action::Transfer {
                    to: key.address(),
                    amount: Amount(1_000_000_000),
                },
            }
            .sign(user);
            submit(&agent, &net.apis, &hex::encode(signed.to_bytes()));
            next += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while nonce(&agent, &net.apis[0], &user.address()) < next {
            assert!(Instant::now() < deadline, "funding not committed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    keys
}

/// Every sender posts `per_sender` transfers (spread over the validators' APIs by four
/// client threads); returns (submitted/s, committed transfers/s) from the first post until
/// the first validator has applied them all, and the node CPU milliseconds per transfer (all
/// nodes together).
fn sustained(net: &Net, senders: &[Keypair], per_sender: u64) -> (f64, f64, f64) {
    let agent = agent();
    let cpu_before: f64 = net.pids.iter().map(|p| cpu_seconds(*p)).sum();
    let base = applied(&agent, &net.apis[0]);
    let total = senders.len() as u64 * per_sender;
    let to = net.senders[0].address();
    // Sign everything first: the client's signing is not what is measured.
    let mut batches: Vec<Vec<String>> = vec![Vec::new(); 4];
    for round in 0..per_sender {
        for (i, key) in senders.iter().enumerate() {
            let (_, hex_tx) = transfer(&net.genesis, key, round, to);
            batches[i % 4].push(hex_tx);
        }
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (t, batch) in batches.iter().enumerate() {
            let apis = &net.apis;
            scope.spawn(move || {
                let client = self::agent();
                for (i, hex_tx) in batch.iter().enumerate() {
                    let api = &apis[(t + i) % apis.len()];
                    let _ = client
                        .post(&format!("{api}/v1/txs"))
                        .send_json(serde_json::json!({ "tx": hex_tx }));
                }
            });
        }
    });
    let submit_secs = started.elapsed().as_secs_f64();
    let deadline = started + Duration::from_secs(300);
    while applied(&agent, &net.apis[0]) < base + total {
        assert!(Instant::now() < deadline, "sustained run not committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu: f64 = net.pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
    (
        total as f64 / submit_secs,
        total as f64 / secs,
        cpu * 1000.0 / total as f64,
    )
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
    let senders = env_list("BENCH_SENDERS", "400")[0] as usize;
    let sustained_per_sender = env_list("BENCH_PER_SENDER", "40")[0].min(64);
    println!(
        "| validators | txs | latency p50 ms | latency p99 ms | burst txs | burst transfers/s | sustained txs | posted/s | sustained transfers/s | node CPU ms per transfer |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let funded = fund_senders(&net, senders);
        let (posted_rate, sustained_rate, cpu_ms) = sustained(&net, &funded, sustained_per_sender);
        println!(
            "| {validators} | {txs} | {:.0} | {:.0} | {} | {:.0} | {} | {posted_rate:.0} | {sustained_rate:.0} | {cpu_ms:.3} |",
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            hashes.len(),
            hashes.len() as f64 / burst_secs,
            funded.len() as u64 * sustained_per_sender,
        );
    }
}
