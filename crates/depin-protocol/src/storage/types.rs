//! Storage records (kept under the storage service's state keys) and transactions.

use super::merkle::ChunkProof;
use super::params::ErasureProfile;
use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash};
use serde::{Deserialize, Serialize};

/// Where a piece sits: deal, segment, piece index in the segment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct PieceRef {
    pub deal: Hash,
    pub segment: u32,
    pub piece: u16,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    /// Placed; waiting for the success threshold of pieces to be stored.
    Pending,
    /// Proofs are due every epoch from `start_epoch` until `end_epoch` (exclusive).
    Active,
    /// Ran its term; unused escrow refunded.
    Ended,
    /// Deleted by its owner; unused escrow refunded.
    Deleted,
    /// Never reached the success threshold in time; escrow refunded.
    Cancelled,
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Deal {
    pub id: Hash,
    pub owner: Address,
    /// Size of the object as the owner gave it (before encryption and coding).
    pub object_bytes: u64,
    pub encrypted: bool,
    pub data_pieces: u16,
    pub repair_threshold: u16,
    pub success_threshold: u16,
    pub total_pieces: u16,
    pub segments: Vec<SegmentInfo>,
    pub epochs: u64,
    pub opened_height: u64,
    pub opened_epoch: u64,
    pub start_epoch: Option<u64>,
    pub end_epoch: Option<u64>,
    pub status: DealStatus,
    /// Data Credits held for storage payments, not yet paid or refunded.
    #[serde(with = "depin_types::u128_string")]
    pub escrow_dc: u128,
    /// Data Credits held to pay repairers.
    #[serde(with = "depin_types::u128_string")]
    pub repair_budget_dc: u128,
    #[serde(with = "depin_types::u128_string")]
    pub paid_dc: u128,
}

impl Deal {
    pub fn profile(&self) -> ErasureProfile {
        ErasureProfile {
            data_pieces: self.data_pieces,
            repair_threshold: self.repair_threshold,
            success_threshold: self.success_threshold,
            total_pieces: self.total_pieces,
        }
    }
}

/// The sizes of one erasure-coded segment.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Bytes of the (encrypted) segment before coding.
    pub segment_bytes: u64,
    /// Bytes of each of its pieces.
    pub piece_bytes: u64,
    /// Set when healthy pieces fell to the repair threshold.
    pub needs_repair: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PieceState {
    /// Placed on a provider that has not confirmed storing it yet.
    Assigned,
    /// Confirmed; proofs are due.
    Stored,
    /// Missed too many proofs or proved wrong data: no longer counted as healthy.
    Lost,
    /// Not needed any more (long tail cancelled, deal over): the provider may delete it.
    Released,
    /// No provider could take it at placement.
    Unplaced,
}

/// One piece of a segment.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Piece {
    pub root: Hash,
    pub provider: Option<Address>,
    pub state: PieceState,
    /// The last epoch a proof for this piece was checked (valid or not).
    pub checked_epoch: Option<u64>,
    /// Consecutive missed or wrong proofs.
    pub misses: u8,
    /// Who rebuilt this piece for a repair; paid from the repair budget once it is stored.
    pub repairer: Option<Address>,
    /// The first epoch not yet paid (or forfeited by a failed challenge): a good proof pays
    /// every epoch since, so a piece that is only sampled now and then is still paid for the
    /// whole time it was held.
    pub paid_from_epoch: u64,
}

/// What a storage provider has committed to hold.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ProviderUsage {
    pub committed_bytes: u64,
    /// Pieces assigned or stored; the pieces themselves are under [`keys::held`], so that
    /// placement reads a few bytes per provider, not every piece it holds.
    pub piece_count: u32,
}

/// Most pieces one provider may hold; bounds its usage record.
pub const MAX_PIECES_PER_PROVIDER: usize = 16_384;

/// One segment of a deal as the owner describes it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SegmentSpec {
    pub segment_bytes: u64,
    pub piece_bytes: u64,
    /// BLAKE3 root of each piece, `total_pieces` of them.
    pub roots: Vec<Hash>,
}

/// A proof answering the challenge of `epoch` for one piece.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PieceProof {
    pub piece: PieceRef,
    pub proof: ChunkProof,
}

/// Storage transactions (the payload of `Action::Service { service: Storage, .. }`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StorageTx {
    /// Opens a deal: escrows Data Credits and places the pieces on providers.
    OpenDeal {
        object_bytes: u64,
        encrypted: bool,
        epochs: u64,
        segments: Vec<SegmentSpec>,
    },
    /// A provider confirms it stores these pieces.
    ConfirmPieces { pieces: Vec<PieceRef> },
    /// A provider answers the current epoch's challenges.
    SubmitProofs { epoch: u64, proofs: Vec<PieceProof> },
    /// The owner ends a deal early; unused escrow is refunded.
    DeleteDeal { deal: Hash },
    /// A holder of a stored piece starts the repair of a segment flagged for repair: its lost
    /// pieces are placed on new providers; the sender rebuilds and uploads them and is paid
    /// from the repair budget as each is confirmed. A repair that stalled passes to another
    /// holder.
    RepairSegment { deal: Hash, segment: u32 },
    /// The sender starts a graceful exit: it takes no new pieces, the segments it holds
    /// pieces of are flagged so their pieces move to other providers by repair, and once it
    /// holds none it may deregister without forfeiting stake.
    BeginExit,
}

/// State keys of the storage service (under `StateKey::Service(Storage, ..)`).
pub mod keys {
    use super::PieceRef;
    use depin_types::{Address, Hash};

    pub const NEXT_DEAL: &[u8] = b"next_deal";
    /// Providers holding at least one piece (assigned or stored): the ones challenged.
    pub const HOLDERS: &[u8] = b"holders";

    /// The id of the deal opened `number`-th (from 0).
    pub fn deal_number(number: u64) -> Vec<u8> {
        let mut k = b"n/".to_vec();
        k.extend_from_slice(&number.to_be_bytes());
        k
    }

    /// How many deals `owner` opened.
    pub fn owner_deal_count(owner: &Address) -> Vec<u8> {
        let mut k = b"oc/".to_vec();
        k.extend_from_slice(&owner.0);
        k
    }

    /// The `index`-th deal `owner` opened.
    pub fn owner_deal(owner: &Address, index: u64) -> Vec<u8> {
        let mut k = b"o/".to_vec();
        k.extend_from_slice(&owner.0);
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    /// How many deals are listed for attention at the end of `epoch` (activation deadline or
    /// term over).
    pub fn due_count(epoch: u64) -> Vec<u8> {
        let mut k = b"dc/".to_vec();
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }

    /// The `index`-th deal listed for the end of `epoch`.
    pub fn due_entry(epoch: u64, index: u64) -> Vec<u8> {
        let mut k = b"de/".to_vec();
        k.extend_from_slice(&epoch.to_be_bytes());
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    /// The providers challenged in `epoch`.
    pub fn challenged(epoch: u64) -> Vec<u8> {
        let mut k = b"cp/".to_vec();
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }

    /// The pieces `provider` must prove in `epoch` (its sample, and pieces that missed their
    /// last challenge).
    pub fn challenges(epoch: u64, provider: &Address) -> Vec<u8> {
        let mut k = b"c/".to_vec();
        k.extend_from_slice(&epoch.to_be_bytes());
        k.extend_from_slice(&provider.0);
        k
    }

    pub fn deal(id: &Hash) -> Vec<u8> {
        let mut k = b"d/".to_vec();
        k.extend_from_slice(id.as_bytes());
        k
    }

    pub fn piece(r: &PieceRef) -> Vec<u8> {
        let mut k = b"p/".to_vec();
        k.extend_from_slice(r.deal.as_bytes());
        k.extend_from_slice(&r.segment.to_be_bytes());
        k.extend_from_slice(&r.piece.to_be_bytes());
        k
    }

    pub fn usage(provider: &Address) -> Vec<u8> {
        let mut k = b"u/".to_vec();
        k.extend_from_slice(&provider.0);
        k
    }

    /// The pieces a provider is assigned or stores (`Vec<PieceRef>`), in placement order.
    pub fn held(provider: &Address) -> Vec<u8> {
        let mut k = b"hp/".to_vec();
        k.extend_from_slice(&provider.0);
        k
    }

    /// The challenge seed of an epoch.
    pub fn seed(epoch: u64) -> Vec<u8> {
        let mut k = b"s/".to_vec();
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }

    /// A provider's graceful exit: the `registered_height` of the registration it ends (a
    /// later registration of the address is not exiting).
    pub fn exiting(provider: &Address) -> Vec<u8> {
        let mut k = b"x/".to_vec();
        k.extend_from_slice(&provider.0);
        k
    }

    /// The proof faults of an epoch, per provider ([`super::EpochFaults`]).
    pub fn faults(epoch: u64) -> Vec<u8> {
        let mut k = b"f/".to_vec();
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }
}

/// One provider's storage proofs of an epoch: how many pieces owed one and how many failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProofFaults {
    pub due: u32,
    pub missed: u32,
    pub invalid: u32,
}

/// Every provider's proof faults of an epoch, slashed once at its end.
pub type EpochFaults = std::collections::BTreeMap<depin_types::Address, ProofFaults>;

/// What a storage transaction or epoch did, carried in receipts (`Event::Service`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StorageEvent {
    DealOpened {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        escrow_dc: u128,
    },
    DealActive {
        id: Hash,
        from_epoch: u64,
    },
    SegmentNeedsRepair {
        deal: Hash,
        segment: u32,
        healthy_pieces: u32,
    },
    DealDeleted {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        refund_dc: u128,
    },
    DealEnded {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        refund_dc: u128,
    },
    DealCancelled {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        refund_dc: u128,
    },
    RepairStarted {
        deal: Hash,
        segment: u32,
    },
    /// A provider started a graceful exit holding `pieces` pieces.
    ExitStarted {
        provider: Address,
        pieces: u32,
    },
    /// A deal that never activated paid for the capacity it held.
    ReservationFeePaid {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        fee_dc: u128,
        epochs_held: u64,
    },
}

impl crate::service::ServiceEvent for StorageEvent {
    const SERVICE: depin_types::ServiceKind = super::SERVICE;
}
