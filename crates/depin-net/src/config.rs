//! The network's configuration and its limits.

use crate::NetError;
use libp2p::Multiaddr;
use std::time::Duration;

/// Largest transaction, request or response size the config accepts at all: frames carry a
/// u32 length, and anything near 4 GiB would be a configuration mistake.
const MAX_CONFIGURABLE_BYTES: usize = 256 << 20;

/// Longest chain id: it is embedded in protocol names and the gossip topic.
const MAX_CHAIN_ID_BYTES: usize = 64;

/// Everything [`crate::Network::start`] needs. Build one with [`NetConfig::new`] and adjust
/// the fields; [`NetConfig::validate`] runs on start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node's ed25519 key; its public key is also the node's libp2p peer id.
    pub keypair: depin_types::Keypair,
    /// TCP listen address, e.g. `/ip4/0.0.0.0/tcp/7301` (port 0 picks a free port).
    pub listen_tcp: Multiaddr,
    /// QUIC listen address, e.g. `/ip4/0.0.0.0/udp/7301/quic-v1`, or none: then the node
    /// speaks TCP only (it does not dial QUIC addresses either).
    pub listen_quic: Option<Multiaddr>,
    /// Peers to join the network through; each address must end with `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Chain id: part of every protocol name and of the gossip topic, so nodes of different
    /// chains never exchange transactions or requests.
    pub chain_id: String,
    /// Largest gossiped transaction accepted or published.
    pub max_message_bytes: usize,
    /// Largest request payload sent or accepted.
    pub max_request_bytes: usize,
    /// Largest response payload sent or accepted.
    pub max_response_bytes: usize,
    /// How long a request may take from sending it to reading the whole response. Handlers
    /// get this less a tenth (at most 1 s less) to answer an inbound request, so that the
    /// requester is told "timed out" before libp2p drops the stream.
    pub request_timeout: Duration,
    /// Requests in flight to one peer, and from one peer to our handlers, at most.
    pub max_concurrent_requests_per_peer: usize,
    /// Established connections at most (both directions, all peers).
    pub max_connections: u32,
    /// Connections being set up at most, in each direction.
    pub max_pending_connections: u32,
    /// The node dials newly discovered peers while it has fewer connected peers than this.
    pub target_peers: usize,
    /// A connection that no protocol uses is closed after this long.
    pub idle_connection_timeout: Duration,
    /// How often Kademlia refreshes its routing table (and bootstrap peers are redialled
    /// when the node has no peer at all).
    pub discovery_interval: Duration,
    /// Capacity of the [`crate::NetEvent`] channel.
    pub event_queue_len: usize,
    /// Capacity of each protocol handler's request channel.
    pub handler_queue_len: usize,
}

impl NetConfig {
    /// Production defaults: listen on port 7301 (TCP and QUIC) on every interface, no
    /// bootstrap peers.
    pub fn new(keypair: depin_types::Keypair, chain_id: impl Into<String>) -> NetConfig {
        NetConfig {
            keypair,
            listen_tcp: "/ip4/0.0.0.0/tcp/7301"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
            listen_quic: "/ip4/0.0.0.0/udp/7301/quic-v1".parse().ok(),
            bootstrap: Vec::new(),
            chain_id: chain_id.into(),
            max_message_bytes: 64 << 10,
            max_request_bytes: 64 << 10,
            max_response_bytes: 16 << 20,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests_per_peer: 16,
            max_connections: 128,
            max_pending_connections: 32,
            target_peers: 32,
            idle_connection_timeout: Duration::from_secs(60),
            discovery_interval: Duration::from_secs(60),
            event_queue_len: 1024,
            handler_queue_len: 256,
        }
    }

    /// Checks every limit is usable and the chain id is safe to embed in protocol names.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |what: String| Err(NetError::Config(what));
        if self.chain_id.is_empty() || self.chain_id.len() > MAX_CHAIN_ID_BYTES {
            return bad(format!(
                "chain_id must be 1 to {MAX_CHAIN_ID_BYTES} bytes, got {}",
                self.chain_id.len()
            ));
        }
        if !self
            .chain_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return bad(format!(
                "chain_id {:?} may only hold ASCII letters, digits, '-', '_' and '.'",
                self.chain_id
            ));
        }
        for (name, value) in [
            ("max_message_bytes", self.max_message_bytes),
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
        ] {
            if value == 0 || value > MAX_CONFIGURABLE_BYTES {
                return bad(format!(
                    "{name} must be 1 to {MAX_CONFIGURABLE_BYTES}, got {value}"
                ));
            }
        }
        for (name, value) in [
            (
                "max_concurrent_requests_per_peer",
                self.max_concurrent_requests_per_peer,
            ),
            ("max_connections", self.max_connections as usize),
            (
                "max_pending_connections",
                self.max_pending_connections as usize,
            ),
            ("event_queue_len", self.event_queue_len),
            ("handler_queue_len", self.handler_queue_len),
        ] {
            if value == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("request_timeout", self.request_timeout),
            ("idle_connection_timeout", self.idle_connection_timeout),
            ("discovery_interval", self.discovery_interval),
        ] {
            if value.is_zero() {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.listen_tcp.is_empty() {
            return bad("listen_tcp is empty".into());
        }
        Ok(())
    }

    /// The gossip topic transactions travel on.
    pub fn tx_topic(&self) -> String {
        format!("depin/txs/{}", self.chain_id)
    }

    pub(crate) fn kad_protocol(&self) -> String {
        format!("/depin/{}/kad/1.0.0", self.chain_id)
    }

    pub(crate) fn rpc_protocol(&self) -> String {
        format!("/depin/{}/rpc/1", self.chain_id)
    }

    /// What identify announces as the protocol version; a peer announcing another one is on
    /// another chain (or an incompatible version) and is disconnected.
    pub(crate) fn identify_version(&self) -> String {
        format!("/depin/{}/1", self.chain_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetConfig {
        NetConfig::new(depin_types::Keypair::from_seed(b"config"), "devnet")
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
        assert!(config().listen_quic.is_some());
        assert_eq!(config().tx_topic(), "depin/txs/devnet");
    }

    #[test]
    fn rejects_unsafe_chain_ids_and_zero_limits() {
        for chain_id in ["", "a/b", "has space", &"x".repeat(65)] {
            let mut c = config();
            c.chain_id = chain_id.to_string();
            assert!(
                matches!(c.validate(), Err(NetError::Config(_))),
                "{chain_id:?}"
            );
        }
        let mut c = config();
        c.max_request_bytes = 0;
        assert!(matches!(c.validate(), Err(NetError::Config(_))));
        let mut c = config();
        c.max_response_bytes = usize::MAX;
        assert!(matches!(c.validate(), Err(NetError::Config(_))));
        let mut c = config();
        c.request_timeout = Duration::ZERO;
        assert!(matches!(c.validate(), Err(NetError::Config(_))));
        let mut c = config();
        c.max_concurrent_requests_per_peer = 0;
        assert!(matches!(c.validate(), Err(NetError::Config(_))));
    }
}
