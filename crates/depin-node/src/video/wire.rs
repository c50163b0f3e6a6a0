//! The video protocol between a broadcaster and an orchestrator over the service network:
//! the orchestrator's offer (price, ticket face value, the random hash its tickets commit
//! to), a segment handed over with its ticket, and the renditions fetched back with the
//! orchestrator's signed commitment. Transcoding takes longer than a request may wait, so a
//! segment is accepted at once and its result asked for until it is ready.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_protocol::video::{SegmentCommitment, Ticket};
use depin_types::{Address, Hash, Signature};

/// Request-response protocol name (depin-net adds the chain id).
pub const VIDEO_PROTOCOL: &str = "video/1";

/// Largest source segment an orchestrator takes: 2 s of 1080p at 16 Mbit/s.
pub const MAX_SEGMENT_BYTES: usize = 4 << 20;

/// Largest request on the video protocol: a segment plus its ticket and settings.
pub const MAX_REQUEST_BYTES: usize = MAX_SEGMENT_BYTES + 64 * 1024;

/// The most rungs one stream may ask for.
pub const MAX_RUNGS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum VideoRequest {
    /// What the orchestrator charges now, the random hash its next tickets commit to, and
    /// the last nonce it saw from this broadcaster against it.
    Offer {
        broadcaster: Address,
    },
    Transcode(Box<TranscodeRequest>),
    /// The renditions of a segment handed over before, once ready.
    Result {
        stream: Hash,
        seq: u64,
    },
}

/// The encoder settings a stream pins (see `depin_video::EncoderSettings`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StreamSettings {
    /// `1080p,720p,480p,360p`.
    pub ladder: String,
    pub encoder: String,
    pub preset: String,
    pub threads: u32,
    pub gop_frames: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TranscodeRequest {
    pub stream: Hash,
    pub seq: u64,
    pub settings: StreamSettings,
    /// The MPEG-TS segment.
    pub source: Vec<u8>,
    /// Pays the segment's output pixels at the offered price, in expectation.
    pub ticket: Ticket,
    pub ticket_signature: Signature,
}

/// An orchestrator's terms for the next segment.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Offer {
    pub orchestrator: Address,
    pub price_dc_per_gigapixel: u64,
    pub face_value_dc: u64,
    /// Tickets for the next segment commit to the random number behind this hash.
    pub recipient_rand_hash: Hash,
    /// The highest sender nonce seen against that hash: the next ticket must use more.
    pub last_nonce: Option<u32>,
    pub encoders: Vec<String>,
    pub build: String,
    pub threads: u32,
    /// Segments it could take now.
    pub free_sessions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum VideoResponse {
    Offer(Offer),
    /// The segment is being transcoded; ask for its result. The terms are for the next one.
    Accepted(Offer),
    Pending,
    Transcoded(Box<Transcoded>),
    /// Refused or failed, with a stable code and the reason; `offer` is the orchestrator's
    /// terms now (a new random hash after a winning ticket, for one).
    Refused {
        code: String,
        reason: String,
        offer: Option<Offer>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transcoded {
    pub commitment: SegmentCommitment,
    /// The orchestrator's signature over `commitment_message`.
    pub signature: Signature,
    /// The renditions' bytes, in the commitment's order.
    pub renditions: Vec<Vec<u8>>,
    /// Its terms for the next segment.
    pub offer: Offer,
}
