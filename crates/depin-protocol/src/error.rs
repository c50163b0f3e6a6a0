//! Why a transaction is rejected. Every variant has a stable machine code for the API and CLI.

use depin_types::{Amount, ServiceKind};

use crate::state::StateError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("wrong chain id {got:?}, this network is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("signature does not verify for the sender")]
    BadSignature,
    #[error("unknown account {0}")]
    UnknownAccount(String),
    #[error("nonce {got} already used (next nonce is {expected})")]
    NonceReplayed { expected: u64, got: u64 },
    #[error("nonce {got} is ahead of the next nonce {expected}")]
    NonceGap { expected: u64, got: u64 },
    #[error("fee {offered} is below the minimum {minimum} for this transaction")]
    FeeTooLow { offered: Amount, minimum: Amount },
    #[error("insufficient balance: need {needed}, have {available}")]
    InsufficientBalance { needed: Amount, available: Amount },
    #[error("amount overflow")]
    AmountOverflow,
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("amount is too small to buy a single data credit")]
    AmountTooSmall,
    #[error("only a genesis oracle key may report the price")]
    Unauthorized,
    #[error("bonded stake {bonded} is below the required minimum {required}")]
    StakeBelowMinimum { required: Amount, bonded: Amount },
    #[error("cannot unbond {requested}: only {bonded} bonded")]
    InsufficientStake { requested: Amount, bonded: Amount },
    #[error("too many unbonding entries in flight (limit {limit})")]
    TooManyUnbonding { limit: u16 },
    #[error("no matured unbonding stake to withdraw")]
    NothingToWithdraw,
    #[error("account is already a registered provider")]
    ProviderExists,
    #[error("account is not a registered provider")]
    NotAProvider,
    #[error(
        "{count} open {service} obligations (pieces held or jobs running): leave {service} by graceful exit first, or deregister and forfeit the exit slash"
    )]
    ObligationsOpen { service: ServiceKind, count: u64 },
    #[error("invalid service list: {0}")]
    InvalidServices(String),
    #[error("invalid location: latitude must be within ±90°, longitude within ±180°")]
    InvalidLocation,
    #[error("invalid price: must be positive")]
    InvalidPrice,
    #[error("service {0} is not enabled on this network")]
    ServiceNotEnabled(ServiceKind),
    #[error("service {service} rejected the transaction: {reason}")]
    ServiceRejected {
        service: ServiceKind,
        code: &'static str,
        reason: String,
    },
    #[error("insufficient data credits: need {needed}, have {available}")]
    InsufficientDataCredits { needed: u128, available: u128 },
    #[error("account is not a validator candidate")]
    NotAValidatorCandidate,
    #[error("too many validator candidates (limit {limit})")]
    TooManyValidatorCandidates { limit: usize },
    #[error("invalid consensus address: {0}")]
    InvalidConsensusAddress(String),
    #[error("invalid equivocation evidence: {0}")]
    InvalidEvidence(String),
    #[error("the validator was already slashed for equivocating in era {era}")]
    EquivocationAlreadySlashed { era: u64 },
    #[error("the address equivocated as a validator and may not validate again")]
    ValidatorTombstoned,
    #[error(transparent)]
    Store(#[from] StateError),
}

impl TxError {
    /// Stable snake_case code shown by the API (`error.code`) and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::TooLarge { .. } => "tx_too_large",
            TxError::Malformed(_) => "malformed_tx",
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::BadSignature => "bad_signature",
            TxError::UnknownAccount(_) => "unknown_account",
            TxError::NonceReplayed { .. } => "nonce_replayed",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::InsufficientBalance { .. } => "insufficient_balance",
            TxError::AmountOverflow => "amount_overflow",
            TxError::ZeroAmount => "zero_amount",
            TxError::AmountTooSmall => "amount_too_small",
            TxError::Unauthorized => "unauthorized",
            TxError::StakeBelowMinimum { .. } => "stake_below_minimum",
            TxError::InsufficientStake { .. } => "insufficient_stake",
            TxError::TooManyUnbonding { .. } => "too_many_unbonding",
            TxError::NothingToWithdraw => "nothing_to_withdraw",
            TxError::ProviderExists => "provider_exists",
            TxError::NotAProvider => "not_a_provider",
            TxError::ObligationsOpen { .. } => "obligations_open",
            TxError::InvalidEvidence(_) => "invalid_evidence",
            TxError::EquivocationAlreadySlashed { .. } => "equivocation_already_slashed",
            TxError::ValidatorTombstoned => "validator_tombstoned",
            TxError::InvalidServices(_) => "invalid_services",
            TxError::InvalidLocation => "invalid_location",
            TxError::InvalidPrice => "invalid_price",
            TxError::ServiceNotEnabled(_) => "service_not_enabled",
            TxError::ServiceRejected { code, .. } => code,
            TxError::InsufficientDataCredits { .. } => "insufficient_data_credits",
            TxError::NotAValidatorCandidate => "not_a_validator_candidate",
            TxError::TooManyValidatorCandidates { .. } => "too_many_validator_candidates",
            TxError::InvalidConsensusAddress(_) => "invalid_consensus_address",
            TxError::Store(_) => "internal",
        }
    }

    /// True when the fault is the node's (its store), not the transaction's.
    pub fn is_internal(&self) -> bool {
        matches!(self, TxError::Store(_))
    }
}

/// An error and every source under it, joined by ": " (what a log line or an event keeps).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        // `#[error(transparent)]` and wrappers that repeat their source add nothing.
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
