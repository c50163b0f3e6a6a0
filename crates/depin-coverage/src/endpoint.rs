//! The UDP endpoint a packet forwarder attaches to, as a LoRaWAN network server's would be:
//! PUSH_DATA is acknowledged and its rxpk become uplinks, PULL_DATA is acknowledged and tells
//! where downlinks go, PULL_RESP carries a transmission and TX_ACK says how it went. Datagrams
//! that cannot be trusted (malformed, oversized, from a gateway this hotspot does not serve)
//! are refused and counted by reason; nothing from them goes further.

use crate::gwmp::{GwmpError, Packet, PullRespBody, RxPk, TxPk};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Milliseconds since the Unix epoch (or a simulation's clock).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

/// A LoRa packet a gateway heard, with good CRC.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub gateway: u64,
    pub received_ms: u64,
    pub frequency_hz: u64,
    pub rssi_dbm_x10: i32,
    pub snr_db_x10: i32,
    pub datr: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatewayEvent {
    Uplink(Uplink),
    /// A datagram refused, and why.
    Refused {
        from: SocketAddr,
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub datagrams: u64,
    pub uplinks: u64,
    pub transmitted: u64,
    /// Refusals by reason, e.g. "unknown gateway", "malformed".
    pub refused: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransmitError {
    #[error("gateway {0:016x} has not sent PULL_DATA yet: no downlink path")]
    NoDownlinkPath(u64),
    #[error("the gateway refused the transmission: {0}")]
    Refused(String),
    #[error("no TX_ACK within {0:?}")]
    Timeout(Duration),
    #[error("udp: {0}")]
    Io(String),
}

#[derive(Default)]
struct Shared {
    downlinks: BTreeMap<u64, (SocketAddr, u8)>,
    awaiting_ack: BTreeMap<u16, oneshot::Sender<Option<String>>>,
    next_token: u16,
    stats: EndpointStats,
}

/// The endpoint: a bound UDP socket and the task serving it.
pub struct GatewayEndpoint {
    socket: Arc<UdpSocket>,
    shared: Arc<Mutex<Shared>>,
    events: mpsc::Receiver<GatewayEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for GatewayEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayEndpoint({:?})", self.socket.local_addr().ok())
    }
}

impl Drop for GatewayEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl GatewayEndpoint {
    /// Binds `addr` and serves the forwarders of `gateways` (EUIs); others are refused.
    pub async fn bind(
        addr: SocketAddr,
        gateways: BTreeSet<u64>,
        clock: Clock,
    ) -> std::io::Result<GatewayEndpoint> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, events) = mpsc::channel(1024);
        let task = tokio::spawn(serve(socket.clone(), shared.clone(), gateways, clock, tx));
        Ok(GatewayEndpoint {
            socket,
            shared,
            events,
            task,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next uplink or refusal; `None` once the endpoint stopped.
    pub async fn next_event(&mut self) -> Option<GatewayEvent> {
        self.events.recv().await
    }

    pub fn stats(&self) -> EndpointStats {
        lock(&self.shared).stats.clone()
    }

    /// Whether `gateway` has told us where to send downlinks.
    pub fn has_downlink(&self, gateway: u64) -> bool {
        lock(&self.shared).downlinks.contains_key(&gateway)
    }

    /// Asks `gateway`'s forwarder to transmit `txpk` (PULL_RESP) and waits for its TX_ACK.
    pub async fn transmit(
        &self,
        gateway: u64,
        txpk: TxPk,
        timeout: Duration,
    ) -> Result<(), TransmitError> {
        let (ack_tx, ack_rx) = oneshot::channel();
        let (to, bytes, token) = {
            let mut shared = lock(&self.shared);
            let (to, version) = *shared
                .downlinks
                .get(&gateway)
                .ok_or(TransmitError::NoDownlinkPath(gateway))?;
            shared.next_token = shared.next_token.wrapping_add(1);
            let token = shared.next_token;
            shared.awaiting_ack.insert(token, ack_tx);
            let packet = Packet::PullResp {
                version,
                token,
                body: PullRespBody { txpk },
            };
            (to, packet.encode(), token)
        };
        let forget = |shared: &Mutex<Shared>| {
            lock(shared).awaiting_ack.remove(&token);
        };
        if let Err(e) = self.socket.send_to(&bytes, to).await {
            forget(&self.shared);
            return Err(TransmitError::Io(e.to_string()));
        }
        match tokio::time::timeout(timeout, ack_rx).await {
            Ok(Ok(None)) => {
                lock(&self.shared).stats.transmitted += 1;
                Ok(())
            }
            Ok(Ok(Some(error))) => Err(TransmitError::Refused(error)),
            Ok(Err(_)) | Err(_) => {
                forget(&self.shared);
                Err(TransmitError::Timeout(timeout))
            }
        }
    }
}

fn refuse(shared: &Mutex<Shared>, reason: &str) {
    *lock(shared)
        .stats
        .refused
        .entry(reason.to_string())
        .or_default() += 1;
}

fn uplink(gateway: u64, received_ms: u64, rx: &RxPk) -> Result<Option<Uplink>, GwmpError> {
    if !rx.crc_ok() || rx.modu != "LORA" {
        return Ok(None);
    }
    Ok(Some(Uplink {
        gateway,
        received_ms,
        frequency_hz: rx.frequency_hz(),
        rssi_dbm_x10: rx.rssi.saturating_mul(10),
        snr_db_x10: rx.lsnr.map_or(0, |s| (s * 10.0).round() as i32),
        datr: rx.datr.as_str().unwrap_or_default().to_string(),
        payload: rx.payload()?,
    }))
}

async fn serve(
    socket: Arc<UdpSocket>,
    shared: Arc<Mutex<Shared>>,
    gateways: BTreeSet<u64>,
    clock: Clock,
    events: mpsc::Sender<GatewayEvent>,
) {
    // One byte more than allowed, so an oversized datagram is seen as such, not truncated.
    let mut buf = vec![0u8; crate::gwmp::MAX_DATAGRAM_BYTES + 1];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        lock(&shared).stats.datagrams += 1;
        let refused = |reason: String, category: &str| {
            refuse(&shared, category);
            GatewayEvent::Refused { from, reason }
        };
        let packet = match Packet::decode(&buf[..len]) {
            Ok(p) => p,
            Err(e) => {
                let category = match e {
                    GwmpError::TooLarge(_) => "oversized",
                    _ => "malformed",
                };
                let _ = events.try_send(refused(e.to_string(), category));
                continue;
            }
        };
        let gateway = match &packet {
            Packet::PushData { gateway, .. }
            | Packet::PullData { gateway, .. }
            | Packet::TxAck { gateway, .. } => *gateway,
            other => {
                let _ = events.try_send(refused(
                    format!("{} is sent by servers, not forwarders", other.name()),
                    "unexpected type",
                ));
                continue;
            }
        };
        if !gateways.contains(&gateway) {
            let _ = events.try_send(refused(
                format!("gateway {gateway:016x} is not served by this hotspot"),
                "unknown gateway",
            ));
            continue;
        }
        match packet {
            Packet::PushData {
                version,
                token,
                body,
                ..
            } => {
                let ack = Packet::PushAck { version, token }.encode();
                let _ = socket.send_to(&ack, from).await;
                let now = clock();
                for rx in &body.rxpk {
                    match uplink(gateway, now, rx) {
                        Ok(Some(up)) => {
                            lock(&shared).stats.uplinks += 1;
                            let _ = events.send(GatewayEvent::Uplink(up)).await;
                        }
                        Ok(None) => refuse(&shared, "bad crc or not lora"),
                        Err(e) => {
                            let _ = events.try_send(refused(e.to_string(), "malformed rxpk"));
                        }
                    }
                }
            }
            Packet::PullData { version, token, .. } => {
                lock(&shared).downlinks.insert(gateway, (from, version));
                let ack = Packet::PullAck { version, token }.encode();
                let _ = socket.send_to(&ack, from).await;
            }
            Packet::TxAck { token, body, .. } => {
                let error = body
                    .map(|b| b.txpk_ack.error)
                    .filter(|e| e != "NONE" && !e.is_empty());
                if let Some(waiting) = lock(&shared).awaiting_ack.remove(&token) {
                    let _ = waiting.send(error);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gwmp::{PushDataBody, TxAckBody, TxPkAck};
    use base64::Engine as _;

    const EUI: u64 = 0xAA55_5A00_0000_0101;

    fn rxpk(payload: &[u8]) -> RxPk {
        RxPk {
            time: None,
            tmst: 1,
            freq: 868.1,
            chan: 0,
            rfch: 0,
            stat: 1,
            modu: "LORA".into(),
            datr: serde_json::Value::String("SF7BW125".into()),
            codr: Some("4/5".into()),
            rssi: -97,
            lsnr: Some(7.5),
            size: payload.len() as u32,
            data: base64::engine::general_purpose::STANDARD.encode(payload),
        }
    }

    async fn exchange(socket: &UdpSocket, to: SocketAddr, packet: &[u8]) -> Packet {
        socket.send_to(packet, to).await.expect("send");
        let mut buf = [0u8; 2048];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer")
            .expect("recv");
        Packet::decode(&buf[..len]).expect("answer decodes")
    }

    #[tokio::test]
    async fn a_forwarder_pushes_uplinks_pulls_and_acknowledges_a_transmission() {
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut endpoint = GatewayEndpoint::bind(localhost, [EUI].into(), Arc::new(|| 1234))
            .await
            .expect("bind");
        let to = endpoint.local_addr().expect("addr");
        let forwarder = UdpSocket::bind(localhost).await.expect("forwarder");

        let push = Packet::PushData {
            version: 2,
            token: 0xBEEF,
            gateway: EUI,
            body: PushDataBody {
                rxpk: vec![rxpk(b"hello")],
                stat: None,
            },
        };
        assert_eq!(
            exchange(&forwarder, to, &push.encode()).await,
            Packet::PushAck {
                version: 2,
                token: 0xBEEF
            }
        );
        let Some(GatewayEvent::Uplink(up)) = endpoint.next_event().await else {
            panic!("an uplink");
        };
        assert_eq!(
            (
                up.payload.as_slice(),
                up.frequency_hz,
                up.rssi_dbm_x10,
                up.snr_db_x10,
                up.received_ms
            ),
            (b"hello".as_slice(), 868_100_000, -970, 75, 1234)
        );

        // No PULL_DATA yet: nowhere to send a downlink.
        let tx = TxPk::lora_now(b"beacon", 868_100_000, 14, "SF9BW125");
        assert_eq!(
            endpoint
                .transmit(EUI, tx.clone(), Duration::from_secs(1))
                .await,
            Err(TransmitError::NoDownlinkPath(EUI))
        );
        let pull = Packet::PullData {
            version: 2,
            token: 3,
            gateway: EUI,
        };
        assert_eq!(
            exchange(&forwarder, to, &pull.encode()).await,
            Packet::PullAck {
                version: 2,
                token: 3
            }
        );
        assert!(endpoint.has_downlink(EUI));

        // The forwarder answers the PULL_RESP with a TX_ACK carrying its token.
        let gateway_side = async {
            let mut buf = [0u8; 2048];
            let (len, _) = forwarder.recv_from(&mut buf).await.expect("pull resp");
            let Packet::PullResp { token, body, .. } =
                Packet::decode(&buf[..len]).expect("decodes")
            else {
                panic!("PULL_RESP expected");
            };
            assert_eq!(body.txpk.payload().expect("payload"), b"beacon");
            let ack = Packet::TxAck {
                version: 2,
                token,
                gateway: EUI,
                body: Some(TxAckBody {
                    txpk_ack: TxPkAck {
                        error: "NONE".into(),
                    },
                }),
            };
            forwarder.send_to(&ack.encode(), to).await.expect("ack");
        };
        let (sent, ()) = tokio::join!(
            endpoint.transmit(EUI, tx, Duration::from_secs(5)),
            gateway_side
        );
        assert_eq!(sent, Ok(()));
        assert_eq!(endpoint.stats().transmitted, 1);
    }

    #[tokio::test]
    async fn untrusted_datagrams_are_refused_by_reason_and_go_no_further() {
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut endpoint = GatewayEndpoint::bind(localhost, [EUI].into(), system_clock())
            .await
            .expect("bind");
        let to = endpoint.local_addr().expect("addr");
        let sender = UdpSocket::bind(localhost).await.expect("sender");
        let stranger = Packet::PushData {
            version: 2,
            token: 1,
            gateway: 0x0102_0304_0506_0708,
            body: PushDataBody {
                rxpk: vec![rxpk(b"spoofed")],
                stat: None,
            },
        };
        let mut bad_crc = rxpk(b"noise");
        bad_crc.stat = -1;
        let mut lying = rxpk(b"short");
        lying.size = 200;
        let mixed = Packet::PushData {
            version: 2,
            token: 2,
            gateway: EUI,
            body: PushDataBody {
                rxpk: vec![bad_crc, lying],
                stat: None,
            },
        };
        let server_only = Packet::PullAck {
            version: 2,
            token: 5,
        };
        let datagrams: Vec<Vec<u8>> = vec![
            vec![2, 0],
            vec![9, 0, 0, 0],
            vec![2u8; crate::gwmp::MAX_DATAGRAM_BYTES + 100],
            stranger.encode(),
            server_only.encode(),
            mixed.encode(),
        ];
        for d in &datagrams {
            sender.send_to(d, to).await.expect("send");
        }
        let mut reasons = Vec::new();
        while reasons.len() < 6 {
            match tokio::time::timeout(Duration::from_secs(5), endpoint.next_event()).await {
                Ok(Some(GatewayEvent::Refused { reason, .. })) => reasons.push(reason),
                Ok(Some(GatewayEvent::Uplink(up))) => panic!("an uplink got through: {up:?}"),
                _ => break,
            }
        }
        let stats = endpoint.stats();
        assert_eq!(stats.uplinks, 0, "{reasons:?}");
        assert_eq!(stats.refused.get("malformed"), Some(&2), "{stats:?}");
        assert_eq!(stats.refused.get("oversized"), Some(&1), "{stats:?}");
        assert_eq!(stats.refused.get("unknown gateway"), Some(&1), "{stats:?}");
        assert_eq!(stats.refused.get("unexpected type"), Some(&1), "{stats:?}");
        assert_eq!(
            stats.refused.get("bad crc or not lora"),
            Some(&1),
            "{stats:?}"
        );
        assert_eq!(stats.refused.get("malformed rxpk"), Some(&1), "{stats:?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("not served by this hotspot"))
        );
    }
}
