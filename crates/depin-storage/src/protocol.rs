//! The storage wire protocol between clients and providers over depin-net request-response:
//! chunked piece uploads, outboard and range reads. Messages are borsh, bounded on decode.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_protocol::storage::PieceRef;
use depin_types::Hash;

/// Request-response protocol name (depin-net adds the chain id).
pub const PIECE_PROTOCOL: &str = "storage/piece/1";

/// Piece bytes per upload or read message: few round trips, bounded provider memory.
pub const TRANSFER_BYTES: usize = 4 << 20;

/// Largest request or response of the protocol: one transfer plus framing.
pub const MAX_MESSAGE_BYTES: usize = TRANSFER_BYTES + 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum PieceRequest {
    /// Bytes `offset..offset + bytes.len()` of a piece assigned to the provider on chain; sent
    /// in order. The last part completes the piece, which is stored once it hashes to the
    /// root on chain.
    Put {
        piece: PieceRef,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The piece's outboard (one BLAKE3 chaining value per 16 KiB group).
    Outboard { root: Hash },
    /// `len` bytes from `offset` of a stored piece.
    Read { root: Hash, offset: u64, len: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum PieceResponse {
    /// Part of an upload received; `received_bytes` so far.
    Accepted {
        received_bytes: u64,
    },
    /// The whole piece is durable on the provider: the upload's acknowledgement.
    Stored,
    Outboard {
        piece_bytes: u64,
        outboard: Vec<[u8; 32]>,
    },
    Data {
        bytes: Vec<u8>,
    },
    Refused {
        code: String,
        message: String,
    },
}

impl PieceResponse {
    pub fn refused(code: &str, message: impl Into<String>) -> PieceResponse {
        PieceResponse::Refused {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Appends exactly `len` bytes to a message being built.
pub type Fill<'a> = &'a mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<()>;

/// The encoding of `PieceRequest::Put` (borsh, as derived), with the piece bytes appended by
/// `fill` straight into the message: an upload copies each byte once on its way out.
pub fn encode_put(
    piece: PieceRef,
    offset: u64,
    len: usize,
    fill: Fill<'_>,
) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8]; // the variant index of `Put`
    head.extend_from_slice(&depin_types::encode(&piece));
    head.extend_from_slice(&offset.to_le_bytes());
    encode_with_bytes(&head, len, fill)
}

/// The encoding of `PieceResponse::Data` with `len` bytes appended by `fill`.
pub fn encode_data(len: usize, fill: Fill<'_>) -> std::io::Result<Vec<u8>> {
    encode_with_bytes(&[3u8], len, fill) // the variant index of `Data`
}

fn encode_with_bytes(head: &[u8], len: usize, fill: Fill<'_>) -> std::io::Result<Vec<u8>> {
    let prefix = u32::try_from(len)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "over 4 GiB"))?;
    let mut message = Vec::with_capacity(head.len() + 4 + len);
    message.extend_from_slice(head);
    message.extend_from_slice(&prefix.to_le_bytes());
    let start = message.len();
    fill(&mut message)?;
    if message.len() != start + len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} bytes for a part of {len}", message.len() - start),
        ));
    }
    Ok(message)
}

/// The bytes of an encoded `PieceResponse::Data`, borrowed from the message; `None` for any
/// other answer (decode it as a [`PieceResponse`]).
pub fn data_bytes(message: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = message.split_first()?;
    if tag != 3 || rest.len() < 4 {
        return None;
    }
    let (len, bytes) = rest.split_at(4);
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    (bytes.len() == len).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_messages_match_the_derived_encoding() {
        let piece = PieceRef {
            deal: Hash([9u8; 32]),
            segment: 3,
            piece: 7,
        };
        let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let put = encode_put(piece, 4096, bytes.len(), &mut |b| {
            b.extend_from_slice(&bytes);
            Ok(())
        })
        .expect("encode");
        assert_eq!(
            put,
            depin_types::encode(&PieceRequest::Put {
                piece,
                offset: 4096,
                bytes: bytes.clone()
            })
        );
        let data = encode_data(bytes.len(), &mut |b| {
            b.extend_from_slice(&bytes);
            Ok(())
        })
        .expect("encode");
        assert_eq!(
            data,
            depin_types::encode(&PieceResponse::Data {
                bytes: bytes.clone()
            })
        );
        assert_eq!(data_bytes(&data), Some(&bytes[..]));
        assert_eq!(data_bytes(&data[..data.len() - 1]), None);
        assert_eq!(
            data_bytes(&depin_types::encode(&PieceResponse::Stored)),
            None
        );
        let short = encode_data(10, &mut |b| {
            b.extend_from_slice(&[1, 2, 3]);
            Ok(())
        });
        assert!(short.is_err());
    }
}
