//! Validator-set epochs. The chain fixes the set of consensus epoch `e + 1` from bonded stake
//! at the first block of epoch `e` (see `depin_protocol::validator_era`). When the last
//! block of epoch `e` is final, the orchestrator here stops that epoch's simplex engine and
//! starts one for `e + 1` with the new set, on the same marshal (one chain of finalized
//! blocks across epochs). Each epoch's engine has its own journal and its own sub-channel of
//! the vote, certificate and resolver channels, as in commonware's reshare example.

use super::application::DepinApplication;
use super::block::{ConsensusBlock, digest_of};
use super::process::public_key;
use super::validator::{ValidatorConfig, ValidatorError, nz_usize};
use crate::ChainApp;
use commonware_consensus::marshal::core::Mailbox;
use commonware_consensus::marshal::standard::{Inline, Standard};
use commonware_consensus::simplex;
use commonware_consensus::simplex::config::{ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::types::{Epoch, Epocher, FixedEpocher, Height, ViewDelta};
use commonware_cryptography::certificate::{Provider as SchemeProvider, Scoped};
use commonware_cryptography::ed25519::PublicKey;
use commonware_cryptography::{Signer, sha256::Sha256};
use commonware_p2p::utils::mux::MuxHandle;
use commonware_p2p::{Blocker, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, Supervisor};
use commonware_utils::ordered::Set;
use depin_types::Hash;
use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Signing schemes by consensus epoch: marshal checks certificates of any epoch it has, and
/// each epoch's engine signs (or only verifies, when this node is not in the set) with its own.
#[derive(Clone, Default)]
pub struct EpochSchemes {
    schemes: Arc<Mutex<BTreeMap<u64, Scoped<Scheme>>>>,
}

impl std::fmt::Debug for EpochSchemes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochSchemes")
    }
}

/// Epochs whose schemes are kept: old certificates are checked by the chain, not marshal.
const SCHEMES_KEPT: usize = 8;

impl EpochSchemes {
    fn insert(&self, epoch: u64, scoped: Scoped<Scheme>) {
        let mut map = self.schemes.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(epoch, scoped);
        while map.len() > SCHEMES_KEPT {
            map.pop_first();
        }
    }

    fn contains(&self, epoch: u64) -> bool {
        let map = self.schemes.lock().unwrap_or_else(|p| p.into_inner());
        map.contains_key(&epoch)
    }
}

impl SchemeProvider for EpochSchemes {
    type Scope = Epoch;
    type Scheme = Scheme;

    fn scoped(&self, epoch: Epoch) -> Option<Scoped<Scheme>> {
        let map = self.schemes.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&epoch.get()).cloned()
    }
}

/// Told the validators of an epoch (with those of the epoch after it, when known) so the p2p
/// layer can connect to them before that epoch starts.
pub type PeerSetUpdate = Box<dyn FnMut(u64, Vec<PublicKey>) + Send>;

/// An epoch's scheme (signing when this node is in the set) and its participants.
type EpochScheme = (Scoped<Scheme>, Vec<PublicKey>);

/// The scheme for `epoch` from the chain's record of its set; `None` while not chosen yet.
fn scheme_for(
    app: &ChainApp,
    config: &ValidatorConfig,
    epoch: u64,
) -> Result<Option<EpochScheme>, ValidatorError> {
    let addresses = app
        .chain
        .validator_set(epoch)
        .map_err(|e| ValidatorError::Storage(e.to_string()))?;
    if addresses.is_empty() {
        return Ok(None);
    }
    let keys = addresses
        .iter()
        .map(public_key)
        .collect::<Result<Vec<_>, _>>()?;
    let participants = Set::try_from(keys.clone()).map_err(|_| ValidatorError::BadParticipants)?;
    let scoped = match Scheme::signer(
        &config.namespace,
        participants.clone(),
        config.signer.clone(),
    ) {
        Some(scheme) => Scoped::scheme(Arc::new(scheme)),
        None => Scoped::verifier(Arc::new(Scheme::verifier(&config.namespace, participants))),
    };
    Ok(Some((scoped, keys)))
}

/// Registers the schemes of `epoch` and `epoch + 1` that the chain knows and are missing.
pub(crate) fn learn_schemes(
    app: &ChainApp,
    config: &ValidatorConfig,
    schemes: &EpochSchemes,
    epoch: u64,
) -> Result<(), ValidatorError> {
    for e in [epoch, epoch + 1] {
        if !schemes.contains(e)
            && let Some((scoped, _)) = scheme_for(app, config, e)?
        {
            schemes.insert(e, scoped);
        }
    }
    Ok(())
}

/// The epoch to run after a (re)start and the block its engine starts from: the epoch of the
/// next height, whose "genesis" is the last block of the epoch before (or block 0).
pub(crate) fn current_epoch(
    app: &ChainApp,
    epocher: &FixedEpocher,
) -> Result<(u64, Hash), ValidatorError> {
    let next = app.chain.head().height + 1;
    let epoch = epocher
        .containing(Height::new(next))
        .map(|info| info.epoch().get())
        .unwrap_or(0);
    let first = epocher
        .first(Epoch::new(epoch))
        .map(|h| h.get())
        .unwrap_or(0);
    let boundary_height = first.saturating_sub(1);
    let boundary = app
        .chain
        .block_hash_at(boundary_height)
        .map_err(|e| ValidatorError::Storage(e.to_string()))?
        .ok_or(ValidatorError::NoGenesis)?;
    Ok((epoch, boundary))
}

type Automaton<E> = Inline<E, Scheme, DepinApplication, ConsensusBlock, FixedEpocher>;

/// Runs the simplex engine of the current epoch and moves to the next one at each boundary.
pub(crate) struct Orchestrator<E: Clock, S: Sender<PublicKey = PublicKey>, B> {
    pub context: E,
    pub app: Arc<ChainApp>,
    pub config: ValidatorConfig,
    pub schemes: EpochSchemes,
    pub epocher: FixedEpocher,
    pub automaton: Automaton<E>,
    pub blocker: B,
    pub votes: MuxHandle<S>,
    pub certificates: MuxHandle<S>,
    pub resolver: MuxHandle<S>,
    pub page_cache: CacheRef,
    pub peers: PeerSetUpdate,
    /// The epoch whose engine runs, shared with the watcher of future-epoch messages.
    pub running: Arc<AtomicU64>,
    /// The running engine, shared so that stopping the validator stops it.
    pub engine: Arc<Mutex<Option<Handle<()>>>>,
}

impl<E, S, B> Orchestrator<E, S, B>
where
    E: Spawner + Clock + Metrics + Storage + Supervisor + rand_core::CryptoRng,
    S: Sender<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    /// Runs until the finalized-block feed closes (the validator stops).
    pub async fn run(mut self, mut finalized: UnboundedReceiver<(u64, Hash)>) {
        let mut epoch = match current_epoch(&self.app, &self.epocher) {
            Ok((epoch, boundary)) => match self.enter(epoch, boundary).await {
                Ok(()) => epoch,
                Err(e) => {
                    tracing::error!(error = %e, epoch, "cannot start consensus for the epoch");
                    return;
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot find the current consensus epoch");
                return;
            }
        };
        while let Some((height, hash)) = finalized.next().await {
            let this = self.app.chain.validator_era(height);
            if let Err(e) = learn_schemes(&self.app, &self.config, &self.schemes, this) {
                tracing::warn!(error = %e, height, "cannot read the next validator set");
            }
            let last = self
                .epocher
                .last(Epoch::new(this))
                .map(|h| h.get())
                .unwrap_or(u64::MAX);
            if height != last || this < epoch {
                continue;
            }
            let next = this + 1;
            match self.enter(next, hash).await {
                Ok(()) => {
                    epoch = next;
                    tracing::info!(epoch, height, "entered consensus epoch");
                }
                Err(e) => {
                    tracing::error!(error = %e, epoch = next, "cannot start consensus for the epoch")
                }
            }
        }
    }

    /// Starts the engine of `epoch` on top of `boundary`, the last block of the epoch before.
    async fn enter(&mut self, epoch: u64, boundary: Hash) -> Result<(), ValidatorError> {
        let Some((scoped, keys)) = scheme_for(&self.app, &self.config, epoch)? else {
            return Err(ValidatorError::BadParticipants);
        };
        self.schemes.insert(epoch, scoped.clone());
        learn_schemes(&self.app, &self.config, &self.schemes, epoch)?;
        let mut peers = keys.clone();
        if let Some((_, next)) = scheme_for(&self.app, &self.config, epoch + 1)? {
            peers.extend(next);
        }
        peers.sort();
        peers.dedup();
        (self.peers)(epoch, peers);
        let member = keys.contains(&self.config.signer.public_key());
        let scheme = match scoped.clone().into_scheme() {
            Some(scheme) => (*scheme).clone(),
            None => Scheme::verifier(
                &self.config.namespace,
                Set::try_from(keys).map_err(|_| ValidatorError::BadParticipants)?,
            ),
        };
        let subchannel = epoch;
        let closed = |e: commonware_p2p::utils::mux::Error| ValidatorError::Storage(e.to_string());
        let votes = self.votes.register(subchannel).await.map_err(closed)?;
        let certificates = self
            .certificates
            .register(subchannel)
            .await
            .map_err(closed)?;
        let resolver = self.resolver.register(subchannel).await.map_err(closed)?;
        let config = &self.config;
        let fetch_timeout = commonware_utils::NonZeroDuration::new(
            config.fetch_timeout.max(Duration::from_millis(1)),
        )
        .ok_or(ValidatorError::BadParticipants)?;
        let engine = simplex::Engine::new(
            self.context.child("simplex").with_attribute("epoch", epoch),
            simplex::config::Config {
                scheme,
                elector: RoundRobin::<Sha256>::default(),
                blocker: self.blocker.clone(),
                automaton: self.automaton.clone(),
                relay: self.automaton.clone(),
                reporter: commonware_consensus::Reporters::from((
                    self.automaton.clone(),
                    super::evidence::EvidenceReporter::new(self.app.clone()),
                )),
                strategy: Sequential,
                partition: format!("{}-simplex-{epoch}", config.partition_prefix),
                mailbox_size: nz_usize(config.mailbox_size),
                epoch: Epoch::new(epoch),
                floor: simplex::config::Floor::Genesis(digest_of(&boundary)),
                replay_buffer: nz_usize(super::validator::WRITE_BUFFER_BYTES),
                write_buffer: nz_usize(super::validator::WRITE_BUFFER_BYTES),
                page_cache: self.page_cache.clone(),
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
                // Keeps each vote until its round is pruned, so a conflicting vote arriving
                // after the certificate still yields evidence.
                track_historical_votes: true,
            },
        );
        let handle = engine.start(votes, certificates, resolver);
        let old = self
            .engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(handle);
        if let Some(old) = old {
            old.abort();
        }
        self.running.store(epoch, Ordering::SeqCst);
        tracing::info!(epoch, member, "consensus engine started");
        Ok(())
    }
}

/// Watches messages for epochs this node has no engine for. A message from a later epoch
/// means this node missed the boundary: ask its sender for the finalization of the last block
/// of the running epoch, which marshal then delivers like any other.
pub(crate) async fn watch_future_epochs<E>(
    context: E,
    mut backup: commonware_utils::channel::mpsc::Receiver<(
        u64,
        commonware_p2p::Message<PublicKey>,
    )>,
    running: Arc<AtomicU64>,
    epocher: FixedEpocher,
    marshal: Mailbox<Scheme, Standard<ConsensusBlock>>,
) where
    E: Clock,
{
    let mut last_hint: Option<std::time::SystemTime> = None;
    while let Some((subchannel, (peer, _))) = backup.recv().await {
        let epoch = running.load(Ordering::SeqCst);
        if subchannel <= epoch {
            continue;
        }
        let now = context.current();
        if last_hint
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < Duration::from_secs(1))
        {
            continue;
        }
        last_hint = Some(now);
        let Some(boundary) = epocher.last(Epoch::new(epoch)) else {
            continue;
        };
        tracing::info!(
            epoch,
            later = subchannel,
            "behind an epoch boundary, fetching it"
        );
        marshal.hint_finalized(boundary, commonware_utils::vec::NonEmptyVec::new(peer));
    }
}
