//! Non-validator nodes follow the chain by fetching finalized blocks with their certificates
//! from an upstream node's HTTP API, then verifying (re-executing, checking the state root and
//! the certificate) and applying them. The p2p issue replaces the transport, not the checks.

use crate::Node;
use crate::api_types::RawBlockResponse;
use depin_chain::ConsensusApp;
use depin_protocol::{Block, Finality};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Largest raw block response accepted from upstream (hex doubles the block size).
fn max_response_bytes(node: &Node) -> u64 {
    u64::from(node.chain().protocol().genesis().chain.max_block_bytes) * 2 + 64 * 1024
}

pub(crate) async fn follow_upstream(node: Arc<Node>, stop: Arc<AtomicBool>) {
    let interval_ms = node.chain().protocol().genesis().chain.block_interval_ms;
    let idle = Duration::from_millis((interval_ms / 2).clamp(50, 1000));
    while !stop.load(Ordering::SeqCst) {
        let n = node.clone();
        let step = tokio::task::spawn_blocking(move || fetch_and_apply_next(&n)).await;
        match step {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => tokio::time::sleep(idle).await,
            Ok(Err(e)) => {
                node.metrics.follow_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "following upstream failed");
                tokio::time::sleep(idle * 4).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "follow task panicked");
                tokio::time::sleep(idle * 4).await;
            }
        }
    }
}

/// Most blocks finalized through one descendant that a follower applies in one go.
const MAX_DESCENDANT_RUN: usize = 256;

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
        .limit(max_response_bytes(node))
        .read_json()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let max_block = node.chain().protocol().genesis().chain.max_block_bytes as usize;
    let block_bytes = hex::decode(&raw.block).map_err(|e| format!("block hex: {e}"))?;
    let block = Block::from_bytes(&block_bytes, max_block).map_err(|e| format!("block: {e}"))?;
    let finality_bytes = hex::decode(&raw.finality).map_err(|e| format!("finality hex: {e}"))?;
    let finality: Finality = depin_types::decode_bounded(&finality_bytes, 64 * 1024)
        .map_err(|e| format!("finality: {e}"))?;
    if block.header.height != height {
        return Err(format!(
            "upstream sent height {} for {height}",
            block.header.height
        ));
    }
    Ok(Some((block, finality)))
}

/// Fetches and applies the block after the head (and, for a block finalized through a
/// descendant, the run up to that descendant); `Ok(false)` when there is nothing newer yet.
fn fetch_and_apply_next(node: &Node) -> Result<bool, String> {
    let next = node.chain().head().height + 1;
    let Some((block, finality)) = fetch_raw(node, next)? else {
        return Ok(false);
    };
    if !matches!(finality, Finality::Descendant) {
        node.app
            .finalize(&block, &finality)
            .map_err(|e| format!("block {next}: {e}"))?;
        node.metrics.observe_block(node, &block);
        return Ok(true);
    }
    // The block has no certificate of its own: the first descendant with one finalizes it
    // through the parent links. Check that certificate before executing anything.
    let mut run = vec![block];
    let (anchor, anchor_finality) = loop {
        if run.len() > MAX_DESCENDANT_RUN {
            return Err(format!(
                "no certificate within {MAX_DESCENDANT_RUN} blocks of {next}"
            ));
        }
        let height = next + run.len() as u64;
        let Some((block, finality)) = fetch_raw(node, height)? else {
            return Ok(false);
        };
        let parent = run.last().map(|b| b.hash()).unwrap_or_default();
        if block.header.parent != parent {
            return Err(format!("block {height} does not link to its parent"));
        }
        match finality {
            Finality::Descendant => run.push(block),
            other => break (block, other),
        }
    };
    let anchor_valid = node
        .chain()
        .finality_is_valid(&anchor.hash(), anchor.header.height, &anchor_finality)
        .map_err(|e| e.to_string())?;
    if !anchor_valid {
        return Err(format!(
            "bad certificate for block {}",
            anchor.header.height
        ));
    }
    for block in run.iter().chain(std::iter::once(&anchor)) {
        let finality = if block.header.height == anchor.header.height {
            anchor_finality.clone()
        } else {
            Finality::Descendant
        };
        node.app
            .finalize_certified(block, &finality)
            .map_err(|e| format!("block {}: {e}", block.header.height))?;
        node.metrics.observe_block(node, block);
    }
    Ok(true)
}
