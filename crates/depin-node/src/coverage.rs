//! The hotspot: serves its LoRa gateway's packet forwarder (Semtech UDP), beacons through it
//! once per beacon interval on the chain's newest entropy, and reports what the gateway hears:
//! other hotspots' beacons as witness reports, registered devices' frames as packet receipts.
//! Report times are the chain's (the head block's timestamp), the clock the verifier judges by.

use crate::Node;
use crate::api::{ApiError, ApiResult, NodeState, ServiceRoutes, parse_address};
use crate::config::parse_eui;
use crate::openapi::{BAD_REQUEST, object, ok_response, operation, path_param};
use axum::Json;
use axum::extract::{Path, State};
use depin_coverage::endpoint::{Clock, GatewayEndpoint, GatewayEvent, Uplink};
use depin_coverage::frames::{Heard, KnownBeaconer, beacon_report, classify, witness_report};
use depin_coverage::gwmp::TxPk;
use depin_protocol::coverage::verify::{LOCAL_ENTROPY_BYTES, Region};
use depin_protocol::coverage::{
    CoverageParams, CoverageTx, EntropyRecord, Hotspot, PacketReceipt, keys,
};
use depin_types::{Address, Hash};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where beacons go out, per frequency plan (a channel every region's hotspots listen on).
fn beacon_frequency_hz(region: Region) -> u64 {
    match region {
        Region::Eu868 => 868_100_000,
        Region::Us915 => 904_600_000,
        Region::Au915 => 916_800_000,
        Region::As923 => 923_200_000,
        Region::Kr920 => 922_100_000,
        Region::In865 => 865_062_500,
    }
}

/// Starts the hotspot when `gateway_listen` is configured. A bind failure is logged, not
/// fatal: the node's other roles go on.
pub(crate) fn start(node: &Arc<Node>, stop: Arc<AtomicBool>) {
    let (Some(listen), Some(eui)) = (
        node.config.gateway_listen,
        node.config.gateway_eui.as_deref(),
    ) else {
        return;
    };
    let eui = match parse_eui(eui) {
        Ok(eui) => eui,
        Err(e) => {
            tracing::error!(error = %e, "hotspot not started");
            return;
        }
    };
    let node = node.clone();
    tokio::spawn(async move {
        let clock: Clock = {
            let node = node.clone();
            Arc::new(move || node.chain().head().timestamp_ms)
        };
        match GatewayEndpoint::bind(listen, BTreeSet::from([eui]), clock).await {
            Ok(endpoint) => {
                tracing::info!(%listen, eui = format!("{eui:016x}"), "hotspot serving its packet forwarder");
                HotspotWorker::new(node, eui).run(endpoint, stop).await;
            }
            Err(e) => tracing::error!(%listen, error = %e, "hotspot cannot bind its gateway port"),
        }
    });
}

struct HotspotWorker {
    node: Arc<Node>,
    eui: u64,
    me: Address,
    known: Vec<KnownBeaconer>,
    known_at_height: u64,
    last_beacon_entropy: Option<Hash>,
    last_beacon_ms: Option<u64>,
    /// A beacon sent and not reported yet, with the chain time to report it at: its report
    /// reveals the beacon's local randomness, so it waits until its witnesses have reported.
    unreported: Option<(depin_protocol::coverage::verify::BeaconReport, u64)>,
    receipts: Vec<PacketReceipt>,
}

impl HotspotWorker {
    fn new(node: Arc<Node>, eui: u64) -> HotspotWorker {
        let me = node.key.address();
        HotspotWorker {
            node,
            eui,
            me,
            known: Vec::new(),
            known_at_height: 0,
            last_beacon_entropy: None,
            last_beacon_ms: None,
            unreported: None,
            receipts: Vec::new(),
        }
    }

    fn record<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        self.node
            .chain()
            .service_record(depin_protocol::coverage::SERVICE, key)
            .ok()
            .flatten()
    }

    fn live_entropy(&self) -> Vec<EntropyRecord> {
        self.record(keys::LIVE_ENTROPY).unwrap_or_default()
    }

    /// The hotspots whose beacons this one can recognise, re-read every few blocks.
    fn refresh_known(&mut self) {
        let height = self.node.chain().head().height;
        if !self.known.is_empty() && height < self.known_at_height + 10 {
            return;
        }
        let count: u64 = self.record(keys::HOTSPOT_COUNT).unwrap_or(0);
        self.known = (0..count)
            .filter_map(|n| self.record::<Address>(&keys::hotspot_number(n)))
            .filter_map(|a| self.record::<Hotspot>(&keys::hotspot(&a)))
            .map(|h| KnownBeaconer {
                address: h.info.address,
                region: h.info.region,
                gain_dbi_x10: h.info.gain_dbi_x10,
            })
            .collect();
        self.known_at_height = height;
    }

    /// Commits to heard packets, then reports them once the commitment is in a block: the
    /// chain pays receipts only against an earlier commitment of the same hotspot.
    fn commit_and_report(&self, receipts: Vec<PacketReceipt>) {
        let node = self.node.clone();
        let root = depin_protocol::coverage::receipts_root(&self.me, &receipts);
        tokio::spawn(async move {
            for tx in [
                CoverageTx::CommitReceipts { root },
                CoverageTx::PacketReceipts(receipts),
            ] {
                let landed = crate::own_tx::submit_and_wait(
                    &node,
                    depin_protocol::coverage::SERVICE,
                    depin_types::encode(&tx),
                )
                .await;
                if !landed {
                    break;
                }
            }
        });
    }

    fn submit(&self, tx: CoverageTx) {
        let node = self.node.clone();
        tokio::spawn(async move {
            crate::own_tx::submit_and_wait(
                &node,
                depin_protocol::coverage::SERVICE,
                depin_types::encode(&tx),
            )
            .await;
        });
    }

    async fn run(mut self, mut endpoint: GatewayEndpoint, stop: Arc<AtomicBool>) {
        let interval_ms = self
            .node
            .chain()
            .protocol()
            .genesis()
            .chain
            .block_interval_ms
            .max(50);
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                event = endpoint.next_event() => match event {
                    Some(GatewayEvent::Uplink(up)) => self.heard(&up),
                    Some(GatewayEvent::Refused { from, reason }) => {
                        tracing::info!(%from, %reason, "gateway datagram refused");
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.report_beacon_if_heard();
                    self.beacon_if_due(&endpoint).await;
                    if !self.receipts.is_empty() {
                        let receipts = std::mem::take(&mut self.receipts);
                        self.commit_and_report(receipts);
                    }
                }
            }
        }
    }

    fn heard(&mut self, up: &Uplink) {
        self.refresh_known();
        let live: Vec<Hash> = self.live_entropy().iter().map(|e| e.value).collect();
        match classify(&up.payload, &self.known, &live) {
            Heard::Beacon { beaconer, entropy } if beaconer != self.me => {
                tracing::info!(%beaconer, rssi = up.rssi_dbm_x10, "beacon heard; reporting a witness");
                self.submit(CoverageTx::Witness(witness_report(
                    self.me, beaconer, entropy, up,
                )));
            }
            Heard::Device(frame) => {
                let max = self
                    .node
                    .chain()
                    .protocol()
                    .service_params::<CoverageParams>()
                    .map_or(0, |p| p.max_receipts_per_tx as usize);
                if self.receipts.len() < max {
                    self.receipts.push(frame.receipt(up.received_ms));
                }
            }
            _ => {}
        }
    }

    /// Reports the beacon sent last once its witnesses have had their time: the most a
    /// witness may hear it after it was sent, and two blocks for their reports to land.
    fn report_beacon_if_heard(&mut self) {
        let now = self.node.chain().head().timestamp_ms;
        if let Some((report, at_ms)) = self.unreported.take() {
            if now >= at_ms {
                self.submit(CoverageTx::Beacon(report));
            } else {
                self.unreported = Some((report, at_ms));
            }
        }
    }

    /// Beacons on the newest entropy when the interval since the last beacon has passed.
    async fn beacon_if_due(&mut self, endpoint: &GatewayEndpoint) {
        if !endpoint.has_downlink(self.eui) {
            return;
        }
        let Some(me) = self.record::<Hotspot>(&keys::hotspot(&self.me)) else {
            return;
        };
        if !me.info.full_capability {
            return;
        }
        let Some(entropy) = self.live_entropy().last().copied() else {
            return;
        };
        let now = self.node.chain().head().timestamp_ms;
        let Some(interval) = self
            .node
            .chain()
            .protocol()
            .service_params::<CoverageParams>()
            .map(|p| p.poc.beacon_interval_ms)
        else {
            return;
        };
        let last = self.last_beacon_ms.or(me.last_beacon_ms);
        if self.last_beacon_entropy == Some(entropy.value)
            || last.is_some_and(|t| now < t.saturating_add(interval))
            || now < entropy.published_ms
        {
            return;
        }
        let frequency = beacon_frequency_hz(me.info.region);
        // Fresh and unpredictable to anyone without this node's key.
        let local = Hash::tagged(
            "depin coverage local entropy",
            &[
                &self.node.key.secret_bytes(),
                entropy.value.as_bytes(),
                &now.to_le_bytes(),
            ],
        );
        let mut local_entropy = [0u8; LOCAL_ENTROPY_BYTES];
        local_entropy.copy_from_slice(&local.as_bytes()[..LOCAL_ENTROPY_BYTES]);
        let report = beacon_report(
            self.me,
            entropy.value,
            me.info.region,
            me.info.gain_dbi_x10,
            now,
            frequency,
            &local_entropy,
        );
        let chain = self.node.chain();
        let genesis = chain.protocol().genesis();
        let witness_lag_ms = chain
            .protocol()
            .service_params::<CoverageParams>()
            .map_or(0, |p| p.poc.max_witness_lag_ms);
        let report_at_ms = now + witness_lag_ms + 2 * genesis.chain.block_interval_ms;
        let power_dbm = me.info.region.tx_power_dbm_x10() / 10;
        let txpk = TxPk::lora_now(&report.payload, frequency, power_dbm, "SF9BW125");
        self.last_beacon_entropy = Some(entropy.value);
        match endpoint
            .transmit(self.eui, txpk, Duration::from_secs(3))
            .await
        {
            Ok(()) => {
                tracing::info!(entropy = %entropy.value, "beacon transmitted");
                self.last_beacon_ms = Some(now);
                self.unreported = Some((report, report_at_ms));
            }
            Err(e) => tracing::warn!(error = %e, "beacon not transmitted"),
        }
    }
}

/// The coverage service in the node: the hotspot route, and the hotspot's packet forwarder
/// endpoint when the config names a gateway.
pub(crate) struct CoverageService;

impl crate::services::NodeService for CoverageService {
    fn service(&self) -> depin_types::ServiceKind {
        depin_protocol::coverage::SERVICE
    }

    fn routes(&self, routes: ServiceRoutes) -> ServiceRoutes {
        routes.get("/hotspots/{address}", coverage_hotspot)
    }

    fn openapi_paths(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "/hotspots/{address}",
            serde_json::json!({"get": operation("A hotspot: what it asserted, its reward units this epoch, its recent report outcomes with the reason of each refusal, and a tally of all outcomes",
            vec![path_param("address", "depin1... address")],
            ok_response("Hotspot", object("Hotspot")), &[BAD_REQUEST, ("404", "unknown_hotspot")])}),
        )]
    }

    fn start(&self, node: &Arc<Node>, stop: Arc<AtomicBool>) -> Result<(), crate::NodeError> {
        start(node, stop);
        Ok(())
    }
}

async fn coverage_hotspot(
    State(node): NodeState,
    Path(address): Path<String>,
) -> ApiResult<Json<depin_protocol::coverage::Hotspot>> {
    use depin_protocol::coverage::{Hotspot, keys};
    let address = parse_address(&address)?;
    node.chain()
        .service_record::<Hotspot>(depin_protocol::coverage::SERVICE, &keys::hotspot(&address))?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found("unknown_hotspot", format!("{address} is not a hotspot"))
        })
}
