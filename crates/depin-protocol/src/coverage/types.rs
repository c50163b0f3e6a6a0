//! What the coverage service puts on chain: its transactions, the records it keeps of hotspots,
//! devices and entropy, and the state keys under the coverage service's namespace.

use super::rewards::DensityTier;
use super::verify::{BeaconReport, HotspotInfo, PocParams, Region, WitnessReport};
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash, Signature};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The coverage service's genesis parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageParams {
    pub poc: PocParams,
    /// HIP-17 hex density limits, one per resolution (4 to 10).
    pub density_tiers: Vec<DensityTier>,
    /// The chain publishes a new entropy value every this many blocks.
    pub entropy_interval_blocks: u64,
    /// Reports of an entropy are accepted until this long after its window closed, and then
    /// verified together.
    pub report_grace_ms: u64,
    /// Data Credits burned by a change of a hotspot's asserted location (the first is free).
    pub location_fee_dc: u64,
    /// The coverage emission's split, in basis points summing to 10,000: beacons, witnesses and
    /// data transfer (Helium's 6 : 24 : 50).
    pub beacon_share_bps: u16,
    pub witness_share_bps: u16,
    pub data_share_bps: u16,
    /// Of the data-transfer share that packets did not use, this part goes to witnesses and
    /// the rest to beacons (Helium: 80%).
    pub flowback_witness_bps: u16,
    /// A packet costs one Data Credit per this many payload bytes, rounded up, at least one.
    pub bytes_per_dc: u32,
    /// Witness reports kept per beacon before verification; later ones are refused.
    pub max_witness_reports_per_beacon: u32,
    /// Beaconers with pending reports under one entropy; later ones are refused.
    pub max_pending_beacons_per_entropy: u32,
    pub max_receipts_per_tx: u32,
    /// Hotspots whose reports are refused (Helium's denylist).
    #[serde(default)]
    pub denylist: Vec<Address>,
}

impl crate::params::ServiceParams for CoverageParams {
    const SERVICE: depin_types::ServiceKind = super::SERVICE;

    fn validate(&self) -> Result<(), String> {
        if u32::from(self.beacon_share_bps)
            + u32::from(self.witness_share_bps)
            + u32::from(self.data_share_bps)
            != 10_000
            || self.flowback_witness_bps > 10_000
        {
            return Err("shares must sum to 10000 bps (flowback at most 10000)".into());
        }
        if self.entropy_interval_blocks == 0
            || self.bytes_per_dc == 0
            || self.max_receipts_per_tx == 0
            || self.max_witness_reports_per_beacon == 0
            || self.max_pending_beacons_per_entropy == 0
            || self.poc.entropy_lifetime_ms == 0
        {
            return Err("limits must be positive".into());
        }
        if self
            .density_tiers
            .iter()
            .any(|t| !(4..=10).contains(&t.resolution) || t.target == 0 || t.max < t.target)
        {
            return Err("density_tiers need resolutions 4..=10 and 0 < target <= max".into());
        }
        Ok(())
    }
}

impl CoverageParams {
    /// Helium's limits, with an entropy every 60 blocks of a second.
    pub fn production() -> CoverageParams {
        CoverageParams {
            poc: PocParams::helium(),
            density_tiers: super::rewards::hip17_tiers(),
            entropy_interval_blocks: 60,
            report_grace_ms: 60_000,
            location_fee_dc: 50_000,
            beacon_share_bps: 750,
            witness_share_bps: 3000,
            data_share_bps: 6250,
            flowback_witness_bps: 8000,
            bytes_per_dc: 24,
            max_witness_reports_per_beacon: 64,
            max_pending_beacons_per_entropy: 10_000,
            max_receipts_per_tx: 256,
            denylist: Vec::new(),
        }
    }

    /// Helium's rules on a devnet clock: a beacon a minute, reciprocity over ten minutes.
    pub fn devnet() -> CoverageParams {
        let mut params = CoverageParams::production();
        params.poc.beacon_interval_ms = 60_000;
        params.poc.entropy_lifetime_ms = 30_000;
        params.poc.reciprocity_window_ms = 600_000;
        params.entropy_interval_blocks = 10;
        params.report_grace_ms = 10_000;
        params.location_fee_dc = 1_000;
        params
    }

    /// The Data Credits a packet of `payload_bytes` costs.
    pub fn packet_cost_dc(&self, payload_bytes: u32) -> u64 {
        u64::from(payload_bytes.max(1)).div_ceil(u64::from(self.bytes_per_dc.max(1)))
    }
}

/// What a hotspot asserts about itself.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct HotspotAssertion {
    /// The H3 resolution-12 cell of the hotspot, chosen off chain (see
    /// [`super::verify::location_cell`]); the chain checks it is such a cell.
    pub location: u64,
    pub gain_dbi_x10: i32,
    pub elevation_m: i32,
    pub region: Region,
    /// Data-only hotspots forward packets but neither beacon nor witness.
    pub full_capability: bool,
    /// The LoRa gateway (packet forwarder) this hotspot serves.
    pub gateway_eui: u64,
}

/// A packet a hotspot delivered for a registered device: the device's signature over
/// [`packet_message`] proves the device sent it, so a hotspot cannot invent traffic.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct PacketReceipt {
    pub dev_addr: u32,
    /// The device's frame counter: each (device, counter) is paid once.
    pub fcnt: u32,
    pub payload_bytes: u32,
    pub payload_hash: Hash,
    pub device_signature: Signature,
    pub received_ms: u64,
}

/// The bytes a device signs for one uplink.
pub fn packet_message(
    dev_addr: u32,
    fcnt: u32,
    payload_bytes: u32,
    payload_hash: &Hash,
) -> Vec<u8> {
    let mut message = b"depin coverage uplink".to_vec();
    message.extend_from_slice(&dev_addr.to_le_bytes());
    message.extend_from_slice(&fcnt.to_le_bytes());
    message.extend_from_slice(&payload_bytes.to_le_bytes());
    message.extend_from_slice(payload_hash.as_bytes());
    message
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub enum CoverageTx {
    /// Registers the sender, a coverage provider, as a hotspot, or changes what it asserts.
    AssertHotspot(HotspotAssertion),
    /// A beacon the sender transmitted.
    Beacon(BeaconReport),
    /// A beacon the sender heard.
    Witness(WitnessReport),
    /// The sender owns the device at `dev_addr`, whose uplinks `device_key` signs.
    RegisterDevice { dev_addr: u32, device_key: Address },
    /// Packets the sender (a hotspot) delivered: each burns the owner's Data Credits. They
    /// must match a [`receipts_root`] the sender committed to in an earlier block.
    PacketReceipts(Vec<PacketReceipt>),
    /// The sender commits to receipts it will report in a later block: only a hotspot that
    /// heard the packets can commit to them before they are public, so a copy of another's
    /// receipts (from the mempool) comes a block too late.
    CommitReceipts { root: Hash },
}

/// What a hotspot commits to before reporting `receipts`: bound to the hotspot.
pub fn receipts_root(hotspot: &Address, receipts: &[PacketReceipt]) -> Hash {
    Hash::tagged(
        "depin coverage receipts",
        &[hotspot.as_bytes(), &depin_types::encode(&receipts.to_vec())],
    )
}

/// Receipt commitments a hotspot keeps open at most; the oldest is dropped beyond.
pub const MAX_RECEIPT_COMMITMENTS: usize = 16;

/// One verified (or refused) report, kept on the hotspot's record for its operator.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ReportOutcome {
    /// "beacon" or "witness".
    pub kind: String,
    pub beaconer: Address,
    pub entropy: Hash,
    pub verified_height: u64,
    /// `None` when valid and rewarded; else why not.
    pub rejection: Option<String>,
    /// Reward units earned, in ppm (before hex scaling).
    pub units_ppm: u64,
}

/// Reports kept per hotspot for its operator to read.
pub const MAX_OUTCOMES_KEPT: usize = 16;

/// Everything the chain keeps of a hotspot.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Hotspot {
    pub info: HotspotInfo,
    pub gateway_eui: u64,
    pub location_changes: u32,
    /// `sent_ms` of the last beacon that was valid, for the one-per-interval rule.
    pub last_beacon_ms: Option<u64>,
    /// For reciprocity: the last valid, witnessed beacon, and the last valid witness.
    pub last_valid_beacon_ms: Option<u64>,
    pub last_valid_witness_ms: Option<u64>,
    /// The epoch the counters below are of.
    pub units_epoch: u64,
    pub beacon_units_ppm: u64,
    pub witness_units_ppm: u64,
    /// Data Credits of packets delivered in `units_epoch`.
    pub data_dc: u64,
    pub packets: u64,
    pub recent: Vec<ReportOutcome>,
    /// Every outcome since registration by code: `beacon_rewarded`, `witness_rewarded`, or a
    /// rejection's code prefixed by the report's kind (`witness_too_close`, ...).
    pub tally: BTreeMap<String, u64>,
    /// Receipt commitments not reported yet, with the height they were made at.
    #[serde(default)]
    pub receipt_commitments: Vec<(Hash, u64)>,
    /// The latest epoch whose split lists this hotspot ([`keys::split_entry`]), so it is
    /// listed once however often it earns.
    #[serde(default)]
    pub split_epoch: Option<u64>,
}

impl Hotspot {
    /// Moves the epoch counters to `epoch`, zeroing them if they were of an earlier one.
    pub fn roll_to(&mut self, epoch: u64) {
        if self.units_epoch != epoch {
            self.units_epoch = epoch;
            self.beacon_units_ppm = 0;
            self.witness_units_ppm = 0;
            self.data_dc = 0;
            self.packets = 0;
        }
    }

    pub fn remember(&mut self, outcome: ReportOutcome, code: &str) {
        *self
            .tally
            .entry(format!("{}_{code}", outcome.kind))
            .or_default() += 1;
        self.recent.push(outcome);
        if self.recent.len() > MAX_OUTCOMES_KEPT {
            self.recent.remove(0);
        }
    }
}

/// A registered device and the frame counters already paid.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Device {
    pub owner: Address,
    pub device_key: Address,
    /// The highest frame counter paid, and a bitmap of the 64 below and including it
    /// (bit 0 = the highest): a packet is paid once, via whichever hotspot reported it first.
    pub highest_fcnt: Option<u32>,
    pub paid_window: u64,
    pub packets_paid: u64,
    pub data_credits_paid: u64,
}

/// Frame counters more than this far below the highest one paid are refused as replays.
pub const FCNT_WINDOW: u32 = 64;

impl Device {
    /// Whether `fcnt` was paid already (or is too old to tell).
    pub fn already_paid(&self, fcnt: u32) -> bool {
        match self.highest_fcnt {
            None => false,
            Some(high) if fcnt > high => false,
            Some(high) => {
                let behind = high - fcnt;
                behind >= FCNT_WINDOW || self.paid_window & (1u64 << behind) != 0
            }
        }
    }

    pub fn mark_paid(&mut self, fcnt: u32) {
        match self.highest_fcnt {
            Some(high) if fcnt <= high => self.paid_window |= 1u64 << (high - fcnt),
            Some(high) => {
                let ahead = fcnt - high;
                self.paid_window = if ahead >= FCNT_WINDOW {
                    1
                } else {
                    (self.paid_window << ahead) | 1
                };
                self.highest_fcnt = Some(fcnt);
            }
            None => {
                self.paid_window = 1;
                self.highest_fcnt = Some(fcnt);
            }
        }
    }
}

/// An entropy value and when the chain published it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct EntropyRecord {
    pub value: Hash,
    pub published_ms: u64,
    pub height: u64,
}

/// The reports of one beacon, waiting for verification: witnesses may arrive before the
/// beacon itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PendingBeacon {
    pub beacon: Option<BeaconReport>,
    pub witnesses: Vec<WitnessReport>,
}

/// The coverage service's state keys.
pub mod keys {
    use depin_types::{Address, Hash};

    /// How many hotspots ever asserted (`u64`); [`hotspot_number`] lists them.
    pub const HOTSPOT_COUNT: &[u8] = b"hotspots/count";
    /// Entropy values whose reports are not verified yet, oldest first.
    pub const LIVE_ENTROPY: &[u8] = b"entropy/live";
    /// The totals of the last epoch's split; each hotspot's line is under [`last_reward`].
    pub const LAST_EPOCH: &[u8] = b"epoch/last";

    /// The `n`th hotspot to assert (from 0), in the order they did.
    pub fn hotspot_number(n: u64) -> Vec<u8> {
        [b"hotspots/n/".as_slice(), &n.to_be_bytes()].concat()
    }

    /// How many hotspots `epoch`'s split lists (`u64`).
    pub fn split_count(epoch: u64) -> Vec<u8> {
        [b"split/".as_slice(), &epoch.to_be_bytes(), b"/count"].concat()
    }

    /// The `n`th hotspot `epoch`'s split lists: one that earned in the epoch or whose last
    /// valid beacon may still be inside the reciprocity window when it ends.
    pub fn split_entry(epoch: u64, n: u64) -> Vec<u8> {
        [b"split/".as_slice(), &epoch.to_be_bytes(), &n.to_be_bytes()].concat()
    }

    /// A hotspot's line of the last split that counted it.
    pub fn last_reward(address: &Address) -> Vec<u8> {
        [b"reward/".as_slice(), address.0.as_slice()].concat()
    }

    pub fn hotspot(address: &Address) -> Vec<u8> {
        [b"hotspot/".as_slice(), address.0.as_slice()].concat()
    }

    pub fn gateway(eui: u64) -> Vec<u8> {
        [b"gateway/".as_slice(), &eui.to_be_bytes()].concat()
    }

    pub fn device(dev_addr: u32) -> Vec<u8> {
        [b"device/".as_slice(), &dev_addr.to_be_bytes()].concat()
    }

    /// The beaconers with pending reports under an entropy.
    pub fn pending_index(entropy: &Hash) -> Vec<u8> {
        [b"pending/".as_slice(), entropy.as_bytes().as_slice()].concat()
    }

    pub fn pending(entropy: &Hash, beaconer: &Address) -> Vec<u8> {
        [
            b"pending/".as_slice(),
            entropy.as_bytes().as_slice(),
            beaconer.0.as_slice(),
        ]
        .concat()
    }
}

/// What the chain holds of a hotspot, as the pure checks want it.
pub fn hotspot_info(
    address: Address,
    assertion: &HotspotAssertion,
    location: Option<u64>,
) -> HotspotInfo {
    HotspotInfo {
        address,
        location,
        gain_dbi_x10: assertion.gain_dbi_x10,
        elevation_m: assertion.elevation_m,
        region: assertion.region,
        full_capability: assertion.full_capability,
        denylisted: false,
    }
}

/// A per-hotspot line of an epoch's coverage rewards.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct HotspotEpochReward {
    pub epoch: u64,
    pub hotspot: Address,
    /// HIP-17 scale of its location, ppm.
    pub scale_ppm: u64,
    pub beacon_units_ppm: u64,
    pub witness_units_ppm: u64,
    pub data_dc: u64,
    pub beacon_reward: depin_types::Amount,
    pub witness_reward: depin_types::Amount,
    pub data_reward: depin_types::Amount,
}

/// An epoch's coverage split, kept for operators ("why was I paid this?").
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct CoverageEpoch {
    pub epoch: u64,
    pub allocation: depin_types::Amount,
    pub beacon_pool: depin_types::Amount,
    pub witness_pool: depin_types::Amount,
    pub data_pool: depin_types::Amount,
    /// The data pool that packets did not use, moved to beacons and witnesses.
    pub data_flowback: depin_types::Amount,
    /// Hotspots the split counted (they earned, or their beacons still count toward density).
    pub hotspots_counted: u64,
    /// Of those, the ones paid something.
    pub hotspots_paid: u64,
}

/// What a coverage transaction did, carried in receipts (`Event::Service`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CoverageEvent {
    HotspotAsserted {
        /// The H3 resolution-12 cell (hex in JSON, as H3 indexes are written).
        #[serde(with = "hex_u64")]
        cell: u64,
        /// The gateway EUI (16 hex digits in JSON).
        #[serde(with = "hex_eui")]
        gateway_eui: u64,
        fee_dc: u64,
    },
    BeaconReported {
        entropy: Hash,
    },
    WitnessReported {
        beaconer: Address,
        entropy: Hash,
    },
    DeviceRegistered {
        /// The LoRaWAN DevAddr (8 hex digits in JSON).
        #[serde(with = "hex_u32")]
        dev_addr: u32,
    },
    PacketsPaid {
        paid: u32,
        duplicates: u32,
        owner_out_of_dc: u32,
    },
    ReceiptsCommitted {
        root: Hash,
    },
}

/// A u64 written as hex in JSON (H3 cells, EUIs).
mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <String as Deserialize>::deserialize(d)?;
        u64::from_str_radix(&text, 16)
            .map_err(|_| serde::de::Error::custom(format!("invalid hex integer {text:?}")))
    }
}

/// A u64 written as 16 hex digits in JSON (EUI-64).
mod hex_eui {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        super::hex_u64::deserialize(d)
    }
}

/// A u32 written as 8 hex digits in JSON (DevAddr).
mod hex_u32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:08x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = <String as Deserialize>::deserialize(d)?;
        u32::from_str_radix(&text, 16)
            .map_err(|_| serde::de::Error::custom(format!("invalid hex integer {text:?}")))
    }
}

impl crate::service::ServiceEvent for CoverageEvent {
    const SERVICE: depin_types::ServiceKind = super::SERVICE;
}
