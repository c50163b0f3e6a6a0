//! Possession proofs over a piece's BLAKE3 tree. A piece is content-addressed by its plain
//! BLAKE3 hash (the same id iroh and bao use); BLAKE3 is itself a Merkle tree of 1 KiB chunks,
//! so a chunk plus the chaining values of its siblings on the way to the root proves that the
//! chunk belongs to the piece — no second tree is needed. Providers keep an outboard of one
//! chaining value per 16 KiB group (0.2% of the piece) so they can answer without rehashing
//! the piece, and downloads check each group as it streams in.

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use borsh::{BorshDeserialize, BorshSerialize};

/// A BLAKE3 chunk: the unit a challenge picks.
pub const CHUNK_BYTES: u64 = 1024;

/// A chunk group: the unit of the outboard and of streaming verification.
pub const GROUP_BYTES: u64 = 16 * 1024;

/// Deepest tree a proof may describe: 2^64 bytes of 1 KiB chunks.
pub const MAX_PROOF_SIBLINGS: usize = 54;

/// A challenged chunk with the chaining values of its siblings, root first.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChunkProof {
    pub chunk: Vec<u8>,
    pub siblings: Vec<[u8; 32]>,
}

/// Number of 1 KiB chunks of a piece (at least one: an empty piece is one empty chunk).
pub fn chunk_count(piece_bytes: u64) -> u64 {
    piece_bytes.div_ceil(CHUNK_BYTES).max(1)
}

/// Number of 16 KiB groups of a piece (at least one).
pub fn group_count(piece_bytes: u64) -> u64 {
    piece_bytes.div_ceil(GROUP_BYTES).max(1)
}

/// One step of the path from the root to a chunk.
struct Step {
    /// The chunk is in the left child.
    went_left: bool,
    sibling_offset: u64,
    sibling_len: u64,
}

/// The path from the root of a `piece_bytes` tree down to chunk `index`, root first.
fn path(piece_bytes: u64, index: u64) -> Vec<Step> {
    let target = index * CHUNK_BYTES;
    let (mut offset, mut len) = (0u64, piece_bytes);
    let mut steps = Vec::new();
    while len > CHUNK_BYTES {
        let left = blake3::hazmat::left_subtree_len(len);
        if target < offset + left {
            steps.push(Step {
                went_left: true,
                sibling_offset: offset + left,
                sibling_len: len - left,
            });
            len = left;
        } else {
            steps.push(Step {
                went_left: false,
                sibling_offset: offset,
                sibling_len: left,
            });
            offset += left;
            len -= left;
        }
    }
    steps
}

/// The chaining value of the subtree of `bytes`, which start at `offset` of the piece.
fn subtree_cv(offset: u64, bytes: &[u8]) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// Folds a chunk's chaining value up its path (deepest sibling last in `steps`) to the root.
fn fold(steps: &[Step], siblings: &[[u8; 32]], leaf: ChainingValue) -> blake3::Hash {
    let mut cv = leaf;
    for level in (1..steps.len()).rev() {
        cv = if steps[level].went_left {
            merge_subtrees_non_root(&cv, &siblings[level], Mode::Hash)
        } else {
            merge_subtrees_non_root(&siblings[level], &cv, Mode::Hash)
        };
    }
    if steps[0].went_left {
        merge_subtrees_root(&cv, &siblings[0], Mode::Hash)
    } else {
        merge_subtrees_root(&siblings[0], &cv, Mode::Hash)
    }
}

/// Proves chunk `index` of `piece` by hashing the sibling subtrees from the piece itself.
/// `None` when the chunk is outside the piece.
pub fn prove_chunk(piece: &[u8], index: u64) -> Option<ChunkProof> {
    let piece_bytes = piece.len() as u64;
    if index >= chunk_count(piece_bytes) {
        return None;
    }
    let start = (index * CHUNK_BYTES) as usize;
    let end = (start + CHUNK_BYTES as usize).min(piece.len());
    let siblings = path(piece_bytes, index)
        .iter()
        .map(|s| {
            let from = s.sibling_offset as usize;
            subtree_cv(
                s.sibling_offset,
                &piece[from..from + s.sibling_len as usize],
            )
        })
        .collect();
    Some(ChunkProof {
        chunk: piece[start..end].to_vec(),
        siblings,
    })
}

/// Proves chunk `index` from the piece's outboard and the bytes of the 16 KiB group holding
/// the chunk only: what a provider reads from disk to answer a challenge.
pub fn prove_chunk_with_outboard(
    piece_bytes: u64,
    outboard: &[[u8; 32]],
    group: &[u8],
    index: u64,
) -> Option<ChunkProof> {
    if piece_bytes <= GROUP_BYTES {
        return (group.len() as u64 == piece_bytes && outboard.is_empty())
            .then(|| prove_chunk(group, index))
            .flatten();
    }
    if index >= chunk_count(piece_bytes) || outboard.len() as u64 != group_count(piece_bytes) {
        return None;
    }
    let group_index = index * CHUNK_BYTES / GROUP_BYTES;
    let group_offset = group_index * GROUP_BYTES;
    let expected = (piece_bytes - group_offset).min(GROUP_BYTES) as usize;
    if group.len() != expected {
        return None;
    }
    let start = (index * CHUNK_BYTES - group_offset) as usize;
    let end = (start + CHUNK_BYTES as usize).min(group.len());
    let siblings = path(piece_bytes, index)
        .iter()
        .map(|s| {
            // Siblings inside the chunk's group hash from its bytes; the others are whole
            // groups (group-aligned subtrees) and come from the outboard.
            let inside = (group_offset..group_offset + GROUP_BYTES).contains(&s.sibling_offset);
            if inside {
                let from = (s.sibling_offset - group_offset) as usize;
                subtree_cv(
                    s.sibling_offset,
                    &group[from..from + s.sibling_len as usize],
                )
            } else {
                cv_from_outboard(outboard, s.sibling_offset, s.sibling_len)
            }
        })
        .collect();
    Some(ChunkProof {
        chunk: group[start..end].to_vec(),
        siblings,
    })
}

/// The chaining value of a group-aligned subtree, from the outboard.
fn cv_from_outboard(outboard: &[[u8; 32]], offset: u64, len: u64) -> ChainingValue {
    if len <= GROUP_BYTES {
        return outboard[(offset / GROUP_BYTES) as usize];
    }
    let left = blake3::hazmat::left_subtree_len(len);
    merge_subtrees_non_root(
        &cv_from_outboard(outboard, offset, left),
        &cv_from_outboard(outboard, offset + left, len - left),
        Mode::Hash,
    )
}

/// Checks that `proof` holds chunk `index` of the piece with BLAKE3 `root` and length
/// `piece_bytes`. Pure; the cost is one chunk hash and one merge per tree level.
pub fn verify_chunk(root: &[u8; 32], piece_bytes: u64, index: u64, proof: &ChunkProof) -> bool {
    if index >= chunk_count(piece_bytes) || proof.siblings.len() > MAX_PROOF_SIBLINGS {
        return false;
    }
    let start = index * CHUNK_BYTES;
    let expected_len = (piece_bytes - start.min(piece_bytes)).min(CHUNK_BYTES);
    if proof.chunk.len() as u64 != expected_len {
        return false;
    }
    if piece_bytes <= CHUNK_BYTES {
        return proof.siblings.is_empty() && blake3::hash(&proof.chunk).as_bytes() == root;
    }
    let steps = path(piece_bytes, index);
    if steps.len() != proof.siblings.len() {
        return false;
    }
    let leaf = subtree_cv(start, &proof.chunk);
    fold(&steps, &proof.siblings, leaf).as_bytes() == root
}

/// The outboard of a piece: the chaining value of each 16 KiB group. Empty for a piece of one
/// group or less, which is checked and proven from its own bytes.
pub fn outboard(piece: &[u8]) -> Vec<[u8; 32]> {
    let piece_bytes = piece.len() as u64;
    if piece_bytes <= GROUP_BYTES {
        return Vec::new();
    }
    (0..group_count(piece_bytes))
        .map(|g| {
            let start = (g * GROUP_BYTES) as usize;
            let end = (start + GROUP_BYTES as usize).min(piece.len());
            subtree_cv(g * GROUP_BYTES, &piece[start..end])
        })
        .collect()
}

/// Builds a piece's outboard and root from its bytes fed in order, in parts of any size:
/// a receiver hashes each group once, as it arrives, instead of buffering the piece.
#[derive(Debug, Default)]
pub struct OutboardBuilder {
    outboard: Vec<[u8; 32]>,
    /// The bytes of the group not yet complete; the whole piece while it fits in one group.
    partial: Vec<u8>,
    piece_bytes: u64,
}

impl OutboardBuilder {
    pub fn new() -> OutboardBuilder {
        OutboardBuilder::default()
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        let group = GROUP_BYTES as usize;
        while !bytes.is_empty() {
            if self.partial.len() == group {
                // More bytes follow, so the buffered group is not the last.
                let full = std::mem::take(&mut self.partial);
                self.push_group(&full);
                self.partial = full;
                self.partial.clear();
            }
            if self.partial.is_empty() && bytes.len() > group {
                // Whole groups straight from the input, keeping the last byte back: the
                // piece's final group is hashed only once the piece's length is known.
                let whole = (bytes.len() - 1) / group * group;
                for g in bytes[..whole].chunks(group) {
                    self.push_group(g);
                }
                bytes = &bytes[whole..];
                continue;
            }
            let take = (group - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }

    fn push_group(&mut self, group: &[u8]) {
        let offset = self.outboard.len() as u64 * GROUP_BYTES;
        self.outboard.push(subtree_cv(offset, group));
        self.piece_bytes += group.len() as u64;
    }

    /// The piece's size, root and outboard (empty for a piece of one group or less).
    pub fn finish(mut self) -> (u64, [u8; 32], Vec<[u8; 32]>) {
        if self.outboard.is_empty() {
            let root = *blake3::hash(&self.partial).as_bytes();
            return (self.partial.len() as u64, root, Vec::new());
        }
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.push_group(&last);
        }
        let root = root_from_outboard(self.piece_bytes, &self.outboard).unwrap_or_default();
        (self.piece_bytes, root, self.outboard)
    }
}

/// The root an outboard commits to; a downloader checks the outboard against the deal's root
/// before trusting it to check groups.
pub fn root_from_outboard(piece_bytes: u64, outboard: &[[u8; 32]]) -> Option<[u8; 32]> {
    if outboard.len() as u64 != group_count(piece_bytes) || piece_bytes <= GROUP_BYTES {
        return None;
    }
    let left = blake3::hazmat::left_subtree_len(piece_bytes);
    let root = merge_subtrees_root(
        &cv_from_outboard(outboard, 0, left),
        &cv_from_outboard(outboard, left, piece_bytes - left),
        Mode::Hash,
    );
    Some(*root.as_bytes())
}

/// Checks one 16 KiB group of a piece (longer than one group) against its outboard entry.
pub fn verify_group(outboard: &[[u8; 32]], group_index: u64, group: &[u8]) -> bool {
    outboard
        .get(group_index as usize)
        .is_some_and(|cv| subtree_cv(group_index * GROUP_BYTES, group) == *cv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u64)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(u64::from(seed)) as u8
            })
            .collect()
    }

    #[test]
    fn the_outboard_builder_matches_hashing_the_whole_piece_for_any_parts() {
        for &len in LENGTHS {
            let data = piece(len, 5);
            for part in [1usize, 1000, 16 * 1024, 16 * 1024 + 1, 64 * 1024] {
                let mut builder = OutboardBuilder::new();
                for p in data.chunks(part) {
                    builder.update(p);
                }
                let (size, root, built) = builder.finish();
                assert_eq!(size, len as u64);
                assert_eq!(
                    &root,
                    blake3::hash(&data).as_bytes(),
                    "len {len} part {part}"
                );
                assert_eq!(built, outboard(&data), "len {len} part {part}");
            }
        }
    }

    const LENGTHS: &[usize] = &[
        0,
        1,
        1023,
        1024,
        1025,
        2048,
        3000,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        33 * 1024 + 5,
        100_000,
        262_144,
        1_000_003,
    ];

    #[test]
    fn every_chunk_of_every_shape_proves_and_tampering_fails() {
        for &len in LENGTHS {
            let data = piece(len, 7);
            let root = *blake3::hash(&data).as_bytes();
            let chunks = chunk_count(len as u64);
            let ob = outboard(&data);
            let picks: Vec<u64> = if chunks <= 40 {
                (0..chunks).collect()
            } else {
                vec![0, 1, 15, 16, 17, chunks / 2, chunks - 2, chunks - 1]
            };
            for index in picks {
                let proof = prove_chunk(&data, index).expect("in range");
                assert!(
                    verify_chunk(&root, len as u64, index, &proof),
                    "len {len} chunk {index}"
                );
                // The same proof from the outboard and the chunk's group alone.
                let g = index * CHUNK_BYTES / GROUP_BYTES;
                let start = (g * GROUP_BYTES) as usize;
                let end = (start + GROUP_BYTES as usize).min(data.len());
                let from_outboard =
                    prove_chunk_with_outboard(len as u64, &ob, &data[start..end], index)
                        .expect("outboard proof");
                assert_eq!(from_outboard, proof, "len {len} chunk {index}");
                // Wrong index, flipped byte, flipped sibling, wrong length: all refused.
                assert!(!verify_chunk(&root, len as u64, index + chunks, &proof));
                if !proof.chunk.is_empty() {
                    let mut bad = proof.clone();
                    bad.chunk[0] ^= 1;
                    assert!(!verify_chunk(&root, len as u64, index, &bad));
                }
                if let Some(first) = proof.siblings.first() {
                    let mut bad = proof.clone();
                    bad.siblings[0] = {
                        let mut s = *first;
                        s[31] ^= 1;
                        s
                    };
                    assert!(!verify_chunk(&root, len as u64, index, &bad));
                    let mut short = proof.clone();
                    short.siblings.pop();
                    assert!(!verify_chunk(&root, len as u64, index, &short));
                }
            }
            assert!(prove_chunk(&data, chunks).is_none());
        }
    }

    #[test]
    fn outboard_commits_to_the_piece_hash_and_checks_groups() {
        for &len in LENGTHS.iter().filter(|l| **l as u64 > GROUP_BYTES) {
            let data = piece(len, 3);
            let ob = outboard(&data);
            assert_eq!(ob.len() as u64, group_count(len as u64));
            assert!(outboard(&data[..GROUP_BYTES as usize]).is_empty());
            assert_eq!(
                root_from_outboard(len as u64, &ob),
                Some(*blake3::hash(&data).as_bytes()),
                "len {len}"
            );
            for (g, chunk) in data.chunks(GROUP_BYTES as usize).enumerate() {
                assert!(verify_group(&ob, g as u64, chunk));
                let mut bad = chunk.to_vec();
                bad[0] ^= 0x80;
                assert!(!verify_group(&ob, g as u64, &bad));
            }
            let mut wrong = ob.clone();
            wrong[0][0] ^= 1;
            assert_ne!(
                root_from_outboard(len as u64, &wrong),
                Some(*blake3::hash(&data).as_bytes())
            );
        }
    }
}
