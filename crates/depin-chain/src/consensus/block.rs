//! The depin block as commonware's consensus sees it: the same borsh bytes and the same
//! BLAKE3 block hash, behind commonware's codec and block traits.

use bytes::{Buf, BufMut};
use commonware_codec::{EncodeSize, Error as CodecError, Read, Write};
use commonware_consensus::types::Height;
use commonware_consensus::{Block as ConsensusBlockTrait, Heightable};
use commonware_cryptography::Digestible;
use commonware_cryptography::blake3::Digest;
use depin_protocol::Block;
use depin_types::Hash;
use std::sync::Arc;

/// A depin block travelling through simplex and marshal. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsensusBlock(pub Arc<Block>);

impl ConsensusBlock {
    pub fn new(block: Block) -> ConsensusBlock {
        ConsensusBlock(Arc::new(block))
    }

    pub fn block(&self) -> &Block {
        &self.0
    }
}

/// The consensus digest of a depin block hash, and back.
pub fn digest_of(hash: &Hash) -> Digest {
    Digest(hash.0)
}

pub fn hash_of(digest: &Digest) -> Hash {
    Hash(digest.0)
}

impl Write for ConsensusBlock {
    fn write(&self, buf: &mut impl BufMut) {
        let bytes = self.0.to_bytes();
        buf.put_u32(bytes.len() as u32);
        buf.put_slice(&bytes);
    }
}

impl EncodeSize for ConsensusBlock {
    fn encode_size(&self) -> usize {
        4 + self.0.to_bytes().len()
    }
}

impl Read for ConsensusBlock {
    /// Largest encoded block accepted (the genesis `max_block_bytes`).
    type Cfg = usize;

    fn read_cfg(buf: &mut impl Buf, max_bytes: &usize) -> Result<Self, CodecError> {
        if buf.remaining() < 4 {
            return Err(CodecError::EndOfBuffer);
        }
        let len = buf.get_u32() as usize;
        if len > *max_bytes {
            return Err(CodecError::InvalidLength(len));
        }
        if buf.remaining() < len {
            return Err(CodecError::EndOfBuffer);
        }
        let mut bytes = vec![0u8; len];
        buf.copy_to_slice(&mut bytes);
        let block = Block::from_bytes(&bytes, *max_bytes)
            .map_err(|_| CodecError::Invalid("depin block", "malformed borsh encoding"))?;
        // Borsh is canonical for our types, but check: consensus requires one encoding per block.
        if block.to_bytes() != bytes {
            return Err(CodecError::Invalid("depin block", "non-canonical encoding"));
        }
        Ok(ConsensusBlock::new(block))
    }
}

impl Digestible for ConsensusBlock {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        digest_of(&self.0.hash())
    }
}

impl Heightable for ConsensusBlock {
    fn height(&self) -> Height {
        Height::new(self.0.header.height)
    }
}

impl ConsensusBlockTrait for ConsensusBlock {
    fn parent(&self) -> Digest {
        digest_of(&self.0.header.parent)
    }
}

impl commonware_consensus::BoundedBlock for ConsensusBlock {
    fn max_encode_size(max_bytes: &usize) -> usize {
        4 + *max_bytes
    }
}
