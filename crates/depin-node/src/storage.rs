//! A storage provider inside the node: the piece store, the piece protocol on the service
//! network, and a worker that confirms stored pieces on chain, answers each epoch's
//! challenges with proofs, and deletes pieces the chain no longer assigns to this node.

use crate::Node;
use crate::api::{ApiError, ApiResult, NodeState, ServiceRoutes, parse_address};
use crate::api_types::{
    DealResponse, DealsResponse, PieceView, SegmentView, StorageProviderResponse,
};
use crate::openapi::{BAD_REQUEST, object, ok_response, operation, path_param, query_param};
use axum::Json;
use axum::extract::{Path, Query, State};
use depin_protocol::storage::{
    Deal, DealStatus, Piece, PieceProof, PieceRef, PieceState, StorageParams, StorageTx,
    challenge_chunk, keys,
};
use depin_storage::provider::{Assignments, PieceServer, serve};
use depin_storage::store::PieceStore;
use depin_types::Hash;
use serde::Deserialize;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Reads piece assignments from the node's chain.
struct ChainAssignments(Arc<Node>);

impl Assignments for ChainAssignments {
    fn piece(&self, piece: &PieceRef) -> Option<(Piece, u64)> {
        let chain = self.0.chain();
        let record: Piece = chain
            .service_record(depin_protocol::storage::SERVICE, &keys::piece(piece))
            .ok()
            .flatten()?;
        let deal: Deal = chain
            .service_record(depin_protocol::storage::SERVICE, &keys::deal(&piece.deal))
            .ok()
            .flatten()?;
        let info = deal.segments.get(piece.segment as usize)?;
        Some((record, info.piece_bytes))
    }

    fn deal_owner(&self, deal: &Hash) -> Option<depin_types::Address> {
        let deal: Deal = self
            .0
            .chain()
            .service_record(depin_protocol::storage::SERVICE, &keys::deal(deal))
            .ok()
            .flatten()?;
        Some(deal.owner)
    }
}

/// Most proofs in one transaction (each about 1.5 KiB; transactions are at most 64 KiB).
const PROOFS_PER_TX: usize = 24;

/// Starts the provider side of storage when the node offers capacity and has a network.
fn start(node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), crate::NodeError> {
    let capacity = node.config.storage_capacity_bytes;
    let Some(net) = node.net.get().cloned() else {
        return Ok(());
    };
    if capacity == 0 {
        return Ok(());
    }
    let dir = node
        .config
        .storage_dir
        .clone()
        .unwrap_or_else(|| node.config.data_dir.join("storage"));
    let store = Arc::new(PieceStore::open(&dir, capacity)?);
    let _ = node.pieces.set(store.clone());
    let (server, stored) = PieceServer::new(
        store.clone(),
        node.key.address(),
        Arc::new(ChainAssignments(node.clone())),
    );
    tokio::spawn(serve(server, net));
    tokio::spawn(worker(node.clone(), store, stored, stop));
    tracing::info!(dir = %dir.display(), capacity, "storage provider started");
    Ok(())
}

async fn submit_and_wait(node: &Arc<Node>, tx: StorageTx) -> bool {
    crate::own_tx::submit_and_wait(
        node,
        depin_protocol::storage::SERVICE,
        depin_types::encode(&tx),
    )
    .await
}

async fn worker(
    node: Arc<Node>,
    store: Arc<PieceStore>,
    mut stored: tokio::sync::mpsc::UnboundedReceiver<PieceRef>,
    stop: Arc<AtomicBool>,
) {
    let mut to_confirm: BTreeSet<PieceRef> = BTreeSet::new();
    let mut proven: HashSet<(PieceRef, u64)> = HashSet::new();
    let mut last_gc = Instant::now();
    // A rebuild (downloads, decoding, uploads) runs beside this loop, one at a time: the
    // provider's own proofs must never wait for a repair.
    let rebuilding = Arc::new(AtomicBool::new(false));
    while !stop.load(Ordering::SeqCst) {
        while let Ok(r) = stored.try_recv() {
            to_confirm.insert(r);
        }
        // Confirm what is durable here and still waiting on chain.
        let chain = ChainAssignments(node.clone());
        to_confirm.retain(|r| {
            chain
                .piece(r)
                .is_some_and(|(p, _)| p.state == PieceState::Assigned)
        });
        let waiting: Vec<PieceRef> = to_confirm
            .iter()
            .copied()
            .take(depin_protocol::storage::MAX_ITEMS_PER_TX)
            .collect();
        if !waiting.is_empty()
            && submit_and_wait(
                &node,
                StorageTx::ConfirmPieces {
                    pieces: waiting.clone(),
                },
            )
            .await
        {
            for r in &waiting {
                to_confirm.remove(r);
            }
        }
        if let Err(e) = answer_challenges(&node, &store, &mut proven).await {
            tracing::warn!(error = %e, "cannot answer storage challenges");
        }
        if let Err(e) = repair_duty(&node, &store, &rebuilding).await {
            tracing::warn!(error = %e, "storage repair failed");
        }
        if last_gc.elapsed() > Duration::from_secs(10) {
            last_gc = Instant::now();
            if let Err(e) = collect_garbage(&node, &store) {
                tracing::warn!(error = %e, "storage garbage collection failed");
            }
        }
        // Wake as soon as a piece is stored: the deal activates on its confirmation.
        match tokio::time::timeout(Duration::from_millis(500), stored.recv()).await {
            Ok(Some(r)) => {
                to_confirm.insert(r);
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(_) => {}
        }
    }
}

/// The pieces the chain has this node assigned or storing.
fn held_pieces(node: &Node) -> Result<Vec<PieceRef>, String> {
    Ok(node
        .chain()
        .service_record(
            depin_protocol::storage::SERVICE,
            &keys::held(&node.key.address()),
        )
        .map_err(|e| e.to_string())?
        .unwrap_or_default())
}

/// Proves the pieces the chain challenged this node with for the current epoch (a sample of
/// what it holds, and pieces that missed their last challenge), once.
async fn answer_challenges(
    node: &Arc<Node>,
    store: &PieceStore,
    proven: &mut HashSet<(PieceRef, u64)>,
) -> Result<(), String> {
    let chain = node.chain();
    let epoch_blocks = chain.protocol().genesis().chain.epoch_blocks.max(1);
    // The epoch of the next block: the one a proof sent now lands in.
    let epoch = chain.head().height / epoch_blocks;
    // Leave the last block of an epoch alone: a proof may not make it in time.
    let Some(seed) = chain
        .service_record::<Hash>(depin_protocol::storage::SERVICE, &keys::seed(epoch))
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    proven.retain(|(_, e)| *e == epoch);
    let challenges: Vec<PieceRef> = chain
        .service_record(
            depin_protocol::storage::SERVICE,
            &keys::challenges(epoch, &node.key.address()),
        )
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let mut due = Vec::new();
    for r in challenges {
        if proven.contains(&(r, epoch)) {
            continue;
        }
        let Some((piece, piece_bytes)) = ChainAssignments(node.clone()).piece(&r) else {
            continue;
        };
        let deal: Option<Deal> = chain
            .service_record(depin_protocol::storage::SERVICE, &keys::deal(&r.deal))
            .map_err(|e| e.to_string())?;
        let active = deal.is_some_and(|d| {
            d.status == DealStatus::Active
                && d.start_epoch.is_some_and(|s| s <= epoch)
                && d.end_epoch.is_some_and(|e| epoch < e)
        });
        if !active || piece.state != PieceState::Stored || piece.checked_epoch == Some(epoch) {
            continue;
        }
        let index = challenge_chunk(&seed, &r, epoch, piece_bytes);
        match store.prove_chunk(piece.root.as_bytes(), index) {
            Ok(proof) => due.push(PieceProof { piece: r, proof }),
            Err(e) => tracing::warn!(error = %e, deal = %r.deal, "cannot prove a piece"),
        }
    }
    for batch in due.chunks(PROOFS_PER_TX) {
        let tx = StorageTx::SubmitProofs {
            epoch,
            proofs: batch.to_vec(),
        };
        if submit_and_wait(node, tx).await {
            for p in batch {
                proven.insert((p.piece, epoch));
            }
        }
    }
    Ok(())
}

/// Deletes stored pieces that no assignment of this node refers to any more (deal ended,
/// deleted, cancelled, or the piece released or lost).
fn collect_garbage(node: &Arc<Node>, store: &PieceStore) -> Result<(), String> {
    let mut wanted = HashSet::new();
    for r in held_pieces(node)? {
        if let Some((piece, _)) = ChainAssignments(node.clone()).piece(&r) {
            wanted.insert(piece.root);
        }
    }
    for root in store.roots().map_err(|e| e.to_string())? {
        if !wanted.contains(&Hash(root)) {
            store.remove(&root).map_err(|e| e.to_string())?;
            tracing::info!(root = %hex::encode(root), "deleted a piece no deal needs");
        }
    }
    Ok(())
}

/// Repairs the segments this node is responsible for: among the providers that still store a
/// piece of a segment flagged for repair, the one with the lowest address starts the repair
/// on chain, rebuilds the segment from any k pieces (its own and downloaded ones, all
/// verified), codes the lost pieces again and uploads them to the providers the chain chose.
async fn repair_duty(
    node: &Arc<Node>,
    store: &Arc<PieceStore>,
    rebuilding: &Arc<AtomicBool>,
) -> Result<(), String> {
    let chain = node.chain();
    let me = node.key.address();
    // Only a holder of a stored piece may repair a segment: look at the deals this node
    // holds pieces of.
    let mut held: Vec<Hash> = held_pieces(node)?.iter().map(|r| r.deal).collect();
    held.sort();
    held.dedup();
    for id in held {
        let Some(deal) = chain
            .service_record::<Deal>(depin_protocol::storage::SERVICE, &keys::deal(&id))
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if deal.status != DealStatus::Active {
            continue;
        }
        for (s, info) in deal.segments.iter().enumerate() {
            if !info.needs_repair {
                continue;
            }
            let mut pieces = Vec::new();
            for p in 0..deal.total_pieces {
                let r = PieceRef {
                    deal: id,
                    segment: s as u32,
                    piece: p,
                };
                if let Some(piece) = chain
                    .service_record::<Piece>(depin_protocol::storage::SERVICE, &keys::piece(&r))
                    .map_err(|e| e.to_string())?
                {
                    pieces.push((r, piece));
                }
            }
            let holders: Vec<_> = pieces
                .iter()
                .filter(|(_, p)| p.state == PieceState::Stored)
                .filter_map(|(r, p)| p.provider.map(|a| (*r, p.root, a)))
                .collect();
            // A new provider that never confirms its repaired piece (unreachable, full) is
            // replaced once the chain counts the placement as stalled.
            let protocol = chain.protocol();
            let epoch = chain.head().height / protocol.genesis().chain.epoch_blocks.max(1);
            let activation_epochs = protocol
                .service_params::<StorageParams>()
                .map_or(u64::MAX, |p| p.activation_epochs);
            let stalled_by: Vec<_> = pieces
                .iter()
                .filter(|(_, p)| {
                    p.state == PieceState::Assigned
                        && p.checked_epoch.is_some_and(|assigned| {
                            epoch >= assigned.saturating_add(activation_epochs)
                        })
                })
                .filter_map(|(_, p)| p.repairer)
                .collect();
            let stalled = !stalled_by.is_empty();
            // The chain lets any holder of a stored piece repair, and passes a stalled repair
            // to another holder: the lowest holder that did not stall it takes it.
            let addresses: Vec<_> = holders.iter().map(|(_, _, a)| *a).collect();
            let repairer = addresses
                .iter()
                .filter(|a| !stalled_by.contains(a))
                .min()
                .or(addresses.iter().min());
            if repairer != Some(&me) {
                continue;
            }
            let mine: Vec<_> = pieces
                .iter()
                .filter(|(_, p)| p.state == PieceState::Assigned && p.repairer == Some(me))
                .filter_map(|(r, p)| p.provider.map(|a| (*r, a)))
                .collect();
            // A piece whose provider is leaving by graceful exit moves while it is there.
            let leaving = pieces.iter().any(|(_, p)| {
                p.state == PieceState::Stored
                    && p.provider.is_some_and(|a| provider_exiting(chain, &a))
            });
            if mine.is_empty() || stalled {
                if stalled || leaving || pieces.iter().any(|(_, p)| p.state == PieceState::Lost) {
                    tracing::info!(deal = %id, segment = s, "starting a repair");
                    submit_and_wait(
                        node,
                        StorageTx::RepairSegment {
                            deal: id,
                            segment: s as u32,
                        },
                    )
                    .await;
                }
                continue;
            }
            if rebuilding.swap(true, Ordering::SeqCst) {
                return Ok(());
            }
            let (node, store, flag) = (node.clone(), store.clone(), rebuilding.clone());
            let (deal, info) = (deal.clone(), info.clone());
            tokio::spawn(async move {
                if let Err(e) =
                    rebuild_and_upload(&node, &store, &deal, &info, &holders, &mine).await
                {
                    tracing::warn!(error = %e, "storage repair failed");
                }
                flag.store(false, Ordering::SeqCst);
            });
            return Ok(());
        }
    }
    Ok(())
}

/// Whether the current registration of `provider` is leaving storage by graceful exit (as
/// the chain's `storage::is_exiting` reads it).
fn provider_exiting(chain: &depin_chain::Chain, provider: &depin_types::Address) -> bool {
    let registered: Option<u64> = chain
        .service_record(depin_protocol::storage::SERVICE, &keys::exiting(provider))
        .ok()
        .flatten();
    registered.is_some_and(|height| {
        chain
            .provider(provider)
            .ok()
            .flatten()
            .is_some_and(|p| p.registered_height == height)
    })
}

async fn rebuild_and_upload(
    node: &Arc<Node>,
    store: &PieceStore,
    deal: &Deal,
    info: &depin_protocol::storage::SegmentInfo,
    holders: &[(PieceRef, Hash, depin_types::Address)],
    missing: &[(PieceRef, depin_types::Address)],
) -> Result<(), String> {
    use depin_storage::erasure::{ErasureCoder, ReedSolomon};
    let Some(net) = node.net.get().cloned() else {
        return Ok(());
    };
    let k = usize::from(deal.data_pieces);
    let mut have: Vec<(usize, Vec<u8>)> = Vec::new();
    for (r, root, provider) in holders {
        if have.len() >= k {
            break;
        }
        let bytes = if *provider == node.key.address() {
            store
                .read_range(root.as_bytes(), 0, info.piece_bytes)
                .ok()
                .filter(|b| Hash::of(b) == *root)
        } else {
            depin_storage::client::download_piece(&net, provider, *root, info.piece_bytes)
                .await
                .ok()
        };
        if let Some(bytes) = bytes {
            have.push((usize::from(r.piece), bytes));
        }
    }
    if have.len() < k {
        return Err(format!(
            "only {} of {k} pieces reachable for a repair",
            have.len()
        ));
    }
    let coder = ReedSolomon::new(k, usize::from(deal.total_pieces)).map_err(|e| e.to_string())?;
    let segment = coder
        .decode(info.segment_bytes, &have)
        .map_err(|e| e.to_string())?;
    let rebuilt = coder.encode(&segment).map_err(|e| e.to_string())?;
    for (r, provider) in missing {
        let data = &rebuilt[usize::from(r.piece)];
        match depin_storage::client::upload_piece(&net, provider, *r, data).await {
            Ok(()) => {
                tracing::info!(deal = %r.deal, segment = r.segment, piece = r.piece, %provider, "repaired a piece")
            }
            Err(e) => tracing::warn!(error = %e, %provider, "repair upload failed"),
        }
    }
    Ok(())
}

/// The storage service in the node: deal and provider routes, and the provider worker.
pub(crate) struct StorageService;

impl crate::services::NodeService for StorageService {
    fn service(&self) -> depin_types::ServiceKind {
        depin_protocol::storage::SERVICE
    }

    fn routes(&self, routes: ServiceRoutes) -> ServiceRoutes {
        routes
            .get("/deals", storage_deals)
            .get("/deals/{id}", storage_deal)
            .get("/providers/{address}", storage_provider)
    }

    fn openapi_paths(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "/deals",
                serde_json::json!({"get": operation("Open (pending or active) storage deals among the newest 10,000 (of one owner when named), oldest first, at most 1,000",
                vec![query_param("owner", "depin1... address of the owner")],
                ok_response("Deals", object("DealsResponse")), &[BAD_REQUEST])}),
            ),
            (
                "/deals/{id}",
                serde_json::json!({"get": operation("A storage deal with every piece: root, provider, state, last checked epoch",
                vec![path_param("id", "deal id (64 hex)")],
                ok_response("Deal", object("DealResponse")), &[BAD_REQUEST, ("404", "unknown_deal")])}),
            ),
            (
                "/providers/{address}",
                serde_json::json!({"get": operation("Pieces and bytes the chain assigned to a storage provider; exact store figures when this node is it",
                vec![path_param("address", "depin1... address")],
                ok_response("Storage provider", object("StorageProviderResponse")), &[BAD_REQUEST])}),
            ),
        ]
    }

    fn start(&self, node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), crate::NodeError> {
        start(node, stop)
    }
}

fn storage_record<T: borsh::BorshDeserialize>(node: &Node, key: &[u8]) -> ApiResult<Option<T>> {
    Ok(node
        .chain()
        .service_record(depin_protocol::storage::SERVICE, key)?)
}

async fn storage_deal(
    State(node): NodeState,
    Path(id): Path<String>,
) -> ApiResult<Json<DealResponse>> {
    use depin_protocol::storage::{Deal, Piece, PieceRef, PieceState, keys};
    let id: depin_types::Hash = id
        .parse()
        .map_err(|_| ApiError::bad_request("bad_deal_id", "a deal id is 64 hex digits"))?;
    let Some(deal) = storage_record::<Deal>(&node, &keys::deal(&id))? else {
        return Err(ApiError::not_found("unknown_deal", format!("no deal {id}")));
    };
    let mut segments = Vec::with_capacity(deal.segments.len());
    for (s, info) in deal.segments.iter().enumerate() {
        let mut pieces = Vec::new();
        for p in 0..deal.total_pieces {
            let r = PieceRef {
                deal: id,
                segment: s as u32,
                piece: p,
            };
            if let Some(piece) = storage_record::<Piece>(&node, &keys::piece(&r))? {
                pieces.push(PieceView {
                    index: p,
                    root: piece.root,
                    provider: piece.provider,
                    state: piece.state,
                    checked_epoch: piece.checked_epoch,
                    misses: piece.misses,
                });
            }
        }
        segments.push(SegmentView {
            index: s as u32,
            segment_bytes: info.segment_bytes,
            piece_bytes: info.piece_bytes,
            needs_repair: info.needs_repair,
            healthy_pieces: pieces
                .iter()
                .filter(|p| p.state == PieceState::Stored)
                .count() as u16,
            pieces,
        });
    }
    Ok(Json(DealResponse { deal, segments }))
}

/// The newest deals `/deals` looks at, and the most open ones it returns.
const MAX_DEALS_SCANNED: u64 = 10_000;
const MAX_DEALS_LISTED: usize = 1_000;

#[derive(Debug, Deserialize)]
struct DealsQuery {
    owner: Option<String>,
}

async fn storage_deals(
    State(node): NodeState,
    Query(q): Query<DealsQuery>,
) -> ApiResult<Json<DealsResponse>> {
    use depin_protocol::storage::{Deal, DealStatus, keys};
    let owner = q.owner.as_deref().map(parse_address).transpose()?;
    // The chain keeps no list of every open deal (epoch work would grow with it): walk the
    // newest deals, the owner's own when one is named.
    let count: u64 = match owner {
        Some(o) => storage_record(&node, &keys::owner_deal_count(&o))?,
        None => storage_record(&node, keys::NEXT_DEAL)?,
    }
    .unwrap_or(0);
    let mut deals = Vec::new();
    for n in (count.saturating_sub(MAX_DEALS_SCANNED)..count).rev() {
        let key = match owner {
            Some(o) => keys::owner_deal(&o, n),
            None => keys::deal_number(n),
        };
        let Some(id) = storage_record::<depin_types::Hash>(&node, &key)? else {
            continue;
        };
        if let Some(deal) = storage_record::<Deal>(&node, &keys::deal(&id))?
            && matches!(deal.status, DealStatus::Pending | DealStatus::Active)
        {
            deals.push(deal);
            if deals.len() >= MAX_DEALS_LISTED {
                break;
            }
        }
    }
    deals.reverse();
    Ok(Json(DealsResponse { deals }))
}

async fn storage_provider(
    State(node): NodeState,
    Path(address): Path<String>,
) -> ApiResult<Json<StorageProviderResponse>> {
    use depin_protocol::storage::{ProviderUsage, keys};
    let address = parse_address(&address)?;
    let usage: ProviderUsage = storage_record(&node, &keys::usage(&address))?.unwrap_or_default();
    let local = (address == node.key.address())
        .then(|| node.pieces.get())
        .flatten();
    Ok(Json(StorageProviderResponse {
        address,
        committed_bytes: usage.committed_bytes,
        pieces: storage_record(&node, &keys::held(&address))?.unwrap_or_default(),
        store_used_bytes: local.and_then(|s| s.used_bytes().ok()),
        store_capacity_bytes: local.map(|s| s.capacity_bytes()),
    }))
}
