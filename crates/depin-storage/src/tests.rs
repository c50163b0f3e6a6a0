//! A provider and a client over a real depin-net connection on 127.0.0.1: uploads only of
//! assigned pieces with the right bytes, verified downloads, corruption and space faults.

use crate::client::{ClientError, download_piece, upload_piece};
use crate::protocol::MAX_MESSAGE_BYTES;
use crate::provider::{Assignments, PieceServer, serve};
use crate::store::PieceStore;
use depin_net::{NetConfig, NetHandle, Network};
use depin_protocol::storage::{Piece, PieceRef, PieceState};
use depin_types::{Hash, Keypair};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

struct FakeChain(HashMap<PieceRef, (Piece, u64)>);

impl Assignments for FakeChain {
    fn piece(&self, piece: &PieceRef) -> Option<(Piece, u64)> {
        self.0.get(piece).cloned()
    }

    fn deal_owner(&self, _deal: &Hash) -> Option<depin_types::Address> {
        Some(client_key().address())
    }
}

/// The key of the deals' owner, the one client allowed to upload.
fn client_key() -> Keypair {
    Keypair::from_seed(b"client")
}

fn config(key: Keypair) -> NetConfig {
    let mut c = NetConfig::new(key, "storage-test");
    c.listen_tcp = "/ip4/127.0.0.1/tcp/0".parse().expect("addr");
    c.listen_quic = None;
    c.max_request_bytes = MAX_MESSAGE_BYTES;
    c.max_response_bytes = MAX_MESSAGE_BYTES;
    c
}

async fn listen_addr(net: &NetHandle) -> depin_net::Multiaddr {
    for _ in 0..100 {
        if let Some(a) = net.listen_addrs().await.into_iter().next() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no listen address");
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn piece_ref(n: u16) -> PieceRef {
    PieceRef {
        deal: Hash::of(b"deal"),
        segment: 0,
        piece: n,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_pieces_upload_and_download_verified() {
    let provider_key = Keypair::from_seed(b"provider");
    let provider = provider_key.address();
    let other = Keypair::from_seed(b"someone else").address();
    let big = bytes(300_001, 1);
    let small = bytes(5_000, 2);
    let huge = bytes(400_000, 3);
    let assigned = |data: &[u8], to| {
        (
            Piece {
                root: Hash::of(data),
                provider: Some(to),
                state: PieceState::Assigned,
                checked_epoch: None,
                misses: 0,
                repairer: None,
                paid_from_epoch: 0,
            },
            data.len() as u64,
        )
    };
    let chain = FakeChain(HashMap::from([
        (piece_ref(0), assigned(&big, provider)),
        (piece_ref(1), assigned(&small, provider)),
        (piece_ref(2), assigned(&small, other)),
        (piece_ref(3), assigned(&huge, provider)),
        (piece_ref(4), assigned(&bytes(5_000, 9), provider)),
        // Being repaired: its repairer (the "stranger" below) uploads it.
        (
            piece_ref(5),
            (
                Piece {
                    repairer: Some(Keypair::from_seed(b"stranger").address()),
                    ..assigned(&bytes(1_000, 11), provider).0
                },
                1_000,
            ),
        ),
    ]));
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(PieceStore::open(dir.path(), 500_000).expect("store"));
    let (server, mut stored) = PieceServer::new(store.clone(), provider, Arc::new(chain));
    let (provider_net, _events) = Network::start(config(provider_key))
        .await
        .expect("provider net");
    tokio::spawn(serve(server, provider_net.clone()));
    let mut client_config = config(client_key());
    client_config.bootstrap = vec![listen_addr(&provider_net).await];
    let (client, _client_events) = Network::start(client_config).await.expect("client net");

    // Assigned pieces upload (the big one in several messages) and are reported once durable.
    upload_piece(&client, &provider, piece_ref(0), &big)
        .await
        .expect("upload big");
    upload_piece(&client, &provider, piece_ref(1), &small)
        .await
        .expect("upload small");
    assert_eq!(stored.recv().await, Some(piece_ref(0)));
    assert_eq!(stored.recv().await, Some(piece_ref(1)));
    assert_eq!(store.used_bytes().expect("used"), 305_001);
    let back = download_piece(&client, &provider, Hash::of(&big), big.len() as u64)
        .await
        .expect("download");
    assert_eq!(back, big);
    let back = download_piece(&client, &provider, Hash::of(&small), 5_000)
        .await
        .expect("download");
    assert_eq!(back, small);

    // Refusals: a piece assigned to someone else, bytes that are not the piece, no space.
    let refused = |r: Result<(), ClientError>| match r {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(upload_piece(&client, &provider, piece_ref(2), &small).await),
        "not_assigned"
    );
    // The attack: a stranger starts uploads of assigned pieces it cannot finish, to hold the
    // provider's upload slots and reserved space. Only the owner's (or repairer's) peer may.
    let mut stranger_config = config(Keypair::from_seed(b"stranger"));
    stranger_config.bootstrap = vec![listen_addr(&provider_net).await];
    let (stranger, _stranger_events) = Network::start(stranger_config).await.expect("stranger net");
    assert_eq!(
        refused(upload_piece(&stranger, &provider, piece_ref(4), &bytes(5_000, 9)).await),
        "not_uploader"
    );
    // The same peer as a piece's repairer is its uploader.
    upload_piece(&stranger, &provider, piece_ref(5), &bytes(1_000, 11))
        .await
        .expect("the repairer uploads");
    stranger.shutdown().await;
    assert_eq!(
        refused(upload_piece(&client, &provider, piece_ref(9), &small).await),
        "unknown_piece"
    );
    let forged = bytes(5_000, 10);
    assert_eq!(
        refused(upload_piece(&client, &provider, piece_ref(4), &forged).await),
        "root_mismatch"
    );
    assert_eq!(
        refused(upload_piece(&client, &provider, piece_ref(3), &huge).await),
        "out_of_space"
    );
    assert_eq!(
        store.used_bytes().expect("used"),
        306_001,
        "the repaired piece's 1,000 bytes more; refusals take no space"
    );

    // A byte flipped on the provider's disk is caught by the downloader.
    store
        .corrupt_for_tests(Hash::of(&big).as_bytes(), 200_000)
        .expect("corrupt");
    let corrupt = download_piece(&client, &provider, Hash::of(&big), big.len() as u64).await;
    assert!(
        matches!(corrupt, Err(ClientError::Corrupt { group: 12 })),
        "{corrupt:?}"
    );
    client.shutdown().await;
    provider_net.shutdown().await;
}

/// Starts a provider serving `store` for `key`; returns its network handle.
async fn start_provider(
    key: &Keypair,
    store: Arc<PieceStore>,
    chain: Arc<FakeChain>,
) -> (NetHandle, tokio::sync::mpsc::UnboundedReceiver<PieceRef>) {
    let (server, stored) = PieceServer::new(store, key.address(), chain);
    let (net, _events) = Network::start(config(key.clone()))
        .await
        .expect("provider net");
    tokio::spawn(serve(server, net.clone()));
    (net, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_upload_keeps_nothing_partial_and_takes_the_piece_again() {
    use crate::protocol::{PIECE_PROTOCOL, PieceRequest, PieceResponse, TRANSFER_BYTES};
    let key = Keypair::from_seed(b"provider");
    let piece = bytes(TRANSFER_BYTES + 1_000_000, 7);
    let chain = Arc::new(FakeChain(HashMap::from([(
        piece_ref(0),
        (
            Piece {
                root: Hash::of(&piece),
                provider: Some(key.address()),
                state: PieceState::Assigned,
                checked_epoch: None,
                misses: 0,
                repairer: None,
                paid_from_epoch: 0,
            },
            piece.len() as u64,
        ),
    )])));
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(PieceStore::open(dir.path(), 1 << 30).expect("store"));
    let (provider_net, _stored) = start_provider(&key, store.clone(), chain.clone()).await;
    let mut client_config = config(client_key());
    client_config.bootstrap = vec![listen_addr(&provider_net).await];
    let (client, _events) = Network::start(client_config).await.expect("client net");

    // The first part arrives, then the provider dies.
    let first = PieceRequest::Put {
        piece: piece_ref(0),
        offset: 0,
        bytes: piece[..TRANSFER_BYTES].to_vec(),
    };
    let peer = depin_net::peer_id_of(&key.address()).expect("peer id");
    let answer = client
        .request(peer, PIECE_PROTOCOL, depin_types::encode(&first))
        .await
        .expect("first part answered");
    let answer: PieceResponse = depin_types::decode_bounded(&answer, 1 << 20).expect("decode");
    assert_eq!(
        answer,
        PieceResponse::Accepted {
            received_bytes: TRANSFER_BYTES as u64
        }
    );
    provider_net.shutdown().await;
    drop(store);
    client.shutdown().await;

    // It restarts on the same folder: nothing partial was kept, no space is taken.
    let store = loop {
        match PieceStore::open(dir.path(), 1 << 30) {
            Ok(s) => break Arc::new(s),
            // The old server task may still hold the database for a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(store.used_bytes().expect("used"), 0);
    assert!(store.roots().expect("roots").is_empty());
    let (provider_net, mut stored) = start_provider(&key, store.clone(), chain).await;
    let mut client_config = config(client_key());
    client_config.bootstrap = vec![listen_addr(&provider_net).await];
    let (client, _events) = Network::start(client_config).await.expect("client net");
    upload_piece(&client, &key.address(), piece_ref(0), &piece)
        .await
        .expect("upload after the restart");
    assert_eq!(stored.recv().await, Some(piece_ref(0)));
    assert_eq!(store.used_bytes().expect("used"), piece.len() as u64);
    let back = download_piece(
        &client,
        &key.address(),
        Hash::of(&piece),
        piece.len() as u64,
    )
    .await
    .expect("download");
    assert_eq!(back, piece);
    client.shutdown().await;
    provider_net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_comes_back_with_n_minus_k_providers_dead_or_lying() {
    use crate::client::{FetchPlan, PieceHolder, fetch_pieces};
    use crate::erasure::ReedSolomon;
    use crate::object::{prepare_segment, restore_segment};

    let coder = ReedSolomon::new(4, 8).expect("profile");
    let segment = bytes(200_003, 5);
    let prepared = prepare_segment(&coder, &segment, None).expect("code");
    let dir = tempfile::tempdir().expect("tmp");
    let mut providers = Vec::new();
    for (i, piece) in prepared.pieces.iter().enumerate() {
        let key = Keypair::from_seed(format!("provider {i}").as_bytes());
        let address = key.address();
        let r = piece_ref(i as u16);
        let record = Piece {
            root: prepared.roots[i],
            provider: Some(address),
            state: PieceState::Assigned,
            checked_epoch: None,
            misses: 0,
            repairer: None,
            paid_from_epoch: 0,
        };
        let chain = FakeChain(HashMap::from([(r, (record, prepared.piece_bytes))]));
        let store =
            Arc::new(PieceStore::open(&dir.path().join(i.to_string()), 1 << 20).expect("store"));
        store.put(prepared.roots[i].as_bytes(), piece).expect("put");
        let (server, _stored) = PieceServer::new(store.clone(), address, Arc::new(chain));
        let (net, _events) = Network::start(config(key)).await.expect("provider net");
        tokio::spawn(serve(server, net.clone()));
        providers.push((address, net, store));
    }
    let mut client_config = config(client_key());
    for (_, net, _) in &providers {
        client_config.bootstrap.push(listen_addr(net).await);
    }
    let (client, _client_events) = Network::start(client_config).await.expect("client net");
    // n - k = 4 bad holders: three data pieces' providers are gone, one provider's piece rotted.
    for (_, net, _) in &providers[..3] {
        net.shutdown().await;
    }
    providers[5]
        .2
        .corrupt_for_tests(prepared.roots[5].as_bytes(), 30_000)
        .expect("rot");
    let holders: Vec<PieceHolder> = providers
        .iter()
        .enumerate()
        .map(|(i, (address, _, _))| PieceHolder {
            index: i as u16,
            root: prepared.roots[i],
            provider: *address,
        })
        .collect();
    let plan = FetchPlan {
        piece_bytes: prepared.piece_bytes,
        needed: 4,
        extra: 1,
        hedge_after: Duration::from_millis(300),
        retry_for: Duration::from_secs(1),
    };
    let failed = std::sync::Mutex::new(Vec::new());
    let report = |event: crate::client::FetchEvent<'_>| {
        if let crate::client::FetchEvent::Failed { index, .. } = event {
            failed.lock().expect("lock").push(index);
        }
    };
    let pieces = tokio::time::timeout(
        Duration::from_secs(30),
        fetch_pieces(&client, holders.clone(), &plan, &report),
    )
    .await
    .expect("in time")
    .expect("fetched");
    let mut got: Vec<usize> = pieces.iter().map(|(i, _)| *i).collect();
    got.sort();
    assert_eq!(got, vec![3, 4, 6, 7]);
    assert!(
        failed.lock().expect("lock").contains(&5),
        "the rotten piece was refused"
    );
    let restored = restore_segment(&coder, segment.len() as u64, &pieces, None).expect("restore");
    assert_eq!(restored, segment);

    // One more bad holder is one too many: a clear error, not a hang.
    providers[7].1.shutdown().await;
    let short = tokio::time::timeout(
        Duration::from_secs(30),
        fetch_pieces(&client, holders, &plan, &report),
    )
    .await
    .expect("in time");
    assert!(short.is_err());
}

/// The put pipeline in process: three providers store their pieces, a fourth never answers;
/// every segment reaches its success count, the dead provider's uploads are cancelled as the
/// long tail, and what the providers hold is exactly the coded pieces the deal commits to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploader_stores_every_segment_and_cuts_the_long_tail() {
    use crate::upload::{SegmentPlacement, UploadEvent, UploadJob, Uploader};
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("object");
    let object = bytes(300_000, 5);
    std::fs::write(&path, &object).expect("object");
    let job = UploadJob {
        path,
        object_bytes: object.len() as u64,
        plain_segment_bytes: 160_000,
        data_pieces: 2,
        total_pieces: 4,
        seal: None,
    };
    let specs = job.piece_roots(&|_| {}).expect("pass 1");
    assert_eq!(specs.len(), 2);
    let keys: Vec<Keypair> = (0..4u8).map(|i| Keypair::from_seed(&[b'p', i])).collect();
    let deal = Hash::of(b"upload deal");
    let mut assigned = HashMap::new();
    for (s, spec) in specs.iter().enumerate() {
        for (p, root) in spec.roots.iter().enumerate() {
            let r = PieceRef {
                deal,
                segment: s as u32,
                piece: p as u16,
            };
            let piece = Piece {
                root: *root,
                provider: Some(keys[p].address()),
                state: PieceState::Assigned,
                checked_epoch: None,
                misses: 0,
                repairer: None,
                paid_from_epoch: 0,
            };
            assigned.insert(r, (piece, spec.piece_bytes));
        }
    }
    let chain = Arc::new(FakeChain(assigned));
    // Providers 0..3 run; provider 3 never comes up.
    let mut stores = Vec::new();
    let mut addrs = Vec::new();
    for key in &keys[..3] {
        let store_dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(PieceStore::open(store_dir.path(), 10_000_000).expect("store"));
        let (server, _stored) = PieceServer::new(store.clone(), key.address(), chain.clone());
        let (net, _events) = Network::start(config(key.clone()))
            .await
            .expect("provider net");
        tokio::spawn(serve(server, net.clone()));
        addrs.push(listen_addr(&net).await);
        stores.push((store_dir, store, net));
    }
    let mut client_config = config(client_key());
    client_config.bootstrap = addrs;
    let (client, _client_events) = Network::start(client_config).await.expect("client net");
    let placement: Vec<SegmentPlacement> = (0..2u32)
        .map(|segment| SegmentPlacement {
            segment,
            pieces: (0..4u16)
                .map(|p| (p, keys[usize::from(p)].address()))
                .collect(),
        })
        .collect();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cancelled_events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (sent_in, cancelled_in) = (sent.clone(), cancelled_events.clone());
    let events: Arc<dyn Fn(UploadEvent) + Send + Sync> = Arc::new(move |event| match event {
        UploadEvent::Sent(n) => {
            sent_in.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        UploadEvent::TailCancelled { pieces } => {
            cancelled_in.fetch_add(pieces, std::sync::atomic::Ordering::Relaxed);
        }
        UploadEvent::PieceFailed { .. } => {}
    });
    let mut uploader = Uploader::new(3);
    uploader.long_tail_grace = Duration::from_millis(200);
    uploader.retry_for = Duration::from_secs(60);
    let report = uploader
        .upload(&job, deal, &placement, &client, events.clone())
        .await
        .expect("every segment reaches its success count");
    assert_eq!(report.stored, vec![3, 3]);
    assert_eq!(
        report.cancelled, 2,
        "the dead provider's two uploads are the long tail"
    );
    assert_eq!(
        cancelled_events.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let piece_bytes: u64 = specs.iter().map(|s| s.piece_bytes * 3).sum();
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), piece_bytes);
    // Each running provider holds exactly its committed piece of each segment.
    for (p, (_, store, _)) in stores.iter().enumerate() {
        for spec in &specs {
            let back = download_piece(&client, &keys[p].address(), spec.roots[p], spec.piece_bytes)
                .await
                .expect("stored piece");
            assert_eq!(Hash::of(&back), spec.roots[p]);
        }
        assert!(store.used_bytes().expect("used") > 0);
    }
    // Asking for all four pieces with one provider gone fails by segment, after the retries.
    let mut strict = Uploader::new(4);
    strict.retry_for = Duration::from_millis(500);
    let refused = strict
        .upload(&job, deal, &placement, &client, events)
        .await
        .expect_err("a segment stays below four pieces");
    assert!(
        matches!(
            refused,
            crate::upload::UploadError::TooFewPieces { needed: 4, .. }
        ),
        "{refused}"
    );
}
