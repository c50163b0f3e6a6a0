//! Multi-node tests on 127.0.0.1 with ephemeral ports. Every test runs under an overall
//! timeout and shuts its nodes down.

use depin_net::{
    InboundRequest, Multiaddr, NetConfig, NetError, NetEvent, NetHandle, Network, PeerId, Published,
};
use depin_types::Keypair;
use libp2p::multiaddr::Protocol;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHAIN: &str = "testnet";
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(seed: &str) -> NetConfig {
    let mut config = NetConfig::new(Keypair::from_seed(seed.as_bytes()), CHAIN);
    config.listen_tcp = "/ip4/127.0.0.1/tcp/0".parse().expect("tcp addr");
    config.listen_quic = Some("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("quic addr"));
    config.discovery_interval = Duration::from_secs(2);
    config
}

/// A started node and the transactions it received, in arrival order.
struct Node {
    net: NetHandle,
    txs: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Node {
    async fn start(config: NetConfig) -> Node {
        let (net, mut events) = Network::start(config).await.expect("start");
        let txs = Arc::new(Mutex::new(Vec::new()));
        let sink = txs.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetEvent::TxReceived { bytes, .. } = event {
                    sink.lock().expect("lock").push(bytes);
                }
            }
        });
        Node { net, txs }
    }

    fn id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    fn copies_of(&self, tx: &[u8]) -> usize {
        self.txs
            .lock()
            .expect("lock")
            .iter()
            .filter(|t| t.as_slice() == tx)
            .count()
    }

    fn counter(&self, name: &str) -> u64 {
        self.net.metrics().get(name).expect("counter exists")
    }

    /// The listen address of one transport ("tcp" or "quic-v1"), with `/p2p/<id>`.
    async fn addr(&self, transport: &str) -> Multiaddr {
        self.net
            .listen_addrs()
            .await
            .into_iter()
            .find(|a| {
                a.iter().any(|p| match p {
                    Protocol::Tcp(_) => transport == "tcp",
                    Protocol::QuicV1 => transport == "quic-v1",
                    _ => false,
                })
            })
            .expect("listen address of the transport")
    }

    /// Connected peers that are subscribed to the transaction topic.
    async fn gossip_peers(&self) -> Vec<PeerId> {
        self.net
            .peers()
            .await
            .into_iter()
            .filter(|p| p.tx_topic)
            .map(|p| p.peer_id)
            .collect()
    }
}

/// Polls `check` every 50 ms until it holds, or panics after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn with_timeout(test: impl Future<Output = ()>) {
    init_tracing();
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test ran past its overall timeout");
}

/// Answers every request on `protocol` with `prefix ++ request`.
async fn echo(net: &NetHandle, protocol: &str, prefix: &'static [u8]) {
    let mut requests = net.serve(protocol).await.expect("serve");
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let mut answer = prefix.to_vec();
            answer.extend_from_slice(&request.bytes);
            request.respond(answer);
        }
    });
}

/// Keeps every request on `protocol` without answering, so requesters time out.
async fn hoard(net: &NetHandle, protocol: &str) -> Arc<Mutex<Vec<InboundRequest>>> {
    let mut requests = net.serve(protocol).await.expect("serve");
    let kept = Arc::new(Mutex::new(Vec::new()));
    let store = kept.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            store.lock().expect("lock").push(request);
        }
    });
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_discover_each_other_and_gossip_each_tx_once() {
    with_timeout(async {
        let boot = Node::start(config("node-0")).await;
        let boot_addr = boot.addr("tcp").await;
        // The others start at the same time, so none can rely on the bootstrap node already
        // knowing the rest.
        let others = (1..4).map(|i| {
            let mut c = config(&format!("node-{i}"));
            c.bootstrap = vec![boot_addr.clone()];
            Node::start(c)
        });
        let mut nodes = vec![boot];
        nodes.extend(libp2p::futures::future::join_all(others).await);

        // Discovery: only node 0 was named, yet every node ends up connected to every
        // other and knows they are all subscribed to the transaction topic.
        let took = wait_until("a full mesh of 4 nodes", Duration::from_secs(20), || async {
            for node in &nodes {
                let peers = node.net.peers().await;
                let ready = peers.iter().filter(|p| p.tx_topic && p.agent_version.is_some());
                if ready.count() != nodes.len() - 1 {
                    return false;
                }
            }
            true
        })
        .await;
        println!("full mesh of 4 nodes after {took:?}");
        for node in &nodes {
            let peers = node.net.peers().await;
            let mut ids: Vec<PeerId> = peers.iter().map(|p| p.peer_id).collect();
            let mut expected: Vec<PeerId> =
                nodes.iter().map(Node::id).filter(|id| *id != node.id()).collect();
            ids.sort();
            expected.sort();
            assert_eq!(ids, expected);
            assert!(peers.iter().all(|p| p.agent_version.as_deref().is_some_and(|a| a.starts_with("depin/"))));
            assert_eq!(node.counter("peers_connected"), 3);
        }

        // One publish reaches every other node exactly once, and not the publisher.
        let tx = b"tx-A: canonical transaction bytes".to_vec();
        assert_eq!(nodes[1].net.publish_tx(tx.clone()).await.expect("publish"), Published::Sent);
        wait_until("tx-A everywhere", Duration::from_secs(10), || async {
            [0, 2, 3].iter().all(|&i| nodes[i].copies_of(&tx) >= 1)
        })
        .await;

        // The same bytes again, from the publisher or from a node that received them, are
        // duplicates by content and go nowhere.
        assert_eq!(nodes[1].net.publish_tx(tx.clone()).await.expect("publish"), Published::Duplicate);
        assert_eq!(nodes[2].net.publish_tx(tx.clone()).await.expect("publish"), Published::Duplicate);
        assert_eq!(nodes[1].counter("txs_publish_duplicate"), 1);

        // The same new bytes published by two nodes at once: each other node gets one copy.
        let tx_b = b"tx-B: published twice".to_vec();
        let (r2, r3) = tokio::join!(
            nodes[2].net.publish_tx(tx_b.clone()),
            nodes[3].net.publish_tx(tx_b.clone())
        );
        assert!(r2.is_ok() && r3.is_ok(), "{r2:?} {r3:?}");
        wait_until("tx-B at nodes 0 and 1", Duration::from_secs(10), || async {
            nodes[0].copies_of(&tx_b) >= 1 && nodes[1].copies_of(&tx_b) >= 1
        })
        .await;

        // Give any duplicate time to arrive (gossipsub heartbeats are 1 s), then count.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (i, node) in nodes.iter().enumerate() {
            let expected_a = if i == 1 { 0 } else { 1 };
            assert_eq!(node.copies_of(&tx), expected_a, "node {i} copies of tx-A");
            let copies_b = node.copies_of(&tx_b);
            if i < 2 {
                assert_eq!(copies_b, 1, "node {i} copies of tx-B");
            } else {
                assert!(copies_b <= 1, "node {i} copies of tx-B: {copies_b}");
            }
        }

        // Too large to publish: refused locally, counted, nothing sent.
        let max = config("x").max_message_bytes;
        let err = nodes[3].net.publish_tx(vec![7u8; max + 1]).await.expect_err("too large");
        assert!(matches!(err, NetError::MessageTooLarge { size_bytes, max_bytes } if size_bytes == max + 1 && max_bytes == max));
        assert_eq!(nodes[3].counter("txs_publish_too_large"), 1);
        assert!(matches!(nodes[3].net.publish_tx(Vec::new()).await, Err(NetError::MessageEmpty)));

        for node in &nodes {
            node.net.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_gossip_is_not_delivered_and_is_counted() {
    with_timeout(async {
        // The sender allows bigger transactions than the receiver: the receiver's limit
        // must hold anyway.
        let mut big = config("big-limit");
        big.max_message_bytes = 4096;
        let sender = Node::start(big).await;
        let mut small = config("small-limit");
        small.max_message_bytes = 1024;
        small.bootstrap = vec![sender.addr("tcp").await];
        let receiver = Node::start(small).await;
        wait_until("gossip peers", Duration::from_secs(15), || async {
            sender.gossip_peers().await.len() == 1 && receiver.gossip_peers().await.len() == 1
        })
        .await;

        let oversized = vec![1u8; 1025];
        assert_eq!(
            sender
                .net
                .publish_tx(oversized.clone())
                .await
                .expect("publish"),
            Published::Sent
        );
        let fits = vec![2u8; 1024];
        assert_eq!(
            sender.net.publish_tx(fits.clone()).await.expect("publish"),
            Published::Sent
        );
        wait_until(
            "the transaction that fits",
            Duration::from_secs(10),
            || async { receiver.copies_of(&fits) == 1 },
        )
        .await;
        wait_until(
            "the rejection to be counted",
            Duration::from_secs(5),
            || async { receiver.counter("txs_rejected_too_large") == 1 },
        )
        .await;
        assert_eq!(receiver.copies_of(&oversized), 0);
        assert_eq!(receiver.counter("txs_received"), 1);

        sender.net.shutdown().await;
        receiver.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_over_tcp_with_size_limits_and_unknown_protocols() {
    with_timeout(async {
        let mut server_config = config("rpc-server");
        server_config.max_request_bytes = 1024;
        server_config.max_response_bytes = 4096;
        let server = Node::start(server_config).await;
        echo(&server.net, "chain/block/1", b"block ").await;
        let mut big = server.net.serve("big/1").await.expect("serve");
        tokio::spawn(async move {
            while let Some(request) = big.recv().await {
                let size = u32::from_be_bytes(request.bytes[..4].try_into().expect("4 bytes"));
                request.respond(vec![0u8; size as usize]);
            }
        });
        assert!(matches!(
            server.net.serve("chain/block/1").await,
            Err(NetError::ProtocolTaken { .. })
        ));
        assert!(matches!(
            server.net.serve("Not A Name").await,
            Err(NetError::InvalidProtocol { .. })
        ));

        let mut client_config = config("rpc-client");
        client_config.max_response_bytes = 2048;
        client_config.listen_quic = None;
        client_config.bootstrap = vec![server.addr("tcp").await];
        let client = Node::start(client_config).await;
        wait_until("connection", Duration::from_secs(10), || async {
            client.net.peers().await.len() == 1
        })
        .await;
        let peers = client.net.peers().await;
        assert_eq!(peers[0].peer_id, server.id());
        assert!(peers[0].addresses.iter().all(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_)))));

        // "Give me block 7".
        let answer = client.net.request(server.id(), "chain/block/1", b"7".to_vec()).await.expect("request");
        assert_eq!(answer, b"block 7");
        // Many in a row, and an empty request.
        for n in 0..20u32 {
            let answer = client.net.request(server.id(), "chain/block/1", n.to_be_bytes().to_vec()).await.expect("request");
            assert_eq!(&answer[6..], n.to_be_bytes());
        }
        assert_eq!(client.net.request(server.id(), "chain/block/1", Vec::new()).await.expect("empty"), b"block ");

        // Nobody serves this protocol on the server.
        let err = client.net.request(server.id(), "nobody/serves/1", b"x".to_vec()).await.expect_err("unknown");
        assert!(matches!(&err, NetError::UnknownProtocol { peer, protocol } if *peer == server.id() && protocol == "nobody/serves/1"), "{err}");
        assert_eq!(server.counter("requests_rejected_unknown_protocol"), 1);
        // Not even a valid name: refused before sending.
        assert!(matches!(
            client.net.request(server.id(), "bad name", Vec::new()).await,
            Err(NetError::InvalidProtocol { .. })
        ));

        // Over the client's own request limit: refused before anything is sent.
        let limit = config("x").max_request_bytes;
        let err = client.net.request(server.id(), "chain/block/1", vec![0; limit + 1]).await.expect_err("too large");
        assert!(matches!(err, NetError::RequestTooLarge { size_bytes, max_bytes } if size_bytes == limit + 1 && max_bytes == limit));
        // Within the client's limit but over the server's: the server refuses to read it.
        let err = client.net.request(server.id(), "chain/block/1", vec![0; 2000]).await.expect_err("too large for the server");
        println!("oversized request: {err}");
        assert!(matches!(err, NetError::Refused { .. }), "{err}");
        wait_until("the server to count the oversized request", Duration::from_secs(5), || async {
            server.counter("requests_rejected_too_large") == 1
        })
        .await;

        // A response over the server's limit is replaced by an error...
        let err = client.net.request(server.id(), "big/1", 5000u32.to_be_bytes().to_vec()).await.expect_err("too large");
        assert!(matches!(err, NetError::ResponseTooLarge { .. }), "{err}");
        // ...and one within the server's limit but over the client's is refused on reading.
        let err = client.net.request(server.id(), "big/1", 3000u32.to_be_bytes().to_vec()).await.expect_err("too large");
        assert!(matches!(err, NetError::ResponseTooLarge { .. }), "{err}");
        let ok = client.net.request(server.id(), "big/1", 2048u32.to_be_bytes().to_vec()).await.expect("at the limit");
        assert_eq!(ok.len(), 2048);

        // The connection survived all of that.
        assert_eq!(client.net.request(server.id(), "chain/block/1", b"8".to_vec()).await.expect("request"), b"block 8");

        // After shutdown the server is gone for the client, and the client's handle is dead.
        server.net.shutdown().await;
        let err = client.net.request(server.id(), "chain/block/1", b"9".to_vec()).await.expect_err("server down");
        println!("request to a stopped server: {err}");
        client.net.shutdown().await;
        assert!(matches!(
            client.net.request(server.id(), "chain/block/1", b"9".to_vec()).await,
            Err(NetError::Shutdown)
        ));
        assert!(client.net.peers().await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_over_quic() {
    with_timeout(async {
        let server = Node::start(config("quic-server")).await;
        echo(&server.net, "chain/block/1", b"block ").await;
        let mut client_config = config("quic-client");
        client_config.bootstrap = vec![server.addr("quic-v1").await];
        let client = Node::start(client_config).await;
        wait_until("connection", Duration::from_secs(10), || async {
            client.net.peers().await.len() == 1
        })
        .await;
        let peers = client.net.peers().await;
        assert!(
            peers[0]
                .addresses
                .iter()
                .all(|a| a.iter().any(|p| p == Protocol::QuicV1)),
            "{:?}",
            peers[0].addresses
        );
        let answer = client
            .net
            .request(server.id(), "chain/block/1", b"42".to_vec())
            .await
            .expect("request");
        assert_eq!(answer, b"block 42");
        // And the other way round, over the same connection.
        echo(&client.net, "ping/1", b"pong ").await;
        assert_eq!(
            server
                .net
                .request(client.id(), "ping/1", b"1".to_vec())
                .await
                .expect("request"),
            b"pong 1"
        );
        client.net.shutdown().await;
        server.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_time_out_and_concurrency_is_bounded() {
    with_timeout(async {
        let mut server_config = config("slow-server");
        server_config.request_timeout = Duration::from_secs(1);
        server_config.max_concurrent_requests_per_peer = 2;
        let server = Node::start(server_config).await;
        let kept = hoard(&server.net, "slow/1").await;
        let mut dropping = server.net.serve("drop/1").await.expect("serve");
        tokio::spawn(async move {
            while let Some(request) = dropping.recv().await {
                drop(request);
            }
        });

        let mut client_config = config("impatient-client");
        client_config.request_timeout = Duration::from_secs(1);
        client_config.max_concurrent_requests_per_peer = 3;
        client_config.bootstrap = vec![server.addr("tcp").await];
        let client = Node::start(client_config).await;
        wait_until("connection", Duration::from_secs(10), || async {
            client.net.peers().await.len() == 1
        })
        .await;

        // A handler that never answers: a timeout with the peer, protocol and limit.
        let started = Instant::now();
        let err = client.net.request(server.id(), "slow/1", b"x".to_vec()).await.expect_err("timeout");
        let took = started.elapsed();
        println!("unanswered request: {err} (after {took:?})");
        assert!(matches!(&err, NetError::Timeout { peer, protocol, waited_ms } if *peer == server.id() && protocol == "slow/1" && (800..2000).contains(waited_ms)), "{err}");
        assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(5), "{took:?}");
        assert!(err.to_string().starts_with(&format!("request to {} on \"slow/1\" got no answer within", server.id())), "{err}");
        assert_eq!(kept.lock().expect("lock").len(), 1);
        assert_eq!(client.counter("requests_timed_out"), 1);

        // A handler that drops the request: told at once, not left to time out.
        let err = client.net.request(server.id(), "drop/1", b"x".to_vec()).await.expect_err("dropped");
        assert!(matches!(err, NetError::NoResponse { .. }), "{err}");

        // Concurrency: the client allows 3 in flight to a peer, the server 2 from a peer.
        // Four at once: the fourth is refused by the client, the third by the server.
        let c = &client.net;
        let s = server.id();
        let (a, b, d, e) = tokio::join!(
            c.request(s, "slow/1", b"1".to_vec()),
            c.request(s, "slow/1", b"2".to_vec()),
            c.request(s, "slow/1", b"3".to_vec()),
            c.request(s, "slow/1", b"4".to_vec()),
        );
        let results = [a, b, d, e];
        let count = |f: fn(&NetError) -> bool| results.iter().filter(|r| matches!(r, Err(e) if f(e))).count();
        assert_eq!(count(|e| matches!(e, NetError::TooManyRequests { limit: 3, .. })), 1, "{results:?}");
        assert_eq!(count(|e| matches!(e, NetError::Busy { .. })), 1, "{results:?}");
        assert_eq!(count(|e| matches!(e, NetError::Timeout { .. })), 2, "{results:?}");
        assert_eq!(server.counter("requests_rejected_busy"), 1);

        // Once those are over, requests flow again.
        assert!(matches!(
            client.net.request(server.id(), "slow/1", b"5".to_vec()).await,
            Err(NetError::Timeout { .. })
        ));
        client.net.shutdown().await;
        server.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_another_chain_are_dropped() {
    with_timeout(async {
        let ours = Node::start(config("chain-a")).await;
        let mut theirs_config = config("chain-b");
        theirs_config.chain_id = "othernet".into();
        theirs_config.bootstrap = vec![ours.addr("tcp").await];
        let (theirs, mut events) = Network::start(theirs_config).await.expect("start");
        // They connect, identify each other, and the connection is closed.
        let mut connected = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                Ok(Some(NetEvent::PeerConnected(_))) => connected = true,
                Ok(Some(NetEvent::PeerDisconnected(_))) if connected => break,
                _ => {}
            }
        }
        assert!(connected);
        wait_until("the rejection", Duration::from_secs(5), || async {
            ours.counter("peers_rejected_wrong_chain") >= 1
                && theirs.metrics().get("peers_rejected_wrong_chain") >= Some(1)
        })
        .await;
        theirs.shutdown().await;
        ours.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_bootstrap_peer_joins_when_it_comes_up() {
    with_timeout(async {
        // Reserve a port for the bootstrap node, then free it for the node to take later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let boot_config = {
            let mut c = config("late-boot");
            c.listen_tcp = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
            c
        };
        let boot_id = depin_net::peer_id_of(&boot_config.keypair.address()).expect("peer id");
        let mut early_config = config("early");
        early_config.bootstrap = vec![
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{boot_id}")
                .parse()
                .expect("addr"),
        ];
        let early = Node::start(early_config).await;
        // The first dial fails; the node keeps retrying every discovery interval (2 s).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(early.net.peers().await.is_empty());
        let boot = Node::start(boot_config).await;
        let took = wait_until(
            "the late bootstrap peer",
            Duration::from_secs(10),
            || async { early.net.peers().await.iter().any(|p| p.peer_id == boot_id) },
        )
        .await;
        println!("joined the late bootstrap peer after {took:?}");
        early.net.shutdown().await;
        boot.net.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_configs_are_refused_at_start() {
    let mut c = config("bad");
    c.bootstrap = vec!["/ip4/127.0.0.1/tcp/7301".parse().expect("addr")];
    assert!(matches!(
        Network::start(c).await,
        Err(NetError::BootstrapAddr { .. })
    ));
    let mut c = config("bad");
    c.chain_id = "no/slashes".into();
    assert!(matches!(Network::start(c).await, Err(NetError::Config(_))));
    let mut c = config("bad");
    c.listen_tcp = "/dns4/example.invalid/tcp/0".parse().expect("addr");
    assert!(matches!(
        Network::start(c).await,
        Err(NetError::Listen { .. })
    ));

    // A shared bootstrap list may name the node itself: that entry is skipped.
    let node = Node::start(config("self")).await;
    let mut again = config("self");
    again.bootstrap = vec![node.addr("tcp").await];
    let (same_key, _events) = Network::start(again)
        .await
        .expect("start with itself as bootstrap");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(same_key.peers().await.is_empty());
    same_key.shutdown().await;
    node.net.shutdown().await;
}

#[tokio::test]
async fn peer_id_is_the_node_key() {
    let key = Keypair::from_seed(b"identity");
    let libp2p_key =
        libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes()).expect("ed25519");
    let (net, _events) = Network::start(config("identity")).await.expect("start");
    assert_eq!(net.local_peer_id(), libp2p_key.public().to_peer_id());
    assert_eq!(
        depin_net::peer_id_of(&key.address()).expect("peer id"),
        net.local_peer_id()
    );
    // The public key inside the peer id is the node's address bytes.
    let public = libp2p_key.public().try_into_ed25519().expect("ed25519");
    assert_eq!(public.to_bytes(), *key.address().as_bytes());
    net.shutdown().await;
}
