//! A video provider drawn to verify a dispute: fetches the disputed rendition and its source
//! from the broadcaster's evidence URL (each checked against the committed hashes), makes
//! its own rendition of the rung from the source, and attests on chain whether the disputed
//! one is a faithful transcode: the rung's size, the source's frames, the committed pixels,
//! and SSIM against the source within the margin of its own rendition's.

use crate::Node;
use depin_protocol::video::{Dispute, VideoTx, keys};
use depin_types::Hash;
use depin_video::{Ffmpeg, Ladder, Opinion, RUNGS, check_rendition};
use std::collections::HashSet;
use std::sync::Arc;

/// Largest evidence file fetched: a segment's limit.
const MAX_EVIDENCE_BYTES: u64 = super::wire::MAX_SEGMENT_BYTES as u64;

/// Attests every dispute this node was drawn for and has not attested yet.
pub(crate) async fn attest_duties(node: &Arc<Node>, ffmpeg: &Ffmpeg, tried: &mut HashSet<Hash>) {
    let service = depin_protocol::video::SERVICE;
    let me = node.key.address();
    let duties: Vec<Hash> = node
        .chain()
        .service_record(service, &keys::duties(&me))
        .ok()
        .flatten()
        .unwrap_or_default();
    for id in duties {
        if !tried.insert(id) {
            continue;
        }
        let Ok(Some(dispute)) = node
            .chain()
            .service_record::<Dispute>(service, &keys::dispute(&id))
        else {
            continue;
        };
        let (agent, ff, threads) = (node.http.clone(), ffmpeg.clone(), node.config.video_threads);
        let work = node
            .config
            .data_dir
            .join("video")
            .join("disputes")
            .join(id.to_hex());
        let verdict = tokio::task::spawn_blocking(move || {
            let verdict = judge_dispute(&agent, &ff, threads, &dispute, &work);
            let _ = std::fs::remove_dir_all(&work);
            verdict
        })
        .await
        .unwrap_or_else(|e| Err(format!("the check panicked: {e}")));
        let guilty = match verdict {
            Ok((guilty, why)) => {
                tracing::info!(dispute = %id, guilty, why, "video dispute checked");
                guilty
            }
            Err(why) => {
                // Evidence that cannot be had or does not match the commitment proves nothing.
                tracing::warn!(dispute = %id, why, "video dispute evidence unusable: attesting faithful");
                false
            }
        };
        let tx = VideoTx::Attest {
            dispute: id,
            guilty,
        };
        if !crate::own_tx::submit_and_wait(node, service, depin_types::encode(&tx)).await {
            tried.remove(&id);
        }
    }
}

fn fetch(
    agent: &ureq::Agent,
    url: &str,
    expected: &Hash,
    path: &std::path::Path,
) -> Result<(), String> {
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_EVIDENCE_BYTES)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    if Hash::of(&bytes) != *expected {
        return Err(format!("{url} is not the committed file"));
    }
    std::fs::write(path, &bytes).map_err(|e| e.to_string())
}

/// Whether the disputed rendition is wrong, and why.
fn judge_dispute(
    agent: &ureq::Agent,
    ffmpeg: &Ffmpeg,
    threads: u32,
    dispute: &Dispute,
    work: &std::path::Path,
) -> Result<(bool, String), String> {
    let c = &dispute.commitment;
    let commit = c
        .renditions
        .iter()
        .find(|r| r.rung == dispute.rung)
        .ok_or("the commitment has no such rung")?;
    let rung = *RUNGS
        .iter()
        .find(|r| r.name == dispute.rung)
        .ok_or("not a rung of the ladder")?;
    std::fs::create_dir_all(work.join("mine")).map_err(|e| e.to_string())?;
    let base = dispute.evidence_url.trim_end_matches('/');
    let source = work.join("source.ts");
    fetch(agent, &format!("{base}/source.ts"), &c.source_hash, &source)?;
    let disputed = work.join("disputed.ts");
    fetch(
        agent,
        &format!("{base}/{}.ts", rung.name),
        &commit.hash,
        &disputed,
    )?;
    let source_facts = ffmpeg.probe(&source).map_err(|e| e.to_string())?;
    let facts = match ffmpeg.probe(&disputed) {
        Ok(f) => f,
        Err(e) => return Ok((true, format!("the rendition does not decode: {e}"))),
    };
    if let Err(m) = check_rendition(&rung, &source_facts, &facts) {
        return Ok((true, m.to_string()));
    }
    if facts.pixels() != commit.pixels {
        return Ok((
            true,
            format!(
                "{} pixels decoded, {} committed",
                facts.pixels(),
                commit.pixels
            ),
        ));
    }
    let settings = depin_video::EncoderSettings {
        threads,
        ..Default::default()
    };
    let mine = ffmpeg
        .transcode(&source, &Ladder(vec![rung]), &settings, &work.join("mine"))
        .map_err(|e| e.to_string())?;
    let mine = mine.first().ok_or("no rendition made")?;
    // Settings of the stream are not on chain: only a clearly worse picture is guilty.
    match ffmpeg
        .second_opinion(&rung, &source, &disputed, &mine.path, false)
        .map_err(|e| e.to_string())?
    {
        Opinion::FirstWorse {
            ssim_first,
            ssim_second,
        } => Ok((
            true,
            format!(
                "SSIM {ssim_first:.4} against the source, a faithful transcode {ssim_second:.4}"
            ),
        )),
        _ => Ok((false, "a faithful transcode".into())),
    }
}
