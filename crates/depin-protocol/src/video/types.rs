//! Video payments on chain: a broadcaster's deposit and reserve, the transactions, events
//! and the state keys under the video service's namespace.

use super::commitment::SegmentCommitment;
use super::ticket::Ticket;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash, Signature};
use serde::{Deserialize, Serialize};

/// What a broadcaster has locked to pay its tickets.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Broadcaster {
    /// Pays winning tickets first.
    #[serde(with = "depin_types::u128_string")]
    pub deposit_dc: u128,
    /// Pays, shared among the orchestrators owed, the winners the deposit could not cover.
    #[serde(with = "depin_types::u128_string")]
    pub reserve_dc: u128,
    /// Set by `Unlock`: deposit and reserve may be withdrawn from this height.
    pub withdraw_from: Option<u64>,
    /// The reserve being claimed after the deposit ran out.
    pub freeze: Option<Freeze>,
    /// A winner found the deposit spent: orchestrators should work for it no more until it
    /// funds its deposit again.
    pub barred: bool,
    pub tickets_redeemed: u64,
    #[serde(with = "depin_types::u128_string")]
    pub paid_dc: u128,
}

/// The reserve's claim window: what each orchestrator was left owed by winners the deposit
/// could not cover, paid out of the reserve at `until`.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Freeze {
    pub until: u64,
    pub claims: Vec<Claim>,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Claim {
    pub orchestrator: Address,
    #[serde(with = "depin_types::u128_string")]
    pub owed_dc: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum VideoTx {
    /// Locks Data Credits of the sender as its deposit and reserve (either may be 0); cancels
    /// an unlock in progress and lifts a bar once the deposit grows.
    FundDeposit { deposit_dc: u128, reserve_dc: u128 },
    /// Starts the unlock period, after which everything locked may be withdrawn.
    Unlock,
    /// Takes back the deposit and reserve once unlocked (not while the reserve is claimed).
    Withdraw,
    /// An orchestrator redeems a winning ticket it was given.
    RedeemTicket {
        ticket: Ticket,
        signature: Signature,
        recipient_rand: Hash,
    },
    /// A registered video provider says which encoders it runs and its ffmpeg build:
    /// broadcasters pick orchestrators of the encoder their stream pins, and compare two
    /// libx264 orchestrators of one build by exact hash.
    Advertise {
        encoders: Vec<String>,
        build: String,
    },
    /// A broadcaster disputes one rendition of a segment, posting the orchestrator's signed
    /// commitment as evidence and a dispute bond; verifiers are drawn to re-transcode the
    /// source (fetched, with the rendition, from `evidence_url`, each checked against the
    /// committed hashes) and attest.
    Dispute {
        commitment: SegmentCommitment,
        signature: Signature,
        rung: String,
        evidence_url: String,
    },
    /// A drawn verifier's word on a dispute: whether the rendition is a faithful transcode.
    Attest { dispute: Hash, guilty: bool },
}

/// A dispute over one rendition, open until its deadline.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Dispute {
    pub id: Hash,
    pub commitment: SegmentCommitment,
    pub rung: String,
    pub evidence_url: String,
    #[serde(with = "depin_types::u128_string")]
    pub bond_dc: u128,
    pub opened: u64,
    pub deadline: u64,
    pub verifiers: Vec<DisputeVerifier>,
    /// `open`, `upheld` (the orchestrator slashed), `rejected` (the bond paid to it) or
    /// `expired` (too few attested: the bond refunded, the silent slashed).
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DisputeVerifier {
    pub verifier: Address,
    /// None until it attests.
    pub guilty: Option<bool>,
}

/// What a video orchestrator advertised.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VideoAd {
    /// `libx264`, `h264_nvenc`.
    pub encoders: Vec<String>,
    /// The ffmpeg build, e.g. `5.1.6-0+deb12u1`.
    pub build: String,
    /// Where it was advertised.
    pub height: u64,
}

/// What a video transaction or block did, carried in receipts (`Event::Service`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VideoEvent {
    DepositFunded {
        broadcaster: Address,
        #[serde(with = "depin_types::u128_string")]
        deposit_dc: u128,
        #[serde(with = "depin_types::u128_string")]
        reserve_dc: u128,
    },
    UnlockStarted {
        broadcaster: Address,
        withdraw_from: u64,
    },
    Withdrawn {
        broadcaster: Address,
        #[serde(with = "depin_types::u128_string")]
        refunded_dc: u128,
    },
    /// A winner paid from the deposit (`paid_dc`), and what the deposit could not cover
    /// claimed on the reserve (`owed_dc`).
    TicketRedeemed {
        broadcaster: Address,
        orchestrator: Address,
        ticket: Hash,
        #[serde(with = "depin_types::u128_string")]
        paid_dc: u128,
        #[serde(with = "depin_types::u128_string")]
        owed_dc: u128,
    },
    ReserveFrozen {
        broadcaster: Address,
        until: u64,
    },
    Advertised {
        orchestrator: Address,
        encoders: Vec<String>,
        build: String,
    },
    DisputeOpened {
        dispute: Hash,
        broadcaster: Address,
        orchestrator: Address,
        seq: u64,
        rung: String,
        verifiers: Vec<Address>,
    },
    DisputeAttested {
        dispute: Hash,
        verifier: Address,
        guilty: bool,
    },
    /// Two verifiers found the rendition wrong: the orchestrator is slashed, the bond back.
    DisputeUpheld {
        dispute: Hash,
        orchestrator: Address,
    },
    /// Two verifiers found it faithful: the bond is paid to the orchestrator.
    DisputeRejected {
        dispute: Hash,
        orchestrator: Address,
        #[serde(with = "depin_types::u128_string")]
        bond_dc: u128,
    },
}

impl crate::service::ServiceEvent for VideoEvent {
    const SERVICE: depin_types::ServiceKind = super::SERVICE;
}

/// What comes due at a height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Due {
    /// A redeemed ticket has expired: its record can go.
    ForgetTicket(Hash),
    /// A broadcaster's reserve claim window closes: pay the claims.
    SettleReserve(Address),
    /// A dispute's deadline: settled if undecided, its record dropped.
    DisputeDeadline(Hash),
}

/// Keys under the video service's namespace.
pub mod keys {
    use depin_types::{Address, Hash};

    pub fn broadcaster(address: &Address) -> Vec<u8> {
        [b"b/".as_slice(), address.as_bytes()].concat()
    }

    /// An orchestrator's advertisement.
    pub fn ad(address: &Address) -> Vec<u8> {
        [b"a/".as_slice(), address.as_bytes()].concat()
    }

    /// The open disputes a verifier was drawn for and has not attested (`Vec<Hash>`).
    pub fn duties(verifier: &Address) -> Vec<u8> {
        [b"v/".as_slice(), verifier.as_bytes()].concat()
    }

    /// A dispute, kept until its deadline.
    pub fn dispute(id: &Hash) -> Vec<u8> {
        [b"x/".as_slice(), id.as_bytes()].concat()
    }

    /// A redeemed ticket, kept until it expires.
    pub fn redeemed(ticket: &Hash) -> Vec<u8> {
        [b"t/".as_slice(), ticket.as_bytes()].concat()
    }

    pub fn due_count(height: u64) -> Vec<u8> {
        [b"dc/".as_slice(), &height.to_be_bytes()].concat()
    }

    pub fn due(height: u64, index: u64) -> Vec<u8> {
        [
            b"d/".as_slice(),
            &height.to_be_bytes(),
            &index.to_be_bytes(),
        ]
        .concat()
    }

    /// The paid work of `epoch`, per provider ([`crate::service::EpochPaidWork`]).
    pub fn epoch_work(epoch: u64) -> Vec<u8> {
        [b"w/".as_slice(), &epoch.to_be_bytes()].concat()
    }
}
