//! Owns: the daemon: config, wiring of chain, network and enabled services, the HTTP API, metrics.
//! Must not: hold protocol rules or a storage layout of its own.
//!
//! depin-node: the daemon. Wires the chain, the mempool and (for validators) the block
//! producer together, follows an upstream node when it is not a validator, and serves the
//! HTTP API, the OpenAPI document and Prometheus metrics.
//!
//! It holds no protocol rules and no storage layout of its own: those belong to
//! depin-protocol and depin-chain.

mod api;
pub mod api_types;
mod blobs;
mod compute;
pub mod config;
mod coverage;
mod follow;
mod metrics;
mod openapi;
mod own_tx;
mod render;
mod services;
mod storage;
pub mod video;

pub use api::router;
pub use config::{ConfigError, NodeConfig, Role};
pub use metrics::NodeMetrics;

use depin_chain::consensus::process::{ProcessConfig, public_key, run_validator};
use depin_chain::{Chain, ChainApp, ChainError, Mempool, MempoolLimits};
use depin_protocol::{Genesis, Protocol};
use depin_types::Keypair;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("genesis {path}: {source}")]
    GenesisRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("genesis {path}: {source}")]
    Genesis {
        path: String,
        #[source]
        source: depin_protocol::GenesisError,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(
        "this node's key {0} is not a validator candidate; bond the validator minimum and run `depin stake register-validator`, or run it as a provider or full node"
    )]
    NotAValidator(String),
    #[error("piece store: {0}")]
    PieceStore(#[from] depin_storage::store::PieceStoreError),
    #[error("blob store: {0}")]
    Blobs(#[from] depin_blobs::store::BlobError),
    #[error("compute runner: {0}")]
    Runner(#[from] depin_compute::runner::RunError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        cause: std::io::Error,
    },
    #[error("consensus: {0}")]
    Consensus(#[from] depin_chain::consensus::validator::ValidatorError),
    #[error("consensus thread panicked")]
    ConsensusPanicked,
    #[error("service network: {0}")]
    Net(#[from] depin_net::NetError),
    #[error("{what} {value:?} is not a multiaddr: {source}")]
    NetAddress {
        what: &'static str,
        value: String,
        #[source]
        source: depin_net::MultiaddrError,
    },
}

/// Everything the API handlers and background tasks share.
pub struct Node {
    pub app: Arc<ChainApp>,
    pub config: NodeConfig,
    pub key: Keypair,
    pub metrics: NodeMetrics,
    pub http: ureq::Agent,
    /// Transactions this follower handed to its upstream, so it can say "pending" for them
    /// until the block that includes them arrives.
    forwarded: std::sync::Mutex<RecentHashes>,
    /// The libp2p service network, once started (see `NodeConfig::net_listen`).
    pub net: std::sync::OnceLock<depin_net::NetHandle>,
    /// Largest response on the service network: a batch of blocks must fit.
    net_max_response: usize,
    /// The storage provider's piece store, when the node offers storage.
    pub pieces: std::sync::OnceLock<Arc<depin_storage::store::PieceStore>>,
    /// The provider's blob store and server, shared by the services that move bytes.
    pub(crate) blobs: std::sync::OnceLock<Arc<blobs::NodeBlobs>>,
    /// Held while one of the node's own transactions is submitted and waited for.
    own_tx: tokio::sync::Mutex<()>,
}

/// A bounded set of recent hashes (oldest forgotten first).
#[derive(Debug, Default)]
struct RecentHashes {
    set: std::collections::HashSet<depin_types::Hash>,
    order: std::collections::VecDeque<depin_types::Hash>,
}

const MAX_FORWARDED_REMEMBERED: usize = 10_000;

impl Node {
    pub(crate) fn remember_forwarded(&self, hash: depin_types::Hash) {
        let mut recent = self.forwarded.lock().unwrap_or_else(|p| p.into_inner());
        if recent.set.insert(hash) {
            recent.order.push_back(hash);
        }
        while recent.order.len() > MAX_FORWARDED_REMEMBERED {
            if let Some(old) = recent.order.pop_front() {
                recent.set.remove(&old);
            }
        }
    }

    pub(crate) fn was_forwarded(&self, hash: &depin_types::Hash) -> bool {
        let recent = self.forwarded.lock().unwrap_or_else(|p| p.into_inner());
        recent.set.contains(hash)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({}, {:?})", self.key.address(), self.config.role)
    }
}

impl Node {
    /// Opens the chain and prepares a node without starting any task.
    pub fn open(config: NodeConfig) -> Result<Node, NodeError> {
        let path = || config.genesis_file.display().to_string();
        let genesis_text = std::fs::read_to_string(&config.genesis_file).map_err(|source| {
            NodeError::GenesisRead {
                path: path(),
                source,
            }
        })?;
        let genesis = Genesis::from_toml(&genesis_text).map_err(|source| NodeError::Genesis {
            path: path(),
            source,
        })?;
        let protocol = Protocol::new(genesis).map_err(|source| NodeError::Genesis {
            path: path(),
            source,
        })?;
        let key = config::read_key_file(&config.key_file)?;
        let genesis_limits = protocol.genesis().chain.max_block_bytes;
        let chain = Arc::new(Chain::open(&config.data_dir, protocol)?);
        if config.role == Role::Validator
            && !chain
                .validator_candidates()?
                .iter()
                .any(|c| c.address == key.address())
        {
            return Err(NodeError::NotAValidator(key.address().to_string()));
        }
        let app = Arc::new(ChainApp::new(chain, Mempool::new(MempoolLimits::default())));
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Node {
            app,
            config,
            key,
            metrics: NodeMetrics::default(),
            http,
            forwarded: std::sync::Mutex::new(RecentHashes::default()),
            net: std::sync::OnceLock::new(),
            net_max_response: net_max_response(genesis_limits),
            pieces: std::sync::OnceLock::new(),
            blobs: std::sync::OnceLock::new(),
            own_tx: tokio::sync::Mutex::new(()),
        })
    }

    pub fn chain(&self) -> &Arc<Chain> {
        &self.app.chain
    }
}

/// A response on the service network holds at least one whole block with its certificate.
fn net_max_response(max_block_bytes: u32) -> usize {
    (max_block_bytes as usize + 256 * 1024).max(16 << 20)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(config: NodeConfig) -> Result<(), NodeError> {
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    };
    run_until(config, shutdown).await
}

/// Runs a node until `shutdown` completes. The last block is always either fully committed
/// or not at all, so stopping at any point is safe.
pub async fn run_until(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let api_listen = config.api_listen;
    // Opening reads a few records from redb; blocking the runtime briefly at start is fine.
    let node = Arc::new(Node::open(config)?);
    let head = node.chain().head();
    tracing::info!(
        role = node.config.role.as_str(),
        address = %node.key.address(),
        height = head.height,
        state_root = %head.state_root,
        "node started"
    );
    if node.config.net_listen.is_some() {
        start_service_network(&node).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    blobs::start(&node)?;
    for service in services::registered() {
        service.start(&node, stop.clone())?;
    }
    // A consensus failure (e.g. its port is taken) stops the whole node.
    let fatal = Arc::new(tokio::sync::Notify::new());
    let worker = match node.config.role {
        Role::Validator => {
            let process = consensus_config(&node)?;
            tokio::spawn(run_consensus(
                node.clone(),
                process,
                stop.clone(),
                fatal.clone(),
            ))
        }
        Role::Provider | Role::Full => {
            let (node, stop) = (node.clone(), stop.clone());
            tokio::spawn(async move {
                match node.net.get().cloned() {
                    Some(net) => {
                        let max = node.net_max_response;
                        follow::follow_network(node, net, max, stop).await
                    }
                    None => follow::follow_upstream(node, stop).await,
                }
                Ok(())
            })
        }
    };
    let listener = tokio::net::TcpListener::bind(api_listen)
        .await
        .map_err(|cause| NodeError::Listen {
            addr: api_listen,
            cause,
        })?;
    tracing::info!(api = %api_listen, "API listening");
    let failed = fatal.clone();
    let served = axum::serve(listener, router(node.clone()))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {},
                _ = failed.notified() => {},
            }
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    let consensus = worker.await.unwrap_or(Ok(()));
    tracing::info!(height = node.chain().head().height, "node stopped");
    served.map_err(|source| NodeError::Io {
        what: "API server",
        source,
    })?;
    consensus
}

/// Joins the libp2p service network and feeds gossiped transactions to a validator's mempool.
async fn start_service_network(node: &Arc<Node>) -> Result<(), NodeError> {
    let Some(listen) = node.config.net_listen else {
        return Ok(());
    };
    let genesis = node.chain().protocol().genesis();
    let mut config = depin_net::NetConfig::new(node.key.clone(), genesis.chain_id.clone());
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) => format!("/ip4/{v4}"),
        std::net::IpAddr::V6(v6) => format!("/ip6/{v6}"),
    };
    let listen_tcp = format!("{ip}/tcp/{}", listen.port());
    config.listen_tcp = listen_tcp
        .parse::<depin_net::Multiaddr>()
        .map_err(|source| NodeError::NetAddress {
            what: "net_listen",
            value: listen_tcp.clone(),
            source,
        })?;
    config.listen_quic = format!("{ip}/udp/{}/quic-v1", listen.port()).parse().ok();
    config.bootstrap = node
        .config
        .bootstrap
        .iter()
        .map(|b| {
            b.parse::<depin_net::Multiaddr>()
                .map_err(|source| NodeError::NetAddress {
                    what: "bootstrap",
                    value: b.clone(),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    config.max_message_bytes = genesis.chain.max_tx_bytes as usize;
    config.max_response_bytes = node.net_max_response;
    // Storage pieces travel in 1 MiB parts; video segments whole.
    config.max_request_bytes =
        depin_storage::protocol::MAX_MESSAGE_BYTES.max(video::wire::MAX_REQUEST_BYTES);
    let (handle, mut events) = depin_net::Network::start(config).await?;
    tracing::info!(peer_id = %handle.local_peer_id(), listen = %listen, "service network started");
    tokio::spawn(follow::serve_blocks(
        node.clone(),
        handle.clone(),
        node.net_max_response,
    ));
    let _ = node.net.set(handle);
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let depin_net::NetEvent::TxReceived { bytes, .. } = event
                && node.config.role == Role::Validator
            {
                let app = node.app.clone();
                // Duplicates and stale transactions are refused by the mempool; nothing to do.
                let _ = tokio::task::spawn_blocking(move || app.submit_bytes(&bytes)).await;
            }
        }
    });
    Ok(())
}

/// How often, and how many times, a transaction is offered to the gossip network while no
/// peer is subscribed yet (right after start the mesh is still forming).
const GOSSIP_RETRY: Duration = Duration::from_millis(500);
const GOSSIP_ATTEMPTS: usize = 20;

/// Gossips transaction bytes this node accepted, so every validator's mempool gets them.
/// Runs in the background: the client's answer does not wait for the network.
pub(crate) async fn gossip_tx(node: &Node, bytes: Vec<u8>) {
    let Some(net) = node.net.get().cloned() else {
        return;
    };
    tokio::spawn(async move {
        for _ in 0..GOSSIP_ATTEMPTS {
            match net.publish_tx(bytes.clone()).await {
                Ok(depin_net::Published::NoPeers) => tokio::time::sleep(GOSSIP_RETRY).await,
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "transaction not gossiped");
                    return;
                }
            }
        }
    });
}

/// The consensus process of a validator: its key, its address among the validator set's.
fn consensus_config(node: &Node) -> Result<ProcessConfig, NodeError> {
    let genesis = node.chain().protocol().genesis();
    let listed = node.config.validator_peer_addresses()?;
    // Validators that registered on chain publish their own addresses; the configured list
    // covers the genesis set.
    let mut peers = Vec::new();
    let me = node.key.address();
    for (validator, addr) in listed.iter().filter(|(v, _)| **v != me) {
        let key = public_key(validator)?;
        peers.push((key, *addr));
    }
    let key = public_key(&me)?;
    peers.push((key, node.config.p2p_listen));
    Ok(ProcessConfig {
        secret_key: node.key.secret_bytes(),
        listen: node.config.p2p_listen,
        peers,
        storage_dir: node.config.data_dir.join("consensus"),
        chain_id: genesis.chain_id.clone(),
        max_block_bytes: genesis.chain.max_block_bytes as usize,
        block_interval: Duration::from_millis(genesis.chain.block_interval_ms),
        worker_threads: 2,
    })
}

/// Runs simplex + marshal on its own thread and runtime (commonware's tokio runner), and
/// records metrics for every block it finalizes.
async fn run_consensus(
    node: Arc<Node>,
    process: ProcessConfig,
    stop: Arc<AtomicBool>,
    fatal: Arc<tokio::sync::Notify>,
) -> Result<(), NodeError> {
    let app = node.app.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("consensus".into())
        .spawn(move || run_validator(process, app, thread_stop))
        .map_err(|source| NodeError::Io {
            what: "consensus thread",
            source,
        })?;
    let mut observed = node.chain().head().height;
    while !stop.load(Ordering::SeqCst) && !thread.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let evidence = node.app.take_evidence();
        if !evidence.is_empty() {
            let reporter = node.clone();
            tokio::spawn(async move { own_tx::report_equivocations(&reporter, evidence).await });
        }
        let head = node.chain().head().height;
        while observed < head {
            observed += 1;
            if let Ok(Some(block)) = node.chain().block_by_height(observed) {
                node.metrics.observe_block(&node, &block);
            }
        }
    }
    let result = tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|_| NodeError::ConsensusPanicked)?;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "consensus stopped");
            fatal.notify_one();
            Err(NodeError::Consensus(e))
        }
        Err(_) => {
            fatal.notify_one();
            Err(NodeError::ConsensusPanicked)
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tidy;
