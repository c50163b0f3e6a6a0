use super::*;
use depin_protocol::{Action, Genesis, Transaction};
use depin_types::{Amount, Keypair};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    validator: Keypair,
    user: Keypair,
    genesis: Genesis,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let validator = Keypair::from_seed(b"validator");
    let user = Keypair::from_seed(b"user");
    let genesis = Genesis::devnet(
        "depin-chain-test",
        1_000,
        &[validator.address()],
        validator.address(),
        &[(user.address(), Amount(1_000_000_000))],
    );
    Fixture {
        _dir: dir,
        path,
        validator,
        user,
        genesis,
    }
}

impl Fixture {
    fn open(&self) -> Arc<ChainApp> {
        let protocol = Protocol::new(self.genesis.clone()).expect("protocol");
        let chain = Arc::new(Chain::open(&self.path, protocol).expect("open"));
        Arc::new(ChainApp::new(chain, Mempool::new(MempoolLimits::default())))
    }

    fn transfer(&self, nonce: u64, amount: u128) -> SignedTransaction {
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            sender: self.user.address(),
            nonce,
            fee: Amount(10_000),
            action: Action::Transfer {
                to: self.validator.address(),
                amount: Amount(amount),
            },
        }
        .sign(&self.user)
    }
}

#[test]
fn blocks_commit_and_survive_reopen() {
    let f = fixture();
    let app = f.open();
    let genesis_root = app.chain.head().state_root;
    let producer = SoloProducer::new(app.clone(), f.validator.clone());
    let tx = f.transfer(0, 500);
    let hash = app.submit_bytes(&tx.to_bytes()).expect("submit");
    let block = producer.produce(2_000).expect("produce");
    assert_eq!(block.txs.len(), 1);
    assert_ne!(block.header.state_root, genesis_root);
    let (found, receipt) = app.chain.transaction(&hash).expect("read").expect("found");
    assert_eq!(found, tx);
    assert_eq!(receipt.height, 1);
    // Replays are refused at submission and the state does not move.
    let err = app.submit_bytes(&tx.to_bytes()).expect_err("replay");
    assert_eq!(err.code(), "already_known");
    let head = app.chain.head();
    drop(producer);
    drop(app);
    let reopened = f.open();
    assert_eq!(reopened.chain.head(), head);
    let account = reopened
        .chain
        .account(&f.user.address())
        .expect("read")
        .expect("exists");
    assert_eq!(account.nonce, 1);
    // The same block finalized again is a no-op.
    let finality = reopened.chain.finality(1).expect("read").expect("cert");
    assert!(!reopened.finalize(&block, &finality).expect("idempotent"));
}

#[test]
fn state_root_is_incremental_and_deterministic() {
    let (f1, f2) = (fixture(), fixture());
    let (a1, a2) = (f1.open(), f2.open());
    let p1 = SoloProducer::new(a1.clone(), f1.validator.clone());
    for n in 0..3 {
        a1.submit_bytes(&f1.transfer(n, 7).to_bytes())
            .expect("submit");
        let block = p1.produce(2_000 + n).expect("produce");
        // A second node re-executes the block and reaches the same root.
        let finality = a1
            .chain
            .finality(block.header.height)
            .expect("r")
            .expect("cert");
        assert!(a2.finalize(&block, &finality).expect("follow"));
        assert_eq!(a1.chain.head(), a2.chain.head());
    }
}

#[test]
fn rejects_tampered_blocks_and_certificates() {
    let (f1, f2) = (fixture(), fixture());
    let (a1, a2) = (f1.open(), f2.open());
    let p1 = SoloProducer::new(a1.clone(), f1.validator.clone());
    a1.submit_bytes(&f1.transfer(0, 7).to_bytes())
        .expect("submit");
    let block = p1.produce(2_000).expect("produce");
    let good = a1.chain.finality(1).expect("r").expect("cert");
    let before = a2.chain.head();

    let mut wrong_root = block.clone();
    wrong_root.header.state_root = Hash::of(b"lie");
    let cert = Finality::solo(&f1.validator, &wrong_root.hash());
    assert!(matches!(
        a2.finalize(&wrong_root, &cert),
        Err(ChainError::Rejected(
            BlockRejected::StateRootMismatch { .. }
        ))
    ));
    let stranger = Finality::solo(&Keypair::from_seed(b"stranger"), &block.hash());
    assert!(matches!(
        a2.finalize(&block, &stranger),
        Err(ChainError::BadFinality(_))
    ));
    let mut extra_tx = block.clone();
    extra_tx.txs.push(f1.transfer(1, 7));
    let cert = Finality::solo(&f1.validator, &extra_tx.hash());
    assert!(matches!(
        a2.finalize(&extra_tx, &cert),
        Err(ChainError::Rejected(BlockRejected::TxRootMismatch))
    ));
    assert_eq!(a2.chain.head(), before);
    assert!(a2.finalize(&block, &good).expect("good block"));
}

#[test]
fn failing_transactions_are_dropped_with_reason() {
    let f = fixture();
    let app = f.open();
    let producer = SoloProducer::new(app.clone(), f.validator.clone());
    // Nonce 1 queued behind nonce 0, which asks for more than the balance.
    let too_much = f.transfer(0, 10_000_000_000);
    assert_eq!(
        app.submit_bytes(&too_much.to_bytes())
            .expect_err("balance")
            .code(),
        "insufficient_balance"
    );
    let before = app.chain.head().state_root;
    let block = producer.produce(2_000).expect("produce");
    assert!(block.txs.is_empty());
    // An empty block still changes nothing but the height.
    assert_eq!(
        app.chain
            .account(&f.user.address())
            .expect("r")
            .expect("a")
            .nonce,
        0
    );
    assert_eq!(block.header.state_root, before);
}

#[test]
fn epoch_rewards_are_indexed_per_account() {
    let f = fixture();
    let app = f.open();
    let producer = SoloProducer::new(app.clone(), f.validator.clone());
    let epoch_blocks = f.genesis.chain.epoch_blocks;
    for h in 1..=epoch_blocks {
        producer.produce(1_000 + h).expect("produce");
    }
    let rewards = app.chain.epoch_rewards(0).expect("r").expect("epoch 0");
    assert!(!rewards.minted.is_zero());
    let mine = app
        .chain
        .account_rewards(&f.validator.address(), 10)
        .expect("index");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].0, 0);
    let supply = app.chain.supply().expect("supply");
    assert_eq!(supply.minted, rewards.minted);
}

#[test]
fn blocks_build_on_pending_parents_and_finalize_in_order() {
    let (f1, f2) = (fixture(), fixture());
    let (a1, a2) = (f1.open(), f2.open());
    let genesis = a1.chain.head();
    a1.submit_bytes(&f1.transfer(0, 5).to_bytes()).expect("tx0");
    let block_a = a1
        .propose(genesis.hash, 2_000, f1.validator.address())
        .expect("propose a");
    // tx1 is queued behind tx0, which is only in the pending block A.
    a1.submit_bytes(&f1.transfer(1, 6).to_bytes()).expect("tx1");
    let block_b = a1
        .propose(block_a.hash(), 3_000, f1.validator.address())
        .expect("propose b on pending a");
    assert_eq!(block_b.header.height, 2);
    assert_eq!(block_b.txs.len(), 1, "b carries tx1 and not tx0 again");
    assert_eq!(block_b.txs[0].tx.nonce, 1);
    // A second node verifies the pending chain A <- B before anything is final.
    a2.verify(&block_a).expect("verify a");
    a2.verify(&block_b).expect("verify b on pending a");
    // B cannot be finalized before A.
    let cert_b = Finality::solo(&f1.validator, &block_b.hash());
    assert!(matches!(
        a2.finalize(&block_b, &cert_b),
        Err(ChainError::NotExtendingHead { .. })
    ));
    for app in [&a1, &a2] {
        let cert_a = Finality::solo(&f1.validator, &block_a.hash());
        assert!(app.finalize(&block_a, &cert_a).expect("finalize a"));
        assert!(app.finalize(&block_b, &cert_b).expect("finalize b"));
    }
    assert_eq!(a1.chain.head(), a2.chain.head());
    assert_eq!(a1.chain.head().state_root, block_b.header.state_root);
}

#[test]
fn a_sibling_of_a_finalized_block_is_refused() {
    let f = fixture();
    let app = f.open();
    let genesis = app.chain.head();
    let first = app
        .propose(genesis.hash, 2_000, f.validator.address())
        .expect("first");
    let sibling = app
        .propose(genesis.hash, 2_500, f.validator.address())
        .expect("sibling");
    assert_ne!(first.hash(), sibling.hash());
    let cert = Finality::solo(&f.validator, &first.hash());
    assert!(app.finalize(&first, &cert).expect("first final"));
    let cert = Finality::solo(&f.validator, &sibling.hash());
    assert!(matches!(
        app.finalize(&sibling, &cert),
        Err(ChainError::ConflictingBlock { height: 1 })
    ));
    // Building on the dead sibling is refused too.
    assert!(matches!(
        app.chain
            .propose(sibling.hash(), 3_000, f.validator.address(), vec![]),
        Err(ChainError::UnknownParent(_))
    ));
}

/// A service whose end-of-block hook always fails after writing a record.
struct FailingBlockHook;

impl depin_protocol::ServiceModule for FailingBlockHook {
    fn service(&self) -> ServiceKind {
        ServiceKind::new("video")
    }

    fn max_payload_bytes(&self) -> usize {
        16
    }

    fn event_json(&self, _data: &[u8]) -> Option<serde_json::Value> {
        None
    }

    fn apply(
        &self,
        _ctx: &mut depin_protocol::ServiceContext<'_, '_>,
        _sender: depin_types::Address,
        _payload: &[u8],
    ) -> Result<Vec<Event>, TxError> {
        Ok(Vec::new())
    }

    fn end_block(&self, ctx: &mut depin_protocol::ServiceContext<'_, '_>) -> Result<(), TxError> {
        ctx.put_encoded(b"left behind", &ctx.block.height);
        Err(TxError::AmountOverflow)
    }
}

#[test]
fn a_failing_service_hook_does_not_stop_the_chain() {
    let (f1, f2) = (fixture(), fixture());
    let open = |f: &Fixture| {
        let mut protocol = Protocol::new(f.genesis.clone()).expect("protocol");
        protocol
            .register_service(Arc::new(FailingBlockHook))
            .expect("registers");
        let chain = Arc::new(Chain::open(&f.path, protocol).expect("open"));
        Arc::new(ChainApp::new(chain, Mempool::new(MempoolLimits::default())))
    };
    let (a1, a2) = (open(&f1), open(&f2));
    let producer = SoloProducer::new(a1.clone(), f1.validator.clone());
    // Past an epoch boundary, with a transaction in every block.
    let blocks = f1.genesis.chain.epoch_blocks + 2;
    for n in 0..blocks {
        a1.submit_bytes(&f1.transfer(n, 7).to_bytes())
            .expect("submit");
        let block = producer.produce(2_000 + n).expect("the block is produced");
        assert_eq!(block.txs.len(), 1);
        // A follower re-executes it, reaches the same root and commits it too.
        let finality = a1
            .chain
            .finality(block.header.height)
            .expect("read")
            .expect("certificate");
        assert!(
            a2.finalize(&block, &finality)
                .expect("the follower commits")
        );
        let events = a2.chain.block_events(block.header.height).expect("events");
        assert!(
            matches!(
                events.as_slice(),
                [Event::ServiceHookFailed { service, hook: ServiceHook::EndBlock, reason }]
                    if *service == ServiceKind::new("video") && reason == "amount overflow"
            ),
            "{events:?}"
        );
    }
    assert_eq!(a1.chain.head(), a2.chain.head());
    assert_eq!(a1.chain.head().height, blocks);
    assert!(a1.chain.epoch_rewards(0).expect("read").is_some());
    let failures = a1
        .chain
        .metrics
        .service_hook_failures
        .lock()
        .expect("metrics")
        .clone();
    assert_eq!(
        failures.get(&(ServiceKind::new("video"), ServiceHook::EndBlock)),
        Some(&blocks)
    );
}

/// One signature rule on every path: a transaction signed at an ed25519 edge (small-order or
/// mixed-order key, small-order or non-canonical `R`, non-canonical `S`) gets the same verdict
/// at mempool admission, in block verification by a node that never saw it, in a follower's
/// sync, and whatever the split of a 64-transaction block across threads.
#[test]
fn edge_case_signatures_get_one_verdict_on_every_path() {
    use depin_types::signature_edge_cases::EdgeCase;
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = Keypair::from_seed(b"validator");
    let signers: Vec<_> = EdgeCase::ALL
        .iter()
        .enumerate()
        .map(|(i, case)| case.signer(format!("chain edge {i}").as_bytes()))
        .collect();
    let mut allocations: Vec<(Address, Amount)> = signers
        .iter()
        .map(|s| (s.address(), Amount(1_000_000_000)))
        .collect();
    let honest = Keypair::from_seed(b"honest filler");
    allocations.push((honest.address(), Amount(1_000_000_000)));
    let genesis = Genesis::devnet(
        "depin-chain-edge",
        1_000,
        &[validator.address()],
        validator.address(),
        &allocations,
    );
    let open = |name: &str| {
        let protocol = Protocol::new(genesis.clone()).expect("protocol");
        let chain = Arc::new(Chain::open(&dir.path().join(name), protocol).expect("open"));
        Arc::new(ChainApp::new(chain, Mempool::new(MempoolLimits::default())))
    };
    let (proposer, verifier, follower) = (open("proposer"), open("verifier"), open("follower"));
    let tx_of = |signer: &depin_types::signature_edge_cases::EdgeSigner, nonce: u64| {
        let tx = Transaction {
            chain_id: genesis.chain_id.clone(),
            sender: signer.address(),
            nonce,
            fee: Amount(10_000),
            action: Action::Transfer {
                to: validator.address(),
                amount: Amount(1),
            },
        };
        let signature = signer.sign(&tx.signing_bytes());
        SignedTransaction { tx, signature }
    };
    let txs: Vec<SignedTransaction> = signers.iter().map(|s| tx_of(s, 0)).collect();

    // Admission: the mempool admits exactly the ZIP-215-valid ones.
    for (signer, tx) in signers.iter().zip(&txs) {
        let admitted = proposer.submit_bytes(&tx.to_bytes());
        assert_eq!(
            admitted.is_ok(),
            signer.case.zip215_valid(),
            "{:?}: {admitted:?}",
            signer.case
        );
    }
    let genesis_head = proposer.chain.head();
    let block = proposer
        .propose(genesis_head.hash, 2_000, validator.address())
        .expect("propose");
    let valid_count = EdgeCase::ALL.iter().filter(|c| c.zip215_valid()).count();
    assert_eq!(block.txs.len(), valid_count);
    // A node that never saw these transactions verifies the block, and a follower commits it.
    verifier
        .verify(&block)
        .expect("a node that never saw them accepts the block");
    let finality = Finality::solo(&validator, &block.hash());
    assert!(follower.finalize(&block, &finality).expect("follower sync"));
    assert_eq!(follower.chain.head().state_root, block.header.state_root);

    // A proposer that slips an invalid edge case into its block gets it refused by every
    // node, including the one that proposed the valid rest.
    for (signer, tx) in signers.iter().zip(&txs) {
        if signer.case.zip215_valid() {
            continue;
        }
        let mut bad = block.clone();
        bad.txs.push(tx.clone());
        bad.header.tx_count = bad.txs.len() as u32;
        bad.header.tx_root = Block::compute_tx_root(&bad.txs);
        for app in [&proposer, &verifier] {
            assert!(
                matches!(
                    app.chain.verify(&bad),
                    Err(ChainError::Rejected(BlockRejected::BadSignature { .. }))
                ),
                "{:?}",
                signer.case
            );
        }
    }

    // A 64-transaction block split over 1 to 8 threads: one verdict, whatever the split.
    for case in EdgeCase::ALL {
        let edge = case.signer(b"split");
        let mut block_txs: Vec<SignedTransaction> = (0..63u64)
            .map(|n| {
                Transaction {
                    chain_id: genesis.chain_id.clone(),
                    sender: honest.address(),
                    nonce: n,
                    fee: Amount(10_000),
                    action: Action::Transfer {
                        to: validator.address(),
                        amount: Amount(1),
                    },
                }
                .sign(&honest)
            })
            .collect();
        block_txs.insert(40, tx_of(&edge, 0));
        for threads in 1..=8 {
            assert_eq!(
                crate::execute::verify_signatures_split(&block_txs, threads).is_ok(),
                case.zip215_valid(),
                "{case:?} on {threads} threads"
            );
        }
    }
}
