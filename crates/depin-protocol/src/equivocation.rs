//! Equivocation evidence from the consensus engine (simplex): two votes by one validator in
//! one round that must never both exist. Parsed and checked here, in pure code, so every
//! node reaches the same verdict without the engine: the bytes are simplex's `Activity`
//! encoding of `ConflictingNotarize` (7), `ConflictingFinalize` (8) or `NullifyFinalize` (9).
//!
//! A vote is `subject ‖ varint(signer) ‖ signature[64]`, where the subject of a notarize or
//! finalize is `varint(epoch) ‖ varint(view) ‖ varint(parent) ‖ digest[32]` and that of a
//! nullify `varint(epoch) ‖ varint(view)`; the signature is plain ed25519 (ZIP-215, as ours)
//! over `varint(len(ns)) ‖ ns ‖ subject` with `ns = chain_id ‖ "_NOTARIZE" | "_NULLIFY" |
//! "_FINALIZE"`. Varints are canonical LEB128.

use depin_types::{Address, Signature};

/// Evidence is a few hundred bytes; anything longer is refused before parsing.
pub const MAX_EVIDENCE_BYTES: usize = 512;

/// Which rule the two votes break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Two notarizes of different proposals in one round.
    ConflictingNotarize,
    /// Two finalizes of different proposals in one round.
    ConflictingFinalize,
    /// A nullify and a finalize in one round.
    NullifyFinalize,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::ConflictingNotarize => "conflicting notarize votes",
            EvidenceKind::ConflictingFinalize => "conflicting finalize votes",
            EvidenceKind::NullifyFinalize => "a nullify and a finalize vote",
        }
    }
}

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence is {0} bytes, at most {MAX_EVIDENCE_BYTES}")]
    TooLarge(usize),
    #[error("malformed evidence: {0}")]
    Malformed(&'static str),
    #[error("the two votes are not a conflict: {0}")]
    NotAConflict(&'static str),
    #[error("a vote's signature does not verify for the named validator")]
    BadSignature,
}

/// The votes' namespace suffixes, as simplex derives them from the chain's namespace.
pub const NOTARIZE_SUFFIX: &[u8] = b"_NOTARIZE";
pub const NULLIFY_SUFFIX: &[u8] = b"_NULLIFY";
pub const FINALIZE_SUFFIX: &[u8] = b"_FINALIZE";

/// One signed vote inside the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote<'a> {
    pub suffix: &'static [u8],
    /// The signed message (the round, or the proposal), as the bytes it was signed over.
    pub subject: &'a [u8],
    /// The proposal's parent view and digest; `None` for a nullify.
    pub proposal: Option<(u64, [u8; 32])>,
    pub signer: u32,
    pub signature: Signature,
}

/// Parsed evidence: the round, the signer index in the era's participant set (validators
/// sorted by key bytes) and the two votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence<'a> {
    pub kind: EvidenceKind,
    pub epoch: u64,
    pub view: u64,
    pub signer: u32,
    pub votes: [Vote<'a>; 2],
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self, max_bits: u32) -> Result<u64, EvidenceError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or(EvidenceError::Malformed("truncated varint"))?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift >= max_bits || (shift > 0 && bits.checked_shl(shift).is_none()) {
                return Err(EvidenceError::Malformed("varint too long"));
            }
            if max_bits - shift < 7 && bits >> (max_bits - shift) != 0 {
                return Err(EvidenceError::Malformed("varint overflows"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(EvidenceError::Malformed("varint not canonical"));
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EvidenceError> {
        let end = self.at + N;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(EvidenceError::Malformed("truncated"))?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// A vote; returns it with its (epoch, view).
    fn vote(&mut self, suffix: &'static [u8]) -> Result<(Vote<'a>, u64, u64), EvidenceError> {
        let start = self.at;
        let epoch = self.varint(64)?;
        let view = self.varint(64)?;
        let proposal = if suffix == NULLIFY_SUFFIX {
            None
        } else {
            let parent = self.varint(64)?;
            Some((parent, self.array::<32>()?))
        };
        let subject = &self.bytes[start..self.at];
        let signer = u32::try_from(self.varint(32)?)
            .map_err(|_| EvidenceError::Malformed("signer index overflows"))?;
        let signature = Signature(self.array::<64>()?);
        Ok((
            Vote {
                suffix,
                subject,
                proposal,
                signer,
                signature,
            },
            epoch,
            view,
        ))
    }
}

impl<'a> Evidence<'a> {
    /// Parses and checks the shape: a known kind, both votes of one round by one signer, the
    /// proposals different where the kind needs it, nothing after.
    pub fn decode(bytes: &'a [u8]) -> Result<Evidence<'a>, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::TooLarge(bytes.len()));
        }
        let (&tag, _) = bytes
            .split_first()
            .ok_or(EvidenceError::Malformed("empty"))?;
        let (kind, suffixes) = match tag {
            7 => (
                EvidenceKind::ConflictingNotarize,
                [NOTARIZE_SUFFIX, NOTARIZE_SUFFIX],
            ),
            8 => (
                EvidenceKind::ConflictingFinalize,
                [FINALIZE_SUFFIX, FINALIZE_SUFFIX],
            ),
            9 => (
                EvidenceKind::NullifyFinalize,
                [NULLIFY_SUFFIX, FINALIZE_SUFFIX],
            ),
            _ => return Err(EvidenceError::Malformed("not an equivocation kind")),
        };
        let mut reader = Reader { bytes, at: 1 };
        let (first, epoch, view) = reader.vote(suffixes[0])?;
        let (second, epoch_2, view_2) = reader.vote(suffixes[1])?;
        if reader.at != bytes.len() {
            return Err(EvidenceError::Malformed("trailing bytes"));
        }
        if (epoch, view) != (epoch_2, view_2) {
            return Err(EvidenceError::NotAConflict(
                "the votes are of different rounds",
            ));
        }
        if first.signer != second.signer {
            return Err(EvidenceError::NotAConflict(
                "the votes have different signers",
            ));
        }
        if kind != EvidenceKind::NullifyFinalize && first.proposal == second.proposal {
            return Err(EvidenceError::NotAConflict(
                "the votes are for the same proposal",
            ));
        }
        Ok(Evidence {
            kind,
            epoch,
            view,
            signer: first.signer,
            votes: [first, second],
        })
    }

    /// Checks both signatures as `offender`'s under the chain's namespace.
    pub fn verify(&self, chain_id: &str, offender: &Address) -> Result<(), EvidenceError> {
        for vote in &self.votes {
            let message = signed_bytes(chain_id, vote.suffix, vote.subject);
            depin_types::verify(offender, &message, &vote.signature)
                .map_err(|_| EvidenceError::BadSignature)?;
        }
        Ok(())
    }
}

/// The bytes a vote's signature covers: `varint(len(ns)) ‖ ns ‖ subject`, `ns = chain_id ‖
/// suffix`.
pub fn signed_bytes(chain_id: &str, suffix: &[u8], subject: &[u8]) -> Vec<u8> {
    let namespace_len = chain_id.len() + suffix.len();
    let mut out = Vec::with_capacity(namespace_len + subject.len() + 5);
    write_varint(namespace_len as u64, &mut out);
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(suffix);
    out.extend_from_slice(subject);
    out
}

/// Canonical LEB128, as simplex writes integers.
pub fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use depin_types::Keypair;

    const CHAIN: &str = "depin-test";

    fn subject(epoch: u64, view: u64, proposal: Option<(u64, [u8; 32])>) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(epoch, &mut out);
        write_varint(view, &mut out);
        if let Some((parent, digest)) = proposal {
            write_varint(parent, &mut out);
            out.extend_from_slice(&digest);
        }
        out
    }

    fn vote(key: &Keypair, signer: u32, suffix: &[u8], subject: &[u8]) -> Vec<u8> {
        let mut out = subject.to_vec();
        write_varint(u64::from(signer), &mut out);
        out.extend_from_slice(&key.sign(&signed_bytes(CHAIN, suffix, subject)).0);
        out
    }

    fn notarize_pair(key: &Keypair) -> Vec<u8> {
        let mut out = vec![7];
        out.extend(vote(
            key,
            2,
            NOTARIZE_SUFFIX,
            &subject(3, 130, Some((129, [1; 32]))),
        ));
        out.extend(vote(
            key,
            2,
            NOTARIZE_SUFFIX,
            &subject(3, 130, Some((129, [2; 32]))),
        ));
        out
    }

    #[test]
    fn conflicting_votes_decode_and_verify_and_everything_else_is_refused() {
        let key = Keypair::from_seed(b"validator");
        let other = Keypair::from_seed(b"other");
        let bytes = notarize_pair(&key);
        let evidence = Evidence::decode(&bytes).expect("decodes");
        assert_eq!(
            (
                evidence.kind,
                evidence.epoch,
                evidence.view,
                evidence.signer
            ),
            (EvidenceKind::ConflictingNotarize, 3, 130, 2)
        );
        evidence.verify(CHAIN, &key.address()).expect("verifies");
        assert_eq!(
            evidence.verify(CHAIN, &other.address()),
            Err(EvidenceError::BadSignature)
        );
        assert_eq!(
            evidence.verify("another-chain", &key.address()),
            Err(EvidenceError::BadSignature)
        );

        // Nullify and finalize in one round.
        let mut nf = vec![9];
        nf.extend(vote(&key, 0, NULLIFY_SUFFIX, &subject(1, 9, None)));
        nf.extend(vote(
            &key,
            0,
            FINALIZE_SUFFIX,
            &subject(1, 9, Some((8, [5; 32]))),
        ));
        let evidence = Evidence::decode(&nf).expect("decodes");
        assert_eq!(evidence.kind, EvidenceKind::NullifyFinalize);
        evidence.verify(CHAIN, &key.address()).expect("verifies");

        // A finalize signature passed off as a notarize does not verify.
        let mut wrong_suffix = vec![7];
        wrong_suffix.extend(vote(
            &key,
            2,
            FINALIZE_SUFFIX,
            &subject(3, 130, Some((129, [1; 32]))),
        ));
        wrong_suffix.extend(vote(
            &key,
            2,
            NOTARIZE_SUFFIX,
            &subject(3, 130, Some((129, [2; 32]))),
        ));
        let evidence = Evidence::decode(&wrong_suffix).expect("decodes");
        assert_eq!(
            evidence.verify(CHAIN, &key.address()),
            Err(EvidenceError::BadSignature)
        );

        // A tampered signature.
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let evidence = Evidence::decode(&tampered).expect("decodes");
        assert_eq!(
            evidence.verify(CHAIN, &key.address()),
            Err(EvidenceError::BadSignature)
        );

        // Shapes that are no conflict, or not evidence at all.
        let same = {
            let v = vote(
                &key,
                2,
                NOTARIZE_SUFFIX,
                &subject(3, 130, Some((129, [1; 32]))),
            );
            [vec![7], v.clone(), v].concat()
        };
        let other_view = [
            vec![7],
            vote(
                &key,
                2,
                NOTARIZE_SUFFIX,
                &subject(3, 130, Some((129, [1; 32]))),
            ),
            vote(
                &key,
                2,
                NOTARIZE_SUFFIX,
                &subject(3, 131, Some((129, [2; 32]))),
            ),
        ]
        .concat();
        let other_signer = [
            vec![7],
            vote(
                &key,
                2,
                NOTARIZE_SUFFIX,
                &subject(3, 130, Some((129, [1; 32]))),
            ),
            vote(
                &key,
                1,
                NOTARIZE_SUFFIX,
                &subject(3, 130, Some((129, [2; 32]))),
            ),
        ]
        .concat();
        assert!(matches!(
            Evidence::decode(&same),
            Err(EvidenceError::NotAConflict(_))
        ));
        assert!(matches!(
            Evidence::decode(&other_view),
            Err(EvidenceError::NotAConflict(_))
        ));
        assert!(matches!(
            Evidence::decode(&other_signer),
            Err(EvidenceError::NotAConflict(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        let mut unknown = bytes.clone();
        unknown[0] = 1;
        // The epoch written as 0x83 0x00 (3, not canonical).
        let mut long_varint = vec![7, 0x83, 0x00];
        long_varint.extend_from_slice(&bytes[2..]);
        for bad in [
            &trailing[..],
            &unknown[..],
            &long_varint[..],
            &bytes[..bytes.len() - 1],
            &[][..],
        ] {
            assert!(
                matches!(Evidence::decode(bad), Err(EvidenceError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Evidence::decode(&[7u8; MAX_EVIDENCE_BYTES + 1]),
            Err(EvidenceError::TooLarge(_))
        ));
    }

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for value in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_varint(value, &mut out);
            let mut reader = Reader { bytes: &out, at: 0 };
            assert_eq!(reader.varint(64), Ok(value));
            assert_eq!(reader.at, out.len());
        }
        // Eleven bytes, or a tenth byte above 1, overflow a u64; a sixth byte a u32.
        let overlong = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(
            Reader {
                bytes: &overlong,
                at: 0
            }
            .varint(64)
            .is_err()
        );
        let u32_over = [0xffu8, 0xff, 0xff, 0xff, 0x1f];
        assert!(
            Reader {
                bytes: &u32_over,
                at: 0
            }
            .varint(32)
            .is_err()
        );
    }
}
