//! Blocks, receipts and events: what the chain stores and what the API shows.

use crate::tx::SignedTransaction;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Amount, CodecError, Hash, ServiceKind, Signature};
use serde::{Deserialize, Serialize};

/// The header every node agrees on. `state_root` commits to the whole state after executing
/// this block, so two nodes compare state by comparing one hash.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockHeader {
    pub chain_id: String,
    pub height: u64,
    pub parent: Hash,
    pub timestamp_ms: u64,
    pub proposer: Address,
    pub tx_root: Hash,
    pub tx_count: u32,
    pub state_root: Hash,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        Hash::tagged("depin block header", &[&depin_types::encode(self)])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        depin_types::encode(self)
    }

    pub fn from_bytes(bytes: &[u8], max_bytes: usize) -> Result<Block, CodecError> {
        depin_types::decode_bounded(bytes, max_bytes)
    }

    /// Commitment to the ordered transaction list.
    pub fn compute_tx_root(txs: &[SignedTransaction]) -> Hash {
        let mut hasher = blake3::Hasher::new_derive_key("depin tx root");
        for tx in txs {
            hasher.update(tx.hash().as_bytes());
        }
        Hash(*hasher.finalize().as_bytes())
    }
}

/// Proof that a block is final. With one validator it is that validator's signature over the
/// block hash; the consensus issue adds a quorum certificate variant.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub enum Finality {
    Genesis,
    SoloSignature {
        validator: Address,
        signature: Signature,
    },
    /// Finalized by a quorum of the BFT validator set: the consensus engine's encoded
    /// finalization certificate. Checking it needs the engine's verifier, so the chain does
    /// that, not this pure crate.
    Quorum {
        certificate: Vec<u8>,
    },
    /// Finalized indirectly: a later block's quorum certificate finalizes it and, through the
    /// parent links, all of its ancestors. Checked together with that descendant.
    Descendant,
}

impl Finality {
    #[cfg(feature = "test-utils")]
    const DOMAIN: &'static [u8] = b"depin/finalize/v1";

    /// A single validator's signature over the block hash: what the test-only solo producer
    /// finalizes with. Only builds with the `test-utils` feature make or accept one.
    #[cfg(feature = "test-utils")]
    pub fn solo(key: &depin_types::Keypair, block_hash: &Hash) -> Finality {
        let mut msg = Self::DOMAIN.to_vec();
        msg.extend_from_slice(block_hash.as_bytes());
        Finality::SoloSignature {
            validator: key.address(),
            signature: key.sign(&msg),
        }
    }

    /// Checks the certificate against the validator set that finalized `block_hash`.
    pub fn verify(&self, block_hash: &Hash, validators: &[Address]) -> bool {
        match self {
            Finality::Genesis | Finality::Quorum { .. } | Finality::Descendant => false,
            Finality::SoloSignature {
                validator,
                signature,
            } => Self::solo_is_valid(validator, signature, block_hash, validators),
        }
    }

    /// A solo signature is a quorum only when the set has exactly one member, and only in
    /// builds with `test-utils`.
    #[cfg(feature = "test-utils")]
    fn solo_is_valid(
        validator: &Address,
        signature: &Signature,
        block_hash: &Hash,
        validators: &[Address],
    ) -> bool {
        if validators != [*validator] {
            return false;
        }
        let mut msg = Self::DOMAIN.to_vec();
        msg.extend_from_slice(block_hash.as_bytes());
        depin_types::verify(validator, &msg, signature).is_ok()
    }

    /// Production builds never take a solo signature for finality: only the BFT engine's
    /// quorum certificates finalize blocks there.
    #[cfg(not(feature = "test-utils"))]
    fn solo_is_valid(_: &Address, _: &Signature, _: &Hash, _: &[Address]) -> bool {
        false
    }
}

/// Something a transaction or an epoch boundary did, for receipts and explorers.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    FeePaid {
        to: Address,
        amount: Amount,
    },
    Transfer {
        from: Address,
        to: Address,
        amount: Amount,
    },
    Bonded {
        amount: Amount,
    },
    Unbonding {
        amount: Amount,
        release_height: u64,
    },
    Withdrawn {
        amount: Amount,
    },
    ProviderRegistered,
    ProviderUpdated,
    ProviderDeregistered,
    DataCreditsMinted {
        tokens_burned: Amount,
        #[serde(with = "depin_types::u128_string")]
        data_credits: u128,
        price_usd_micro: u64,
    },
    OraclePriceSet {
        price_usd_micro: u64,
    },
    WorkRecorded {
        service: ServiceKind,
        provider: Address,
        units: u64,
    },
    Slashed {
        provider: Address,
        service: ServiceKind,
        amount: Amount,
        reason: String,
    },
    ServicePaid {
        service: ServiceKind,
        consumer: Address,
        provider: Address,
        #[serde(with = "depin_types::u128_string")]
        data_credits: u128,
        tokens_minted: Amount,
    },
    /// A service's own event: its event enum in borsh (see [`crate::service::ServiceEvent`]).
    Service {
        service: ServiceKind,
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
    },
    ValidatorRegistered {
        consensus_address: String,
    },
    ValidatorDeregistered,
    /// A service's block or epoch hook failed: its writes were dropped and the chain went on.
    ServiceHookFailed {
        service: ServiceKind,
        hook: crate::service::ServiceHook,
        reason: String,
    },
    /// An oracle key reported a price; it counts from the next epoch boundary.
    OraclePriceReported {
        oracle: Address,
        price_usd_micro: u64,
    },
    /// A validator signed conflicting votes in one round (era `epoch`, `view`): slashed and
    /// out of the validator set.
    ValidatorSlashed {
        validator: Address,
        epoch: u64,
        view: u64,
        amount: Amount,
        reason: String,
    },
}

/// Largest encoded service event a reader decodes.
pub const MAX_SERVICE_EVENT_BYTES: usize = 64 * 1024;

impl Event {
    /// This event as service `E`'s event, when it is one of `E`'s and decodes.
    pub fn service_event<E: crate::service::ServiceEvent>(&self) -> Option<E> {
        match self {
            Event::Service { service, data } if *service == E::SERVICE => {
                depin_types::decode_bounded(data, MAX_SERVICE_EVENT_BYTES).ok()
            }
            _ => None,
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as Deserialize>::deserialize(d)?;
        hex::decode(&text).map_err(|_| serde::de::Error::custom("invalid hex"))
    }
}

/// The outcome of one included transaction. Only successful transactions are included, so a
/// receipt always describes effects that happened.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Receipt {
    pub tx_hash: Hash,
    pub height: u64,
    pub index: u32,
    pub sender: Address,
    pub kind: crate::tx::ActionKind,
    pub fee: Amount,
    pub events: Vec<Event>,
}

#[cfg(test)]
mod tests {
    /// The test-only solo signature, built by hand: a production build (no `test-utils`) must
    /// not take it for finality, even from the one validator of a one-validator set. The test
    /// command runs this crate's tests once alone, without the feature, for this check.
    #[cfg(not(feature = "test-utils"))]
    #[test]
    fn production_builds_refuse_solo_finality() {
        use super::*;
        let key = depin_types::Keypair::from_seed(b"solo validator");
        let block = Hash::of(b"block");
        let mut message = b"depin/finalize/v1".to_vec();
        message.extend_from_slice(block.as_bytes());
        let solo = Finality::SoloSignature {
            validator: key.address(),
            signature: key.sign(&message),
        };
        assert!(!solo.verify(&block, &[key.address()]));
        assert!(!Finality::Genesis.verify(&block, &[key.address()]));
    }
}
