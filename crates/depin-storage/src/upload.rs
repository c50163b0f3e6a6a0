//! The client's put pipeline. Pass 1 codes every segment on all cores to learn the piece
//! roots a deal commits to (the pieces are not kept). Once the deal has placed the pieces,
//! pass 2 codes the segments again on a thread while earlier ones upload, two segments at a
//! time; once every segment has its success count of pieces stored, the rest get as long
//! again as the upload took so far (at least the long-tail grace) and are then cancelled.
//! Coding twice costs less than spooling twice the object through the page cache and back.

use crate::client::{ClientError, PieceSource, upload_piece_with_progress};
use crate::erasure::{ErasureError, ReedSolomon};
use crate::object::{ObjectError, Seal, SegmentCoder, segment_nonce};
use depin_net::NetHandle;
use depin_protocol::storage::{PieceRef, SegmentSpec};
use depin_types::{Address, Hash};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why an upload did not complete.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("reading the object: {0}")]
    Io(#[from] std::io::Error),
    #[error("the object shrank while it was being stored")]
    Shrank,
    #[error("erasure coding: {0}")]
    Erasure(#[from] ErasureError),
    #[error("sealing a segment: {0}")]
    Object(#[from] ObjectError),
    #[error("a coding thread stopped")]
    CodingStopped,
    #[error("the deal places {placed} segments; the object has {segments}")]
    PlacementMismatch { placed: usize, segments: u64 },
    #[error("segment {segment}: only {stored} pieces stored, {needed} needed")]
    TooFewPieces {
        segment: u32,
        stored: usize,
        needed: usize,
    },
}

/// The owner's key to seal (encrypt) the object with, and the upload's salt (so coding the
/// object twice gives the same pieces).
#[derive(Clone)]
pub struct SealKey {
    pub owner_secret: [u8; 32],
    pub salt: [u8; 16],
}

/// An object to store: the file, how it is cut and coded, and whether it is sealed.
#[derive(Clone)]
pub struct UploadJob {
    pub path: PathBuf,
    pub object_bytes: u64,
    /// Plain bytes per segment (see [`crate::object::plain_segment_bytes`]).
    pub plain_segment_bytes: u64,
    pub data_pieces: u16,
    pub total_pieces: u16,
    pub seal: Option<SealKey>,
}

/// Where the chain placed one segment's pieces: `(piece index, provider)`.
#[derive(Debug, Clone)]
pub struct SegmentPlacement {
    pub segment: u32,
    pub pieces: Vec<(u16, Address)>,
}

/// What happened during pass 2, for a progress bar and the operator.
#[derive(Debug)]
pub enum UploadEvent {
    /// Bytes of piece data acknowledged by providers.
    Sent(u64),
    PieceFailed {
        piece: PieceRef,
        error: ClientError,
    },
    /// Uploads beyond every segment's success count that were cancelled.
    TailCancelled {
        pieces: usize,
    },
}

/// Pieces stored per segment, and how many slow uploads were cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    pub stored: Vec<usize>,
    pub cancelled: usize,
}

impl UploadJob {
    pub fn segments(&self) -> u64 {
        self.object_bytes
            .div_ceil(self.plain_segment_bytes.max(1))
            .max(1)
    }

    fn coder(&self) -> Result<ReedSolomon, UploadError> {
        Ok(ReedSolomon::new(
            usize::from(self.data_pieces),
            usize::from(self.total_pieces),
        )?)
    }

    fn seal_of(&self, index: u64) -> Option<Seal<'_>> {
        self.seal.as_ref().map(|key| Seal {
            owner_secret: &key.owner_secret,
            nonce: segment_nonce(&key.salt, index),
        })
    }

    /// Reads segment `index` into `buf`, reusing its allocation.
    fn read_segment(
        &self,
        file: &mut File,
        index: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), UploadError> {
        let start = index * self.plain_segment_bytes;
        let len = self
            .plain_segment_bytes
            .min(self.object_bytes.saturating_sub(start));
        file.seek(SeekFrom::Start(start))?;
        buf.clear();
        (&mut *file).take(len).read_to_end(buf)?;
        if buf.len() as u64 != len {
            return Err(UploadError::Shrank);
        }
        Ok(())
    }

    /// Pass 1: every segment's spec (sizes and piece roots), coded on all cores; `coded`
    /// hears the plain bytes of each segment done.
    pub fn piece_roots(
        &self,
        coded: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<SegmentSpec>, UploadError> {
        let segments = self.segments();
        let coder = self.coder()?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(segments as usize)
            .max(1) as u64;
        let specs = std::sync::Mutex::new(vec![None; segments as usize]);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (specs, coder) = (&specs, &coder);
                    scope.spawn(move || -> Result<(), UploadError> {
                        let mut file = File::open(&self.path)?;
                        let mut segment_coder = SegmentCoder::new(coder);
                        let mut plain = Vec::new();
                        for i in (t..segments).step_by(threads as usize) {
                            self.read_segment(&mut file, i, &mut plain)?;
                            let spec = segment_coder.code(&plain, self.seal_of(i))?.spec();
                            specs.lock().unwrap_or_else(|p| p.into_inner())[i as usize] =
                                Some(spec);
                            coded(plain.len() as u64);
                        }
                        Ok(())
                    })
                })
                .collect();
            for worker in workers {
                worker.join().map_err(|_| UploadError::CodingStopped)??;
            }
            Ok::<(), UploadError>(())
        })?;
        specs
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or(UploadError::CodingStopped)
    }
}

/// The pieces of one coded segment, shared by its uploads.
struct SharedPiece {
    pieces: Arc<Vec<Vec<u8>>>,
    index: usize,
}

impl PieceSource for SharedPiece {
    fn piece_bytes(&self) -> u64 {
        self.pieces.get(self.index).map_or(0, |p| p.len() as u64)
    }

    fn append_to(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self.pieces.get(self.index) {
            Some(piece) => piece.as_slice().append_to(offset, len, out),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
}

/// Pass 2: uploads a deal's placed pieces.
#[derive(Debug, Clone)]
pub struct Uploader {
    /// Pieces of every segment that must be stored for the deal to activate.
    pub success_threshold: u16,
    /// The least time uploads beyond the success count get before they are cancelled: a
    /// provider whose copy of the chain lags a few blocks behind is not a slow one.
    pub long_tail_grace: Duration,
    /// How long one piece keeps being retried while its provider has not seen the deal yet
    /// or cannot be reached.
    pub retry_for: Duration,
    /// Segments uploading at once (each provider holds at most one piece of each).
    pub segments_in_flight: usize,
}

impl Uploader {
    pub fn new(success_threshold: u16) -> Uploader {
        Uploader {
            success_threshold,
            long_tail_grace: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            segments_in_flight: 2,
        }
    }

    /// Codes `job` again segment by segment and uploads every placed piece of deal `deal`
    /// over `net`, cancelling the long tail; errs when a segment ends below the success count.
    pub async fn upload(
        &self,
        job: &UploadJob,
        deal: Hash,
        placement: &[SegmentPlacement],
        net: &NetHandle,
        events: Arc<dyn Fn(UploadEvent) + Send + Sync>,
    ) -> Result<UploadReport, UploadError> {
        let segments = job.segments();
        if placement.len() as u64 != segments {
            return Err(UploadError::PlacementMismatch {
                placed: placement.len(),
                segments,
            });
        }
        let (ready, mut coded) =
            tokio::sync::mpsc::channel::<Result<Arc<Vec<Vec<u8>>>, UploadError>>(1);
        let (recycle, recycled) = std::sync::mpsc::channel::<Vec<Vec<u8>>>();
        let coding_job = job.clone();
        std::thread::spawn(move || {
            let produce = || -> Result<(), UploadError> {
                let coder = coding_job.coder()?;
                let mut file = File::open(&coding_job.path)?;
                let mut segment_coder = SegmentCoder::new(&coder);
                let mut plain = Vec::new();
                for i in 0..segments {
                    if let Ok(buffers) = recycled.try_recv() {
                        segment_coder.give_back(buffers);
                    }
                    coding_job.read_segment(&mut file, i, &mut plain)?;
                    segment_coder.code(&plain, coding_job.seal_of(i))?;
                    if ready
                        .blocking_send(Ok(Arc::new(segment_coder.take_pieces())))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = produce() {
                let _ = ready.blocking_send(Err(e));
            }
        });
        let success = usize::from(self.success_threshold);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(self.segments_in_flight.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut stored = vec![0usize; placement.len()];
        let mut next_segment = 0usize;
        let started = Instant::now();
        let mut tail_deadline: Option<Instant> = None;
        let mut cancelled = 0usize;
        loop {
            let producing = next_segment < placement.len();
            tokio::select! {
                permit = in_flight.clone().acquire_owned(), if producing => {
                    let permit = Arc::new(permit.map_err(|_| UploadError::CodingStopped)?);
                    let pieces = coded.recv().await.ok_or(UploadError::CodingStopped)??;
                    let segment = &placement[next_segment];
                    for (piece, provider) in &segment.pieces {
                        let source = SharedPiece {
                            pieces: pieces.clone(),
                            index: usize::from(*piece),
                        };
                        let r = PieceRef { deal, segment: segment.segment, piece: *piece };
                        let (net, events, permit) = (net.clone(), events.clone(), permit.clone());
                        let (recycle, provider, retry_for) = (recycle.clone(), *provider, self.retry_for);
                        let position = next_segment;
                        tasks.spawn(async move {
                            let sent = {
                                let events = events.clone();
                                move |bytes: u64| events(UploadEvent::Sent(bytes))
                            };
                            let result =
                                upload_with_retry(&net, &provider, r, &source, &sent, retry_for).await;
                            // The last upload of a segment hands its buffers back for reuse.
                            if let Ok(buffers) = Arc::try_unwrap(source.pieces) {
                                let _ = recycle.send(buffers);
                            }
                            drop(permit);
                            (position, r, result)
                        });
                    }
                    next_segment += 1;
                }
                done = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(Ok((position, piece, result))) = done {
                        match result {
                            Ok(()) => stored[position] += 1,
                            Err(error) => events(UploadEvent::PieceFailed { piece, error }),
                        }
                    }
                    if tail_deadline.is_none() && stored.iter().all(|s| *s >= success) {
                        let grace = started.elapsed().max(self.long_tail_grace);
                        tail_deadline = Some(Instant::now() + grace);
                    }
                }
                () = sleep_until(tail_deadline), if !tasks.is_empty() => {
                    cancelled = tasks.len();
                    events(UploadEvent::TailCancelled { pieces: cancelled });
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
                else => break,
            }
        }
        if let Some((position, count)) = stored.iter().enumerate().find(|(_, s)| **s < success) {
            return Err(UploadError::TooFewPieces {
                segment: placement[position].segment,
                stored: *count,
                needed: success,
            });
        }
        Ok(UploadReport { stored, cancelled })
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Uploads a piece, retrying while the provider has not seen the deal yet (its copy of the
/// chain may be a block behind) or cannot be reached yet.
async fn upload_with_retry(
    net: &NetHandle,
    provider: &Address,
    piece: PieceRef,
    data: &SharedPiece,
    sent: &(dyn Fn(u64) + Send + Sync),
    retry_for: Duration,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + retry_for;
    loop {
        match upload_piece_with_progress(net, provider, piece, data, sent).await {
            Ok(()) => return Ok(()),
            Err(ClientError::Refused { code, message })
                if code != "unknown_piece" && code != "busy" =>
            {
                return Err(ClientError::Refused { code, message });
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
