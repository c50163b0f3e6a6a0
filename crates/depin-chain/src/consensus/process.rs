//! Runs a validator for real: commonware's tokio runtime, its authenticated `lookup` p2p
//! network over TCP between the known validator set, and the simplex + marshal engine from
//! [`super::validator`]. Blocks the calling thread until `stop` is set.

use super::epochs::PeerSetUpdate;
use super::validator::{
    Channels, ValidatorConfig, ValidatorError, channel, channel_quota, start_validator,
};
use crate::ChainApp;
use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::{ChaCha20Poly1305, Signer};
use commonware_p2p::authenticated::lookup::{self, Network};
use commonware_p2p::{Address as PeerAddress, AddressableManager};
use commonware_runtime::{Clock, Runner, Spawner, Supervisor};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::ordered::Map;
use depin_protocol::MAX_VALIDATOR_CANDIDATES;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::net::ToSocketAddrs;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Everything a validator process needs besides the chain.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The node's ed25519 secret key (the same key as its depin account).
    pub secret_key: [u8; 32],
    /// Where this validator accepts consensus connections.
    pub listen: SocketAddr,
    /// Consensus addresses known from the configuration (the genesis validators, this one
    /// included). Validators that join later publish theirs on chain when they register.
    pub peers: Vec<(PublicKey, SocketAddr)>,
    /// Folder for consensus journals and archives (simplex WAL, marshal archives).
    pub storage_dir: PathBuf,
    pub chain_id: String,
    pub max_block_bytes: usize,
    pub block_interval: Duration,
    pub worker_threads: usize,
}

/// The consensus identity of a 32-byte ed25519 secret.
pub fn private_key(secret: &[u8; 32]) -> Result<PrivateKey, ValidatorError> {
    PrivateKey::decode(bytes::Bytes::copy_from_slice(secret))
        .map_err(|_| ValidatorError::NotAParticipant)
}

/// Runs until `stop` is set. Returns an error if the validator cannot start.
pub fn run_validator(
    config: ProcessConfig,
    app: Arc<ChainApp>,
    stop: Arc<AtomicBool>,
) -> Result<(), ValidatorError> {
    let signer = private_key(&config.secret_key)?;
    let runtime = commonware_runtime::tokio::Config::new()
        .with_worker_threads(config.worker_threads.max(1))
        .with_storage_directory(config.storage_dir.clone())
        .with_catch_panics(false);
    let runner = commonware_runtime::tokio::Runner::new(runtime);
    runner.start(|context| async move {
        let namespace = config.chain_id.as_bytes().to_vec();
        let handshake = Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: signer.clone(),
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        );
        // Every candidate may enter a set; all of them are tracked so observers follow too.
        let max_peers = NonZeroUsize::new(config.peers.len() + MAX_VALIDATOR_CANDIDATES)
            .unwrap_or(NonZeroUsize::MIN);
        // Blocks travel whole on the broadcast and backfill channels; leave room for framing.
        let max_message = (config.max_block_bytes + 1024 * 1024).min(u32::MAX as usize) as u32;
        let mailbox = NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN);
        let all_private = config
            .peers
            .iter()
            .all(|(_, a)| a.ip().is_loopback() || is_private(a));
        // Loopback and private addresses are refused by the recommended (internet) profile.
        let profile = if all_private {
            lookup::Config::local
        } else {
            lookup::Config::recommended
        };
        let p2p = profile(
            handshake,
            &namespace,
            config.listen,
            max_peers,
            max_message,
            mailbox,
        );
        let (mut network, oracle) = Network::new(context.child("network"), p2p);
        let mut register = |ch| network.register(ch, channel_quota());
        let channels = Channels {
            votes: register(channel::VOTES),
            certificates: register(channel::CERTIFICATES),
            resolver: register(channel::RESOLVER),
            backfill: register(channel::BACKFILL),
            broadcast: register(channel::BROADCAST),
        };
        network.start();
        let validator = ValidatorConfig::with_block_interval(
            signer.clone(),
            namespace.clone(),
            "depin".to_string(),
            config.max_block_bytes,
            config.block_interval,
        );
        let peers = peer_set_update(oracle.clone(), app.clone(), config.peers.clone());
        let handles = start_validator(
            context.child("validator"),
            app,
            validator,
            channels,
            oracle.clone(),
            oracle,
            peers,
        )
        .await?;
        tracing::info!(listen = %config.listen, peers = config.peers.len(), "consensus started");
        while !stop.load(Ordering::SeqCst) {
            context.sleep(Duration::from_millis(100)).await;
        }
        handles.abort();
        let _ = context.stop(0, Some(Duration::from_secs(5))).await;
        Ok(())
    })
}

/// Tracks, for each epoch, every validator candidate whose consensus address is known
/// (configured, or registered on chain) together with the epoch's set: members vote, the other
/// candidates follow as observers and are ready to join.
fn peer_set_update(
    mut oracle: lookup::Oracle<PublicKey>,
    app: Arc<ChainApp>,
    configured: Vec<(PublicKey, SocketAddr)>,
) -> PeerSetUpdate {
    Box::new(move |epoch, set| {
        let mut known: BTreeMap<PublicKey, SocketAddr> = configured.iter().cloned().collect();
        match app.chain.validator_candidates() {
            Ok(candidates) => {
                for candidate in candidates {
                    let Some(address) = candidate.consensus_address.as_deref() else {
                        continue;
                    };
                    let Ok(key) = public_key(&candidate.address) else {
                        continue;
                    };
                    match address.to_socket_addrs().map(|mut a| a.next()) {
                        Ok(Some(socket)) => {
                            known.insert(key, socket);
                        }
                        _ => tracing::warn!(address, "cannot resolve a validator's address"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read validator candidates"),
        }
        let missing: Vec<_> = set.iter().filter(|k| !known.contains_key(*k)).collect();
        if !missing.is_empty() {
            tracing::warn!(
                epoch,
                missing = missing.len(),
                "validators without a known address"
            );
        }
        let peers: Result<Map<PublicKey, PeerAddress>, _> = known
            .into_iter()
            .map(|(k, a)| (k, PeerAddress::from(a)))
            .collect::<Vec<_>>()
            .try_into();
        match peers {
            Ok(peers) => {
                let _ = oracle.track(epoch, peers);
            }
            Err(_) => tracing::warn!(epoch, "duplicate validator keys in the peer set"),
        }
    })
}

fn is_private(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => v6.is_unique_local(),
    }
}

/// The consensus key of a depin address (the same 32 ed25519 bytes).
pub fn public_key(address: &depin_types::Address) -> Result<PublicKey, ValidatorError> {
    PublicKey::decode(bytes::Bytes::copy_from_slice(&address.0))
        .map_err(|_| ValidatorError::BadParticipants)
}

/// Whether this key signs for `address`.
pub fn matches(signer: &PrivateKey, address: &depin_types::Address) -> bool {
    signer.public_key().as_ref() == address.0.as_slice()
}
