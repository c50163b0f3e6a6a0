//! Applies blocks of signed transfers through the real chain path — batch signature check,
//! execution, JMT state-root update, one redb commit — and prints a table of transfers/s and
//! p50/p99 times. Run: `cargo bench -p depin-chain --bench chain_apply`.
//! Environment: BENCH_ROUNDS (default 7), BENCH_SIZES (default "1000,10000").

use depin_chain::{Chain, verify_signatures_parallel};
use depin_protocol::{Action, Finality, Genesis, Protocol, SignedTransaction, Transaction};
use depin_types::{Amount, Keypair};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row {
    block_txs: usize,
    rounds: usize,
    tps_median: f64,
    total_p50: Duration,
    total_p99: Duration,
    execute_p50: Duration,
    commit_p50: Duration,
    commit_p99: Duration,
    verify_p50: Duration,
}

fn run(block_txs: usize, rounds: usize) -> Row {
    let validator = Keypair::from_seed(b"bench validator");
    let senders: Vec<Keypair> = (0..block_txs)
        .map(|i| Keypair::from_seed(format!("sender {i}").as_bytes()))
        .collect();
    let balances: Vec<_> = senders
        .iter()
        .map(|k| (k.address(), Amount(1_000_000_000_000)))
        .collect();
    let mut genesis = Genesis::devnet(
        "depin-bench",
        0,
        &[validator.address()],
        validator.address(),
        &balances,
    );
    genesis.chain.max_block_txs = block_txs as u32;
    genesis.chain.max_block_bytes = 64 * 1024 * 1024;
    // Keep epoch processing out of the measured blocks.
    genesis.chain.epoch_blocks = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let protocol = Protocol::new(genesis.clone()).expect("protocol");
    let chain = Chain::open(dir.path(), protocol).expect("open chain");
    let fee = Amount(10_000);

    // Signing is the clients' work: prepare every round's transactions up front.
    let blocks: Vec<Vec<SignedTransaction>> = (0..rounds as u64)
        .map(|round| {
            senders
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    Transaction {
                        chain_id: genesis.chain_id.clone(),
                        sender: key.address(),
                        nonce: round,
                        fee,
                        action: Action::Transfer {
                            to: senders[(i + 1) % senders.len()].address(),
                            amount: Amount(1 + round as u128),
                        },
                    }
                    .sign(key)
                })
                .collect()
        })
        .collect();

    let mut totals = Vec::new();
    let mut executes = Vec::new();
    let mut commits = Vec::new();
    let mut verifies = Vec::new();
    for (round, txs) in blocks.into_iter().enumerate() {
        // Measured apart (not part of the block time) to show the signature share.
        let verify_started = Instant::now();
        verify_signatures_parallel(&txs).expect("signatures");
        verifies.push(verify_started.elapsed());
        let head = chain.head();
        let started = Instant::now();
        let (executed, rejected) = chain
            .propose(head.hash, 1 + round as u64, validator.address(), txs)
            .expect("propose");
        assert!(rejected.is_empty(), "rejected: {:?}", rejected.first());
        assert_eq!(executed.block.txs.len(), block_txs);
        let executed_at = Instant::now();
        let finality = Finality::solo(&validator, &executed.hash);
        chain
            .finalize(&executed.block, &finality)
            .expect("finalize");
        let done = Instant::now();
        totals.push(done - started);
        executes.push(executed_at - started);
        commits.push(done - executed_at);
    }
    totals.sort();
    executes.sort();
    commits.sort();
    verifies.sort();
    let total_p50 = percentile(&totals, 0.5);
    Row {
        block_txs,
        rounds,
        tps_median: block_txs as f64 / total_p50.as_secs_f64(),
        total_p50,
        total_p99: percentile(&totals, 0.99),
        execute_p50: percentile(&executes, 0.5),
        commit_p50: percentile(&commits, 0.5),
        commit_p99: percentile(&commits, 0.99),
        verify_p50: percentile(&verifies, 0.5),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful. Either way
    // run the table, but keep the test invocation tiny.
    let is_test = std::env::args().any(|a| a == "--test") || std::env::var("CI").is_ok();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if is_test { 2 } else { 7 });
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if is_test {
                vec![100]
            } else {
                vec![1_000, 10_000]
            }
        });
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "chain_apply: signed transfers through propose (verify + execute + JMT root) and finalize (redb commit)"
    );
    println!("machine: {threads} hardware threads; medians of {rounds} blocks per size\n");
    println!(
        "| block txs | transfers/s (p50 block) | block p50 ms | block p99 ms | execute+root p50 ms | of which signatures p50 ms | commit p50 ms | commit p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let r = run(size, rounds);
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.block_txs,
            r.tps_median,
            ms(r.total_p50),
            ms(r.total_p99),
            ms(r.execute_p50),
            ms(r.verify_p50),
            ms(r.commit_p50),
            ms(r.commit_p99)
        );
        let _ = r.rounds;
    }
}
