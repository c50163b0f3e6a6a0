//! The HTTP API under `/v1`, plus `/metrics`. One error type, [`ApiError`], renders every
//! failure as `{"error": {"code", "message"}}` with a fitting status code.

use crate::api_types::*;
use crate::{Node, Role};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use depin_chain::ChainError;
use depin_chain::SubmitError;
use depin_protocol::TxError;
use depin_types::{Address, Hash};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// An API failure.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ChainError> for ApiError {
    fn from(e: ChainError) -> Self {
        tracing::error!(error = %e, "chain error while serving a request");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

/// HTTP status for a rejected transaction.
fn tx_status(error: &SubmitError) -> StatusCode {
    use depin_chain::MempoolError;
    match error {
        SubmitError::Tx(TxError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        SubmitError::Tx(
            TxError::Malformed(_)
            | TxError::BadSignature
            | TxError::WrongChain { .. }
            | TxError::FeeTooLow { .. },
        ) => StatusCode::BAD_REQUEST,
        SubmitError::Tx(TxError::Unauthorized) => StatusCode::FORBIDDEN,
        SubmitError::Tx(TxError::Store(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        SubmitError::Tx(_) => StatusCode::UNPROCESSABLE_ENTITY,
        SubmitError::Mempool(MempoolError::Full { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        SubmitError::Mempool(_) => StatusCode::CONFLICT,
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
pub(crate) type NodeState = State<Arc<Node>>;

/// The router's routes and the (method, path) of each, built from one table so the list a
/// test checks against the OpenAPI document is the list the router serves.
pub(crate) struct RouteTable {
    router: Router<Arc<Node>>,
    served: Vec<(&'static str, String)>,
}

/// Where a service adds its routes: paths relative to `/v1/<service>`.
pub(crate) struct ServiceRoutes {
    table: RouteTable,
    prefix: String,
}

impl ServiceRoutes {
    pub(crate) fn get<H, T>(mut self, path: &'static str, handler: H) -> ServiceRoutes
    where
        H: axum::handler::Handler<T, Arc<Node>>,
        T: 'static,
    {
        let full = format!("{}{path}", self.prefix);
        self.table = self.table.route("get", full, get(handler));
        self
    }
}

impl RouteTable {
    fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn route(
        mut self,
        method: &'static str,
        path: impl Into<String>,
        handler: MethodRouter<Arc<Node>>,
    ) -> RouteTable {
        let path = path.into();
        self.router = self.router.route(&path, handler);
        self.served.push((method, path));
        self
    }

    fn get<H, T>(self, path: &'static str, handler: H) -> RouteTable
    where
        H: axum::handler::Handler<T, Arc<Node>>,
        T: 'static,
    {
        self.route("get", path, get(handler))
    }
}

fn routes(max_tx_body_bytes: usize) -> RouteTable {
    let core = RouteTable::new()
        .get("/v1/status", status)
        .get("/v1/params", params)
        .get("/v1/supply", supply)
        .get("/v1/accounts/{address}", account)
        .get("/v1/accounts/{address}/rewards", account_rewards)
        .get("/v1/blocks/{id}", block)
        .get("/v1/blocks/{height}/raw", raw_block)
        .route(
            "post",
            "/v1/txs",
            post(submit_tx).layer(DefaultBodyLimit::max(max_tx_body_bytes)),
        )
        .get("/v1/txs/{hash}", tx_status_handler)
        .get("/v1/providers", providers)
        .get("/v1/providers/{address}", provider)
        .get("/v1/rewards/{epoch}", epoch_rewards)
        .get("/v1/validators", validators)
        .get("/v1/openapi.json", openapi)
        .get("/metrics", metrics);
    crate::services::registered()
        .iter()
        .fold(core, |table, service| {
            service
                .routes(ServiceRoutes {
                    table,
                    prefix: format!("/v1/{}", service.service()),
                })
                .table
        })
}

/// Every (method, path) the router serves.
#[cfg(test)]
pub(crate) fn served_routes() -> Vec<(&'static str, String)> {
    routes(0).served
}

pub fn router(node: Arc<Node>) -> Router {
    let max_body = node.chain().protocol().genesis().chain.max_tx_bytes as usize * 2 + 1024;
    routes(max_body)
        .router
        .fallback(|| async {
            ApiError::not_found("not_found", "no such route; see /v1/openapi.json")
        })
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            count_requests,
        ))
        .with_state(node)
}

async fn count_requests(
    State(node): NodeState,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    node.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}

pub(crate) fn parse_address(text: &str) -> ApiResult<Address> {
    text.parse().map_err(|e: depin_types::AddressError| {
        ApiError::bad_request("invalid_address", e.to_string())
    })
}

fn parse_number(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::bad_request("invalid_number", format!("{text:?} is not a number")))
}

pub(crate) fn parse_hash(text: &str) -> ApiResult<Hash> {
    text.parse().map_err(|e: depin_types::HashParseError| {
        ApiError::bad_request("invalid_hash", e.to_string())
    })
}

async fn status(State(node): NodeState) -> ApiResult<Json<StatusResponse>> {
    let chain = node.chain();
    let head = chain.head();
    let g = chain.protocol().genesis();
    let (mempool_txs, mempool_bytes) = {
        let pool = node.app.mempool();
        (pool.len(), pool.size_bytes())
    };
    let net_addrs = match node.net.get() {
        Some(net) => net
            .listen_addrs()
            .await
            .iter()
            .map(|a| a.to_string())
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(StatusResponse {
        net_addrs,
        chain_id: g.chain_id.clone(),
        role: node.config.role.as_str().to_string(),
        node_address: node.key.address(),
        height: head.height,
        head_hash: head.hash,
        state_root: head.state_root,
        timestamp_ms: head.timestamp_ms,
        // Blocks 1..=epoch_blocks are epoch 0, as in the protocol.
        epoch: head.height.saturating_sub(1) / g.chain.epoch_blocks,
        epoch_blocks: g.chain.epoch_blocks,
        era: chain.validator_era(head.height + 1),
        block_interval_ms: g.chain.block_interval_ms,
        mempool_txs,
        mempool_bytes,
        validators: chain.validators()?,
        token: TokenInfo {
            symbol: g.token.symbol.clone(),
            decimals: g.token.decimals,
        },
        upstream: node.config.upstream.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }))
}

async fn params(State(node): NodeState) -> Json<depin_protocol::Genesis> {
    Json(node.chain().protocol().genesis().clone())
}

async fn validators(State(node): NodeState) -> ApiResult<Json<ValidatorsResponse>> {
    let chain = node.chain();
    let era = chain.validator_era(chain.head().height + 1);
    let mut candidates = Vec::new();
    for c in chain.validator_candidates()? {
        let bonded = chain.stake(&c.address)?.unwrap_or_default().bonded;
        candidates.push(ValidatorCandidateView {
            address: c.address,
            consensus_address: c.consensus_address,
            bonded,
            registered_height: c.registered_height,
        });
    }
    Ok(Json(ValidatorsResponse {
        era,
        era_blocks: chain.protocol().genesis().chain.epoch_blocks,
        current: chain.validator_set(era)?,
        next: chain.validator_set(era + 1)?,
        candidates,
    }))
}

async fn supply(State(node): NodeState) -> ApiResult<Json<SupplyResponse>> {
    let chain = node.chain();
    let s = chain.supply()?;
    let price = chain.oracle_price()?;
    let reports = chain.oracle_reports()?;
    let genesis = chain.protocol().genesis();
    let current = price.as_ref().map(|p| p.price_usd_micro).unwrap_or(0);
    Ok(Json(SupplyResponse {
        total: s.total,
        initial: s.initial,
        minted: s.minted,
        burned: s.burned,
        data_credits_outstanding: s.data_credits_outstanding.to_string(),
        token_price_usd_micro: price.as_ref().map(|p| p.price_usd_micro).unwrap_or(0),
        price_updated_height: price.map(|p| p.updated_height).unwrap_or(0),
        next_token_price_usd_micro: depin_protocol::state::next_oracle_price(
            current,
            &reports,
            genesis.data_credits.max_price_move_bps,
        ),
        next_price_height: (chain.head().height / genesis.chain.epoch_blocks + 1)
            * genesis.chain.epoch_blocks,
        oracle_reports: reports.len(),
        dc_price_usd_micro: genesis.data_credits.dc_price_usd_micro,
    }))
}

async fn account(
    State(node): NodeState,
    Path(address): Path<String>,
) -> ApiResult<Json<AccountResponse>> {
    let address = parse_address(&address)?;
    let chain = node.chain();
    let account = chain.account(&address)?;
    let stake = chain.stake(&address)?;
    if account.is_none() && stake.is_none() {
        return Err(ApiError::not_found(
            "unknown_account",
            format!("account {address} does not exist"),
        ));
    }
    let account = account.unwrap_or_default();
    let stake = stake.unwrap_or_default();
    Ok(Json(AccountResponse {
        address,
        balance: account.balance,
        nonce: account.nonce,
        data_credits: account.data_credits.to_string(),
        stake: StakeView::from(&stake),
        is_provider: chain.provider(&address)?.is_some(),
        is_validator: chain.validators()?.contains(&address),
    }))
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn account_rewards(
    State(node): NodeState,
    Path(address): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<AccountRewardsResponse>> {
    let address = parse_address(&address)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let epochs = node
        .chain()
        .account_rewards(&address, limit)?
        .into_iter()
        .map(|(epoch, entries)| AccountEpochRewards {
            epoch,
            total: entries.iter().fold(depin_types::Amount::ZERO, |acc, e| {
                acc.checked_add(e.amount).unwrap_or(acc)
            }),
            entries: entries.iter().map(RewardEntryView::from).collect(),
        })
        .collect();
    Ok(Json(AccountRewardsResponse { address, epochs }))
}

async fn block(State(node): NodeState, Path(id): Path<String>) -> ApiResult<Json<BlockResponse>> {
    let chain = node.chain();
    let block = if id == "latest" {
        chain.block_by_height(chain.head().height)?
    } else if let Ok(height) = id.parse::<u64>() {
        chain.block_by_height(height)?
    } else {
        chain.block_by_hash(&parse_hash(&id)?)?
    };
    let Some(block) = block else {
        return Err(ApiError::not_found(
            "unknown_block",
            format!("no finalized block {id}"),
        ));
    };
    let finality = chain
        .finality(block.header.height)?
        .unwrap_or(depin_protocol::Finality::Genesis);
    let txs = block.txs.iter().map(TxView::from_tx).collect();
    let protocol = chain.protocol();
    let events = chain
        .block_events(block.header.height)?
        .iter()
        .map(|e| protocol.event_json(e))
        .collect();
    Ok(Json(BlockResponse::new(
        block.hash(),
        &block.header,
        txs,
        &finality,
        events,
    )))
}

async fn raw_block(
    State(node): NodeState,
    Path(height): Path<String>,
) -> ApiResult<Json<RawBlockResponse>> {
    let height = parse_number(&height)?;
    match node.chain().block_bytes_with_finality(height)? {
        Some((block, finality)) => Ok(Json(RawBlockResponse {
            height,
            block: hex::encode(block),
            finality: hex::encode(finality),
        })),
        None => Err(ApiError::not_found(
            "unknown_block",
            format!("no finalized block at height {height}"),
        )),
    }
}

async fn submit_tx(
    State(node): NodeState,
    body: Result<Json<SubmitTxRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<SubmitTxResponse>)> {
    let Json(request) =
        body.map_err(|e| ApiError::bad_request("malformed_request", e.body_text()))?;
    let bytes = hex::decode(request.tx.trim())
        .map_err(|e| ApiError::bad_request("malformed_tx", format!("tx is not hex: {e}")))?;
    if node.config.role != Role::Validator {
        return forward_tx(node, request).await;
    }
    let app = node.app.clone();
    let gossip = bytes.clone();
    let result = tokio::task::spawn_blocking(move || app.submit_bytes(&bytes))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match result {
        Ok(hash) => {
            crate::gossip_tx(&node, gossip).await;
            Ok((
                StatusCode::ACCEPTED,
                Json(SubmitTxResponse {
                    hash,
                    status: TxStatus::Pending,
                }),
            ))
        }
        Err(e) => Err(ApiError::new(tx_status(&e), e.code(), e.to_string())),
    }
}

/// Without an upstream, a follower's only way to the validators is gossip: it answers
/// "pending" once the transaction is handed to the service network.
async fn gossip_only(
    node: Arc<Node>,
    bytes: Option<Vec<u8>>,
) -> ApiResult<(StatusCode, Json<SubmitTxResponse>)> {
    let bytes = bytes.ok_or_else(|| ApiError::bad_request("malformed_tx", "tx is not hex"))?;
    let hash = node
        .chain()
        .protocol()
        .decode_tx(&bytes)
        .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?
        .hash();
    if node.net.get().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_route_to_validators",
            "this node has neither an upstream nor a service network",
        ));
    }
    node.remember_forwarded(hash);
    crate::gossip_tx(&node, bytes).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(SubmitTxResponse {
            hash,
            status: TxStatus::Pending,
        }),
    ))
}

/// Followers hand transactions to their upstream validator, after checking them locally so a
/// bad one is refused without a round trip.
async fn forward_tx(
    node: Arc<Node>,
    request: SubmitTxRequest,
) -> ApiResult<(StatusCode, Json<SubmitTxResponse>)> {
    let n = node.clone();
    let tx = request.tx.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let bytes = hex::decode(tx.trim()).map_err(|e| TxError::Malformed(e.to_string()))?;
        let decoded = n.chain().protocol().decode_tx(&bytes)?;
        n.chain().check_tx(&decoded).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    // A nonce the local copy has not caught up to yet is for upstream to judge.
    if let Err(e) = checked
        && !matches!(e, TxError::NonceGap { .. })
    {
        let e = SubmitError::Tx(e);
        return Err(ApiError::new(tx_status(&e), e.code(), e.to_string()));
    }
    let gossip = hex::decode(request.tx.trim()).ok();
    let Some(upstream) = node.config.upstream.clone() else {
        return gossip_only(node, gossip).await;
    };
    let url = format!("{}/v1/txs", upstream.trim_end_matches('/'));
    let http = node.http.clone();
    let n = node.clone();
    let forwarded =
        tokio::task::spawn_blocking(move || -> ApiResult<(StatusCode, Json<SubmitTxResponse>)> {
            let unavailable =
                |m: String| ApiError::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", m);
            let mut response = http
                .post(&url)
                .send_json(&request)
                .map_err(|e| unavailable(format!("POST {url}: {e}")))?;
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            if status.is_success() {
                let body: SubmitTxResponse = response
                    .body_mut()
                    .read_json()
                    .map_err(|e| unavailable(e.to_string()))?;
                n.remember_forwarded(body.hash);
                return Ok((status, Json(body)));
            }
            let body: ErrorBody = response
                .body_mut()
                .read_json()
                .map_err(|e| unavailable(e.to_string()))?;
            Err(ApiError::new(status, &body.error.code, body.error.message))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    // Gossip only what upstream took, and after it did, so upstream never sees its own copy
    // arrive first and answer `already_known` to the client.
    if forwarded.is_ok()
        && let Some(bytes) = gossip
    {
        crate::gossip_tx(&node, bytes).await;
    }
    forwarded
}

async fn tx_status_handler(
    State(node): NodeState,
    Path(hash): Path<String>,
) -> ApiResult<Json<TxStatusResponse>> {
    let hash = parse_hash(&hash)?;
    let empty = TxStatusResponse {
        hash,
        status: TxStatus::Pending,
        height: None,
        index: None,
        tx: None,
        events: None,
        error: None,
    };
    if let Some((tx, receipt)) = node.chain().transaction(&hash)? {
        let protocol = node.chain().protocol();
        return Ok(Json(TxStatusResponse {
            status: TxStatus::Committed,
            height: Some(receipt.height),
            index: Some(receipt.index),
            tx: Some(TxView::from_tx(&tx)),
            events: Some(
                receipt
                    .events
                    .iter()
                    .map(|e| protocol.event_json(e))
                    .collect(),
            ),
            ..empty
        }));
    }
    let pool = node.app.mempool();
    if pool.contains(&hash) || node.was_forwarded(&hash) {
        return Ok(Json(TxStatusResponse {
            status: TxStatus::Pending,
            ..empty
        }));
    }
    if let Some(d) = pool.dropped(&hash) {
        return Ok(Json(TxStatusResponse {
            status: TxStatus::Dropped,
            error: Some(ErrorDetail {
                code: d.code.clone(),
                message: d.message.clone(),
            }),
            ..empty
        }));
    }
    Err(ApiError::not_found(
        "unknown_tx",
        format!("transaction {hash} is neither committed nor pending on this node"),
    ))
}

fn provider_view(node: &Node, p: &depin_protocol::state::Provider) -> ApiResult<ProviderView> {
    let stake = node.chain().stake(&p.address)?.unwrap_or_default();
    Ok(ProviderView {
        address: p.address,
        services: p.services.iter().map(ServiceOfferView::from).collect(),
        location: p.location.as_ref().map(LocationView::from),
        registered_height: p.registered_height,
        updated_height: p.updated_height,
        reputation_ppm: p.reputation_ppm(),
        bonded: stake.bonded,
        failures: p.failures.iter().map(ProofFailureView::from).collect(),
    })
}

async fn providers(
    State(node): NodeState,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<ProvidersResponse>> {
    let after = q.after.as_deref().map(parse_address).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let chain = node.chain();
    let list = chain.providers(after, limit)?;
    let providers = list
        .iter()
        .map(|p| provider_view(&node, p))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ProvidersResponse {
        providers,
        total: chain.provider_count()?,
    }))
}

async fn provider(
    State(node): NodeState,
    Path(address): Path<String>,
) -> ApiResult<Json<ProviderView>> {
    let address = parse_address(&address)?;
    match node.chain().provider(&address)? {
        Some(p) => Ok(Json(provider_view(&node, &p)?)),
        None => Err(ApiError::not_found(
            "not_a_provider",
            format!("{address} is not a registered provider"),
        )),
    }
}

async fn epoch_rewards(
    State(node): NodeState,
    Path(epoch): Path<String>,
) -> ApiResult<Json<EpochRewardsResponse>> {
    let epoch = parse_number(&epoch)?;
    match node.chain().epoch_rewards(epoch)? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::not_found(
            "unknown_epoch",
            format!("epoch {epoch} has not ended yet"),
        )),
    }
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document().to_string(),
    )
}

async fn metrics(State(node): NodeState) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics.render(&node),
    )
}
