//! The chain as a commonware marshal [`Application`]: build a block on a (possibly not yet
//! final) parent, verify a proposed block by re-executing it, and apply finalized blocks.

use super::block::{ConsensusBlock, digest_of, hash_of};
use crate::{Chain, ChainApp, ChainError, ConsensusApp};
use commonware_actor::Feedback;
use commonware_codec::Encode;
use commonware_consensus::marshal::Update;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::marshal::core::Mailbox;
use commonware_consensus::marshal::standard::Standard;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Context;
use commonware_consensus::types::Height;
use commonware_consensus::{Application, Reporter};
use commonware_cryptography::blake3::Digest;
use commonware_cryptography::{Digested, ed25519};
use commonware_runtime::{Clock, Spawner};
use commonware_utils::Acknowledgement;
use depin_protocol::{Block, Finality};
use depin_types::Address;
use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The consensus context of a proposal: round, leader and parent.
pub type ProposalContext = Context<Digest, ed25519::PublicKey>;

/// Most unknown ancestors fetched and executed to verify one proposal (after a restart or
/// while catching up, the parent of a proposal may not be executed yet).
const MAX_ANCESTORS_TO_EXECUTE: usize = 256;

/// How far ahead of a validator's clock a proposed block's timestamp may be.
const MAX_CLOCK_DRIFT_MS: u64 = 5_000;

fn unix_ms(runtime: &impl Clock) -> u64 {
    runtime
        .current()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The depin account of a consensus participant: the same ed25519 key.
pub fn address_of(key: &ed25519::PublicKey) -> Address {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(key.as_ref());
    Address(bytes)
}

fn count(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Adapts [`ChainApp`] to marshal's application interface.
#[derive(Clone, Debug)]
pub struct DepinApplication {
    app: Arc<ChainApp>,
}

impl DepinApplication {
    pub fn new(app: Arc<ChainApp>) -> DepinApplication {
        DepinApplication { app }
    }

    fn chain(&self) -> &Chain {
        &self.app.chain
    }
}

/// Verifies `candidate`, first executing any of its ancestors (newest first in `ancestry`)
/// that this node has not executed yet.
async fn verify_with_ancestry(
    app: &Arc<ChainApp>,
    mut ancestry: impl Ancestry<ConsensusBlock>,
) -> Result<(), ChainError> {
    let mut unknown: Vec<Arc<Block>> = Vec::new();
    while let Some(block) = ancestry.next().await {
        let block = block.inner().0.clone();
        let parent_known = app.chain.knows_parent(&block.header.parent);
        unknown.push(block);
        if parent_known || unknown.len() > MAX_ANCESTORS_TO_EXECUTE {
            break;
        }
    }
    for block in unknown.iter().rev() {
        app.verify(block)?;
    }
    Ok(())
}

impl<E: Clock> Application<E> for DepinApplication {
    type SigningScheme = Scheme;
    type Context = ProposalContext;
    type Block = ConsensusBlock;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, ProposalContext),
        _ancestry: impl Ancestry<ConsensusBlock>,
        _input: (),
    ) -> Option<Digested<ConsensusBlock>> {
        let parent = hash_of(&context.parent.1);
        // Pace blocks at the genesis interval: simplex itself would propose as soon as the
        // previous view finalizes, which on a fast network is an empty-block storm.
        let interval_ms = self.chain().protocol().genesis().chain.block_interval_ms;
        if let Some(parent_ms) = self.chain().block_timestamp_ms(&parent) {
            let due_ms = parent_ms.saturating_add(interval_ms);
            let now_ms = unix_ms(&runtime);
            if due_ms > now_ms {
                runtime.sleep(Duration::from_millis(due_ms - now_ms)).await;
            }
        }
        let timestamp_ms = unix_ms(&runtime);
        let proposer = address_of(&context.leader);
        match self.app.propose(parent, timestamp_ms, proposer) {
            Ok(block) => {
                let digest = digest_of(&block.hash());
                Some(Digested::precomputed(ConsensusBlock::new(block), digest))
            }
            Err(e) => {
                tracing::warn!(error = %e, parent = %parent, "cannot build a block");
                None
            }
        }
    }

    async fn verify(
        &mut self,
        (runtime, context): (E, ProposalContext),
        ancestry: impl Ancestry<ConsensusBlock>,
    ) -> bool {
        let Some(candidate) = ancestry.peek().cloned() else {
            return false;
        };
        let block = candidate.inner().block();
        if block.header.timestamp_ms > unix_ms(&runtime).saturating_add(MAX_CLOCK_DRIFT_MS) {
            tracing::warn!(
                height = block.header.height,
                "block timestamp is in the future"
            );
            count(&self.chain().metrics.proposals_rejected_timestamp);
            return false;
        }
        // The proposer named in the block must be the round's leader: fees go to it.
        if block.header.proposer != address_of(&context.leader) {
            tracing::warn!(
                height = block.header.height,
                "proposer is not the round leader"
            );
            count(&self.chain().metrics.proposals_rejected_proposer);
            return false;
        }
        match verify_with_ancestry(&self.app, ancestry).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, height = block.header.height, "proposal rejected");
                if !e.is_node_fault() {
                    count(&self.chain().metrics.proposals_rejected_execution);
                }
                false
            }
        }
    }
}

/// Marshal's mailbox for depin blocks.
pub type MarshalMailbox = Mailbox<Scheme, Standard<ConsensusBlock>>;

/// Receives finalized blocks from marshal, in height order and at least once, and commits
/// them with their finalization certificate. The acknowledgement is sent only after the block
/// is durable in redb, so marshal redelivers anything a crash interrupted; committing twice is
/// a no-op.
pub struct FinalizedBlocks<E> {
    app: Arc<ChainApp>,
    marshal: MarshalMailbox,
    context: Arc<E>,
    /// Told (height, hash) of every block once it is durable: the epoch orchestrator.
    feed: Option<UnboundedSender<(u64, depin_types::Hash)>>,
}

// Runtime contexts are not Clone; the reporter must be.
impl<E> Clone for FinalizedBlocks<E> {
    fn clone(&self) -> Self {
        FinalizedBlocks {
            app: self.app.clone(),
            marshal: self.marshal.clone(),
            context: self.context.clone(),
            feed: self.feed.clone(),
        }
    }
}

impl<E> std::fmt::Debug for FinalizedBlocks<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinalizedBlocks")
    }
}

impl<E> FinalizedBlocks<E> {
    pub fn new(app: Arc<ChainApp>, marshal: MarshalMailbox, context: E) -> FinalizedBlocks<E> {
        FinalizedBlocks {
            app,
            marshal,
            context: Arc::new(context),
            feed: None,
        }
    }

    /// Also reports every committed block to `feed`.
    pub fn with_feed(mut self, feed: UnboundedSender<(u64, depin_types::Hash)>) -> Self {
        self.feed = Some(feed);
        self
    }
}

impl<E: Spawner + Send + Sync + 'static> Reporter for FinalizedBlocks<E> {
    type Activity = Update<ConsensusBlock>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Update::Block(block, ack) => {
                let app = self.app.clone();
                let marshal = self.marshal.clone();
                let feed = self.feed.clone();
                self.context.child("finalize").spawn(move |_| async move {
                    let block = block.inner().block();
                    let height = block.header.height;
                    // Blocks finalized through a descendant have no certificate of their own.
                    let finality = match marshal.get_finalization(Height::new(height)).await {
                        Some(finalization) => Finality::Quorum {
                            certificate: finalization.encode().to_vec(),
                        },
                        None => Finality::Descendant,
                    };
                    match app.finalize_certified(block, &finality) {
                        Ok(_) => {
                            ack.acknowledge();
                            if let Some(feed) = feed {
                                let _ = feed.unbounded_send((height, block.hash()));
                            }
                        }
                        // Without the acknowledgement marshal stops delivering: a block that
                        // consensus finalized but this node cannot apply needs an operator.
                        Err(e) => {
                            tracing::error!(error = %e, height, "cannot apply a finalized block")
                        }
                    }
                });
            }
            Update::Tip(_, height, _) => {
                tracing::debug!(height = height.get(), "finalized tip");
            }
        }
        Feedback::Ok
    }
}
