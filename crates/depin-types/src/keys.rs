//! ed25519 keys, addresses (bech32m, `depin1...`), signatures and BIP39 mnemonics.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey};
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

// Decompressing a public key costs about a third of a verification, and the same accounts
// sign block after block, so decompressed keys are cached.
static KEY_CACHE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<[u8; 32], ed25519_consensus::VerificationKey>>,
> = std::sync::LazyLock::new(|| std::sync::Mutex::new(std::collections::HashMap::new()));

/// The curve point of an address, from the cache or decompressed. Under ZIP-215 any 32 bytes
/// that decode to a curve point are a key, non-canonical encodings and small-order points
/// included: the rule must be a function of the bytes alone, the same on every node.
fn verifying_key(address: &Address) -> Result<ed25519_consensus::VerificationKey, SignatureError> {
    if let Some(key) = KEY_CACHE
        .lock()
        .ok()
        .and_then(|cache| cache.get(&address.0).copied())
    {
        return Ok(key);
    }
    let key = ed25519_consensus::VerificationKey::try_from(address.0)
        .map_err(|_| SignatureError::BadPublicKey)?;
    if let Ok(mut cache) = KEY_CACHE.lock() {
        if cache.len() >= KEY_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(address.0, key);
    }
    Ok(key)
}

/// Verifies one signature under the consensus rule, ZIP-215 (`ed25519-consensus`): the
/// cofactored equation `[8][S]B = [8]R + [8][k]A`, `S` canonical, `A` and `R` any encoding
/// of a curve point. Single and batch checks reach the same verdict on every input, so a
/// block's validity does not depend on how a node split or cached its checks.
pub fn verify(
    address: &Address,
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let key = verifying_key(address)?;
    let sig = ed25519_consensus::Signature::from(signature.0);
    key.verify(&sig, message)
        .map_err(|_| SignatureError::BadSignature)
}

/// Verifies many signatures at once, about twice as fast per signature as one by one, with
/// the same rule as [`verify`]: if every signature passes alone the batch passes, and a batch
/// with a bad one fails except with probability about 2^-128. On failure the caller learns
/// only that some signature is bad and must fall back to [`verify`] to find which.
pub fn verify_batch(items: &[(&Address, &[u8], &Signature)]) -> Result<(), SignatureError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut batch = ed25519_consensus::batch::Verifier::new();
    let mut transcript = blake3::Hasher::new_derive_key("depin batch verification coefficients");
    for (address, message, signature) in items {
        transcript.update(&address.0);
        transcript.update(&signature.0);
        transcript.update(&(message.len() as u64).to_le_bytes());
        transcript.update(message);
        batch.queue((
            ed25519_consensus::VerificationKeyBytes::from(address.0),
            ed25519_consensus::Signature::from(signature.0),
            *message,
        ));
    }
    batch
        .verify(BatchCoefficients::new(transcript))
        .map_err(|_| SignatureError::BadSignature)
}

/// The random coefficients of a batch check: the batch's own transcript mixed with fresh
/// operating-system randomness, so that a signer can neither predict them nor, should the OS
/// fail us, choose a batch that the coefficients make pass (they still bind every item).
struct BatchCoefficients(blake3::OutputReader);

impl BatchCoefficients {
    fn new(mut transcript: blake3::Hasher) -> BatchCoefficients {
        let mut fresh = [0u8; 32];
        if getrandom::fill(&mut fresh).is_ok() {
            transcript.update(&fresh);
        }
        BatchCoefficients(transcript.finalize_xof())
    }
}

impl rand_core::RngCore for BatchCoefficients {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for BatchCoefficients {}

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

    /// The twelve vectors of "Taming the many EdDSAs" (ed25519-speccheck `cases.txt`):
    /// message, key, signature, and the ZIP-215 verdict (the paper's Zebra row).
    const SPECCHECK: [(&str, &str, &str, bool); 12] = [
        (
            "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000",
            true,
        ),
        (
            "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
            true,
        ),
        (
            "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
            true,
        ),
        (
            "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
            "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
            "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
            true,
        ),
        (
            "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
            "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
            "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
            true,
        ),
        (
            "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
            "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
            "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
            true,
        ),
        (
            "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
            "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
            "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
            false,
        ),
        (
            "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
            "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
            "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
            false,
        ),
        (
            "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
            false,
        ),
        (
            "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
            "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
            true,
        ),
        (
            "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
            true,
        ),
        (
            "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
            true,
        ),
    ];

    fn speccheck() -> Vec<(Address, Vec<u8>, Signature, bool)> {
        SPECCHECK
            .iter()
            .map(|(m, k, s, valid)| {
                let key: [u8; 32] = hex::decode(k).expect("hex").try_into().expect("32");
                let sig: [u8; 64] = hex::decode(s).expect("hex").try_into().expect("64");
                (
                    Address(key),
                    hex::decode(m).expect("hex"),
                    Signature(sig),
                    *valid,
                )
            })
            .collect()
    }

    #[test]
    fn speccheck_vectors_get_the_zip215_verdict_alone_and_in_batches() {
        let cases = speccheck();
        for (i, (key, message, sig, valid)) in cases.iter().enumerate() {
            assert_eq!(
                verify(key, message, sig).is_ok(),
                *valid,
                "vector {i} alone"
            );
            assert_eq!(
                verify_batch(&[(key, message, sig)]).is_ok(),
                *valid,
                "vector {i} as a batch of one"
            );
        }
        // Every valid vector together is a valid batch; one invalid vector sinks it.
        let good: Vec<_> = cases
            .iter()
            .filter(|c| c.3)
            .map(|(k, m, s, _)| (k, m.as_slice(), s))
            .collect();
        assert_eq!(verify_batch(&good), Ok(()));
        for (k, m, s, _) in cases.iter().filter(|c| !c.3) {
            let mut with_bad = good.clone();
            with_bad.insert(3, (k, m.as_slice(), s));
            assert!(verify_batch(&with_bad).is_err());
        }
    }

    use crate::signature_edge_cases::EdgeCase;

    #[test]
    fn edge_case_signers_get_their_verdict_alone_and_in_batches_of_1_2_7_and_64() {
        for case in EdgeCase::ALL {
            let signer = case.signer(b"edge");
            for n in 0..16u8 {
                let message = [b"message ".as_slice(), &[n]].concat();
                let verdict = verify(&signer.address(), &message, &signer.sign(&message));
                assert_eq!(verdict.is_ok(), case.zip215_valid(), "{case:?} message {n}");
            }
        }
        // Batches of every size the issue names, each position holding each case, the rest
        // honest: the batch verdict is the verdict of its members.
        for size in [1usize, 2, 7, 64] {
            for case in EdgeCase::ALL {
                for position in [0, size / 2, size - 1] {
                    let signers: Vec<_> = (0..size)
                        .map(|i| {
                            let c = if i == position {
                                case
                            } else {
                                EdgeCase::Honest
                            };
                            c.signer(&[b"batch".as_slice(), &(i as u64).to_le_bytes()].concat())
                        })
                        .collect();
                    let messages: Vec<Vec<u8>> =
                        (0..size).map(|i| format!("tx {i}").into_bytes()).collect();
                    let sigs: Vec<Signature> = signers
                        .iter()
                        .zip(&messages)
                        .map(|(s, m)| s.sign(m))
                        .collect();
                    let addresses: Vec<Address> = signers.iter().map(|s| s.address()).collect();
                    let items: Vec<_> = (0..size)
                        .map(|i| (&addresses[i], messages[i].as_slice(), &sigs[i]))
                        .collect();
                    assert_eq!(
                        verify_batch(&items).is_ok(),
                        case.zip215_valid(),
                        "{case:?} at {position} of {size}"
                    );
                }
            }
        }
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
