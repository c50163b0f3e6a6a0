//! N validators in commonware's deterministic runtime over its simulated network: every test
//! prints its seed and can be replayed with `DEPIN_SEED=...`.

use super::application::address_of;
use super::validator::{
    Channels, ValidatorConfig, ValidatorHandles, channel, channel_quota, start_validator,
};
use crate::{Chain, ChainApp, Head, Mempool, MempoolLimits};
use commonware_cryptography::Signer;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Runner, Supervisor, deterministic};
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

struct Net {
    keys: Vec<PrivateKey>,
    genesis: Genesis,
    user: Keypair,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(n: u64) -> Net {
        let keys: Vec<PrivateKey> = (0..n).map(PrivateKey::from_seed).collect();
        let validators: Vec<_> = keys.iter().map(|k| address_of(&k.public_key())).collect();
        let user = Keypair::from_seed(b"consensus user");
        let mut genesis = Genesis::devnet(
            "depin-consensus-test",
            0,
            &validators,
            validators[0],
            &[(user.address(), Amount(1_000_000_000_000))],
        );
        genesis.chain.epoch_blocks = 5;
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
            self.participants(),
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
        )
        .await
        .expect("start validator")
    }

    fn transfer(&self, nonce: u64) -> Vec<u8> {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: self.user.address(),
            nonce,
            fee: Amount(10_000),
            action: Action::Transfer {
                to: address_of(&self.keys[1].public_key()),
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
    let seed = seed();
    let runner = deterministic::Runner::new(
        deterministic::Config::default()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(120))),
    );
    runner.start(|context| async move {
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
    });
}
