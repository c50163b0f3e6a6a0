//! depin-node: the daemon. Wires the chain, the mempool and (for validators) the block
//! producer together, follows an upstream node when it is not a validator, and serves the
//! HTTP API, the OpenAPI document and Prometheus metrics.
//!
//! It holds no protocol rules and no storage layout of its own: those belong to
//! depin-protocol and depin-chain.

mod api;
pub mod api_types;
pub mod config;
mod follow;
mod metrics;
mod openapi;

pub use api::router;
pub use config::{ConfigError, NodeConfig, Role};
pub use metrics::NodeMetrics;

use depin_chain::{Chain, ChainApp, ChainError, Mempool, MempoolLimits, SoloProducer};
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
    #[error("genesis {path}: {message}")]
    Genesis { path: String, message: String },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("this node's key {0} is not in the validator set; run it as a provider or full node")]
    NotAValidator(String),
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("server: {0}")]
    Server(String),
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
        let genesis_text =
            std::fs::read_to_string(&config.genesis_file).map_err(|e| NodeError::Genesis {
                path: config.genesis_file.display().to_string(),
                message: e.to_string(),
            })?;
        let genesis = Genesis::from_toml(&genesis_text).map_err(|e| NodeError::Genesis {
            path: config.genesis_file.display().to_string(),
            message: e.to_string(),
        })?;
        let protocol = Protocol::new(genesis).map_err(|e| NodeError::Genesis {
            path: config.genesis_file.display().to_string(),
            message: e.to_string(),
        })?;
        let key = config::read_key_file(&config.key_file)?;
        let chain = Arc::new(Chain::open(&config.data_dir, protocol)?);
        if config.role == Role::Validator && !chain.validators()?.contains(&key.address()) {
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
        })
    }

    pub fn chain(&self) -> &Arc<Chain> {
        &self.app.chain
    }
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
    let stop = Arc::new(AtomicBool::new(false));
    let worker = match node.config.role {
        Role::Validator => tokio::spawn(produce_blocks(node.clone(), stop.clone())),
        Role::Provider | Role::Full => {
            tokio::spawn(follow::follow_upstream(node.clone(), stop.clone()))
        }
    };
    let listener = tokio::net::TcpListener::bind(api_listen)
        .await
        .map_err(|cause| NodeError::Listen {
            addr: api_listen,
            cause,
        })?;
    tracing::info!(api = %api_listen, "API listening");
    let served = axum::serve(listener, router(node.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    stop.store(true, Ordering::SeqCst);
    let _ = worker.await;
    tracing::info!(height = node.chain().head().height, "node stopped");
    served.map_err(|e| NodeError::Server(e.to_string()))
}

/// The single-validator engine loop: one block per genesis interval.
async fn produce_blocks(node: Arc<Node>, stop: Arc<AtomicBool>) {
    let interval_ms = node.chain().protocol().genesis().chain.block_interval_ms;
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let producer = Arc::new(SoloProducer::new(node.app.clone(), node.key.clone()));
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let producer = producer.clone();
        let result = tokio::task::spawn_blocking(move || producer.produce(now_ms())).await;
        match result {
            Ok(Ok(block)) => node.metrics.observe_block(&node, &block),
            Ok(Err(e)) => tracing::error!(error = %e, "block production failed"),
            Err(e) => tracing::error!(error = %e, "block production task panicked"),
        }
    }
}

#[cfg(test)]
mod tests;
