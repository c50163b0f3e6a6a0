//! Erasure coding of a segment into `total` pieces, any `data` of which rebuild it. Behind a
//! small trait so the code can change; the implementation is systematic Reed-Solomon
//! (`reed-solomon-simd`): the first `data` pieces are the segment itself, cut in order, and the
//! others are recovery pieces. Coding runs in stripes of 64 KiB per piece so the working set
//! stays in cache.

use thiserror::Error;

/// Bytes of each piece coded together; a cache-sized stripe.
pub const STRIPE_BYTES: usize = 64 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ErasureError {
    #[error("unsupported profile: {data} data pieces of {total}")]
    Profile { data: usize, total: usize },
    #[error("need {needed} distinct pieces, got {got}")]
    NotEnoughPieces { needed: usize, got: usize },
    #[error("piece {index} is {got} bytes, expected {expected}")]
    PieceSize {
        index: usize,
        got: usize,
        expected: usize,
    },
    #[error("piece index {index} is outside 0..{total}")]
    PieceIndex { index: usize, total: usize },
    #[error("reed-solomon: {0}")]
    Codec(String),
}

/// Splits a segment into pieces and back.
pub trait ErasureCoder: Send + Sync {
    fn data_pieces(&self) -> usize;
    fn total_pieces(&self) -> usize;
    /// Bytes of every piece of a segment of `segment_bytes`.
    fn piece_bytes(&self, segment_bytes: u64) -> u64;
    /// All `total_pieces` pieces of `segment`, in index order.
    fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
        let mut pieces = Vec::new();
        self.encode_into(segment, &mut pieces)?;
        Ok(pieces)
    }
    /// Like [`ErasureCoder::encode`], into `pieces`, reusing the buffers already there: a
    /// client coding segment after segment then allocates once.
    fn encode_into(&self, segment: &[u8], pieces: &mut Vec<Vec<u8>>) -> Result<(), ErasureError>;
    /// The segment of `segment_bytes` from at least `data_pieces` distinct `(index, piece)`.
    fn decode(
        &self,
        segment_bytes: u64,
        pieces: &[(usize, Vec<u8>)],
    ) -> Result<Vec<u8>, ErasureError> {
        let mut segment = Vec::new();
        self.decode_into(segment_bytes, pieces, &mut segment)?;
        Ok(segment)
    }
    /// Like [`ErasureCoder::decode`], into `segment` (cleared first), reusing its buffer.
    fn decode_into(
        &self,
        segment_bytes: u64,
        pieces: &[(usize, Vec<u8>)],
        segment: &mut Vec<u8>,
    ) -> Result<(), ErasureError>;
}

/// Systematic Reed-Solomon over GF(2^16), SIMD-accelerated.
#[derive(Debug, Clone, Copy)]
pub struct ReedSolomon {
    data: usize,
    total: usize,
}

impl ReedSolomon {
    pub fn new(data: usize, total: usize) -> Result<ReedSolomon, ErasureError> {
        let supported = data >= 1
            && total > data
            && reed_solomon_simd::ReedSolomonEncoder::supports(data, total - data);
        if !supported {
            return Err(ErasureError::Profile { data, total });
        }
        Ok(ReedSolomon { data, total })
    }

    fn recovery(&self) -> usize {
        self.total - self.data
    }
}

fn codec(e: reed_solomon_simd::Error) -> ErasureError {
    ErasureError::Codec(e.to_string())
}

/// The stripes of a piece: (start, length), every length even and non-zero.
fn stripes(piece_bytes: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..piece_bytes)
        .step_by(STRIPE_BYTES)
        .map(move |start| (start, STRIPE_BYTES.min(piece_bytes - start)))
}

impl ErasureCoder for ReedSolomon {
    fn data_pieces(&self) -> usize {
        self.data
    }

    fn total_pieces(&self) -> usize {
        self.total
    }

    fn piece_bytes(&self, segment_bytes: u64) -> u64 {
        // The codec works on 16-bit symbols: pieces are a non-zero, even number of bytes.
        let p = segment_bytes.div_ceil(self.data as u64).max(2);
        p + p % 2
    }

    fn encode_into(&self, segment: &[u8], pieces: &mut Vec<Vec<u8>>) -> Result<(), ErasureError> {
        let piece_bytes = self.piece_bytes(segment.len() as u64) as usize;
        pieces.resize_with(self.total, Vec::new);
        for (i, piece) in pieces.iter_mut().enumerate() {
            piece.clear();
            piece.reserve(piece_bytes);
            if i < self.data {
                let start = (i * piece_bytes).min(segment.len());
                let end = ((i + 1) * piece_bytes).min(segment.len());
                piece.extend_from_slice(&segment[start..end]);
                piece.resize(piece_bytes, 0);
            }
        }
        let (originals, recovery) = pieces.split_at_mut(self.data);
        let mut encoder = reed_solomon_simd::ReedSolomonEncoder::new(
            self.data,
            self.recovery(),
            STRIPE_BYTES.min(piece_bytes),
        )
        .map_err(codec)?;
        for (start, len) in stripes(piece_bytes) {
            encoder
                .reset(self.data, self.recovery(), len)
                .map_err(codec)?;
            for piece in originals.iter() {
                encoder
                    .add_original_shard(&piece[start..start + len])
                    .map_err(codec)?;
            }
            let result = encoder.encode().map_err(codec)?;
            for (out, shard) in recovery.iter_mut().zip(result.recovery_iter()) {
                out.extend_from_slice(shard);
            }
        }
        Ok(())
    }

    fn decode_into(
        &self,
        segment_bytes: u64,
        pieces: &[(usize, Vec<u8>)],
        segment: &mut Vec<u8>,
    ) -> Result<(), ErasureError> {
        segment.clear();
        let piece_bytes = self.piece_bytes(segment_bytes) as usize;
        let mut by_index: Vec<Option<&[u8]>> = vec![None; self.total];
        for (index, piece) in pieces {
            if *index >= self.total {
                return Err(ErasureError::PieceIndex {
                    index: *index,
                    total: self.total,
                });
            }
            if piece.len() != piece_bytes {
                return Err(ErasureError::PieceSize {
                    index: *index,
                    got: piece.len(),
                    expected: piece_bytes,
                });
            }
            by_index[*index] = Some(piece);
        }
        let distinct = by_index.iter().filter(|p| p.is_some()).count();
        if distinct < self.data {
            return Err(ErasureError::NotEnoughPieces {
                needed: self.data,
                got: distinct,
            });
        }
        let all_data_present = by_index[..self.data].iter().all(Option::is_some);
        if all_data_present {
            // Systematic code: the segment is the data pieces, in order.
            segment.reserve(piece_bytes * self.data);
            for piece in by_index[..self.data].iter().flatten() {
                segment.extend_from_slice(piece);
            }
            segment.truncate(segment_bytes as usize);
            return Ok(());
        }
        let mut data: Vec<Vec<u8>> = vec![Vec::with_capacity(piece_bytes); self.data];
        {
            let mut decoder = reed_solomon_simd::ReedSolomonDecoder::new(
                self.data,
                self.recovery(),
                STRIPE_BYTES.min(piece_bytes),
            )
            .map_err(codec)?;
            for (start, len) in stripes(piece_bytes) {
                decoder
                    .reset(self.data, self.recovery(), len)
                    .map_err(codec)?;
                for (i, piece) in by_index.iter().enumerate() {
                    let Some(piece) = piece else { continue };
                    let shard = &piece[start..start + len];
                    if i < self.data {
                        decoder.add_original_shard(i, shard).map_err(codec)?;
                    } else {
                        decoder
                            .add_recovery_shard(i - self.data, shard)
                            .map_err(codec)?;
                    }
                }
                let result = decoder.decode().map_err(codec)?;
                for (i, out) in data.iter_mut().enumerate() {
                    match by_index[i] {
                        Some(piece) => out.extend_from_slice(&piece[start..start + len]),
                        None => {
                            out.extend_from_slice(result.restored_original(i).ok_or_else(|| {
                                ErasureError::Codec(format!("piece {i} not restored"))
                            })?)
                        }
                    }
                }
            }
        }
        for piece in &data {
            segment.extend_from_slice(piece);
        }
        segment.truncate(segment_bytes as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9).wrapping_add(seed) >> 7) as u8)
            .collect()
    }

    #[test]
    fn any_data_pieces_rebuild_the_segment_at_stripe_edges() {
        let rs = ReedSolomon::new(4, 8).expect("profile");
        for len in [
            0,
            1,
            7,
            8,
            4 * STRIPE_BYTES,
            4 * STRIPE_BYTES + 2,
            1_000_001,
        ] {
            let segment = bytes(len, len as u64);
            let pieces = rs.encode(&segment).expect("encode");
            assert_eq!(pieces.len(), 8);
            let piece_bytes = rs.piece_bytes(len as u64) as usize;
            assert!(pieces.iter().all(|p| p.len() == piece_bytes));
            // Systematic: the data pieces are the segment itself.
            assert_eq!(&pieces.concat()[..len], &segment[..]);
            // Every choice of 4 of 8 (70 of them) decodes.
            for mask in 0u32..256 {
                if mask.count_ones() != 4 {
                    continue;
                }
                let chosen: Vec<(usize, Vec<u8>)> = (0..8)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| (i, pieces[i].clone()))
                    .collect();
                assert_eq!(
                    rs.decode(len as u64, &chosen).expect("decode"),
                    segment,
                    "len {len} mask {mask:08b}"
                );
            }
            let three: Vec<(usize, Vec<u8>)> = (5..8).map(|i| (i, pieces[i].clone())).collect();
            assert_eq!(
                rs.decode(len as u64, &three),
                Err(ErasureError::NotEnoughPieces { needed: 4, got: 3 })
            );
        }
    }

    #[test]
    fn bad_pieces_and_profiles_are_errors() {
        assert!(ReedSolomon::new(0, 4).is_err());
        assert!(ReedSolomon::new(4, 4).is_err());
        let rs = ReedSolomon::new(2, 3).expect("profile");
        let pieces = rs.encode(b"hello world").expect("encode");
        let short = vec![(0, pieces[0][1..].to_vec()), (2, pieces[2].clone())];
        assert!(matches!(
            rs.decode(11, &short),
            Err(ErasureError::PieceSize { .. })
        ));
        let outside = vec![(0, pieces[0].clone()), (3, pieces[2].clone())];
        assert!(matches!(
            rs.decode(11, &outside),
            Err(ErasureError::PieceIndex { .. })
        ));
        let twice = vec![(0, pieces[0].clone()), (0, pieces[0].clone())];
        assert!(matches!(
            rs.decode(11, &twice),
            Err(ErasureError::NotEnoughPieces { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip_from_the_last_pieces(len in 0usize..200_000, seed in any::<u64>(), data in 1usize..6, extra in 1usize..6) {
            let rs = ReedSolomon::new(data, data + extra).expect("profile");
            let segment = bytes(len, seed);
            let pieces = rs.encode(&segment).expect("encode");
            let last: Vec<(usize, Vec<u8>)> = pieces.iter().cloned().enumerate().skip(extra).collect();
            prop_assert_eq!(rs.decode(len as u64, &last).expect("decode"), segment);
        }
    }
}
