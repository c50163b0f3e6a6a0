//! Owns: the coverage runtime: the packet-forwarder endpoint, beacons and reports, the coverage simulator.
//! Must not: decide whether a report is valid, or import another service.
//!
//! The coverage service's runtime on a hotspot: the endpoint a LoRa gateway's packet forwarder
//! talks to (Semtech UDP, GWMP v2), beacons sent through it on the chain's entropy, heard
//! beacons turned into witness reports and device uplinks into packet receipts. The rules that
//! judge those reports are `depin_protocol::coverage`'s; this crate never decides validity.

pub mod endpoint;
pub mod frames;
pub mod gwmp;
pub mod sim;
