//! Render jobs on chain: a provider's advertisement, a job and its pieces (frames or strips of
//! them) with their commitments and verdicts, the transactions, events and the state keys
//! under the render service's namespace.

use super::job::{PieceArea, RenderJobSpec};
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash};
use serde::{Deserialize, Serialize};

/// What a render provider says it runs, measured at its start: the device class Blender
/// renders on, the build (version and platform; verifiers are drawn among providers of the
/// same build, since Cycles' pixels differ between builds) and its score on the fixed
/// benchmark scene.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RenderAd {
    pub device: String,
    pub build: String,
    /// Pixel-samples a second on the benchmark scene.
    pub score_pixel_samples_per_s: u64,
    pub height: u64,
}

/// What a renderer binds itself to before any check is drawn: the BLAKE3 of the piece's
/// decoded pixels (RGBA, 8 bits, rows from the top) and the Merkle root over its square tiles
/// of `tile_px` (the runtime's `TileTree`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct PieceCommitment {
    pub image: Hash,
    pub tiles_root: Hash,
}

/// What a verifier measured between its re-render of the check regions and the renderer's
/// committed tiles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Verdict {
    /// SSIM in parts per million (1,000,000: identical).
    pub ssim_ppm: u32,
    /// PSNR in millidecibels (100,000: identical, the cap).
    pub psnr_millidb: u32,
}

/// One verifier drawn for a piece and what it said.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VerdictSlot {
    pub verifier: Address,
    pub deadline: u64,
    pub verdict: Option<Verdict>,
    /// It said nothing by its deadline (slashed, and another drawn).
    pub timed_out: bool,
    /// It said it could not check (`RenderTx::StepAside`): a fault on its record, no stake
    /// taken, and another drawn.
    pub stepped_aside: bool,
}

impl VerdictSlot {
    pub fn new(verifier: Address, deadline: u64) -> VerdictSlot {
        VerdictSlot {
            verifier,
            deadline,
            verdict: None,
            timed_out: false,
            stepped_aside: false,
        }
    }

    /// Still waiting for this verifier's verdict.
    pub fn is_open(&self) -> bool {
        self.verdict.is_none() && !self.timed_out && !self.stepped_aside
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub enum PieceStatus {
    /// Waiting for a renderer.
    Queued,
    /// A renderer has it until `deadline`.
    Rendering,
    /// Committed; its checks are drawn at the next block, from entropy the renderer could
    /// not know.
    Committed,
    /// Verifiers re-render its check regions.
    Checking,
    /// Checked: the consumer may approve or reject it until `deadline`, then it is approved.
    Offered,
    /// Paid.
    Approved,
    /// Given up after `max_attempts` renders; its price is refunded.
    Failed,
}

/// A consumer's rejection being checked: a verifier re-renders the rejected commitment's
/// regions. Only if it fails them does the rejection count against the renderer.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Dispute {
    pub renderer: Address,
    pub attempt: u8,
    pub commitment: PieceCommitment,
    pub check_seed: Hash,
    pub slot: VerdictSlot,
}

/// One piece of a job: a frame, or a strip of one.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Piece {
    pub index: u64,
    pub area: PieceArea,
    pub status: PieceStatus,
    /// Renders so far (0 for the first); a commitment or verdict names the attempt it is for.
    pub attempt: u8,
    pub renderer: Option<Address>,
    /// The renderer's price when assigned (at most the consumer's maximum).
    pub price_dc_per_gigapixel_sample: u64,
    /// The end of the current stage.
    pub deadline: u64,
    pub commitment: Option<PieceCommitment>,
    /// Entropy the check regions are drawn from.
    pub check_seed: Option<Hash>,
    /// Until when a verifier is waited for before the piece is rendered again elsewhere.
    pub check_wait_until: u64,
    pub verdicts: Vec<VerdictSlot>,
    /// Renderers of earlier attempts: never assigned this piece again.
    pub tried: Vec<Address>,
    pub rejections: u8,
    pub dispute: Option<Dispute>,
    pub paid_dc: u128,
}

impl Piece {
    pub fn queued(index: u64, area: PieceArea) -> Piece {
        Piece {
            index,
            area,
            status: PieceStatus::Queued,
            attempt: 0,
            renderer: None,
            price_dc_per_gigapixel_sample: 0,
            deadline: 0,
            commitment: None,
            check_seed: None,
            check_wait_until: 0,
            verdicts: Vec::new(),
            tried: Vec::new(),
            rejections: 0,
            dispute: None,
            paid_dc: 0,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub enum RenderJobStatus {
    Open,
    /// Every piece approved or given up; what was left of the escrow went back.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RenderJob {
    pub id: Hash,
    pub owner: Address,
    pub spec: RenderJobSpec,
    pub submitted_height: u64,
    pub pieces: u64,
    /// Pieces handed out for the first time so far (the rest are queued, with no record).
    pub next_piece: u64,
    pub approved: u64,
    pub failed: u64,
    /// Data Credits still held for the pieces' price.
    pub escrow_dc: u128,
    /// Data Credits still held for verdicts.
    pub verify_pool_dc: u128,
    pub paid_dc: u128,
    pub status: RenderJobStatus,
}

/// A piece's render: the job, the piece and its attempt.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct PieceRef {
    pub job: Hash,
    pub piece: u64,
    pub attempt: u8,
}

/// Pieces a provider is rendering and checks it owes: what its node works on.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct RenderUsage {
    pub rendering: Vec<PieceRef>,
    pub verifying: Vec<PieceRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum RenderTx {
    /// A registered render provider's device, build and benchmark score.
    Advertise {
        device: String,
        build: String,
        score_pixel_samples_per_s: u64,
    },
    /// Escrows every piece at the maximum price plus the verdict pool, and queues the pieces.
    SubmitJob(RenderJobSpec),
    /// The renderer's commitment to a piece it rendered.
    Commit {
        job: Hash,
        piece: u64,
        attempt: u8,
        commitment: PieceCommitment,
    },
    /// A drawn verifier's measurement of a piece's check regions (or of a disputed one).
    Verdict {
        job: Hash,
        piece: u64,
        attempt: u8,
        verdict: Verdict,
    },
    /// The consumer approves offered pieces: they are paid now.
    Approve { job: Hash, pieces: Vec<u64> },
    /// The consumer rejects an offered piece: it is rendered again elsewhere, unpaid, and a
    /// verifier checks the rejected render.
    Reject { job: Hash, piece: u64 },
    /// A drawn verifier that cannot check (its Blender failed on the scene, the scene never
    /// came) gives its check back before the deadline: a fault on its record instead of the
    /// silent verifier's slash, and another verifier is drawn.
    StepAside {
        job: Hash,
        piece: u64,
        attempt: u8,
        reason: String,
    },
}

/// What the chain must look at in a later block: one entry per piece and stage, checked
/// against the piece when it comes due (a stale entry is skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Due {
    pub job: Hash,
    pub piece: u64,
    pub attempt: u8,
    pub kind: DueKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum DueKind {
    RenderTimeout,
    DrawChecks,
    VerdictTimeout,
    AutoApprove,
    DisputeTimeout,
}

/// A place in the assignment queue: a piece to render again, or the next fresh piece of a
/// job (the job goes back to the end of the queue after each, so jobs share renderers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct QueueEntry {
    pub job: Hash,
    pub piece: Option<u64>,
}

/// What a render transaction or block did, carried in receipts (`Event::Service`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RenderEvent {
    Advertised {
        provider: Address,
        build: String,
        score_pixel_samples_per_s: u64,
    },
    JobSubmitted {
        id: Hash,
        pieces: u64,
        #[serde(with = "depin_types::u128_string")]
        escrow_dc: u128,
    },
    PieceCommitted {
        job: Hash,
        piece: u64,
        renderer: Address,
    },
    VerifierDrawn {
        job: Hash,
        piece: u64,
        verifier: Address,
    },
    VerdictPosted {
        job: Hash,
        piece: u64,
        verifier: Address,
        passed: bool,
    },
    VerifierSteppedAside {
        job: Hash,
        piece: u64,
        verifier: Address,
        reason: String,
    },
    PieceOffered {
        job: Hash,
        piece: u64,
    },
    PieceApproved {
        job: Hash,
        piece: u64,
        renderer: Address,
        #[serde(with = "depin_types::u128_string")]
        paid_dc: u128,
    },
    PieceRequeued {
        job: Hash,
        piece: u64,
        reason: String,
    },
    PieceFailed {
        job: Hash,
        piece: u64,
    },
    JobDone {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        refunded_dc: u128,
    },
}

impl crate::service::ServiceEvent for RenderEvent {
    const SERVICE: depin_types::ServiceKind = super::SERVICE;
}

/// Keys under the render service's namespace.
pub mod keys {
    use depin_types::{Address, Hash};

    pub const JOB_COUNTER: &[u8] = b"count";
    /// The assignment queue's first and next free positions.
    pub const QUEUE_HEAD: &[u8] = b"qh";
    pub const QUEUE_TAIL: &[u8] = b"qt";

    pub fn queue(position: u64) -> Vec<u8> {
        [b"q/".as_slice(), &position.to_be_bytes()].concat()
    }

    pub fn job(id: &Hash) -> Vec<u8> {
        [b"j/".as_slice(), id.as_bytes()].concat()
    }

    pub fn piece(job: &Hash, index: u64) -> Vec<u8> {
        [b"p/".as_slice(), job.as_bytes(), &index.to_be_bytes()].concat()
    }

    pub fn ad(provider: &Address) -> Vec<u8> {
        [b"a/".as_slice(), provider.as_bytes()].concat()
    }

    pub fn usage(provider: &Address) -> Vec<u8> {
        [b"u/".as_slice(), provider.as_bytes()].concat()
    }

    /// How many entries come due at `height`.
    pub fn due_count(height: u64) -> Vec<u8> {
        [b"dc/".as_slice(), &height.to_be_bytes()].concat()
    }

    pub fn due(height: u64, index: u64) -> Vec<u8> {
        [
            b"d/".as_slice(),
            &height.to_be_bytes(),
            &index.to_be_bytes(),
        ]
        .concat()
    }

    /// The paid work of `epoch`, per provider ([`crate::service::EpochPaidWork`]).
    pub fn epoch_work(epoch: u64) -> Vec<u8> {
        [b"w/".as_slice(), &epoch.to_be_bytes()].concat()
    }
}
