//! Counters the node exports as Prometheus metrics. Plain atomics: the swarm task writes,
//! anyone holding the `Arc` reads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Network counters. All are monotonic except `peers_connected`, which is a gauge.
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// Peers with at least one open connection (gauge).
    pub peers_connected: AtomicU64,
    /// Peers disconnected because identify showed another chain or version.
    pub peers_rejected_wrong_chain: AtomicU64,
    /// Transactions this node published to at least one peer.
    pub txs_published: AtomicU64,
    /// Publishes skipped because the same bytes were seen recently.
    pub txs_publish_duplicate: AtomicU64,
    /// Publishes skipped because no peer was subscribed to the topic.
    pub txs_publish_no_peers: AtomicU64,
    /// Publishes refused for being over `max_message_bytes`.
    pub txs_publish_too_large: AtomicU64,
    /// Gossiped transactions accepted and handed to the node.
    pub txs_received: AtomicU64,
    /// Gossiped transactions rejected for being over `max_message_bytes`.
    pub txs_rejected_too_large: AtomicU64,
    /// Gossiped transactions rejected for being empty.
    pub txs_rejected_empty: AtomicU64,
    /// Events dropped because the node's event channel was full.
    pub events_dropped_queue_full: AtomicU64,
    /// Requests sent.
    pub requests_sent: AtomicU64,
    /// Requests sent that ended in an error, timeouts included.
    pub requests_failed: AtomicU64,
    /// Requests sent that timed out.
    pub requests_timed_out: AtomicU64,
    /// Requests received and read in full.
    pub requests_received: AtomicU64,
    /// Requests received whose announced size was over `max_request_bytes`.
    pub requests_rejected_too_large: AtomicU64,
    /// Requests received that were not well-formed.
    pub requests_rejected_malformed: AtomicU64,
    /// Requests received for a protocol without a handler.
    pub requests_rejected_unknown_protocol: AtomicU64,
    /// Requests received and refused because the peer had too many in flight or the
    /// handler's queue was full.
    pub requests_rejected_busy: AtomicU64,
    /// Requests received that the handler dropped, did not answer in time, or answered
    /// over `max_response_bytes`.
    pub requests_unanswered: AtomicU64,
}

impl NetMetrics {
    /// Every counter with its name, for an exporter to render (e.g. as `depin_net_<name>`).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        vec![
            ("peers_connected", get(&self.peers_connected)),
            (
                "peers_rejected_wrong_chain",
                get(&self.peers_rejected_wrong_chain),
            ),
            ("txs_published", get(&self.txs_published)),
            ("txs_publish_duplicate", get(&self.txs_publish_duplicate)),
            ("txs_publish_no_peers", get(&self.txs_publish_no_peers)),
            ("txs_publish_too_large", get(&self.txs_publish_too_large)),
            ("txs_received", get(&self.txs_received)),
            ("txs_rejected_too_large", get(&self.txs_rejected_too_large)),
            ("txs_rejected_empty", get(&self.txs_rejected_empty)),
            (
                "events_dropped_queue_full",
                get(&self.events_dropped_queue_full),
            ),
            ("requests_sent", get(&self.requests_sent)),
            ("requests_failed", get(&self.requests_failed)),
            ("requests_timed_out", get(&self.requests_timed_out)),
            ("requests_received", get(&self.requests_received)),
            (
                "requests_rejected_too_large",
                get(&self.requests_rejected_too_large),
            ),
            (
                "requests_rejected_malformed",
                get(&self.requests_rejected_malformed),
            ),
            (
                "requests_rejected_unknown_protocol",
                get(&self.requests_rejected_unknown_protocol),
            ),
            ("requests_rejected_busy", get(&self.requests_rejected_busy)),
            ("requests_unanswered", get(&self.requests_unanswered)),
        ]
    }

    /// Reads one counter by the name `snapshot` gives it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
