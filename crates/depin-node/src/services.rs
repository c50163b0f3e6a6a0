//! The one list of services the node runs. Registering a service here gives it its HTTP
//! routes under `/v1/<service>/` with their OpenAPI paths, and the workers it starts on a node
//! configured for it. Its rules are registered in `depin_protocol::services`; its CLI group in
//! the CLI's `services` list.

use crate::api::ServiceRoutes;
use crate::{Node, NodeError};
use depin_types::ServiceKind;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// A service's part of the node.
pub(crate) trait NodeService: Send + Sync {
    fn service(&self) -> ServiceKind;

    /// Adds this service's routes (paths relative to `/v1/<service>`).
    fn routes(&self, routes: ServiceRoutes) -> ServiceRoutes;

    /// The OpenAPI path items of those routes, by the same relative paths.
    fn openapi_paths(&self) -> Vec<(&'static str, Value)>;

    /// Starts this service's workers when the node's config asks for them; otherwise does
    /// nothing.
    fn start(&self, node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), NodeError>;

    /// What this service tells the provider's blob server (see `crate::blobs`): the blobs
    /// its work needs, the outputs it may serve. None: it moves no bytes.
    fn wanted_blobs(
        &self,
        _node: &Arc<Node>,
    ) -> Option<Arc<dyn depin_blobs::transfer::WantedBlobs>> {
        None
    }
}

/// Every service of the node, in the order their workers start.
pub(crate) fn registered() -> Vec<Box<dyn NodeService>> {
    vec![
        Box::new(crate::storage::StorageService),
        Box::new(crate::compute::ComputeService),
        Box::new(crate::coverage::CoverageService),
        Box::new(crate::render::RenderService),
        Box::new(crate::video::VideoService),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_node_runs_exactly_the_services_the_protocol_registers() {
        let node: Vec<_> = super::registered().iter().map(|s| s.service()).collect();
        let protocol: Vec<_> = depin_protocol::services::builtin()
            .iter()
            .map(|m| m.service())
            .collect();
        assert_eq!(node, protocol);
    }
}
