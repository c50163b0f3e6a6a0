//! `depin coverage`: assert a hotspot, register a device, and read a hotspot's record (with the
//! reason for every report that was not rewarded).

use crate::Ctx;
use crate::txcmd::{TxOpts, parse_address};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use depin_protocol::Action;
use depin_protocol::coverage::verify::Region;
use depin_protocol::coverage::{CoverageTx, Hotspot, HotspotAssertion};

#[derive(Subcommand)]
pub enum CoverageCommand {
    /// Register this provider as a hotspot, or change what it asserts (moving costs the
    /// location fee in Data Credits).
    Assert(AssertArgs),
    /// Register a device you own, whose uplinks its key signs.
    Device(DeviceArgs),
    /// A hotspot's record: location, units this epoch, recent outcomes and their reasons.
    Hotspot { address: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum RegionArg {
    Eu868,
    Us915,
    Au915,
    As923,
    Kr920,
    In865,
}

impl From<RegionArg> for Region {
    fn from(r: RegionArg) -> Region {
        match r {
            RegionArg::Eu868 => Region::Eu868,
            RegionArg::Us915 => Region::Us915,
            RegionArg::Au915 => Region::Au915,
            RegionArg::As923 => Region::As923,
            RegionArg::Kr920 => Region::Kr920,
            RegionArg::In865 => Region::In865,
        }
    }
}

#[derive(Args)]
pub struct AssertArgs {
    #[arg(long, allow_hyphen_values = true)]
    lat: f64,
    #[arg(long, allow_hyphen_values = true)]
    lon: f64,
    /// Antenna gain, dBi.
    #[arg(long, default_value_t = 3.0, allow_hyphen_values = true)]
    gain_dbi: f64,
    /// Antenna elevation above ground, metres.
    #[arg(long, default_value_t = 5, allow_hyphen_values = true)]
    elevation: i32,
    #[arg(long, value_enum, default_value = "eu868")]
    region: RegionArg,
    /// The gateway's EUI, 16 hex digits.
    #[arg(long)]
    gateway_eui: String,
    /// Forward packets only; take no part in beacons and witnesses.
    #[arg(long)]
    data_only: bool,
    #[command(flatten)]
    tx: TxOpts,
}

#[derive(Args)]
pub struct DeviceArgs {
    /// The device address, 8 hex digits.
    #[arg(long)]
    dev_addr: String,
    /// The device's public key (`depin1...`).
    #[arg(long)]
    device_key: String,
    #[command(flatten)]
    tx: TxOpts,
}

fn degrees_e7(value: f64, limit: f64, what: &str) -> anyhow::Result<i32> {
    anyhow::ensure!(
        value.is_finite() && value.abs() <= limit,
        "{what} {value} is outside ±{limit}"
    );
    Ok((value * 1e7).round() as i32)
}

pub fn run(ctx: &Ctx, cmd: CoverageCommand) -> anyhow::Result<()> {
    match cmd {
        CoverageCommand::Assert(args) => {
            // The H3 cell is chosen here, off chain; the chain checks it is one.
            let location = depin_protocol::coverage::verify::location_cell_e7(
                degrees_e7(args.lat, 90.0, "latitude")?,
                degrees_e7(args.lon, 180.0, "longitude")?,
            )
            .context("no H3 cell at that location")?;
            let assertion = HotspotAssertion {
                location,
                gain_dbi_x10: (args.gain_dbi * 10.0).round() as i32,
                elevation_m: args.elevation,
                region: args.region.into(),
                full_capability: !args.data_only,
                gateway_eui: depin_node::config::parse_eui(&args.gateway_eui)
                    .map_err(anyhow::Error::msg)?,
            };
            crate::txcmd::run(ctx, &args.tx, &[], |_| {
                Ok(service(CoverageTx::AssertHotspot(assertion)))
            })
        }
        CoverageCommand::Device(args) => {
            let digits = args.dev_addr.trim_start_matches("0x");
            anyhow::ensure!(digits.len() == 8, "--dev-addr is 8 hex digits");
            let dev_addr = u32::from_str_radix(digits, 16)
                .map_err(|_| anyhow::anyhow!("--dev-addr is 8 hex digits"))?;
            let device_key = parse_address(&args.device_key)?;
            crate::txcmd::run(ctx, &args.tx, &[], |_| {
                Ok(service(CoverageTx::RegisterDevice {
                    dev_addr,
                    device_key,
                }))
            })
        }
        CoverageCommand::Hotspot { address } => {
            let address = parse_address(&address)?;
            let hotspot: Hotspot = ctx
                .client
                .get(&format!("/v1/coverage/hotspots/{address}"))?;
            ctx.out.emit(&hotspot, || Ok(human(&hotspot)))
        }
    }
}

fn service(tx: CoverageTx) -> Action {
    Action::Service {
        service: depin_protocol::coverage::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

fn human(h: &Hotspot) -> String {
    let mut text = crate::output::rows(&[
        ("hotspot", h.info.address.to_string()),
        (
            "location",
            h.info.location.map_or("none".into(), |c| format!("{c:x}")),
        ),
        ("region", crate::output::word(&h.info.region)),
        (
            "gain",
            format!("{:.1} dBi", f64::from(h.info.gain_dbi_x10) / 10.0),
        ),
        ("gateway", format!("{:016x}", h.gateway_eui)),
        (
            "this epoch",
            format!(
                "epoch {}: beacon units {:.2}, witness units {:.2}, {} packets ({} DC)",
                h.units_epoch,
                h.beacon_units_ppm as f64 / 1e6,
                h.witness_units_ppm as f64 / 1e6,
                h.packets,
                h.data_dc
            ),
        ),
    ]);
    text.push_str("\nrecent reports:\n");
    for o in h.recent.iter().rev() {
        let verdict = match &o.rejection {
            None => format!("rewarded, {:.2} units", o.units_ppm as f64 / 1e6),
            Some(reason) => format!("not rewarded: {reason}"),
        };
        text.push_str(&format!(
            "  height {:>8}  {:<7}  beaconer {}  {verdict}\n",
            o.verified_height, o.kind, o.beaconer
        ));
    }
    text.push_str("\nall outcomes:\n");
    for (code, n) in &h.tally {
        text.push_str(&format!("  {code:<32} {n}\n"));
    }
    text
}
