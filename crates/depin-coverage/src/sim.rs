//! A world of hotspots, devices and cheaters, for `depin sim coverage`. The parts that matter
//! are real: every hotspot runs a [`GatewayEndpoint`] on its own UDP socket, every gateway is a
//! packet forwarder speaking GWMP to it over loopback, and every report goes as a signed
//! transaction through the protocol's coverage rules, whose verdicts and epoch split are what
//! the report shows. What is simulated: radio (log-distance path loss with shadowing), the
//! clock (blocks of one simulated second) and consensus (the protocol runs on one in-memory
//! state, not a validator network).

use crate::endpoint::{Clock, GatewayEndpoint, GatewayEvent, Uplink};
use crate::frames::{DeviceFrame, Heard, KnownBeaconer, beacon_report, classify, witness_report};
use crate::gwmp::{Packet, PushDataBody, RxPk, TxAckBody, TxPk, TxPkAck};
use base64::Engine as _;
use depin_protocol::coverage::verify::Region;
use depin_protocol::coverage::{
    CoverageEpoch, CoverageParams, CoverageTx, EntropyRecord, Hotspot, HotspotAssertion,
    HotspotEpochReward, keys,
};
use depin_protocol::tx::{GeoLocation, ServiceOffer};
use depin_protocol::{
    Action, BlockContext, Genesis, Overlay, Protocol, SignedTransaction, StateKey, Transaction,
};
use depin_types::{Address, Amount, Hash, Keypair};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub hotspots: usize,
    pub seed: u64,
    /// Fraction of hotspots that cheat, 0 to 1.
    pub cheaters: f64,
    /// Beacon rounds (each hotspot beacons once a round); rewards need two.
    pub rounds: u32,
    pub devices: usize,
}

/// How a simulated hotspot behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    Honest,
    /// Asserts a location 120 km from where its radio is.
    SpoofedLocation,
    /// Reports every beacon it hears 40 dB louder than it was.
    ImpossibleSignal,
    /// One of three in one room asserting places 3 km apart, who witness each other's
    /// beacons with plausible but invented signal reports.
    CollusionRing,
    /// Stands 60 m from an honest hotspot.
    TooClose,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimHotspot {
    pub address: String,
    pub behaviour: Behaviour,
    pub real: (f64, f64),
    pub asserted: (f64, f64),
    pub reward: u128,
    pub scale_ppm: u64,
    pub packets: u64,
    /// Outcomes by code, from the chain's record.
    pub tally: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub hotspots: Vec<SimHotspot>,
    /// Outcomes over all hotspots by code (`witness_too_close`, `beacon_rewarded`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// The same, by behaviour.
    pub outcomes_by_behaviour: BTreeMap<Behaviour, BTreeMap<String, u64>>,
    pub reward_by_behaviour: BTreeMap<Behaviour, u128>,
    pub transactions: u64,
    /// Transactions the chain refused, by error code.
    pub refused_transactions: BTreeMap<String, u64>,
    /// Datagrams the hotspots' endpoints refused, by reason.
    pub refused_datagrams: BTreeMap<String, u64>,
    pub uplinks: u64,
    pub beacons_transmitted: u64,
    pub packets_paid: u64,
    pub epoch: CoverageEpoch,
    pub seconds: f64,
}

/// A deterministic generator (SplitMix64): the same seed builds the same world.
/// Free-space path loss in dB for the simulated radio (the chain's own bound is the integer
/// `verify::fspl_db_x10`).
fn fspl_db(distance_m: f64, frequency_hz: f64) -> f64 {
    const C: f64 = 2.998e8;
    20.0 * (4.0 * std::f64::consts::PI * distance_m * frequency_hz / C).log10()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Moves `at` by `north_m` and `east_m`.
fn offset(at: (f64, f64), north_m: f64, east_m: f64) -> (f64, f64) {
    let lat = at.0 + north_m / 111_320.0;
    let lon = at.1 + east_m / (111_320.0 * at.0.to_radians().cos());
    (lat, lon)
}

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    match (h3o::LatLng::new(a.0, a.1), h3o::LatLng::new(b.0, b.1)) {
        (Ok(a), Ok(b)) => a.distance_m(b),
        _ => f64::INFINITY,
    }
}

const FREQ_HZ: u64 = 868_100_000;
const GAIN_DBI_X10: i32 = 30;
const DEVICE_POWER_DBM: f64 = 14.0;
/// Weakest signal a gateway decodes (SF9, 125 kHz).
const SENSITIVITY_DBM: f64 = -125.0;
/// Log-distance path loss exponent (suburban) and shadowing spread.
const PATH_LOSS_EXPONENT: f64 = 2.9;
const SHADOWING_DB: f64 = 6.0;
const FEE: Amount = Amount(50_000);
const UNIT: u128 = 1_000_000;

/// Received power at `d` metres: log-distance path loss with shadowing, never better than
/// free space at 1 m.
fn received_dbm(tx_dbm: f64, gains_db: f64, d: f64, rng: &mut Rng) -> f64 {
    let d = d.max(1.0);
    let loss = fspl_db(1.0, FREQ_HZ as f64) + 10.0 * PATH_LOSS_EXPONENT * d.log10();
    tx_dbm + gains_db - loss + SHADOWING_DB * rng.normal()
}

struct Node {
    key: Keypair,
    eui: u64,
    real: (f64, f64),
    asserted: (f64, f64),
    behaviour: Behaviour,
    ring: Option<usize>,
    endpoint: GatewayEndpoint,
    forwarder: UdpSocket,
    endpoint_addr: SocketAddr,
    nonce: u64,
}

/// The protocol on one in-memory state, one block per simulated second.
struct Chain {
    protocol: Protocol,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    height: u64,
    validator: Keypair,
    transactions: u64,
    refused: BTreeMap<String, u64>,
    /// The simulated time the hotspots' endpoints stamp uplinks with.
    clock: Arc<AtomicU64>,
}

impl Chain {
    fn block(&self) -> BlockContext {
        BlockContext {
            height: self.height,
            parent: Hash::tagged("sim parent", &[&self.height.to_le_bytes()]),
            timestamp_ms: self.now_ms(),
            proposer: self.validator.address(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.protocol.genesis().genesis_time_ms + self.height * 1_000
    }

    fn submit(&mut self, tx: &SignedTransaction) -> bool {
        self.transactions += 1;
        let mut overlay = Overlay::new(&self.state);
        let result = self.protocol.apply_tx(&mut overlay, &self.block(), tx, 0);
        let writes = overlay.into_writes();
        match result {
            Ok(_) => {
                apply(&mut self.state, writes);
                true
            }
            Err(e) => {
                *self.refused.entry(e.code().to_string()).or_default() += 1;
                false
            }
        }
    }

    fn end_block(&mut self) -> Result<(), String> {
        let mut overlay = Overlay::new(&self.state);
        self.protocol
            .end_block(&mut overlay, &self.block())
            .map_err(|e| e.to_string())?;
        let writes = overlay.into_writes();
        apply(&mut self.state, writes);
        self.height += 1;
        self.clock.store(self.now_ms(), Ordering::Relaxed);
        Ok(())
    }

    fn coverage<T: borsh::BorshDeserialize>(&self, key: Vec<u8>) -> Option<T> {
        Overlay::new(&self.state)
            .get(&StateKey::Service(depin_protocol::coverage::SERVICE, key))
            .ok()
            .flatten()
    }

    fn live_entropy(&self) -> Vec<EntropyRecord> {
        self.coverage(keys::LIVE_ENTROPY.to_vec())
            .unwrap_or_default()
    }

    /// Ends blocks until a new entropy value is published.
    fn next_entropy(&mut self) -> Result<EntropyRecord, String> {
        let known = self.live_entropy().last().map(|e| e.value);
        loop {
            self.end_block()?;
            if let Some(e) = self.live_entropy().last()
                && Some(e.value) != known
            {
                return Ok(*e);
            }
        }
    }
}

fn apply(state: &mut BTreeMap<Vec<u8>, Vec<u8>>, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    for (k, v) in writes {
        match v {
            Some(v) => state.insert(k, v),
            None => state.remove(&k),
        };
    }
}

fn sign(chain: &Chain, key: &Keypair, nonce: &mut u64, action: Action) -> SignedTransaction {
    let tx = Transaction {
        chain_id: chain.protocol.genesis().chain_id.clone(),
        sender: key.address(),
        nonce: *nonce,
        fee: FEE,
        action,
    }
    .sign(key);
    *nonce += 1;
    tx
}

fn coverage_action(tx: CoverageTx) -> Action {
    Action::Service {
        service: depin_protocol::coverage::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

/// The world's genesis: the coverage rules with a ten-minute beacon interval, one epoch for
/// the whole run.
fn sim_genesis(
    config: &SimConfig,
    funded: &[(Address, Amount)],
    validator: Address,
) -> Result<Genesis, String> {
    let mut genesis = Genesis::devnet(
        "depin-sim",
        1_700_000_000_000,
        &[validator],
        validator,
        funded,
    );
    let interval_s = 600;
    genesis
        .update_service_params::<CoverageParams>(|p| {
            p.poc.beacon_interval_ms = interval_s * 1_000;
            p.poc.entropy_lifetime_ms = 60_000;
            p.poc.reciprocity_window_ms = 48 * 3600 * 1000;
            p.entropy_interval_blocks = 30;
            p.report_grace_ms = 10_000;
        })
        .map_err(|e| e.to_string())?;
    genesis.chain.epoch_blocks = u64::from(config.rounds.max(1)) * interval_s + 200;
    genesis.validate().map_err(|e| e.to_string())?;
    Ok(genesis)
}

/// City-sized clusters across the Netherlands, Belgium and western Germany.
fn cluster_centres(count: usize, rng: &mut Rng) -> Vec<(f64, f64)> {
    (0..count)
        .map(|_| (50.5 + rng.unit() * 3.0, 3.5 + rng.unit() * 4.0))
        .collect()
}

struct Placement {
    real: (f64, f64),
    asserted: (f64, f64),
    behaviour: Behaviour,
    ring: Option<usize>,
}

fn place_hotspots(config: &SimConfig, rng: &mut Rng) -> Vec<Placement> {
    let centres = cluster_centres(config.hotspots.div_ceil(25).max(1), rng);
    let cheaters = ((config.hotspots as f64) * config.cheaters.clamp(0.0, 1.0)).round() as usize;
    let kinds = [
        Behaviour::SpoofedLocation,
        Behaviour::ImpossibleSignal,
        Behaviour::CollusionRing,
        Behaviour::TooClose,
    ];
    let mut placed: Vec<Placement> = Vec::with_capacity(config.hotspots);
    let mut ring_count = 0usize;
    let mut ring_fill = 0usize;
    for i in 0..config.hotspots {
        let centre = centres[i % centres.len()];
        let real = offset(centre, rng.normal() * 2_500.0, rng.normal() * 2_500.0);
        // Cheaters are spread over the run: every (n / cheaters)-th hotspot.
        let cheat =
            cheaters > 0 && i * cheaters / config.hotspots != (i + 1) * cheaters / config.hotspots;
        let behaviour = if cheat {
            kinds[(i * cheaters / config.hotspots) % kinds.len()]
        } else {
            Behaviour::Honest
        };
        let p = match behaviour {
            Behaviour::Honest | Behaviour::ImpossibleSignal => Placement {
                real,
                asserted: real,
                behaviour,
                ring: None,
            },
            Behaviour::SpoofedLocation => {
                let bearing = rng.unit() * std::f64::consts::TAU;
                Placement {
                    real,
                    asserted: offset(real, 120_000.0 * bearing.cos(), 120_000.0 * bearing.sin()),
                    behaviour,
                    ring: None,
                }
            }
            Behaviour::CollusionRing => {
                // Members share the first member's room and claim points 3 km apart.
                if ring_fill == 3 || ring_count == 0 {
                    ring_count += 1;
                    ring_fill = 0;
                }
                let ring = ring_count - 1;
                let room = placed
                    .iter()
                    .find(|p| p.ring == Some(ring))
                    .map_or(real, |p| p.real);
                let angle = ring_fill as f64 * std::f64::consts::TAU / 3.0;
                ring_fill += 1;
                Placement {
                    real: room,
                    asserted: offset(room, 3_000.0 * angle.cos(), 3_000.0 * angle.sin()),
                    behaviour,
                    ring: Some(ring),
                }
            }
            Behaviour::TooClose => {
                let near = placed
                    .iter()
                    .rev()
                    .find(|p| p.behaviour == Behaviour::Honest)
                    .map_or(real, |p| p.real);
                let spot = offset(near, 60.0, 0.0);
                Placement {
                    real: spot,
                    asserted: spot,
                    behaviour,
                    ring: None,
                }
            }
        };
        placed.push(p);
    }
    placed
}

fn lat_lon_e7(at: (f64, f64)) -> (i32, i32) {
    ((at.0 * 1e7).round() as i32, (at.1 * 1e7).round() as i32)
}

/// Sends one PUSH_DATA from a forwarder and waits for its PUSH_ACK and the endpoint's event.
async fn push_uplink(
    node: &mut Node,
    token: u16,
    payload: &[u8],
    rssi_dbm: f64,
    snr_db: f64,
) -> Result<Option<Uplink>, String> {
    let rx = RxPk {
        time: None,
        tmst: token.into(),
        freq: FREQ_HZ as f64 / 1e6,
        chan: 0,
        rfch: 0,
        stat: 1,
        modu: "LORA".into(),
        datr: serde_json::Value::String("SF9BW125".into()),
        codr: Some("4/5".into()),
        rssi: rssi_dbm.round() as i32,
        lsnr: Some((snr_db * 10.0).round() / 10.0),
        size: payload.len() as u32,
        data: base64::engine::general_purpose::STANDARD.encode(payload),
    };
    let push = Packet::PushData {
        version: 2,
        token,
        gateway: node.eui,
        body: PushDataBody {
            rxpk: vec![rx],
            stat: None,
        },
    };
    node.forwarder
        .send_to(&push.encode(), node.endpoint_addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_secs(5), node.forwarder.recv_from(&mut buf))
        .await
        .map_err(|_| "no PUSH_ACK within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    match Packet::decode(&buf[..got.0]) {
        Ok(Packet::PushAck { token: t, .. }) if t == token => {}
        other => return Err(format!("expected PUSH_ACK, got {other:?}")),
    }
    match tokio::time::timeout(Duration::from_secs(5), node.endpoint.next_event()).await {
        Ok(Some(GatewayEvent::Uplink(up))) => Ok(Some(up)),
        Ok(Some(GatewayEvent::Refused { .. })) => Ok(None),
        _ => Err("the endpoint reported nothing for a PUSH_DATA".into()),
    }
}

/// Transmits a beacon through the hotspot's own endpoint (PULL_RESP) and plays its forwarder:
/// takes the txpk and answers TX_ACK.
async fn transmit_beacon(node: &Node, payload: &[u8]) -> Result<TxPk, String> {
    let txpk = TxPk::lora_now(payload, FREQ_HZ, 16, "SF9BW125");
    let gateway_side = async {
        let mut buf = vec![0u8; 4096];
        let (len, from) =
            tokio::time::timeout(Duration::from_secs(5), node.forwarder.recv_from(&mut buf))
                .await
                .map_err(|_| "no PULL_RESP within 5 s".to_string())?
                .map_err(|e| e.to_string())?;
        let Ok(Packet::PullResp { token, body, .. }) = Packet::decode(&buf[..len]) else {
            return Err("expected PULL_RESP".to_string());
        };
        let ack = Packet::TxAck {
            version: 2,
            token,
            gateway: node.eui,
            body: Some(TxAckBody {
                txpk_ack: TxPkAck {
                    error: "NONE".into(),
                },
            }),
        };
        node.forwarder
            .send_to(&ack.encode(), from)
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.txpk)
    };
    let (sent, heard) = tokio::join!(
        node.endpoint
            .transmit(node.eui, txpk, Duration::from_secs(5)),
        gateway_side
    );
    sent.map_err(|e| e.to_string())?;
    heard
}

/// Runs the world and reports what the chain made of it.
pub async fn run(config: &SimConfig, progress: &dyn Fn(&str)) -> Result<SimReport, String> {
    let started = Instant::now();
    let mut rng = Rng(config.seed);
    let placements = place_hotspots(config, &mut rng);
    let validator = Keypair::from_seed(format!("sim validator {}", config.seed).as_bytes());
    let owner = Keypair::from_seed(format!("sim device owner {}", config.seed).as_bytes());
    let keys_: Vec<Keypair> = (0..placements.len())
        .map(|i| Keypair::from_seed(format!("sim hotspot {} {i}", config.seed).as_bytes()))
        .collect();
    let mut funded: Vec<(Address, Amount)> = keys_
        .iter()
        .map(|k| (k.address(), Amount(1_000 * UNIT)))
        .collect();
    funded.push((validator.address(), Amount(1_000 * UNIT)));
    funded.push((owner.address(), Amount(1_000 * UNIT)));
    let genesis = sim_genesis(config, &funded, validator.address())?;
    let protocol = Protocol::new(genesis).map_err(|e| e.to_string())?;
    let mut state = BTreeMap::new();
    let mut overlay = Overlay::new(&state);
    protocol
        .init_genesis(&mut overlay)
        .map_err(|e| e.to_string())?;
    let writes = overlay.into_writes();
    apply(&mut state, writes);
    let mut chain = Chain {
        protocol,
        state,
        height: 1,
        validator,
        transactions: 0,
        refused: BTreeMap::new(),
        clock: Arc::new(AtomicU64::new(0)),
    };
    chain.clock.store(chain.now_ms(), Ordering::Relaxed);
    let sim_clock: Clock = {
        let clock = chain.clock.clone();
        Arc::new(move || clock.load(Ordering::Relaxed))
    };

    // Hotspots: an endpoint and a forwarder each, on loopback; stake, registration, assertion.
    progress(&format!("starting {} hotspots", placements.len()));
    let localhost: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let mut nodes = Vec::with_capacity(placements.len());
    for (i, (p, key)) in placements.into_iter().zip(keys_).enumerate() {
        let eui = 0x0016_C001_FF00_0000 | i as u64;
        let endpoint = GatewayEndpoint::bind(localhost, BTreeSet::from([eui]), sim_clock.clone())
            .await
            .map_err(|e| format!("endpoint: {e}"))?;
        let endpoint_addr = endpoint.local_addr().map_err(|e| e.to_string())?;
        let forwarder = UdpSocket::bind(localhost)
            .await
            .map_err(|e| e.to_string())?;
        let mut node = Node {
            key,
            eui,
            real: p.real,
            asserted: p.asserted,
            behaviour: p.behaviour,
            ring: p.ring,
            endpoint,
            forwarder,
            endpoint_addr,
            nonce: 0,
        };
        // PULL_DATA opens the downlink path, as a forwarder does on start.
        let pull = Packet::PullData {
            version: 2,
            token: 1,
            gateway: eui,
        };
        node.forwarder
            .send_to(&pull.encode(), endpoint_addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(5), node.forwarder.recv_from(&mut buf))
            .await
            .map_err(|_| "no PULL_ACK".to_string())?
            .map_err(|e| e.to_string())?;
        let (lat_e7, lon_e7) = lat_lon_e7(node.asserted);
        let mut nonce = node.nonce;
        for action in [
            Action::Bond {
                amount: Amount(100 * UNIT),
            },
            Action::RegisterProvider {
                services: vec![ServiceOffer {
                    service: depin_protocol::coverage::SERVICE,
                    capacity: 1,
                    price_dc_per_unit: 1,
                }],
                location: Some(GeoLocation { lat_e7, lon_e7 }),
            },
            coverage_action(CoverageTx::AssertHotspot(HotspotAssertion {
                location: depin_protocol::coverage::verify::location_cell_e7(lat_e7, lon_e7)
                    .ok_or("the asserted location is off the map")?,
                gain_dbi_x10: GAIN_DBI_X10,
                elevation_m: 10,
                region: Region::Eu868,
                full_capability: true,
                gateway_eui: eui,
            })),
        ] {
            let tx = sign(&chain, &node.key, &mut nonce, action);
            if !chain.submit(&tx) {
                return Err(format!("hotspot {i} could not register"));
            }
        }
        node.nonce = nonce;
        nodes.push(node);
    }

    // Devices, owned by one account with Data Credits.
    let mut owner_nonce = 0;
    let buy = sign(
        &chain,
        &owner,
        &mut owner_nonce,
        Action::BuyDataCredits {
            amount: Amount(10 * UNIT),
        },
    );
    chain.submit(&buy);
    let mut devices = Vec::new();
    for d in 0..config.devices {
        let key = Keypair::from_seed(format!("sim device {} {d}", config.seed).as_bytes());
        let dev_addr = 0x2600_0000 | d as u32;
        let at = nodes.get(d % nodes.len().max(1)).map_or((52.0, 5.0), |n| {
            offset(n.real, rng.normal() * 1_500.0, rng.normal() * 1_500.0)
        });
        let tx = sign(
            &chain,
            &owner,
            &mut owner_nonce,
            coverage_action(CoverageTx::RegisterDevice {
                dev_addr,
                device_key: key.address(),
            }),
        );
        chain.submit(&tx);
        devices.push((key, dev_addr, at));
    }

    let known: Vec<KnownBeaconer> = nodes
        .iter()
        .map(|n| KnownBeaconer {
            address: n.key.address(),
            region: Region::Eu868,
            gain_dbi_x10: GAIN_DBI_X10,
        })
        .collect();
    let mut token: u16 = 1;
    let mut beacons_transmitted = 0u64;
    let interval_ms = chain
        .protocol
        .genesis()
        .service_params::<CoverageParams>()
        .map_err(|e| e.to_string())?
        .poc
        .beacon_interval_ms;
    for round in 0..config.rounds {
        progress(&format!("round {}/{}", round + 1, config.rounds));
        let round_start = chain.now_ms();
        let entropy = chain.next_entropy()?;
        let live: Vec<Hash> = chain.live_entropy().iter().map(|e| e.value).collect();
        // Every hotspot beacons on this entropy; what each gateway hears is pushed to its
        // hotspot, which reports it (or, if it cheats, something else).
        let mut reports: Vec<(usize, Action)> = Vec::new();
        // A beacon's report reveals its local randomness: it lands after its witnesses'.
        let mut beacon_reports: Vec<(usize, Action)> = Vec::new();
        for b in 0..nodes.len() {
            let sent_ms = chain.now_ms();
            let mut local = [0u8; 16];
            for chunk in local.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_le_bytes());
            }
            let report = beacon_report(
                nodes[b].key.address(),
                entropy.value,
                Region::Eu868,
                GAIN_DBI_X10,
                sent_ms,
                FREQ_HZ,
                &local,
            );
            let txpk = transmit_beacon(&nodes[b], &report.payload).await?;
            beacons_transmitted += 1;
            beacon_reports.push((b, coverage_action(CoverageTx::Beacon(report.clone()))));
            let payload = txpk.payload().map_err(|e| e.to_string())?;
            for w in 0..nodes.len() {
                if w == b {
                    continue;
                }
                let d = distance_m(nodes[b].real, nodes[w].real);
                let rssi = received_dbm(f64::from(txpk.powe), 6.0, d, &mut rng);
                let ring_mates = nodes[w].ring.is_some() && nodes[w].ring == nodes[b].ring;
                if rssi < SENSITIVITY_DBM && !ring_mates {
                    continue;
                }
                let snr = (rssi - SENSITIVITY_DBM).min(12.0) - 5.0;
                token = token.wrapping_add(1);
                let heard = if rssi >= SENSITIVITY_DBM {
                    push_uplink(&mut nodes[w], token, &payload, rssi, snr).await?
                } else {
                    None
                };
                let me = nodes[w].key.address();
                let mut witness = match heard {
                    Some(up) => match classify(&up.payload, &known, &live) {
                        Heard::Beacon { beaconer, entropy } => {
                            Some(witness_report(me, beaconer, entropy, &up))
                        }
                        _ => None,
                    },
                    None => None,
                };
                match nodes[w].behaviour {
                    Behaviour::ImpossibleSignal => {
                        if let Some(w) = witness.as_mut() {
                            w.signal_dbm_x10 += 400;
                        }
                    }
                    Behaviour::CollusionRing if ring_mates => {
                        // Invent a report 6 dB under what free space would allow between
                        // the asserted places, heard or not.
                        let d = distance_m(nodes[b].asserted, nodes[w].asserted);
                        let bound = 16.0 + 6.0 - fspl_db(d.max(1.0), FREQ_HZ as f64);
                        witness = Some(depin_protocol::coverage::verify::WitnessReport {
                            witness: me,
                            beaconer: report.beaconer,
                            entropy: entropy.value,
                            received_ms: sent_ms + 200,
                            frequency_hz: FREQ_HZ,
                            signal_dbm_x10: ((bound - 6.0) * 10.0).round() as i32,
                            snr_db_x10: 80,
                            payload: report.payload.clone(),
                        });
                    }
                    _ => {}
                }
                if let Some(witness) = witness {
                    reports.push((w, coverage_action(CoverageTx::Witness(witness))));
                }
            }
        }
        // Devices send one uplink each; every gateway in range hears it and its hotspot
        // reports the packet, which the chain pays once.
        let mut receipts: BTreeMap<usize, Vec<depin_protocol::coverage::PacketReceipt>> =
            BTreeMap::new();
        for (key, dev_addr, at) in &devices {
            let body = format!("round {round} reading {}", rng.next() % 1000);
            let Some(frame) = DeviceFrame::sign(key, *dev_addr, round + 1, body.as_bytes()) else {
                continue;
            };
            let bytes = frame.encode();
            for (w, node) in nodes.iter_mut().enumerate() {
                let d = distance_m(*at, node.real);
                let rssi = received_dbm(DEVICE_POWER_DBM, 3.0, d, &mut rng);
                if rssi < SENSITIVITY_DBM {
                    continue;
                }
                token = token.wrapping_add(1);
                if let Some(up) = push_uplink(node, token, &bytes, rssi, 5.0).await?
                    && let Heard::Device(frame) = classify(&up.payload, &known, &live)
                {
                    receipts
                        .entry(w)
                        .or_default()
                        .push(frame.receipt(up.received_ms));
                }
            }
        }
        // Witnesses and packet receipts land in the next block, the beacons' reports after.
        chain.end_block()?;
        for (who, action) in reports {
            let node = &mut nodes[who];
            let mut nonce = node.nonce;
            let tx = sign(&chain, &node.key, &mut nonce, action);
            if chain.submit(&tx) {
                node.nonce = nonce;
            }
        }
        // Receipts are committed to now and reported in the next block, with the beacons.
        for (who, list) in &receipts {
            let node = &mut nodes[*who];
            let mut nonce = node.nonce;
            let root = depin_protocol::coverage::receipts_root(&node.key.address(), list);
            let tx = sign(
                &chain,
                &node.key,
                &mut nonce,
                coverage_action(CoverageTx::CommitReceipts { root }),
            );
            if chain.submit(&tx) {
                node.nonce = nonce;
            }
        }
        chain.end_block()?;
        let reveals = receipts
            .into_iter()
            .map(|(who, list)| (who, coverage_action(CoverageTx::PacketReceipts(list))));
        for (who, action) in beacon_reports.into_iter().chain(reveals) {
            let node = &mut nodes[who];
            let mut nonce = node.nonce;
            let tx = sign(&chain, &node.key, &mut nonce, action);
            if chain.submit(&tx) {
                node.nonce = nonce;
            }
        }
        // Wait out the beacon interval (verification happens on the way).
        while chain.now_ms() < round_start + interval_ms + 1_000 {
            chain.end_block()?;
        }
    }
    // Finish the epoch.
    let epoch_blocks = chain.protocol.genesis().chain.epoch_blocks;
    while !(chain.height > 1 && (chain.height - 1).is_multiple_of(epoch_blocks)) {
        chain.end_block()?;
    }
    let epoch: CoverageEpoch = chain
        .coverage(keys::LAST_EPOCH.to_vec())
        .unwrap_or_default();
    let lines: Vec<HotspotEpochReward> = nodes
        .iter()
        .filter_map(|n| chain.coverage(keys::last_reward(&n.key.address())))
        .filter(|l: &HotspotEpochReward| l.epoch == epoch.epoch)
        .collect();
    let rewards: BTreeMap<Address, u128> = lines
        .iter()
        .map(|h| {
            (
                h.hotspot,
                h.beacon_reward.0 + h.witness_reward.0 + h.data_reward.0,
            )
        })
        .collect();
    let scales: BTreeMap<Address, u64> = lines.iter().map(|h| (h.hotspot, h.scale_ppm)).collect();
    let packets_paid: BTreeMap<Address, u64> =
        lines.iter().map(|h| (h.hotspot, h.data_dc)).collect();

    let mut report = SimReport {
        hotspots: Vec::new(),
        outcomes: BTreeMap::new(),
        outcomes_by_behaviour: BTreeMap::new(),
        reward_by_behaviour: BTreeMap::new(),
        transactions: chain.transactions,
        refused_transactions: chain.refused.clone(),
        refused_datagrams: BTreeMap::new(),
        uplinks: 0,
        beacons_transmitted,
        packets_paid: 0,
        epoch: epoch.clone(),
        seconds: 0.0,
    };
    for node in &nodes {
        let address = node.key.address();
        let record: Option<Hotspot> = chain.coverage(keys::hotspot(&address));
        let tally = record.map(|h| h.tally).unwrap_or_default();
        for (code, n) in &tally {
            *report.outcomes.entry(code.clone()).or_default() += n;
            *report
                .outcomes_by_behaviour
                .entry(node.behaviour)
                .or_default()
                .entry(code.clone())
                .or_default() += n;
        }
        let stats = node.endpoint.stats();
        report.uplinks += stats.uplinks;
        for (reason, n) in stats.refused {
            *report.refused_datagrams.entry(reason).or_default() += n;
        }
        let reward = rewards.get(&address).copied().unwrap_or(0);
        *report
            .reward_by_behaviour
            .entry(node.behaviour)
            .or_default() += reward;
        report.packets_paid += packets_paid.get(&address).copied().unwrap_or(0);
        report.hotspots.push(SimHotspot {
            address: address.to_string(),
            behaviour: node.behaviour,
            real: node.real,
            asserted: node.asserted,
            reward,
            scale_ppm: scales.get(&address).copied().unwrap_or(0),
            packets: packets_paid.get(&address).copied().unwrap_or(0),
            tally,
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The world as GeoJSON: a point per hotspot at its asserted location (with where its radio
/// really is, how it behaved and what it earned) and the resolution-8 hexes with their totals.
pub fn geojson(report: &SimReport) -> serde_json::Value {
    use h3o::{CellIndex, LatLng, Resolution};
    let mut features = Vec::new();
    let mut hexes: BTreeMap<CellIndex, (u128, u32)> = BTreeMap::new();
    for h in &report.hotspots {
        features.push(serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [h.asserted.1, h.asserted.0]},
            "properties": {
                "hotspot": h.address,
                "behaviour": h.behaviour,
                "reward": h.reward.to_string(),
                "scale_ppm": h.scale_ppm,
                "real_lat": h.real.0,
                "real_lon": h.real.1,
            },
        }));
        if let Ok(ll) = LatLng::new(h.asserted.0, h.asserted.1) {
            let cell = ll.to_cell(Resolution::Eight);
            let e = hexes.entry(cell).or_default();
            e.0 += h.reward;
            e.1 += 1;
        }
    }
    for (cell, (reward, count)) in hexes {
        let mut ring: Vec<[f64; 2]> = cell
            .boundary()
            .iter()
            .map(|ll| [ll.lng(), ll.lat()])
            .collect();
        if let Some(first) = ring.first().copied() {
            ring.push(first);
        }
        features.push(serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"hex": cell.to_string(), "hotspots": count, "reward": reward.to_string()},
        }));
    }
    serde_json::json!({"type": "FeatureCollection", "features": features})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cheaters_are_caught_by_the_reasons_the_checks_give() {
        let config = SimConfig {
            hotspots: 40,
            seed: 3,
            cheaters: 0.4,
            rounds: 3,
            devices: 8,
        };
        let report = run(&config, &|_| {}).await.expect("the world runs");
        let by = |b: Behaviour| {
            report
                .outcomes_by_behaviour
                .get(&b)
                .cloned()
                .unwrap_or_default()
        };
        let count = |b: Behaviour, code: &str| by(b).get(code).copied().unwrap_or(0);
        // Honest hotspots earn; a hotspot asserting a place 120 km away has its witnesses of
        // its real neighbours refused as too far. Two spoofers who really stand together but
        // claim places under 100 km apart can still witness each other: the weak real signal
        // fits the free-space bound of the claimed distance (Helium's checks share this gap).
        assert!(
            count(Behaviour::Honest, "witness_rewarded") > 0,
            "{report:#?}"
        );
        assert!(count(Behaviour::Honest, "beacon_rewarded") > 0);
        assert!(
            count(Behaviour::SpoofedLocation, "witness_too_far")
                > 10 * count(Behaviour::SpoofedLocation, "witness_rewarded")
        );
        assert!(count(Behaviour::ImpossibleSignal, "witness_signal_too_strong") > 0);
        assert!(count(Behaviour::TooClose, "witness_too_close") > 0);
        // Every beacon went out as a PULL_RESP and every heard frame came in as PUSH_DATA.
        assert_eq!(report.beacons_transmitted, 40 * 3);
        assert!(report.uplinks > 0);
        assert!(
            report.refused_datagrams.is_empty(),
            "{:?}",
            report.refused_datagrams
        );
        assert!(report.packets_paid > 0);
        let paid: u128 = report.hotspots.iter().map(|h| h.reward).sum();
        assert!(paid > 0 && paid <= report.epoch.allocation.0);
        // The map has a point per hotspot and the hexes they stand in.
        let map = geojson(&report);
        let features = map["features"].as_array().expect("features");
        assert!(features.len() > 40);
        // The same seed builds the same world.
        let again = run(&config, &|_| {}).await.expect("runs again");
        assert_eq!(again.outcomes, report.outcomes);
    }
}
