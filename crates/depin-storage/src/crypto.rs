//! Client-side encryption of an object before it is coded: XChaCha20-Poly1305 over 64 KiB
//! blocks with a key derived from the owner's secret and a random per-object nonce, so
//! providers hold only ciphertext and a damaged, reordered or truncated object is refused.
//!
//! Layout: `b"dpe1"`, the 16-byte object nonce, then each block's ciphertext and 16-byte tag.
//! Block `i` uses nonce `object nonce || i` and authenticates the header, `i` and whether it
//! is the last block.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use thiserror::Error;

/// Plaintext bytes per encrypted block.
pub const BLOCK_BYTES: usize = 64 * 1024;
const TAG_BYTES: usize = 16;
const MAGIC: &[u8; 4] = b"dpe1";
const OBJECT_NONCE_BYTES: usize = 16;
const HEADER_BYTES: usize = MAGIC.len() + OBJECT_NONCE_BYTES;
const KEY_CONTEXT: &str = "depin storage object key v1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("not an encrypted depin object")]
    NotEncrypted,
    #[error("block {0} does not authenticate (wrong key, or damaged, reordered or truncated data)")]
    Block(u64),
    #[error("no randomness for the object nonce: {0}")]
    Randomness(String),
}

/// Bytes of the ciphertext of a `plain_bytes` object.
pub fn encrypted_len(plain_bytes: u64) -> u64 {
    let blocks = plain_bytes.div_ceil(BLOCK_BYTES as u64).max(1);
    HEADER_BYTES as u64 + plain_bytes + blocks * TAG_BYTES as u64
}

fn cipher(owner_secret: &[u8; 32], object_nonce: &[u8]) -> XChaCha20Poly1305 {
    let mut material = Vec::with_capacity(32 + object_nonce.len());
    material.extend_from_slice(owner_secret);
    material.extend_from_slice(object_nonce);
    let key = blake3::derive_key(KEY_CONTEXT, &material);
    XChaCha20Poly1305::new(Key::from_slice(&key))
}

fn block_nonce(object_nonce: &[u8], index: u64) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..OBJECT_NONCE_BYTES].copy_from_slice(object_nonce);
    nonce[OBJECT_NONCE_BYTES..].copy_from_slice(&index.to_be_bytes());
    nonce
}

fn aad(header: &[u8], index: u64, last: bool) -> [u8; HEADER_BYTES + 9] {
    let mut aad = [0u8; HEADER_BYTES + 9];
    aad[..HEADER_BYTES].copy_from_slice(header);
    aad[HEADER_BYTES..HEADER_BYTES + 8].copy_from_slice(&index.to_be_bytes());
    aad[HEADER_BYTES + 8] = u8::from(last);
    aad
}

/// Encrypts `plain` for the owner of `owner_secret` under a fresh random object nonce.
pub fn encrypt(owner_secret: &[u8; 32], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut object_nonce = [0u8; OBJECT_NONCE_BYTES];
    getrandom::fill(&mut object_nonce).map_err(|e| CryptoError::Randomness(e.to_string()))?;
    Ok(encrypt_with_nonce(owner_secret, &object_nonce, plain))
}

/// Encrypts with a given object nonce (tests and benchmarks; never reuse one for a key).
pub fn encrypt_with_nonce(
    owner_secret: &[u8; 32],
    object_nonce: &[u8; 16],
    plain: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt_into(owner_secret, object_nonce, plain, &mut out);
    out
}

/// Encrypts into `out` (cleared first), in place, so a caller coding segment after segment
/// reuses one buffer instead of faulting in fresh pages for each.
pub fn encrypt_into(
    owner_secret: &[u8; 32],
    object_nonce: &[u8; 16],
    plain: &[u8],
    out: &mut Vec<u8>,
) {
    let cipher = cipher(owner_secret, object_nonce);
    out.clear();
    out.reserve(encrypted_len(plain.len() as u64) as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(object_nonce);
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&out[..HEADER_BYTES]);
    let blocks = plain.len().div_ceil(BLOCK_BYTES).max(1);
    for i in 0..blocks {
        let block =
            &plain[(i * BLOCK_BYTES).min(plain.len())..((i + 1) * BLOCK_BYTES).min(plain.len())];
        let nonce = block_nonce(object_nonce, i as u64);
        let aad = aad(&header, i as u64, i + 1 == blocks);
        let start = out.len();
        out.extend_from_slice(block);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        if let Ok(tag) =
            cipher.encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut out[start..])
        {
            out.extend_from_slice(&tag);
        }
    }
}

/// Decrypts an object encrypted by [`encrypt`] for the same owner secret.
pub fn decrypt(owner_secret: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut plain = Vec::new();
    decrypt_into(owner_secret, sealed, &mut plain)?;
    Ok(plain)
}

/// Decrypts into `out` (cleared first, and left empty on error), in place.
pub fn decrypt_into(
    owner_secret: &[u8; 32],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if sealed.len() < HEADER_BYTES + TAG_BYTES || &sealed[..MAGIC.len()] != MAGIC {
        return Err(CryptoError::NotEncrypted);
    }
    let header = &sealed[..HEADER_BYTES];
    let object_nonce = &sealed[MAGIC.len()..HEADER_BYTES];
    let cipher = cipher(owner_secret, object_nonce);
    let body = &sealed[HEADER_BYTES..];
    let blocks = body.len().div_ceil(BLOCK_BYTES + TAG_BYTES);
    out.clear();
    out.reserve(body.len());
    for (i, block) in body.chunks(BLOCK_BYTES + TAG_BYTES).enumerate() {
        let i = i as u64;
        if block.len() < TAG_BYTES {
            return Err(CryptoError::Block(i));
        }
        let nonce = block_nonce(object_nonce, i);
        let aad = aad(header, i, i + 1 == blocks as u64);
        let (text, tag) = block.split_at(block.len() - TAG_BYTES);
        let start = out.len();
        out.extend_from_slice(text);
        let opened = cipher.decrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &aad,
            &mut out[start..],
            Tag::from_slice(tag),
        );
        if opened.is_err() {
            // Nothing unauthenticated is left behind for a careless caller.
            out.clear();
            return Err(CryptoError::Block(i));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: [u8; 32] = [7u8; 32];

    #[test]
    fn round_trips_at_block_edges_and_refuses_tampering() {
        for len in [
            0,
            1,
            BLOCK_BYTES - 1,
            BLOCK_BYTES,
            BLOCK_BYTES + 1,
            3 * BLOCK_BYTES + 5,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = encrypt(&OWNER, &plain).expect("encrypt");
            assert_eq!(sealed.len() as u64, encrypted_len(len as u64));
            assert_eq!(decrypt(&OWNER, &sealed).expect("decrypt"), plain);
            // Another owner cannot read it.
            assert!(decrypt(&[8u8; 32], &sealed).is_err());
            // A flipped bit anywhere after the magic fails.
            let mut bad = sealed.clone();
            let at = sealed.len() / 2 + 4;
            bad[at] ^= 1;
            assert!(decrypt(&OWNER, &bad).is_err());
            // Dropping the last block is detected (the new last block was not sealed as last).
            if len > BLOCK_BYTES {
                let cut = HEADER_BYTES + BLOCK_BYTES + TAG_BYTES;
                assert_eq!(decrypt(&OWNER, &sealed[..cut]), Err(CryptoError::Block(0)));
            }
        }
        assert_eq!(
            decrypt(&OWNER, b"plain text, not sealed"),
            Err(CryptoError::NotEncrypted)
        );
    }

    #[test]
    fn the_same_object_twice_looks_different() {
        let a = encrypt(&OWNER, b"same bytes").expect("encrypt");
        let b = encrypt(&OWNER, b"same bytes").expect("encrypt");
        assert_ne!(a, b);
    }
}
