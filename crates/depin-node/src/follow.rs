//! Non-validator nodes follow the chain: they fetch finalized blocks with their certificates,
//! verify them (re-execute, check the state root and the quorum certificate against the
//! epoch's validator set) and apply them. The transport is the libp2p service network
//! (request-response protocol [`BLOCK_PROTOCOL`], any connected peer that has the blocks), or
//! an upstream node's HTTP API when the node has no service network.

use crate::Node;
use crate::api_types::RawBlockResponse;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_chain::ConsensusApp;
use depin_protocol::{Block, Finality};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Request-response protocol serving finalized blocks to followers.
pub(crate) const BLOCK_PROTOCOL: &str = "chain/blocks/1";

/// Most blocks one request asks for, and one response carries.
const MAX_BLOCKS_PER_REQUEST: u16 = 32;

/// Largest encoded finality (a quorum certificate of up to a few hundred validators).
const MAX_FINALITY_BYTES: usize = 64 * 1024;

/// Most blocks finalized through one descendant that a follower holds before applying them.
const MAX_DESCENDANT_RUN: usize = 256;

/// Asks for finalized blocks `from ..= from + count - 1`.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub(crate) struct BlocksRequest {
    pub from: u64,
    pub count: u16,
}

/// Consecutive finalized blocks from the requested height (fewer when the server's head is
/// lower), each as canonical block bytes and finality bytes.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
pub(crate) struct BlocksResponse {
    pub head: u64,
    pub blocks: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How long a follower waits for one peer's blocks before asking another.
const BLOCK_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn idle_delay(node: &Node) -> Duration {
    let interval_ms = node.chain().protocol().genesis().chain.block_interval_ms;
    Duration::from_millis((interval_ms / 2).clamp(50, 1000))
}

/// Takes fetched blocks in height order and applies them once they are proven final: a block
/// with its own certificate at once, a run finalized through a descendant when the first
/// descendant with a certificate arrives (that certificate is checked before anything of the
/// run is executed).
#[derive(Default)]
struct Acceptor {
    run: Vec<Block>,
}

impl Acceptor {
    /// The height of the next block to fetch.
    fn next_height(&self, node: &Node) -> u64 {
        node.chain().head().height + 1 + self.run.len() as u64
    }

    fn accept(&mut self, node: &Node, block: Block, finality: Finality) -> Result<(), String> {
        let height = block.header.height;
        let expected = self.next_height(node);
        if height != expected {
            return Err(format!("got block {height}, expected {expected}"));
        }
        let parent = self
            .run
            .last()
            .map(|b| b.hash())
            .unwrap_or_else(|| node.chain().head().hash);
        if block.header.parent != parent {
            self.run.clear();
            return Err(format!("block {height} does not link to its parent"));
        }
        if matches!(finality, Finality::Descendant) {
            if self.run.len() >= MAX_DESCENDANT_RUN {
                self.run.clear();
                return Err(format!(
                    "no certificate within {MAX_DESCENDANT_RUN} blocks of {}",
                    height - MAX_DESCENDANT_RUN as u64
                ));
            }
            self.run.push(block);
            return Ok(());
        }
        if self.run.is_empty() {
            node.app
                .finalize(&block, &finality)
                .map_err(|e| format!("block {height}: {e}"))?;
            node.metrics.observe_block(node, &block);
            return Ok(());
        }
        let valid = node
            .chain()
            .finality_is_valid(&block.hash(), height, &finality)
            .map_err(|e| e.to_string())?;
        if !valid {
            self.run.clear();
            return Err(format!("bad certificate for block {height}"));
        }
        for b in std::mem::take(&mut self.run) {
            node.app
                .finalize_certified(&b, &Finality::Descendant)
                .map_err(|e| format!("block {}: {e}", b.header.height))?;
            node.metrics.observe_block(node, &b);
        }
        node.app
            .finalize_certified(&block, &finality)
            .map_err(|e| format!("block {height}: {e}"))?;
        node.metrics.observe_block(node, &block);
        Ok(())
    }
}

fn decode_pair(node: &Node, block: &[u8], finality: &[u8]) -> Result<(Block, Finality), String> {
    let max_block = node.chain().protocol().genesis().chain.max_block_bytes as usize;
    let block = Block::from_bytes(block, max_block).map_err(|e| format!("block: {e}"))?;
    let finality: Finality = depin_types::decode_bounded(finality, MAX_FINALITY_BYTES)
        .map_err(|e| format!("finality: {e}"))?;
    Ok((block, finality))
}

/// Runs one fetch-and-apply step off the async runtime (it executes blocks and may block on
/// HTTP), handing the acceptor back; a panicking step starts the acceptor over.
async fn blocking_step<T: Send + 'static>(
    node: &Arc<Node>,
    mut acceptor: Acceptor,
    step: impl FnOnce(&Node, &mut Acceptor) -> Result<T, String> + Send + 'static,
) -> (Acceptor, Result<T, String>) {
    let n = node.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let result = step(&n, &mut acceptor);
        (acceptor, result)
    })
    .await;
    ran.unwrap_or_else(|e| {
        tracing::error!(error = %e, "follow task panicked");
        (Acceptor::default(), Err("panicked".into()))
    })
}

// ---- libp2p -------------------------------------------------------------------------------

/// Answers [`BLOCK_PROTOCOL`] requests from this node's finalized chain.
pub(crate) async fn serve_blocks(node: Arc<Node>, net: depin_net::NetHandle, max_response: usize) {
    let mut requests = match net.serve(BLOCK_PROTOCOL).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve blocks on the service network");
            return;
        }
    };
    while let Some(request) = requests.recv().await {
        let Ok(asked) = depin_types::decode_bounded::<BlocksRequest>(&request.bytes, 64) else {
            node.metrics
                .sync_bad_requests
                .fetch_add(1, Ordering::Relaxed);
            // Dropping the reply tells the peer no answer is coming.
            continue;
        };
        let n = node.clone();
        let answer = tokio::task::spawn_blocking(move || blocks_from(&n, &asked, max_response))
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(response) = answer {
            node.metrics
                .sync_blocks_served
                .fetch_add(response.blocks.len() as u64, Ordering::Relaxed);
            request.respond(depin_types::encode(&response));
        }
    }
}

fn blocks_from(
    node: &Node,
    asked: &BlocksRequest,
    max_response: usize,
) -> Result<BlocksResponse, depin_chain::ChainError> {
    let head = node.chain().head().height;
    let mut blocks = Vec::new();
    let mut size = 64usize;
    let count = asked.count.min(MAX_BLOCKS_PER_REQUEST);
    for height in asked.from..asked.from.saturating_add(u64::from(count)) {
        if height > head {
            break;
        }
        let Some((block, finality)) = node.chain().block_bytes_with_finality(height)? else {
            break;
        };
        size += block.len() + finality.len() + 16;
        if size > max_response && !blocks.is_empty() {
            break;
        }
        blocks.push((block, finality));
    }
    Ok(BlocksResponse { head, blocks })
}

/// Follows the chain over the service network, asking connected peers in turn.
pub(crate) async fn follow_network(
    node: Arc<Node>,
    net: depin_net::NetHandle,
    max_response: usize,
    stop: Arc<AtomicBool>,
) {
    let idle = idle_delay(&node);
    let mut acceptor = Some(Acceptor::default());
    let mut turn = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let peers = net.peers().await;
        if peers.is_empty() {
            tokio::time::sleep(idle).await;
            continue;
        }
        turn = turn.wrapping_add(1);
        let peer = peers[turn % peers.len()].peer_id;
        let Some(current) = acceptor.take() else {
            return;
        };
        let from = current.next_height(&node);
        let request = depin_types::encode(&BlocksRequest {
            from,
            count: MAX_BLOCKS_PER_REQUEST,
        });
        // A slow or stuck peer must not hold the follower back for the network's whole
        // request timeout: the next peer is asked instead.
        let answer = tokio::time::timeout(
            BLOCK_REQUEST_TIMEOUT.max(idle * 8),
            net.request(peer, BLOCK_PROTOCOL, request),
        )
        .await;
        let bytes = match answer {
            Ok(Ok(bytes)) => bytes,
            failed => {
                if let Ok(Err(e)) = failed {
                    tracing::debug!(error = %e, %peer, "block request failed");
                } else {
                    tracing::debug!(%peer, "block request timed out");
                }
                acceptor = Some(current);
                tokio::time::sleep(idle / peers.len().max(1) as u32).await;
                continue;
            }
        };
        let (back, result) = blocking_step(&node, current, move |n, acceptor| {
            apply_response(n, acceptor, &bytes, max_response)
        })
        .await;
        acceptor = Some(back);
        match result {
            Ok(0) => tokio::time::sleep(idle / peers.len().max(1) as u32).await,
            Ok(_) => {}
            Err(e) => {
                node.metrics.follow_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, %peer, "bad blocks from peer");
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// Applies a [`BlocksResponse`]; returns how many blocks it carried.
fn apply_response(
    node: &Node,
    acceptor: &mut Acceptor,
    bytes: &[u8],
    max_response: usize,
) -> Result<usize, String> {
    let response: BlocksResponse =
        depin_types::decode_bounded(bytes, max_response).map_err(|e| format!("response: {e}"))?;
    if response.blocks.len() > usize::from(MAX_BLOCKS_PER_REQUEST) {
        return Err(format!("{} blocks in one response", response.blocks.len()));
    }
    let count = response.blocks.len();
    for (block, finality) in &response.blocks {
        let (block, finality) = decode_pair(node, block, finality)?;
        acceptor.accept(node, block, finality)?;
    }
    Ok(count)
}

// ---- HTTP ---------------------------------------------------------------------------------

/// Largest raw block response accepted from upstream (hex doubles the block size).
fn max_http_response_bytes(node: &Node) -> u64 {
    u64::from(node.chain().protocol().genesis().chain.max_block_bytes) * 2 + 64 * 1024
}

/// Follows an upstream node's HTTP API, one block per request.
pub(crate) async fn follow_upstream(node: Arc<Node>, stop: Arc<AtomicBool>) {
    let idle = idle_delay(&node);
    let mut acceptor = Some(Acceptor::default());
    while !stop.load(Ordering::SeqCst) {
        let Some(current) = acceptor.take() else {
            return;
        };
        let (back, result) = blocking_step(&node, current, |n, acceptor| {
            let Some((block, finality)) = fetch_raw(n, acceptor.next_height(n))? else {
                return Ok(false);
            };
            acceptor.accept(n, block, finality).map(|()| true)
        })
        .await;
        acceptor = Some(back);
        match result {
            Ok(true) => continue,
            Ok(false) => tokio::time::sleep(idle).await,
            Err(e) => {
                node.metrics.follow_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "following upstream failed");
                tokio::time::sleep(idle * 4).await;
            }
        }
    }
}

/// Fetches one finalized block and its certificate; `None` when upstream does not have it yet.
fn fetch_raw(node: &Node, height: u64) -> Result<Option<(Block, Finality)>, String> {
    let Some(upstream) = node.config.upstream.as_deref() else {
        return Err("no upstream configured".into());
    };
    let url = format!("{}/v1/blocks/{height}/raw", upstream.trim_end_matches('/'));
    let mut response = node
        .http
        .get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if response.status() == 404 {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let raw: RawBlockResponse = response
        .body_mut()
        .with_config()
        .limit(max_http_response_bytes(node))
        .read_json()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let block_bytes = hex::decode(&raw.block).map_err(|e| format!("block hex: {e}"))?;
    let finality_bytes = hex::decode(&raw.finality).map_err(|e| format!("finality hex: {e}"))?;
    let (block, finality) = decode_pair(node, &block_bytes, &finality_bytes)?;
    if block.header.height != height {
        return Err(format!(
            "upstream sent height {} for {height}",
            block.header.height
        ));
    }
    Ok(Some((block, finality)))
}
