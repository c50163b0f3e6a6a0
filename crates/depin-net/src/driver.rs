//! The swarm task: builds the libp2p swarm, then owns it, serving `NetHandle` commands and
//! turning swarm events into `NetEvent`s, handler requests and replies.

use crate::codec::{FrameError, Request, Response, RpcCodec};
use crate::config::NetConfig;
use crate::handle::{Command, Limits, NetHandle, millis};
use crate::metrics::{NetMetrics, inc};
use crate::{InboundRequest, NetError, NetEvent, PeerInfo, Published};
use libp2p::futures::future::BoxFuture;
use libp2p::futures::stream::FuturesUnordered;
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, connection_limits, gossipsub, identify,
    kad, noise, ping, tcp, yamux,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// Room for the gossipsub envelope around a transaction (author, sequence number, topic,
/// signature, protobuf tags), so a transaction of exactly `max_message_bytes` still fits.
const GOSSIP_ENVELOPE_BYTES: usize = 512;

/// Smallest whole-RPC gossipsub frame allowed, so control messages always fit.
const MIN_GOSSIP_TRANSMIT_BYTES: usize = 64 << 10;

/// Capacity of the command channel from the handles.
const COMMAND_QUEUE_LEN: usize = 1024;

/// How long `Network::start` waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to one peer at most (one each way when both dial at once, or TCP and QUIC).
const MAX_CONNECTIONS_PER_PEER: u32 = 2;

/// Addresses taken from one identify message at most.
const MAX_ADDRS_PER_PEER: usize = 8;

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub:
        gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::WhitelistSubscriptionFilter>,
    rpc: request_response::Behaviour<RpcCodec>,
}

/// A request this node sent and is waiting on.
struct Outbound {
    peer: PeerId,
    protocol: String,
    started: Instant,
    reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
}

/// A handler's answer to an inbound request (or the error that replaces it), ready to go
/// back.
struct Reply {
    peer: PeerId,
    channel: ResponseChannel<Response>,
    response: Response,
}

/// How long a handler has to answer. libp2p drops an inbound stream at `request_timeout`,
/// which the requester would see as a bare end of stream; answering "timed out" a little
/// earlier gives it a clear error instead.
fn handler_deadline(request_timeout: Duration) -> Duration {
    request_timeout - (request_timeout / 10).min(Duration::from_secs(1))
}

#[derive(Default)]
struct PeerState {
    connections: HashMap<ConnectionId, Multiaddr>,
    rtt: Option<Duration>,
    agent_version: Option<String>,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    tx_topic: gossipsub::TopicHash,
    kad_protocol: StreamProtocol,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    events: mpsc::Sender<NetEvent>,
    metrics: Arc<NetMetrics>,
    peers: HashMap<PeerId, PeerState>,
    handlers: HashMap<String, mpsc::Sender<InboundRequest>>,
    outbound: HashMap<OutboundRequestId, Outbound>,
    outbound_per_peer: HashMap<PeerId, usize>,
    inbound_per_peer: HashMap<PeerId, usize>,
    replies: FuturesUnordered<BoxFuture<'static, Reply>>,
}

/// Splits a bootstrap address into its peer id and the address without the `/p2p` part.
fn parse_bootstrap(addr: &Multiaddr) -> Result<(PeerId, Multiaddr), NetError> {
    let mut transport = addr.clone();
    match transport.pop() {
        Some(Protocol::P2p(peer)) if !transport.is_empty() => Ok((peer, transport)),
        _ => Err(NetError::BootstrapAddr {
            addr: addr.to_string(),
        }),
    }
}

fn protocol(name: String) -> Result<StreamProtocol, NetError> {
    StreamProtocol::try_from_owned(name).map_err(|e| NetError::Config(e.to_string()))
}

fn build_behaviour(
    identity: &libp2p::identity::Keypair,
    config: &NetConfig,
    tx_topic: &gossipsub::IdentTopic,
    kad_protocol: StreamProtocol,
    metrics: Arc<NetMetrics>,
) -> Result<Behaviour, NetError> {
    let peer_id = identity.public().to_peer_id();

    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        // Leave a quarter of the slots for connections this node chose, so inbound
        // connections alone cannot surround it.
        .with_max_established_incoming(Some((config.max_connections * 3 / 4).max(1)))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(config.max_pending_connections))
        .with_max_pending_outgoing(Some(config.max_pending_connections));

    let identify = identify::Behaviour::new(
        identify::Config::new(config.identify_version(), identity.public())
            .with_agent_version(format!("depin/{}", env!("CARGO_PKG_VERSION"))),
    );

    let mut kad_config = kad::Config::new(kad_protocol);
    kad_config.set_periodic_bootstrap_interval(Some(config.discovery_interval));
    // Kademlia is only used to find peers: records and provider announcements that peers
    // push are not stored.
    kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Every depin node listens, so it answers DHT queries even before it has a confirmed
    // external address (otherwise nodes on a LAN or loopback never find each other).
    kad.set_mode(Some(kad::Mode::Server));

    let tx_transmit_bytes = config.max_message_bytes + GOSSIP_ENVELOPE_BYTES;
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(tx_transmit_bytes.max(MIN_GOSSIP_TRANSMIT_BYTES))
        .max_transmit_size_for_topic(tx_transmit_bytes, tx_topic.hash())
        // Content addressing: the same transaction bytes are one message, whoever publishes
        // them and however often.
        .message_id_fn(|message| {
            gossipsub::MessageId::new(depin_types::Hash::of(&message.data).as_bytes())
        })
        // Messages are forwarded only after the size check in `on_gossip` accepts them.
        .validate_messages()
        // A transaction carries its sender's signature, checked by every mempool; signing
        // and verifying the gossip envelope as well would double the per-transaction
        // signature work of every node for nothing.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .build()
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    let mut gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
        gossipsub::MessageAuthenticity::Anonymous,
        gossip_config,
        // Remember peers' subscriptions to our topic only, so they cannot fill memory with
        // made-up topics.
        gossipsub::WhitelistSubscriptionFilter(HashSet::from([tx_topic.hash()])),
    )
    .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    gossipsub
        .subscribe(tx_topic)
        .map_err(|e| NetError::Config(format!("gossipsub subscribe: {e}")))?;

    let rpc = request_response::Behaviour::with_codec(
        RpcCodec {
            max_request_bytes: config.max_request_bytes,
            max_response_bytes: config.max_response_bytes,
            metrics,
        },
        [(protocol(config.rpc_protocol())?, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            // Per connection, inbound and outbound together; the per-peer limits in the
            // driver refuse excess requests with an answer before this drops streams.
            .with_max_concurrent_streams(config.max_concurrent_requests_per_peer * 2 + 4),
    );

    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
        kad,
        gossipsub,
        rpc,
    })
}

pub(crate) async fn start(
    config: NetConfig,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    config.validate()?;
    let identity = libp2p::identity::Keypair::ed25519_from_bytes(config.keypair.secret_bytes())
        .map_err(|e| NetError::Identity(e.to_string()))?;
    let local_peer_id = identity.public().to_peer_id();
    let mut bootstrap = Vec::with_capacity(config.bootstrap.len());
    for addr in &config.bootstrap {
        let (peer, transport) = parse_bootstrap(addr)?;
        // A shared bootstrap list may name this node itself.
        if peer != local_peer_id {
            bootstrap.push((peer, transport));
        }
    }
    let tx_topic = gossipsub::IdentTopic::new(config.tx_topic());
    let kad_protocol = protocol(config.kad_protocol())?;
    let metrics = Arc::new(NetMetrics::default());
    let behaviour = build_behaviour(
        &identity,
        &config,
        &tx_topic,
        kad_protocol.clone(),
        metrics.clone(),
    )?;

    let builder = SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let idle = config.idle_connection_timeout;
    // Without a QUIC listen address the node neither listens nor dials over QUIC: a bulk
    // client (storage uploads) moves more bytes per CPU second over TCP + Noise + Yamux.
    let mut swarm = if config.listen_quic.is_some() {
        let Ok(builder) = builder.with_quic().with_behaviour(|_| behaviour);
        builder
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build()
    } else {
        let Ok(builder) = builder.with_behaviour(|_| behaviour);
        builder
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build()
    };

    let mut listening = HashSet::new();
    let listen = std::iter::once(&config.listen_tcp).chain(config.listen_quic.as_ref());
    for addr in listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        listening.insert(id);
    }

    let (events, events_rx) = mpsc::channel(config.event_queue_len);
    let limits = Arc::new(Limits {
        max_message_bytes: config.max_message_bytes,
        max_request_bytes: config.max_request_bytes,
        request_timeout: config.request_timeout,
    });
    let mut driver = Driver {
        swarm,
        tx_topic: tx_topic.hash(),
        kad_protocol,
        bootstrap,
        events,
        metrics: metrics.clone(),
        peers: HashMap::new(),
        handlers: HashMap::new(),
        outbound: HashMap::new(),
        outbound_per_peer: HashMap::new(),
        inbound_per_peer: HashMap::new(),
        replies: FuturesUnordered::new(),
        config,
    };
    driver.wait_for_listeners(listening).await?;
    driver.dial_bootstrap();

    let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE_LEN);
    tokio::spawn(driver.run(commands_rx));
    let handle = NetHandle {
        commands,
        local_peer_id,
        limits,
        metrics,
    };
    Ok((handle, events_rx))
}

impl Driver {
    /// Drives the swarm until every listener has reported an address (or failed).
    async fn wait_for_listeners(
        &mut self,
        mut pending: HashSet<libp2p::core::transport::ListenerId>,
    ) -> Result<(), NetError> {
        let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
        tokio::pin!(deadline);
        while !pending.is_empty() {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    match &event {
                        SwarmEvent::NewListenAddr { listener_id, .. } => {
                            pending.remove(listener_id);
                        }
                        SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                            return Err(NetError::Listen {
                                addr: format!("{addresses:?}"),
                                reason: match reason {
                                    Ok(()) => "listener closed".into(),
                                    Err(e) => e.to_string(),
                                },
                            });
                        }
                        SwarmEvent::ListenerError { error, .. } => {
                            return Err(NetError::Listen {
                                addr: String::new(),
                                reason: error.to_string(),
                            });
                        }
                        _ => {}
                    }
                    self.on_swarm_event(event);
                }
                _ = &mut deadline => {
                    return Err(NetError::Listen {
                        addr: String::new(),
                        reason: format!("no listen address within {} s", LISTEN_TIMEOUT.as_secs()),
                    });
                }
            }
        }
        Ok(())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        const LONELY_REDIAL: Duration = Duration::from_secs(1);
        let mut discovery = tokio::time::interval(self.config.discovery_interval);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; bootstrap peers were just dialed.
        discovery.tick().await;
        // A node with no peer at all (e.g. it started before its bootstrap peers listened)
        // retries the bootstrap list every second rather than every discovery interval.
        let mut lonely = tokio::time::interval(LONELY_REDIAL);
        lonely.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        lonely.tick().await;
        let mut shutdown_done = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown { done }) => {
                        shutdown_done = Some(done);
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(reply) = self.replies.next(), if !self.replies.is_empty() => {
                    self.send_reply(reply);
                }
                _ = discovery.tick() => self.on_discovery_tick(),
                _ = lonely.tick() => self.on_discovery_tick(),
            }
        }
        tracing::info!(peer = %self.swarm.local_peer_id(), "network shutting down");
        // Dropping the driver closes every connection and fails every pending request with
        // `NetError::Shutdown` (their reply channels close).
        drop(self);
        if let Some(done) = shutdown_done {
            let _ = done.send(());
        }
    }

    fn emit(&self, event: NetEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => inc(&self.metrics.events_dropped_queue_full),
            // Nobody listens for events any more; that is the node's choice.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    fn dial_bootstrap(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "bootstrap dial: {e}");
            }
        }
        if !self.bootstrap.is_empty() {
            // Fails only without known peers, and the bootstrap peers were just added.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_discovery_tick(&mut self) {
        // Kademlia refreshes its routing table by itself; a node that lost every peer (or
        // started before its bootstrap peers) starts over from the bootstrap list, since
        // Kademlia forgets addresses that failed to dial.
        if self.peers.is_empty() {
            self.dial_bootstrap();
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { bytes, reply } => {
                let _ = reply.send(self.publish(bytes));
            }
            Command::Request {
                peer,
                protocol,
                bytes,
                reply,
            } => self.send_request(peer, protocol, bytes, reply),
            Command::Serve { protocol, reply } => {
                let _ = reply.send(self.serve(protocol));
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs { reply } => {
                let local = *self.swarm.local_peer_id();
                let addrs = self
                    .swarm
                    .listeners()
                    .map(|a| a.clone().with(Protocol::P2p(local)))
                    .collect();
                let _ = reply.send(addrs);
            }
            // Handled by the loop in `run`.
            Command::Shutdown { done } => {
                let _ = done.send(());
            }
        }
    }

    fn publish(&mut self, bytes: Vec<u8>) -> Result<Published, NetError> {
        let size_bytes = bytes.len();
        let result = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.tx_topic.clone(), bytes);
        match result {
            Ok(_) => {
                inc(&self.metrics.txs_published);
                Ok(Published::Sent)
            }
            Err(gossipsub::PublishError::Duplicate) => {
                inc(&self.metrics.txs_publish_duplicate);
                Ok(Published::Duplicate)
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                inc(&self.metrics.txs_publish_no_peers);
                Ok(Published::NoPeers)
            }
            Err(gossipsub::PublishError::MessageTooLarge) => {
                inc(&self.metrics.txs_publish_too_large);
                Err(NetError::MessageTooLarge {
                    size_bytes,
                    max_bytes: self.config.max_message_bytes,
                })
            }
            Err(e) => Err(NetError::Publish(e.to_string())),
        }
    }

    fn serve(&mut self, protocol: String) -> Result<mpsc::Receiver<InboundRequest>, NetError> {
        if self
            .handlers
            .get(&protocol)
            .is_some_and(|handler| !handler.is_closed())
        {
            return Err(NetError::ProtocolTaken { protocol });
        }
        let (sender, receiver) = mpsc::channel(self.config.handler_queue_len);
        self.handlers.insert(protocol, sender);
        Ok(receiver)
    }

    fn peer_infos(&mut self) -> Vec<PeerInfo> {
        let subscribed: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&self.tx_topic))
            .map(|(peer, _)| *peer)
            .collect();
        let mut infos: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, state)| PeerInfo {
                peer_id: *peer,
                addresses: state.connections.values().cloned().collect(),
                rtt: state.rtt,
                agent_version: state.agent_version.clone(),
                tx_topic: subscribed.contains(peer),
            })
            .collect();
        infos.sort_by_key(|info| info.peer_id);
        infos
    }

    fn send_request(
        &mut self,
        peer: PeerId,
        protocol: String,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    ) {
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(NetError::RequestFailed {
                peer,
                protocol,
                reason: "a node cannot send a request to itself".into(),
            }));
            return;
        }
        let limit = self.config.max_concurrent_requests_per_peer;
        let in_flight = self.outbound_per_peer.entry(peer).or_default();
        if *in_flight >= limit {
            let _ = reply.send(Err(NetError::TooManyRequests { peer, limit }));
            return;
        }
        *in_flight += 1;
        inc(&self.metrics.requests_sent);
        if !self.swarm.is_connected(&peer) {
            // Look the peer up in the DHT: if this dial fails for want of an address, a retry
            // finds one.
            self.swarm.behaviour_mut().kad.get_closest_peers(peer);
        }
        let request = Request {
            protocol: protocol.clone(),
            payload: bytes,
        };
        let id = self.swarm.behaviour_mut().rpc.send_request(&peer, request);
        self.outbound.insert(
            id,
            Outbound {
                peer,
                protocol,
                started: Instant::now(),
                reply,
            },
        );
    }

    fn finish_outbound(
        &mut self,
        id: OutboundRequestId,
        result: impl FnOnce(&Outbound) -> Result<Vec<u8>, NetError>,
    ) {
        let Some(outbound) = self.outbound.remove(&id) else {
            return;
        };
        if let Some(in_flight) = self.outbound_per_peer.get_mut(&outbound.peer) {
            *in_flight = in_flight.saturating_sub(1);
            if *in_flight == 0 {
                self.outbound_per_peer.remove(&outbound.peer);
            }
        }
        let result = result(&outbound);
        if let Err(e) = &result {
            inc(&self.metrics.requests_failed);
            if matches!(e, NetError::Timeout { .. }) {
                inc(&self.metrics.requests_timed_out);
            }
            tracing::debug!(peer = %outbound.peer, protocol = %outbound.protocol, "request failed: {e}");
        }
        let _ = outbound.reply.send(result);
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        inc(&self.metrics.requests_received);
        let refuse = |driver: &mut Driver, channel, response| {
            // An error means the requester is gone; nothing to tell it.
            let _ = driver
                .swarm
                .behaviour_mut()
                .rpc
                .send_response(channel, response);
        };
        let Some(handler) = self.handlers.get(&request.protocol).cloned() else {
            inc(&self.metrics.requests_rejected_unknown_protocol);
            return refuse(self, channel, Response::UnknownProtocol);
        };
        let in_flight = self.inbound_per_peer.get(&peer).copied().unwrap_or(0);
        if in_flight >= self.config.max_concurrent_requests_per_peer {
            inc(&self.metrics.requests_rejected_busy);
            return refuse(self, channel, Response::Busy);
        }
        let (reply, answer) = oneshot::channel();
        let request = InboundRequest {
            peer,
            protocol: request.protocol,
            bytes: request.payload,
            reply,
        };
        match handler.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                inc(&self.metrics.requests_rejected_busy);
                return refuse(self, channel, Response::Busy);
            }
            Err(TrySendError::Closed(request)) => {
                // The service dropped its receiver: it no longer serves the protocol.
                self.handlers.remove(&request.protocol);
                inc(&self.metrics.requests_rejected_unknown_protocol);
                return refuse(self, channel, Response::UnknownProtocol);
            }
        }
        *self.inbound_per_peer.entry(peer).or_default() += 1;
        let deadline = handler_deadline(self.config.request_timeout);
        let max_response_bytes = self.config.max_response_bytes;
        self.replies.push(
            async move {
                let response = match tokio::time::timeout(deadline, answer).await {
                    Ok(Ok(bytes)) if bytes.len() <= max_response_bytes => Response::Ok(bytes),
                    Ok(Ok(_)) => Response::TooLarge,
                    Ok(Err(_)) => Response::Dropped,
                    Err(_) => Response::Timeout,
                };
                Reply {
                    peer,
                    channel,
                    response,
                }
            }
            .boxed(),
        );
    }

    fn send_reply(&mut self, reply: Reply) {
        if let Some(in_flight) = self.inbound_per_peer.get_mut(&reply.peer) {
            *in_flight = in_flight.saturating_sub(1);
            if *in_flight == 0 {
                self.inbound_per_peer.remove(&reply.peer);
            }
        }
        if !matches!(reply.response, Response::Ok(_)) {
            inc(&self.metrics.requests_unanswered);
        }
        // An error means the request already timed out or the connection closed.
        let _ = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_response(reply.channel, reply.response);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => {
                if let (Ok(rtt), Some(state)) = (event.result, self.peers.get_mut(&event.peer)) {
                    state.rtt = Some(rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let state = self.peers.entry(peer_id).or_default();
                let first = state.connections.is_empty();
                state
                    .connections
                    .insert(connection_id, endpoint.get_remote_address().clone());
                if first {
                    self.update_peer_gauge();
                    tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "peer connected");
                    self.emit(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                let Some(state) = self.peers.get_mut(&peer_id) else {
                    return;
                };
                state.connections.remove(&connection_id);
                if state.connections.is_empty() {
                    self.peers.remove(&peer_id);
                    self.update_peer_gauge();
                    tracing::debug!(peer = %peer_id, "peer disconnected");
                    self.emit(NetEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, peer = %self.swarm.local_peer_id(), "listening");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, "dial failed: {error}");
            }
            _ => {}
        }
    }

    fn update_peer_gauge(&self) {
        self.metrics
            .peers_connected
            .store(self.peers.len() as u64, Ordering::Relaxed);
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let acceptance = if message.topic != self.tx_topic {
            gossipsub::MessageAcceptance::Reject
        } else if message.data.len() > self.config.max_message_bytes {
            inc(&self.metrics.txs_rejected_too_large);
            gossipsub::MessageAcceptance::Reject
        } else if message.data.is_empty() {
            inc(&self.metrics.txs_rejected_empty);
            gossipsub::MessageAcceptance::Reject
        } else {
            gossipsub::MessageAcceptance::Accept
        };
        let accepted = matches!(acceptance, gossipsub::MessageAcceptance::Accept);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if accepted {
            inc(&self.metrics.txs_received);
            self.emit(NetEvent::TxReceived {
                from: propagation_source,
                bytes: message.data,
            });
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.finish_outbound(request_id, |o| {
                    let (peer, protocol) = (o.peer, o.protocol.clone());
                    let waited_ms = millis(o.started.elapsed());
                    match response {
                        Response::Ok(bytes) => Ok(bytes),
                        Response::UnknownProtocol => {
                            Err(NetError::UnknownProtocol { peer, protocol })
                        }
                        Response::Busy => Err(NetError::Busy { peer, protocol }),
                        Response::Dropped => Err(NetError::NoResponse { peer, protocol }),
                        Response::TooLarge => Err(NetError::ResponseTooLarge { peer, protocol }),
                        Response::Timeout => Err(NetError::Timeout {
                            peer,
                            protocol,
                            waited_ms,
                        }),
                    }
                }),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                self.finish_outbound(request_id, |o| {
                    let (peer, protocol) = (o.peer, o.protocol.clone());
                    let waited_ms = millis(o.started.elapsed());
                    Err(match error {
                        request_response::OutboundFailure::DialFailure => {
                            NetError::DialFailure { peer }
                        }
                        request_response::OutboundFailure::Timeout => NetError::Timeout {
                            peer,
                            protocol,
                            waited_ms,
                        },
                        request_response::OutboundFailure::UnsupportedProtocols => {
                            NetError::UnsupportedPeer { peer }
                        }
                        request_response::OutboundFailure::Io(e)
                            if matches!(FrameError::of(&e), Some(FrameError::TooLarge { .. })) =>
                        {
                            NetError::ResponseTooLarge { peer, protocol }
                        }
                        // The responder stops reading a request it refuses (over its size
                        // limit, malformed) and drops the stream.
                        request_response::OutboundFailure::Io(e)
                            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                        {
                            NetError::Refused { peer, protocol }
                        }
                        request_response::OutboundFailure::ConnectionClosed => {
                            NetError::RequestFailed {
                                peer,
                                protocol,
                                reason: "connection closed before the response arrived".into(),
                            }
                        }
                        request_response::OutboundFailure::Io(e) => NetError::RequestFailed {
                            peer,
                            protocol,
                            reason: e.to_string().into(),
                        },
                    })
                });
            }
            // Requests that fail to decode never get here (the codec counts them).
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != self.config.identify_version() {
            inc(&self.metrics.peers_rejected_wrong_chain);
            tracing::info!(
                peer = %peer_id,
                theirs = %info.protocol_version,
                "disconnecting a peer of another chain or version"
            );
            self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        if let Some(state) = self.peers.get_mut(&peer_id) {
            state.agent_version = Some(info.agent_version.chars().take(128).collect());
        }
        // Kademlia learns the remote address of connections it dialed, not the listen
        // addresses of peers that dialed us; identify supplies those.
        if info.protocols.contains(&self.kad_protocol) {
            for addr in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        // A lookup started for a request to an unknown peer: remember where the peers it
        // found listen, so the request's retry can dial them.
        if let kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::GetClosestPeers(Ok(ok)),
            ..
        } = &event
        {
            for info in &ok.peers {
                for addr in &info.addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&info.peer_id, addr.clone());
                }
            }
            return;
        }
        if let kad::Event::RoutingUpdated {
            peer, is_new_peer, ..
        } = event
            && is_new_peer
            && !self.swarm.is_connected(&peer)
            && self.peers.len() < self.config.target_peers
        {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, "dial of discovered peer: {e}");
            }
        }
    }
}
