//! Transactions a node signs with its own key (a provider's confirmations, proofs, job
//! commitments and reveals): one at a time, each waited for until it is in a block.

use crate::Node;
use depin_protocol::{Action, Transaction};
use depin_types::{Hash, ServiceKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Signs `action` with the node's key at its next nonce and the minimum fee, and hands it to
/// the validators (directly on a validator, else by gossip and the upstream if any).
pub(crate) async fn submit_own(node: &Arc<Node>, action: Action) -> Result<Hash, String> {
    let chain = node.chain();
    let nonce = own_nonce(node);
    let mut tx = Transaction {
        chain_id: chain.protocol().genesis().chain_id.clone(),
        sender: node.key.address(),
        nonce,
        fee: depin_types::Amount::ZERO,
        action,
    };
    let size = tx.clone().sign(&node.key).size_bytes();
    tx.fee = chain.protocol().min_fee(size);
    let signed = tx.sign(&node.key);
    let hash = signed.hash();
    let bytes = signed.to_bytes();
    if node.config.role == crate::Role::Validator {
        let app = node.app.clone();
        let local = bytes.clone();
        tokio::task::spawn_blocking(move || app.submit_bytes(&local))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    } else {
        node.remember_forwarded(hash);
        if let Some(upstream) = node.config.upstream.clone() {
            let http = node.http.clone();
            let body = serde_json::json!({ "tx": hex::encode(&bytes) });
            let _ = tokio::task::spawn_blocking(move || {
                http.post(&format!("{}/v1/txs", upstream.trim_end_matches('/')))
                    .send_json(body)
            })
            .await;
        }
    }
    crate::gossip_tx(node, bytes).await;
    Ok(hash)
}

/// The node account's next nonce as its copy of the chain sees it.
fn own_nonce(node: &Node) -> u64 {
    node.chain()
        .account(&node.key.address())
        .ok()
        .flatten()
        .map(|a| a.nonce)
        .unwrap_or(0)
}

/// Waits until the node's account nonce moves past `nonce` (its transaction is in a block),
/// at most `limit`.
async fn wait_committed(node: &Node, nonce: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if own_nonce(node) > nonce {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub(crate) async fn submit_and_wait(
    node: &Arc<Node>,
    service: ServiceKind,
    payload: Vec<u8>,
) -> bool {
    submit_action_and_wait(node, Action::Service { service, payload }).await
}

/// Puts the equivocation evidence consensus queued on chain, one report at a time.
pub(crate) async fn report_equivocations(node: &Arc<Node>, queued: Vec<Vec<u8>>) {
    for evidence in queued {
        submit_action_and_wait(node, Action::ReportEquivocation { evidence }).await;
    }
}

/// Submits one of the node's own transactions and waits until it is in a block.
pub(crate) async fn submit_action_and_wait(node: &Arc<Node>, action: Action) -> bool {
    // One transaction of the node's own at a time: workers share the account's nonce.
    let _turn = node.own_tx.lock().await;
    let nonce = own_nonce(node);
    let kind = action.kind();
    match submit_own(node, action).await {
        Ok(hash) => {
            let interval = node.chain().protocol().genesis().chain.block_interval_ms;
            let committed =
                wait_committed(node, nonce, Duration::from_millis(interval * 10 + 5_000)).await;
            if !committed {
                tracing::warn!(%hash, %kind, "transaction not committed in time");
            }
            committed
        }
        Err(e) => {
            tracing::warn!(error = %e, %kind, "transaction refused");
            false
        }
    }
}
