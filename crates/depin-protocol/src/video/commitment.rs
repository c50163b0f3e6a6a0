//! An orchestrator's signed word on what it returned for a segment: the hash, size and
//! decoded pixels of each rendition. The broadcaster checks the renditions against it as
//! they land, and posts it as evidence when it disputes them.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash};
use serde::{Deserialize, Serialize};

/// One rendition as its orchestrator committed to it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RenditionCommit {
    /// The rung's name, e.g. `720p`.
    pub rung: String,
    /// BLAKE3 of the rendition's bytes.
    pub hash: Hash,
    pub bytes: u64,
    /// Decoded output pixels: frames × width × height, what the ticket pays for.
    pub pixels: u64,
}

/// What an orchestrator signs for one transcoded segment.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SegmentCommitment {
    pub orchestrator: Address,
    pub broadcaster: Address,
    pub stream: Hash,
    pub seq: u64,
    /// BLAKE3 of the source segment it was given.
    pub source_hash: Hash,
    pub renditions: Vec<RenditionCommit>,
}

impl SegmentCommitment {
    /// Output pixels of every rendition together.
    pub fn pixels(&self) -> u64 {
        self.renditions
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.pixels))
    }
}

/// The bytes an orchestrator signs: the commitment under a domain tag and the chain id.
pub fn commitment_message(chain_id: &str, commitment: &SegmentCommitment) -> Vec<u8> {
    let mut message = b"depin video segment commitment\0".to_vec();
    message.extend_from_slice(&(chain_id.len() as u32).to_le_bytes());
    message.extend_from_slice(chain_id.as_bytes());
    message.extend_from_slice(&depin_types::encode(commitment));
    message
}
