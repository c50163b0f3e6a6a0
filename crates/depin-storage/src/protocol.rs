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
