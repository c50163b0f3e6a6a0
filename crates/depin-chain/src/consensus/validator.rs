//! Wires one validator: marshal (finalized-block archives, backfill resolver, block
//! broadcast buffer), the Inline verification wrapper around [`DepinApplication`], and the
//! simplex engine. Generic over the runtime (tokio in production, deterministic in tests) and
//! over the p2p network (commonware authenticated lookup, or the simulated network in tests).

use super::application::{DepinApplication, FinalizedBlocks};
use super::block::{ConsensusBlock, digest_of};
use super::epochs::{
    EpochSchemes, Orchestrator, PeerSetUpdate, current_epoch, learn_schemes, watch_future_epochs,
};
use crate::ChainApp;
use commonware_broadcast::buffered;
use commonware_consensus::marshal::core::Actor as MarshalActor;
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::{Inline, Standard};
use commonware_consensus::marshal::{Config as MarshalConfig, Start};
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::types::{FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::{Digested, Signer};
use commonware_p2p::utils::mux::{Builder as _, Muxer};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Quota, Spawner, Storage, Supervisor};
use commonware_storage::archive::immutable;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The p2p channels a validator uses, one (sender, receiver) pair each.
#[derive(Debug)]
pub struct Channels<S, R> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub backfill: (S, R),
    pub broadcast: (S, R),
}

/// Channel numbers on the authenticated network.
pub mod channel {
    pub const VOTES: u64 = 0;
    pub const CERTIFICATES: u64 = 1;
    pub const RESOLVER: u64 = 2;
    pub const BACKFILL: u64 = 3;
    pub const BROADCAST: u64 = 4;
}

/// Message rate per peer per channel; consensus traffic is a few messages per view.
pub fn channel_quota() -> Quota {
    Quota::per_second(NonZeroU32::new(1024).unwrap_or(NonZeroU32::MIN))
}

/// Timing and sizing of a validator.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    pub signer: PrivateKey,
    /// Domain separation for signatures: the chain id.
    pub namespace: Vec<u8>,
    /// Storage partitions of this validator start with this prefix.
    pub partition_prefix: String,
    pub max_block_bytes: usize,
    pub leader_timeout: Duration,
    pub certification_timeout: Duration,
    pub timeout_retry: Duration,
    /// An unresponsive leader is skipped after this long (must exceed the two above).
    pub skip_timeout: Duration,
    pub fetch_timeout: Duration,
    pub mailbox_size: usize,
}

impl ValidatorConfig {
    /// Timeouts derived from the block interval: a leader gets two intervals to propose.
    pub fn with_block_interval(
        signer: PrivateKey,
        namespace: Vec<u8>,
        partition_prefix: String,
        max_block_bytes: usize,
        block_interval: Duration,
    ) -> ValidatorConfig {
        let interval = block_interval.max(Duration::from_millis(50));
        ValidatorConfig {
            signer,
            namespace,
            partition_prefix,
            max_block_bytes,
            leader_timeout: interval * 2,
            certification_timeout: interval * 4,
            timeout_retry: interval * 3,
            skip_timeout: interval * 6,
            fetch_timeout: interval * 2,
            mailbox_size: 1024,
        }
    }
}

/// Why a validator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("this node's key is not in the validator set")]
    NotAParticipant,
    #[error("the validator set is empty or has duplicates")]
    BadParticipants,
    #[error("the genesis block is missing from the chain")]
    NoGenesis,
    #[error("storage: {0}")]
    Storage(String),
}

/// The running parts of a validator.
pub struct ValidatorHandles {
    pub marshal: Handle<()>,
    pub broadcast: Handle<()>,
    pub orchestrator: Handle<()>,
    /// The simplex engine of the running epoch (replaced at each epoch boundary).
    pub simplex: Arc<Mutex<Option<Handle<()>>>>,
    muxers: Vec<Handle<()>>,
}

impl std::fmt::Debug for ValidatorHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValidatorHandles")
    }
}

impl ValidatorHandles {
    /// Stops every actor (as a crash would; storage is journaled).
    pub fn abort(self) {
        self.orchestrator.abort();
        if let Some(engine) = self
            .simplex
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            engine.abort();
        }
        for muxer in self.muxers {
            muxer.abort();
        }
        self.broadcast.abort();
        self.marshal.abort();
    }
}

pub(crate) fn nz_usize(v: usize) -> NonZeroUsize {
    NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN)
}

fn nz_u64(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

const PAGE_SIZE: u16 = 4096;
const PAGE_CACHE_PAGES: usize = 256;
const ITEMS_PER_SECTION: u64 = 1024;
pub(crate) const WRITE_BUFFER_BYTES: usize = 64 * 1024;

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    let p = |part: &str| format!("{prefix}-{name}-{part}");
    immutable::Config {
        metadata_partition: p("metadata"),
        freezer_table_partition: p("freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 10,
        freezer_table_resize_chunk_size: 128,
        freezer_key_partition: p("freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: p("freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: p("ordinal"),
        items_per_section: nz_u64(ITEMS_PER_SECTION),
        codec_config,
        replay_buffer: nz_usize(WRITE_BUFFER_BYTES),
        freezer_key_write_buffer: nz_usize(WRITE_BUFFER_BYTES),
        freezer_value_write_buffer: nz_usize(WRITE_BUFFER_BYTES),
        ordinal_write_buffer: nz_usize(WRITE_BUFFER_BYTES),
    }
}

/// Passes the engine's peer blocks through, counting them for `/metrics`: simplex and marshal
/// block a peer that sends an invalid signature, a malformed or conflicting message.
#[derive(Clone)]
struct CountingBlocker<B> {
    inner: B,
    app: Arc<ChainApp>,
}

impl<B: Blocker> Blocker for CountingBlocker<B> {
    type PublicKey = B::PublicKey;

    fn block(&mut self, peer: Self::PublicKey) -> commonware_actor::Feedback {
        self.app
            .chain
            .metrics
            .consensus_peers_blocked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%peer, "consensus peer blocked for invalid messages");
        self.inner.block(peer)
    }

    fn blocked(&mut self) -> commonware_p2p::BlockedSubscription<Self::PublicKey> {
        self.inner.blocked()
    }
}

/// Starts marshal and the epoch orchestrator (which runs simplex, one engine per consensus
/// epoch) for one node over `channels`. A node outside an epoch's set runs that epoch's engine
/// as an observer: it verifies and follows but does not vote.
pub async fn start_validator<E, S, R, P, B>(
    context: E,
    app: Arc<ChainApp>,
    config: ValidatorConfig,
    channels: Channels<S, R>,
    peer_provider: P,
    blocker: B,
    peers: PeerSetUpdate,
) -> Result<ValidatorHandles, ValidatorError>
where
    E: Spawner + Clock + Metrics + Storage + Supervisor + rand_core::CryptoRng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    let me = config.signer.public_key();
    let blocker = CountingBlocker {
        inner: blocker,
        app: app.clone(),
    };
    let genesis = app
        .chain
        .block_by_height(0)
        .map_err(|e| ValidatorError::Storage(e.to_string()))?
        .ok_or(ValidatorError::NoGenesis)?;
    let genesis = ConsensusBlock::new(genesis);
    let genesis_digest = digest_of(&genesis.block().hash());
    let mailbox_size = nz_usize(config.mailbox_size);
    let page_cache = CacheRef::new(
        NonZeroU16::new(PAGE_SIZE).unwrap_or(NonZeroU16::MIN),
        nz_usize(PAGE_CACHE_PAGES),
    );
    let prefix = config.partition_prefix.clone();
    let fetch_timeout =
        commonware_utils::NonZeroDuration::new(config.fetch_timeout.max(Duration::from_millis(1)))
            .ok_or(ValidatorError::BadParticipants)?;
    let epocher = FixedEpocher::new(nz_u64(app.chain.protocol().genesis().chain.epoch_blocks));
    let schemes = EpochSchemes::default();
    let (epoch, _) = current_epoch(&app, &epocher)?;
    // Marshal may redeliver or backfill blocks of the epoch before the running one.
    learn_schemes(&app, &config, &schemes, epoch.saturating_sub(1))?;
    learn_schemes(&app, &config, &schemes, epoch)?;

    // Marshal: backfill resolver, block broadcast buffer, archives, actor.
    let resolver = marshal_resolver::init(
        context.child("resolver"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: peer_provider.clone(),
            blocker: blocker.clone(),
            mailbox_size,
            fetch_timeout,
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );
    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size,
            deque_size: 16,
            priority: false,
            codec_config: config.max_block_bytes,
            peer_provider,
            strategy: Sequential,
        },
    );
    let broadcast = broadcast_engine.start(channels.broadcast);
    let finalizations_by_height = immutable::Archive::init(
        context.child("finalizations_by_height"),
        archive_config(
            &prefix,
            "finalizations-by-height",
            &page_cache,
            Scheme::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .map_err(|e| ValidatorError::Storage(e.to_string()))?;
    let finalized_blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(
            &prefix,
            "finalized-blocks",
            &page_cache,
            config.max_block_bytes,
        ),
    )
    .await
    .map_err(|e| ValidatorError::Storage(e.to_string()))?;
    let marshal_config = MarshalConfig {
        provider: schemes.clone(),
        epocher: epocher.clone(),
        start: Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
        partition_prefix: prefix.clone(),
        mailbox_size,
        view_retention: ViewDelta::new(10),
        prunable_items_per_section: nz_u64(ITEMS_PER_SECTION),
        page_cache: page_cache.clone(),
        replay_buffer: nz_usize(WRITE_BUFFER_BYTES),
        key_write_buffer: nz_usize(WRITE_BUFFER_BYTES),
        value_write_buffer: nz_usize(WRITE_BUFFER_BYTES),
        block_codec_config: config.max_block_bytes,
        max_repair: nz_usize(64),
        max_pending_acks: nz_usize(1),
        strategy: Sequential,
    };
    let (actor, marshal_mailbox, _floor) =
        MarshalActor::<_, Standard<ConsensusBlock>, _, _, _, _, _>::init(
            context.child("marshal"),
            finalizations_by_height,
            finalized_blocks,
            marshal_config,
        )
        .await;
    let (finalized_tx, finalized_rx) = futures::channel::mpsc::unbounded();
    let reporter = FinalizedBlocks::new(
        app.clone(),
        marshal_mailbox.clone(),
        context.child("finalized"),
    )
    .with_feed(finalized_tx);
    let marshal = actor.start(reporter, buffer, resolver);

    // One sub-channel per epoch on the consensus channels; votes of an epoch this node has no
    // engine for land in the backup queue, where a later epoch shows that it fell behind.
    let (votes_mux, votes, backup) = Muxer::builder(
        context.child("votes_mux"),
        channels.votes.0,
        channels.votes.1,
    )
    .with_backup()
    .build();
    let (certificates_mux, certificates) = Muxer::new(
        context.child("certificates_mux"),
        channels.certificates.0,
        channels.certificates.1,
    );
    let (resolver_mux, resolver) = Muxer::new(
        context.child("resolver_mux"),
        channels.resolver.0,
        channels.resolver.1,
    );
    let wait = |h: Handle<_>| {
        context.child("muxer").spawn(move |_| async move {
            let _ = h.await;
        })
    };
    let muxers = vec![
        wait(votes_mux.start()),
        wait(certificates_mux.start()),
        wait(resolver_mux.start()),
    ];

    let running = Arc::new(AtomicU64::new(epoch));
    let automaton = Inline::new(
        context.child("inline"),
        DepinApplication::new(app.clone()),
        marshal_mailbox.clone(),
        epocher.clone(),
    );
    let watcher_context = context.child("epoch_watch");
    let watcher_running = running.clone();
    let watcher_epocher = epocher.clone();
    let watcher_marshal = marshal_mailbox.clone();
    let watcher = watcher_context.child("run").spawn(move |ctx| {
        watch_future_epochs(
            ctx,
            backup,
            watcher_running,
            watcher_epocher,
            watcher_marshal,
        )
    });
    let simplex = Arc::new(Mutex::new(None));
    let orchestrator = Orchestrator {
        context: context.child("epochs"),
        app,
        config,
        schemes,
        epocher,
        automaton,
        blocker,
        votes,
        certificates,
        resolver,
        page_cache,
        peers,
        running,
        engine: simplex.clone(),
    };
    let orchestrator = context
        .child("orchestrator")
        .spawn(move |_| orchestrator.run(finalized_rx));
    let mut muxers = muxers;
    muxers.push(watcher);
    Ok(ValidatorHandles {
        marshal,
        broadcast,
        orchestrator,
        simplex,
        muxers,
    })
}
