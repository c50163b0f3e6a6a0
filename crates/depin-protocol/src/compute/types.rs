//! Compute jobs on chain: what a consumer asks for, who was assigned, what each replica
//! committed and revealed, and the state keys under the compute service's namespace.

use borsh::{BorshDeserialize, BorshSerialize};
use depin_types::{Address, Hash};
use serde::{Deserialize, Serialize};

/// Longest argument or environment string, and most of them, a job may carry.
pub const MAX_JOB_STRING_BYTES: usize = 1024;
pub const MAX_JOB_STRINGS: usize = 64;

/// What the consumer asks to be run. The module and the input bundle are content-addressed;
/// their bytes travel off chain from the consumer (or any holder) to the assigned providers.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct JobSpec {
    /// BLAKE3 of the WebAssembly module (WASI preview 1).
    pub module: Hash,
    pub module_bytes: u64,
    /// BLAKE3 of the input bundle mounted read-only, if any.
    pub input: Option<Hash>,
    pub input_bytes: u64,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A file of the input bundle (its path there) fed to the job as stdin; none: empty.
    pub stdin: Option<String>,
    /// The only randomness the job sees (WASI `random_get`).
    pub seed: Hash,
    pub max_fuel: u64,
    pub max_memory_mib: u32,
    pub replicas: u8,
    /// Blocks the replicas have, from assignment, to run the job and commit.
    pub deadline_blocks: u64,
    /// The most the consumer pays a replica, in Data Credits per million fuel; providers
    /// asking more are not assigned.
    pub max_price_dc_per_mfuel: u64,
}

/// How a run ended. Running out of fuel or memory, trapping and missing the deadline are
/// results like any other: replicas agree on them and are paid for the fuel burned.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub enum ExitKind {
    Exited(i32),
    OutOfFuel,
    OutOfMemory,
    Trapped,
    /// The bytes are not a WebAssembly module, or it imports what the sandbox does not
    /// provide: nothing ran.
    InvalidModule,
    /// The run had not ended when the job's deadline came. How far it got differs between
    /// machines, so the kind alone is the result: no fuel, no outputs; replicas that say so
    /// together are paid `deadline_fee_bps` of the escrow for the time they gave.
    DeadlineExceeded,
    /// The module or the input could not be had, from the consumer or any holder, in time
    /// to commit: nothing ran.
    Unfetchable,
    /// The input bundle does not unpack: nothing ran.
    Unrunnable,
    /// The run wrote more output than a replica keeps for the consumer.
    OutputTooLarge,
}

impl ExitKind {
    /// The job, not the replica, is at fault: its kind alone is the result (no fuel, no
    /// outputs), and the replicas that agree on it are paid for the attempt, not slashed.
    pub fn is_job_fault(self) -> bool {
        matches!(
            self,
            ExitKind::InvalidModule
                | ExitKind::DeadlineExceeded
                | ExitKind::Unfetchable
                | ExitKind::Unrunnable
                | ExitKind::OutputTooLarge
        )
    }
}

/// A replica's result: the exit, the fuel it burned (deterministic under fuel metering) and
/// the BLAKE3 of its outputs (stdout, stderr and output files, as the runtime bundles them).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct JobOutcome {
    pub exit: ExitKind,
    pub fuel_used: u64,
    pub outputs: Hash,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub enum JobStatus {
    /// Assigned replicas run the job and commit until `commit_deadline`.
    Committing,
    /// Every replica committed (or the commit deadline passed): reveals until
    /// `reveal_deadline`.
    Revealing,
    /// A majority agreed; they were paid and the rest refunded.
    Done,
    /// No majority after every retry; the escrow was refunded.
    Failed,
}

/// One assigned replica and what it has sent.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Replica {
    pub provider: Address,
    pub commitment: Option<Hash>,
    pub revealed: Option<JobOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Job {
    pub id: Hash,
    pub owner: Address,
    pub spec: JobSpec,
    pub submitted_height: u64,
    /// 0 for the first assignment, then one per retry on fresh providers.
    pub round: u8,
    pub replicas: Vec<Replica>,
    /// Providers of earlier rounds, never assigned again to this job.
    pub excluded: Vec<Address>,
    pub commit_deadline: u64,
    pub reveal_deadline: u64,
    pub status: JobStatus,
    /// Data Credits still held for the job.
    pub escrow_dc: u128,
    pub paid_dc: u128,
    pub accepted: Option<JobOutcome>,
    /// The providers whose result was accepted.
    pub agreed: Vec<Address>,
}

/// Replica slots a provider is running.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ComputeUsage {
    pub running: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ComputeTx {
    /// Escrows `replicas × max_fuel × max_price` and assigns the replicas.
    SubmitJob(JobSpec),
    /// An assigned provider's commitment to its result: see [`commitment`].
    Commit { job: Hash, commitment: Hash },
    /// The result behind the commitment, with its salt.
    Reveal {
        job: Hash,
        outcome: JobOutcome,
        salt: Hash,
    },
    /// Settles a job whose reveal deadline passed (anyone may send it; epoch ends do too).
    Finalize { job: Hash },
}

/// What a replica commits to: bound to the job and to the provider, so a replica cannot
/// copy another's commitment, and salted, so a result cannot be guessed from it.
pub fn commitment(job: &Hash, provider: &Address, outcome: &JobOutcome, salt: &Hash) -> Hash {
    Hash::tagged(
        "depin compute commitment",
        &[
            job.as_bytes(),
            provider.as_bytes(),
            &depin_types::encode(outcome),
            salt.as_bytes(),
        ],
    )
}

/// Keys under the compute service's namespace.
pub mod keys {
    use depin_types::{Address, Hash};

    pub const JOB_COUNTER: &[u8] = b"count";

    /// How many jobs are listed to be swept at the end of `epoch`.
    pub fn sweep_count(epoch: u64) -> Vec<u8> {
        [b"sc/".as_slice(), &epoch.to_be_bytes()].concat()
    }

    /// The `index`th job listed to be swept at the end of `epoch`.
    pub fn sweep_entry(epoch: u64, index: u64) -> Vec<u8> {
        [
            b"se/".as_slice(),
            &epoch.to_be_bytes(),
            &index.to_be_bytes(),
        ]
        .concat()
    }

    pub fn job(id: &Hash) -> Vec<u8> {
        [b"j/".as_slice(), id.as_bytes()].concat()
    }

    pub fn usage(provider: &Address) -> Vec<u8> {
        [b"u/".as_slice(), provider.as_bytes()].concat()
    }

    /// The paid work of `epoch`, per provider ([`crate::service::EpochPaidWork`]).
    pub fn epoch_work(epoch: u64) -> Vec<u8> {
        [b"w/".as_slice(), &epoch.to_be_bytes()].concat()
    }
}

/// What a compute transaction or epoch did, carried in receipts (`Event::Service`).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ComputeEvent {
    JobSubmitted {
        id: Hash,
        #[serde(with = "depin_types::u128_string")]
        escrow_dc: u128,
        replicas: Vec<Address>,
    },
    JobCommitted {
        id: Hash,
        provider: Address,
    },
    JobRevealed {
        id: Hash,
        provider: Address,
    },
    JobDone {
        id: Hash,
        fuel_used: u64,
    },
    JobRetried {
        id: Hash,
        round: u8,
    },
    /// No majority on the last round: the escrow was refunded.
    JobFailed {
        id: Hash,
    },
}

impl crate::service::ServiceEvent for ComputeEvent {
    const SERVICE: depin_types::ServiceKind = super::SERVICE;
}
