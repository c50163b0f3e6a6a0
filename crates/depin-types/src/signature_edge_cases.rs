//! Signatures at the edges of ed25519 ("Taming the many EdDSAs", Chalkias et al. 2020), made
//! for any message so that tests can sign whole transactions with them: small-order and
//! mixed-order keys, small-order and non-canonically encoded `R`, non-canonical `S`. Each
//! case says whether the consensus rule (ZIP-215) accepts it; every verification path of the
//! node must agree. Test-only (`test-utils`).

use crate::{Address, Keypair, Signature};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// A point of order 8 (the small-order key of the paper's vectors 0 to 2).
pub const SMALL_ORDER_POINT: [u8; 32] =
    hex_literal(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa");
/// The identity encoded with `y = p + 1`: decodes, but is not the canonical encoding.
pub const NON_CANONICAL_IDENTITY: [u8; 32] =
    hex_literal(b"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
/// The point of order 2 with its sign bit set although `x = 0` ("negative zero").
pub const NON_CANONICAL_ORDER_TWO: [u8; 32] =
    hex_literal(b"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};
/// The group order `l`, little-endian.
const GROUP_ORDER: [u8; 32] =
    hex_literal(b"edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

const fn hex_literal(text: &[u8; 64]) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lowercase hex"),
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]);
        i += 1;
    }
    out
}

/// How a case signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeCase {
    /// An ordinary key and signature.
    Honest,
    /// A small-order key, `R` the identity, `S = 0`: passes the cofactored equation for every
    /// message, so anyone can sign for this key (its account is public).
    SmallOrderKey,
    /// A non-canonical encoding of a small-order key, `R` the identity, `S = 0`.
    NonCanonicalSmallOrderKey,
    /// An ordinary key plus a point of order 8, signed with the ordinary secret: passes the
    /// cofactored equation always, the cofactorless one only when `8 | k`.
    MixedOrderKey,
    /// An ordinary key with `R` a point of order 8 and `S = k·a`.
    SmallOrderR,
    /// An ordinary key with `R` the identity in a non-canonical encoding and `S = k·a`.
    NonCanonicalR,
    /// An ordinary signature with `S + l` in place of `S` (malleated, not canonical).
    NonCanonicalS,
    /// An ordinary key's signature of another message.
    WrongMessage,
}

impl EdgeCase {
    pub const ALL: [EdgeCase; 8] = [
        EdgeCase::Honest,
        EdgeCase::SmallOrderKey,
        EdgeCase::NonCanonicalSmallOrderKey,
        EdgeCase::MixedOrderKey,
        EdgeCase::SmallOrderR,
        EdgeCase::NonCanonicalR,
        EdgeCase::NonCanonicalS,
        EdgeCase::WrongMessage,
    ];

    /// Whether the consensus rule (ZIP-215) accepts this case's signatures.
    pub fn zip215_valid(self) -> bool {
        !matches!(self, EdgeCase::NonCanonicalS | EdgeCase::WrongMessage)
    }

    /// A signer of this case; `seed` picks the ordinary secret where the case has one.
    pub fn signer(self, seed: &[u8]) -> EdgeSigner {
        let secret = Keypair::from_seed(seed).secret_bytes();
        let expanded: [u8; 64] = Sha512::digest(secret).into();
        let mut scalar_bytes = [0u8; 32];
        scalar_bytes.copy_from_slice(&expanded[..32]);
        scalar_bytes[0] &= 248;
        scalar_bytes[31] &= 127;
        scalar_bytes[31] |= 64;
        let a = Scalar::from_bytes_mod_order(scalar_bytes);
        let mut nonce_prefix = [0u8; 32];
        nonce_prefix.copy_from_slice(&expanded[32..]);
        let ordinary = EdwardsPoint::mul_base(&a).compress().to_bytes();
        let key = match self {
            EdgeCase::SmallOrderKey => SMALL_ORDER_POINT,
            EdgeCase::NonCanonicalSmallOrderKey => NON_CANONICAL_ORDER_TWO,
            EdgeCase::MixedOrderKey => (EdwardsPoint::mul_base(&a) + point(&SMALL_ORDER_POINT))
                .compress()
                .to_bytes(),
            _ => ordinary,
        };
        EdgeSigner {
            case: self,
            key,
            secret: a,
            nonce_prefix,
        }
    }
}

/// Signs any message as its [`EdgeCase`] does.
#[derive(Clone)]
pub struct EdgeSigner {
    pub case: EdgeCase,
    key: [u8; 32],
    secret: Scalar,
    nonce_prefix: [u8; 32],
}

fn point(bytes: &[u8; 32]) -> EdwardsPoint {
    CompressedEdwardsY(*bytes).decompress().unwrap_or_default()
}

fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(key)
        .chain_update(message)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

fn signature(r: [u8; 32], s: [u8; 32]) -> Signature {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&r);
    bytes[32..].copy_from_slice(&s);
    Signature(bytes)
}

/// `a + b` of two 256-bit little-endian numbers whose sum fits.
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

impl EdgeSigner {
    pub fn address(&self) -> Address {
        Address(self.key)
    }

    /// An ordinary signature of `message` by this signer's key bytes.
    fn ordinary(&self, message: &[u8]) -> ([u8; 32], Scalar) {
        let nonce: [u8; 64] = Sha512::new()
            .chain_update(self.nonce_prefix)
            .chain_update(message)
            .finalize()
            .into();
        let r = Scalar::from_bytes_mod_order_wide(&nonce);
        let r_bytes = EdwardsPoint::mul_base(&r).compress().to_bytes();
        let s = r + challenge(&r_bytes, &self.key, message) * self.secret;
        (r_bytes, s)
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        match self.case {
            EdgeCase::Honest | EdgeCase::MixedOrderKey => {
                let (r, s) = self.ordinary(message);
                signature(r, s.to_bytes())
            }
            EdgeCase::SmallOrderKey | EdgeCase::NonCanonicalSmallOrderKey => {
                signature(IDENTITY, [0u8; 32])
            }
            EdgeCase::SmallOrderR => {
                let s = challenge(&SMALL_ORDER_POINT, &self.key, message) * self.secret;
                signature(SMALL_ORDER_POINT, s.to_bytes())
            }
            EdgeCase::NonCanonicalR => {
                let s = challenge(&NON_CANONICAL_IDENTITY, &self.key, message) * self.secret;
                signature(NON_CANONICAL_IDENTITY, s.to_bytes())
            }
            EdgeCase::NonCanonicalS => {
                let (r, s) = self.ordinary(message);
                signature(r, add_le(&s.to_bytes(), &GROUP_ORDER))
            }
            EdgeCase::WrongMessage => {
                let (r, s) = self.ordinary(&[message, b" (not this one)"].concat());
                signature(r, s.to_bytes())
            }
        }
    }
}
