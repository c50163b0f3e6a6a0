//! Owns: hashes, addresses, amounts, keys and signatures, service kinds, the canonical encoding.
//! Must not: do I/O of any kind (files, sockets, clock) or depend on another depin crate.
//!
//! depin-types: the vocabulary every other crate speaks — hashes, addresses, amounts, keys,
//! signatures, service kinds and the canonical (borsh) encoding with bounded decoding.
//!
//! This crate owns no state and does no I/O (no files, no sockets, no clock). Key *files* are
//! read and written by the binary; this crate only defines their JSON shape.

mod amount;
mod codec;
mod keys;

pub use amount::{Amount, AmountError, u128_string};
pub use codec::{CodecError, decode_bounded, encode};
pub use keys::{
    Address, AddressError, KeyError, KeyFile, Keypair, Signature, SignatureError, verify,
    verify_batch,
};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A 32-byte BLAKE3 digest. Shown as lowercase hex everywhere.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0u8; 32]);

    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// BLAKE3 of the concatenation of `parts`, with a domain tag so that hashes of different
    /// kinds of objects never collide.
    pub fn tagged(tag: &str, parts: &[&[u8]]) -> Hash {
        let mut hasher = blake3::Hasher::new_derive_key(tag);
        for part in parts {
            hasher.update(part);
        }
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// Why a hash string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hash: expected 64 hex characters")]
pub struct HashParseError;

impl FromStr for Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.len() != 64 {
            return Err(HashParseError);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| HashParseError)?;
        Ok(Hash(out))
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The physical-infrastructure services a provider can offer. The numeric codes are part of the
/// canonical encoding and never change.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[borsh(use_discriminant = true)]
pub enum ServiceKind {
    Storage = 0,
    Compute = 1,
    Coverage = 2,
    Video = 3,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Storage,
        ServiceKind::Compute,
        ServiceKind::Coverage,
        ServiceKind::Video,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceKind::Storage => "storage",
            ServiceKind::Compute => "compute",
            ServiceKind::Coverage => "coverage",
            ServiceKind::Video => "video",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a service name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service {0:?}: expected storage, compute, coverage or video")]
pub struct ServiceParseError(pub String);

impl FromStr for ServiceKind {
    type Err = ServiceParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "storage" => Ok(ServiceKind::Storage),
            "compute" => Ok(ServiceKind::Compute),
            "coverage" => Ok(ServiceKind::Coverage),
            "video" => Ok(ServiceKind::Video),
            _ => Err(ServiceParseError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        let h = Hash::of(b"depin");
        let parsed: Hash = h.to_hex().parse().expect("parse");
        assert_eq!(h, parsed);
        assert!("zz".parse::<Hash>().is_err());
        let json = serde_json::to_string(&h).expect("json");
        let back: Hash = serde_json::from_str(&json).expect("json back");
        assert_eq!(h, back);
    }

    #[test]
    fn tagged_hashes_differ_by_tag() {
        assert_ne!(
            Hash::tagged("depin a", &[b"x"]),
            Hash::tagged("depin b", &[b"x"])
        );
    }

    #[test]
    fn service_kind_parse() {
        for s in ServiceKind::ALL {
            assert_eq!(s.as_str().parse::<ServiceKind>(), Ok(s));
        }
        assert!("radio".parse::<ServiceKind>().is_err());
    }
}
