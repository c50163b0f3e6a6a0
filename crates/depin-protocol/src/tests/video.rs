//! The video service's payment rules through real transactions: deposits and reserves,
//! probabilistic tickets redeemed by orchestrators, every bad ticket refused with the state
//! untouched, an overspending broadcaster's reserve shared among the orchestrators it owes,
//! and the unlock period that keeps every sent ticket redeemable.

use super::*;
use crate::video::{
    Broadcaster, Dispute, RenditionCommit, SegmentCommitment, Ticket, VideoEvent, VideoParams,
    VideoTx, WIN_PROB_ALWAYS, commitment_message, dispute_id, keys, ticket_id, ticket_message,
};
use depin_types::{Hash, Signature};

const VALIDITY_BLOCKS: u64 = 10;
const UNLOCK_BLOCKS: u64 = 12;
const CLAIM_BLOCKS: u64 = 20;

fn video(tx: VideoTx) -> Action {
    Action::Service {
        service: crate::video::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

fn code(error: TxError) -> &'static str {
    match error {
        TxError::ServiceRejected { code, .. } => code,
        other => panic!("expected a video rejection, got {other:?}"),
    }
}

/// The random number a recipient commits to (by its hash) before tickets are made.
fn rand_of(recipient: &Keypair) -> Hash {
    Hash::tagged("test recipient rand", &[recipient.address().as_bytes()])
}

fn make_ticket(
    sender: &Keypair,
    recipient: &Keypair,
    face_value_dc: u64,
    win_prob: u64,
    sender_nonce: u32,
    expiry_height: u64,
) -> (Ticket, Signature) {
    let ticket = Ticket {
        recipient: recipient.address(),
        sender: sender.address(),
        face_value_dc,
        win_prob,
        sender_nonce,
        recipient_rand_hash: Hash::of(rand_of(recipient).as_bytes()),
        expiry_height,
    };
    let signature = sender.sign(&ticket_message(CHAIN_ID, &ticket));
    (ticket, signature)
}

fn redeem(ticket: Ticket, signature: Signature, recipient_rand: Hash) -> Action {
    video(VideoTx::RedeemTicket {
        ticket,
        signature,
        recipient_rand,
    })
}

/// The validator key broadcasts (with Data Credits bought); users 1 and 2 are orchestrators;
/// user 3 offers nothing.
fn video_setup() -> Fixture {
    let mut f = setup_with(|g| {
        g.update_service_params::<VideoParams>(|p| {
            p.max_ticket_validity_blocks = VALIDITY_BLOCKS;
            p.unlock_blocks = UNLOCK_BLOCKS;
            p.reserve_claim_blocks = CLAIM_BLOCKS;
        })
        .expect("video params");
    });
    for i in [1, 2] {
        let u = f.user(i);
        f.make_provider(&u, 200 * UNIT, &[crate::video::SERVICE]);
    }
    let broadcaster = f.validator.clone();
    f.ok(&broadcaster, buy_credits(100 * UNIT));
    f
}

impl Fixture {
    fn broadcaster(&self, who: &Keypair) -> Broadcaster {
        self.get(&StateKey::Service(
            crate::video::SERVICE,
            keys::broadcaster(&who.address()),
        ))
        .unwrap_or_default()
    }

    fn fund(&mut self, who: &Keypair, deposit_dc: u128, reserve_dc: u128) {
        self.ok(
            who,
            video(VideoTx::FundDeposit {
                deposit_dc,
                reserve_dc,
            }),
        );
    }

    fn redeemed(
        &mut self,
        recipient: &Keypair,
        ticket: Ticket,
        signature: Signature,
    ) -> VideoEvent {
        let receipt = self.ok(recipient, redeem(ticket, signature, rand_of(recipient)));
        receipt
            .events
            .iter()
            .filter_map(|e| e.service_event::<VideoEvent>())
            .find(|e| matches!(e, VideoEvent::TicketRedeemed { .. }))
            .expect("a ticket_redeemed event")
    }
}

#[test]
fn a_winning_ticket_is_paid_from_the_deposit_once_and_every_bad_ticket_is_refused() {
    let mut f = video_setup();
    let (broadcaster, orchestrator, other, outsider) =
        (f.validator.clone(), f.user(1), f.user(2), f.user(3));
    let dc_before = f.account(&broadcaster).data_credits;
    f.fund(&broadcaster, 50_000, 20_000);
    assert_eq!(f.account(&broadcaster).data_credits, dc_before - 70_000);
    let b = f.broadcaster(&broadcaster);
    assert_eq!((b.deposit_dc, b.reserve_dc), (50_000, 20_000));
    f.check_supply();

    let expiry = f.height + 5;
    let (ticket, sig) = make_ticket(
        &broadcaster,
        &orchestrator,
        10_000,
        WIN_PROB_ALWAYS,
        1,
        expiry,
    );
    let rand = rand_of(&orchestrator);
    let forged = other.sign(&ticket_message(CHAIN_ID, &ticket));
    let raised = Ticket {
        face_value_dc: 20_000,
        ..ticket
    };
    let other_chain = broadcaster.sign(&ticket_message("depin-other", &ticket));
    let (loser, loser_sig) = make_ticket(&broadcaster, &orchestrator, 10_000, 0, 2, expiry);
    let (too_long, too_long_sig) = make_ticket(
        &broadcaster,
        &orchestrator,
        10_000,
        WIN_PROB_ALWAYS,
        3,
        f.height + VALIDITY_BLOCKS + 1,
    );
    let (own, own_sig) = make_ticket(&orchestrator, &orchestrator, 10, WIN_PROB_ALWAYS, 1, expiry);
    let (to_outsider, to_outsider_sig) =
        make_ticket(&broadcaster, &outsider, 10, WIN_PROB_ALWAYS, 4, expiry);
    let (zero, zero_sig) = make_ticket(&broadcaster, &orchestrator, 0, WIN_PROB_ALWAYS, 5, expiry);
    let (huge, huge_sig) = make_ticket(
        &broadcaster,
        &orchestrator,
        VideoParams::devnet().max_face_value_dc + 1,
        WIN_PROB_ALWAYS,
        6,
        expiry,
    );
    let malformed = Action::Service {
        service: crate::video::SERVICE,
        payload: vec![3, 0xff, 0xff],
    };
    let cases: Vec<(&str, Keypair, Action, &str)> = vec![
        (
            "another orchestrator redeems it",
            other.clone(),
            redeem(ticket, sig, rand),
            "not_recipient",
        ),
        (
            "a wrong random number",
            orchestrator.clone(),
            redeem(ticket, sig, Hash::of(b"guess")),
            "bad_recipient_rand",
        ),
        (
            "signed by someone else",
            orchestrator.clone(),
            redeem(ticket, forged, rand),
            "bad_ticket_signature",
        ),
        (
            "face value raised after signing",
            orchestrator.clone(),
            redeem(raised, sig, rand),
            "bad_ticket_signature",
        ),
        (
            "signed for another chain",
            orchestrator.clone(),
            redeem(ticket, other_chain, rand),
            "bad_ticket_signature",
        ),
        (
            "a losing ticket",
            orchestrator.clone(),
            redeem(loser, loser_sig, rand),
            "not_a_winner",
        ),
        (
            "an expiry beyond the validity",
            orchestrator.clone(),
            redeem(too_long, too_long_sig, rand),
            "ticket_too_long",
        ),
        (
            "paying itself",
            orchestrator.clone(),
            redeem(own, own_sig, rand),
            "own_ticket",
        ),
        (
            "to a non-orchestrator",
            outsider.clone(),
            redeem(to_outsider, to_outsider_sig, rand_of(&outsider)),
            "not_an_orchestrator",
        ),
        (
            "a zero face value",
            orchestrator.clone(),
            redeem(zero, zero_sig, rand),
            "bad_face_value",
        ),
        (
            "a face value over the limit",
            orchestrator.clone(),
            redeem(huge, huge_sig, rand),
            "bad_face_value",
        ),
        (
            "malformed bytes",
            orchestrator.clone(),
            malformed,
            "malformed_video_tx",
        ),
    ];
    for (what, key, action, expected) in cases {
        let tx = f.tx(&key, action);
        assert_eq!(code(f.reject(&tx)), expected, "{what}");
    }

    // The winner is paid its face value from the deposit (less the burn share), once.
    let balance_before = f.balance(&orchestrator);
    let event = f.redeemed(&orchestrator, ticket, sig);
    assert_eq!(
        event,
        VideoEvent::TicketRedeemed {
            broadcaster: broadcaster.address(),
            orchestrator: orchestrator.address(),
            ticket: ticket_id(&ticket),
            paid_dc: 10_000,
            owed_dc: 0,
        }
    );
    assert!(f.balance(&orchestrator) > balance_before, "paid in tokens");
    let b = f.broadcaster(&broadcaster);
    assert_eq!(
        (b.deposit_dc, b.reserve_dc, b.paid_dc),
        (40_000, 20_000, 10_000)
    );
    assert!(!b.barred);
    f.check_supply();
    let replay = f.tx(&orchestrator, redeem(ticket, sig, rand));
    assert_eq!(code(f.reject(&replay)), "ticket_redeemed");

    // Past its expiry the record of the redeemed ticket goes, and the ticket stays refused.
    let mut rewards = f.end_blocks_through(expiry + 1);
    let record = StateKey::Service(crate::video::SERVICE, keys::redeemed(&ticket_id(&ticket)));
    assert_eq!(f.get::<u64>(&record), None, "forgotten at expiry");
    let replay = f.tx(&orchestrator, redeem(ticket, sig, rand));
    assert_eq!(code(f.reject(&replay)), "ticket_expired");

    // Paid work counts at the floor and earns video emission, capped at the burn.
    let end = f.epoch_end();
    rewards.extend(f.end_blocks_through(end));
    let bucket = rewards
        .iter()
        .flat_map(|r| r.buckets.iter())
        .find(|b| b.kind == RewardKind::Service(crate::video::SERVICE) && b.work_units > 0)
        .expect("the redemption's epoch counts video work");
    assert_eq!(bucket.work_units, 1, "one orchestrator paid for work");
    let minted: u128 = rewards
        .iter()
        .flat_map(|r| r.rewards.iter())
        .filter(|r| r.kind == RewardKind::Service(crate::video::SERVICE))
        .map(|r| r.amount.0)
        .sum();
    assert!(
        minted > 0 && minted < bucket.allocation.0,
        "capped at the burn: {minted}"
    );
    f.check_supply();
}

#[test]
fn an_overspending_broadcaster_pays_from_its_reserve_shared_among_those_it_owes_and_is_barred() {
    let mut f = video_setup();
    let (broadcaster, first, second) = (f.validator.clone(), f.user(1), f.user(2));
    f.fund(&broadcaster, 15_000, 10_000);
    let expiry = f.height + VALIDITY_BLOCKS;
    let ticket =
        |to: &Keypair, nonce| make_ticket(&broadcaster, to, 10_000, WIN_PROB_ALWAYS, nonce, expiry);

    let (t1, s1) = ticket(&first, 1);
    f.redeemed(&first, t1, s1);
    // The deposit covers half of the second winner; the rest is claimed on the reserve.
    let (t2, s2) = ticket(&second, 2);
    let event = f.redeemed(&second, t2, s2);
    assert!(
        matches!(
            event,
            VideoEvent::TicketRedeemed {
                paid_dc: 5_000,
                owed_dc: 5_000,
                ..
            }
        ),
        "{event:?}"
    );
    let b = f.broadcaster(&broadcaster);
    assert!(b.barred, "orchestrators are told to stop");
    let until = b.freeze.as_ref().expect("the reserve is claimed").until;
    let (t3, s3) = ticket(&first, 3);
    f.redeemed(&first, t3, s3);
    assert_eq!(
        f.broadcaster(&broadcaster)
            .freeze
            .expect("frozen")
            .claims
            .len(),
        2
    );

    // The broadcaster cannot pull the reserve away while it is claimed.
    f.ok(&broadcaster, video(VideoTx::Unlock));
    let withdraw_from = f
        .broadcaster(&broadcaster)
        .withdraw_from
        .expect("unlocking");
    f.end_blocks_through(withdraw_from - 1);
    let tx = f.tx(&broadcaster, video(VideoTx::Withdraw));
    assert_eq!(code(f.reject(&tx)), "reserve_frozen");

    // At the window's end the reserve (10,000) pays the 15,000 owed in proportion: the
    // first orchestrator was left 10,000 owed, the second 5,000.
    let (first_before, second_before) = (f.balance(&first), f.balance(&second));
    f.end_blocks_through(until);
    let (first_gain, second_gain) = (
        f.balance(&first) - first_before,
        f.balance(&second) - second_before,
    );
    assert!(second_gain > 0, "both are paid");
    assert!(
        first_gain.abs_diff(2 * second_gain) <= first_gain / 1000 + 2,
        "in proportion to what each is owed: {first_gain} and {second_gain}"
    );
    let b = f.broadcaster(&broadcaster);
    assert_eq!(b.freeze, None);
    assert_eq!(b.deposit_dc, 0);
    assert_eq!(b.reserve_dc, 10_000 - 6_666 - 3_333);
    assert_eq!(b.paid_dc, 15_000 + 6_666 + 3_333);
    assert!(b.barred);
    f.check_supply();

    // A broadcaster with nothing left: the winner is refused and stays redeemable.
    f.ok(&broadcaster, video(VideoTx::Withdraw));
    let expiry = f.height + VALIDITY_BLOCKS;
    let (t4, s4) = make_ticket(&broadcaster, &second, 10_000, WIN_PROB_ALWAYS, 4, expiry);
    let tx = f.tx(&second, redeem(t4, s4, rand_of(&second)));
    assert_eq!(code(f.reject(&tx)), "broadcaster_insolvent");
    // Funding the deposit again lifts the bar, and the kept ticket is paid.
    f.fund(&broadcaster, 10_000, 0);
    assert!(!f.broadcaster(&broadcaster).barred);
    let event = f.redeemed(&second, t4, s4);
    assert!(matches!(
        event,
        VideoEvent::TicketRedeemed {
            paid_dc: 10_000,
            owed_dc: 0,
            ..
        }
    ));
    f.check_supply();
}

#[test]
fn a_deposit_is_withdrawn_only_after_an_unlock_longer_than_any_ticket_lives() {
    let mut f = video_setup();
    let (broadcaster, orchestrator) = (f.validator.clone(), f.user(1));
    let nothing = f.tx(&broadcaster, video(VideoTx::Unlock));
    assert_eq!(code(f.reject(&nothing)), "nothing_locked");
    let empty = f.tx(
        &broadcaster,
        video(VideoTx::FundDeposit {
            deposit_dc: 0,
            reserve_dc: 0,
        }),
    );
    assert_eq!(code(f.reject(&empty)), "nothing_to_fund");
    let dc = f.account(&broadcaster).data_credits;
    let too_much = f.tx(
        &broadcaster,
        video(VideoTx::FundDeposit {
            deposit_dc: dc + 1,
            reserve_dc: 0,
        }),
    );
    assert!(matches!(
        f.reject(&too_much),
        TxError::InsufficientDataCredits { .. }
    ));
    let overflow = f.tx(
        &broadcaster,
        video(VideoTx::FundDeposit {
            deposit_dc: u128::MAX,
            reserve_dc: 1,
        }),
    );
    assert!(matches!(f.reject(&overflow), TxError::AmountOverflow));

    f.fund(&broadcaster, 30_000, 5_000);
    let tx = f.tx(&broadcaster, video(VideoTx::Withdraw));
    assert_eq!(code(f.reject(&tx)), "not_unlocked");
    // A ticket sent just before the unlock...
    let (ticket, sig) = make_ticket(
        &broadcaster,
        &orchestrator,
        10_000,
        WIN_PROB_ALWAYS,
        1,
        f.height + VALIDITY_BLOCKS,
    );
    f.ok(&broadcaster, video(VideoTx::Unlock));
    let again = f.tx(&broadcaster, video(VideoTx::Unlock));
    assert_eq!(code(f.reject(&again)), "already_unlocking");
    let withdraw_from = f
        .broadcaster(&broadcaster)
        .withdraw_from
        .expect("unlocking");
    assert!(withdraw_from > ticket.expiry_height);
    let tx = f.tx(&broadcaster, video(VideoTx::Withdraw));
    assert_eq!(code(f.reject(&tx)), "still_locked");
    // ...is still paid on its last valid block, before the deposit can go.
    f.end_blocks_through(ticket.expiry_height - 1);
    f.redeemed(&orchestrator, ticket, sig);
    f.end_blocks_through(withdraw_from - 1);
    let dc_before = f.account(&broadcaster).data_credits;
    f.ok(&broadcaster, video(VideoTx::Withdraw));
    assert_eq!(
        f.account(&broadcaster).data_credits,
        dc_before + 20_000 + 5_000
    );
    assert_eq!(f.broadcaster(&broadcaster).deposit_dc, 0);
    f.check_supply();

    // Funding again cancels an unlock in progress.
    f.fund(&broadcaster, 1_000, 0);
    f.ok(&broadcaster, video(VideoTx::Unlock));
    f.fund(&broadcaster, 1_000, 0);
    assert_eq!(f.broadcaster(&broadcaster).withdraw_from, None);
}

#[test]
fn genesis_keeps_the_unlock_longer_than_a_ticket_lives_and_a_burn_on_every_payment() {
    let good = VideoParams::devnet();
    assert_eq!(crate::params::ServiceParams::validate(&good), Ok(()));
    for bad in [
        VideoParams {
            unlock_blocks: good.max_ticket_validity_blocks,
            ..good.clone()
        },
        VideoParams {
            payment_burn_bps: 0,
            ..good.clone()
        },
        VideoParams {
            min_price_dc_per_gigapixel: 0,
            ..good.clone()
        },
        VideoParams {
            max_reserve_claimants: 0,
            ..good.clone()
        },
        VideoParams {
            second_opinion_bps: 10_001,
            ..good.clone()
        },
    ] {
        assert!(
            crate::params::ServiceParams::validate(&bad).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn only_a_video_provider_advertises_and_only_known_encoders() {
    let mut f = video_setup();
    let (orchestrator, outsider) = (f.user(1), f.user(3));
    let ad = |encoders: &[&str], build: &str| {
        video(VideoTx::Advertise {
            encoders: encoders.iter().map(|e| e.to_string()).collect(),
            build: build.into(),
        })
    };
    let key = StateKey::Service(crate::video::SERVICE, keys::ad(&orchestrator.address()));
    for (who, action, expected) in [
        (&outsider, ad(&["libx264"], "5.1"), "not_a_video_provider"),
        (&orchestrator, ad(&[], "5.1"), "bad_ad"),
        (&orchestrator, ad(&["libx265"], "5.1"), "bad_ad"),
        (&orchestrator, ad(&["libx264", "libx264"], "5.1"), "bad_ad"),
        (&orchestrator, ad(&["libx264"], ""), "bad_ad"),
        (&orchestrator, ad(&["libx264"], &"9".repeat(65)), "bad_ad"),
        (&orchestrator, ad(&["libx264"], "5.1\n"), "bad_ad"),
    ] {
        let tx = f.tx(who, action);
        assert_eq!(code(f.reject(&tx)), expected);
    }
    assert!(
        f.get::<crate::video::VideoAd>(&key).is_none(),
        "nothing stored"
    );
    f.ok(
        &orchestrator,
        ad(&["libx264", "h264_nvenc"], "5.1.6-0+deb12u1"),
    );
    let stored: crate::video::VideoAd = f.get(&key).expect("the ad is stored");
    assert_eq!(stored.encoders, ["libx264", "h264_nvenc"]);
    assert_eq!(stored.build, "5.1.6-0+deb12u1");
    f.check_supply();
}

/// Users 0 (the orchestrator) to 3 are video providers; the verifiers need an ad.
fn dispute_setup() -> (Fixture, Keypair, Keypair, Vec<Keypair>) {
    let mut f = setup_with(|g| {
        g.update_service_params::<VideoParams>(|p| {
            p.dispute_blocks = 5;
            p.dispute_bond_dc = 2_000;
        })
        .expect("video params");
    });
    let broadcaster = f.validator.clone();
    f.ok(&broadcaster, buy_credits(100 * UNIT));
    for i in [0, 1, 2, 3] {
        let u = f.user(i);
        f.make_provider(&u, 200 * UNIT, &[crate::video::SERVICE]);
    }
    let verifiers: Vec<Keypair> = [1, 2, 3].iter().map(|i| f.user(*i)).collect();
    let orchestrator = f.user(0);
    (f, broadcaster, orchestrator, verifiers)
}

fn commitment_of(orchestrator: &Keypair, broadcaster: &Keypair, seq: u64) -> SegmentCommitment {
    SegmentCommitment {
        orchestrator: orchestrator.address(),
        broadcaster: broadcaster.address(),
        stream: Hash::of(b"a stream"),
        seq,
        source_hash: Hash::of(&seq.to_le_bytes()),
        renditions: ["360p", "240p"]
            .iter()
            .map(|rung| RenditionCommit {
                rung: rung.to_string(),
                hash: Hash::of(rung.as_bytes()),
                bytes: 1000,
                pixels: 60 * 640 * 360,
            })
            .collect(),
    }
}

fn dispute_tx(c: &SegmentCommitment, signer: &Keypair, rung: &str, url: &str) -> Action {
    video(VideoTx::Dispute {
        commitment: c.clone(),
        signature: signer.sign(&commitment_message(CHAIN_ID, c)),
        rung: rung.into(),
        evidence_url: url.into(),
    })
}

impl Fixture {
    fn dispute(&self, id: &Hash) -> Option<Dispute> {
        self.get(&StateKey::Service(crate::video::SERVICE, keys::dispute(id)))
    }
}

#[test]
fn a_dispute_draws_verifiers_and_two_alike_slash_the_orchestrator_or_pay_it_the_bond() {
    let (mut f, broadcaster, orchestrator, verifiers) = dispute_setup();
    let url = "http://127.0.0.1:7380/v1/video/streams/x/evidence/0";
    let c = commitment_of(&orchestrator, &broadcaster, 0);

    // No verifier has ffmpeg yet: nothing is opened, no bond taken.
    let before = f.account(&broadcaster).data_credits;
    let tx = f.tx(&broadcaster, dispute_tx(&c, &orchestrator, "360p", url));
    assert_eq!(code(f.reject(&tx)), "no_verifiers");
    for v in &verifiers {
        f.ok(
            v,
            video(VideoTx::Advertise {
                encoders: vec!["libx264".into()],
                build: "5.1".into(),
            }),
        );
    }
    // Every bad dispute is refused with the state untouched.
    // (The orchestrator stands for anyone but the broadcaster.)
    let outsider = orchestrator.clone();
    let forged = commitment_of(&orchestrator, &broadcaster, 1);
    for (who, action, expected) in [
        (
            &outsider,
            dispute_tx(&c, &orchestrator, "360p", url),
            "not_your_commitment",
        ),
        (
            &broadcaster,
            dispute_tx(&c, &orchestrator, "1080p", url),
            "unknown_rung",
        ),
        (
            &broadcaster,
            dispute_tx(&c, &orchestrator, "360p", "file:///etc/passwd"),
            "bad_evidence_url",
        ),
        (
            &broadcaster,
            dispute_tx(
                &c,
                &orchestrator,
                "360p",
                &format!("http://{}", "a".repeat(300)),
            ),
            "bad_evidence_url",
        ),
        (
            &broadcaster,
            dispute_tx(&forged, &verifiers[0], "360p", url),
            "bad_signature",
        ),
    ] {
        let tx = f.tx(who, action);
        assert_eq!(code(f.reject(&tx)), expected);
    }
    assert_eq!(f.account(&broadcaster).data_credits, before);

    // Opened: the bond is locked and three verifiers drawn, neither party among them.
    let receipt = f.ok(&broadcaster, dispute_tx(&c, &orchestrator, "360p", url));
    let id = dispute_id(CHAIN_ID, &c, "360p");
    assert!(receipt.events.iter().any(|e| matches!(
        e.service_event::<VideoEvent>(),
        Some(VideoEvent::DisputeOpened { dispute, .. }) if dispute == id
    )));
    assert_eq!(f.account(&broadcaster).data_credits, before - 2_000);
    let drawn: Vec<Address> = f
        .dispute(&id)
        .expect("stored")
        .verifiers
        .iter()
        .map(|v| v.verifier)
        .collect();
    assert_eq!(drawn.len(), 3);
    assert!(!drawn.contains(&orchestrator.address()) && !drawn.contains(&broadcaster.address()));
    let tx = f.tx(&broadcaster, dispute_tx(&c, &orchestrator, "360p", url));
    assert_eq!(code(f.reject(&tx)), "duplicate_dispute");
    let tx = f.tx(
        &broadcaster,
        video(VideoTx::Attest {
            dispute: id,
            guilty: true,
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_drawn");
    let key_of = |a: &Address| {
        verifiers
            .iter()
            .find(|v| v.address() == *a)
            .cloned()
            .expect("a verifier")
    };
    let (v1, v2, v3) = (key_of(&drawn[0]), key_of(&drawn[1]), key_of(&drawn[2]));

    // Two say the rendition is wrong: the orchestrator is slashed, the bond comes back.
    let stake_before = f.stake(&orchestrator).bonded;
    let attest = |guilty| {
        video(VideoTx::Attest {
            dispute: id,
            guilty,
        })
    };
    f.ok(&v1, attest(true));
    assert!(
        f.get::<Vec<Hash>>(&StateKey::Service(
            crate::video::SERVICE,
            keys::duties(&v2.address()),
        ))
        .is_some_and(|d| d == [id]),
        "a drawn verifier finds its duty"
    );
    let tx = f.tx(&v1, attest(true));
    assert_eq!(code(f.reject(&tx)), "already_attested");
    f.ok(&v2, attest(true));
    assert!(f.stake(&orchestrator).bonded < stake_before, "slashed");
    assert_eq!(f.account(&broadcaster).data_credits, before);
    assert_eq!(f.dispute(&id).expect("kept").outcome, "upheld");
    let duties = |f: &Fixture, v: &Keypair| {
        f.get::<Vec<Hash>>(&StateKey::Service(
            crate::video::SERVICE,
            keys::duties(&v.address()),
        ))
        .unwrap_or_default()
    };
    assert!(
        duties(&f, &v3).is_empty(),
        "a decided dispute is nobody's duty"
    );
    let tx = f.tx(&v3, attest(false));
    assert_eq!(code(f.reject(&tx)), "dispute_decided");

    // A false accusation: two find the rendition faithful; the bond is the orchestrator's,
    // and the verifier they outvoted is slashed.
    let c2 = commitment_of(&orchestrator, &broadcaster, 2);
    f.ok(&broadcaster, dispute_tx(&c2, &orchestrator, "240p", url));
    let id2 = dispute_id(CHAIN_ID, &c2, "240p");
    let drawn2: Vec<Keypair> = f
        .dispute(&id2)
        .expect("stored")
        .verifiers
        .iter()
        .map(|v| key_of(&v.verifier))
        .collect();
    let orchestrator_tokens = f.balance(&orchestrator);
    let liar_stake = f.stake(&drawn2[0]).bonded;
    let attest2 = |guilty| {
        video(VideoTx::Attest {
            dispute: id2,
            guilty,
        })
    };
    f.ok(&drawn2[0], attest2(true));
    f.ok(&drawn2[1], attest2(false));
    f.ok(&drawn2[2], attest2(false));
    assert_eq!(f.dispute(&id2).expect("kept").outcome, "rejected");
    assert_eq!(
        f.account(&broadcaster).data_credits,
        before - 2_000,
        "the bond is lost"
    );
    assert!(
        f.balance(&orchestrator) > orchestrator_tokens,
        "paid the bond"
    );
    assert!(
        f.stake(&drawn2[0]).bonded < liar_stake,
        "outvoted and slashed"
    );

    // Nobody attests: at the deadline the bond comes back and the silent are slashed.
    let c3 = commitment_of(&orchestrator, &broadcaster, 3);
    f.ok(&broadcaster, dispute_tx(&c3, &orchestrator, "360p", url));
    let id3 = dispute_id(CHAIN_ID, &c3, "360p");
    let d3 = f.dispute(&id3).expect("stored");
    let silent_stake = f.stake(&key_of(&d3.verifiers[0].verifier)).bonded;
    f.end_blocks_through(d3.deadline);
    assert_eq!(f.dispute(&id3).expect("kept a while").outcome, "expired");
    assert_eq!(f.account(&broadcaster).data_credits, before - 2_000);
    assert!(f.stake(&key_of(&d3.verifiers[0].verifier)).bonded < silent_stake);
    // Decided and expired records go in time.
    f.end_blocks_through(d3.deadline + 5);
    assert!(f.dispute(&id).is_none() && f.dispute(&id3).is_none());
    f.check_supply();
}
