//! An object as the network stores it: cut into segments, each segment encrypted on its own
//! (unless public) and erasure-coded into content-addressed pieces. One segment is in memory
//! at a time, whatever the object's size.

use crate::crypto::{self, CryptoError};

use crate::erasure::{ErasureCoder, ErasureError};
use depin_protocol::storage::SegmentSpec;
use depin_types::Hash;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("erasure coding: {0}")]
    Erasure(#[from] ErasureError),
    #[error("decryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("segments of {max} bytes cannot hold any encrypted data")]
    SegmentTooSmall { max: u64 },
}

/// One coded segment: its pieces, in index order, and their BLAKE3 roots.
#[derive(Debug, Clone)]
pub struct PreparedSegment {
    pub segment_bytes: u64,
    pub piece_bytes: u64,
    pub pieces: Vec<Vec<u8>>,
    pub roots: Vec<Hash>,
}

impl PreparedSegment {
    /// What the deal says about this segment.
    pub fn spec(&self) -> SegmentSpec {
        SegmentSpec {
            segment_bytes: self.segment_bytes,
            piece_bytes: self.piece_bytes,
            roots: self.roots.clone(),
        }
    }
}

/// Plain bytes of the object per segment, so that a sealed segment fits `max_segment_bytes`.
pub fn plain_segment_bytes(max_segment_bytes: u64, encrypted: bool) -> Result<u64, ObjectError> {
    if !encrypted {
        return Ok(max_segment_bytes);
    }
    let block = crypto::BLOCK_BYTES as u64;
    let mut blocks = max_segment_bytes / (block + 16);
    while blocks > 0 && crypto::encrypted_len(blocks * block) > max_segment_bytes {
        blocks -= 1;
    }
    if blocks == 0 {
        return Err(ObjectError::SegmentTooSmall {
            max: max_segment_bytes,
        });
    }
    Ok(blocks * block)
}

/// How a segment is sealed: the owner's secret and the segment's object nonce. A client
/// that codes a segment twice (once for the roots, once to upload) derives the same nonce
/// both times, e.g. from a per-upload salt and the segment index.
#[derive(Debug, Clone, Copy)]
pub struct Seal<'a> {
    pub owner_secret: &'a [u8; 32],
    pub nonce: [u8; 16],
}

/// A segment's object nonce from a per-upload random salt and its index.
pub fn segment_nonce(salt: &[u8; 16], index: u64) -> [u8; 16] {
    let digest = blake3::keyed_hash(&blake3::hash(salt).into(), &index.to_be_bytes());
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&digest.as_bytes()[..16]);
    nonce
}

/// Encrypts (when sealed) and codes one segment of the object.
pub fn prepare_segment(
    coder: &dyn ErasureCoder,
    plain: &[u8],
    seal: Option<Seal<'_>>,
) -> Result<PreparedSegment, ObjectError> {
    let mut segments = SegmentCoder::new(coder);
    let coded = segments.code(plain, seal)?;
    let (segment_bytes, piece_bytes, roots) = (coded.segment_bytes, coded.piece_bytes, coded.roots);
    Ok(PreparedSegment {
        segment_bytes,
        piece_bytes,
        pieces: std::mem::take(&mut segments.pieces),
        roots,
    })
}

/// Codes (and restores) segment after segment in the same buffers: 64 MiB segments in fresh
/// allocations cost more in page faults than the cipher and the code together.
pub struct SegmentCoder<'c> {
    coder: &'c dyn ErasureCoder,
    sealed: Vec<u8>,
    pieces: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SegmentCoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SegmentCoder({}/{})",
            self.coder.data_pieces(),
            self.coder.total_pieces()
        )
    }
}

/// A segment just coded by a [`SegmentCoder`]; its pieces live in the coder's buffers.
#[derive(Debug)]
pub struct CodedSegment<'a> {
    pub segment_bytes: u64,
    pub piece_bytes: u64,
    pub pieces: &'a [Vec<u8>],
    pub roots: Vec<Hash>,
}

impl CodedSegment<'_> {
    /// What the deal says about this segment.
    pub fn spec(&self) -> SegmentSpec {
        SegmentSpec {
            segment_bytes: self.segment_bytes,
            piece_bytes: self.piece_bytes,
            roots: self.roots.clone(),
        }
    }
}

impl<'c> SegmentCoder<'c> {
    pub fn new(coder: &'c dyn ErasureCoder) -> SegmentCoder<'c> {
        SegmentCoder {
            coder,
            sealed: Vec::new(),
            pieces: Vec::new(),
        }
    }

    /// Encrypts (when sealed) and codes one segment of the object.
    pub fn code(
        &mut self,
        plain: &[u8],
        seal: Option<Seal<'_>>,
    ) -> Result<CodedSegment<'_>, ObjectError> {
        let segment: &[u8] = match seal {
            Some(seal) => {
                crypto::encrypt_into(seal.owner_secret, &seal.nonce, plain, &mut self.sealed);
                &self.sealed
            }
            None => plain,
        };
        self.coder.encode_into(segment, &mut self.pieces)?;
        let roots = self
            .pieces
            .iter()
            .map(|p| Hash(*blake3::hash(p).as_bytes()))
            .collect();
        Ok(CodedSegment {
            segment_bytes: segment.len() as u64,
            piece_bytes: self.coder.piece_bytes(segment.len() as u64),
            pieces: &self.pieces,
            roots,
        })
    }

    /// Takes the pieces of the segment just coded out of the coder (to share them with
    /// uploads); [`SegmentCoder::give_back`] returns their buffers for reuse.
    pub fn take_pieces(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.pieces)
    }

    pub fn give_back(&mut self, pieces: Vec<Vec<u8>>) {
        if self.pieces.is_empty() {
            self.pieces = pieces;
        }
    }

    /// The plain bytes of a segment from at least `data_pieces` verified pieces, into `plain`.
    pub fn restore(
        &mut self,
        segment_bytes: u64,
        pieces: &[(usize, Vec<u8>)],
        owner_secret: Option<&[u8; 32]>,
        plain: &mut Vec<u8>,
    ) -> Result<(), ObjectError> {
        match owner_secret {
            Some(secret) => {
                self.coder
                    .decode_into(segment_bytes, pieces, &mut self.sealed)?;
                crypto::decrypt_into(secret, &self.sealed, plain)?;
            }
            None => self.coder.decode_into(segment_bytes, pieces, plain)?,
        }
        Ok(())
    }
}

/// The plain bytes of a segment from at least `data_pieces` verified pieces.
pub fn restore_segment(
    coder: &dyn ErasureCoder,
    segment_bytes: u64,
    pieces: &[(usize, Vec<u8>)],
    owner_secret: Option<&[u8; 32]>,
) -> Result<Vec<u8>, ObjectError> {
    let mut plain = Vec::new();
    SegmentCoder::new(coder).restore(segment_bytes, pieces, owner_secret, &mut plain)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::ReedSolomon;

    #[test]
    fn objects_of_every_shape_survive_losing_all_but_k_pieces() {
        let coder = ReedSolomon::new(4, 8).expect("profile");
        let secret = [3u8; 32];
        let max_segment = 300_000u64;
        for encrypted in [false, true] {
            let owner = encrypted.then_some(&secret);
            let per_segment = plain_segment_bytes(max_segment, encrypted).expect("size");
            assert!(per_segment > 0);
            let boundary = per_segment as usize;
            for len in [
                0,
                1,
                boundary - 1,
                boundary,
                boundary + 1,
                3 * boundary + 17,
            ] {
                let object: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
                let segments: Vec<&[u8]> = if object.is_empty() {
                    vec![&[][..]]
                } else {
                    object.chunks(boundary).collect()
                };
                let mut restored = Vec::new();
                for (s, plain) in segments.iter().enumerate() {
                    let seal = owner.map(|secret| Seal {
                        owner_secret: secret,
                        nonce: segment_nonce(&[9u8; 16], s as u64),
                    });
                    let prepared = prepare_segment(&coder, plain, seal).expect("prepare");
                    // Coding it again gives the same pieces (same roots on chain).
                    let again = prepare_segment(&coder, plain, seal).expect("prepare");
                    assert_eq!(again.roots, prepared.roots);
                    assert!(prepared.segment_bytes <= max_segment);
                    let spec = prepared.spec();
                    assert_eq!(spec.roots.len(), 8);
                    // Keep only the last 4 pieces (all recovery pieces when s is even).
                    let keep = if s % 2 == 0 { 4..8 } else { 1..5 };
                    let kept: Vec<(usize, Vec<u8>)> =
                        keep.map(|i| (i, prepared.pieces[i].clone())).collect();
                    restored.extend(
                        restore_segment(&coder, prepared.segment_bytes, &kept, owner)
                            .expect("restore"),
                    );
                }
                assert_eq!(restored, object, "len {len} encrypted {encrypted}");
            }
        }
        assert!(plain_segment_bytes(100, true).is_err());
    }
}
