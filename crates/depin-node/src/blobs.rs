//! The provider's one blob store and server: every service that moves bytes (compute's
//! modules and inputs, render's scene bundles and pieces) shares the store and the blob
//! protocol, and tells the server from the chain what it wants and what it may serve.

use crate::{Node, NodeError, Role};
use depin_blobs::store::BlobStore;
use depin_blobs::transfer::{AnyWanted, BlobServer, serve};
use depin_types::Hash;
use std::sync::Arc;

/// The store, and the news of each blob that arrived whole.
pub(crate) struct NodeBlobs {
    pub store: Arc<BlobStore>,
    stored: tokio::sync::broadcast::Sender<Hash>,
}

impl NodeBlobs {
    /// Told the hash of every blob pushed here from now on (a lagging listener misses some:
    /// the services poll as well).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Hash> {
        self.stored.subscribe()
    }
}

/// Whether any service on this node still wants a blob: one service removes a blob only
/// when none does (compute and render may hold the same bytes).
pub(crate) fn any_service_wants(node: &Arc<Node>, blob: &Hash) -> bool {
    crate::services::registered()
        .iter()
        .filter_map(|s| s.wanted_blobs(node))
        .any(|w| w.wanted(blob).is_some())
}

/// Opens the store and serves the blob protocol on a provider node with a service network.
pub(crate) fn start(node: &Arc<Node>) -> Result<(), NodeError> {
    if node.config.role != Role::Provider {
        return Ok(());
    }
    let Some(net) = node.net.get().cloned() else {
        return Ok(());
    };
    let store = Arc::new(BlobStore::open(&node.config.data_dir.join("blobs"))?);
    let wanted = AnyWanted(
        crate::services::registered()
            .iter()
            .filter_map(|s| s.wanted_blobs(node))
            .collect(),
    );
    let (server, mut arrived) = BlobServer::new(store.clone(), Arc::new(wanted));
    tokio::spawn(serve(server, net));
    let (stored, _) = tokio::sync::broadcast::channel(256);
    let forward = stored.clone();
    tokio::spawn(async move {
        while let Some(blob) = arrived.recv().await {
            let _ = forward.send(blob);
        }
    });
    let _ = node.blobs.set(Arc::new(NodeBlobs { store, stored }));
    Ok(())
}
