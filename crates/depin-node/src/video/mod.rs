//! The video service in the node: a broadcaster's deposit, reserve and standing, the
//! orchestrators a broadcaster may choose from, and on a provider with ffmpeg the
//! orchestrator itself (`orchestrator`), speaking the video protocol (`wire`).

mod orchestrator;
mod verifier;
pub mod wire;

use crate::Node;
use crate::api::{ApiResult, NodeState, ServiceRoutes, parse_address};
use crate::openapi::{BAD_REQUEST, object, ok_response, operation, path_param};
use axum::Json;
use axum::extract::{Path, State};
use depin_protocol::video::{Broadcaster, keys};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub(crate) struct VideoService;

impl crate::services::NodeService for VideoService {
    fn service(&self) -> depin_types::ServiceKind {
        depin_protocol::video::SERVICE
    }

    fn routes(&self, routes: ServiceRoutes) -> ServiceRoutes {
        routes
            .get("/broadcasters/{address}", video_broadcaster)
            .get("/orchestrators", video_orchestrators)
            .get("/disputes/{id}", video_dispute)
    }

    fn openapi_paths(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            (
                "/disputes/{id}",
                serde_json::json!({"get": operation("A dispute over a rendition: the signed commitment, the rung, the evidence URL, the bond (DC), the drawn verifiers and what each attested, the deadline and the outcome (open, upheld, rejected, expired)",
            vec![path_param("id", "the dispute id, hex")],
            ok_response("Dispute", serde_json::json!({"type": "object"})), &[BAD_REQUEST])}),
            ),
            (
                "/orchestrators",
                serde_json::json!({"get": operation("The orchestrators a broadcaster may choose from: registered for video, staked, above the reputation bar and advertised; each with its price (DC per gigapixel), sessions, stake weight, reputation, encoders and ffmpeg build",
            vec![], ok_response("Orchestrator list", serde_json::json!({"type": "array", "items": object("Orchestrator")})), &[])}),
            ),
            (
                "/broadcasters/{address}",
                serde_json::json!({"get": operation("A broadcaster's ticket funds: deposit and reserve (DC), the height it may withdraw from after an unlock, an open reserve claim with what each orchestrator is owed, whether it is barred, and the tickets redeemed against it",
            vec![path_param("address", "depin1... address")],
            ok_response("Broadcaster", object("Broadcaster")), &[BAD_REQUEST])}),
            ),
        ]
    }

    fn start(&self, node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), crate::NodeError> {
        if node.config.role != crate::Role::Provider {
            return Ok(());
        }
        let (Some(binary), Some(net)) = (node.config.video_ffmpeg.clone(), node.net.get().cloned())
        else {
            return Ok(());
        };
        let ffprobe = binary.with_file_name(
            binary
                .file_name()
                .and_then(|n| n.to_str())
                .map_or("ffprobe".to_string(), |n| n.replace("ffmpeg", "ffprobe")),
        );
        let ffmpeg = depin_video::Ffmpeg {
            ffmpeg: binary,
            ffprobe,
            ..depin_video::Ffmpeg::default()
        };
        let ffmpeg_for_disputes = ffmpeg.clone();
        let orchestrator = orchestrator::Orchestrator::new(node.clone(), ffmpeg).map_err(|e| {
            crate::NodeError::Io {
                what: "video_ffmpeg",
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            }
        })?;
        let orchestrator = Arc::new(orchestrator);
        tokio::spawn(orchestrator.clone().serve(net));
        let verifier = (node.clone(), ffmpeg_for_disputes);
        tokio::spawn(async move {
            let mut tried = std::collections::HashSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                orchestrator.advertise().await;
                verifier::attest_duties(&verifier.0, &verifier.1, &mut tried).await;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
        Ok(())
    }
}

/// A dispute, while the chain keeps it (until a dispute period after its deadline).
async fn video_dispute(
    State(node): NodeState,
    Path(id): Path<String>,
) -> ApiResult<Json<depin_protocol::video::Dispute>> {
    let id = crate::api::parse_hash(&id)?;
    node.chain()
        .service_record(depin_protocol::video::SERVICE, &keys::dispute(&id))?
        .map(Json)
        .ok_or_else(|| {
            crate::api::ApiError::not_found("unknown_dispute", format!("no dispute {id} is kept"))
        })
}

/// Every address is a broadcaster with nothing locked until it funds a deposit.
async fn video_broadcaster(
    State(node): NodeState,
    Path(address): Path<String>,
) -> ApiResult<Json<Broadcaster>> {
    let address = parse_address(&address)?;
    Ok(Json(
        node.chain()
            .service_record::<Broadcaster>(
                depin_protocol::video::SERVICE,
                &keys::broadcaster(&address),
            )?
            .unwrap_or_default(),
    ))
}

/// An orchestrator as a broadcaster chooses one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrchestratorView {
    pub address: depin_types::Address,
    pub price_dc_per_gigapixel: u64,
    pub sessions: u64,
    /// Bonded stake over the service's minimum (1 at the minimum).
    pub stake_weight: u128,
    pub reputation_ppm: u64,
    pub encoders: Vec<String>,
    pub build: String,
}

async fn video_orchestrators(State(node): NodeState) -> ApiResult<Json<Vec<OrchestratorView>>> {
    let chain = node.chain();
    let service = depin_protocol::video::SERVICE;
    let minimum = chain.protocol().genesis().staking.min_stake(service);
    let mut out = Vec::new();
    for provider in chain.providers(None, MAX_LISTED_PROVIDERS)? {
        let Some(offer) = provider.services.iter().find(|o| o.service == service) else {
            continue;
        };
        let Some(ad) = chain.service_record::<depin_protocol::video::VideoAd>(
            service,
            &keys::ad(&provider.address),
        )?
        else {
            continue;
        };
        let bonded = chain
            .stake(&provider.address)?
            .map_or(depin_types::Amount::ZERO, |s| s.bonded);
        if bonded < minimum || bonded.is_zero() {
            continue;
        }
        out.push(OrchestratorView {
            address: provider.address,
            price_dc_per_gigapixel: offer.price_dc_per_unit,
            sessions: offer.capacity,
            stake_weight: (bonded.0 / minimum.0.max(1)).clamp(1, 1_000_000),
            reputation_ppm: provider.reputation_ppm(),
            encoders: ad.encoders,
            build: ad.build,
        });
    }
    Ok(Json(out))
}

/// Providers listed at most.
const MAX_LISTED_PROVIDERS: usize = 10_000;
