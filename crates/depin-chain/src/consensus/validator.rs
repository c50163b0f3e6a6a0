//! Wires one validator: marshal (finalized-block archives, backfill resolver, block
//! broadcast buffer), the Inline verification wrapper around [`DepinApplication`], and the
//! simplex engine. Generic over the runtime (tokio in production, deterministic in tests) and
//! over the p2p network (commonware authenticated lookup, or the simulated network in tests).

use super::application::{DepinApplication, FinalizedBlocks};
use super::block::{ConsensusBlock, digest_of};
use crate::ChainApp;
use commonware_broadcast::buffered;
use commonware_consensus::marshal::core::Actor as MarshalActor;
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::{Inline, Standard};
use commonware_consensus::marshal::{Config as MarshalConfig, Start};
use commonware_consensus::simplex;
use commonware_consensus::simplex::config::{ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::types::{Epoch, FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::ConstantProvider;
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::{Digested, Signer, sha256::Sha256};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Quota, Spawner, Storage, Supervisor};
use commonware_storage::archive::immutable;
use commonware_utils::ordered::Set;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::sync::Arc;
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
    /// The validator set of the current epoch.
    pub participants: Vec<PublicKey>,
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
        participants: Vec<PublicKey>,
        namespace: Vec<u8>,
        partition_prefix: String,
        max_block_bytes: usize,
        block_interval: Duration,
    ) -> ValidatorConfig {
        let interval = block_interval.max(Duration::from_millis(50));
        ValidatorConfig {
            signer,
            participants,
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
    pub simplex: Handle<()>,
}

impl std::fmt::Debug for ValidatorHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValidatorHandles")
    }
}

impl ValidatorHandles {
    /// Stops every actor (as a crash would; storage is journaled).
    pub fn abort(self) {
        self.simplex.abort();
        self.broadcast.abort();
        self.marshal.abort();
    }
}

fn nz_usize(v: usize) -> NonZeroUsize {
    NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN)
}

fn nz_u64(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

const PAGE_SIZE: u16 = 4096;
const PAGE_CACHE_PAGES: usize = 256;
const ITEMS_PER_SECTION: u64 = 1024;
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

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

/// Starts marshal and simplex for one validator over `channels`.
pub async fn start_validator<E, S, R, P, B>(
    context: E,
    app: Arc<ChainApp>,
    config: ValidatorConfig,
    channels: Channels<S, R>,
    peer_provider: P,
    blocker: B,
) -> Result<ValidatorHandles, ValidatorError>
where
    E: Spawner + Clock + Metrics + Storage + Supervisor + rand_core::CryptoRng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    let me = config.signer.public_key();
    let participants =
        Set::try_from(config.participants.clone()).map_err(|_| ValidatorError::BadParticipants)?;
    let scheme = Scheme::signer(&config.namespace, participants, config.signer.clone())
        .ok_or(ValidatorError::NotAParticipant)?;
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
    let epocher = FixedEpocher::new(nz_u64(u64::MAX / 2));
    let marshal_config = MarshalConfig {
        provider: ConstantProvider::new(scheme.clone()),
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
    let reporter = FinalizedBlocks::new(
        app.clone(),
        marshal_mailbox.clone(),
        context.child("finalized"),
    );
    let marshal = actor.start(reporter, buffer, resolver);

    // Simplex, verifying proposals inline through the chain.
    let wrapper = Inline::new(
        context.child("inline"),
        DepinApplication::new(app),
        marshal_mailbox,
        epocher,
    );
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: wrapper.clone(),
            relay: wrapper.clone(),
            reporter: wrapper,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size,
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(genesis_digest),
            replay_buffer: nz_usize(WRITE_BUFFER_BYTES),
            write_buffer: nz_usize(WRITE_BUFFER_BYTES),
            page_cache,
            leader_timeout: config.leader_timeout,
            certification_timeout: config.certification_timeout,
            timeout_retry: config.timeout_retry,
            view_retention: ViewDelta::new(10),
            skip: SkipPolicy::Enabled {
                timeout: config.skip_timeout,
                budget: SkipBudget::Participants,
            },
            fetch_timeout,
            fetch_retry_delay: Duration::from_millis(100),
            forward: ForwardPolicy::Disabled,
            track_historical_votes: false,
        },
    );
    let simplex = engine.start(channels.votes, channels.certificates, channels.resolver);
    Ok(ValidatorHandles {
        marshal,
        broadcast,
        simplex,
    })
}
