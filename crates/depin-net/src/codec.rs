//! The request-response wire format: one libp2p protocol per chain, with the service protocol
//! name inside each request so that services register handlers by name at run time.
//!
//! ```text
//! request:  u8 name_len | name (ASCII) | u32 BE payload_len | payload
//! response: u8 status   | u32 BE payload_len | payload      (payload empty unless status = Ok)
//! ```
//!
//! Every length is checked against its limit before anything is read into memory, and the
//! payload buffer grows only as bytes actually arrive.

use crate::NetError;
use crate::metrics::{NetMetrics, inc};
use libp2p::StreamProtocol;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use std::io;
use std::sync::Arc;

/// Longest service protocol name, e.g. `storage/shard/1`.
pub const MAX_PROTOCOL_NAME_BYTES: usize = 64;

/// Initial capacity of a payload buffer; it grows as data arrives, so a peer that announces a
/// large payload and sends nothing costs no memory.
const INITIAL_BUFFER_BYTES: usize = 64 << 10;

/// Checks a service protocol name: 1 to 64 bytes of lowercase ASCII letters, digits and
/// `/ . _ -`, e.g. `chain/block/1`.
pub fn validate_protocol_name(name: &str) -> Result<(), NetError> {
    let invalid = |reason| {
        Err(NetError::InvalidProtocol {
            name: name.chars().take(MAX_PROTOCOL_NAME_BYTES + 8).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_PROTOCOL_NAME_BYTES {
        return invalid("longer than 64 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-".contains(&b))
    {
        return invalid("only lowercase ASCII letters, digits and / . _ - are allowed");
    }
    Ok(())
}

/// A request as it travels: which service protocol, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub protocol: String,
    pub payload: Vec<u8>,
}

/// A response as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    Ok(Vec<u8>),
    /// The responder has no handler for the protocol.
    UnknownProtocol,
    /// The responder refused: too many requests from us in flight, or its handler's queue
    /// is full.
    Busy,
    /// The handler dropped the request without answering.
    Dropped,
    /// The handler's answer was over the responder's response limit.
    TooLarge,
    /// The handler did not answer in time.
    Timeout,
}

impl Response {
    fn status(&self) -> u8 {
        match self {
            Response::Ok(_) => 0,
            Response::UnknownProtocol => 1,
            Response::Busy => 2,
            Response::Dropped => 3,
            Response::TooLarge => 4,
            Response::Timeout => 5,
        }
    }
}

/// A frame that broke a limit or the format; carried inside `io::Error` so the swarm task can
/// tell a size violation from a broken connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("{what} of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        what: &'static str,
        size_bytes: u64,
        max_bytes: usize,
    },
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

impl FrameError {
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The frame error inside an I/O error, if that is what it is.
    pub(crate) fn of(error: &io::Error) -> Option<&FrameError> {
        error.get_ref().and_then(|e| e.downcast_ref::<FrameError>())
    }
}

/// The libp2p codec; each side enforces its own limits on what it reads.
#[derive(Debug, Clone)]
pub(crate) struct RpcCodec {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// Refused inbound requests are counted here: libp2p does not report a request that
    /// failed to decode to the behaviour.
    pub metrics: Arc<NetMetrics>,
}

impl RpcCodec {
    async fn read_request_frame<T>(&self, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut name_len = [0u8; 1];
        io.read_exact(&mut name_len).await?;
        let name_len = usize::from(name_len[0]);
        if name_len == 0 || name_len > MAX_PROTOCOL_NAME_BYTES {
            return Err(FrameError::Malformed("protocol name length out of range").into_io());
        }
        let mut name = vec![0u8; name_len];
        io.read_exact(&mut name).await?;
        let protocol = String::from_utf8(name)
            .map_err(|_| FrameError::Malformed("protocol name is not UTF-8").into_io())?;
        if validate_protocol_name(&protocol).is_err() {
            return Err(FrameError::Malformed("invalid protocol name").into_io());
        }
        let payload = read_payload(io, "request", self.max_request_bytes).await?;
        Ok(Request { protocol, payload })
    }
}

async fn read_payload<T>(io: &mut T, what: &'static str, max_bytes: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max_bytes as u64 {
        return Err(FrameError::TooLarge {
            what,
            size_bytes: len,
            max_bytes,
        }
        .into_io());
    }
    // `len <= max_bytes`, so these conversions cannot truncate.
    let mut payload = Vec::with_capacity((len as usize).min(INITIAL_BUFFER_BYTES));
    (&mut *io).take(len).read_to_end(&mut payload).await?;
    if payload.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended inside a payload",
        ));
    }
    Ok(payload)
}

async fn write_payload<T>(io: &mut T, payload: &[u8]) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(payload.len()).map_err(|_| {
        FrameError::TooLarge {
            what: "payload",
            size_bytes: payload.len() as u64,
            max_bytes: u32::MAX as usize,
        }
        .into_io()
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(payload).await
}

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let result = self.read_request_frame(io).await;
        if let Err(e) = &result {
            match FrameError::of(e) {
                Some(FrameError::TooLarge { .. }) => inc(&self.metrics.requests_rejected_too_large),
                Some(FrameError::Malformed(_)) => inc(&self.metrics.requests_rejected_malformed),
                None => {}
            }
        }
        result
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut status = [0u8; 1];
        io.read_exact(&mut status).await?;
        let payload = read_payload(io, "response", self.max_response_bytes).await?;
        let response = match status[0] {
            0 => return Ok(Response::Ok(payload)),
            1 => Response::UnknownProtocol,
            2 => Response::Busy,
            3 => Response::Dropped,
            4 => Response::TooLarge,
            5 => Response::Timeout,
            _ => return Err(FrameError::Malformed("unknown response status").into_io()),
        };
        if !payload.is_empty() {
            return Err(FrameError::Malformed("error response with a payload").into_io());
        }
        Ok(response)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let name = request.protocol.as_bytes();
        let name_len = u8::try_from(name.len())
            .map_err(|_| FrameError::Malformed("protocol name too long").into_io())?;
        io.write_all(&[name_len]).await?;
        io.write_all(name).await?;
        write_payload(io, &request.payload).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[response.status()]).await?;
        let payload = match &response {
            Response::Ok(payload) => payload.as_slice(),
            _ => &[],
        };
        write_payload(io, payload).await?;
        io.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::Codec;

    const PROTOCOL: StreamProtocol = StreamProtocol::new("/depin/test/rpc/1");

    fn codec() -> RpcCodec {
        RpcCodec {
            max_request_bytes: 100,
            max_response_bytes: 200,
            metrics: Arc::default(),
        }
    }

    fn encode_request(request: Request) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec().write_request(&PROTOCOL, &mut out, request)).expect("write");
        out.into_inner()
    }

    fn encode_response(response: Response) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec().write_response(&PROTOCOL, &mut out, response)).expect("write");
        out.into_inner()
    }

    fn decode_request(bytes: Vec<u8>) -> io::Result<Request> {
        block_on(codec().read_request(&PROTOCOL, &mut Cursor::new(bytes)))
    }

    fn decode_response(bytes: Vec<u8>) -> io::Result<Response> {
        block_on(codec().read_response(&PROTOCOL, &mut Cursor::new(bytes)))
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for payload in [vec![], vec![7u8; 1], vec![9u8; 100]] {
            let request = Request {
                protocol: "chain/block/1".into(),
                payload: payload.clone(),
            };
            assert_eq!(
                decode_request(encode_request(request.clone())).expect("decode"),
                request
            );
        }
        for response in [
            Response::Ok(vec![]),
            Response::Ok(vec![1u8; 200]),
            Response::UnknownProtocol,
            Response::Busy,
            Response::Dropped,
            Response::TooLarge,
            Response::Timeout,
        ] {
            assert_eq!(
                decode_response(encode_response(response.clone())).expect("decode"),
                response
            );
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_reading_the_payload() {
        // The header claims 4 GiB and no payload follows: the limit must trip first, not an
        // allocation or an end-of-stream error.
        let mut frame = vec![1u8, b'x'];
        frame.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut counting = codec();
        let err = block_on(counting.read_request(&PROTOCOL, &mut Cursor::new(frame)))
            .expect_err("too large");
        assert_eq!(counting.metrics.get("requests_rejected_too_large"), Some(1));
        assert!(matches!(
            FrameError::of(&err),
            Some(FrameError::TooLarge { what: "request", size_bytes, max_bytes: 100 })
                if *size_bytes == u64::from(u32::MAX)
        ));
        let err = decode_request(encode_request(Request {
            protocol: "x".into(),
            payload: vec![0; 101],
        }))
        .expect_err("too large");
        assert!(matches!(
            FrameError::of(&err),
            Some(FrameError::TooLarge { .. })
        ));
        let err =
            decode_response(encode_response(Response::Ok(vec![0; 201]))).expect_err("too large");
        assert!(matches!(
            FrameError::of(&err),
            Some(FrameError::TooLarge {
                what: "response",
                ..
            })
        ));
    }

    #[test]
    fn malformed_frames_are_errors() {
        // Truncated payload.
        let mut frame = encode_request(Request {
            protocol: "a".into(),
            payload: vec![1, 2, 3],
        });
        frame.pop();
        assert_eq!(
            decode_request(frame).expect_err("truncated").kind(),
            io::ErrorKind::UnexpectedEof
        );
        // Name length zero, name with forbidden characters, unknown status, error with payload.
        for frame in [
            vec![0u8, 0, 0, 0, 0],
            vec![2u8, b'A', b' ', 0, 0, 0, 0],
            vec![0xff_u8],
        ] {
            assert!(decode_request(frame).is_err());
        }
        assert!(decode_response(vec![9, 0, 0, 0, 0]).is_err());
        assert!(decode_response(vec![1, 0, 0, 0, 1, 5]).is_err());
    }

    #[test]
    fn protocol_names() {
        for ok in ["chain/block/1", "storage.shard_get-2", "a"] {
            assert!(validate_protocol_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Upper", "sp ace", "ü", &"a".repeat(65)] {
            assert!(validate_protocol_name(bad).is_err(), "{bad:?}");
        }
    }
}
