//! The Semtech packet-forwarder protocol (GWMP, `PROTOCOL.TXT` of `lora_gateway`/
//! `packet_forwarder`), versions 1 and 2: a 4-byte header (version, random token, type), the
//! gateway's EUI on upstream packets, then JSON. Decoding is bounded and every failure names
//! what was wrong, since a misconfigured forwarder is the first thing an operator debugs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The version this endpoint answers with when the forwarder spoke it (1 is accepted too).
pub const PROTOCOL_VERSION: u8 = 2;
/// Larger datagrams are refused: the reference forwarder sends at most about 4.5 KiB.
pub const MAX_DATAGRAM_BYTES: usize = 16 * 1024;
/// A LoRa frame carries at most 255 bytes.
pub const MAX_LORA_PAYLOAD_BYTES: usize = 255;

const PUSH_DATA: u8 = 0x00;
const PUSH_ACK: u8 = 0x01;
const PULL_DATA: u8 = 0x02;
const PULL_RESP: u8 = 0x03;
const PULL_ACK: u8 = 0x04;
const TX_ACK: u8 = 0x05;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GwmpError {
    #[error("datagram of {0} bytes is shorter than its header")]
    TooShort(usize),
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM_BYTES}")]
    TooLarge(usize),
    #[error("protocol version {0} (expected 1 or 2)")]
    Version(u8),
    #[error("unknown packet type 0x{0:02x}")]
    UnknownType(u8),
    #[error("bad JSON: {0}")]
    Json(String),
    #[error("bad rxpk/txpk data: {0}")]
    Data(String),
}

/// One received LoRa packet as the forwarder reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxPk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Concentrator timestamp, µs.
    pub tmst: u32,
    /// Centre frequency, MHz.
    pub freq: f64,
    #[serde(default)]
    pub chan: u8,
    #[serde(default)]
    pub rfch: u8,
    /// CRC status: 1 ok, -1 bad, 0 none.
    pub stat: i8,
    pub modu: String,
    /// "SF7BW125" for LoRa, a bit rate for FSK.
    pub datr: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codr: Option<String>,
    /// Received signal strength, dBm.
    pub rssi: i32,
    /// LoRa SNR, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f64>,
    pub size: u32,
    /// The frame, base64.
    pub data: String,
}

impl RxPk {
    /// The frame's bytes, checked against `size`.
    pub fn payload(&self) -> Result<Vec<u8>, GwmpError> {
        decode_data(&self.data, self.size)
    }

    pub fn frequency_hz(&self) -> u64 {
        mhz_to_hz(self.freq)
    }

    pub fn crc_ok(&self) -> bool {
        self.stat == 1
    }
}

/// A packet the forwarder is asked to transmit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxPk {
    /// Send immediately, ignoring `tmst`.
    pub imme: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmst: Option<u32>,
    pub freq: f64,
    pub rfch: u8,
    /// Output power, dBm.
    pub powe: i32,
    pub modu: String,
    pub datr: String,
    pub codr: String,
    /// Inverted polarity: true for downlinks to devices, false for gateway-to-gateway beacons.
    pub ipol: bool,
    pub size: u32,
    pub data: String,
}

impl TxPk {
    /// A LoRa packet to send now at `frequency_hz` and `power_dbm`.
    pub fn lora_now(payload: &[u8], frequency_hz: u64, power_dbm: i32, datr: &str) -> TxPk {
        TxPk {
            imme: true,
            tmst: None,
            freq: frequency_hz as f64 / 1e6,
            rfch: 0,
            powe: power_dbm,
            modu: "LORA".into(),
            datr: datr.into(),
            codr: "4/5".into(),
            ipol: false,
            size: payload.len() as u32,
            data: BASE64.encode(payload),
        }
    }

    pub fn payload(&self) -> Result<Vec<u8>, GwmpError> {
        decode_data(&self.data, self.size)
    }

    pub fn frequency_hz(&self) -> u64 {
        mhz_to_hz(self.freq)
    }
}

fn mhz_to_hz(mhz: f64) -> u64 {
    if mhz.is_finite() && mhz > 0.0 {
        (mhz * 1e6).round() as u64
    } else {
        0
    }
}

fn decode_data(data: &str, size: u32) -> Result<Vec<u8>, GwmpError> {
    // Base64 of 255 bytes is 340 characters; anything longer is not a LoRa frame.
    if data.len() > MAX_LORA_PAYLOAD_BYTES.div_ceil(3) * 4 {
        return Err(GwmpError::Data(format!(
            "{} base64 characters is longer than a LoRa frame",
            data.len()
        )));
    }
    let bytes = BASE64
        .decode(data)
        .map_err(|e| GwmpError::Data(format!("base64: {e}")))?;
    if bytes.len() != size as usize {
        return Err(GwmpError::Data(format!(
            "size says {size} bytes, data holds {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushDataBody {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rxpk: Vec<RxPk>,
    /// Gateway status; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRespBody {
    pub txpk: TxPk,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxAckBody {
    pub txpk_ack: TxPkAck,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxPkAck {
    /// "NONE" on success, else e.g. "TOO_LATE", "COLLISION_PACKET", "TX_FREQ".
    #[serde(default = "none_error")]
    pub error: String,
}

fn none_error() -> String {
    "NONE".into()
}

/// One GWMP datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    PushData {
        version: u8,
        token: u16,
        gateway: u64,
        body: PushDataBody,
    },
    PushAck {
        version: u8,
        token: u16,
    },
    PullData {
        version: u8,
        token: u16,
        gateway: u64,
    },
    PullResp {
        version: u8,
        token: u16,
        body: PullRespBody,
    },
    PullAck {
        version: u8,
        token: u16,
    },
    TxAck {
        version: u8,
        token: u16,
        gateway: u64,
        body: Option<TxAckBody>,
    },
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, GwmpError> {
    serde_json::from_slice(bytes).map_err(|e| GwmpError::Json(e.to_string()))
}

fn eui(bytes: &[u8], len: usize) -> Result<u64, GwmpError> {
    let eui: [u8; 8] = bytes
        .get(4..12)
        .and_then(|b| b.try_into().ok())
        .ok_or(GwmpError::TooShort(len))?;
    Ok(u64::from_be_bytes(eui))
}

impl Packet {
    pub fn decode(bytes: &[u8]) -> Result<Packet, GwmpError> {
        let len = bytes.len();
        if len > MAX_DATAGRAM_BYTES {
            return Err(GwmpError::TooLarge(len));
        }
        if len < 4 {
            return Err(GwmpError::TooShort(len));
        }
        let version = bytes[0];
        if version != 1 && version != 2 {
            return Err(GwmpError::Version(version));
        }
        let token = u16::from_be_bytes([bytes[1], bytes[2]]);
        Ok(match bytes[3] {
            PUSH_DATA => Packet::PushData {
                version,
                token,
                gateway: eui(bytes, len)?,
                body: json(&bytes[12..])?,
            },
            PUSH_ACK => Packet::PushAck { version, token },
            PULL_DATA => Packet::PullData {
                version,
                token,
                gateway: eui(bytes, len)?,
            },
            PULL_RESP => Packet::PullResp {
                version,
                token,
                body: json(&bytes[4..])?,
            },
            PULL_ACK => Packet::PullAck { version, token },
            TX_ACK => {
                let gateway = eui(bytes, len)?;
                // The JSON is optional, and some forwarders pad with NULs.
                let rest: Vec<u8> = bytes[12..].iter().copied().filter(|b| *b != 0).collect();
                let body = if rest.iter().all(u8::is_ascii_whitespace) {
                    None
                } else {
                    Some(json(&rest)?)
                };
                Packet::TxAck {
                    version,
                    token,
                    gateway,
                    body,
                }
            }
            other => return Err(GwmpError::UnknownType(other)),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = |version: u8, token: u16, kind: u8| {
            let t = token.to_be_bytes();
            vec![version, t[0], t[1], kind]
        };
        match self {
            Packet::PushData {
                version,
                token,
                gateway,
                body,
            } => {
                let mut out = header(*version, *token, PUSH_DATA);
                out.extend_from_slice(&gateway.to_be_bytes());
                out.extend_from_slice(&to_json(body));
                out
            }
            Packet::PushAck { version, token } => header(*version, *token, PUSH_ACK),
            Packet::PullData {
                version,
                token,
                gateway,
            } => {
                let mut out = header(*version, *token, PULL_DATA);
                out.extend_from_slice(&gateway.to_be_bytes());
                out
            }
            Packet::PullResp {
                version,
                token,
                body,
            } => {
                let mut out = header(*version, *token, PULL_RESP);
                out.extend_from_slice(&to_json(body));
                out
            }
            Packet::PullAck { version, token } => header(*version, *token, PULL_ACK),
            Packet::TxAck {
                version,
                token,
                gateway,
                body,
            } => {
                let mut out = header(*version, *token, TX_ACK);
                out.extend_from_slice(&gateway.to_be_bytes());
                if let Some(body) = body {
                    out.extend_from_slice(&to_json(body));
                }
                out
            }
        }
    }

    /// The name the protocol document uses, for logs and rejection reasons.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::PushData { .. } => "PUSH_DATA",
            Packet::PushAck { .. } => "PUSH_ACK",
            Packet::PullData { .. } => "PULL_DATA",
            Packet::PullResp { .. } => "PULL_RESP",
            Packet::PullAck { .. } => "PULL_ACK",
            Packet::TxAck { .. } => "TX_ACK",
        }
    }
}

/// Serializes a body; none can fail (plain structs, string keys).
fn to_json<T: Serialize>(body: &T) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUSH_DATA as the reference packet forwarder sends it (PROTOCOL.TXT, section 4).
    const REFERENCE_PUSH: &str = r#"{"rxpk":[{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,"data":"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"}]}"#;

    fn push(json: &str) -> Vec<u8> {
        let mut bytes = vec![2, 0x12, 0x34, PUSH_DATA];
        bytes.extend_from_slice(&0xAA55_5A00_0000_0101u64.to_be_bytes());
        bytes.extend_from_slice(json.as_bytes());
        bytes
    }

    #[test]
    fn the_reference_push_data_decodes_and_its_data_is_checked() {
        let Packet::PushData {
            token,
            gateway,
            body,
            ..
        } = Packet::decode(&push(REFERENCE_PUSH)).expect("decodes")
        else {
            panic!("not PUSH_DATA");
        };
        assert_eq!((token, gateway), (0x1234, 0xAA55_5A00_0000_0101));
        let rx = &body.rxpk[0];
        assert_eq!(rx.frequency_hz(), 866_349_812);
        assert_eq!(rx.rssi, -35);
        // The document's sample uses the URL alphabet; a real forwarder sends standard base64.
        assert!(rx.payload().is_err());
        let good = REFERENCE_PUSH.replace(
            "-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84",
            &BASE64.encode([7u8; 32]),
        );
        let Packet::PushData { body, .. } = Packet::decode(&push(&good)).expect("decodes") else {
            panic!("not PUSH_DATA");
        };
        assert_eq!(body.rxpk[0].payload().expect("payload"), vec![7u8; 32]);
    }

    #[test]
    fn every_packet_type_round_trips() {
        let tx = TxPk::lora_now(&[1, 2, 3], 869_525_000, 14, "SF9BW125");
        let packets = [
            Packet::decode(&push(REFERENCE_PUSH)).expect("push"),
            Packet::PushAck {
                version: 2,
                token: 7,
            },
            Packet::PullData {
                version: 2,
                token: 8,
                gateway: 42,
            },
            Packet::PullResp {
                version: 2,
                token: 9,
                body: PullRespBody { txpk: tx.clone() },
            },
            Packet::PullAck {
                version: 1,
                token: 10,
            },
            Packet::TxAck {
                version: 2,
                token: 9,
                gateway: 42,
                body: Some(TxAckBody {
                    txpk_ack: TxPkAck {
                        error: "NONE".into(),
                    },
                }),
            },
            Packet::TxAck {
                version: 2,
                token: 9,
                gateway: 42,
                body: None,
            },
        ];
        for p in packets {
            assert_eq!(
                Packet::decode(&p.encode()).unwrap_or_else(|e| panic!("{}: {e}", p.name())),
                p
            );
        }
        assert_eq!(tx.payload().expect("payload"), vec![1, 2, 3]);
        assert_eq!(tx.frequency_hz(), 869_525_000);
    }

    #[test]
    fn malformed_datagrams_are_refused_with_the_reason() {
        assert_eq!(Packet::decode(&[2, 0, 0]), Err(GwmpError::TooShort(3)));
        assert_eq!(
            Packet::decode(&vec![2u8; MAX_DATAGRAM_BYTES + 1]),
            Err(GwmpError::TooLarge(MAX_DATAGRAM_BYTES + 1))
        );
        assert_eq!(Packet::decode(&[3, 0, 0, 0]), Err(GwmpError::Version(3)));
        assert_eq!(
            Packet::decode(&[2, 0, 0, 9]),
            Err(GwmpError::UnknownType(9))
        );
        // PUSH_DATA cut inside the EUI, and with JSON that is not JSON.
        assert_eq!(
            Packet::decode(&[2, 0, 0, PUSH_DATA, 1, 2]),
            Err(GwmpError::TooShort(6))
        );
        assert!(matches!(
            Packet::decode(&push("{\"rxpk\":[{")),
            Err(GwmpError::Json(_))
        ));
        // A frame whose size disagrees with its data, and one longer than LoRa allows.
        let lying = REFERENCE_PUSH.replace("\"size\":32", "\"size\":33");
        let Packet::PushData { body, .. } = Packet::decode(&push(&lying)).expect("decodes") else {
            panic!("not PUSH_DATA");
        };
        assert!(body.rxpk[0].payload().is_err());
        let long = BASE64.encode([0u8; 300]);
        assert!(decode_data(&long, 300).is_err());
    }
}
