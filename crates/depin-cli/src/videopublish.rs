//! `depin video publish`: this process is the broadcaster node of a live stream. It cuts the
//! source into MPEG-TS segments as they arrive, hands each to an orchestrator over the
//! service network with a ticket that pays its output pixels at the orchestrator's price,
//! checks every rendition that comes back against the ladder, the source and the
//! orchestrator's signed commitment, replaces a failing, dead or slow orchestrator by its
//! standby and sends the segment again, and serves the HLS playlists and segments as they
//! land. What happened to every segment is kept in `<dir>/<stream>/stream.json`, which
//! `depin video streams` and `depin video status` read.

use crate::Ctx;
use crate::keycmd::read_key;
use crate::storagecmd::{join_network, runtime};
use crate::txcmd::Network;
use anyhow::{Context, bail};
use depin_net::NetHandle;
use depin_node::api_types::StatusResponse;
use depin_node::video::OrchestratorView;
use depin_node::video::wire::*;
use depin_protocol::video::{
    Broadcaster, SegmentCommitment, Ticket, VideoParams, commitment_message, expected_value_dc,
    ticket_message, win_prob_for,
};
use depin_types::{Address, Hash, Keypair};
use depin_video::{
    CutSegment, Cutter, Ffmpeg, Ladder, Opinion, SegmentFacts, Source, check_rendition,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// A file or any URL ffmpeg reads (omit with --rtmp-listen).
    pub source: Option<String>,
    /// Listen for an RTMP push (OBS, `ffmpeg -re -i clip.mp4 -f flv rtmp://ADDR/live/x`).
    #[arg(long, value_name = "ADDR")]
    pub rtmp_listen: Option<String>,
    /// The renditions, largest first or in any order.
    #[arg(long, default_value = "1080p,720p,480p,360p")]
    pub ladder: String,
    /// Segment length in seconds (a segment starts at the first keyframe after it).
    #[arg(long, default_value_t = 2.0)]
    pub segment_seconds: f64,
    /// Highest price paid, in Data Credits per gigapixel of output.
    #[arg(long)]
    pub max_price: Option<u64>,
    /// The broadcaster's key: its deposit pays the tickets.
    #[arg(long)]
    pub key: PathBuf,
    /// Where the playlists and segments are served over HTTP.
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub http_listen: SocketAddr,
    /// Where streams are kept.
    #[arg(long, default_value = "./video-streams")]
    pub dir: PathBuf,
    /// Read a file at its own pace, as a live source arrives.
    #[arg(long)]
    pub realtime: bool,
    /// libx264 threads the stream pins (orchestrators of another count refuse it).
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Seconds an orchestrator has for a segment before it is replaced (default: twice the
    /// segment length plus 5).
    #[arg(long)]
    pub orchestrator_timeout_s: Option<f64>,
    /// Use these orchestrators, in this order (repeatable); by default every one that
    /// offers libx264 under the price cap, ranked by stake over measured latency.
    #[arg(long = "orchestrator", value_name = "ADDRESS")]
    pub orchestrators: Vec<String>,
    /// Stop serving when the source ends (otherwise serve until Ctrl-C).
    #[arg(long)]
    pub exit_when_done: bool,
    /// Percent of segments also sent to the standby and compared (default, and least: the
    /// network's share).
    #[arg(long, value_name = "PERCENT")]
    pub second_opinion_percent: Option<f64>,
    /// Fault tests only: sign tickets wrongly (`forged`) or reuse the last nonce (`replayed`).
    #[arg(long, hide = true)]
    pub ticket_fault: Option<TicketFault>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketFault {
    Forged,
    Replayed,
}

/// What a stream did, kept beside its segments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub id: String,
    pub broadcaster: Address,
    pub source: String,
    pub ladder: String,
    pub segment_seconds: f64,
    pub started_ms: u64,
    /// `live`, `ended` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub playback_url: String,
    pub segments: Vec<SegmentRecord>,
    /// Orchestrators dropped for this stream, and why.
    pub dropped: Vec<Dropped>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub seq: u64,
    pub duration_ms: u64,
    pub source_bytes: u64,
    /// Who made the renditions served (none if every try failed).
    pub orchestrator: Option<Address>,
    /// `ok`, or why no rendition of it is served.
    pub check: String,
    /// From the cut to every rendition stored.
    pub latency_ms: u64,
    /// Expected value of the ticket that paid for it, in billionths of a DC.
    pub paid_nano_dc: u64,
    pub output_pixels: u64,
    /// The tries that failed before, each with the orchestrator and the reason.
    pub failed_tries: Vec<Dropped>,
    /// For a segment also sent to a second orchestrator: who, and what the comparison found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_opinion: Option<SecondOpinion>,
}

/// What `depin video dispute` posts: kept beside the source and renditions it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub commitment: SegmentCommitment,
    /// The orchestrator's signature over the commitment, hex.
    pub signature: String,
    /// The rendition found wrong.
    pub rung: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondOpinion {
    pub orchestrator: Address,
    /// `agree`, `primary_dropped`, `second_dropped` or `undecided`.
    pub verdict: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dropped {
    pub orchestrator: Address,
    pub reason: String,
}

/// A candidate orchestrator with its terms as last heard.
struct Candidate {
    view: OrchestratorView,
    offer: Offer,
    latency_ms: u64,
    /// Our next sender nonce against `offer.recipient_rand_hash`.
    next_nonce: u32,
}

struct Publisher {
    ctx_client: crate::client::Client,
    net: NetHandle,
    rt: tokio::runtime::Runtime,
    key: Keypair,
    chain_id: String,
    params: VideoParams,
    ffmpeg: Ffmpeg,
    ladder: Ladder,
    settings: StreamSettings,
    stream: Hash,
    dir: PathBuf,
    timeout: Duration,
    /// Primary first, then the standby, then the rest in rank order.
    ranked: Vec<Candidate>,
    dropped: Vec<Dropped>,
    /// Every rendition served so far, by hash: a segment's output handed back for another.
    served: std::collections::HashMap<Hash, u64>,
    /// Checked results of segments not finished yet, by orchestrator and segment: the
    /// evidence should a second opinion find them worse.
    results: std::collections::HashMap<(Address, u64), Box<Transcoded>>,
    /// Share of segments (basis points) also sent to the standby.
    second_opinion_bps: u16,
    ticket_fault: Option<TicketFault>,
    /// Picks those segments; unknown to every orchestrator, so none knows which are compared.
    sample_secret: Vec<u8>,
}

pub fn publish(ctx: &Ctx, args: PublishArgs) -> anyhow::Result<()> {
    let source = match (&args.source, &args.rtmp_listen) {
        (Some(s), None) => Source::Input(s.clone()),
        (None, Some(addr)) => Source::RtmpListen(addr.clone()),
        _ => bail!("give a SOURCE (a file or URL) or --rtmp-listen ADDR, not both"),
    };
    if !(0.5..=10.0).contains(&args.segment_seconds) {
        bail!("--segment-seconds is 0.5 to 10");
    }
    let ladder: Ladder = args
        .ladder
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    if ladder.rungs().len() > MAX_RUNGS {
        bail!("a ladder has at most {MAX_RUNGS} rungs");
    }
    let key = read_key(&args.key)?;
    let network = Network::fetch(&ctx.client)?;
    let params: VideoParams = network
        .genesis
        .service_params()
        .context("the network has no video service")?;
    let second_opinion_bps = match args.second_opinion_percent {
        None => params.second_opinion_bps,
        Some(p)
            if (0.0..=100.0).contains(&p) && p * 100.0 >= f64::from(params.second_opinion_bps) =>
        {
            (p * 100.0).round() as u16
        }
        Some(p) => bail!(
            "--second-opinion-percent {p} is out of range: the network asks at least {}%, at most 100",
            f64::from(params.second_opinion_bps) / 100.0
        ),
    };
    let me = key.address();
    let funds: Broadcaster = ctx.client.get(&format!("/v1/video/broadcasters/{me}"))?;
    if funds.deposit_dc == 0 {
        bail!(
            "{me} has no ticket deposit: lock one first with `depin video fund --deposit DC --reserve DC --key ...`"
        );
    }
    if funds.barred {
        bail!("{me} is barred (a winning ticket found its deposit spent): fund the deposit again");
    }
    let views: Vec<OrchestratorView> = ctx.client.get("/v1/video/orchestrators")?;
    let pinned: Vec<Address> = args
        .orchestrators
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|e| anyhow::anyhow!("--orchestrator {a} is not an address: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut views: Vec<OrchestratorView> = views
        .into_iter()
        .filter(|v| v.address != me)
        .filter(|v| pinned.is_empty() || pinned.contains(&v.address))
        .filter(|v| {
            args.max_price
                .is_none_or(|cap| v.price_dc_per_gigapixel <= cap)
        })
        .filter(|v| v.encoders.iter().any(|e| e == "libx264"))
        .collect();
    if views.is_empty() {
        bail!(
            "no orchestrator offers libx264{}: see /v1/video/orchestrators",
            args.max_price
                .map(|p| format!(" at {p} DC per gigapixel or less"))
                .unwrap_or_default()
        );
    }
    // Pinned ones keep the order given.
    views.sort_by_key(|v| pinned.iter().position(|p| *p == v.address));
    let rt = runtime()?;
    let net = rt.block_on(join_network(ctx, &network.chain_id, None))?;
    let started_ms = depin_node::now_ms();
    let stream = Hash::tagged(
        "depin video stream",
        &[me.as_bytes(), &started_ms.to_le_bytes(), &rand_bytes()?],
    );
    let id = stream.to_hex()[..16].to_string();
    let dir = args.dir.join(&id);
    std::fs::create_dir_all(dir.join("cut"))
        .with_context(|| format!("cannot make {}", dir.display()))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.http_listen))
        .with_context(|| format!("cannot listen on {}", args.http_listen))?;
    let http = listener.local_addr()?;
    let playback_url = format!("http://{http}/v1/video/streams/{id}/master.m3u8");
    let server_dir = args.dir.clone();
    rt.spawn(async move {
        let _ = axum::serve(listener, hls_routes(server_dir)).await;
    });
    let mut record = StreamRecord {
        id: id.clone(),
        broadcaster: me,
        source: match &source {
            Source::Input(s) => s.clone(),
            Source::RtmpListen(a) => format!("rtmp://{a}/live/stream"),
        },
        ladder: ladder.to_string(),
        segment_seconds: args.segment_seconds,
        started_ms,
        state: "live".into(),
        error: None,
        playback_url: playback_url.clone(),
        segments: Vec::new(),
        dropped: Vec::new(),
    };
    save(&dir, &record)?;
    eprintln!("stream {id}\nplayback {playback_url}");
    if !ctx.out.json {
        crate::output::print_stdout(&format!("stream    {id}\nplayback  {playback_url}"));
    }
    let ffmpeg = Ffmpeg::default();
    let mut publisher = Publisher {
        ctx_client: crate::client::Client::new(ctx.client.base()),
        net,
        rt,
        key,
        chain_id: network.chain_id.clone(),
        params,
        ffmpeg: ffmpeg.clone(),
        settings: StreamSettings {
            ladder: ladder.to_string(),
            encoder: "libx264".into(),
            preset: "veryfast".into(),
            threads: args.threads,
            gop_frames: gop_frames(args.segment_seconds),
        },
        ladder,
        stream,
        dir: dir.clone(),
        timeout: Duration::from_secs_f64(
            args.orchestrator_timeout_s
                .unwrap_or(args.segment_seconds * 2.0 + 5.0)
                .clamp(1.0, 600.0),
        ),
        ranked: Vec::new(),
        dropped: Vec::new(),
        served: std::collections::HashMap::new(),
        second_opinion_bps,
        sample_secret: rand_bytes()?,
        results: std::collections::HashMap::new(),
        ticket_fault: args.ticket_fault,
    };
    publisher.rank(views, !pinned.is_empty());
    if publisher.ranked.is_empty() {
        record.state = "failed".into();
        let reasons: Vec<String> = publisher
            .dropped
            .iter()
            .map(|d| format!("{}: {}", d.orchestrator, d.reason))
            .collect();
        record.error = Some(format!(
            "no orchestrator can take the stream: {}",
            reasons.join("; ")
        ));
        record.dropped = publisher.dropped.clone();
        save(&dir, &record)?;
        bail!(
            "no orchestrator can take the stream:\n  {}",
            reasons.join("\n  ")
        );
    }
    let outcome = publisher.run(&source, args.segment_seconds, args.realtime, &mut record);
    record.dropped = publisher.dropped.clone();
    match &outcome {
        Ok(()) => record.state = "ended".into(),
        Err(e) => {
            record.state = "failed".into();
            record.error = Some(format!("{e:#}"));
        }
    }
    save(&dir, &record)?;
    write_playlists(&dir, &record, true)?;
    let served = record.segments.iter().filter(|s| s.check == "ok").count();
    ctx.out.emit(&record, || {
        Ok(format!(
            "{} of {} segments transcoded and checked; {} orchestrator(s) dropped\nplaylist  {playback_url}",
            served,
            record.segments.len(),
            record.dropped.len()
        ))
    })?;
    outcome?;
    if !args.exit_when_done {
        eprintln!("the source ended; serving {playback_url} until Ctrl-C");
        publisher.rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    Ok(())
}

/// Fresh bytes from the OS (through a throwaway key), so two streams never share an id.
fn rand_bytes() -> anyhow::Result<Vec<u8>> {
    Ok(Keypair::generate()?.address().as_bytes().to_vec())
}

/// One keyframe per segment at 30 fps (the orchestrators' GOP), so each plays alone.
fn gop_frames(segment_seconds: f64) -> u32 {
    ((segment_seconds * 30.0).round() as u32).clamp(1, 600)
}

impl Publisher {
    fn ask(&self, orchestrator: &Address, request: &VideoRequest) -> Result<VideoResponse, String> {
        let peer = depin_net::peer_id_of(orchestrator).map_err(|e| e.to_string())?;
        let bytes = depin_types::encode(request);
        let answer = self
            .rt
            .block_on(self.net.request(peer, VIDEO_PROTOCOL, bytes))
            .map_err(|e| format!("no answer: {e}"))?;
        depin_types::decode_bounded::<VideoResponse>(&answer, 64 << 20)
            .map_err(|e| format!("malformed answer: {e}"))
    }

    /// Asks every orchestrator for its terms, measuring the round trip, and ranks those that
    /// answer with a free session: stake over latency, then price.
    fn rank(&mut self, views: Vec<OrchestratorView>, keep_order: bool) {
        let mut ranked = Vec::new();
        for view in views {
            let started = Instant::now();
            let ask = VideoRequest::Offer {
                broadcaster: self.key.address(),
            };
            // The first request may race the discovery of a peer just dialed: ask twice.
            let answer = self.ask(&view.address, &ask).or_else(|_| {
                std::thread::sleep(Duration::from_millis(500));
                self.ask(&view.address, &ask)
            });
            match answer {
                Ok(VideoResponse::Offer(offer))
                    if offer.free_sessions > 0 && offer.threads == self.settings.threads =>
                {
                    let latency_ms = started.elapsed().as_millis() as u64;
                    ranked.push(Candidate {
                        next_nonce: offer.last_nonce.map_or(0, |n| n.saturating_add(1)),
                        view,
                        offer,
                        latency_ms,
                    });
                }
                Ok(VideoResponse::Offer(offer)) => self.dropped.push(Dropped {
                    orchestrator: view.address,
                    reason: if offer.free_sessions == 0 {
                        "no free session".into()
                    } else {
                        format!(
                            "encodes with {} threads, the stream pins {}",
                            offer.threads, self.settings.threads
                        )
                    },
                }),
                Ok(_) => self.dropped.push(Dropped {
                    orchestrator: view.address,
                    reason: "answered the offer request with something else".into(),
                }),
                Err(reason) => self.dropped.push(Dropped {
                    orchestrator: view.address,
                    reason,
                }),
            }
        }
        if keep_order {
            self.ranked = ranked;
            return;
        }
        ranked.sort_by(|a, b| {
            let score =
                |c: &Candidate| c.view.stake_weight * 1_000_000 / u128::from(c.latency_ms + 1);
            score(b)
                .cmp(&score(a))
                .then(
                    a.offer
                        .price_dc_per_gigapixel
                        .cmp(&b.offer.price_dc_per_gigapixel),
                )
                .then(a.view.address.cmp(&b.view.address))
        });
        self.ranked = ranked;
    }

    fn run(
        &mut self,
        source: &Source,
        segment_seconds: f64,
        realtime: bool,
        record: &mut StreamRecord,
    ) -> anyhow::Result<()> {
        let cut_dir = self.dir.join("cut");
        let mut cutter = Cutter::start(&self.ffmpeg, source, segment_seconds, realtime, &cut_dir)?;
        // The cut runs on its own thread, so segments keep arriving while others transcode.
        let (cuts, cut) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            loop {
                let next = cutter.next_segment();
                let end = !matches!(next, Ok(Some(_)));
                if cuts
                    .send(next.map(|s| s.map(|s| (s, Instant::now()))))
                    .is_err()
                    || end
                {
                    return;
                }
            }
        });
        let mut queue: VecDeque<Prepared> = VecDeque::new();
        let mut flying: VecDeque<InFlight> = VecDeque::new();
        let mut finished: BTreeMap<u64, SegmentRecord> = BTreeMap::new();
        let mut next_seq = 0u64;
        let mut source_done = false;
        loop {
            // Take what the cut has: wait only when nothing else is to be done.
            while !source_done && queue.len() + flying.len() < self.depth() {
                let idle = queue.is_empty() && flying.is_empty();
                let message = if idle {
                    cut.recv().ok()
                } else {
                    match cut.try_recv() {
                        Ok(m) => Some(m),
                        Err(std::sync::mpsc::TryRecvError::Empty) => break,
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                    }
                };
                match message {
                    Some(Ok(Some((segment, cut_at)))) => match self.prepare(segment, cut_at) {
                        Ok(p) => queue.push_back(p),
                        Err(done) => {
                            finished.insert(done.seq, *done);
                        }
                    },
                    Some(Ok(None)) | None => source_done = true,
                    Some(Err(e)) => return Err(e.into()),
                }
            }
            while flying.len() < self.depth() {
                let Some(p) = queue.pop_front() else { break };
                match self.dispatch(p) {
                    Ok(f) => flying.push_back(f),
                    Err(done) => {
                        finished.insert(done.seq, *done);
                    }
                }
            }
            if let Some(f) = flying.pop_front() {
                let orchestrator = f.orchestrator;
                match self.collect(f) {
                    Ok(done) => {
                        finished.insert(done.seq, done);
                    }
                    Err(p) => {
                        // Whatever else was handed to the dropped one goes to the next.
                        let mut again: VecDeque<Prepared> = VecDeque::from([*p]);
                        // (One the standby also has stays: its renditions are awaited there.)
                        for other in std::mem::take(&mut flying) {
                            if other.orchestrator == orchestrator && other.second.is_none() {
                                again.push_back(other.prepared);
                            } else {
                                flying.push_back(other);
                            }
                        }
                        again.extend(queue.drain(..));
                        queue = again;
                    }
                }
            }
            let mut changed = false;
            while let Some(done) = finished.remove(&next_seq) {
                let _ =
                    std::fs::remove_file(self.dir.join("cut").join(format!("seg-{next_seq}.ts")));
                record.segments.push(done);
                next_seq += 1;
                changed = true;
            }
            if changed {
                record.dropped = self.dropped.clone();
                save(&self.dir, record)?;
                write_playlists(&self.dir, record, false)?;
            }
            if self.ranked.is_empty() {
                bail!("every orchestrator failed or left; the stream stops");
            }
            if source_done && queue.is_empty() && flying.is_empty() {
                return Ok(());
            }
        }
    }

    /// Segments handed to the primary at once: up to its sessions, at most 2, so the next
    /// transcodes while one is checked (its live free count drops with our own segments).
    fn depth(&self) -> usize {
        self.ranked.first().map_or(1, |c| {
            usize::try_from(c.view.sessions)
                .unwrap_or(1)
                .clamp(1, PIPELINE_DEPTH)
        })
    }

    fn head_height(&self) -> Result<u64, String> {
        self.ctx_client
            .get::<StatusResponse>("/v1/status")
            .map(|s| s.height)
            .map_err(|e| format!("{e:#}"))
    }

    /// Reads and probes a cut segment; one that cannot be sent is finished here.
    fn prepare(
        &self,
        segment: CutSegment,
        cut_at: Instant,
    ) -> Result<Prepared, Box<SegmentRecord>> {
        let mut out = SegmentRecord {
            seq: segment.seq,
            duration_ms: ((segment.end_s - segment.start_s).max(0.0) * 1000.0) as u64,
            source_bytes: 0,
            orchestrator: None,
            check: String::new(),
            latency_ms: 0,
            paid_nano_dc: 0,
            output_pixels: 0,
            failed_tries: Vec::new(),
            second_opinion: None,
        };
        // The size first: an oversized segment is never read into memory.
        let size = match std::fs::metadata(&segment.path) {
            Ok(m) => m.len(),
            Err(e) => {
                out.check = format!("cannot read the cut segment: {e}");
                return Err(Box::new(out));
            }
        };
        out.source_bytes = size;
        if size > MAX_SEGMENT_BYTES as u64 {
            out.check = format!(
                "segment_too_large: {size} bytes, over the {MAX_SEGMENT_BYTES}-byte limit (lower the source's bitrate or the segment length)"
            );
            return Err(Box::new(out));
        }
        let bytes = match std::fs::read(&segment.path) {
            Ok(b) if b.len() as u64 <= MAX_SEGMENT_BYTES as u64 => b,
            Ok(b) => {
                out.check = format!(
                    "segment_too_large: {} bytes, over the {MAX_SEGMENT_BYTES}-byte limit",
                    b.len()
                );
                return Err(Box::new(out));
            }
            Err(e) => {
                out.check = format!("cannot read the cut segment: {e}");
                return Err(Box::new(out));
            }
        };
        let facts = match self.ffmpeg.probe_packets(&segment.path) {
            Ok(f) => f,
            Err(e) => {
                out.check = format!("{}: {e}", e.code());
                return Err(Box::new(out));
            }
        };
        let pixels = facts.frames.saturating_mul(self.ladder.pixels_per_frame());
        out.output_pixels = pixels;
        Ok(Prepared {
            segment,
            bytes,
            facts,
            pixels,
            cut_at,
            record: out,
        })
    }

    /// Drops the orchestrator for the stream, noting why on the segment and the stream.
    fn drop_orchestrator(&mut self, p: &mut Prepared, orchestrator: Address, reason: String) {
        eprintln!(
            "segment {}: orchestrator {orchestrator} dropped: {reason}",
            p.segment.seq
        );
        let dropped = Dropped {
            orchestrator,
            reason,
        };
        p.record.failed_tries.push(dropped.clone());
        if !self.dropped.iter().any(|d| d.orchestrator == orchestrator) {
            self.dropped.push(dropped);
        }
        self.ranked.retain(|c| c.view.address != orchestrator);
    }

    /// Hands a segment to the primary (the next in rank after every failure); fresh terms
    /// after a stale random hash or nonce are tried twice. With nobody left it is finished.
    /// A sampled segment also goes to the standby, for a second opinion.
    fn dispatch(&mut self, mut p: Prepared) -> Result<InFlight, Box<SegmentRecord>> {
        let mut retries_here = 0;
        while let Some(orchestrator) = self.ranked.first().map(|c| c.view.address) {
            match self.send(&p, orchestrator) {
                Ok(ticket_value) => {
                    let second = self.send_second(&mut p, orchestrator);
                    return Ok(InFlight {
                        prepared: p,
                        orchestrator,
                        ticket_value,
                        second,
                        deadline: Instant::now() + self.timeout,
                    });
                }
                Err(Failure::Retry(reason)) if retries_here < 2 => {
                    retries_here += 1;
                    tracing::debug!(%orchestrator, reason, "trying again with fresh terms");
                }
                Err(Failure::Retry(reason) | Failure::Drop(reason)) => {
                    retries_here = 0;
                    self.drop_orchestrator(&mut p, orchestrator, reason);
                }
            }
        }
        p.record.check = "no orchestrator left".into();
        p.record.latency_ms = p.cut_at.elapsed().as_millis() as u64;
        Err(Box::new(p.record))
    }

    /// Whether this segment is one of the share compared with a second orchestrator: drawn
    /// from a secret only this broadcaster knows, so an orchestrator cannot tell.
    fn sampled(&self, seq: u64) -> bool {
        let draw = Hash::tagged(
            "depin video second opinion",
            &[
                &self.sample_secret,
                self.stream.as_bytes(),
                &seq.to_le_bytes(),
            ],
        );
        let mut first = [0u8; 8];
        first.copy_from_slice(&draw.as_bytes()[..8]);
        u64::from_le_bytes(first) % 10_000 < u64::from(self.second_opinion_bps)
    }

    /// Sends a sampled segment to the standby as well; a standby that refuses it for good is
    /// dropped, one that is busy is skipped this time.
    fn send_second(&mut self, p: &mut Prepared, primary: Address) -> Option<(Address, u64)> {
        if !self.sampled(p.segment.seq) {
            return None;
        }
        let standby = self
            .ranked
            .iter()
            .map(|c| c.view.address)
            .find(|a| *a != primary)?;
        match self.send(p, standby) {
            Ok(value) => Some((standby, value)),
            Err(Failure::Retry(reason)) => {
                tracing::debug!(%standby, reason, "no second opinion on this segment");
                None
            }
            Err(Failure::Drop(reason)) => {
                self.drop_orchestrator(p, standby, reason);
                None
            }
        }
    }

    /// Waits for a handed-over segment's renditions and checks them (against the second
    /// orchestrator's too, for a sampled one); a failure drops the orchestrator and gives the
    /// segment back to be sent again.
    fn collect(&mut self, f: InFlight) -> Result<SegmentRecord, Box<Prepared>> {
        let InFlight {
            mut prepared,
            orchestrator,
            ticket_value,
            second,
            deadline,
        } = f;
        let primary_dir = self.dir.clone();
        let fetched = if self.ranked.iter().any(|c| c.view.address == orchestrator) {
            self.fetch(&prepared, orchestrator, deadline, &primary_dir)
        } else {
            // Dropped (for another segment) while this one was in flight.
            Err("dropped for the stream before this segment came back".into())
        };
        let staged = match fetched {
            Ok(staged) => staged,
            Err(reason) => {
                self.drop_orchestrator(&mut prepared, orchestrator, reason);
                // The standby already has this segment: its renditions are the ones awaited.
                let Some((standby, value)) = second else {
                    return Err(Box::new(prepared));
                };
                let paid = ticket_value.saturating_add(value);
                return match self.fetch(&prepared, standby, deadline, &primary_dir) {
                    Ok(theirs) => self.finish(prepared, standby, paid, theirs),
                    Err(reason) => {
                        self.drop_orchestrator(&mut prepared, standby, reason);
                        Err(Box::new(prepared))
                    }
                };
            }
        };
        let mut paid = ticket_value;
        let mut served_by = orchestrator;
        let mut serve = staged;
        if let Some((standby, value)) = second {
            paid = paid.saturating_add(value);
            let second_dir = self.dir.join("second");
            let opinion = match self.fetch(&prepared, standby, deadline, &second_dir) {
                Err(reason) => {
                    self.drop_orchestrator(&mut prepared, standby, reason.clone());
                    SecondOpinion {
                        orchestrator: standby,
                        verdict: "second_dropped".into(),
                        detail: reason,
                    }
                }
                Ok(theirs) => {
                    let (opinion, use_theirs) =
                        self.compare(&mut prepared, orchestrator, standby, &serve, &theirs);
                    let unused = if use_theirs {
                        served_by = standby;
                        std::mem::replace(&mut serve, theirs)
                    } else {
                        theirs
                    };
                    for s in unused {
                        let _ = std::fs::remove_file(&s.part);
                    }
                    opinion
                }
            };
            prepared.record.second_opinion = Some(opinion);
        }
        self.finish(prepared, served_by, paid, serve)
    }

    /// Serves a segment's checked renditions and closes its record.
    fn finish(
        &mut self,
        mut prepared: Prepared,
        served_by: Address,
        paid: u64,
        serve: Vec<Staged>,
    ) -> Result<SegmentRecord, Box<Prepared>> {
        let seq = prepared.segment.seq;
        self.results.retain(|(_, s), _| *s != seq);
        if let Err(e) = self.publish_staged(prepared.segment.seq, &serve) {
            prepared.record.failed_tries.push(Dropped {
                orchestrator: served_by,
                reason: format!("cannot store the renditions: {e}"),
            });
            return Err(Box::new(prepared));
        }
        let mut out = prepared.record;
        out.orchestrator = Some(served_by);
        out.check = "ok".into();
        out.paid_nano_dc = paid;
        out.latency_ms = prepared.cut_at.elapsed().as_millis() as u64;
        Ok(out)
    }

    /// Compares the primary's renditions with the standby's rung by rung; drops the worse
    /// orchestrator. Whether the standby's renditions are the ones to serve.
    fn compare(
        &mut self,
        p: &mut Prepared,
        primary: Address,
        standby: Address,
        ours: &[Staged],
        theirs: &[Staged],
    ) -> (SecondOpinion, bool) {
        let build = |a: Address| {
            self.ranked
                .iter()
                .find(|c| c.view.address == a)
                .map(|c| c.view.build.clone())
        };
        let exact = build(primary).is_some_and(|b| Some(b) == build(standby));
        let mut notes = Vec::new();
        for ((rung, first), second) in self.ladder.rungs().iter().zip(ours).zip(theirs) {
            match self.ffmpeg.second_opinion(
                rung,
                &p.segment.path,
                &first.part,
                &second.part,
                exact,
            ) {
                Ok(Opinion::Agree) if first.hash == second.hash => {
                    notes.push(format!("{}: same bytes", rung.name));
                }
                Ok(Opinion::Agree) => notes.push(format!("{}: same picture", rung.name)),
                Ok(Opinion::FirstWorse {
                    ssim_first,
                    ssim_second,
                }) => {
                    let reason = format!(
                        "second opinion: its {} rendition scores SSIM {ssim_first:.4} against the source, {standby}'s {ssim_second:.4}{}",
                        rung.name,
                        if exact {
                            " (same build and settings: the bytes should match)"
                        } else {
                            ""
                        }
                    );
                    if let Some(t) = self.results.remove(&(primary, p.segment.seq)) {
                        self.keep_evidence(&p.bytes, &t, &reason);
                    }
                    self.drop_orchestrator(p, primary, reason.clone());
                    let opinion = SecondOpinion {
                        orchestrator: standby,
                        verdict: "primary_dropped".into(),
                        detail: reason,
                    };
                    return (opinion, true);
                }
                Ok(Opinion::SecondWorse {
                    ssim_first,
                    ssim_second,
                }) => {
                    let reason = format!(
                        "second opinion: its {} rendition scores SSIM {ssim_second:.4} against the source, {primary}'s {ssim_first:.4}",
                        rung.name
                    );
                    self.drop_orchestrator(p, standby, reason.clone());
                    let opinion = SecondOpinion {
                        orchestrator: standby,
                        verdict: "second_dropped".into(),
                        detail: reason,
                    };
                    return (opinion, false);
                }
                Err(e) => {
                    let opinion = SecondOpinion {
                        orchestrator: standby,
                        verdict: "undecided".into(),
                        detail: format!("cannot compare the {} renditions: {e}", rung.name),
                    };
                    return (opinion, false);
                }
            }
        }
        let opinion = SecondOpinion {
            orchestrator: standby,
            verdict: "agree".into(),
            detail: notes.join(", "),
        };
        (opinion, false)
    }

    /// Signs a ticket at the orchestrator's current terms and hands it the segment; the
    /// ticket's expected value in billionths of a DC.
    fn send(&mut self, p: &Prepared, orchestrator: Address) -> Result<u64, Failure> {
        let head = self.head_height().map_err(Failure::Retry)?;
        let lifetime = self.params.max_ticket_validity_blocks.min(60);
        let me = self.key.address();
        let pixels = p.pixels;
        let Some(candidate) = self
            .ranked
            .iter_mut()
            .find(|c| c.view.address == orchestrator)
        else {
            return Err(Failure::Drop("no longer a candidate".into()));
        };
        let offer = candidate.offer.clone();
        let win_prob = win_prob_for(pixels, offer.price_dc_per_gigapixel, offer.face_value_dc)
            .ok_or_else(|| {
                Failure::Drop(format!(
                    "its {} DC tickets cannot pay a segment of {pixels} pixels",
                    offer.face_value_dc
                ))
            })?;
        let sender_nonce = match self.ticket_fault {
            Some(TicketFault::Replayed) => offer.last_nonce.unwrap_or(0),
            _ => candidate.next_nonce,
        };
        let ticket = Ticket {
            recipient: orchestrator,
            sender: me,
            face_value_dc: offer.face_value_dc,
            win_prob,
            sender_nonce,
            recipient_rand_hash: offer.recipient_rand_hash,
            expiry_height: head.saturating_add(lifetime),
        };
        candidate.next_nonce = candidate.next_nonce.saturating_add(1);
        let signed = match self.ticket_fault {
            // A signature over other terms than those sent.
            Some(TicketFault::Forged) => Ticket {
                face_value_dc: ticket.face_value_dc.saturating_add(1),
                ..ticket
            },
            _ => ticket,
        };
        let ticket_signature = self.key.sign(&ticket_message(&self.chain_id, &signed));
        let request = VideoRequest::Transcode(Box::new(TranscodeRequest {
            stream: self.stream,
            seq: p.segment.seq,
            settings: self.settings.clone(),
            source: p.bytes.clone(),
            ticket,
            ticket_signature,
        }));
        match self.ask(&orchestrator, &request).map_err(Failure::Drop)? {
            VideoResponse::Accepted(next) => {
                self.new_terms(next);
                Ok(
                    u64::try_from(expected_value_dc(ticket.face_value_dc, win_prob))
                        .unwrap_or(u64::MAX),
                )
            }
            VideoResponse::Refused {
                code,
                reason,
                offer,
            } => {
                let retry = matches!(code.as_str(), "stale_rand" | "replayed_ticket" | "busy");
                if let Some(next) = offer {
                    self.new_terms(next);
                }
                let reason = format!("refused ({code}): {reason}");
                Err(if retry {
                    Failure::Retry(reason)
                } else {
                    Failure::Drop(reason)
                })
            }
            _ => Err(Failure::Drop(
                "answered a segment with something else".into(),
            )),
        }
    }

    /// Polls for the renditions until the deadline, then checks them.
    fn fetch(
        &mut self,
        p: &Prepared,
        orchestrator: Address,
        deadline: Instant,
        stage_root: &Path,
    ) -> Result<Vec<Staged>, String> {
        let seq = p.segment.seq;
        let transcoded = loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "no renditions within {} s",
                    self.timeout.as_secs_f64()
                ));
            }
            let asked = VideoRequest::Result {
                stream: self.stream,
                seq,
            };
            match self.ask(&orchestrator, &asked)? {
                VideoResponse::Pending => std::thread::sleep(Duration::from_millis(50)),
                VideoResponse::Transcoded(t) => break t,
                VideoResponse::Refused { code, reason, .. } => {
                    return Err(format!("failed ({code}): {reason}"));
                }
                _ => return Err("answered a result request with something else".into()),
            }
        };
        self.new_terms(transcoded.offer.clone());
        let checked = self.check(
            seq,
            orchestrator,
            &p.bytes,
            &p.segment.path,
            &p.facts,
            &transcoded,
            stage_root,
        );
        match &checked {
            Err(reason) => self.keep_evidence(&p.bytes, &transcoded, reason),
            Ok(_) => {
                self.results.insert((orchestrator, seq), transcoded);
            }
        }
        checked
    }

    /// Keeps what a dispute needs when a signed commitment to this stream's segment came
    /// with renditions that failed: the commitment, the source and the renditions, under
    /// `<dir>/evidence/<seq>-<orchestrator>/` for `depin video dispute`.
    fn keep_evidence(&self, source: &[u8], t: &Transcoded, reason: &str) {
        let c = &t.commitment;
        let signed = depin_types::verify(
            &c.orchestrator,
            &commitment_message(&self.chain_id, c),
            &t.signature,
        )
        .is_ok();
        if !signed
            || c.stream != self.stream
            || c.broadcaster != self.key.address()
            || c.source_hash != Hash::of(source)
            || c.renditions.len() != t.renditions.len()
        {
            return;
        }
        // The rung a failure names (checks say "the 360p rendition ..."), else the largest.
        let rung = c
            .renditions
            .iter()
            .find(|r| reason.contains(&format!("{} rendition", r.rung)))
            .or(c.renditions.first())
            .map(|r| r.rung.clone())
            .unwrap_or_default();
        let dir = self
            .dir
            .join("evidence")
            .join(format!("{}-{}", c.seq, c.orchestrator));
        let evidence = Evidence {
            commitment: c.clone(),
            signature: hex::encode(t.signature.0),
            rung,
            reason: reason.to_string(),
        };
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("source.ts"), source))
            .and_then(|()| {
                for (commit, bytes) in c.renditions.iter().zip(&t.renditions) {
                    std::fs::write(dir.join(format!("{}.ts", commit.rung)), bytes)?;
                }
                Ok(())
            })
            .and_then(|()| {
                let json = serde_json::to_vec_pretty(&evidence).map_err(std::io::Error::other)?;
                std::fs::write(dir.join("evidence.json"), json)
            });
        if let Err(e) = written {
            eprintln!("cannot keep the evidence in {}: {e}", dir.display());
        }
    }

    fn new_terms(&mut self, offer: Offer) {
        if let Some(c) = self
            .ranked
            .iter_mut()
            .find(|c| c.view.address == offer.orchestrator)
        {
            let above_seen = offer.last_nonce.map_or(0, |n| n.saturating_add(1));
            c.next_nonce = if offer.recipient_rand_hash != c.offer.recipient_rand_hash {
                above_seen
            } else {
                c.next_nonce.max(above_seen)
            };
            c.offer = offer;
        }
    }

    /// Every check a rendition passes before it is served: the orchestrator's signature on a
    /// commitment to this stream, segment and source; each rendition's bytes against their
    /// committed hash; and the decoded rendition against its rung, the source's frames and
    /// duration, and its committed pixels.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &mut self,
        seq: u64,
        orchestrator: Address,
        source: &[u8],
        source_path: &Path,
        source_facts: &SegmentFacts,
        t: &Transcoded,
        stage_root: &Path,
    ) -> Result<Vec<Staged>, String> {
        let c: &SegmentCommitment = &t.commitment;
        if c.orchestrator != orchestrator
            || depin_types::verify(
                &orchestrator,
                &commitment_message(&self.chain_id, c),
                &t.signature,
            )
            .is_err()
        {
            return Err("the commitment is not signed by the orchestrator".into());
        }
        if c.stream != self.stream || c.seq != seq || c.broadcaster != self.key.address() {
            return Err(format!(
                "the commitment is for segment {} of another stream or broadcaster",
                c.seq
            ));
        }
        if c.source_hash != Hash::of(source) {
            return Err("the commitment names another source segment".into());
        }
        let rungs = self.ladder.rungs();
        if c.renditions.len() != rungs.len() || t.renditions.len() != rungs.len() {
            return Err(format!(
                "{} renditions came back for a {}-rung ladder",
                t.renditions.len(),
                rungs.len()
            ));
        }
        let mut staged = Vec::new();
        for ((rung, commit), bytes) in rungs.iter().zip(&c.renditions).zip(&t.renditions) {
            if commit.rung != rung.name {
                return Err(format!(
                    "rendition {} came where {} was due",
                    commit.rung, rung.name
                ));
            }
            if Hash::of(bytes) != commit.hash || bytes.len() as u64 != commit.bytes {
                return Err(format!(
                    "the {} rendition is not the one committed to",
                    rung.name
                ));
            }
            if let Some(other) = self.served.get(&commit.hash).filter(|s| **s != seq) {
                return Err(format!(
                    "the {} rendition is segment {other}'s output, not this segment's",
                    rung.name
                ));
            }
            let rung_dir = stage_root.join(rung.name);
            std::fs::create_dir_all(&rung_dir).map_err(|e| e.to_string())?;
            let staging = rung_dir.join(format!("{seq}.ts.part"));
            std::fs::write(&staging, bytes).map_err(|e| e.to_string())?;
            let facts = match self.ffmpeg.probe(&staging) {
                Ok(f) => f,
                Err(e) => {
                    let _ = std::fs::remove_file(&staging);
                    return Err(format!("the {} rendition does not decode: {e}", rung.name));
                }
            };
            if let Err(m) = check_rendition(rung, source_facts, &facts) {
                let _ = std::fs::remove_file(&staging);
                return Err(format!("the {} rendition is wrong: {m}", rung.name));
            }
            if facts.pixels() != commit.pixels {
                let _ = std::fs::remove_file(&staging);
                return Err(format!(
                    "the {} rendition decodes to {} pixels, {} were committed",
                    rung.name,
                    facts.pixels(),
                    commit.pixels
                ));
            }
            staged.push(Staged {
                rung: rung.name,
                part: staging,
                hash: commit.hash,
            });
        }
        // Right size, frames and length can still be another segment's picture: the smallest
        // rendition (the cheapest to compare) must look like this source.
        if let (Some(rung), Some(smallest)) = (rungs.last(), staged.last()) {
            let ssim = self
                .ffmpeg
                .ssim(&smallest.part, source_path, rung.width, rung.height)
                .map_err(|e| format!("cannot compare the {} rendition: {e}", rung.name))?;
            if ssim < MIN_SOURCE_SSIM {
                for s in &staged {
                    let _ = std::fs::remove_file(&s.part);
                }
                return Err(format!(
                    "the {} rendition does not show this segment (SSIM {ssim:.3} against the source, under {MIN_SOURCE_SSIM})",
                    rung.name
                ));
            }
        }
        Ok(staged)
    }

    /// Moves checked renditions to where the playlists point; their hashes are served.
    fn publish_staged(&mut self, seq: u64, staged: &[Staged]) -> std::io::Result<()> {
        for s in staged {
            let rung_dir = self.dir.join(s.rung);
            std::fs::create_dir_all(&rung_dir)?;
            std::fs::rename(&s.part, rung_dir.join(format!("{seq}.ts")))?;
            self.served.insert(s.hash, seq);
        }
        Ok(())
    }
}

/// Least SSIM of a rendition against its own source, scaled to the rendition's size: a
/// coarse check that catches unrelated pictures, not a neighbouring segment of a similar
/// scene (exact reuse of a served rendition is caught by hash). Measured with Debian's
/// ffmpeg 5.1 at 240p and 400 kbit/s: honest renditions of `testsrc2` score 0.87 to 0.93,
/// the neighbouring segment's 0.84, an unrelated clip's 0.39.
const MIN_SOURCE_SSIM: f64 = 0.7;

/// Segments handed to one orchestrator at once, at most.
const PIPELINE_DEPTH: usize = 2;

/// A cut segment read and probed, ready to send.
struct Prepared {
    segment: CutSegment,
    bytes: Vec<u8>,
    facts: SegmentFacts,
    pixels: u64,
    cut_at: Instant,
    record: SegmentRecord,
}

/// A segment an orchestrator accepted, whose renditions are awaited.
struct InFlight {
    prepared: Prepared,
    orchestrator: Address,
    ticket_value: u64,
    /// The standby asked for a second opinion, and its ticket's value.
    second: Option<(Address, u64)>,
    deadline: Instant,
}

/// A checked rendition, written beside where it will be served.
struct Staged {
    rung: &'static str,
    part: PathBuf,
    hash: Hash,
}

enum Failure {
    /// Fresh terms came back: the same orchestrator may be asked again.
    Retry(String),
    /// The orchestrator is dropped for the stream.
    Drop(String),
}

fn save(dir: &Path, record: &StreamRecord) -> anyhow::Result<()> {
    let path = dir.join("stream.json");
    let staging = dir.join("stream.json.part");
    std::fs::write(&staging, serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("cannot write {}", staging.display()))?;
    std::fs::rename(&staging, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// The master playlist and one media playlist per rung, over the segments checked so far;
/// `ended` closes them (`#EXT-X-ENDLIST`).
fn write_playlists(dir: &Path, record: &StreamRecord, ended: bool) -> anyhow::Result<()> {
    let ladder: Ladder = record
        .ladder
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let served: Vec<&SegmentRecord> = record.segments.iter().filter(|s| s.check == "ok").collect();
    let target = served
        .iter()
        .map(|s| s.duration_ms.div_ceil(1000))
        .max()
        .unwrap_or(record.segment_seconds.ceil() as u64)
        .max(1);
    let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for rung in ladder.rungs() {
        master.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},NAME=\"{}\"\n{}/index.m3u8\n",
            u64::from(rung.bitrate_kbps) * 1000 + 128_000,
            rung.width,
            rung.height,
            rung.name,
            rung.name
        ));
        let mut media = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
        let mut previous: Option<u64> = None;
        for s in &served {
            if previous.is_some_and(|p| s.seq != p + 1) {
                media.push_str("#EXT-X-DISCONTINUITY\n");
            }
            media.push_str(&format!(
                "#EXTINF:{:.3},\n{}.ts\n",
                s.duration_ms as f64 / 1000.0,
                s.seq
            ));
            previous = Some(s.seq);
        }
        if ended {
            media.push_str("#EXT-X-ENDLIST\n");
        }
        let rung_dir = dir.join(rung.name);
        std::fs::create_dir_all(&rung_dir)?;
        atomic_write(&rung_dir.join("index.m3u8"), media.as_bytes())?;
    }
    atomic_write(&dir.join("master.m3u8"), master.as_bytes())
}

fn atomic_write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let staging = path.with_extension("part");
    std::fs::write(&staging, bytes)
        .with_context(|| format!("cannot write {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The broadcaster's HTTP routes: the stream records and the HLS files.
fn hls_routes(dir: PathBuf) -> axum::Router {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    fn file(path: PathBuf, content_type: &'static str) -> Response {
        match std::fs::read(&path) {
            Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
            Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
        }
    }
    fn safe_id(id: &str) -> bool {
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
    }
    let dir = Arc::new(dir);
    axum::Router::new()
        .route(
            "/v1/video/streams",
            get(|State(dir): State<Arc<PathBuf>>| async move {
                axum::Json(list_streams(&dir).unwrap_or_default()).into_response()
            }),
        )
        .route(
            "/v1/video/streams/{id}",
            get(
                |State(dir): State<Arc<PathBuf>>, UrlPath(id): UrlPath<String>| async move {
                    if !safe_id(&id) {
                        return (StatusCode::BAD_REQUEST, "bad stream id").into_response();
                    }
                    file(dir.join(&id).join("stream.json"), "application/json")
                },
            ),
        )
        .route(
            "/v1/video/streams/{id}/master.m3u8",
            get(
                |State(dir): State<Arc<PathBuf>>, UrlPath(id): UrlPath<String>| async move {
                    if !safe_id(&id) {
                        return (StatusCode::BAD_REQUEST, "bad stream id").into_response();
                    }
                    file(
                        dir.join(&id).join("master.m3u8"),
                        "application/vnd.apple.mpegurl",
                    )
                },
            ),
        )
        .route(
            "/v1/video/streams/{id}/{rung}/{name}",
            get(
                |State(dir): State<Arc<PathBuf>>,
                 UrlPath((id, rung, name)): UrlPath<(String, String, String)>| async move {
                    let known_rung = depin_video::RUNGS.iter().any(|r| r.name == rung);
                    if !safe_id(&id) || !known_rung {
                        return (StatusCode::BAD_REQUEST, "bad stream or rung").into_response();
                    }
                    let base = dir.join(&id).join(&rung);
                    if name == "index.m3u8" {
                        return file(base.join(name), "application/vnd.apple.mpegurl");
                    }
                    match name.strip_suffix(".ts").map(str::parse::<u64>) {
                        Some(Ok(seq)) => file(base.join(format!("{seq}.ts")), "video/mp2t"),
                        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
                    }
                },
            ),
        )
        .with_state(dir)
}

/// The streams kept under `dir`, newest first.
pub fn list_streams(dir: &Path) -> anyhow::Result<Vec<StreamRecord>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries.flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("stream.json"))
            && let Ok(record) = serde_json::from_slice::<StreamRecord>(&bytes)
        {
            out.push(record);
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.started_ms));
    Ok(out)
}
