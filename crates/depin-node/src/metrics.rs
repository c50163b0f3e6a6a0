//! Prometheus metrics in the text exposition format. A handful of gauges, counters and two
//! fixed-bucket histograms do not justify a metrics framework.

use crate::Node;
use depin_protocol::Block;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS_SECONDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS_SECONDS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS_SECONDS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// Node-level metrics not already counted by the chain or the mempool.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    block_time: Mutex<Histogram>,
    commit_time: Mutex<Histogram>,
    last_block_timestamp_ms: AtomicU64,
    pub follow_errors: AtomicU64,
    pub http_requests: AtomicU64,
    /// Finalized blocks sent to followers over the service network.
    pub sync_blocks_served: AtomicU64,
    /// Block requests from peers that did not decode.
    pub sync_bad_requests: AtomicU64,
}

impl NodeMetrics {
    /// Records a block this node just committed.
    pub fn observe_block(&self, node: &Node, block: &Block) {
        let ts = block.header.timestamp_ms;
        let previous = self.last_block_timestamp_ms.swap(ts, Ordering::Relaxed);
        if previous != 0
            && ts >= previous
            && let Ok(mut h) = self.block_time.lock()
        {
            h.observe((ts - previous) as f64 / 1000.0);
        }
        let commit_micros = node
            .chain()
            .metrics
            .last_commit_micros
            .load(Ordering::Relaxed);
        if let Ok(mut h) = self.commit_time.lock() {
            h.observe(commit_micros as f64 / 1e6);
        }
    }

    pub fn render(&self, node: &Node) -> String {
        let mut out = String::new();
        let chain = node.chain();
        let head = chain.head();
        let (accepted, rejected) = node.app.submit_stats();
        let (pool_txs, pool_bytes) = {
            let pool = node.app.mempool();
            (pool.len(), pool.size_bytes())
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "depin_chain_height",
            "Height of the last finalized block.",
            head.height,
        );
        gauge(
            &mut out,
            "depin_mempool_txs",
            "Transactions waiting in the mempool.",
            pool_txs as u64,
        );
        gauge(
            &mut out,
            "depin_mempool_bytes",
            "Bytes of transactions in the mempool.",
            pool_bytes as u64,
        );
        counter(
            &mut out,
            "depin_blocks_committed_total",
            "Blocks committed by this node since start.",
            chain.metrics.blocks_committed.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP depin_consensus_proposals_rejected_total Proposals this validator refused to vote for, by reason.\n# TYPE depin_consensus_proposals_rejected_total counter"
        );
        for (reason, n) in [
            (
                "future_timestamp",
                &chain.metrics.proposals_rejected_timestamp,
            ),
            ("wrong_proposer", &chain.metrics.proposals_rejected_proposer),
            ("execution", &chain.metrics.proposals_rejected_execution),
        ] {
            let _ = writeln!(
                out,
                "depin_consensus_proposals_rejected_total{{reason=\"{reason}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "depin_consensus_peers_blocked_total",
            "Consensus peers blocked for invalid messages (bad signatures, malformed or conflicting votes).",
            chain
                .metrics
                .consensus_peers_blocked
                .load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP depin_service_hook_failures_total Service block and epoch hooks that failed in committed blocks (their writes dropped), by service and hook.\n# TYPE depin_service_hook_failures_total counter"
        );
        let hook_failures = chain
            .metrics
            .service_hook_failures
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        for ((service, hook), n) in hook_failures {
            let _ = writeln!(
                out,
                "depin_service_hook_failures_total{{service=\"{service}\",hook=\"{hook}\"}} {n}"
            );
        }
        counter(
            &mut out,
            "depin_txs_applied_total",
            "Transactions applied in committed blocks since start.",
            chain.metrics.txs_committed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "depin_txs_accepted_total",
            "Transactions accepted into the mempool.",
            accepted,
        );
        let _ = writeln!(
            out,
            "# HELP depin_txs_rejected_total Transactions rejected at submission, by reason.\n# TYPE depin_txs_rejected_total counter"
        );
        for (reason, n) in rejected {
            let _ = writeln!(out, "depin_txs_rejected_total{{reason=\"{reason}\"}} {n}");
        }
        counter(
            &mut out,
            "depin_follow_errors_total",
            "Errors while following the chain (bad or unlinked blocks, bad certificates, transport).",
            self.follow_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "depin_sync_blocks_served_total",
            "Finalized blocks served to followers over the service network.",
            self.sync_blocks_served.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "depin_sync_bad_requests_total",
            "Block requests from peers that did not decode (ignored).",
            self.sync_bad_requests.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "depin_http_requests_total",
            "HTTP API requests served.",
            self.http_requests.load(Ordering::Relaxed),
        );
        // The libp2p service network: peers, gossip and request-response, rejections included.
        if let Some(net) = node.net.get() {
            for (name, value) in net.metrics().snapshot() {
                let (metric, kind) = if name == "peers_connected" {
                    (format!("depin_net_{name}"), "gauge")
                } else {
                    (format!("depin_net_{name}_total"), "counter")
                };
                let _ = writeln!(
                    out,
                    "# HELP {metric} libp2p service network: {}.\n# TYPE {metric} {kind}\n{metric} {value}",
                    name.replace('_', " ")
                );
            }
        }
        if let Ok(h) = self.block_time.lock() {
            h.render(
                &mut out,
                "depin_block_time_seconds",
                "Time between consecutive committed blocks (header timestamps).",
            );
        }
        if let Ok(h) = self.commit_time.lock() {
            h.render(
                &mut out,
                "depin_block_commit_seconds",
                "Time to write a finalized block to disk.",
            );
        }
        out
    }
}
