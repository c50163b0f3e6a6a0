//! `depin video …`: a broadcaster's ticket funds. `fund` locks Data Credits as the deposit
//! that pays winning tickets and the reserve that backs them once the deposit is spent;
//! `unlock` starts the period after which `withdraw` takes them back; `broadcaster` shows
//! what an address has locked and whether orchestrators should work for it. `publish` runs
//! a live stream through the network (`videopublish`); `streams` and `status` read what
//! this machine's streams did.

use crate::Ctx;
use crate::keycmd::read_key;
use crate::output;
use crate::txcmd::{Network, TxOpts, send};
use clap::Subcommand;
use depin_protocol::Action;
use depin_protocol::video::{Broadcaster, VideoTx};
use depin_types::Address;

#[derive(Subcommand)]
pub enum VideoCommand {
    /// Lock Data Credits as the deposit that pays winning tickets and the reserve behind it
    /// (cancels an unlock in progress, lifts a bar once the deposit grows).
    Fund {
        /// Data Credits added to the deposit.
        #[arg(long, default_value_t = 0)]
        deposit: u128,
        /// Data Credits added to the reserve.
        #[arg(long, default_value_t = 0)]
        reserve: u128,
        #[command(flatten)]
        tx: TxOpts,
    },
    /// Start the unlock period; after it, `withdraw` returns the deposit and reserve.
    Unlock {
        #[command(flatten)]
        tx: TxOpts,
    },
    /// Take back the deposit and reserve once the unlock period is over.
    Withdraw {
        #[command(flatten)]
        tx: TxOpts,
    },
    /// Stream a file, a URL or an RTMP push through paid orchestrators and serve it as HLS.
    Publish(crate::videopublish::PublishArgs),
    /// Dispute a rendition a stream's checks found wrong: posts the orchestrator's signed
    /// commitment with a bond and serves the evidence until drawn verifiers decide.
    Dispute(crate::videodispute::DisputeArgs),
    /// The orchestrators a stream may be sent to: price, sessions, stake, encoders, build.
    Orchestrators,
    /// The streams published from this machine.
    Streams {
        /// Where `publish` keeps streams.
        #[arg(long, default_value = "./video-streams")]
        dir: std::path::PathBuf,
    },
    /// One stream, segment by segment: orchestrator, check, latency and price paid.
    Status {
        /// The stream id `publish` printed.
        id: String,
        #[arg(long, default_value = "./video-streams")]
        dir: std::path::PathBuf,
    },
    /// A broadcaster's deposit, reserve, unlock, reserve claims and standing.
    Broadcaster {
        /// Its address (`depin1...`).
        address: String,
    },
}

pub fn run(ctx: &Ctx, cmd: VideoCommand) -> anyhow::Result<()> {
    let (tx, action) = match cmd {
        VideoCommand::Publish(args) => return crate::videopublish::publish(ctx, args),
        VideoCommand::Dispute(args) => return crate::videodispute::dispute(ctx, args),
        VideoCommand::Streams { dir } => return streams(ctx, &dir),
        VideoCommand::Orchestrators => return orchestrators(ctx),
        VideoCommand::Status { id, dir } => return status(ctx, &dir, &id),
        VideoCommand::Broadcaster { address } => {
            let address: Address = address
                .parse()
                .map_err(|e| anyhow::anyhow!("{address} is not an address: {e}"))?;
            return show(ctx, &address);
        }
        VideoCommand::Fund {
            deposit,
            reserve,
            tx,
        } => (
            tx,
            VideoTx::FundDeposit {
                deposit_dc: deposit,
                reserve_dc: reserve,
            },
        ),
        VideoCommand::Unlock { tx } => (tx, VideoTx::Unlock),
        VideoCommand::Withdraw { tx } => (tx, VideoTx::Withdraw),
    };
    let key = read_key(&tx.key)?;
    let network = Network::fetch(&ctx.client)?;
    send(
        &ctx.client,
        &network,
        &key,
        tx.nonce,
        Action::Service {
            service: depin_protocol::video::SERVICE,
            payload: depin_types::encode(&action),
        },
        !tx.no_wait,
    )?;
    show(ctx, &key.address())
}

fn show(ctx: &Ctx, address: &Address) -> anyhow::Result<()> {
    let b: Broadcaster = ctx
        .client
        .get(&format!("/v1/video/broadcasters/{address}"))?;
    ctx.out.emit(&b, || {
        let mut rows = vec![
            ("broadcaster", address.to_string()),
            ("deposit", format!("{} DC", b.deposit_dc)),
            ("reserve", format!("{} DC", b.reserve_dc)),
            (
                "withdrawal",
                b.withdraw_from
                    .map_or("locked (no unlock started)".into(), |h| {
                        format!("from height {h}")
                    }),
            ),
            (
                "standing",
                if b.barred {
                    "barred: a winning ticket found its deposit spent; fund the deposit again"
                        .into()
                } else {
                    "good".into()
                },
            ),
            (
                "paid",
                format!(
                    "{} DC over {} winning tickets",
                    b.paid_dc, b.tickets_redeemed
                ),
            ),
        ];
        if let Some(freeze) = &b.freeze {
            rows.push((
                "reserve claims",
                format!(
                    "{} orchestrator(s), {} DC owed, paid at height {}",
                    freeze.claims.len(),
                    freeze.claims.iter().map(|c| c.owed_dc).sum::<u128>(),
                    freeze.until
                ),
            ));
        }
        Ok(output::rows(&rows))
    })
}

fn streams(ctx: &Ctx, dir: &std::path::Path) -> anyhow::Result<()> {
    let list = crate::videopublish::list_streams(dir)?;
    ctx.out.emit(&list, || {
        if list.is_empty() {
            return Ok(format!("no streams under {}", dir.display()));
        }
        let mut text = format!(
            "{:<16}  {:<7}  {:>8}  {:>6}  {:<23}  {}\n",
            "stream", "state", "segments", "failed", "started", "ladder"
        );
        for s in &list {
            let failed = s.segments.iter().filter(|g| g.check != "ok").count();
            text.push_str(&format!(
                "{:<16}  {:<7}  {:>8}  {:>6}  {:<23}  {}\n",
                s.id,
                s.state,
                s.segments.len(),
                failed,
                output::timestamp(s.started_ms),
                s.ladder
            ));
        }
        Ok(text)
    })
}

fn status(ctx: &Ctx, dir: &std::path::Path, id: &str) -> anyhow::Result<()> {
    let Some(record) = crate::videopublish::list_streams(dir)?
        .into_iter()
        .find(|s| s.id == id)
    else {
        anyhow::bail!("no stream {id} under {}", dir.display());
    };
    ctx.out.emit(&record, || {
        let mut text = output::rows(&[
            ("stream", record.id.clone()),
            ("state", record.state.clone()),
            ("source", record.source.clone()),
            ("ladder", record.ladder.clone()),
            ("playback", record.playback_url.clone()),
            ("error", output::or_dash(record.error.as_ref())),
        ]);
        text.push_str(&format!(
            "\n{:>5}  {:<64}  {:>8}  {:>12}  {}\n",
            "seq", "orchestrator", "latency", "paid (DC)", "check"
        ));
        for s in &record.segments {
            text.push_str(&format!(
                "{:>5}  {:<64}  {:>6} ms  {:>12.6}  {}\n",
                s.seq,
                output::or_dash(s.orchestrator.as_ref()),
                s.latency_ms,
                s.paid_nano_dc as f64 / 1e9,
                s.check
            ));
            for t in &s.failed_tries {
                text.push_str(&format!("       tried {}: {}\n", t.orchestrator, t.reason));
            }
            if let Some(o) = &s.second_opinion {
                let verdict = match o.verdict.as_str() {
                    "agree" => "agrees",
                    "primary_dropped" => "found the primary worse",
                    "second_dropped" => "was found worse",
                    _ => "could not decide",
                };
                text.push_str(&format!(
                    "       second opinion {} {verdict}: {}\n",
                    o.orchestrator, o.detail
                ));
            }
        }
        for d in &record.dropped {
            text.push_str(&format!("dropped {}: {}\n", d.orchestrator, d.reason));
        }
        Ok(text)
    })
}

fn orchestrators(ctx: &Ctx) -> anyhow::Result<()> {
    let list: Vec<depin_node::video::OrchestratorView> =
        ctx.client.get("/v1/video/orchestrators")?;
    ctx.out.emit(&list, || {
        if list.is_empty() {
            return Ok("no orchestrator has advertised".into());
        }
        let mut text = format!(
            "{:<64}  {:>10}  {:>8}  {:>5}  {:<20}  {}\n",
            "orchestrator", "DC/Gpixel", "sessions", "stake", "encoders", "ffmpeg"
        );
        for o in &list {
            text.push_str(&format!(
                "{:<64}  {:>10}  {:>8}  {:>5}  {:<20}  {}\n",
                o.address,
                o.price_dc_per_gigapixel,
                o.sessions,
                o.stake_weight,
                o.encoders.join(","),
                o.build
            ));
        }
        Ok(text)
    })
}
