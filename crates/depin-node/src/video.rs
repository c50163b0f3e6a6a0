//! The video service in the node: a broadcaster's deposit, reserve and standing, for
//! `depin video broadcaster` and for orchestrators deciding whether its tickets are worth
//! working for. Transcoding, ingest and playback come with the `depin-video` runtime.

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
        routes.get("/broadcasters/{address}", video_broadcaster)
    }

    fn openapi_paths(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "/broadcasters/{address}",
            serde_json::json!({"get": operation("A broadcaster's ticket funds: deposit and reserve (DC), the height it may withdraw from after an unlock, an open reserve claim with what each orchestrator is owed, whether it is barred, and the tickets redeemed against it",
            vec![path_param("address", "depin1... address")],
            ok_response("Broadcaster", object("Broadcaster")), &[BAD_REQUEST])}),
        )]
    }

    fn start(&self, _node: &Arc<Node>, _stop: Arc<AtomicBool>) -> Result<(), crate::NodeError> {
        Ok(())
    }
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
