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
    ]));
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(PieceStore::open(dir.path(), 500_000).expect("store"));
    let (server, mut stored) = PieceServer::new(store.clone(), provider, Arc::new(chain));
    let (provider_net, _events) = Network::start(config(provider_key))
        .await
        .expect("provider net");
    tokio::spawn(serve(server, provider_net.clone()));
    let mut client_config = config(Keypair::from_seed(b"client"));
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
        305_001,
        "refusals take no space"
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
