//! The coverage service module: hotspot assertions (with a fee on moves), beacon and witness
//! reports held until their entropy's window closes and then verified together (so the order
//! transactions landed in does not matter), device registration and packet receipts paid in
//! Data Credits once per packet, and the epoch split of the coverage emission.

use super::rewards::{
    CoverageShares, EpochUnits, beaconer_units_ppm, split_epoch, witness_units_ppm,
};
use super::types::*;
use super::verify::{
    BeaconReport, Entropy, HotspotInfo, Rejection, VerifiedBeacon, check_beacon, check_reciprocity,
    check_witness, is_location_cell,
};
use crate::block::Event;
use crate::error::TxError;
use crate::params::Genesis;
use crate::service::{ServiceContext, ServiceEvent, ServiceModule, data_credits_to_tokens};
use crate::state::StateError;
use depin_types::{Address, Amount, Hash, ServiceKind};
use std::collections::BTreeMap;

/// The pure coverage rules, registered as the `coverage` service.
#[derive(Debug, Default, Clone, Copy)]
pub struct CoverageModule;

fn reject(code: &'static str, reason: impl Into<String>) -> TxError {
    TxError::ServiceRejected {
        service: crate::coverage::SERVICE,
        code,
        reason: reason.into(),
    }
}

impl ServiceModule for CoverageModule {
    fn service(&self) -> ServiceKind {
        crate::coverage::SERVICE
    }

    fn event_json(&self, data: &[u8]) -> Option<serde_json::Value> {
        crate::service::event_json::<CoverageEvent>(data)
    }

    fn load_params(
        &self,
        genesis: &Genesis,
    ) -> Result<std::sync::Arc<dyn std::any::Any + Send + Sync>, crate::params::GenesisError> {
        crate::services::load_params::<CoverageParams>(genesis)
    }

    fn devnet(&self) -> crate::services::DevnetDefaults {
        crate::services::DevnetDefaults::new(2000, 10, &CoverageParams::devnet())
    }

    fn max_payload_bytes(&self) -> usize {
        64 * 1024
    }

    fn apply(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        sender: Address,
        payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        let tx: CoverageTx = depin_types::decode_bounded(payload, self.max_payload_bytes())
            .map_err(|e| reject("malformed_coverage_tx", e.to_string()))?;
        match tx {
            CoverageTx::AssertHotspot(assertion) => assert_hotspot(ctx, sender, assertion),
            CoverageTx::Beacon(report) => receive_beacon(ctx, sender, report),
            CoverageTx::Witness(report) => receive_witness(ctx, sender, report),
            CoverageTx::RegisterDevice {
                dev_addr,
                device_key,
            } => register_device(ctx, sender, dev_addr, device_key),
            CoverageTx::PacketReceipts(receipts) => packet_receipts(ctx, sender, receipts),
            CoverageTx::CommitReceipts { root } => commit_receipts(ctx, sender, root),
        }
    }

    fn end_block(&self, ctx: &mut ServiceContext<'_, '_>) -> Result<(), TxError> {
        let params = ctx.params::<CoverageParams>()?;
        let mut live: Vec<EntropyRecord> = ctx.get_decoded(keys::LIVE_ENTROPY)?.unwrap_or_default();
        let before = live.len();
        let closes_ms = params.poc.entropy_lifetime_ms + params.report_grace_ms;
        let now = ctx.block.timestamp_ms;
        let (due, kept): (Vec<EntropyRecord>, Vec<EntropyRecord>) = live
            .into_iter()
            .partition(|e| now > e.published_ms.saturating_add(closes_ms));
        live = kept;
        for entropy in &due {
            verify_entropy(ctx, entropy)?;
        }
        let interval = ctx
            .params::<CoverageParams>()?
            .entropy_interval_blocks
            .max(1);
        if ctx.block.height.is_multiple_of(interval) {
            live.push(EntropyRecord {
                value: Hash::tagged(
                    "depin coverage entropy",
                    &[ctx.block.parent.as_bytes(), &ctx.block.height.to_le_bytes()],
                ),
                published_ms: now,
                height: ctx.block.height,
            });
        }
        if live.len() != before || !due.is_empty() {
            ctx.put_encoded(keys::LIVE_ENTROPY, &live);
        }
        Ok(())
    }

    fn epoch_rewards(
        &self,
        ctx: &mut ServiceContext<'_, '_>,
        epoch: u64,
        allocation: Amount,
    ) -> Result<Option<Vec<(Address, Amount)>>, TxError> {
        Ok(Some(split_coverage_epoch(ctx, epoch, allocation)?))
    }
}

fn load_hotspot(
    ctx: &ServiceContext<'_, '_>,
    address: &Address,
) -> Result<Option<Hotspot>, StateError> {
    ctx.get_decoded(&keys::hotspot(address))
}

fn assert_hotspot(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    assertion: HotspotAssertion,
) -> Result<Vec<Event>, TxError> {
    let provider = ctx.provider(&sender)?;
    if !provider.is_some_and(|p| p.offers(crate::coverage::SERVICE)) {
        return Err(reject(
            "not_a_coverage_provider",
            "register as a provider offering coverage first",
        ));
    }
    if !is_location_cell(assertion.location) {
        return Err(reject(
            "bad_location",
            format!(
                "{:x} is not an H3 cell at resolution 12",
                assertion.location
            ),
        ));
    }
    let location = assertion.location;
    if !(-100..=200).contains(&assertion.gain_dbi_x10) {
        return Err(reject(
            "bad_gain",
            format!(
                "antenna gain {} dBi×10 outside -100..=200",
                assertion.gain_dbi_x10
            ),
        ));
    }
    if !(-500..=9_000).contains(&assertion.elevation_m) {
        return Err(reject(
            "bad_elevation",
            format!("elevation {} m outside -500..=9000", assertion.elevation_m),
        ));
    }
    if assertion.gateway_eui == 0 {
        return Err(reject(
            "bad_gateway_eui",
            "the gateway EUI must not be zero",
        ));
    }
    let gateway_key = keys::gateway(assertion.gateway_eui);
    if let Some(owner) = ctx.get_decoded::<Address>(&gateway_key)?
        && owner != sender
    {
        return Err(reject(
            "gateway_taken",
            format!(
                "gateway {:016x} belongs to hotspot {owner}",
                assertion.gateway_eui
            ),
        ));
    }
    let existing = load_hotspot(ctx, &sender)?;
    let mut fee_dc = 0u64;
    let hotspot = match existing {
        None => {
            let count: u64 = ctx.get_decoded(keys::HOTSPOT_COUNT)?.unwrap_or(0);
            ctx.put_encoded(&keys::hotspot_number(count), &sender);
            ctx.put_encoded(keys::HOTSPOT_COUNT, &count.saturating_add(1));
            Hotspot {
                info: hotspot_info(sender, &assertion, Some(location)),
                gateway_eui: assertion.gateway_eui,
                location_changes: 0,
                last_beacon_ms: None,
                last_valid_beacon_ms: None,
                last_valid_witness_ms: None,
                units_epoch: ctx.epoch(),
                beacon_units_ppm: 0,
                witness_units_ppm: 0,
                data_dc: 0,
                packets: 0,
                recent: Vec::new(),
                tally: BTreeMap::new(),
                receipt_commitments: Vec::new(),
                split_epoch: None,
            }
        }
        Some(mut hotspot) => {
            if hotspot.info.location != Some(location) {
                fee_dc = ctx.params::<CoverageParams>()?.location_fee_dc;
                ctx.burn_data_credits(sender, u128::from(fee_dc))?;
                hotspot.location_changes = hotspot.location_changes.saturating_add(1);
                // A hotspot that moved starts proving coverage afresh.
                hotspot.last_valid_beacon_ms = None;
                hotspot.last_valid_witness_ms = None;
            }
            if hotspot.gateway_eui != assertion.gateway_eui {
                ctx.delete_record(&keys::gateway(hotspot.gateway_eui));
            }
            hotspot.info = hotspot_info(sender, &assertion, Some(location));
            hotspot.gateway_eui = assertion.gateway_eui;
            hotspot
        }
    };
    ctx.put_encoded(&gateway_key, &sender);
    ctx.put_encoded(&keys::hotspot(&sender), &hotspot);
    Ok(vec![
        CoverageEvent::HotspotAsserted {
            cell: location,
            gateway_eui: assertion.gateway_eui,
            fee_dc,
        }
        .to_event(),
    ])
}

/// The live entropy `value`, or why a report naming it is refused.
fn live_entropy(ctx: &ServiceContext<'_, '_>, value: &Hash) -> Result<EntropyRecord, TxError> {
    let live: Vec<EntropyRecord> = ctx.get_decoded(keys::LIVE_ENTROPY)?.unwrap_or_default();
    live.into_iter().find(|e| e.value == *value).ok_or_else(|| {
        reject(
            "unknown_entropy",
            format!(
                "entropy {value} is not live: never published, or its reports were verified already"
            ),
        )
    })
}

fn registered_hotspot(ctx: &ServiceContext<'_, '_>, who: &Address) -> Result<Hotspot, TxError> {
    load_hotspot(ctx, who)?
        .ok_or_else(|| reject("unknown_hotspot", format!("{who} is not a hotspot")))
}

/// Adds `beaconer` to the entropy's pending index and returns its pending reports. The index
/// holds at most `max_pending_beacons_per_entropy` beaconers.
fn pending_for(
    ctx: &mut ServiceContext<'_, '_>,
    entropy: &Hash,
    beaconer: &Address,
) -> Result<PendingBeacon, TxError> {
    match ctx.get_decoded::<PendingBeacon>(&keys::pending(entropy, beaconer))? {
        Some(pending) => Ok(pending),
        None => {
            let index_key = keys::pending_index(entropy);
            let mut index: Vec<Address> = ctx.get_decoded(&index_key)?.unwrap_or_default();
            let max = ctx
                .params::<CoverageParams>()?
                .max_pending_beacons_per_entropy as usize;
            if index.len() >= max {
                return Err(reject(
                    "too_many_beacons",
                    format!("{max} beacons of this entropy are pending already"),
                ));
            }
            index.push(*beaconer);
            ctx.put_encoded(&index_key, &index);
            Ok(PendingBeacon::default())
        }
    }
}

const MAX_BEACON_PAYLOAD_BYTES: usize = 64;

/// The checks every report passes before it is held: sent by the hotspot it names, a payload
/// no longer than a beacon's, and an entropy that is still live.
fn admit_report(
    ctx: &ServiceContext<'_, '_>,
    sender: Address,
    reporter: Address,
    role: &str,
    payload: &[u8],
    entropy: &Hash,
) -> Result<EntropyRecord, TxError> {
    if reporter != sender {
        return Err(reject(
            "sender_mismatch",
            format!("a {role} report is sent by the hotspot it names"),
        ));
    }
    if payload.len() > MAX_BEACON_PAYLOAD_BYTES {
        return Err(reject(
            "payload_too_large",
            "a beacon payload is at most 64 bytes",
        ));
    }
    registered_hotspot(ctx, &sender)?;
    live_entropy(ctx, entropy)
}

fn receive_beacon(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    report: BeaconReport,
) -> Result<Vec<Event>, TxError> {
    let entropy = admit_report(
        ctx,
        sender,
        report.beaconer,
        "beacon",
        &report.payload,
        &report.entropy,
    )?;
    let mut pending = pending_for(ctx, &entropy.value, &sender)?;
    if pending.beacon.is_some() {
        return Err(reject(
            "duplicate_beacon",
            format!("a beacon of entropy {} is already reported", entropy.value),
        ));
    }
    pending.beacon = Some(report);
    ctx.put_encoded(&keys::pending(&entropy.value, &sender), &pending);
    Ok(vec![
        CoverageEvent::BeaconReported {
            entropy: entropy.value,
        }
        .to_event(),
    ])
}

fn receive_witness(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    report: super::verify::WitnessReport,
) -> Result<Vec<Event>, TxError> {
    let entropy = admit_report(
        ctx,
        sender,
        report.witness,
        "witness",
        &report.payload,
        &report.entropy,
    )?;
    let beaconer = report.beaconer;
    if !load_hotspot(ctx, &beaconer)?.is_some_and(|h| h.info.full_capability) {
        return Err(reject(
            "unknown_beaconer",
            format!("{beaconer} is not a hotspot that beacons"),
        ));
    }
    let mut pending = pending_for(ctx, &entropy.value, &beaconer)?;
    // The beacon's report reveals its local randomness: a witness reported after it could
    // have copied the payload from the chain instead of hearing it.
    if pending.beacon.is_some() {
        return Err(reject(
            "witness_after_beacon",
            format!("{beaconer}'s beacon report is on chain already: witnesses report before it"),
        ));
    }
    if pending.witnesses.iter().any(|w| w.witness == sender) {
        return Err(reject(
            "duplicate_witness",
            format!("this hotspot already reported hearing {beaconer}'s beacon"),
        ));
    }
    let max = ctx
        .params::<CoverageParams>()?
        .max_witness_reports_per_beacon as usize;
    if pending.witnesses.len() >= max {
        return Err(reject(
            "too_many_witnesses",
            format!("{max} witnesses of this beacon are reported already"),
        ));
    }
    pending.witnesses.push(report);
    ctx.put_encoded(&keys::pending(&entropy.value, &beaconer), &pending);
    Ok(vec![
        CoverageEvent::WitnessReported {
            beaconer,
            entropy: entropy.value,
        }
        .to_event(),
    ])
}

fn register_device(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    dev_addr: u32,
    device_key: Address,
) -> Result<Vec<Event>, TxError> {
    let key = keys::device(dev_addr);
    let device = match ctx.get_decoded::<Device>(&key)? {
        Some(device) if device.owner != sender => {
            return Err(reject(
                "device_taken",
                format!("device {dev_addr:08x} belongs to {}", device.owner),
            ));
        }
        // The owner may rotate the device's key; the paid counters stay.
        Some(device) => Device {
            device_key,
            ..device
        },
        None => Device {
            owner: sender,
            device_key,
            highest_fcnt: None,
            paid_window: 0,
            packets_paid: 0,
            data_credits_paid: 0,
        },
    };
    ctx.put_encoded(&key, &device);
    Ok(vec![
        CoverageEvent::DeviceRegistered { dev_addr }.to_event(),
    ])
}

fn commit_receipts(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    root: Hash,
) -> Result<Vec<Event>, TxError> {
    let mut hotspot = registered_hotspot(ctx, &sender)?;
    if hotspot.receipt_commitments.iter().any(|(r, _)| *r == root) {
        return Err(reject(
            "duplicate_commitment",
            "these receipts are committed already",
        ));
    }
    hotspot.receipt_commitments.push((root, ctx.block.height));
    if hotspot.receipt_commitments.len() > MAX_RECEIPT_COMMITMENTS {
        hotspot.receipt_commitments.remove(0);
    }
    ctx.put_encoded(&keys::hotspot(&sender), &hotspot);
    Ok(vec![CoverageEvent::ReceiptsCommitted { root }.to_event()])
}

fn packet_receipts(
    ctx: &mut ServiceContext<'_, '_>,
    sender: Address,
    receipts: Vec<PacketReceipt>,
) -> Result<Vec<Event>, TxError> {
    let mut hotspot = registered_hotspot(ctx, &sender)?;
    let max = ctx.params::<CoverageParams>()?.max_receipts_per_tx as usize;
    if receipts.is_empty() || receipts.len() > max {
        return Err(reject(
            "bad_receipt_count",
            format!("1 to {max} receipts per transaction"),
        ));
    }
    let mut devices: BTreeMap<u32, Device> = BTreeMap::new();
    for r in &receipts {
        let device = match devices.entry(r.dev_addr) {
            std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let device: Device =
                    ctx.get_decoded(&keys::device(r.dev_addr))?.ok_or_else(|| {
                        reject(
                            "unknown_device",
                            format!("device {:08x} is not registered", r.dev_addr),
                        )
                    })?;
                slot.insert(device)
            }
        };
        let message = packet_message(r.dev_addr, r.fcnt, r.payload_bytes, &r.payload_hash);
        depin_types::verify(&device.device_key, &message, &r.device_signature).map_err(|_| {
            reject(
                "bad_device_signature",
                format!(
                    "packet {} of device {:08x} is not signed by it",
                    r.fcnt, r.dev_addr
                ),
            )
        })?;
    }
    // Bound to the hotspot that heard them: committed in an earlier block, before they were
    // public.
    let root = receipts_root(&sender, &receipts);
    let height = ctx.block.height;
    let Some(at) = hotspot
        .receipt_commitments
        .iter()
        .position(|(r, h)| *r == root && *h < height)
    else {
        return Err(reject(
            "receipts_not_committed",
            "commit to these receipts (CommitReceipts) in an earlier block first",
        ));
    };
    hotspot.receipt_commitments.remove(at);
    hotspot.roll_to(ctx.epoch());
    let mut events = Vec::new();
    let (mut paid, mut duplicates, mut unfunded) = (0u32, 0u32, 0u32);
    for r in &receipts {
        let Some(device) = devices.get_mut(&r.dev_addr) else {
            continue;
        };
        if device.already_paid(r.fcnt) {
            duplicates += 1;
            continue;
        }
        let cost = ctx
            .params::<CoverageParams>()?
            .packet_cost_dc(r.payload_bytes);
        match ctx.burn_data_credits(device.owner, u128::from(cost)) {
            Ok(()) => {}
            Err(TxError::InsufficientDataCredits { .. }) | Err(TxError::UnknownAccount(_)) => {
                unfunded += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        device.mark_paid(r.fcnt);
        device.packets_paid = device.packets_paid.saturating_add(1);
        device.data_credits_paid = device.data_credits_paid.saturating_add(cost);
        hotspot.data_dc = hotspot.data_dc.saturating_add(cost);
        hotspot.packets = hotspot.packets.saturating_add(1);
        paid += 1;
    }
    for (dev_addr, device) in &devices {
        ctx.put_encoded(&keys::device(*dev_addr), device);
    }
    list_for_split(ctx, &sender, &mut hotspot)?;
    ctx.put_encoded(&keys::hotspot(&sender), &hotspot);
    events.push(
        CoverageEvent::PacketsPaid {
            paid,
            duplicates,
            owner_out_of_dc: unfunded,
        }
        .to_event(),
    );
    Ok(events)
}

/// The chain's view of a hotspot for the checks, with the genesis denylist applied.
fn checked_info(denylist: &[Address], hotspot: &Hotspot) -> HotspotInfo {
    let mut info = hotspot.info.clone();
    info.denylisted = denylist.contains(&info.address);
    info
}

/// Verifies every report under an entropy whose window has closed, records each outcome on
/// the hotspots concerned and credits reward units to the current epoch.
fn verify_entropy(
    ctx: &mut ServiceContext<'_, '_>,
    entropy: &EntropyRecord,
) -> Result<(), StateError> {
    let index_key = keys::pending_index(&entropy.value);
    let mut beaconers: Vec<Address> = ctx.get_decoded(&index_key)?.unwrap_or_default();
    ctx.delete_record(&index_key);
    beaconers.sort();
    beaconers.dedup();
    for beaconer in beaconers {
        let key = keys::pending(&entropy.value, &beaconer);
        let Some(pending) = ctx.get_decoded::<PendingBeacon>(&key)? else {
            continue;
        };
        ctx.delete_record(&key);
        verify_beacon(ctx, entropy, beaconer, pending)?;
    }
    Ok(())
}

/// The hotspots one beacon's verification touches, written back once at the end.
struct Touched {
    records: BTreeMap<Address, Hotspot>,
}

impl Touched {
    fn get(
        &mut self,
        ctx: &ServiceContext<'_, '_>,
        who: &Address,
    ) -> Result<Option<&mut Hotspot>, StateError> {
        if !self.records.contains_key(who) {
            match load_hotspot(ctx, who)? {
                Some(h) => {
                    self.records.insert(*who, h);
                }
                None => return Ok(None),
            }
        }
        Ok(self.records.get_mut(who))
    }
}

fn outcome(
    kind: &str,
    beaconer: Address,
    entropy: Hash,
    height: u64,
    result: Result<u64, Rejection>,
) -> (ReportOutcome, &'static str) {
    let (rejection, units_ppm, code) = match result {
        Ok(units) => (None, units, "rewarded"),
        Err(r) => (Some(r.to_string()), 0, r.code()),
    };
    let outcome = ReportOutcome {
        kind: kind.into(),
        beaconer,
        entropy,
        verified_height: height,
        rejection,
        units_ppm,
    };
    (outcome, code)
}

fn verify_beacon(
    ctx: &mut ServiceContext<'_, '_>,
    entropy: &EntropyRecord,
    beaconer: Address,
    pending: PendingBeacon,
) -> Result<(), StateError> {
    let params = ctx.params::<CoverageParams>()?.poc.clone();
    let height = ctx.block.height;
    let epoch = ctx.epoch();
    let mut touched = Touched {
        records: BTreeMap::new(),
    };
    // In the order the chain included them: a witness cannot move itself ahead by the time it
    // claims to have heard the beacon.
    let witnesses = pending.witnesses;
    let witness_outcome = |touched: &mut Touched,
                           ctx: &ServiceContext<'_, '_>,
                           who: &Address,
                           result: Result<u64, Rejection>|
     -> Result<(), StateError> {
        if let Some(h) = touched.get(ctx, who)? {
            h.roll_to(epoch);
            if let Ok(units) = result {
                h.witness_units_ppm = h.witness_units_ppm.saturating_add(units);
            }
            let (o, code) = outcome("witness", beaconer, entropy.value, height, result);
            h.remember(o, code);
        }
        Ok(())
    };

    let denylist = &ctx.params::<CoverageParams>()?.denylist;
    let beacon_info = touched
        .get(ctx, &beaconer)?
        .map(|h| (checked_info(denylist, h), h.last_beacon_ms));
    // A beacon never reported, or reported by a hotspot since gone: nothing was heard.
    let (Some(report), Some((beacon_info, last_beacon_ms))) = (pending.beacon, beacon_info) else {
        for w in &witnesses {
            witness_outcome(&mut touched, ctx, &w.witness, Err(Rejection::NoBeacon))?;
        }
        return write_back(ctx, touched);
    };
    let chain_entropy = Entropy {
        value: entropy.value,
        published_ms: entropy.published_ms,
    };
    let checked = check_beacon(
        &params,
        Some(&beacon_info),
        Some(&chain_entropy),
        last_beacon_ms,
        &report,
    );
    if let Err(rejection) = checked {
        if let Some(h) = touched.get(ctx, &beaconer)? {
            let (o, code) = outcome("beacon", beaconer, entropy.value, height, Err(rejection));
            h.remember(o, code);
        }
        for w in &witnesses {
            witness_outcome(&mut touched, ctx, &w.witness, Err(Rejection::BeaconInvalid))?;
        }
        return write_back(ctx, touched);
    }

    let first_witness_ms = witnesses
        .iter()
        .map(|w| w.received_ms)
        .find(|t| *t >= report.sent_ms);
    let verified = VerifiedBeacon {
        report: &report,
        beaconer: &beacon_info,
        entropy: Some(&chain_entropy),
        first_witness_ms,
    };
    let mut results: Vec<(Address, u64, Result<(), Rejection>)> = Vec::new();
    let mut valid = 0u32;
    for w in &witnesses {
        let info = touched
            .get(ctx, &w.witness)?
            .map(|h| checked_info(denylist, h));
        let mut result = check_witness(&params, &verified, info.as_ref(), false, w);
        if result.is_ok() {
            if valid >= params.max_witnesses_per_beacon {
                result = Err(Rejection::NotSelected {
                    max: params.max_witnesses_per_beacon,
                });
            } else {
                valid += 1;
            }
        }
        results.push((w.witness, w.received_ms, result));
    }

    // Reciprocity is judged with this beacon's own results counted: a witnessed beacon is a
    // valid beacon, a selected witness a valid witness.
    let witness_units = witness_units_ppm(valid);
    for (who, received_ms, result) in &results {
        let result = match result {
            Ok(()) => {
                let Some(h) = touched.get(ctx, who)? else {
                    continue;
                };
                h.last_valid_witness_ms = Some(*received_ms);
                check_reciprocity(
                    &params,
                    *received_ms,
                    h.last_valid_beacon_ms,
                    h.last_valid_witness_ms,
                )
                .map(|()| witness_units)
            }
            Err(r) => Err(r.clone()),
        };
        witness_outcome(&mut touched, ctx, who, result)?;
    }
    if let Some(h) = touched.get(ctx, &beaconer)? {
        h.roll_to(epoch);
        h.last_beacon_ms = Some(report.sent_ms);
        if valid > 0 {
            h.last_valid_beacon_ms = Some(report.sent_ms);
        }
        let result = check_reciprocity(
            &params,
            report.sent_ms,
            h.last_valid_beacon_ms,
            h.last_valid_witness_ms,
        )
        .map(|()| beaconer_units_ppm(valid));
        if let Ok(units) = result {
            h.beacon_units_ppm = h.beacon_units_ppm.saturating_add(units);
        }
        let (o, code) = outcome("beacon", beaconer, entropy.value, height, result);
        h.remember(o, code);
    }
    write_back(ctx, touched)
}

fn write_back(ctx: &mut ServiceContext<'_, '_>, touched: Touched) -> Result<(), StateError> {
    for (address, mut hotspot) in touched.records {
        list_for_split(ctx, &address, &mut hotspot)?;
        ctx.put_encoded(&keys::hotspot(&address), &hotspot);
    }
    Ok(())
}

/// Where a hotspot stands in `epoch`'s split at `now_ms`: whether it earned units in the
/// epoch, and whether its last valid beacon is inside the reciprocity window (so it counts
/// toward its hex's density).
fn split_standing(h: &Hotspot, epoch: u64, now_ms: u64, window_ms: u64) -> (bool, bool) {
    let earned = h.units_epoch == epoch
        && (h.beacon_units_ppm > 0 || h.witness_units_ppm > 0 || h.data_dc > 0);
    let beaconed_recently = h
        .last_valid_beacon_ms
        .is_some_and(|t| now_ms.saturating_sub(t) <= window_ms);
    (earned, beaconed_recently)
}

/// Lists `hotspot` (once) among those the current epoch's split reads, if it counts there:
/// the split then costs what is active, not every hotspot that ever asserted.
fn list_for_split(
    ctx: &mut ServiceContext<'_, '_>,
    address: &Address,
    hotspot: &mut Hotspot,
) -> Result<(), StateError> {
    let epoch = ctx.epoch();
    if hotspot.split_epoch == Some(epoch) {
        return Ok(());
    }
    let window = ctx.params::<CoverageParams>()?.poc.reciprocity_window_ms;
    let (earned, beaconed_recently) =
        split_standing(hotspot, epoch, ctx.block.timestamp_ms, window);
    if earned || beaconed_recently {
        append_to_split(ctx, epoch, address)?;
        hotspot.split_epoch = Some(epoch);
    }
    Ok(())
}

fn append_to_split(
    ctx: &mut ServiceContext<'_, '_>,
    epoch: u64,
    address: &Address,
) -> Result<(), StateError> {
    let count: u64 = ctx.get_decoded(&keys::split_count(epoch))?.unwrap_or(0);
    ctx.put_encoded(&keys::split_entry(epoch, count), address);
    ctx.put_encoded(&keys::split_count(epoch), &count.saturating_add(1));
    Ok(())
}

/// The epoch's coverage split over the hotspots listed for it (those that earned or count
/// toward density); the totals are kept under [`keys::LAST_EPOCH`] and each hotspot's line
/// under [`keys::last_reward`], for operators. A hotspot whose beacon still counts when the
/// epoch ends is carried into the next epoch's list.
fn split_coverage_epoch(
    ctx: &mut ServiceContext<'_, '_>,
    epoch: u64,
    allocation: Amount,
) -> Result<Vec<(Address, Amount)>, StateError> {
    let params = ctx.params::<CoverageParams>()?;
    let window = params.poc.reciprocity_window_ms;
    let now = ctx.block.timestamp_ms;
    let listed: u64 = ctx.get_decoded(&keys::split_count(epoch))?.unwrap_or(0);
    let mut addresses = Vec::new();
    let mut units = Vec::new();
    for n in 0..listed {
        let entry = keys::split_entry(epoch, n);
        let address: Option<Address> = ctx.get_decoded(&entry)?;
        ctx.delete_record(&entry);
        let Some(address) = address else {
            continue;
        };
        let Some(mut h) = load_hotspot(ctx, &address)? else {
            continue;
        };
        let current = h.units_epoch == epoch;
        let (earned, beaconed_recently) = split_standing(&h, epoch, now, window);
        if !earned && !beaconed_recently {
            continue;
        }
        if beaconed_recently {
            let next = epoch.saturating_add(1);
            append_to_split(ctx, next, &address)?;
            h.split_epoch = Some(next);
            ctx.put_encoded(&keys::hotspot(&address), &h);
        }
        addresses.push(address);
        units.push(EpochUnits {
            location: h.info.location,
            beaconed_recently,
            beacon_units_ppm: if current { h.beacon_units_ppm } else { 0 },
            witness_units_ppm: if current { h.witness_units_ppm } else { 0 },
            data_dc: if current { h.data_dc } else { 0 },
        });
    }
    ctx.delete_record(&keys::split_count(epoch));
    let price_usd_micro = ctx.oracle_price()?.price_usd_micro;
    let genesis = ctx.genesis;
    let split = split_epoch(
        allocation.0,
        &units,
        &params.density_tiers,
        CoverageShares {
            beacon_bps: params.beacon_share_bps,
            witness_bps: params.witness_share_bps,
            data_bps: params.data_share_bps,
            flowback_witness_bps: params.flowback_witness_bps,
        },
        |dc| data_credits_to_tokens(genesis, u128::from(dc), price_usd_micro).map_or(0, |a| a.0),
    );
    let mut record = CoverageEpoch {
        epoch,
        allocation,
        beacon_pool: Amount(split.beacon_pool),
        witness_pool: Amount(split.witness_pool),
        data_pool: Amount(split.data_pool),
        data_flowback: Amount(split.data_flowback),
        hotspots_counted: units.len() as u64,
        hotspots_paid: 0,
    };
    let mut payouts = Vec::new();
    for ((address, u), share) in addresses.iter().zip(&units).zip(&split.shares) {
        let line = HotspotEpochReward {
            epoch,
            hotspot: *address,
            scale_ppm: share.scale_ppm,
            beacon_units_ppm: u.beacon_units_ppm,
            witness_units_ppm: u.witness_units_ppm,
            data_dc: u.data_dc,
            beacon_reward: Amount(share.beacon),
            witness_reward: Amount(share.witness),
            data_reward: Amount(share.data),
        };
        ctx.put_encoded(&keys::last_reward(address), &line);
        let total = share.beacon + share.witness + share.data;
        if total > 0 {
            payouts.push((*address, Amount(total)));
        }
    }
    record.hotspots_paid = payouts.len() as u64;
    ctx.put_encoded(keys::LAST_EPOCH, &record);
    Ok(payouts)
}
