//! ed25519 keys, addresses (bech32m, `depin1...`), signatures and BIP39 mnemonics.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Human-readable part of every address.
pub const ADDRESS_HRP: &str = "depin";

/// An account: the 32 bytes of an ed25519 public key. Its one text form is bech32m with the
/// `depin` prefix, e.g. `depin1q...`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 32]);

/// Why an address string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("invalid address {text:?}: {reason}")]
    Invalid { text: String, reason: String },
}

impl Address {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn hrp() -> bech32::Hrp {
        // The constant is a valid HRP; parse cannot fail on it.
        bech32::Hrp::parse(ADDRESS_HRP).unwrap_or(bech32::hrp::BC)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match bech32::encode_lower::<bech32::Bech32m>(Self::hrp(), &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "0x{}", hex::encode(self.0)),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| AddressError::Invalid {
            text: s.chars().take(100).collect(),
            reason,
        };
        if s.len() > 100 {
            return Err(invalid("too long".into()));
        }
        let (hrp, data) = bech32::decode(s).map_err(|e| invalid(e.to_string()))?;
        if hrp.as_str() != ADDRESS_HRP {
            return Err(invalid(format!(
                "prefix must be {ADDRESS_HRP:?}, got {:?}",
                hrp.as_str()
            )));
        }
        let bytes: [u8; 32] = data
            .try_into()
            .map_err(|_| invalid("expected 32 bytes".into()))?;
        Ok(Address(bytes))
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

/// A signature that does not verify, or a public key that is not a curve point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("address is not a valid ed25519 public key")]
    BadPublicKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// Most decompressed public keys kept; the cache is emptied when it fills.
const KEY_CACHE_CAPACITY: usize = 1 << 16;

// Decompressing a public key costs about a third of a batched verification, and the same
// accounts sign block after block, so decompressed keys are cached.
static KEY_CACHE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifyingKey>>,
> = std::sync::LazyLock::new(|| std::sync::Mutex::new(std::collections::HashMap::new()));

/// The curve point of an address, from the cache or decompressed.
fn verifying_key(address: &Address) -> Result<VerifyingKey, SignatureError> {
    if let Some(key) = KEY_CACHE
        .lock()
        .ok()
        .and_then(|cache| cache.get(&address.0).copied())
    {
        return Ok(key);
    }
    let key = VerifyingKey::from_bytes(&address.0).map_err(|_| SignatureError::BadPublicKey)?;
    if let Ok(mut cache) = KEY_CACHE.lock() {
        if cache.len() >= KEY_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(address.0, key);
    }
    Ok(key)
}

/// Verifies one signature (strict: rejects small-order keys and malleable signatures).
pub fn verify(
    address: &Address,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let key = verifying_key(address)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(message, &sig)
        .map_err(|_| SignatureError::BadSignature)
}

/// Verifies many signatures at once, which is about twice as fast per signature as one by one.
/// On failure the caller learns only that some signature is bad and must fall back to
/// [`verify`] to find which.
pub fn verify_batch(items: &[(&Address, &[u8], &Signature)]) -> Result<(), SignatureError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    for (address, message, signature) in items {
        let key = verifying_key(address)?;
        // Batch verification is not strict about weak keys, so reject them here to keep the
        // batch and single paths in agreement.
        if key.is_weak() {
            return Err(SignatureError::BadPublicKey);
        }
        keys.push(key);
        messages.push(*message);
        sigs.push(ed25519_dalek::Signature::from_bytes(&signature.0));
    }
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).map_err(|_| SignatureError::BadSignature)
}

/// Why a key could not be made, parsed or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no operating-system randomness: {0}")]
    Randomness(String),
    #[error("invalid secret key: {0}")]
    InvalidSecret(String),
    #[error("invalid mnemonic: {0}")]
    InvalidMnemonic(String),
    #[error("key file address {file} does not match its secret key ({derived})")]
    AddressMismatch { file: String, derived: String },
}

/// An ed25519 signing key with its address.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Keypair, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Randomness(e.to_string()))?;
        Ok(Keypair::from_secret(secret))
    }

    /// A key whose secret is derived from `seed`: for tests and deterministic devnets only.
    pub fn from_seed(seed: &[u8]) -> Keypair {
        Keypair::from_secret(blake3::derive_key("depin test key", seed))
    }

    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The 24-word BIP39 mnemonic whose entropy is exactly the 32-byte secret key, so export
    /// and import are lossless.
    pub fn to_mnemonic(&self) -> String {
        match bip39::Mnemonic::from_entropy(&self.secret_bytes()) {
            Ok(m) => m.to_string(),
            // 32 bytes is a valid BIP39 entropy length; this arm is unreachable in practice.
            Err(e) => format!("<mnemonic error: {e}>"),
        }
    }

    pub fn from_mnemonic(words: &str) -> Result<Keypair, KeyError> {
        let mnemonic = bip39::Mnemonic::parse_normalized(words.trim())
            .map_err(|e| KeyError::InvalidMnemonic(e.to_string()))?;
        let entropy = mnemonic.to_entropy();
        let secret: [u8; 32] = entropy.try_into().map_err(|_| {
            KeyError::InvalidMnemonic("expected 24 words (32 bytes of entropy)".into())
        })?;
        Ok(Keypair::from_secret(secret))
    }
}

/// The JSON shape of a key file. The file itself is written by the binary with mode 0600.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub address: Address,
    /// Hex of the 32-byte ed25519 secret key.
    pub secret_key: String,
}

impl KeyFile {
    pub fn from_keypair(key: &Keypair) -> KeyFile {
        KeyFile {
            address: key.address(),
            secret_key: hex::encode(key.secret_bytes()),
        }
    }

    pub fn to_keypair(&self) -> Result<Keypair, KeyError> {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(self.secret_key.trim(), &mut secret)
            .map_err(|e| KeyError::InvalidSecret(e.to_string()))?;
        let key = Keypair::from_secret(secret);
        if key.address() != self.address {
            return Err(KeyError::AddressMismatch {
                file: self.address.to_string(),
                derived: key.address().to_string(),
            });
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_round_trip() {
        let key = Keypair::from_seed(b"alice");
        let text = key.address().to_string();
        assert!(text.starts_with("depin1"));
        assert_eq!(text.parse::<Address>(), Ok(key.address()));
        assert!("depin1qqqq".parse::<Address>().is_err());
        assert!("cosmos1qqqq".parse::<Address>().is_err());
    }

    #[test]
    fn sign_verify_and_batch() {
        let a = Keypair::from_seed(b"a");
        let b = Keypair::from_seed(b"b");
        let sa = a.sign(b"m1");
        let sb = b.sign(b"m2");
        assert_eq!(verify(&a.address(), b"m1", &sa), Ok(()));
        assert_eq!(
            verify(&a.address(), b"m2", &sa),
            Err(SignatureError::BadSignature)
        );
        let (aa, ba) = (a.address(), b.address());
        assert_eq!(
            verify_batch(&[(&aa, b"m1", &sa), (&ba, b"m2", &sb)]),
            Ok(())
        );
        assert!(verify_batch(&[(&aa, b"m1", &sa), (&ba, b"m1", &sb)]).is_err());
    }

    #[test]
    fn mnemonic_round_trip() {
        let key = Keypair::generate().expect("key");
        let words = key.to_mnemonic();
        assert_eq!(words.split_whitespace().count(), 24);
        let back = Keypair::from_mnemonic(&words).expect("restore");
        assert_eq!(back.address(), key.address());
        assert!(Keypair::from_mnemonic("abandon abandon").is_err());
    }

    #[test]
    fn key_file_detects_mismatch() {
        let key = Keypair::from_seed(b"k");
        let mut file = KeyFile::from_keypair(&key);
        assert_eq!(file.to_keypair().expect("ok").address(), key.address());
        file.address = Keypair::from_seed(b"other").address();
        assert!(matches!(
            file.to_keypair(),
            Err(KeyError::AddressMismatch { .. })
        ));
    }
}
