//! N validators in commonware's deterministic runtime over its simulated network. Every scenario
//! runs twice under each of five seeds (or `DEPIN_SEED=...` alone) and must finalize the same
//! blocks with the same state roots both times; each prints its seed.

use super::application::address_of;
use super::validator::{
    Channels, ValidatorConfig, ValidatorHandles, channel, channel_quota, start_validator,
};
use crate::{Chain, ChainApp, ChainError, Head, Mempool, MempoolLimits};
use commonware_cryptography::Signer;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Runner, Supervisor, deterministic};
use depin_protocol::Finality;
use depin_protocol::{Action, Genesis, Protocol, Transaction};
use depin_types::{Amount, Keypair};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const LINK: Link = Link {
    latency: Duration::from_millis(50),
    jitter: Duration::from_millis(5),
    success_rate: commonware_utils::probability!(1.0),
};

fn seed() -> u64 {
    let seed = std::env::var("DEPIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    println!("seed: {seed} (replay with DEPIN_SEED={seed})");
    seed
}

/// The seeds every scenario of [`run`] replays: `DEPIN_SEED` alone, or these five.
fn seeds() -> Vec<u64> {
    match std::env::var("DEPIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => vec![42, 7, 1_001, 31_337, 9],
    }
}

/// What a scenario ends with, to compare two runs of one seed: the hash and state root of
/// every block one validator finalized.
type Trace = Vec<(depin_types::Hash, depin_types::Hash)>;

fn trace(app: &ChainApp) -> Trace {
    (1..=app.chain.head().height)
        .map(|h| {
            let block = app
                .chain
                .block_by_height(h)
                .expect("read")
                .expect("finalized block");
            (block.hash(), block.header.state_root)
        })
        .collect()
}

struct Net {
    keys: Vec<PrivateKey>,
    genesis: Genesis,
    user: Keypair,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(n: u64) -> Net {
        Net::with_candidates(n, 0)
    }

    /// `n` genesis validators and `extra` funded keys that may stand for the set later.
    fn with_candidates(n: u64, extra: u64) -> Net {
        let keys: Vec<PrivateKey> = (0..n + extra).map(PrivateKey::from_seed).collect();
        let addresses: Vec<_> = keys.iter().map(|k| address_of(&k.public_key())).collect();
        let validators = &addresses[..n as usize];
        let user = Keypair::from_seed(b"consensus user");
        let mut balances = vec![(user.address(), Amount(1_000_000_000_000))];
        for a in &addresses[n as usize..] {
            balances.push((*a, Amount(1_000_000_000_000_000_000)));
        }
        let mut genesis = Genesis::devnet(
            "depin-consensus-test",
            0,
            validators,
            validators[0],
            &balances,
        );
        genesis.chain.epoch_blocks = 5;
        genesis.chain.block_interval_ms = 200;
        Net {
            keys,
            genesis,
            user,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn participants(&self) -> Vec<PublicKey> {
        self.keys.iter().map(|k| k.public_key()).collect()
    }

    fn open_chain(&self, index: usize) -> Arc<ChainApp> {
        let protocol = Protocol::new(self.genesis.clone()).expect("protocol");
        let path = self.dir.path().join(format!("v{index}"));
        let chain = Chain::open(Path::new(&path), protocol).expect("open chain");
        Arc::new(ChainApp::new(
            Arc::new(chain),
            Mempool::new(MempoolLimits::default()),
        ))
    }

    async fn start(
        &self,
        context: &deterministic::Context,
        oracle: &Oracle<PublicKey, deterministic::Context>,
        index: usize,
        app: Arc<ChainApp>,
    ) -> ValidatorHandles {
        let key = self.keys[index].clone();
        let me = key.public_key();
        let control = oracle.control(me.clone());
        let register = async |ch| {
            control
                .register(ch, channel_quota())
                .await
                .expect("register channel")
        };
        let channels = Channels {
            votes: register(channel::VOTES).await,
            certificates: register(channel::CERTIFICATES).await,
            resolver: register(channel::RESOLVER).await,
            backfill: register(channel::BACKFILL).await,
            broadcast: register(channel::BROADCAST).await,
        };
        let config = ValidatorConfig::with_block_interval(
            key,
            self.genesis.chain_id.as_bytes().to_vec(),
            format!("validator-{index}"),
            self.genesis.chain.max_block_bytes as usize,
            Duration::from_millis(200),
        );
        start_validator(
            context.child("validator").with_attribute("index", index),
            app,
            config,
            channels,
            oracle.manager(),
            oracle.control(me),
            // The simulated network already knows every peer.
            Box::new(|_, _| {}),
        )
        .await
        .expect("start validator")
    }

    /// A signed transaction from the account of key `index`.
    fn signed_by(&self, index: usize, nonce: u64, action: Action) -> Vec<u8> {
        let encoded = commonware_codec::Encode::encode(&self.keys[index]);
        let secret: [u8; 32] = encoded[..].try_into().expect("32-byte key");
        let keypair = Keypair::from_secret(secret);
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: keypair.address(),
            nonce,
            fee: Amount(10_000),
            action,
        }
        .sign(&keypair)
        .to_bytes()
    }

    fn transfer(&self, nonce: u64) -> Vec<u8> {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: self.user.address(),
            nonce,
            fee: Amount(10_000),
            action: Action::Transfer {
                to: address_of(&self.keys[self.keys.len() - 1].public_key()),
                amount: Amount(1 + u128::from(nonce)),
            },
        }
        .sign(&self.user)
        .to_bytes()
    }
}

async fn network(
    context: &deterministic::Context,
    participants: &[PublicKey],
) -> Oracle<PublicKey, deterministic::Context> {
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: 16 * 1024 * 1024,
            max_peers_per_set: NonZeroUsize::new(participants.len()).expect("peers"),
            disconnect_on_block: true,
            tracked_peer_sets: NonZeroUsize::MIN,
        },
        participants.to_vec(),
    )
    .await;
    network.start();
    for a in participants {
        for b in participants {
            if a != b {
                oracle
                    .add_link(a.clone(), b.clone(), LINK)
                    .await
                    .expect("link");
            }
        }
    }
    oracle
}

/// Waits (in simulated time) until every app has reached `height`.
async fn wait_for_height(context: &deterministic::Context, apps: &[Arc<ChainApp>], height: u64) {
    loop {
        if apps.iter().all(|a| a.chain.head().height >= height) {
            return;
        }
        context.sleep(Duration::from_millis(100)).await;
    }
}

/// The block hash and state root every app has at `height` (they must agree).
fn agreed_at(apps: &[Arc<ChainApp>], height: u64) -> Head {
    let heads: Vec<_> = apps
        .iter()
        .map(|a| {
            let block = a
                .chain
                .block_by_height(height)
                .expect("read")
                .expect("block at height");
            (block.hash(), block.header.state_root)
        })
        .collect();
    assert!(
        heads.windows(2).all(|w| w[0] == w[1]),
        "validators disagree at height {height}: {heads:?}"
    );
    Head {
        height,
        hash: heads[0].0,
        state_root: heads[0].1,
        timestamp_ms: 0,
    }
}

#[test]
fn four_validators_finalize_the_same_chain() {
    run(|context| async move {
        let net = Net::new(4);
        let oracle = network(&context, &net.participants()).await;
        let mut apps = Vec::new();
        for i in 0..4 {
            let app = net.open_chain(i);
            net.start(&context, &oracle, i, app.clone()).await;
            apps.push(app);
        }
        // Transactions submitted to one validator's mempool get proposed when it leads.
        for nonce in 0..3 {
            apps[0].submit_bytes(&net.transfer(nonce)).expect("submit");
        }
        wait_for_height(&context, &apps, 12).await;
        let agreed = agreed_at(&apps, 12);
        assert_ne!(agreed.state_root, depin_types::Hash::ZERO);
        let account = apps[3]
            .chain
            .account(&net.user.address())
            .expect("read")
            .expect("user");
        assert_eq!(account.nonce, 3, "all three transfers are final everywhere");
        // Epoch 0 (blocks 1..=5) paid the validators by stake.
        let rewards = apps[2]
            .chain
            .epoch_rewards(0)
            .expect("read")
            .expect("epoch 0");
        assert!(!rewards.minted.is_zero());
        follower_checks_quorum_certificates(&net, &apps[0]);
        trace(&apps[0])
    });
}

/// A node outside consensus accepts a finalized block only with a valid quorum certificate.
fn follower_checks_quorum_certificates(net: &Net, source: &Arc<ChainApp>) {
    let follower = net.open_chain(99);
    let block = |h| {
        source
            .chain
            .block_by_height(h)
            .expect("read")
            .expect("block")
    };
    let finality = |h| source.chain.finality(h).expect("read").expect("finality");
    let b1 = block(1);
    let Finality::Quorum { certificate } = finality(1) else {
        panic!("block 1 carries its own quorum certificate");
    };
    let mut forged = certificate.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged = Finality::Quorum {
        certificate: forged,
    };
    assert!(matches!(
        follower.chain.finalize(&b1, &forged),
        Err(ChainError::BadFinality(_))
    ));
    let mut other = b1.clone();
    other.header.timestamp_ms += 1;
    let certificate = Finality::Quorum { certificate };
    assert!(matches!(
        follower.chain.finalize(&other, &certificate),
        Err(ChainError::BadFinality(_))
    ));
    assert!(
        follower
            .chain
            .finalize(&b1, &certificate)
            .expect("valid certificate")
    );
    assert_eq!(follower.chain.head().state_root, b1.header.state_root);
}

/// A running simulated network of validators that tests can crash, restart and partition.
struct Cluster {
    net: Net,
    oracle: Oracle<PublicKey, deterministic::Context>,
    apps: Vec<Arc<ChainApp>>,
    handles: Vec<Option<ValidatorHandles>>,
}

impl Cluster {
    async fn start(context: &deterministic::Context, n: u64, started: &[usize]) -> Cluster {
        Cluster::start_net(context, Net::new(n), started).await
    }

    async fn start_net(context: &deterministic::Context, net: Net, started: &[usize]) -> Cluster {
        let n = net.keys.len() as u64;
        let oracle = network(context, &net.participants()).await;
        let apps: Vec<_> = (0..n as usize).map(|i| net.open_chain(i)).collect();
        let mut cluster = Cluster {
            net,
            oracle,
            apps,
            handles: (0..n).map(|_| None).collect(),
        };
        for i in started {
            cluster.restart(context, *i).await;
        }
        cluster
    }

    async fn restart(&mut self, context: &deterministic::Context, index: usize) {
        let handles = self
            .net
            .start(context, &self.oracle, index, self.apps[index].clone())
            .await;
        self.handles[index] = Some(handles);
    }

    fn crash(&mut self, index: usize) {
        if let Some(h) = self.handles[index].take() {
            h.abort();
        }
    }

    fn apps(&self, indexes: &[usize]) -> Vec<Arc<ChainApp>> {
        indexes.iter().map(|i| self.apps[*i].clone()).collect()
    }

    fn height(&self, index: usize) -> u64 {
        self.apps[index].chain.head().height
    }

    async fn set_links(&self, a: &[usize], b: &[usize], linked: bool) {
        let keys = self.net.participants();
        for i in a {
            for j in b {
                let (x, y) = (keys[*i].clone(), keys[*j].clone());
                if linked {
                    let _ = self.oracle.add_link(x.clone(), y.clone(), LINK).await;
                    let _ = self.oracle.add_link(y, x, LINK).await;
                } else {
                    let _ = self.oracle.remove_link(x.clone(), y.clone()).await;
                    let _ = self.oracle.remove_link(y, x).await;
                }
            }
        }
    }
}

fn run_once<F: Future>(seed: u64, test: impl FnOnce(deterministic::Context) -> F) -> F::Output {
    let runner = deterministic::Runner::new(
        deterministic::Config::default()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    );
    runner.start(test)
}

/// Runs a scenario twice under each of [`seeds`] and checks that both runs of a seed
/// finalize the same blocks with the same state roots: the simulation, and the chain under
/// it, are deterministic.
fn run<F: Future<Output = Trace>>(test: impl Fn(deterministic::Context) -> F) {
    for seed in seeds() {
        println!("seed: {seed} (replay with DEPIN_SEED={seed})");
        let (first, second) = (run_once(seed, &test), run_once(seed, &test));
        assert!(!first.is_empty(), "seed {seed}: nothing was finalized");
        assert_eq!(
            first, second,
            "seed {seed}: two runs of the same scenario finalized different chains"
        );
    }
}

#[test]
fn one_validator_down_then_back_catches_up() {
    run(|context| async move {
        let mut c = Cluster::start(&context, 4, &[0, 1, 2, 3]).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), 4).await;
        c.crash(3);
        let at_crash = c.height(3);
        // Three of four are a quorum: finalization continues.
        wait_for_height(&context, &c.apps(&[0, 1, 2]), at_crash + 6).await;
        assert!(
            c.height(3) <= at_crash + 1,
            "a crashed validator does not move"
        );
        c.restart(&context, 3).await;
        let target = c.height(0) + 4;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), target).await;
        agreed_at(&c.apps(&[0, 1, 2, 3]), target);
        trace(&c.apps[0])
    });
}

#[test]
fn two_validators_down_halts_without_fork_then_resumes() {
    run(|context| async move {
        let mut c = Cluster::start(&context, 4, &[0, 1, 2, 3]).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), 3).await;
        c.crash(2);
        c.crash(3);
        // Let in-flight finalizations land, then check nothing more is finalized.
        context.sleep(Duration::from_secs(2)).await;
        let stalled = c.height(0).max(c.height(1));
        context.sleep(Duration::from_secs(20)).await;
        assert_eq!(
            c.height(0).max(c.height(1)),
            stalled,
            "no quorum, no new blocks"
        );
        let common = c.height(0).min(c.height(1));
        agreed_at(&c.apps(&[0, 1]), common);
        c.restart(&context, 2).await;
        c.restart(&context, 3).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), stalled + 4).await;
        agreed_at(&c.apps(&[0, 1, 2, 3]), stalled + 4);
        trace(&c.apps[0])
    });
}

#[test]
fn a_partition_heals_without_divergence() {
    run(|context| async move {
        let c = Cluster::start(&context, 4, &[0, 1, 2, 3]).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), 3).await;
        c.set_links(&[0, 1], &[2, 3], false).await;
        context.sleep(Duration::from_secs(2)).await;
        let split = (0..4).map(|i| c.height(i)).max().unwrap_or(0);
        context.sleep(Duration::from_secs(20)).await;
        // Neither half has a quorum of three.
        assert_eq!((0..4).map(|i| c.height(i)).max().unwrap_or(0), split);
        c.set_links(&[0, 1], &[2, 3], true).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), split + 4).await;
        for h in 1..=split + 4 {
            agreed_at(&c.apps(&[0, 1, 2, 3]), h);
        }
        trace(&c.apps[0])
    });
}

#[test]
fn a_validator_joining_late_syncs_from_genesis() {
    run(|context| async move {
        let mut c = Cluster::start(&context, 4, &[0, 1, 2]).await;
        for nonce in 0..2 {
            c.apps[0]
                .submit_bytes(&c.net.transfer(nonce))
                .expect("submit");
        }
        wait_for_height(&context, &c.apps(&[0, 1, 2]), 15).await;
        assert_eq!(c.height(3), 0);
        c.restart(&context, 3).await;
        let target = c.height(0) + 2;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), target).await;
        // Every block, back to genesis, was fetched, re-executed and matches.
        for h in 1..=target {
            agreed_at(&c.apps(&[0, 1, 2, 3]), h);
        }
        trace(&c.apps[0])
    });
}

#[test]
fn a_single_validator_runs_the_same_engine() {
    run(|context| async move {
        let c = Cluster::start(&context, 1, &[0]).await;
        c.apps[0].submit_bytes(&c.net.transfer(0)).expect("submit");
        wait_for_height(&context, &c.apps(&[0]), 6).await;
        let user = c.apps[0]
            .chain
            .account(&c.net.user.address())
            .expect("read")
            .expect("user");
        assert_eq!(user.nonce, 1);
        trace(&c.apps[0])
    });
}

#[test]
fn the_validator_set_follows_bonded_stake_across_epochs() {
    run(|context| async move {
        // Four genesis validators and a fifth key that bonds more than any of them.
        let net = Net::with_candidates(4, 1);
        let genesis_stake = net.genesis.validators[0].stake;
        let mut c = Cluster::start_net(&context, net, &[0, 1, 2, 3, 4]).await;
        let newcomer = address_of(&c.net.keys[4].public_key());
        let bond = Action::Bond {
            amount: Amount(genesis_stake.0 * 2),
        };
        let register = Action::RegisterValidator {
            consensus_address: "127.0.0.1:7401".into(),
        };
        c.apps[0]
            .submit_bytes(&c.net.signed_by(4, 0, bond))
            .expect("submit bond");
        c.apps[0]
            .submit_bytes(&c.net.signed_by(4, 1, register))
            .expect("submit registration");
        // Epoch blocks are 5: the set of epoch e+1 is fixed at height 5e. The registration
        // lands in epoch 0 or 1, so the newcomer validates from epoch 2 or 3 at the latest.
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3, 4]), 20).await;
        let chain = c.apps[4].chain.clone();
        let set = chain.validator_set(3).expect("read set");
        assert_eq!(set.len(), 4, "the set keeps the genesis size");
        assert!(set.contains(&newcomer), "the top stake joins the set");
        // Equal genesis stakes: the highest address among them makes room.
        let mut genesis: Vec<_> = (0..4)
            .map(|i| address_of(&c.net.keys[i].public_key()))
            .collect();
        genesis.sort();
        let dropped = genesis[3];
        assert!(!set.contains(&dropped));
        let dropped_index = (0..4)
            .find(|i| address_of(&c.net.keys[*i].public_key()) == dropped)
            .expect("dropped index");
        // Without the dropped validator and one more genesis validator, only the newcomer's
        // vote makes a quorum of three: progress proves it votes.
        let other = (0..4).find(|i| *i != dropped_index).expect("another");
        c.crash(dropped_index);
        c.crash(other);
        let alive: Vec<usize> = (0..5)
            .filter(|i| *i != dropped_index && *i != other)
            .collect();
        let from = c.height(alive[0]);
        wait_for_height(&context, &c.apps(&alive), from + 6).await;
        agreed_at(&c.apps(&alive), from + 6);
        let proposers: Vec<_> = (from + 1..=from + 6)
            .map(|h| {
                c.apps[alive[0]]
                    .chain
                    .block_by_height(h)
                    .expect("read")
                    .expect("block")
                    .header
                    .proposer
            })
            .collect();
        assert!(
            proposers.contains(&newcomer),
            "the newcomer leads rounds too"
        );
        // Quorum certificates of a later epoch check against that epoch's set.
        let last = c.height(alive[0]);
        let epoch = chain.validator_era(last);
        assert!(epoch >= 3);
        let block = c.apps[alive[0]]
            .chain
            .block_by_height(last)
            .expect("read")
            .expect("block");
        let finality = c.apps[alive[0]]
            .chain
            .finality(last)
            .expect("read")
            .expect("finality");
        if matches!(finality, Finality::Quorum { .. }) {
            assert!(
                c.apps[alive[0]]
                    .chain
                    .finality_is_valid(&block.hash(), last, &finality)
                    .expect("check")
            );
        }
        trace(&c.apps[alive[0]])
    });
}

#[test]
fn malformed_consensus_messages_get_the_sender_blocked_and_counted() {
    use commonware_p2p::{Recipients, Sender as _};
    run(|context| async move {
        let net = Net::with_candidates(4, 1);
        let intruder = net.keys[4].public_key();
        let c = Cluster::start_net(&context, net, &[0, 1, 2, 3]).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), 2).await;
        let (mut sender, _receiver) = c
            .oracle
            .control(intruder)
            .register(channel::VOTES, channel_quota())
            .await
            .expect("register");
        let blocked = |c: &Cluster| blocked_peers(c, &[0, 1, 2, 3]);
        for _ in 0..50 {
            if blocked(&c) > 0 {
                break;
            }
            // The running epoch's sub-channel, then bytes that decode to no vote.
            let epoch = c.apps[0].chain.validator_era(c.height(0) + 1);
            let mut message = Vec::new();
            let mut v = epoch;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    message.push(byte);
                    break;
                }
                message.push(byte | 0x80);
            }
            message.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            sender.send(Recipients::All, message, false);
            context.sleep(Duration::from_millis(100)).await;
        }
        assert!(blocked(&c) > 0, "no validator blocked the intruder");
        // The honest validators go on finalizing.
        let h = c.height(0);
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), h + 3).await;
        agreed_at(&c.apps(&[0, 1, 2, 3]), h + 3);
        trace(&c.apps[0])
    });
}

/// Benchmark, not a test: finality latency of N validators in simulated time, links of 50 ms
/// (±5 ms jitter), 200 ms block interval. Prints a table. Run with
/// `cargo test -p depin-chain --release --lib -- --ignored --nocapture simulated_finality_table`.
#[test]
#[ignore = "benchmark: prints a table"]
fn simulated_finality_table() {
    println!(
        "| validators | link latency ms | block interval ms | epoch blocks | txs | finality p50 ms | finality p99 ms | blocks/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, epoch_blocks) in [(1u64, 30u64), (4, 30), (4, 5)] {
        run_once(seed(), |context| async move {
            let mut net = Net::new(n);
            net.genesis.chain.epoch_blocks = epoch_blocks;
            let all: Vec<usize> = (0..n as usize).collect();
            let c = Cluster::start_net(&context, net, &all).await;
            wait_for_height(&context, &c.apps(&[0]), 2).await;
            let txs = 100u64;
            let mut latencies = Vec::new();
            let started = context.current();
            let start_height = c.height(0);
            for nonce in 0..txs {
                // Arrive at an arbitrary point of the block interval.
                let offset = (nonce * 37) % 200;
                context.sleep(Duration::from_millis(offset)).await;
                let submitted = context.current();
                // Gossip puts a transaction in every validator's mempool; do the same.
                for app in &c.apps {
                    app.submit_bytes(&c.net.transfer(nonce)).expect("submit");
                }
                loop {
                    let nonce_now = c.apps[0]
                        .chain
                        .account(&c.net.user.address())
                        .expect("read")
                        .map(|a| a.nonce)
                        .unwrap_or(0);
                    if nonce_now > nonce {
                        break;
                    }
                    context.sleep(Duration::from_millis(1)).await;
                }
                let waited = context
                    .current()
                    .duration_since(submitted)
                    .unwrap_or_default();
                latencies.push(waited);
            }
            latencies.sort();
            let pct = |p: f64| {
                latencies[((latencies.len() as f64 - 1.0) * p).round() as usize].as_secs_f64()
                    * 1000.0
            };
            let elapsed = context
                .current()
                .duration_since(started)
                .unwrap_or_default()
                .as_secs_f64();
            println!(
                "| {n} | {} | 200 | {epoch_blocks} | {txs} | {:.0} | {:.0} | {:.2} |",
                if n == 1 { 0 } else { LINK.latency.as_millis() },
                pct(0.5),
                pct(0.99),
                (c.height(0) - start_height) as f64 / elapsed
            );
        });
    }
}

/// Peers blocked by any of the validators `indexes` (invalid or conflicting messages).
fn blocked_peers(c: &Cluster, indexes: &[usize]) -> u64 {
    indexes
        .iter()
        .map(|i| {
            c.apps[*i]
                .chain
                .metrics
                .consensus_peers_blocked
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

#[test]
fn a_validator_restarted_from_its_wal_never_double_votes() {
    run(|context| async move {
        let mut c = Cluster::start(&context, 4, &[0, 1, 2, 3]).await;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), 2).await;
        // Crash validators mid-view and restart them at once from their journals, many times:
        // a replayed engine that signed a second, different vote for a view it already voted
        // in would be caught by the others (conflicting notarize/finalize/nullify) and blocked.
        for round in 0..12u64 {
            let victim = (round % 4) as usize;
            context
                .sleep(Duration::from_millis(37 + (round * 53) % 250))
                .await;
            c.crash(victim);
            context
                .sleep(Duration::from_millis((round * 29) % 120))
                .await;
            c.restart(&context, victim).await;
        }
        let target = c.height(0) + 5;
        wait_for_height(&context, &c.apps(&[0, 1, 2, 3]), target).await;
        for h in 1..=target {
            agreed_at(&c.apps(&[0, 1, 2, 3]), h);
        }
        assert_eq!(
            blocked_peers(&c, &[0, 1, 2, 3]),
            0,
            "a peer sent conflicting votes"
        );
        trace(&c.apps[0])
    });
}

/// The attack end to end: validator 3 runs no engine but answers every notarize it hears with
/// two of its own for the same round, one of them for a block that does not exist. The honest
/// validators' engines report the conflict, each node checks it and a funded key puts it on
/// chain: validator 3 is slashed `double_sign_bps` once, and the sets chosen after leave it
/// out, while the honest three go on finalizing.
#[test]
fn an_equivocating_validator_is_slashed_and_leaves_the_validator_set() {
    use commonware_codec::{Decode, Encode};
    use commonware_consensus::simplex::scheme::ed25519::Scheme;
    use commonware_consensus::simplex::types::{Notarize, Proposal, Vote};
    use commonware_cryptography::blake3::Digest;
    use commonware_p2p::{Receiver as _, Recipients, Sender as _};
    use commonware_runtime::Spawner as _;
    use commonware_utils::ordered::Set;
    run(|context| async move {
        let net = Net::with_candidates(4, 1);
        let byzantine = net.keys[3].clone();
        let offender = address_of(&byzantine.public_key());
        let mut participants: Vec<PublicKey> = net.participants()[..4].to_vec();
        participants.sort();
        let scheme = Scheme::signer(
            net.genesis.chain_id.as_bytes(),
            Set::try_from(participants).expect("participants"),
            byzantine.clone(),
        )
        .expect("a participant");
        let c = Cluster::start_net(&context, net, &[0, 1, 2]).await;
        let (mut sender, mut receiver) = c
            .oracle
            .control(byzantine.public_key())
            .register(channel::VOTES, channel_quota())
            .await
            .expect("register");
        let honest = [0usize, 1, 2];
        context.child("conflicter").spawn(move |_| async move {
            while let Ok((_, message)) = receiver.recv().await {
                let bytes: &[u8] = message.as_ref();
                // The epoch's sub-channel prefix, then the vote.
                let Some(split) = bytes.iter().position(|b| b & 0x80 == 0) else {
                    continue;
                };
                let (prefix, body) = bytes.split_at(split + 1);
                let Ok(Vote::Notarize(heard)) =
                    Vote::<Scheme, Digest>::decode_cfg(bytes::Bytes::copy_from_slice(body), &())
                else {
                    continue;
                };
                let fake = Proposal::new(
                    heard.proposal.round,
                    heard.proposal.parent,
                    Digest([0xab; 32]),
                );
                for proposal in [heard.proposal.clone(), fake] {
                    if let Some(vote) = Notarize::sign(&scheme, proposal) {
                        let mut out = prefix.to_vec();
                        out.extend_from_slice(&Vote::Notarize(vote).encode());
                        sender.send(Recipients::All, out, false);
                    }
                }
            }
        });
        let stake = |app: &ChainApp| {
            app.chain
                .stake(&offender)
                .ok()
                .flatten()
                .map(|s| s.slashed)
                .unwrap_or_default()
        };
        let mut reported = 0u64;
        for _ in 0..400 {
            if !stake(&c.apps[0]).is_zero() {
                break;
            }
            for i in honest {
                for evidence in c.apps[i].take_evidence() {
                    let tx = c
                        .net
                        .signed_by(4, reported, Action::ReportEquivocation { evidence });
                    if c.apps[0].submit_bytes(&tx).is_ok() {
                        reported += 1;
                    }
                }
            }
            context.sleep(Duration::from_millis(100)).await;
        }
        let slashed = stake(&c.apps[0]);
        assert!(!slashed.is_zero(), "the equivocation was never slashed");
        let bps = u128::from(c.net.genesis.slashing.double_sign_bps);
        let genesis_stake = c.net.genesis.validators[3].stake;
        assert_eq!(slashed, Amount(genesis_stake.0 * bps / 10_000));
        // The next set chosen leaves it out; the honest three finalize on.
        let h = c.height(0);
        let era = c.apps[0].chain.validator_era(h);
        wait_for_height(&context, &c.apps(&honest), h + 12).await;
        agreed_at(&c.apps(&honest), h + 12);
        let later = c.apps[0].chain.validator_set(era + 2).expect("set");
        assert!(!later.contains(&offender), "{later:?}");
        assert_eq!(stake(&c.apps[0]), slashed, "one slash per era");
        trace(&c.apps[0])
    });
}
