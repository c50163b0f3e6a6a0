//! The client side of the piece protocol: upload a piece to the provider the chain assigned,
//! and download a piece verifying every 16 KiB group against its root as it arrives.

use crate::protocol::{
    MAX_MESSAGE_BYTES, PIECE_PROTOCOL, PieceRequest, PieceResponse, TRANSFER_BYTES, data_bytes,
    encode_put,
};
use depin_net::{NetError, NetHandle, peer_id_of};
use depin_protocol::storage::{PieceRef, merkle};
use depin_types::{Address, Hash};
use std::time::Duration;
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

/// A piece of a segment and the provider the chain says holds it.
#[derive(Debug, Clone, Copy)]
pub struct PieceHolder {
    pub index: u16,
    pub root: Hash,
    pub provider: Address,
}

/// How to fetch the pieces of one segment.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    pub piece_bytes: u64,
    /// Pieces needed to rebuild the segment (k).
    pub needed: usize,
    /// Pieces asked for beyond `needed` at once; the slowest are cancelled.
    pub extra: usize,
    /// With nothing arriving for this long, one more provider is asked (then twice as long).
    pub hedge_after: Duration,
    /// How long a provider that cannot be reached is retried (it may not be discovered yet).
    pub retry_for: Duration,
}

/// What happened during a fetch, for progress and diagnostics.
#[derive(Debug)]
pub enum FetchEvent<'a> {
    Piece { bytes: u64 },
    Failed { index: u16, error: &'a ClientError },
}

#[derive(Debug, Error)]
#[error("only {got} of the {needed} pieces needed could be fetched")]
pub struct FetchError {
    pub got: usize,
    pub needed: usize,
}

/// Fetches `plan.needed` verified pieces of a segment from its holders: data pieces first
/// (with all of them decoding is a copy), `needed + extra` asked at once and the first
/// `needed` kept; another holder is asked when one fails or as a hedge when nothing has
/// arrived for a while, so dead, slow or lying providers (up to n - k of them) cost time,
/// not the download.
pub async fn fetch_pieces(
    net: &NetHandle,
    mut holders: Vec<PieceHolder>,
    plan: &FetchPlan,
    report: &(dyn Fn(FetchEvent<'_>) + Send + Sync),
) -> Result<Vec<(usize, Vec<u8>)>, FetchError> {
    holders.sort_by_key(|h| std::cmp::Reverse(h.index));
    let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let launch = |tasks: &mut tokio::task::JoinSet<_>, holders: &mut Vec<PieceHolder>| {
        if let Some(holder) = holders.pop() {
            let net = net.clone();
            let (size, retry_for) = (plan.piece_bytes, plan.retry_for);
            tasks.spawn(async move {
                let result = download_with_retry(&net, &holder, size, retry_for).await;
                (holder.index, result)
            });
        }
    };
    for _ in 0..plan.needed + plan.extra {
        launch(&mut tasks, &mut holders);
    }
    let mut hedge = plan.hedge_after;
    while pieces.len() < plan.needed {
        let done = match tokio::time::timeout(hedge, tasks.join_next()).await {
            Ok(done) => done,
            Err(_) => {
                launch(&mut tasks, &mut holders);
                hedge = hedge.saturating_mul(2);
                continue;
            }
        };
        match done {
            None => break,
            Some(Ok((index, Ok(bytes)))) => {
                report(FetchEvent::Piece {
                    bytes: bytes.len() as u64,
                });
                pieces.push((usize::from(index), bytes));
            }
            Some(Ok((index, Err(error)))) => {
                report(FetchEvent::Failed {
                    index,
                    error: &error,
                });
                launch(&mut tasks, &mut holders);
            }
            Some(Err(_)) => launch(&mut tasks, &mut holders),
        }
    }
    tasks.abort_all();
    if pieces.len() < plan.needed {
        return Err(FetchError {
            got: pieces.len(),
            needed: plan.needed,
        });
    }
    Ok(pieces)
}

/// Downloads a piece, retrying while the provider cannot be reached (it may not be
/// discovered yet) but not after it refused or sent bad bytes.
async fn download_with_retry(
    net: &NetHandle,
    holder: &PieceHolder,
    piece_bytes: u64,
    retry_for: Duration,
) -> Result<Vec<u8>, ClientError> {
    let deadline = tokio::time::Instant::now() + retry_for;
    loop {
        match download_piece(net, &holder.provider, holder.root, piece_bytes).await {
            Err(ClientError::Net(e)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "retrying a piece download");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}
