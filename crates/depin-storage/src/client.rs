//! The client side of the piece protocol: upload a piece to the provider the chain assigned,
//! and download a piece verifying every 16 KiB group against its root as it arrives.

use crate::protocol::{
    MAX_MESSAGE_BYTES, PIECE_PROTOCOL, PieceRequest, PieceResponse, TRANSFER_BYTES, data_bytes,
    encode_put,
};
use depin_net::{NetError, NetHandle, peer_id_of};
use depin_protocol::storage::{PieceRef, merkle};
use depin_types::{Address, Hash};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error("provider refused ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("provider sent an unexpected answer")]
    Unexpected,
    #[error("provider sent bytes that do not match the piece root (group {group})")]
    Corrupt { group: u64 },
    #[error("bad answer: {0}")]
    Malformed(String),
    #[error("cannot read the piece to send: {0}")]
    Source(String),
}

async fn ask(
    net: &NetHandle,
    provider: &Address,
    request: &PieceRequest,
) -> Result<PieceResponse, ClientError> {
    let peer = peer_id_of(provider)?;
    let answer = net
        .request(peer, PIECE_PROTOCOL, depin_types::encode(request))
        .await?;
    let response: PieceResponse = depin_types::decode_bounded(&answer, MAX_MESSAGE_BYTES)
        .map_err(|e| ClientError::Malformed(e.to_string()))?;
    match response {
        PieceResponse::Refused { code, message } => Err(ClientError::Refused { code, message }),
        other => Ok(other),
    }
}

/// Where the bytes of a piece being uploaded come from.
pub trait PieceSource: Send + Sync {
    fn piece_bytes(&self) -> u64;
    /// Appends the `len` bytes of the piece from `offset` to `out`.
    fn append_to(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> std::io::Result<()>;
}

impl PieceSource for [u8] {
    fn piece_bytes(&self) -> u64 {
        self.len() as u64
    }

    fn append_to(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let part = start
            .checked_add(len)
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        out.extend_from_slice(part);
        Ok(())
    }
}

impl PieceSource for Vec<u8> {
    fn piece_bytes(&self) -> u64 {
        self.len() as u64
    }

    fn append_to(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.as_slice().append_to(offset, len, out)
    }
}

/// Uploads a piece to `provider`; returns once the provider has it durably.
pub async fn upload_piece<S: PieceSource + ?Sized>(
    net: &NetHandle,
    provider: &Address,
    piece: PieceRef,
    data: &S,
) -> Result<(), ClientError> {
    upload_piece_with_progress(net, provider, piece, data, &|_| {}).await
}

/// [`upload_piece`], calling `sent` with the bytes of each part the provider accepted.
pub async fn upload_piece_with_progress<S: PieceSource + ?Sized>(
    net: &NetHandle,
    provider: &Address,
    piece: PieceRef,
    data: &S,
    sent: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), ClientError> {
    let peer = peer_id_of(provider)?;
    let size = data.piece_bytes();
    let mut offset = 0u64;
    loop {
        let end = (offset + TRANSFER_BYTES as u64).min(size);
        let len = (end - offset) as usize;
        let request = encode_put(piece, offset, len, &mut |out| {
            data.append_to(offset, len, out)
        })
        .map_err(|e| ClientError::Source(e.to_string()))?;
        let answer = net.request(peer, PIECE_PROTOCOL, request).await?;
        let response: PieceResponse = depin_types::decode_bounded(&answer, MAX_MESSAGE_BYTES)
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        match response {
            PieceResponse::Stored => {
                sent(end - offset);
                return Ok(());
            }
            PieceResponse::Accepted { received_bytes } if received_bytes == end => {
                sent(end - offset);
                offset = end;
            }
            PieceResponse::Refused { code, message } => {
                return Err(ClientError::Refused { code, message });
            }
            _ => return Err(ClientError::Unexpected),
        }
        if offset >= size {
            // The provider expects more bytes than the piece has: the sizes disagree.
            return Err(ClientError::Unexpected);
        }
    }
}

/// Downloads the piece with `root` and `piece_bytes` from `provider`. Pieces larger than one
/// group are checked group by group against the outboard, itself checked against the root;
/// smaller ones against the root directly.
pub async fn download_piece(
    net: &NetHandle,
    provider: &Address,
    root: Hash,
    piece_bytes: u64,
) -> Result<Vec<u8>, ClientError> {
    let outboard = if piece_bytes > merkle::GROUP_BYTES {
        let PieceResponse::Outboard {
            piece_bytes: size,
            outboard,
        } = ask(net, provider, &PieceRequest::Outboard { root }).await?
        else {
            return Err(ClientError::Unexpected);
        };
        if size != piece_bytes
            || merkle::root_from_outboard(piece_bytes, &outboard) != Some(*root.as_bytes())
        {
            return Err(ClientError::Corrupt { group: 0 });
        }
        Some(outboard)
    } else {
        None
    };
    // Whole groups per read, so each arrives complete.
    let per_read = (TRANSFER_BYTES as u64 / merkle::GROUP_BYTES) * merkle::GROUP_BYTES;
    let mut data = Vec::with_capacity(piece_bytes as usize);
    while (data.len() as u64) < piece_bytes {
        let offset = data.len() as u64;
        let len = per_read.min(piece_bytes - offset);
        let peer = peer_id_of(provider)?;
        let request = PieceRequest::Read {
            root,
            offset,
            len: len as u32,
        };
        let answer = net
            .request(peer, PIECE_PROTOCOL, depin_types::encode(&request))
            .await?;
        let Some(bytes) = data_bytes(&answer) else {
            return match depin_types::decode_bounded(&answer, MAX_MESSAGE_BYTES) {
                Ok(PieceResponse::Refused { code, message }) => {
                    Err(ClientError::Refused { code, message })
                }
                Ok(_) => Err(ClientError::Unexpected),
                Err(e) => Err(ClientError::Malformed(e.to_string())),
            };
        };
        if bytes.len() as u64 != len {
            return Err(ClientError::Malformed(format!(
                "{} bytes for a read of {len}",
                bytes.len()
            )));
        }
        if let Some(outboard) = &outboard {
            for (i, group) in bytes.chunks(merkle::GROUP_BYTES as usize).enumerate() {
                let index = offset / merkle::GROUP_BYTES + i as u64;
                if !merkle::verify_group(outboard, index, group) {
                    return Err(ClientError::Corrupt { group: index });
                }
            }
        }
        data.extend_from_slice(bytes);
    }
    if outboard.is_none() && blake3::hash(&data).as_bytes() != root.as_bytes() {
        return Err(ClientError::Corrupt { group: 0 });
    }
    Ok(data)
}
