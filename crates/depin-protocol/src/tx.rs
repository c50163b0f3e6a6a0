//! Transactions: what a signed transaction says, how it is signed, hashed and decoded.

use crate::params::MAX_CHAIN_ID_BYTES;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Amount, CodecError, Hash, Keypair, ServiceKind, Signature};
use serde::{Deserialize, Serialize};

/// Domain separator for transaction signatures.
const TX_SIGNING_DOMAIN: &[u8] = b"depin/tx/v1";

/// Most services a provider record may list, and most bytes of a service transaction payload.
pub const MAX_SERVICE_OFFERS: usize = 4;

/// A service a provider offers: how much capacity (in the service's own unit: bytes for storage,
/// fuel per epoch for compute, hotspots for coverage, pixels per second for video) and its
/// price in Data Credits per unit.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ServiceOffer {
    pub service: ServiceKind,
    pub capacity: u64,
    pub price_dc_per_unit: u64,
}

/// A location as degrees times 10^7 (about 1 cm resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct GeoLocation {
    pub lat_e7: i32,
    pub lon_e7: i32,
}

impl GeoLocation {
    pub fn is_valid(&self) -> bool {
        (-900_000_000..=900_000_000).contains(&self.lat_e7)
            && (-1_800_000_000..=1_800_000_000).contains(&self.lon_e7)
    }
}

/// What a transaction does. New variants go at the end: the index is the encoding.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    Transfer {
        to: Address,
        amount: Amount,
    },
    Bond {
        amount: Amount,
    },
    Unbond {
        amount: Amount,
    },
    /// Moves every matured unbonding entry back to the spendable balance.
    Withdraw,
    RegisterProvider {
        services: Vec<ServiceOffer>,
        location: Option<GeoLocation>,
    },
    UpdateProvider {
        services: Vec<ServiceOffer>,
        location: Option<GeoLocation>,
    },
    DeregisterProvider,
    /// Burns `amount` tokens and credits the sender with Data Credits at the oracle price.
    BuyDataCredits {
        amount: Amount,
    },
    /// Reports the token price in micro-USD per whole token; only a genesis oracle key. The
    /// median of the keys' latest reports becomes the price at the next epoch boundary.
    SetOraclePrice {
        price_usd_micro: u64,
    },
    /// A transaction of a service module (storage, compute, ...), opaque to the core ledger.
    Service {
        service: ServiceKind,
        #[serde(with = "hex_bytes")]
        payload: Vec<u8>,
    },
    /// Stands for the validator set (or updates the endpoint); needs the validator minimum
    /// bonded. The set of each epoch is the top stakes among candidates.
    RegisterValidator {
        consensus_address: String,
    },
    /// Withdraws candidacy; takes effect at the next set change.
    DeregisterValidator,
    /// Evidence from the consensus engine that a validator signed two conflicting votes in one
    /// round ([`crate::equivocation`]): the validator is slashed `double_sign_bps` once per
    /// era and leaves the validator set for good. Anyone may send it.
    ReportEquivocation {
        #[serde(with = "hex_bytes")]
        evidence: Vec<u8>,
    },
}

impl Action {
    /// Short stable name, used in metrics and receipts.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Transfer { .. } => ActionKind::Transfer,
            Action::Bond { .. } => ActionKind::Bond,
            Action::Unbond { .. } => ActionKind::Unbond,
            Action::Withdraw => ActionKind::Withdraw,
            Action::RegisterProvider { .. } => ActionKind::RegisterProvider,
            Action::UpdateProvider { .. } => ActionKind::UpdateProvider,
            Action::DeregisterProvider => ActionKind::DeregisterProvider,
            Action::BuyDataCredits { .. } => ActionKind::BuyDataCredits,
            Action::SetOraclePrice { .. } => ActionKind::SetOraclePrice,
            Action::Service { .. } => ActionKind::Service,
            Action::RegisterValidator { .. } => ActionKind::RegisterValidator,
            Action::DeregisterValidator => ActionKind::DeregisterValidator,
            Action::ReportEquivocation { .. } => ActionKind::ReportEquivocation,
        }
    }
}

/// What kind of action a transaction carries (a receipt's `kind`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Transfer,
    Bond,
    Unbond,
    Withdraw,
    RegisterProvider,
    UpdateProvider,
    DeregisterProvider,
    BuyDataCredits,
    SetOraclePrice,
    Service,
    RegisterValidator,
    DeregisterValidator,
    ReportEquivocation,
}

impl ActionKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionKind::Transfer => "transfer",
            ActionKind::Bond => "bond",
            ActionKind::Unbond => "unbond",
            ActionKind::Withdraw => "withdraw",
            ActionKind::RegisterProvider => "register_provider",
            ActionKind::UpdateProvider => "update_provider",
            ActionKind::DeregisterProvider => "deregister_provider",
            ActionKind::BuyDataCredits => "buy_data_credits",
            ActionKind::SetOraclePrice => "set_oracle_price",
            ActionKind::Service => "service",
            ActionKind::RegisterValidator => "register_validator",
            ActionKind::DeregisterValidator => "deregister_validator",
            ActionKind::ReportEquivocation => "report_equivocation",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Transaction {
    pub chain_id: String,
    pub sender: Address,
    /// Must equal the sender's account nonce; each accepted transaction increments it.
    pub nonce: u64,
    /// Paid to the block proposer; must be at least the genesis fee schedule's minimum.
    pub fee: Amount,
    pub action: Action,
}

impl Transaction {
    /// The exact bytes the sender signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = TX_SIGNING_DOMAIN.to_vec();
        out.extend_from_slice(&depin_types::encode(self));
        out
    }

    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign(&self.signing_bytes());
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

/// A transaction with its signature: the unit that travels and goes into blocks.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

/// Why transaction bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxDecodeError {
    #[error("transaction of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("malformed transaction: {0}")]
    Malformed(String),
}

impl SignedTransaction {
    pub fn to_bytes(&self) -> Vec<u8> {
        depin_types::encode(self)
    }

    /// Decodes signed-transaction bytes, refusing anything over `max_bytes`.
    pub fn from_bytes(bytes: &[u8], max_bytes: usize) -> Result<SignedTransaction, TxDecodeError> {
        let tx: SignedTransaction =
            depin_types::decode_bounded(bytes, max_bytes).map_err(|e| match e {
                CodecError::TooLarge {
                    size_bytes,
                    max_bytes,
                } => TxDecodeError::TooLarge {
                    size_bytes,
                    max_bytes,
                },
                CodecError::Malformed(m) => TxDecodeError::Malformed(m),
            })?;
        if tx.tx.chain_id.len() > MAX_CHAIN_ID_BYTES {
            return Err(TxDecodeError::Malformed("chain_id too long".into()));
        }
        Ok(tx)
    }

    /// The transaction id: BLAKE3 of the canonical signed bytes.
    pub fn hash(&self) -> Hash {
        Hash::tagged("depin tx id", &[&self.to_bytes()])
    }

    pub fn size_bytes(&self) -> usize {
        self.to_bytes().len()
    }

    /// Checks the signature alone (the sender's key signed exactly these bytes).
    pub fn verify_signature(&self) -> Result<(), depin_types::SignatureError> {
        depin_types::verify(&self.tx.sender, &self.tx.signing_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedTransaction {
        let key = Keypair::from_seed(b"s");
        Transaction {
            chain_id: "t".into(),
            sender: key.address(),
            nonce: 3,
            fee: Amount(10),
            action: Action::Transfer {
                to: Keypair::from_seed(b"r").address(),
                amount: Amount(5),
            },
        }
        .sign(&key)
    }

    #[test]
    fn round_trip_and_signature() {
        let tx = sample();
        let bytes = tx.to_bytes();
        let back = SignedTransaction::from_bytes(&bytes, 4096).expect("decode");
        assert_eq!(back, tx);
        assert!(back.verify_signature().is_ok());
        let mut tampered = back.clone();
        tampered.tx.nonce += 1;
        assert!(tampered.verify_signature().is_err());
        assert_ne!(tampered.hash(), tx.hash());
    }

    #[test]
    fn bounded_decode() {
        let bytes = sample().to_bytes();
        assert!(matches!(
            SignedTransaction::from_bytes(&bytes, 10),
            Err(TxDecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            SignedTransaction::from_bytes(&bytes[..bytes.len() - 1], 4096),
            Err(TxDecodeError::Malformed(_))
        ));
        assert!(SignedTransaction::from_bytes(&[0xff; 40], 4096).is_err());
    }
}
