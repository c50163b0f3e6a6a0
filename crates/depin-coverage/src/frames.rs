//! What a hotspot makes of the frames it hears: a beacon of another hotspot (which becomes a
//! witness report), an uplink of a registered device (which becomes a packet receipt), or
//! neither. Also the frame a device sends, signed with its key so that the chain can check a
//! hotspot did not invent it.

use depin_protocol::coverage::verify::{
    BEACON_ID_BYTES, BeaconReport, LOCAL_ENTROPY_BYTES, Region, WitnessReport, beacon_payload,
    payload_local_entropy,
};
use depin_protocol::coverage::{PacketReceipt, packet_message};
use depin_types::{Address, Hash, Keypair, Signature};

/// First byte of a device uplink frame (LoRaWAN's "proprietary" message type, 111xxxxx).
pub const DEVICE_FRAME_TAG: u8 = 0xE0;
const HEADER_BYTES: usize = 1 + 4 + 4;
const SIGNATURE_BYTES: usize = 64;
/// Application bytes one frame carries at most (a LoRa frame is at most 255 bytes).
pub const MAX_DEVICE_PAYLOAD_BYTES: usize = 255 - HEADER_BYTES - SIGNATURE_BYTES;

/// A device uplink: `[0xE0][dev_addr LE][fcnt LE][payload][ed25519 signature]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFrame {
    pub dev_addr: u32,
    pub fcnt: u32,
    pub payload: Vec<u8>,
    pub signature: Signature,
}

impl DeviceFrame {
    /// Signs `payload` as the device's `fcnt`-th uplink. `None` if it is too long for a frame.
    pub fn sign(key: &Keypair, dev_addr: u32, fcnt: u32, payload: &[u8]) -> Option<DeviceFrame> {
        if payload.len() > MAX_DEVICE_PAYLOAD_BYTES {
            return None;
        }
        let message = packet_message(dev_addr, fcnt, payload.len() as u32, &Hash::of(payload));
        Some(DeviceFrame {
            dev_addr,
            fcnt,
            payload: payload.to_vec(),
            signature: key.sign(&message),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.payload.len() + SIGNATURE_BYTES);
        out.push(DEVICE_FRAME_TAG);
        out.extend_from_slice(&self.dev_addr.to_le_bytes());
        out.extend_from_slice(&self.fcnt.to_le_bytes());
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&self.signature.0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<DeviceFrame> {
        if bytes.len() < HEADER_BYTES + SIGNATURE_BYTES || bytes[0] != DEVICE_FRAME_TAG {
            return None;
        }
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let split = bytes.len() - SIGNATURE_BYTES;
        let signature: [u8; 64] = bytes[split..].try_into().ok()?;
        Some(DeviceFrame {
            dev_addr: word(1)?,
            fcnt: word(5)?,
            payload: bytes[HEADER_BYTES..split].to_vec(),
            signature: Signature(signature),
        })
    }

    /// The receipt a hotspot submits for this frame.
    pub fn receipt(&self, received_ms: u64) -> PacketReceipt {
        PacketReceipt {
            dev_addr: self.dev_addr,
            fcnt: self.fcnt,
            payload_bytes: self.payload.len() as u32,
            payload_hash: Hash::of(&self.payload),
            device_signature: self.signature,
            received_ms,
        }
    }
}

/// A hotspot the chain knows, as far as recognising its beacons goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBeaconer {
    pub address: Address,
    pub region: Region,
    pub gain_dbi_x10: i32,
}

/// What a heard frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The beacon of `beaconer` for `entropy`.
    Beacon {
        beaconer: Address,
        entropy: Hash,
    },
    Device(DeviceFrame),
    Other,
}

/// Recognises a frame: a beacon is matched against every known hotspot whose address starts
/// with the frame's id and every live entropy; a device frame by its tag.
pub fn classify(payload: &[u8], beaconers: &[KnownBeaconer], live_entropy: &[Hash]) -> Heard {
    if let Some(local) = payload_local_entropy(payload) {
        let id = &payload[..BEACON_ID_BYTES];
        for b in beaconers
            .iter()
            .filter(|b| &b.address.as_bytes()[..BEACON_ID_BYTES] == id)
        {
            for entropy in live_entropy {
                if beacon_payload(entropy, &b.address, b.region, b.gain_dbi_x10, &local) == payload
                {
                    return Heard::Beacon {
                        beaconer: b.address,
                        entropy: *entropy,
                    };
                }
            }
        }
    }
    match DeviceFrame::decode(payload) {
        Some(frame) => Heard::Device(frame),
        None => Heard::Other,
    }
}

/// The witness report of a heard beacon.
pub fn witness_report(
    witness: Address,
    beaconer: Address,
    entropy: Hash,
    uplink: &crate::endpoint::Uplink,
) -> WitnessReport {
    WitnessReport {
        witness,
        beaconer,
        entropy,
        received_ms: uplink.received_ms,
        frequency_hz: uplink.frequency_hz,
        signal_dbm_x10: uplink.rssi_dbm_x10,
        snr_db_x10: uplink.snr_db_x10,
        payload: uplink.payload.clone(),
    }
}

/// The report of a beacon this hotspot sent.
pub fn beacon_report(
    beaconer: Address,
    entropy: Hash,
    region: Region,
    gain_dbi_x10: i32,
    sent_ms: u64,
    frequency_hz: u64,
    local_entropy: &[u8; LOCAL_ENTROPY_BYTES],
) -> BeaconReport {
    BeaconReport {
        beaconer,
        entropy,
        sent_ms,
        frequency_hz,
        payload: beacon_payload(&entropy, &beaconer, region, gain_dbi_x10, local_entropy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_frame_round_trips_and_its_signature_verifies() {
        let key = Keypair::from_seed(b"device");
        let frame = DeviceFrame::sign(&key, 0x2601_0001, 7, b"temperature=21.5").expect("fits");
        let bytes = frame.encode();
        assert!(bytes.len() <= 255);
        let back = DeviceFrame::decode(&bytes).expect("decodes");
        assert_eq!(back, frame);
        let r = back.receipt(99);
        let message = packet_message(r.dev_addr, r.fcnt, r.payload_bytes, &r.payload_hash);
        assert!(depin_types::verify(&key.address(), &message, &r.device_signature).is_ok());
        assert!(DeviceFrame::sign(&key, 1, 1, &[0; MAX_DEVICE_PAYLOAD_BYTES + 1]).is_none());
        assert_eq!(DeviceFrame::decode(&bytes[..20]), None);
    }

    #[test]
    fn beacons_are_told_from_device_frames_and_noise() {
        let beaconer = Keypair::from_seed(b"hotspot").address();
        let known = [KnownBeaconer {
            address: beaconer,
            region: Region::Eu868,
            gain_dbi_x10: 30,
        }];
        let entropy = [Hash::of(b"e1"), Hash::of(b"e2")];
        let report = beacon_report(
            beaconer,
            entropy[1],
            Region::Eu868,
            30,
            5,
            868_100_000,
            &[3; 16],
        );
        assert_eq!(
            classify(&report.payload, &known, &entropy),
            Heard::Beacon {
                beaconer,
                entropy: entropy[1]
            }
        );
        // An expired entropy or another gain is not a beacon we can witness.
        assert_eq!(
            classify(&report.payload, &known, &entropy[..1]),
            Heard::Other
        );
        let other_gain = beacon_report(
            beaconer,
            entropy[1],
            Region::Eu868,
            40,
            5,
            868_100_000,
            &[3; 16],
        );
        assert_eq!(
            classify(&other_gain.payload, &known, &entropy),
            Heard::Other
        );
        let key = Keypair::from_seed(b"device");
        let frame = DeviceFrame::sign(&key, 1, 2, b"x").expect("fits");
        assert_eq!(
            classify(&frame.encode(), &known, &entropy),
            Heard::Device(frame)
        );
        assert_eq!(classify(b"noise", &known, &entropy), Heard::Other);
    }
}
