//! The orchestrator: takes segments with their tickets over the video protocol, transcodes
//! them with ffmpeg to the stream's ladder, commits to the renditions with its key, and
//! redeems the tickets that win. It works only for a broadcaster whose deposit and reserve
//! can pay a winner, and only for tickets that pay its price in expectation, commit to its
//! current random number, rise in nonce and live long enough to be redeemed.

use super::wire::*;
use crate::Node;
use crate::config::VideoFault;
use depin_protocol::video::{
    Broadcaster, RenditionCommit, SegmentCommitment, VideoAd, VideoParams, VideoTx, keys,
    ticket_message, ticket_wins, win_prob_for,
};
use depin_types::{Address, Hash};
use depin_video::{Encoder, EncoderSettings, Ffmpeg, Ladder, Rung};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Face value of the tickets an orchestrator asks for (capped by the genesis maximum): large
/// enough that one redemption pays for many segments.
const FACE_VALUE_DC: u64 = 1_000;

/// A ticket must stay redeemable at least this many blocks after it arrives.
const MIN_TICKET_LIFE_BLOCKS: u64 = 5;

/// Results kept for broadcasters to fetch (oldest dropped first).
const RESULTS_KEPT: usize = 64;

/// The longest stream settings an orchestrator reads.
const MAX_SETTING_BYTES: usize = 64;

enum Job {
    Running,
    Done(Arc<Transcoded>),
    Failed { code: String, reason: String },
}

struct State {
    rand: Hash,
    rand_hash: Hash,
    /// Highest nonce per sender against the current random hash.
    nonces: HashMap<Address, u32>,
    jobs: HashMap<(Hash, u64), Job>,
    order: VecDeque<(Hash, u64)>,
    running: u32,
    segments_seen: u64,
    /// The renditions made, by segment (for the `other_segment` fault only).
    #[allow(clippy::type_complexity)]
    previous: HashMap<u64, (Vec<RenditionCommit>, Vec<Vec<u8>>)>,
}

pub(crate) struct Orchestrator {
    node: Arc<Node>,
    ffmpeg: Ffmpeg,
    dir: PathBuf,
    build: String,
    encoders: Vec<Encoder>,
    threads: u32,
    state: Mutex<State>,
}

fn fresh_rand() -> Hash {
    let mut bytes = [0u8; 32];
    // Without OS randomness a time-derived secret is still unknown to broadcasters.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = *Hash::of(&crate::now_ms().to_le_bytes()).as_bytes();
    }
    Hash::tagged("depin video recipient rand", &[&bytes])
}

fn refuse(code: &str, reason: impl Into<String>) -> (String, String) {
    (code.to_string(), reason.into())
}

impl Orchestrator {
    pub(crate) fn new(node: Arc<Node>, ffmpeg: Ffmpeg) -> Result<Orchestrator, String> {
        let build = ffmpeg.version().map_err(|e| e.to_string())?;
        let encoders = ffmpeg.working_encoders();
        if !encoders.contains(&Encoder::Libx264) {
            return Err(format!(
                "{} cannot encode with libx264",
                ffmpeg.ffmpeg.display()
            ));
        }
        let dir = node.config.data_dir.join("video");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rand = fresh_rand();
        Ok(Orchestrator {
            threads: node.config.video_threads.max(1),
            node,
            ffmpeg,
            dir,
            build,
            encoders,
            state: Mutex::new(State {
                rand,
                rand_hash: Hash::of(rand.as_bytes()),
                nonces: HashMap::new(),
                jobs: HashMap::new(),
                order: VecDeque::new(),
                running: 0,
                segments_seen: 0,
                previous: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn encoder_names(&self) -> Vec<String> {
        self.encoders
            .iter()
            .map(|e| e.ffmpeg_name().to_string())
            .collect()
    }

    /// Price and sessions from this provider's registered video offer.
    fn terms(&self) -> Option<(u64, u32)> {
        let me = self.node.key.address();
        let provider = self.node.chain().provider(&me).ok().flatten()?;
        let offer = provider
            .services
            .iter()
            .find(|o| o.service == depin_protocol::video::SERVICE)?;
        Some((
            offer.price_dc_per_unit,
            u32::try_from(offer.capacity).unwrap_or(u32::MAX),
        ))
    }

    fn params(&self) -> Option<VideoParams> {
        self.node
            .chain()
            .protocol()
            .service_params::<VideoParams>()
            .cloned()
    }

    fn face_value(&self) -> u64 {
        self.params()
            .map_or(FACE_VALUE_DC, |p| FACE_VALUE_DC.min(p.max_face_value_dc))
    }

    pub(crate) fn offer(&self) -> Option<Offer> {
        let (price, sessions) = self.terms()?;
        let state = self.lock();
        Some(Offer {
            orchestrator: self.node.key.address(),
            price_dc_per_gigapixel: price,
            face_value_dc: self.face_value(),
            recipient_rand_hash: state.rand_hash,
            last_nonce: None,
            encoders: self.encoder_names(),
            build: self.build.clone(),
            threads: self.threads,
            free_sessions: sessions.saturating_sub(state.running),
        })
    }

    fn offer_for(&self, sender: &Address) -> Option<Offer> {
        let mut offer = self.offer()?;
        offer.last_nonce = self.lock().nonces.get(sender).copied();
        Some(offer)
    }

    /// Advertises the encoders and build once this node is registered for video, and again
    /// when they change.
    pub(crate) async fn advertise(&self) {
        if self.terms().is_none() {
            return;
        }
        let me = self.node.key.address();
        let current: Option<VideoAd> = self
            .node
            .chain()
            .service_record(depin_protocol::video::SERVICE, &keys::ad(&me))
            .ok()
            .flatten();
        let encoders = self.encoder_names();
        if current.is_some_and(|ad| ad.build == self.build && ad.encoders == encoders) {
            return;
        }
        let tx = VideoTx::Advertise {
            encoders,
            build: self.build.clone(),
        };
        if crate::own_tx::submit_and_wait(
            &self.node,
            depin_protocol::video::SERVICE,
            depin_types::encode(&tx),
        )
        .await
        {
            tracing::info!(build = %self.build, "video encoders advertised");
        }
    }

    pub(crate) async fn serve(self: Arc<Self>, net: depin_net::NetHandle) {
        let mut requests = match net.serve(VIDEO_PROTOCOL).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve the video protocol");
                return;
            }
        };
        while let Some(mut request) = requests.recv().await {
            let me = self.clone();
            tokio::spawn(async move {
                let bytes = std::mem::take(&mut request.bytes);
                let answer = tokio::task::spawn_blocking(move || me.handle(&bytes))
                    .await
                    .unwrap_or_else(|e| VideoResponse::Refused {
                        code: "internal".into(),
                        reason: e.to_string(),
                        offer: None,
                    });
                request.respond(depin_types::encode(&answer));
            });
        }
    }

    fn handle(self: &Arc<Self>, bytes: &[u8]) -> VideoResponse {
        let request: VideoRequest = match depin_types::decode_bounded(bytes, MAX_REQUEST_BYTES) {
            Ok(r) => r,
            Err(e) => {
                return VideoResponse::Refused {
                    code: "malformed_request".into(),
                    reason: e.to_string(),
                    offer: None,
                };
            }
        };
        match request {
            VideoRequest::Offer { broadcaster } => match self.offer_for(&broadcaster) {
                Some(offer) => VideoResponse::Offer(offer),
                None => VideoResponse::Refused {
                    code: "not_an_orchestrator".into(),
                    reason: "this node is not registered for video".into(),
                    offer: None,
                },
            },
            VideoRequest::Result { stream, seq } => match self.lock().jobs.get(&(stream, seq)) {
                None => VideoResponse::Refused {
                    code: "unknown_segment".into(),
                    reason: format!("no segment {seq} of stream {stream} was handed here"),
                    offer: None,
                },
                Some(Job::Running) => VideoResponse::Pending,
                Some(Job::Done(done)) => VideoResponse::Transcoded(Box::new((**done).clone())),
                Some(Job::Failed { code, reason }) => VideoResponse::Refused {
                    code: code.clone(),
                    reason: reason.clone(),
                    offer: None,
                },
            },
            VideoRequest::Transcode(job) => {
                let sender = job.ticket.sender;
                match self.accept(*job) {
                    Ok(()) => match self.offer_for(&sender) {
                        Some(offer) => VideoResponse::Accepted(offer),
                        None => VideoResponse::Pending,
                    },
                    Err((code, reason)) => VideoResponse::Refused {
                        code,
                        reason,
                        offer: self.offer_for(&sender),
                    },
                }
            }
        }
    }

    /// Checks a segment and its ticket, then starts transcoding it on its own thread.
    fn accept(self: &Arc<Self>, job: TranscodeRequest) -> Result<(), (String, String)> {
        let me = self.node.key.address();
        let Some((price, sessions)) = self.terms() else {
            return Err(refuse(
                "not_an_orchestrator",
                "this node is not registered for video",
            ));
        };
        let params = self
            .params()
            .ok_or_else(|| refuse("internal", "no video parameters in genesis"))?;
        if job.source.len() > MAX_SEGMENT_BYTES {
            return Err(refuse(
                "segment_too_large",
                format!(
                    "a segment of {} bytes is over the {MAX_SEGMENT_BYTES}-byte limit",
                    job.source.len()
                ),
            ));
        }
        let settings = self.settings(&job.settings)?;
        let ladder: Ladder = job
            .settings
            .ladder
            .parse()
            .map_err(|e: String| refuse("bad_ladder", e))?;
        if ladder.rungs().len() > MAX_RUNGS {
            return Err(refuse("bad_ladder", format!("at most {MAX_RUNGS} rungs")));
        }
        let t = job.ticket;
        if t.recipient != me {
            return Err(refuse(
                "not_recipient",
                format!("the ticket pays {}, not this orchestrator", t.recipient),
            ));
        }
        if t.face_value_dc != self.face_value() {
            return Err(refuse(
                "wrong_face_value",
                format!("tickets here have a face value of {} DC", self.face_value()),
            ));
        }
        let head = self.node.chain().head().height;
        if t.expiry_height < head.saturating_add(MIN_TICKET_LIFE_BLOCKS)
            || t.expiry_height > head.saturating_add(params.max_ticket_validity_blocks)
        {
            return Err(refuse(
                "bad_expiry",
                format!(
                    "a ticket must be redeemable from height {} to at least {}, and expire by {}",
                    head,
                    head.saturating_add(MIN_TICKET_LIFE_BLOCKS),
                    head.saturating_add(params.max_ticket_validity_blocks)
                ),
            ));
        }
        let chain_id = self.node.chain().protocol().genesis().chain_id.clone();
        if depin_types::verify(
            &t.sender,
            &ticket_message(&chain_id, &t),
            &job.ticket_signature,
        )
        .is_err()
        {
            return Err(refuse(
                "bad_ticket_signature",
                "the ticket is not signed by its sender",
            ));
        }
        self.check_broadcaster(&t.sender, t.face_value_dc)?;
        // The source's decoded frames decide the pixels the ticket must pay for.
        let work = self.dir.join(format!("{}-{}", job.stream, job.seq));
        std::fs::create_dir_all(&work).map_err(|e| refuse("internal", e.to_string()))?;
        let source_path = work.join("source.ts");
        let prepared = std::fs::write(&source_path, &job.source)
            .map_err(|e| refuse("internal", e.to_string()))
            .and_then(|()| {
                self.ffmpeg
                    .probe_packets(&source_path)
                    .map_err(|e| refuse(e.code(), e.to_string()))
            });
        let facts = match prepared {
            Ok(facts) => facts,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        let pixels = facts.frames.saturating_mul(ladder.pixels_per_frame());
        let needed = win_prob_for(pixels, price, t.face_value_dc).unwrap_or(u64::MAX);
        if t.win_prob < needed {
            let _ = std::fs::remove_dir_all(&work);
            return Err(refuse(
                "ticket_underpays",
                format!(
                    "{pixels} output pixels at {price} DC per gigapixel need a win probability of {needed}, the ticket has {}",
                    t.win_prob
                ),
            ));
        }
        let exit_now = {
            let mut state = self.lock();
            if t.recipient_rand_hash != state.rand_hash {
                drop(state);
                let _ = std::fs::remove_dir_all(&work);
                return Err(refuse(
                    "stale_rand",
                    "the ticket commits to a random number this orchestrator no longer uses",
                ));
            }
            if state
                .nonces
                .get(&t.sender)
                .is_some_and(|last| t.sender_nonce <= *last)
            {
                drop(state);
                let _ = std::fs::remove_dir_all(&work);
                return Err(refuse(
                    "replayed_ticket",
                    "the ticket's nonce is not above the last one seen",
                ));
            }
            if state.running >= sessions {
                drop(state);
                let _ = std::fs::remove_dir_all(&work);
                return Err(refuse(
                    "busy",
                    format!("all {sessions} sessions are transcoding"),
                ));
            }
            let key = (job.stream, job.seq);
            if matches!(state.jobs.get(&key), Some(Job::Running)) {
                drop(state);
                let _ = std::fs::remove_dir_all(&work);
                return Err(refuse(
                    "already_running",
                    "that segment is being transcoded",
                ));
            }
            state.nonces.insert(t.sender, t.sender_nonce);
            let rand = state.rand;
            if ticket_wins(&job.ticket_signature, &rand, t.win_prob) {
                // A revealed number must not be bet on again: the sender would know it.
                let next = fresh_rand();
                state.rand = next;
                state.rand_hash = Hash::of(next.as_bytes());
                state.nonces.clear();
                let node = self.node.clone();
                let redeem = VideoTx::RedeemTicket {
                    ticket: t,
                    signature: job.ticket_signature,
                    recipient_rand: rand,
                };
                tokio::runtime::Handle::current().spawn(async move {
                    if crate::own_tx::submit_and_wait(
                        &node,
                        depin_protocol::video::SERVICE,
                        depin_types::encode(&redeem),
                    )
                    .await
                    {
                        tracing::info!(face_value_dc = t.face_value_dc, "winning ticket redeemed");
                    }
                });
            }
            state.running += 1;
            state.segments_seen += 1;
            if state.jobs.insert(key, Job::Running).is_none() {
                state.order.push_back(key);
            }
            while state.order.len() > RESULTS_KEPT {
                if let Some(old) = state.order.pop_front() {
                    state.jobs.remove(&old);
                }
            }
            self.node.config.video_fault == Some(VideoFault::ExitMidStream)
                && state.segments_seen >= 3
        };
        if exit_now {
            tracing::warn!("video fault: exiting mid-stream");
            std::process::exit(3);
        }
        let me = self.clone();
        let source_hash = Hash::of(&job.source);
        let (stream, seq, broadcaster) = (job.stream, job.seq, t.sender);
        let source_frames = facts.frames;
        std::thread::spawn(move || {
            let outcome = me.transcode(&work, &ladder, &settings, source_frames);
            let _ = std::fs::remove_dir_all(&work);
            let mut state = me.lock();
            state.running = state.running.saturating_sub(1);
            let job = match outcome {
                Ok((renditions, bytes)) => {
                    let renditions = match me.node.config.video_fault {
                        // The segment before's output, by sequence number (waited for when
                        // both are in flight), so the cheat shows on segment 1.
                        Some(VideoFault::OtherSegment) if seq > 0 => {
                            state.previous.insert(seq, (renditions, bytes));
                            let deadline =
                                std::time::Instant::now() + std::time::Duration::from_secs(30);
                            loop {
                                if let Some(before) = state.previous.get(&(seq - 1)) {
                                    break before.clone();
                                }
                                if std::time::Instant::now() > deadline {
                                    break state.previous.get(&seq).cloned().unwrap_or_default();
                                }
                                drop(state);
                                std::thread::sleep(std::time::Duration::from_millis(20));
                                state = me.lock();
                            }
                        }
                        Some(VideoFault::OtherSegment) => {
                            state
                                .previous
                                .insert(seq, (renditions.clone(), bytes.clone()));
                            (renditions, bytes)
                        }
                        _ => (renditions, bytes),
                    };
                    let commitment = SegmentCommitment {
                        orchestrator: me.node.key.address(),
                        broadcaster,
                        stream,
                        seq,
                        source_hash,
                        renditions: renditions.0,
                    };
                    let chain_id = me.node.chain().protocol().genesis().chain_id.clone();
                    let signature = me.node.key.sign(&depin_protocol::video::commitment_message(
                        &chain_id,
                        &commitment,
                    ));
                    drop(state);
                    let offer = me.offer_for(&broadcaster);
                    state = me.lock();
                    match offer {
                        Some(offer) => Job::Done(Arc::new(Transcoded {
                            commitment,
                            signature,
                            renditions: renditions.1,
                            offer,
                        })),
                        None => Job::Failed {
                            code: "not_an_orchestrator".into(),
                            reason: "this node is no longer registered for video".into(),
                        },
                    }
                }
                Err((code, reason)) => Job::Failed { code, reason },
            };
            state.jobs.insert((stream, seq), job);
        });
        Ok(())
    }

    /// A broadcaster whose deposit and reserve can each pay a winner, that is not barred and
    /// not unlocking (its deposit could be gone before our winners are redeemed).
    fn check_broadcaster(
        &self,
        sender: &Address,
        face_value_dc: u64,
    ) -> Result<(), (String, String)> {
        let b: Broadcaster = self
            .node
            .chain()
            .service_record(depin_protocol::video::SERVICE, &keys::broadcaster(sender))
            .ok()
            .flatten()
            .unwrap_or_default();
        let face = u128::from(face_value_dc);
        if b.barred {
            return Err(refuse(
                "broadcaster_barred",
                format!("{sender} left a winning ticket unpaid and has not topped up"),
            ));
        }
        if b.withdraw_from.is_some() {
            return Err(refuse(
                "broadcaster_unlocking",
                format!("{sender} is unlocking its deposit"),
            ));
        }
        if b.deposit_dc < face || b.reserve_dc < face {
            return Err(refuse(
                "broadcaster_underfunded",
                format!(
                    "{sender} has a deposit of {} DC and a reserve of {} DC; each must cover a {face} DC ticket",
                    b.deposit_dc, b.reserve_dc
                ),
            ));
        }
        Ok(())
    }

    fn settings(&self, s: &StreamSettings) -> Result<EncoderSettings, (String, String)> {
        if [&s.ladder, &s.encoder, &s.preset]
            .iter()
            .any(|v| v.len() > MAX_SETTING_BYTES)
        {
            return Err(refuse("bad_settings", "a setting is too long"));
        }
        let encoder: Encoder = s
            .encoder
            .parse()
            .map_err(|e: String| refuse("bad_settings", e))?;
        if !self.encoders.contains(&encoder) {
            return Err(refuse(
                "encoder_unavailable",
                format!("this orchestrator has no {}", encoder.ffmpeg_name()),
            ));
        }
        const PRESETS: [&str; 6] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
        ];
        if !PRESETS.contains(&s.preset.as_str()) {
            return Err(refuse(
                "bad_settings",
                format!("the preset is one of {}", PRESETS.join(", ")),
            ));
        }
        if s.threads != self.threads {
            return Err(refuse(
                "wrong_threads",
                format!(
                    "this orchestrator encodes with {} threads: renditions of another thread count are not byte-identical",
                    self.threads
                ),
            ));
        }
        if !(1..=600).contains(&s.gop_frames) {
            return Err(refuse("bad_settings", "the GOP is 1 to 600 frames"));
        }
        Ok(EncoderSettings {
            encoder,
            preset: s.preset.clone(),
            threads: s.threads,
            gop_frames: s.gop_frames,
        })
    }

    /// Transcodes the source in `work` and commits to each rendition's hash, size and decoded
    /// pixels; a fault test's orchestrator bends the result here.
    #[allow(clippy::type_complexity)]
    fn transcode(
        &self,
        work: &std::path::Path,
        ladder: &Ladder,
        settings: &EncoderSettings,
        source_frames: u64,
    ) -> Result<(Vec<RenditionCommit>, Vec<Vec<u8>>), (String, String)> {
        let fault = self.node.config.video_fault;
        let asked = match fault {
            Some(VideoFault::WrongResolution) => Ladder(
                ladder
                    .rungs()
                    .iter()
                    .map(|r| Rung {
                        width: (r.width / 4) * 2,
                        height: (r.height / 4) * 2,
                        ..*r
                    })
                    .collect(),
            ),
            Some(VideoFault::LowBitrate) => Ladder(
                ladder
                    .rungs()
                    .iter()
                    .map(|r| Rung {
                        bitrate_kbps: (r.bitrate_kbps / 20).max(1),
                        ..*r
                    })
                    .collect(),
            ),
            _ => ladder.clone(),
        };
        let out = work.join("out");
        std::fs::create_dir_all(&out).map_err(|e| refuse("internal", e.to_string()))?;
        let made = self
            .ffmpeg
            .transcode(&work.join("source.ts"), &asked, settings, &out)
            .map_err(|e| refuse(e.code(), e.to_string()))?;
        let mut commits = Vec::new();
        let mut all = Vec::new();
        for rendition in made {
            let mut bytes =
                std::fs::read(&rendition.path).map_err(|e| refuse("internal", e.to_string()))?;
            match fault {
                Some(VideoFault::Garbage) => {
                    let mut seed = Hash::of(&bytes);
                    for chunk in bytes.chunks_mut(32) {
                        seed = Hash::of(seed.as_bytes());
                        chunk.copy_from_slice(&seed.as_bytes()[..chunk.len()]);
                    }
                }
                Some(VideoFault::FewerFrames) => {
                    // Whole TS packets of the first half: a playable rendition, short.
                    bytes.truncate((bytes.len() / 2 / 188) * 188);
                }
                _ => {}
            }
            // libx264 drops no frame: every rendition has the source's frames (decoding each
            // again here would only cost time; the broadcaster decodes them to check).
            let pixels = source_frames
                .saturating_mul(u64::from(rendition.rung.width) * u64::from(rendition.rung.height));
            commits.push(RenditionCommit {
                rung: rendition.rung.name.to_string(),
                hash: Hash::of(&bytes),
                bytes: bytes.len() as u64,
                pixels,
            });
            all.push(bytes);
        }
        Ok((commits, all))
    }
}
