//! Canonical encoding: borsh, with the input size checked before anything is decoded.

use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("input of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

/// Canonical bytes of `value`.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Serialising into a Vec cannot fail: the only error source is the writer.
    borsh::to_vec(value).unwrap_or_default()
}

/// Decodes `bytes` as `T`, refusing inputs over `max_bytes` and trailing bytes. Borsh caps
/// its own pre-allocation, so a lying length prefix cannot make this allocate more than the
/// input justifies.
pub fn decode_bounded<T: BorshDeserialize>(
    bytes: &[u8],
    max_bytes: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max_bytes {
        return Err(CodecError::TooLarge {
            size_bytes: bytes.len(),
            max_bytes,
        });
    }
    borsh::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_oversized_and_trailing() {
        let bytes = encode(&(7u32, vec![1u8, 2, 3]));
        assert_eq!(
            decode_bounded::<(u32, Vec<u8>)>(&bytes, 1000),
            Ok((7, vec![1, 2, 3]))
        );
        assert!(matches!(
            decode_bounded::<(u32, Vec<u8>)>(&bytes, 3),
            Err(CodecError::TooLarge { .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode_bounded::<(u32, Vec<u8>)>(&trailing, 1000),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn lying_length_prefix_is_an_error() {
        // A Vec<u8> claiming 4 billion elements with 2 bytes of payload.
        let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2];
        assert!(decode_bounded::<Vec<u8>>(&bytes, 100).is_err());
    }
}
