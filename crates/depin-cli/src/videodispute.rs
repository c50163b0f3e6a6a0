//! `depin video dispute STREAM SEQ`: posts the signed commitment of a rendition this
//! machine's broadcaster found wrong (kept by `publish` under `<dir>/<stream>/evidence/`)
//! with a dispute bond, serves the source and the renditions to the drawn verifiers at the
//! evidence URL it names, and waits for the verdict.

use crate::Ctx;
use crate::keycmd::read_key;
use crate::storagecmd::runtime;
use crate::txcmd::{Network, send};
use crate::videopublish::Evidence;
use anyhow::{Context, bail};
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use depin_protocol::Action;
use depin_protocol::video::{Dispute, VideoTx, dispute_id};
use depin_types::{Address, Signature};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct DisputeArgs {
    /// The stream id `publish` printed.
    pub stream: String,
    /// The segment's sequence number.
    pub seq: u64,
    /// The orchestrator disputed (needed when more than one failed on that segment).
    #[arg(long)]
    pub orchestrator: Option<String>,
    /// The rendition disputed (default: the one the broadcaster's check named).
    #[arg(long)]
    pub rung: Option<String>,
    #[arg(long, default_value = "./video-streams")]
    pub dir: PathBuf,
    /// Where the verifiers fetch the evidence; it must be reachable from them.
    #[arg(long, default_value = "127.0.0.1:7381")]
    pub evidence_listen: SocketAddr,
    /// Seconds to serve the evidence and wait for the verdict.
    #[arg(long, default_value_t = 600)]
    pub wait_s: u64,
    /// The broadcaster's key (it pays the bond).
    #[arg(long)]
    pub key: PathBuf,
}

pub fn dispute(ctx: &Ctx, args: DisputeArgs) -> anyhow::Result<()> {
    let evidence_root = args.dir.join(&args.stream).join("evidence");
    let orchestrator: Option<Address> = args
        .orchestrator
        .as_deref()
        .map(|a| {
            a.parse()
                .map_err(|e| anyhow::anyhow!("--orchestrator {a} is not an address: {e}"))
        })
        .transpose()?;
    let prefix = format!("{}-", args.seq);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&evidence_root)
        .with_context(|| {
            format!(
                "no evidence kept for stream {} in {}",
                args.stream,
                evidence_root.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && orchestrator.is_none_or(|o| name == format!("{prefix}{o}"))
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    let dir = match found.as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "no rendition of segment {} failed with a signed commitment: nothing to dispute",
            args.seq
        ),
        _ => bail!(
            "more than one orchestrator failed on segment {}: name one with --orchestrator",
            args.seq
        ),
    };
    let evidence: Evidence = serde_json::from_slice(
        &std::fs::read(dir.join("evidence.json")).context("cannot read evidence.json")?,
    )
    .context("evidence.json is damaged")?;
    let rung = args.rung.clone().unwrap_or(evidence.rung.clone());
    if !evidence
        .commitment
        .renditions
        .iter()
        .any(|r| r.rung == rung)
    {
        bail!("the commitment has no {rung} rendition");
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&evidence.signature, &mut signature)
        .context("the kept signature is not 64 bytes of hex")?;
    let key = read_key(&args.key)?;
    let network = Network::fetch(&ctx.client)?;
    let rt = runtime()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(args.evidence_listen))
        .with_context(|| format!("cannot listen on {}", args.evidence_listen))?;
    let evidence_url = format!("http://{}/evidence", listener.local_addr()?);
    let served = dir.clone();
    let files: Vec<String> = [format!("{rung}.ts"), "source.ts".into()].into();
    rt.spawn(async move {
        let app = axum::Router::new().route(
            "/evidence/{file}",
            axum::routing::get(move |UrlPath(file): UrlPath<String>| async move {
                if !files.contains(&file) {
                    return StatusCode::NOT_FOUND.into_response();
                }
                match tokio::fs::read(served.join(&file)).await {
                    Ok(bytes) => ([(header::CONTENT_TYPE, "video/mp2t")], bytes).into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        );
        let _ = axum::serve(listener, app).await;
    });
    let id = dispute_id(&network.chain_id, &evidence.commitment, &rung);
    let tx = VideoTx::Dispute {
        commitment: evidence.commitment.clone(),
        signature: Signature(signature),
        rung: rung.clone(),
        evidence_url: evidence_url.clone(),
    };
    send(
        &ctx.client,
        &network,
        &key,
        None,
        Action::Service {
            service: depin_protocol::video::SERVICE,
            payload: depin_types::encode(&tx),
        },
        true,
    )?;
    eprintln!("dispute {id} opened; serving the evidence at {evidence_url} until it is decided");
    let deadline = Instant::now() + Duration::from_secs(args.wait_s);
    let decided = loop {
        let d: Dispute = ctx.client.get(&format!("/v1/video/disputes/{id}"))?;
        if d.outcome != "open" {
            break d;
        }
        if Instant::now() > deadline {
            bail!("dispute {id} is still open after {} s", args.wait_s);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    ctx.out.emit(&decided, || Ok(words(&decided)))
}

fn words(d: &Dispute) -> String {
    let outcome = match d.outcome.as_str() {
        "upheld" => "upheld: the orchestrator was slashed and the bond returned",
        "rejected" => {
            "rejected: the rendition was found faithful and the bond paid to the orchestrator"
        }
        "expired" => "expired: too few verifiers attested; the bond was returned",
        other => other,
    };
    let votes: Vec<String> = d
        .verifiers
        .iter()
        .map(|v| {
            format!(
                "  {} {}",
                v.verifier,
                match v.guilty {
                    Some(true) => "wrong",
                    Some(false) => "faithful",
                    None => "silent",
                }
            )
        })
        .collect();
    let mut text = crate::output::rows(&[
        ("dispute", d.id.to_string()),
        ("segment", format!("{} ({})", d.commitment.seq, d.rung)),
        ("orchestrator", d.commitment.orchestrator.to_string()),
        ("outcome", outcome.to_string()),
        ("verifiers", String::new()),
    ]);
    text.push_str(&votes.join("\n"));
    text
}
