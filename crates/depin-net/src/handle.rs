//! `NetHandle`: the cloneable front of the swarm task. Every method is a message to the task
//! over a bounded channel, answered on a oneshot.

use crate::codec::validate_protocol_name;
use crate::metrics::{NetMetrics, inc};
use crate::{InboundRequest, NetError, PeerInfo, Published};
use libp2p::{Multiaddr, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long dialing a peer may take before a request to it starts its own timeout; the swarm
/// builder's connection timeout.
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum Command {
    Publish {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Published, NetError>>,
    },
    Request {
        peer: PeerId,
        protocol: String,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Serve {
        protocol: String,
        reply: oneshot::Sender<Result<mpsc::Receiver<InboundRequest>, NetError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The limits the handle checks before bothering the swarm task.
#[derive(Debug)]
pub(crate) struct Limits {
    pub max_message_bytes: usize,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
}

/// A handle on the running network. Cheap to clone; the swarm task stops when
/// [`NetHandle::shutdown`] is called or the last handle is dropped.
#[derive(Debug, Clone)]
pub struct NetHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) limits: Arc<Limits>,
    pub(crate) metrics: Arc<NetMetrics>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::Publish { .. } => "Publish",
            Command::Request { .. } => "Request",
            Command::Serve { .. } => "Serve",
            Command::Peers { .. } => "Peers",
            Command::ListenAddrs { .. } => "ListenAddrs",
            Command::Shutdown { .. } => "Shutdown",
        };
        f.write_str(name)
    }
}

impl NetHandle {
    /// This node's peer id (derived from its ed25519 key).
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The network's counters.
    pub fn metrics(&self) -> Arc<NetMetrics> {
        self.metrics.clone()
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| NetError::Shutdown)?;
        answer.await.map_err(|_| NetError::Shutdown)
    }

    /// Gossips a transaction's canonical bytes to the peers subscribed to the chain's
    /// transaction topic. Bytes over `max_message_bytes` (or empty) are refused here.
    pub async fn publish_tx(&self, bytes: Vec<u8>) -> Result<Published, NetError> {
        if bytes.len() > self.limits.max_message_bytes {
            inc(&self.metrics.txs_publish_too_large);
            return Err(NetError::MessageTooLarge {
                size_bytes: bytes.len(),
                max_bytes: self.limits.max_message_bytes,
            });
        }
        if bytes.is_empty() {
            return Err(NetError::MessageEmpty);
        }
        self.ask(|reply| Command::Publish { bytes, reply }).await?
    }

    /// Sends `bytes` to `peer`'s handler for `protocol` and waits for its answer, dialing the
    /// peer first if it is known (through Kademlia) but not connected.
    ///
    /// Fails with [`NetError::RequestTooLarge`] before sending anything when `bytes` is over
    /// `max_request_bytes`, with [`NetError::TooManyRequests`] when
    /// `max_concurrent_requests_per_peer` requests to the peer are already in flight, and
    /// with [`NetError::Timeout`] when no answer arrives within `request_timeout`.
    pub async fn request(
        &self,
        peer: PeerId,
        protocol: &str,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        validate_protocol_name(protocol)?;
        if bytes.len() > self.limits.max_request_bytes {
            return Err(NetError::RequestTooLarge {
                size_bytes: bytes.len(),
                max_bytes: self.limits.max_request_bytes,
            });
        }
        let protocol = protocol.to_string();
        // The swarm task always answers (response, failure or timeout); this outer limit only
        // guards against a bug there leaving the caller waiting forever.
        let limit = self.limits.request_timeout + DIAL_TIMEOUT + Duration::from_secs(1);
        let name = protocol.clone();
        let asked = self.ask(|reply| Command::Request {
            peer,
            protocol,
            bytes,
            reply,
        });
        match tokio::time::timeout(limit, asked).await {
            Ok(answer) => answer?,
            Err(_) => Err(NetError::Timeout {
                peer,
                protocol: name,
                waited_ms: millis(limit),
            }),
        }
    }

    /// Registers this node as the handler of `protocol` (e.g. `chain/block/1`): requests for
    /// it arrive on the returned channel, which holds at most `handler_queue_len` of them
    /// (more are refused as busy). Requests for protocols nobody serves are answered with
    /// [`NetError::UnknownProtocol`] on the requester's side. Dropping the receiver
    /// unregisters the protocol.
    pub async fn serve(&self, protocol: &str) -> Result<mpsc::Receiver<InboundRequest>, NetError> {
        validate_protocol_name(protocol)?;
        let protocol = protocol.to_string();
        self.ask(|reply| Command::Serve { protocol, reply }).await?
    }

    /// The connected peers. Empty once the network is shut down.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.ask(|reply| Command::Peers { reply })
            .await
            .unwrap_or_default()
    }

    /// The addresses this node listens on, each ending with `/p2p/<peer id>` so it can be
    /// given to another node as a bootstrap address. Empty once the network is shut down.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Stops the swarm task and closes every connection; returns once it has stopped.
    /// Calling it again, or on a clone, does nothing.
    pub async fn shutdown(&self) {
        // An error means the task is already gone, which is what was asked for.
        let _ = self.ask(|done| Command::Shutdown { done }).await;
    }
}
