//! Catches the equivocation evidence simplex reports (two conflicting votes by one validator
//! in one round) and queues it on the chain app, for the node to put on chain as
//! `Action::ReportEquivocation`. Simplex reports evidence as votes arrive, before checking
//! their signatures, so each piece is checked here with the protocol's own verifier first.

use crate::ChainApp;
use commonware_codec::Encode;
use commonware_consensus::Reporter;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Activity;
use commonware_cryptography::blake3::Digest;
use depin_protocol::equivocation::Evidence;
use std::sync::Arc;

/// One epoch's evidence reporter, combined with the automaton as simplex's reporter.
#[derive(Clone)]
pub(crate) struct EvidenceReporter {
    app: Arc<ChainApp>,
}

impl EvidenceReporter {
    pub(crate) fn new(app: Arc<ChainApp>) -> EvidenceReporter {
        EvidenceReporter { app }
    }
}

impl Reporter for EvidenceReporter {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> commonware_actor::Feedback {
        if matches!(
            activity,
            Activity::ConflictingNotarize(_)
                | Activity::ConflictingFinalize(_)
                | Activity::NullifyFinalize(_)
        ) {
            let bytes = activity.encode().to_vec();
            if verified(&self.app, &bytes) {
                self.app.report_evidence(bytes);
            }
        }
        commonware_actor::Feedback::Ok
    }
}

/// Whether `bytes` is evidence the chain would accept against its recorded validator sets.
fn verified(app: &ChainApp, bytes: &[u8]) -> bool {
    let Ok(evidence) = Evidence::decode(bytes) else {
        return false;
    };
    let Ok(mut set) = app.chain.validator_set(evidence.epoch) else {
        return false;
    };
    set.sort();
    let Some(offender) = set.get(evidence.signer as usize) else {
        return false;
    };
    evidence
        .verify(&app.chain.protocol().genesis().chain_id, offender)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::process::{private_key, public_key};
    use commonware_codec::Encode;
    use commonware_consensus::simplex::scheme::ed25519::Scheme;
    use commonware_consensus::simplex::types::{
        Activity, ConflictingNotarize, Finalize, Notarize, Nullify, NullifyFinalize, Proposal,
    };
    use commonware_consensus::types::{Epoch, Round, View};
    use commonware_cryptography::blake3::Digest;
    use commonware_utils::ordered::Set;
    use depin_protocol::equivocation::{Evidence, EvidenceKind};
    use depin_types::Keypair;

    /// Evidence as the locked simplex version encodes it is what the protocol decodes and
    /// verifies: pins the wire format and the signed bytes to the engine.
    #[test]
    fn the_protocol_verifies_evidence_as_simplex_encodes_it() {
        let chain_id = "depin-evidence-test";
        let keys: Vec<Keypair> = (0..4)
            .map(|i| Keypair::from_seed(format!("v{i}").as_bytes()))
            .collect();
        let mut addresses: Vec<_> = keys.iter().map(|k| k.address()).collect();
        addresses.sort();
        let participants = Set::try_from(
            addresses
                .iter()
                .map(|a| public_key(a).expect("key"))
                .collect::<Vec<_>>(),
        )
        .expect("participants");
        let offender = &keys[2];
        let scheme = Scheme::signer(
            chain_id.as_bytes(),
            participants,
            private_key(&offender.secret_bytes()).expect("private key"),
        )
        .expect("a participant");
        let round = Round::new(Epoch::new(3), View::new(41));
        let proposal = |byte: u8| Proposal::new(round, View::new(40), Digest([byte; 32]));
        let notarize = |byte: u8| Notarize::sign(&scheme, proposal(byte)).expect("signs");

        let conflicting = Activity::<Scheme, Digest>::ConflictingNotarize(
            ConflictingNotarize::new(notarize(1), notarize(2)),
        )
        .encode()
        .to_vec();
        let evidence = Evidence::decode(&conflicting).expect("decodes");
        assert_eq!(
            (evidence.kind, evidence.epoch, evidence.view),
            (EvidenceKind::ConflictingNotarize, 3, 41)
        );
        let signer = addresses
            .iter()
            .position(|a| *a == offender.address())
            .expect("in the set");
        assert_eq!(evidence.signer as usize, signer);
        evidence
            .verify(chain_id, &offender.address())
            .expect("verifies");
        assert!(
            evidence
                .verify("another-chain", &offender.address())
                .is_err()
        );

        let nullify = Nullify::sign::<Digest>(&scheme, round).expect("signs");
        let finalize = Finalize::sign(&scheme, proposal(1)).expect("signs");
        let bytes =
            Activity::<Scheme, Digest>::NullifyFinalize(NullifyFinalize::new(nullify, finalize))
                .encode()
                .to_vec();
        let evidence = Evidence::decode(&bytes).expect("decodes");
        assert_eq!(evidence.kind, EvidenceKind::NullifyFinalize);
        evidence
            .verify(chain_id, &offender.address())
            .expect("verifies");
    }
}
