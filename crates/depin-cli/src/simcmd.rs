//! `depin sim coverage`: a world of hotspots, devices and cheaters run through the real
//! packet-forwarder protocol and the real coverage rules (see `depin_coverage::sim`).

use crate::output::Printer;
use clap::{Args, Subcommand};
use depin_coverage::sim::{SimConfig, SimReport, geojson, run};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Hotspots beaconing and witnessing over loopback UDP, verified and paid by the protocol.
    Coverage(CoverageArgs),
}

#[derive(Args)]
pub struct CoverageArgs {
    /// Hotspots in the world.
    #[arg(long, default_value_t = 100)]
    hotspots: usize,
    /// The same seed builds the same world.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction of hotspots that cheat (spoofed location, impossible signal, collusion ring,
    /// too close), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    cheaters: f64,
    /// Beacon rounds; rewards start in the second (reciprocity).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Devices sending one packet a round (default: one per four hotspots).
    #[arg(long)]
    devices: Option<usize>,
    /// Where to write the GeoJSON map of hotspots and hexes.
    #[arg(long, default_value = "coverage-map.geojson")]
    map: PathBuf,
}

pub fn run_sim(out: Printer, cmd: SimCommand) -> anyhow::Result<()> {
    let SimCommand::Coverage(args) = cmd;
    anyhow::ensure!(args.hotspots >= 2, "a world needs at least 2 hotspots");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.cheaters),
        "--cheaters is a fraction from 0 to 1"
    );
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let config = SimConfig {
        hotspots: args.hotspots,
        seed: args.seed,
        cheaters: args.cheaters,
        rounds: args.rounds,
        devices: args.devices.unwrap_or(args.hotspots / 4),
    };
    let runtime = crate::storagecmd::runtime()?;
    let json = out.json;
    let report = runtime
        .block_on(run(&config, &|line: &str| {
            if !json {
                eprintln!("{line}");
            }
        }))
        .map_err(anyhow::Error::msg)?;
    let map = serde_json::to_vec_pretty(&geojson(&report))?;
    std::fs::write(&args.map, map)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.map.display()))?;
    let value = serde_json::json!({
        "map": args.map,
        "report": report,
    });
    out.emit(&value, || Ok(human(&report, &args.map)))
}

fn human(report: &SimReport, map: &std::path::Path) -> String {
    let mut text = format!(
        "{} hotspots, {} beacons transmitted, {} uplinks pushed over UDP, {} transactions ({} refused), {:.1} s\n\n",
        report.hotspots.len(),
        report.beacons_transmitted,
        report.uplinks,
        report.transactions,
        report.refused_transactions.values().sum::<u64>(),
        report.seconds
    );
    text.push_str("outcome                              count\n");
    for (code, n) in &report.outcomes {
        text.push_str(&format!("{code:<36} {n:>6}\n"));
    }
    text.push_str("\nbehaviour            hotspots   reward (base units)   rejected  rewarded\n");
    for (behaviour, reward) in &report.reward_by_behaviour {
        let count = report
            .hotspots
            .iter()
            .filter(|h| h.behaviour == *behaviour)
            .count();
        let tally = report.outcomes_by_behaviour.get(behaviour);
        let rewarded: u64 = tally
            .map(|t| {
                t.iter()
                    .filter(|(k, _)| k.ends_with("_rewarded"))
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0);
        let rejected: u64 = tally
            .map(|t| {
                t.iter()
                    .filter(|(k, _)| !k.ends_with("_rewarded"))
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0);
        let name = serde_json::to_value(behaviour)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        text.push_str(&format!(
            "{name:<20} {count:>8}   {reward:>19}   {rejected:>8}  {rewarded:>8}\n"
        ));
    }
    if !report.refused_transactions.is_empty() {
        text.push_str("\ntransactions refused: ");
        let parts: Vec<String> = report
            .refused_transactions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        text.push_str(&parts.join(", "));
        text.push('\n');
    }
    let e = &report.epoch;
    text.push_str(&format!(
        "\nepoch {}: allocation {}, beacons {}, witnesses {}, data {} (of which {} flowed back), {} DC of packets paid\nmap: {}\n",
        e.epoch,
        e.allocation.0,
        e.beacon_pool.0,
        e.witness_pool.0,
        e.data_pool.0,
        e.data_flowback.0,
        report.packets_paid,
        map.display()
    ));
    text
}
