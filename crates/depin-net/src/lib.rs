//! Owns: the libp2p swarm: discovery, gossip, bounded request-response, shared blob transfer.
//! Must not: decode transactions or service payloads, read the chain, or hold protocol rules.
//!
//! depin-net: the libp2p service network. It owns the swarm (TCP + Noise + Yamux and QUIC,
//! with the node's ed25519 key as its identity), peer discovery (Kademlia from bootstrap
//! peers, identify, ping), transaction gossip (gossipsub on `depin/txs/<chain_id>`) and a
//! bounded request-response API that services register handlers on, one protocol name each.
//!
//! It carries bytes and nothing else: no protocol rules, no chain or state access, no
//! decoding of transactions or service payloads. Callers validate what they receive. Every
//! queue, message and request is bounded, and every value that came from the network is
//! treated as adversarial.
//!
//! ```no_run
//! # async fn demo() -> Result<(), depin_net::NetError> {
//! use depin_net::{NetConfig, NetEvent, Network};
//! let key = depin_types::Keypair::from_seed(b"node-1");
//! let (net, mut events) = Network::start(NetConfig::new(key, "devnet")).await?;
//! let mut blocks = net.serve("chain/block/1").await?;
//! tokio::spawn(async move {
//!     while let Some(request) = blocks.recv().await {
//!         // Decode "give me block N" from `request.bytes`, look it up, answer with its bytes.
//!         request.respond(Vec::new());
//!     }
//! });
//! while let Some(event) = events.recv().await {
//!     if let NetEvent::TxReceived { bytes, .. } = event {
//!         // Hand the bytes to the mempool, which decodes and checks them.
//!         let _ = bytes;
//!     }
//! }
//! # Ok(()) }
//! ```

mod codec;
mod config;
mod driver;
mod handle;
mod metrics;

pub use codec::{MAX_PROTOCOL_NAME_BYTES, validate_protocol_name};
pub use config::NetConfig;
pub use handle::NetHandle;
pub use libp2p::multiaddr::Error as MultiaddrError;
pub use libp2p::{Multiaddr, PeerId};
pub use metrics::NetMetrics;

use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why the network could not start, or why an operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network config: {0}")]
    Config(String),
    #[error("node key is not a valid ed25519 secret key: {0}")]
    Identity(String),
    #[error("address is not an ed25519 public key: {0}")]
    InvalidAddress(String),
    #[error("bootstrap address {addr} must end with /p2p/<peer id>")]
    BootstrapAddr { addr: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("transport setup failed: {0}")]
    Transport(String),
    #[error("message of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("message is empty")]
    MessageEmpty,
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("invalid protocol name {name:?}: {reason}")]
    InvalidProtocol { name: String, reason: &'static str },
    #[error("protocol {protocol:?} already has a handler")]
    ProtocolTaken { protocol: String },
    #[error("request of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    RequestTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("response from {peer} on {protocol:?} exceeds the response size limit")]
    ResponseTooLarge { peer: PeerId, protocol: String },
    #[error("peer {peer} has no handler for protocol {protocol:?}")]
    UnknownProtocol { peer: PeerId, protocol: String },
    #[error("peer {peer} is busy and refused the request on {protocol:?}")]
    Busy { peer: PeerId, protocol: String },
    #[error("already {limit} requests in flight to {peer}")]
    TooManyRequests { peer: PeerId, limit: usize },
    #[error("request to {peer} on {protocol:?} got no answer within {waited_ms} ms")]
    Timeout {
        peer: PeerId,
        protocol: String,
        waited_ms: u64,
    },
    #[error("peer {peer} dropped the request on {protocol:?} without answering")]
    NoResponse { peer: PeerId, protocol: String },
    #[error(
        "peer {peer} closed the stream on {protocol:?} without answering \
         (the request may be over its size limit)"
    )]
    Refused { peer: PeerId, protocol: String },
    #[error("cannot reach peer {peer}")]
    DialFailure { peer: PeerId },
    #[error("peer {peer} does not speak this chain's request protocol")]
    UnsupportedPeer { peer: PeerId },
    #[error("request to {peer} on {protocol:?} failed: {reason}")]
    RequestFailed {
        peer: PeerId,
        protocol: String,
        // Boxed to keep `NetError` small: a `PeerId` alone is 80 bytes.
        reason: Box<str>,
    },
    #[error("the network is shut down")]
    Shutdown,
}

/// What the network tells the node. Delivered on the bounded channel returned by
/// [`Network::start`]; when the node does not keep up, events are dropped and counted in
/// [`NetMetrics::events_dropped_queue_full`] rather than stalling the swarm.
#[derive(Debug)]
pub enum NetEvent {
    /// A transaction's bytes arrived by gossip, at most once per distinct content within
    /// gossipsub's duplicate window of one minute (the message id is the BLAKE3 hash of the
    /// bytes). `from` is the peer that forwarded
    /// it, not necessarily its author. The bytes are not decoded or checked here.
    TxReceived { from: PeerId, bytes: Vec<u8> },
    /// The first connection to a peer was established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
}

/// An inbound request for a protocol this node serves (see [`NetHandle::serve`]).
///
/// Answer by sending the response bytes on `reply` (or [`InboundRequest::respond`]) within
/// the configured request timeout less a tenth (at most 1 s less). Dropping `reply` tells
/// the requester at once that no answer is coming ([`NetError::NoResponse`]); not answering
/// in time sends it [`NetError::Timeout`].
#[derive(Debug)]
pub struct InboundRequest {
    pub peer: PeerId,
    pub protocol: String,
    pub bytes: Vec<u8>,
    pub reply: oneshot::Sender<Vec<u8>>,
}

impl InboundRequest {
    /// Sends the response. A response over the limit is replaced by an error for the
    /// requester ([`NetError::ResponseTooLarge`]); one sent after the timeout is discarded.
    pub fn respond(self, bytes: Vec<u8>) {
        // The requester may have gone away; there is nobody to tell.
        let _ = self.reply.send(bytes);
    }
}

/// What happened to a published transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Sent to the peers subscribed to the transaction topic.
    Sent,
    /// The same bytes were already published or received recently; nothing was sent.
    Duplicate,
    /// No connected peer is subscribed to the topic yet; nothing was sent.
    NoPeers,
}

/// A connected peer, as [`NetHandle::peers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    /// The remote address of each open connection to the peer.
    pub addresses: Vec<Multiaddr>,
    /// Latest ping round trip, if one has completed.
    pub rtt: Option<Duration>,
    /// The agent version the peer announced through identify.
    pub agent_version: Option<String>,
    /// Whether the peer is subscribed to this chain's transaction topic.
    pub tx_topic: bool,
}

/// The libp2p peer id of the node whose key has this address (an address is the ed25519
/// public key, and so is a peer id), e.g. to ask a known validator for blocks.
pub fn peer_id_of(address: &depin_types::Address) -> Result<PeerId, NetError> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(address.as_bytes())
        .map_err(|e| NetError::InvalidAddress(e.to_string()))?;
    Ok(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The account whose key a peer id carries (`None`: an id that is not an inline ed25519
/// key). A peer id of an ed25519 key is the key itself, inline: identity multihash, then the
/// key's protobuf (type 1, 32 bytes).
pub fn address_of(peer: &PeerId) -> Option<depin_types::Address> {
    const PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    let bytes = peer.to_bytes();
    let key: [u8; 32] = bytes.strip_prefix(&PREFIX)?.try_into().ok()?;
    let address = depin_types::Address(key);
    (peer_id_of(&address).ok()? == *peer).then_some(address)
}

/// Entry point: builds the swarm and spawns the task that drives it.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Starts listening on the configured addresses, dials the bootstrap peers and spawns the
    /// swarm task on the current tokio runtime. Returns once every listener has an address,
    /// so [`NetHandle::listen_addrs`] is immediately usable. The task stops on
    /// [`NetHandle::shutdown`] or when every handle has been dropped.
    pub async fn start(
        config: NetConfig,
    ) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
        driver::start(config).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_peer_id_names_the_account_of_its_key_and_back() {
        let address = depin_types::Keypair::from_seed(b"a node").address();
        let peer = super::peer_id_of(&address).expect("an ed25519 key");
        assert_eq!(super::address_of(&peer), Some(address));
        assert_eq!(super::address_of(&libp2p::PeerId::random()), None);
    }
}
