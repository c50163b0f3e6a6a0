//! The provider side of the piece protocol: accepts uploads only of pieces the chain assigned
//! to this provider, from the deal owner's or the piece repairer's peer (checked against the
//! root on chain), stores them durably, then reports them for confirmation; serves outboards
//! and ranges of stored pieces.

use crate::protocol::{
    MAX_MESSAGE_BYTES, PIECE_PROTOCOL, PieceRequest, PieceResponse, TRANSFER_BYTES,
};
use crate::store::{PieceStore, PieceStoreError, PieceWriter};
use depin_net::PeerId;
use depin_protocol::storage::{Piece, PieceRef, PieceState};
use depin_types::{Address, Hash};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the provider needs to know from the chain.
pub trait Assignments: Send + Sync {
    /// The piece record and the size of its pieces, if the piece exists on chain.
    fn piece(&self, piece: &PieceRef) -> Option<(Piece, u64)>;
    /// Who owns a deal: the one peer, with a piece's repairer, that may upload its pieces.
    fn deal_owner(&self, deal: &Hash) -> Option<Address>;
}

/// Uploads in progress at most; more are refused as busy.
const MAX_UPLOADS: usize = 64;

/// An upload with no part for this long is dropped and its reserved space released.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// A piece being received: its part of the disk is reserved and written as parts arrive.
struct Upload {
    writer: PieceWriter,
    touched: Instant,
}

/// Serves the piece protocol for one provider.
pub struct PieceServer {
    store: Arc<PieceStore>,
    me: Address,
    chain: Arc<dyn Assignments>,
    /// Uploads between parts; an upload writing its part is out of the map meanwhile.
    uploads: Mutex<HashMap<PieceRef, Upload>>,
    stored: mpsc::UnboundedSender<PieceRef>,
}

impl std::fmt::Debug for PieceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PieceServer({})", self.me)
    }
}

impl PieceServer {
    /// A server for provider `me`; every piece it stores is sent on the returned channel so
    /// the node can confirm it on chain.
    pub fn new(
        store: Arc<PieceStore>,
        me: Address,
        chain: Arc<dyn Assignments>,
    ) -> (Arc<PieceServer>, mpsc::UnboundedReceiver<PieceRef>) {
        let (stored, rx) = mpsc::unbounded_channel();
        (
            Arc::new(PieceServer {
                store,
                me,
                chain,
                uploads: Mutex::new(HashMap::new()),
                stored,
            }),
            rx,
        )
    }

    pub fn store(&self) -> &Arc<PieceStore> {
        &self.store
    }

    /// Answers one encoded request with the encoded response (blocking: it may touch the
    /// disk). Range reads go from the disk straight into the response message.
    pub fn handle_encoded(&self, from: &PeerId, request: &[u8]) -> Vec<u8> {
        let request: PieceRequest = match depin_types::decode_bounded(request, MAX_MESSAGE_BYTES) {
            Ok(r) => r,
            Err(e) => {
                return depin_types::encode(&PieceResponse::refused(
                    "malformed_request",
                    e.to_string(),
                ));
            }
        };
        if let PieceRequest::Read { root, offset, len } = request
            && len as usize <= TRANSFER_BYTES
            && self
                .store
                .check_range(root.as_bytes(), offset, u64::from(len))
                .is_ok()
        {
            let read = crate::protocol::encode_data(len as usize, &mut |out| {
                self.store
                    .append_range(root.as_bytes(), offset, u64::from(len), out)
                    .map_err(std::io::Error::other)
            });
            return match read {
                Ok(message) => message,
                Err(e) => depin_types::encode(&PieceResponse::refused("internal", e.to_string())),
            };
        }
        depin_types::encode(&self.answer(from, request))
    }

    fn answer(&self, from: &PeerId, request: PieceRequest) -> PieceResponse {
        match request {
            PieceRequest::Put {
                piece,
                offset,
                bytes,
            } => self.put(from, piece, offset, bytes),
            PieceRequest::Outboard { root } => match (
                self.store.size_bytes(root.as_bytes()),
                self.store.outboard(root.as_bytes()),
            ) {
                (Ok(piece_bytes), Ok(outboard)) => PieceResponse::Outboard {
                    piece_bytes,
                    outboard,
                },
                (Err(e), _) | (_, Err(e)) => store_refusal(e),
            },
            PieceRequest::Read { root, offset, len } => {
                if len as usize > TRANSFER_BYTES {
                    return PieceResponse::refused(
                        "range_too_large",
                        format!("at most {TRANSFER_BYTES} bytes per read"),
                    );
                }
                match self
                    .store
                    .read_range(root.as_bytes(), offset, u64::from(len))
                {
                    Ok(bytes) => PieceResponse::Data { bytes },
                    Err(e) => store_refusal(e),
                }
            }
        }
    }

    fn put(&self, from: &PeerId, r: PieceRef, offset: u64, bytes: Vec<u8>) -> PieceResponse {
        let Some((piece, piece_bytes)) = self.chain.piece(&r) else {
            return PieceResponse::refused(
                "unknown_piece",
                format!("no piece {}/{} in deal {}", r.segment, r.piece, r.deal),
            );
        };
        if piece.provider != Some(self.me)
            || !matches!(piece.state, PieceState::Assigned | PieceState::Stored)
        {
            return PieceResponse::refused(
                "not_assigned",
                "this piece is not assigned to this provider",
            );
        }
        // Anyone else could hold upload slots and reserved space with pieces they cannot
        // finish: only the deal's owner, or the piece's repairer, uploads it.
        let uploader = |who: Option<Address>| {
            who.and_then(|a| depin_net::peer_id_of(&a).ok())
                .is_some_and(|peer| peer == *from)
        };
        if !uploader(self.chain.deal_owner(&r.deal)) && !uploader(piece.repairer) {
            return PieceResponse::refused(
                "not_uploader",
                "only the deal owner or the piece's repairer may upload it",
            );
        }
        if self.store.contains(piece.root.as_bytes()).unwrap_or(false) {
            let _ = self.stored.send(r);
            return PieceResponse::Stored;
        }
        let root = piece.root.as_bytes();
        let mut upload = match self.take_upload(r, offset) {
            Ok(Some(upload)) => upload,
            Ok(None) => match self.store.begin(root, piece_bytes) {
                Ok(Some(writer)) => Upload {
                    writer,
                    touched: Instant::now(),
                },
                Ok(None) => {
                    let _ = self.stored.send(r);
                    return PieceResponse::Stored;
                }
                Err(e) => return store_refusal(e),
            },
            Err(refusal) => return refusal,
        };
        if offset != upload.writer.written_bytes() {
            let expected = upload.writer.written_bytes();
            self.keep_upload(r, upload);
            return PieceResponse::refused(
                "out_of_order",
                format!("expected offset {expected}, got {offset}"),
            );
        }
        if let Err(e) = upload.writer.write(&bytes) {
            self.store.abort(upload.writer);
            return match e {
                PieceStoreError::Range { .. } => {
                    PieceResponse::refused("too_long", format!("the piece has {piece_bytes} bytes"))
                }
                other => store_refusal(other),
            };
        }
        let received_bytes = upload.writer.written_bytes();
        if received_bytes < piece_bytes {
            upload.touched = Instant::now();
            self.keep_upload(r, upload);
            return PieceResponse::Accepted { received_bytes };
        }
        match self.store.finish(upload.writer) {
            Ok(()) => {
                let _ = self.stored.send(r);
                PieceResponse::Stored
            }
            Err(e) => store_refusal(e),
        }
    }

    /// The upload of `r` in progress, out of the map while its part is written; `None` to
    /// start one. A part at offset 0 restarts the upload.
    fn take_upload(&self, r: PieceRef, offset: u64) -> Result<Option<Upload>, PieceResponse> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let stale: Vec<PieceRef> = uploads
            .iter()
            .filter(|(_, u)| now.duration_since(u.touched) > UPLOAD_IDLE)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(upload) = uploads.remove(&key) {
                self.store.abort(upload.writer);
            }
        }
        match uploads.remove(&r) {
            Some(upload) if offset == 0 && upload.writer.written_bytes() > 0 => {
                self.store.abort(upload.writer);
                Ok(None)
            }
            Some(upload) => Ok(Some(upload)),
            None if offset != 0 => Err(PieceResponse::refused(
                "out_of_order",
                format!("expected offset 0, got {offset}"),
            )),
            None if uploads.len() >= MAX_UPLOADS => Err(PieceResponse::refused(
                "busy",
                "too many uploads in progress",
            )),
            None => Ok(None),
        }
    }

    fn keep_upload(&self, r: PieceRef, upload: Upload) {
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = uploads.insert(r, upload) {
            self.store.abort(previous.writer);
        }
    }
}

fn store_refusal(e: PieceStoreError) -> PieceResponse {
    let code = match &e {
        PieceStoreError::RootMismatch { .. } => "root_mismatch",
        PieceStoreError::OutOfSpace { .. } => "out_of_space",
        PieceStoreError::UnknownPiece(_) => "unknown_piece",
        PieceStoreError::InProgress(_) => "busy",
        PieceStoreError::Range { .. } => "bad_range",
        PieceStoreError::Io(_)
        | PieceStoreError::CorruptRecord(_)
        | PieceStoreError::Database(_)
        | PieceStoreError::Transaction(_)
        | PieceStoreError::Table(_)
        | PieceStoreError::Storage(_)
        | PieceStoreError::Commit(_) => "internal",
    };
    PieceResponse::refused(code, e.to_string())
}

/// Serves [`PIECE_PROTOCOL`] on `net` until the network stops.
pub async fn serve(server: Arc<PieceServer>, net: depin_net::NetHandle) {
    let mut requests = match net.serve(PIECE_PROTOCOL).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the storage protocol");
            return;
        }
    };
    while let Some(request) = requests.recv().await {
        let server = server.clone();
        tokio::spawn(async move {
            let mut request = request;
            let bytes = std::mem::take(&mut request.bytes);
            let from = request.peer;
            let answer =
                tokio::task::spawn_blocking(move || server.handle_encoded(&from, &bytes)).await;
            if let Ok(answer) = answer {
                request.respond(answer);
            }
        });
    }
}
