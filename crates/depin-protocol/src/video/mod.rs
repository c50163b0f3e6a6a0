//! The video service's consensus rules, Livepeer's way of paying for transcoding: a
//! broadcaster locks a deposit and a reserve of Data Credits; each segment it sends an
//! orchestrator travels with probabilistic tickets whose expected value pays the segment's
//! output pixels at the orchestrator's price; the orchestrator redeems the winners on chain,
//! paid from the deposit, or, once the deposit is spent, from the reserve shared among the
//! orchestrators it owes. Replayed, expired and forged tickets are refused, the deposit can
//! be withdrawn only after an unlock period longer than any ticket lives, and a broadcaster
//! whose winners went uncovered is barred until it tops up. A broadcaster disputes a
//! rendition with the orchestrator's signed commitment and a bond; drawn verifiers
//! re-transcode and attest, and two alike decide: the orchestrator slashed, or the bond
//! paid to it.
//! Pure: ffmpeg, segments and playlists are `depin-video`'s job.

/// The name this service is registered under.
pub const SERVICE: depin_types::ServiceKind = depin_types::ServiceKind::new("video");

mod commitment;
mod module;
mod params;
mod ticket;
mod types;

pub use commitment::{RenditionCommit, SegmentCommitment, commitment_message};
pub use module::{KNOWN_ENCODERS, MAX_EVIDENCE_URL_BYTES, VideoModule, dispute_id};
pub use params::VideoParams;
pub use ticket::{
    Ticket, WIN_PROB_ALWAYS, expected_value_dc, ticket_id, ticket_message, ticket_wins, win_hash,
    win_prob_for,
};
pub use types::{
    Broadcaster, Dispute, DisputeVerifier, Freeze, VideoAd, VideoEvent, VideoTx, keys,
};
