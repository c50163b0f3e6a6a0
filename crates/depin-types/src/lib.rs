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
#[cfg(feature = "test-utils")]
pub mod signature_edge_cases;

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

/// Longest service name.
pub const MAX_SERVICE_NAME_BYTES: usize = 16;

/// A service's name as the chain knows it (`storage`, `compute`, `coverage`, …): 1 to 16
/// lowercase ASCII letters, digits or `_`. This crate only checks the spelling; which services
/// exist is the protocol's registry's business (an unknown one is `service_not_enabled`).
/// Encoded as its name, in borsh (a string) and in JSON and TOML (a string or a map key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceKind {
    len: u8,
    bytes: [u8; MAX_SERVICE_NAME_BYTES],
}

const fn service_name_byte_ok(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

impl ServiceKind {
    /// A service name known at compile time; a bad spelling fails the build.
    pub const fn new(name: &'static str) -> ServiceKind {
        match ServiceKind::from_bytes(name.as_bytes()) {
            Some(kind) => kind,
            None => panic!("a service name is 1 to 16 of a-z, 0-9 and _"),
        }
    }

    const fn from_bytes(name: &[u8]) -> Option<ServiceKind> {
        if name.is_empty() || name.len() > MAX_SERVICE_NAME_BYTES {
            return None;
        }
        let mut bytes = [0u8; MAX_SERVICE_NAME_BYTES];
        let mut i = 0;
        while i < name.len() {
            if !service_name_byte_ok(name[i]) {
                return None;
            }
            bytes[i] = name[i];
            i += 1;
        }
        Some(ServiceKind {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl PartialOrd for ServiceKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// By name, so maps keyed by service list them alphabetically.
impl Ord for ServiceKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a service name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid service name {0:?}: 1 to 16 lowercase letters, digits or _")]
pub struct ServiceParseError(pub String);

impl FromStr for ServiceKind {
    type Err = ServiceParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceKind::from_bytes(s.to_ascii_lowercase().as_bytes())
            .ok_or_else(|| ServiceParseError(s.chars().take(64).collect()))
    }
}

impl BorshSerialize for ServiceKind {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(self.as_str(), writer)
    }
}

impl BorshDeserialize for ServiceKind {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        // Read the length first so a lying prefix cannot make us allocate.
        let len = u32::deserialize_reader(reader)? as usize;
        if len == 0 || len > MAX_SERVICE_NAME_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "service name length out of range",
            ));
        }
        let mut name = [0u8; MAX_SERVICE_NAME_BYTES];
        reader.read_exact(&mut name[..len])?;
        ServiceKind::from_bytes(&name[..len]).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid service name")
        })
    }
}

impl Serialize for ServiceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ServiceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        ServiceKind::from_bytes(s.as_bytes()).ok_or_else(|| {
            serde::de::Error::custom(ServiceParseError(s.chars().take(64).collect()))
        })
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
    fn service_names_are_spelled_strictly_and_round_trip() {
        let storage = ServiceKind::new("storage");
        assert_eq!(storage.to_string(), "storage");
        assert_eq!("Storage".parse::<ServiceKind>(), Ok(storage));
        for bad in ["", "radio waves", "x".repeat(17).as_str(), "été"] {
            assert!(bad.parse::<ServiceKind>().is_err(), "{bad:?}");
        }
        let bytes = crate::encode(&storage);
        assert_eq!(
            bytes,
            [7, 0, 0, 0, b's', b't', b'o', b'r', b'a', b'g', b'e']
        );
        assert_eq!(
            crate::decode_bounded::<ServiceKind>(&bytes, 64),
            Ok(storage)
        );
        // A name too long, or spelled outside the alphabet, does not decode.
        assert!(crate::decode_bounded::<ServiceKind>(&crate::encode(&"x".repeat(17)), 64).is_err());
        assert!(crate::decode_bounded::<ServiceKind>(&crate::encode(&"A"), 64).is_err());
        let json = serde_json::to_string(&storage).expect("json");
        assert_eq!(json, "\"storage\"");
        assert_eq!(
            serde_json::from_str::<ServiceKind>(&json).expect("back"),
            storage
        );
        // Ordered by name, whatever the length.
        assert!(ServiceKind::new("video") > ServiceKind::new("compute"));
        assert!(ServiceKind::new("ab") < ServiceKind::new("b"));
    }
}
