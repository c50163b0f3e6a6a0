//! The blob protocol over depin-net request-response: a consumer pushes a job's bytes (a
//! module, an input, a scene bundle) to the providers the chain assigned; any holder serves
//! them to a provider that lacks them; providers serve the outputs they made (results,
//! rendered pieces) to whom their service allows. Every blob is checked against its BLAKE3
//! before use.

use crate::store::{BlobError, BlobStore, BlobWriter};
use borsh::{BorshDeserialize, BorshSerialize};
use depin_net::{NetError, NetHandle, peer_id_of};
use depin_types::{Address, Hash};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Request-response protocol name (depin-net adds the chain id).
pub const BLOB_PROTOCOL: &str = "blob/1";

/// Bytes per message.
pub const PART_BYTES: usize = 1 << 20;

/// Largest request or response: one part plus framing.
pub const MAX_MESSAGE_BYTES: usize = PART_BYTES + 64 * 1024;

/// Uploads in progress at most on a provider.
const MAX_UPLOADS: usize = 32;

/// An upload with no part for this long is dropped.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BlobRequest {
    /// Bytes from `offset` of a blob the chain says one of the provider's jobs needs. A part
    /// at another offset than the provider expects is answered with where to go on.
    Put {
        blob: Hash,
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    Get {
        blob: Hash,
        offset: u64,
        len: u32,
    },
    /// An output this provider made, by its service's key (a compute job's result bundle, a
    /// rendered piece).
    GetOutput {
        key: Hash,
        offset: u64,
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BlobResponse {
    /// The provider has `next` bytes of the blob; `complete` once it is whole and checked.
    Accepted {
        next: u64,
        complete: bool,
    },
    Data {
        total: u64,
        bytes: Vec<u8>,
    },
    Refused {
        code: String,
        message: String,
    },
}

fn refused(code: &str, message: impl Into<String>) -> BlobResponse {
    BlobResponse::Refused {
        code: code.into(),
        message: message.into(),
    }
}

/// What the node's services say from the chain.
pub trait WantedBlobs: Send + Sync {
    /// The length of `blob` if work assigned to this node needs it.
    fn wanted(&self, blob: &Hash) -> Option<u64>;

    /// Whether the output under `key` may go to `requester` (`None`: a peer whose id names
    /// no account). Outputs go to anyone unless a service says otherwise.
    fn may_serve_output(&self, _key: &Hash, _requester: Option<&Address>) -> bool {
        true
    }
}

/// Every service's wants at once: a blob is wanted if any says so, an output served if the
/// first that knows the key allows it (outputs of one service are unknown to the others).
pub struct AnyWanted(pub Vec<Arc<dyn WantedBlobs>>);

impl WantedBlobs for AnyWanted {
    fn wanted(&self, blob: &Hash) -> Option<u64> {
        self.0.iter().find_map(|w| w.wanted(blob))
    }

    fn may_serve_output(&self, key: &Hash, requester: Option<&Address>) -> bool {
        self.0.iter().all(|w| w.may_serve_output(key, requester))
    }
}

struct Upload {
    writer: BlobWriter,
    touched: Instant,
}

/// Serves [`BLOB_PROTOCOL`] for one provider.
pub struct BlobServer {
    store: Arc<BlobStore>,
    wanted: Arc<dyn WantedBlobs>,
    uploads: Mutex<HashMap<Hash, Upload>>,
    stored: tokio::sync::mpsc::UnboundedSender<Hash>,
}

impl std::fmt::Debug for BlobServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobServer({})", self.store.dir().display())
    }
}

impl BlobServer {
    /// A server whose completed uploads are announced on the returned channel.
    pub fn new(
        store: Arc<BlobStore>,
        wanted: Arc<dyn WantedBlobs>,
    ) -> (Arc<BlobServer>, tokio::sync::mpsc::UnboundedReceiver<Hash>) {
        let (stored, rx) = tokio::sync::mpsc::unbounded_channel();
        let server = BlobServer {
            store,
            wanted,
            uploads: Mutex::new(HashMap::new()),
            stored,
        };
        (Arc::new(server), rx)
    }

    /// Answers one encoded request from `requester` (blocking: it touches the disk).
    pub fn handle_encoded(&self, request: &[u8], requester: Option<&Address>) -> Vec<u8> {
        let answer = match depin_types::decode_bounded::<BlobRequest>(request, MAX_MESSAGE_BYTES) {
            Ok(request) => self.handle(request, requester),
            Err(e) => refused("malformed", e.to_string()),
        };
        depin_types::encode(&answer)
    }

    pub fn handle(&self, request: BlobRequest, requester: Option<&Address>) -> BlobResponse {
        match request {
            BlobRequest::Put {
                blob,
                total,
                offset,
                bytes,
            } => self.put(blob, total, offset, &bytes),
            BlobRequest::Get { blob, offset, len } => {
                match self
                    .store
                    .read_blob(&blob, offset, (len as usize).min(PART_BYTES))
                {
                    Ok((total, bytes)) => BlobResponse::Data { total, bytes },
                    Err(BlobError::Unknown(_)) => {
                        refused("unknown_blob", format!("no blob {blob}"))
                    }
                    Err(e) => refused("internal", e.to_string()),
                }
            }
            BlobRequest::GetOutput { key, offset, len } => {
                if !self.wanted.may_serve_output(&key, requester) {
                    return refused(
                        "not_allowed",
                        format!("output {key} is not served to this peer (yet)"),
                    );
                }
                match self
                    .store
                    .read_output(&key, offset, (len as usize).min(PART_BYTES))
                {
                    Ok((total, bytes)) => BlobResponse::Data { total, bytes },
                    Err(BlobError::Unknown(_)) => {
                        refused("unknown_output", format!("no output {key} here"))
                    }
                    Err(e) => refused("internal", e.to_string()),
                }
            }
        }
    }

    fn put(&self, blob: Hash, total: u64, offset: u64, bytes: &[u8]) -> BlobResponse {
        if self.store.has(&blob) {
            return BlobResponse::Accepted {
                next: total,
                complete: true,
            };
        }
        match self.wanted.wanted(&blob) {
            Some(size) if size == total => {}
            Some(size) => {
                return refused(
                    "wrong_size",
                    format!("blob {blob} is {size} bytes on chain"),
                );
            }
            None => {
                return refused(
                    "not_wanted",
                    format!("no job assigned here needs blob {blob} (yet)"),
                );
            }
        }
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let stale: Vec<Hash> = uploads
            .iter()
            .filter(|(_, u)| u.touched.elapsed() > UPLOAD_IDLE)
            .map(|(h, _)| *h)
            .collect();
        for h in stale {
            if let Some(u) = uploads.remove(&h) {
                self.store.abort(u.writer);
            }
        }
        if !uploads.contains_key(&blob) {
            if offset != 0 {
                return BlobResponse::Accepted {
                    next: 0,
                    complete: false,
                };
            }
            if uploads.len() >= MAX_UPLOADS {
                return refused("busy", "too many uploads in progress");
            }
            match self.store.begin(blob, total) {
                Ok(writer) => {
                    uploads.insert(
                        blob,
                        Upload {
                            writer,
                            touched: Instant::now(),
                        },
                    );
                }
                Err(e) => return refused("internal", e.to_string()),
            }
        }
        let Some(upload) = uploads.get_mut(&blob) else {
            return refused("internal", "upload vanished");
        };
        if offset != upload.writer.written() {
            return BlobResponse::Accepted {
                next: upload.writer.written(),
                complete: false,
            };
        }
        upload.touched = Instant::now();
        if let Err(e) = upload.writer.write(bytes) {
            if let Some(u) = uploads.remove(&blob) {
                self.store.abort(u.writer);
            }
            return refused("bad_part", e.to_string());
        }
        if !upload.writer.is_complete() {
            return BlobResponse::Accepted {
                next: upload.writer.written(),
                complete: false,
            };
        }
        let Some(done) = uploads.remove(&blob) else {
            return refused("internal", "upload vanished");
        };
        drop(uploads);
        match self.store.finish(done.writer) {
            Ok(()) => {
                let _ = self.stored.send(blob);
                BlobResponse::Accepted {
                    next: total,
                    complete: true,
                }
            }
            Err(e @ BlobError::HashMismatch { .. }) => refused("hash_mismatch", e.to_string()),
            Err(e) => refused("internal", e.to_string()),
        }
    }
}

/// Serves [`BLOB_PROTOCOL`] on `net` until the network stops.
pub async fn serve(server: Arc<BlobServer>, net: NetHandle) {
    let mut requests = match net.serve(BLOB_PROTOCOL).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the blob protocol");
            return;
        }
    };
    while let Some(mut request) = requests.recv().await {
        let server = server.clone();
        tokio::spawn(async move {
            let bytes = std::mem::take(&mut request.bytes);
            let requester = depin_net::address_of(&request.peer);
            let answer = tokio::task::spawn_blocking(move || {
                server.handle_encoded(&bytes, requester.as_ref())
            })
            .await;
            if let Ok(answer) = answer {
                request.respond(answer);
            }
        });
    }
}

#[derive(Debug, Error)]
pub enum TransferError {
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("bad answer: {0}")]
    Malformed(String),
    #[error("{0}")]
    Blob(#[from] BlobError),
    #[error("cannot read what is sent: {0}")]
    Source(#[from] std::io::Error),
    #[error("no holder had it: {0}")]
    NoHolder(String),
}

async fn ask(
    net: &NetHandle,
    provider: &Address,
    request: &BlobRequest,
) -> Result<BlobResponse, TransferError> {
    let peer = peer_id_of(provider)?;
    let answer = net
        .request(peer, BLOB_PROTOCOL, depin_types::encode(request))
        .await?;
    match depin_types::decode_bounded::<BlobResponse>(&answer, MAX_MESSAGE_BYTES) {
        Ok(BlobResponse::Refused { code, message }) => {
            Err(TransferError::Refused { code, message })
        }
        Ok(other) => Ok(other),
        Err(e) => Err(TransferError::Malformed(e.to_string())),
    }
}

/// Pushes the file at `source` (whose BLAKE3 is `blob`) to `provider`, resuming where the
/// provider says it is. A provider whose chain has not seen the job yet refuses with
/// `not_wanted`: that is retried for `patience`. `sent` is told of every part delivered.
pub async fn push_blob(
    net: &NetHandle,
    provider: &Address,
    blob: Hash,
    source: &Path,
    patience: Duration,
    sent: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), TransferError> {
    let mut file = std::fs::File::open(source)?;
    let total = file.metadata()?.len();
    let started = Instant::now();
    let mut offset = 0u64;
    let mut failures = 0u32;
    loop {
        let len = (PART_BYTES as u64).min(total - offset.min(total)) as usize;
        let mut bytes = Vec::with_capacity(len);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
        (&mut file).take(len as u64).read_to_end(&mut bytes)?;
        let request = BlobRequest::Put {
            blob,
            total,
            offset,
            bytes,
        };
        match ask(net, provider, &request).await {
            Ok(BlobResponse::Accepted { next, complete }) => {
                if complete {
                    sent(total.saturating_sub(offset));
                    return Ok(());
                }
                if next > offset {
                    sent(next - offset);
                }
                offset = next.min(total);
                failures = 0;
            }
            Ok(_) => {
                return Err(TransferError::Malformed(
                    "unexpected answer to a put".into(),
                ));
            }
            Err(TransferError::Refused { code, message })
                if (code == "not_wanted" || code == "busy") && started.elapsed() < patience =>
            {
                tracing::debug!(%code, %message, "provider not ready for the blob yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(TransferError::Net(e)) if failures < 5 && started.elapsed() < patience => {
                failures += 1;
                tracing::debug!(error = %e, "blob part not delivered; again");
                tokio::time::sleep(Duration::from_millis(200 << failures)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Downloads all of something a holder serves (a blob or a result), part after part.
async fn download(
    net: &NetHandle,
    holder: &Address,
    max_bytes: u64,
    part: impl Fn(u64) -> BlobRequest,
    mut write: impl FnMut(&[u8]) -> Result<(), TransferError>,
) -> Result<u64, TransferError> {
    let mut offset = 0u64;
    loop {
        match ask(net, holder, &part(offset)).await? {
            BlobResponse::Data { total, bytes } => {
                if total > max_bytes {
                    return Err(TransferError::Malformed(format!(
                        "{total} bytes, at most {max_bytes} expected"
                    )));
                }
                if bytes.is_empty() && offset < total {
                    return Err(TransferError::Malformed("an empty part".into()));
                }
                write(&bytes)?;
                offset += bytes.len() as u64;
                if offset >= total {
                    return Ok(total);
                }
            }
            _ => {
                return Err(TransferError::Malformed(
                    "unexpected answer to a read".into(),
                ));
            }
        }
    }
}

/// Fetches `blob` of `total` bytes from the first of `holders` that serves it whole and
/// right, into `store`.
pub async fn fetch_blob(
    net: &NetHandle,
    holders: &[Address],
    blob: Hash,
    total: u64,
    store: &BlobStore,
) -> Result<(), TransferError> {
    let mut reasons = Vec::new();
    for holder in holders {
        let mut writer = store.begin(blob, total)?;
        let got = download(
            net,
            holder,
            total,
            |offset| BlobRequest::Get {
                blob,
                offset,
                len: PART_BYTES as u32,
            },
            |bytes| writer.write(bytes).map_err(TransferError::from),
        )
        .await;
        match got {
            Ok(_) => match store.finish(writer) {
                Ok(()) => return Ok(()),
                Err(e) => reasons.push(format!("{holder}: {e}")),
            },
            Err(e) => {
                store.abort(writer);
                reasons.push(format!("{holder}: {e}"));
            }
        }
    }
    Err(TransferError::NoHolder(reasons.join("; ")))
}

/// The output under `key` from `holder`, at most `max_bytes`.
pub async fn fetch_output(
    net: &NetHandle,
    holder: &Address,
    key: Hash,
    max_bytes: u64,
) -> Result<Vec<u8>, TransferError> {
    let mut out = Vec::new();
    download(
        net,
        holder,
        max_bytes,
        |offset| BlobRequest::GetOutput {
            key,
            offset,
            len: PART_BYTES as u32,
        },
        |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        },
    )
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Wants(Hash, u64);

    impl WantedBlobs for Wants {
        fn wanted(&self, blob: &Hash) -> Option<u64> {
            (*blob == self.0).then_some(self.1)
        }
    }

    /// Serves the output `key` to `allowed` only.
    struct OnlyTo(Hash, depin_types::Address);

    impl WantedBlobs for OnlyTo {
        fn wanted(&self, _blob: &Hash) -> Option<u64> {
            None
        }

        fn may_serve_output(&self, key: &Hash, requester: Option<&Address>) -> bool {
            *key != self.0 || requester == Some(&self.1)
        }
    }

    #[test]
    fn an_output_goes_only_to_whom_its_service_allows() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(BlobStore::open(dir.path()).expect("open"));
        let key = Hash::of(b"a rendered piece");
        store.put_output(&key, b"pixels").expect("put");
        let consumer = depin_types::Keypair::from_seed(b"consumer").address();
        let stranger = depin_types::Keypair::from_seed(b"stranger").address();
        let policy = AnyWanted(vec![Arc::new(OnlyTo(key, consumer))]);
        let (server, _) = BlobServer::new(store, Arc::new(policy));
        let get = BlobRequest::GetOutput {
            key,
            offset: 0,
            len: 100,
        };
        assert_eq!(
            server.handle(get.clone(), Some(&consumer)),
            BlobResponse::Data {
                total: 6,
                bytes: b"pixels".to_vec()
            }
        );
        for who in [Some(&stranger), None] {
            assert!(matches!(
                server.handle(get.clone(), who),
                BlobResponse::Refused { code, .. } if code == "not_allowed"
            ));
        }
    }

    #[test]
    fn a_provider_takes_only_wanted_blobs_in_order_and_checks_their_hash() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(BlobStore::open(dir.path()).expect("open"));
        let bytes: Vec<u8> = (0..3 * PART_BYTES as u32 / 2)
            .map(|i| (i % 253) as u8)
            .collect();
        let blob = Hash(*blake3::hash(&bytes).as_bytes());
        let total = bytes.len() as u64;
        let (server, mut stored) = BlobServer::new(store.clone(), Arc::new(Wants(blob, total)));
        let put = |blob: Hash, total: u64, offset: u64, part: &[u8]| {
            server.handle(
                BlobRequest::Put {
                    blob,
                    total,
                    offset,
                    bytes: part.to_vec(),
                },
                None,
            )
        };
        let stranger = Hash(*blake3::hash(b"stranger").as_bytes());
        assert!(
            matches!(put(stranger, 8, 0, b"stranger"), BlobResponse::Refused { code, .. } if code == "not_wanted")
        );
        assert!(
            matches!(put(blob, total + 1, 0, b"x"), BlobResponse::Refused { code, .. } if code == "wrong_size")
        );
        // Out of order: told where to go on.
        assert_eq!(
            put(blob, total, 5, &bytes[5..10]),
            BlobResponse::Accepted {
                next: 0,
                complete: false
            }
        );
        let half = PART_BYTES;
        assert_eq!(
            put(blob, total, 0, &bytes[..half]),
            BlobResponse::Accepted {
                next: half as u64,
                complete: false
            }
        );
        assert_eq!(
            put(blob, total, 0, &bytes[..half]),
            BlobResponse::Accepted {
                next: half as u64,
                complete: false
            }
        );
        assert_eq!(
            put(blob, total, half as u64, &bytes[half..]),
            BlobResponse::Accepted {
                next: total,
                complete: true
            }
        );
        assert_eq!(stored.try_recv().ok(), Some(blob));
        assert_eq!(
            server.handle(
                BlobRequest::Get {
                    blob,
                    offset: 10,
                    len: 5
                },
                None
            ),
            BlobResponse::Data {
                total,
                bytes: bytes[10..15].to_vec()
            }
        );

        // Bytes that do not hash to the wanted blob are thrown away.
        let other: Vec<u8> = vec![9u8; 100];
        let want = Hash(*blake3::hash(b"the real thing").as_bytes());
        let (server, _) = BlobServer::new(store.clone(), Arc::new(Wants(want, 100)));
        let answer = server.handle(
            BlobRequest::Put {
                blob: want,
                total: 100,
                offset: 0,
                bytes: other,
            },
            None,
        );
        assert!(matches!(answer, BlobResponse::Refused { code, .. } if code == "hash_mismatch"));
        assert!(!store.has(&want));
        assert!(matches!(
            server.handle_encoded(b"\xff\xff junk", None).as_slice(),
            bytes if matches!(depin_types::decode_bounded::<BlobResponse>(bytes, MAX_MESSAGE_BYTES), Ok(BlobResponse::Refused { .. }))
        ));
    }
}

#[cfg(test)]
mod network_tests {
    //! The blob protocol over real libp2p on loopback.
    use super::*;
    use depin_net::{Multiaddr, NetConfig, Network};
    use depin_types::Keypair;

    struct Wants(Vec<(Hash, u64)>);

    impl WantedBlobs for Wants {
        fn wanted(&self, blob: &Hash) -> Option<u64> {
            self.0.iter().find(|(h, _)| h == blob).map(|(_, len)| *len)
        }
    }

    fn config(key: Keypair) -> NetConfig {
        let mut c = NetConfig::new(key, "blobs-test");
        c.listen_tcp = "/ip4/127.0.0.1/tcp/0".parse().expect("addr");
        c.listen_quic = None;
        c.max_request_bytes = MAX_MESSAGE_BYTES;
        c.max_response_bytes = MAX_MESSAGE_BYTES;
        c.request_timeout = Duration::from_secs(5);
        c
    }

    async fn listen_addr(net: &NetHandle) -> Multiaddr {
        for _ in 0..100 {
            if let Some(a) = net.listen_addrs().await.into_iter().next() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no listen address");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blobs_go_from_consumer_to_replica_and_from_any_holder_to_a_latecomer() {
        let module: Vec<u8> = (0..(2 * PART_BYTES + 12_345) as u32)
            .map(|i| (i % 241) as u8)
            .collect();
        let module_hash = Hash(*blake3::hash(&module).as_bytes());
        let total = module.len() as u64;
        let tmp = tempfile::tempdir().expect("tmp");
        let source = tmp.path().join("module.wasm");
        std::fs::write(&source, &module).expect("write");

        // A replica that wants the module.
        let replica_key = Keypair::from_seed(b"replica");
        let replica_store = Arc::new(BlobStore::open(&tmp.path().join("replica")).expect("store"));
        let (server, mut stored) = BlobServer::new(
            replica_store.clone(),
            Arc::new(Wants(vec![(module_hash, total)])),
        );
        let (replica_net, _e) = Network::start(config(replica_key.clone()))
            .await
            .expect("net");
        tokio::spawn(serve(server, replica_net.clone()));
        let replica_addr = listen_addr(&replica_net).await;

        // The consumer pushes it, with progress adding up to the whole blob.
        let mut consumer_config = config(Keypair::from_seed(b"consumer"));
        consumer_config.bootstrap = vec![replica_addr.clone()];
        let (consumer, _e) = Network::start(consumer_config).await.expect("net");
        let sent = std::sync::atomic::AtomicU64::new(0);
        let count = |n: u64| {
            sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        push_blob(
            &consumer,
            &replica_key.address(),
            module_hash,
            &source,
            Duration::from_secs(10),
            &count,
        )
        .await
        .expect("push");
        assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), total);
        assert_eq!(stored.recv().await, Some(module_hash));
        assert!(replica_store.has(&module_hash));
        // A blob no job names is refused at once.
        let stray = tmp.path().join("stray");
        std::fs::write(&stray, b"nobody asked").expect("write");
        let stray_hash = Hash(*blake3::hash(b"nobody asked").as_bytes());
        let refused = push_blob(
            &consumer,
            &replica_key.address(),
            stray_hash,
            &stray,
            Duration::ZERO,
            &|_| {},
        )
        .await;
        assert!(
            matches!(refused, Err(TransferError::Refused { ref code, .. }) if code == "not_wanted"),
            "{refused:?}"
        );

        // A latecomer (a retry round's fresh provider) fetches it from the holders: one that
        // is not there, then the replica.
        let late_store = BlobStore::open(&tmp.path().join("late")).expect("store");
        let mut late_config = config(Keypair::from_seed(b"latecomer"));
        late_config.bootstrap = vec![replica_addr];
        let (late, _e) = Network::start(late_config).await.expect("net");
        let nobody = Keypair::from_seed(b"nobody").address();
        fetch_blob(
            &late,
            &[nobody, replica_key.address()],
            module_hash,
            total,
            &late_store,
        )
        .await
        .expect("fetch");
        assert_eq!(
            std::fs::read(late_store.path(&module_hash)).expect("read"),
            module
        );
        // A blob nobody holds: a clear error naming each holder's answer.
        let missing =
            fetch_blob(&late, &[replica_key.address()], stray_hash, 12, &late_store).await;
        assert!(
            matches!(missing, Err(TransferError::NoHolder(ref why)) if why.contains("unknown_blob")),
            "{missing:?}"
        );

        // Results come back whole.
        let result: Vec<u8> = vec![42u8; PART_BYTES + 7];
        let job = Hash::of(b"job");
        replica_store.put_output(&job, &result).expect("result");
        let fetched = fetch_output(&late, &replica_key.address(), job, 1 << 30)
            .await
            .expect("result");
        assert_eq!(fetched, result);
        let too_big = fetch_output(&late, &replica_key.address(), job, 100).await;
        assert!(
            matches!(too_big, Err(TransferError::Malformed(_))),
            "{too_big:?}"
        );
    }
}
