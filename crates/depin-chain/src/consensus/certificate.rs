//! Checking a simplex finalization certificate outside the engine: followers and the chain
//! use it to accept a block fetched from another node.

use super::block::digest_of;
use super::process::public_key;
use commonware_codec::Decode;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Finalization;
use commonware_cryptography::blake3::Digest;
use commonware_cryptography::certificate::Verifier as _;
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use depin_types::{Address, Hash};

/// The engine's finalization type for depin blocks.
pub type BlockFinalization = Finalization<Scheme, Digest>;

/// True when `certificate` is a finalization of `block_hash` in consensus `epoch`, signed by a
/// quorum of that epoch's `validators` under `namespace` (the chain id).
pub fn verify_finalization(
    certificate: &[u8],
    block_hash: &Hash,
    epoch: u64,
    validators: &[Address],
    namespace: &[u8],
) -> bool {
    let Ok(keys) = validators
        .iter()
        .map(public_key)
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let Ok(participants) = Set::try_from(keys) else {
        return false;
    };
    let scheme = Scheme::verifier(namespace, participants);
    let Ok(finalization) = BlockFinalization::decode_cfg(
        bytes::Bytes::copy_from_slice(certificate),
        &scheme.certificate_codec_config(),
    ) else {
        return false;
    };
    finalization.proposal.payload == digest_of(block_hash)
        && finalization.proposal.round.epoch().get() == epoch
        && finalization.verify(&mut rand::rng(), &scheme, &Sequential)
}
