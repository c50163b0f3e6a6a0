//! The render service's rules through real transactions: advertisements, escrow, assignment
//! by weight among providers of a shared build, commitments, the check draw, verdicts (with a
//! second and third verifier), consumer approval and rejection with a dispute check, payment,
//! timeouts, and every attack of docs/SECURITY.md on these rules.

use super::*;
use crate::render::{
    Piece, PieceCommitment, PieceStatus, RenderEvent, RenderJob, RenderJobSpec, RenderJobStatus,
    RenderParams, RenderTx, RenderUsage, Verdict, job_escrow_dc, keys,
};
use depin_types::Hash;

const BUILD: &str = "Blender 3.4.1 linux-x86_64";
/// Fast enough that a test piece's render window is the genesis base.
const SCORE: u64 = 1_000_000_000_000;
const MAX_PRICE: u64 = 200;
const RENDER_BASE_BLOCKS: u64 = 6;
const VERIFY_BLOCKS: u64 = 5;
const APPROVAL_BLOCKS: u64 = 4;

const PASS: Verdict = Verdict {
    ssim_ppm: 1_000_000,
    psnr_millidb: 100_000,
};
/// What a painted-over region measured in the calibration (SSIM about 0.5).
const FAIL: Verdict = Verdict {
    ssim_ppm: 510_000,
    psnr_millidb: 14_200,
};

fn render(tx: RenderTx) -> Action {
    Action::Service {
        service: crate::render::SERVICE,
        payload: depin_types::encode(&tx),
    }
}

fn advertise(build: &str) -> Action {
    render(RenderTx::Advertise {
        device: "CPU".into(),
        build: build.into(),
        score_pixel_samples_per_s: SCORE,
    })
}

fn spec(frames: u32) -> RenderJobSpec {
    RenderJobSpec {
        bundle: Hash::of(b"scene bundle"),
        bundle_bytes: 1 << 20,
        frame_start: 1,
        frame_end: frames,
        width: 3840,
        height: 2160,
        samples: 1000,
        max_price_dc_per_gigapixel_sample: MAX_PRICE,
    }
}

/// Users 0..providers are render providers of one build; the validator key submits jobs.
fn render_setup(providers: usize) -> Fixture {
    let mut f = setup_with(|g| {
        g.update_service_params::<RenderParams>(|p| {
            p.render_base_blocks = RENDER_BASE_BLOCKS;
            p.verify_blocks = VERIFY_BLOCKS;
            p.approval_blocks = APPROVAL_BLOCKS;
            p.max_rejections = 2;
        })
        .expect("render params");
    });
    let funder = f.validator.clone();
    for i in f.users.len()..providers.max(4) {
        let key = user_key(i);
        f.ok(
            &funder,
            Action::Transfer {
                to: key.address(),
                amount: Amount(300 * UNIT),
            },
        );
        f.users.push(key);
    }
    for i in 0..providers {
        let u = f.user(i);
        f.make_provider(&u, 200 * UNIT, &[crate::render::SERVICE]);
        f.ok(&u, advertise(BUILD));
    }
    let owner = f.validator.clone();
    f.ok(&owner, buy_credits(100 * UNIT));
    f
}

fn code(error: TxError) -> &'static str {
    match error {
        TxError::ServiceRejected { code, .. } => code,
        other => panic!("expected a render rejection, got {other:?}"),
    }
}

fn commitment_of(piece: u64, attempt: u8, honest: bool) -> PieceCommitment {
    let what: &[u8] = if honest { b"honest" } else { b"cheat" };
    PieceCommitment {
        image: Hash::tagged("test image", &[&piece.to_be_bytes(), &[attempt], what]),
        tiles_root: Hash::tagged("test tiles", &[&piece.to_be_bytes(), &[attempt], what]),
    }
}

impl Fixture {
    fn render_key(k: Vec<u8>) -> StateKey {
        StateKey::Service(crate::render::SERVICE, k)
    }

    fn render_job(&self, id: &Hash) -> RenderJob {
        self.get(&Self::render_key(keys::job(id)))
            .expect("job exists")
    }

    fn render_piece(&self, id: &Hash, index: u64) -> Piece {
        self.get(&Self::render_key(keys::piece(id, index)))
            .expect("piece has a record")
    }

    fn render_usage(&self, who: &Address) -> RenderUsage {
        self.get(&Self::render_key(keys::usage(who)))
            .unwrap_or_default()
    }

    fn render_key_of(&self, address: &Address) -> Keypair {
        self.users
            .iter()
            .chain([&self.validator])
            .find(|u| u.address() == *address)
            .expect("a known key")
            .clone()
    }

    fn submit_render(&mut self, spec: RenderJobSpec) -> Hash {
        let owner = self.validator.clone();
        let receipt = self.ok(&owner, render(RenderTx::SubmitJob(spec)));
        receipt
            .events
            .iter()
            .find_map(|e| match e.service_event::<RenderEvent>() {
                Some(RenderEvent::JobSubmitted { id, .. }) => Some(id),
                _ => None,
            })
            .expect("a job_submitted event")
    }

    fn renderer(&self, id: &Hash, index: u64) -> Keypair {
        let piece = self.render_piece(id, index);
        assert_eq!(piece.status, PieceStatus::Rendering, "{piece:?}");
        self.render_key_of(&piece.renderer.expect("a renderer"))
    }

    fn commit_piece(&mut self, id: &Hash, index: u64, honest: bool) -> Keypair {
        let renderer = self.renderer(id, index);
        let attempt = self.render_piece(id, index).attempt;
        self.ok(
            &renderer,
            render(RenderTx::Commit {
                job: *id,
                piece: index,
                attempt,
                commitment: commitment_of(index, attempt, honest),
            }),
        );
        renderer
    }

    /// The verifier whose verdict is awaited.
    fn pending_verifier(&self, id: &Hash, index: u64) -> Keypair {
        let piece = self.render_piece(id, index);
        let slot = piece
            .verdicts
            .iter()
            .find(|s| s.is_open())
            .unwrap_or_else(|| panic!("a verifier is drawn: {piece:?}"));
        self.render_key_of(&slot.verifier)
    }

    fn verdict(&mut self, id: &Hash, index: u64, verdict: Verdict) -> Keypair {
        let verifier = self.pending_verifier(id, index);
        let attempt = self.render_piece(id, index).attempt;
        self.ok(
            &verifier,
            render(RenderTx::Verdict {
                job: *id,
                piece: index,
                attempt,
                verdict,
            }),
        );
        verifier
    }

    /// Ends the block that carried the commitments and the next one, whose end draws the
    /// checks from the first one's hash.
    fn draw_checks(&mut self) {
        self.end_block();
        self.end_block();
    }

    fn failures(&self, who: &Keypair) -> Vec<String> {
        self.provider(who)
            .map(|p| p.failures.into_iter().map(|f| f.reason).collect())
            .unwrap_or_default()
    }
}

#[test]
fn an_honest_job_is_assigned_committed_checked_offered_approved_and_paid() {
    let mut f = render_setup(4);
    let owner = f.validator.clone();
    let dc_before = f.account(&owner).data_credits;
    let job_spec = spec(3);
    let escrow = job_escrow_dc(&RenderParams::devnet(), &job_spec).expect("escrow");
    let id = f.submit_render(job_spec.clone());
    let job = f.render_job(&id);
    assert_eq!(job.pieces, 3);
    assert_eq!(job.escrow_dc, escrow.frames_dc);
    assert_eq!(job.verify_pool_dc, escrow.verify_pool_dc);
    assert_eq!(
        f.account(&owner).data_credits,
        dc_before - escrow.total_dc()
    );
    f.check_supply();

    // Pieces are handed out at the end of the block, one each to distinct providers while
    // they have room (capacity 1000 here, so the draw decides).
    f.end_block();
    let mut renderers = Vec::new();
    for index in 0..3 {
        let renderer = f.renderer(&id, index);
        assert_ne!(renderer.address(), owner.address());
        assert!(
            f.render_usage(&renderer.address())
                .rendering
                .iter()
                .any(|r| r.job == id && r.piece == index)
        );
        renderers.push(renderer);
    }
    for index in 0..3 {
        f.commit_piece(&id, index, true);
        assert_eq!(f.render_piece(&id, index).status, PieceStatus::Committed);
    }
    // The checks are drawn from the next block: a verifier of the same build, never the
    // renderer or the consumer.
    f.draw_checks();
    for index in 0..3 {
        let piece = f.render_piece(&id, index);
        assert_eq!(piece.status, PieceStatus::Checking);
        assert!(piece.check_seed.is_some());
        let verifier = f.pending_verifier(&id, index);
        assert_ne!(verifier.address(), renderers[index as usize].address());
        assert_ne!(verifier.address(), owner.address());
        f.verdict(&id, index, PASS);
        assert_eq!(f.render_piece(&id, index).status, PieceStatus::Offered);
    }
    // The consumer approves piece 0; the rest are approved at the deadline.
    let balance_before = f.balance(&renderers[0]);
    f.ok(
        &owner,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0],
        }),
    );
    let piece = f.render_piece(&id, 0);
    assert_eq!(piece.status, PieceStatus::Approved);
    // 3840 × 2160 × 1000 pixel-samples at the renderer's 5 DC per 10⁹: 41.5 → 42 DC.
    assert_eq!(piece.paid_dc, 42);
    assert!(f.balance(&renderers[0]) > balance_before, "paid in tokens");
    let deadline = f.render_piece(&id, 1).deadline;
    let mut rewards = f.end_blocks_through(deadline);
    let job = f.render_job(&id);
    assert_eq!(job.status, RenderJobStatus::Done);
    assert_eq!(job.approved, 3);
    assert_eq!((job.escrow_dc, job.verify_pool_dc), (0, 0));
    // Paid: three pieces and three verdicts (5% of a piece at the maximum price each).
    let fee = (3840u128 * 2160 * 1000 * u128::from(MAX_PRICE))
        .div_ceil(1_000_000_000)
        .checked_mul(500)
        .expect("fee")
        .div_ceil(10_000);
    assert_eq!(job.paid_dc, 3 * 42 + 3 * fee);
    assert_eq!(
        f.account(&owner).data_credits,
        dc_before - job.paid_dc,
        "the rest went back"
    );
    for r in &renderers {
        assert!(f.render_usage(&r.address()).rendering.is_empty());
    }
    f.check_supply();

    // The epoch's emission pays the renderers for their megapixel-samples.
    let end = f.epoch_end();
    rewards.extend(f.end_blocks_through(end));
    let paid_render: u128 = renderers
        .iter()
        .map(|r| {
            rewards
                .iter()
                .map(|e| paid(e, r, RewardKind::Service(crate::render::SERVICE)))
                .sum::<u128>()
        })
        .sum();
    assert!(paid_render > 0, "render work earns emission");
    f.check_supply();
}

#[test]
fn bad_jobs_ads_and_transactions_are_refused_with_the_state_untouched() {
    let mut f = render_setup(3);
    let owner = f.validator.clone();
    // Absurd specs: the genesis limits.
    for (edit, expected) in [
        (
            (|s: &mut RenderJobSpec| s.width = 100_000) as fn(&mut RenderJobSpec),
            "resolution_too_large",
        ),
        (|s| s.samples = 0, "bad_samples"),
        (|s| s.samples = u32::MAX, "bad_samples"),
        (|s| s.frame_end = 1_000_000, "too_many_frames"),
        (|s| s.frame_end = 0, "bad_frames"),
        (|s| s.bundle_bytes = 0, "bad_bundle"),
        (
            |s| s.max_price_dc_per_gigapixel_sample = 1,
            "price_below_floor",
        ),
    ] {
        let mut s = spec(1);
        edit(&mut s);
        let tx = f.tx(&owner, render(RenderTx::SubmitJob(s)));
        assert_eq!(code(f.reject(&tx)), expected);
    }
    // More than the consumer holds.
    let poor = f.user(3);
    let tx = f.tx(&poor, render(RenderTx::SubmitJob(spec(1))));
    assert!(matches!(
        f.reject(&tx),
        TxError::InsufficientDataCredits { .. }
    ));
    // Malformed bytes.
    let tx = f.tx(
        &owner,
        Action::Service {
            service: crate::render::SERVICE,
            payload: vec![0xff; 40],
        },
    );
    assert_eq!(code(f.reject(&tx)), "malformed_render_tx");
    // Ads: only from a render provider, with sane names and a score.
    let stranger = f.user(3);
    let tx = f.tx(&stranger, advertise(BUILD));
    assert_eq!(code(f.reject(&tx)), "not_a_render_provider");
    let provider = f.user(0);
    for (device, build, score) in [
        ("CPU", "", SCORE),
        ("CPU", "x".repeat(65).as_str(), SCORE),
        ("CPU\n", BUILD, SCORE),
        ("CPU", BUILD, 0),
    ] {
        let tx = f.tx(
            &provider,
            render(RenderTx::Advertise {
                device: device.into(),
                build: build.into(),
                score_pixel_samples_per_s: score,
            }),
        );
        assert_eq!(code(f.reject(&tx)), "bad_ad");
    }
    // Unknown jobs and pieces, commitments and verdicts from the wrong people.
    let id = f.submit_render(spec(2));
    f.end_block();
    let unknown = Hash::of(b"no such job");
    let tx = f.tx(
        &provider,
        render(RenderTx::Commit {
            job: unknown,
            piece: 0,
            attempt: 0,
            commitment: commitment_of(0, 0, true),
        }),
    );
    assert_eq!(code(f.reject(&tx)), "unknown_job");
    let renderer = f.renderer(&id, 0);
    let tx = f.tx(
        &renderer,
        render(RenderTx::Commit {
            job: id,
            piece: 9,
            attempt: 0,
            commitment: commitment_of(9, 0, true),
        }),
    );
    assert_eq!(code(f.reject(&tx)), "unknown_piece");
    let other = f
        .users
        .iter()
        .take(3)
        .find(|u| u.address() != renderer.address())
        .expect("another provider")
        .clone();
    let tx = f.tx(
        &other,
        render(RenderTx::Commit {
            job: id,
            piece: 0,
            attempt: 0,
            commitment: commitment_of(0, 0, true),
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_assigned");
    let tx = f.tx(
        &renderer,
        render(RenderTx::Commit {
            job: id,
            piece: 0,
            attempt: 3,
            commitment: commitment_of(0, 3, true),
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_rendering");
    // A verdict before any check is drawn, and an approval of a piece not offered.
    let tx = f.tx(
        &other,
        render(RenderTx::Verdict {
            job: id,
            piece: 0,
            attempt: 0,
            verdict: PASS,
        }),
    );
    assert_eq!(code(f.reject(&tx)), "no_check_open");
    let tx = f.tx(
        &owner,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0],
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_offered");
    f.commit_piece(&id, 0, true);
    // Committing twice is refused.
    let tx = f.tx(
        &renderer,
        render(RenderTx::Commit {
            job: id,
            piece: 0,
            attempt: 0,
            commitment: commitment_of(0, 0, false),
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_rendering");
    f.draw_checks();
    let verifier = f.pending_verifier(&id, 0);
    let intruder = f
        .users
        .iter()
        .take(3)
        .find(|u| u.address() != verifier.address())
        .expect("not the verifier")
        .clone();
    let tx = f.tx(
        &intruder,
        render(RenderTx::Verdict {
            job: id,
            piece: 0,
            attempt: 0,
            verdict: FAIL,
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_a_verifier");
    let tx = f.tx(
        &verifier,
        render(RenderTx::Verdict {
            job: id,
            piece: 0,
            attempt: 0,
            verdict: Verdict {
                ssim_ppm: 2_000_000,
                psnr_millidb: 0,
            },
        }),
    );
    assert_eq!(code(f.reject(&tx)), "bad_verdict");
    f.verdict(&id, 0, PASS);
    // A replayed verdict finds no check open; only the owner approves, once per piece.
    let tx = f.tx(
        &verifier,
        render(RenderTx::Verdict {
            job: id,
            piece: 0,
            attempt: 0,
            verdict: FAIL,
        }),
    );
    assert_eq!(code(f.reject(&tx)), "no_check_open");
    let tx = f.tx(
        &renderer,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0],
        }),
    );
    assert_eq!(code(f.reject(&tx)), "not_owner");
    let tx = f.tx(
        &owner,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0, 0],
        }),
    );
    assert_eq!(code(f.reject(&tx)), "bad_pieces");
    f.check_supply();
}

#[test]
fn no_job_is_taken_without_two_providers_of_a_build_and_the_consumer_never_works_on_its_own() {
    // One provider alone cannot be checked: the job is refused.
    let mut f = render_setup(1);
    let owner = f.validator.clone();
    let tx = f.tx(&owner, render(RenderTx::SubmitJob(spec(1))));
    assert_eq!(code(f.reject(&tx)), "not_enough_providers");
    // A second provider of another build does not help.
    let odd = f.user(1);
    f.make_provider(&odd, 200 * UNIT, &[crate::render::SERVICE]);
    f.ok(&odd, advertise("Blender 4.2.0 macos-arm64"));
    let tx = f.tx(&owner, render(RenderTx::SubmitJob(spec(1))));
    assert_eq!(code(f.reject(&tx)), "not_enough_providers");

    // The consumer is itself a render provider: it never renders nor checks its own job.
    let mut f = render_setup(3);
    let consumer = f.user(0);
    f.ok(&consumer, buy_credits(100 * UNIT));
    let unique = f.user(3);
    f.make_provider(&unique, 200 * UNIT, &[crate::render::SERVICE]);
    f.ok(&unique, advertise("a build nobody else runs"));
    let receipt = f.ok(&consumer, render(RenderTx::SubmitJob(spec(8))));
    let id = receipt
        .events
        .iter()
        .find_map(|e| match e.service_event::<RenderEvent>() {
            Some(RenderEvent::JobSubmitted { id, .. }) => Some(id),
            _ => None,
        })
        .expect("submitted");
    f.end_block();
    for index in 0..8 {
        let renderer = f.renderer(&id, index).address();
        assert_ne!(renderer, consumer.address(), "the consumer renders nothing");
        assert_ne!(
            renderer,
            unique.address(),
            "a build with no peer gets no work"
        );
        f.commit_piece(&id, index, true);
    }
    f.draw_checks();
    for index in 0..8 {
        let verifier = f.pending_verifier(&id, index).address();
        assert_ne!(verifier, consumer.address(), "the consumer checks nothing");
        assert_ne!(verifier, unique.address());
    }
}

#[test]
fn a_cheat_failed_by_two_verifiers_is_slashed_and_its_piece_rendered_elsewhere() {
    let mut f = render_setup(4);
    let id = f.submit_render(spec(1));
    f.end_block();
    let cheat = f.commit_piece(&id, 0, false);
    let stake_before = f.stake(&cheat).bonded;
    f.draw_checks();
    let first = f.verdict(&id, 0, FAIL);
    // One failing verdict is not enough: a second verifier is drawn.
    let piece = f.render_piece(&id, 0);
    assert_eq!(piece.status, PieceStatus::Checking);
    assert_eq!(piece.verdicts.len(), 2);
    let second = f.verdict(&id, 0, FAIL);
    assert_ne!(first.address(), second.address());
    let piece = f.render_piece(&id, 0);
    assert_eq!(piece.status, PieceStatus::Queued);
    assert_eq!(piece.attempt, 1);
    assert_eq!(piece.tried, vec![cheat.address()]);
    assert!(f.stake(&cheat).bonded < stake_before, "slashed");
    let reasons = f.failures(&cheat);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("render failed its check") && r.contains("SSIM 0.510000")),
        "{reasons:?}"
    );
    // The next renderer is someone else; both verifiers that caught it were paid.
    f.end_block();
    let next = f.renderer(&id, 0);
    assert_ne!(next.address(), cheat.address());
    assert!(f.render_job(&id).paid_dc > 0, "the verifiers were paid");
    f.check_supply();
}

#[test]
fn a_verifier_outvoted_by_two_is_slashed_and_the_piece_accepted() {
    let mut f = render_setup(5);
    let id = f.submit_render(spec(1));
    f.end_block();
    let renderer = f.commit_piece(&id, 0, true);
    f.draw_checks();
    let liar = f.verdict(&id, 0, FAIL);
    f.verdict(&id, 0, PASS);
    // One each: a third breaks the tie.
    assert_eq!(f.render_piece(&id, 0).status, PieceStatus::Checking);
    f.verdict(&id, 0, PASS);
    assert_eq!(f.render_piece(&id, 0).status, PieceStatus::Offered);
    let reasons = f.failures(&liar);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("render verdict outvoted by two")),
        "{reasons:?}"
    );
    assert!(f.failures(&renderer).is_empty(), "the renderer was right");
}

#[test]
fn a_renderer_killed_mid_frame_is_slashed_at_the_timeout_and_the_job_completes() {
    let mut f = render_setup(4);
    let id = f.submit_render(spec(2));
    f.end_block();
    let killed = f.renderer(&id, 0);
    let deadline = f.render_piece(&id, 0).deadline;
    assert_eq!(deadline, f.height - 1 + RENDER_BASE_BLOCKS + 1);
    f.commit_piece(&id, 1, true);
    f.end_blocks_through(deadline);
    let reasons = f.failures(&killed);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("render not committed in time")),
        "{reasons:?}"
    );
    assert!(f.render_usage(&killed.address()).rendering.is_empty());
    // Handed to someone else at the same block's end; it finishes.
    let piece = f.render_piece(&id, 0);
    assert_eq!((piece.status, piece.attempt), (PieceStatus::Rendering, 1));
    assert_ne!(piece.renderer, Some(killed.address()));
    f.commit_piece(&id, 0, true);
    f.draw_checks();
    f.verdict(&id, 0, PASS);
    if f.render_piece(&id, 1).status == PieceStatus::Checking {
        f.verdict(&id, 1, PASS);
    }
    let owner = f.validator.clone();
    f.ok(
        &owner,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0, 1],
        }),
    );
    assert_eq!(f.render_job(&id).status, RenderJobStatus::Done);
    f.check_supply();
}

#[test]
fn a_silent_verifier_is_slashed_and_replaced() {
    let mut f = render_setup(4);
    let id = f.submit_render(spec(1));
    f.end_block();
    f.commit_piece(&id, 0, true);
    f.draw_checks();
    let silent = f.pending_verifier(&id, 0);
    let deadline = f.render_piece(&id, 0).verdicts[0].deadline;
    f.end_blocks_through(deadline);
    assert!(
        f.failures(&silent)
            .iter()
            .any(|r| r.contains("no render verdict in time"))
    );
    assert!(f.render_usage(&silent.address()).verifying.is_empty());
    let replacement = f.pending_verifier(&id, 0);
    assert_ne!(replacement.address(), silent.address());
    f.verdict(&id, 0, PASS);
    assert_eq!(f.render_piece(&id, 0).status, PieceStatus::Offered);
}

#[test]
fn a_consumer_rejection_renders_again_unpaid_and_counts_against_the_renderer_only_if_a_verifier_agrees()
 {
    let mut f = render_setup(5);
    let owner = f.validator.clone();
    let id = f.submit_render(spec(1));
    f.end_block();
    let first = f.commit_piece(&id, 0, true);
    f.draw_checks();
    f.verdict(&id, 0, PASS);
    f.ok(&owner, render(RenderTx::Reject { job: id, piece: 0 }));
    let piece = f.render_piece(&id, 0);
    assert_eq!((piece.status, piece.attempt), (PieceStatus::Queued, 1));
    assert_eq!(piece.paid_dc, 0);
    let dispute = piece.dispute.clone().expect("a dispute check");
    assert_eq!(dispute.renderer, first.address());
    // The dispute's verifier finds the render fine: no mark on the renderer.
    let verifier = f.render_key_of(&dispute.slot.verifier);
    f.ok(
        &verifier,
        render(RenderTx::Verdict {
            job: id,
            piece: 0,
            attempt: 0,
            verdict: PASS,
        }),
    );
    assert!(f.failures(&first).is_empty(), "{:?}", f.failures(&first));
    assert!(f.render_piece(&id, 0).dispute.is_none());

    // The second render is rejected too, and this time the dispute verifier agrees.
    f.end_block();
    let second = f.commit_piece(&id, 0, true);
    assert_ne!(second.address(), first.address());
    f.draw_checks();
    f.verdict(&id, 0, PASS);
    f.ok(&owner, render(RenderTx::Reject { job: id, piece: 0 }));
    let dispute = f
        .render_piece(&id, 0)
        .dispute
        .clone()
        .expect("a dispute check");
    let verifier = f.render_key_of(&dispute.slot.verifier);
    f.ok(
        &verifier,
        render(RenderTx::Verdict {
            job: id,
            piece: 0,
            attempt: 1,
            verdict: FAIL,
        }),
    );
    assert!(
        f.failures(&second)
            .iter()
            .any(|r| r.contains("rejected by its consumer and failed a check"))
    );
    // The third render is final: no more rejections.
    f.end_block();
    f.commit_piece(&id, 0, true);
    f.draw_checks();
    f.verdict(&id, 0, PASS);
    let tx = f.tx(&owner, render(RenderTx::Reject { job: id, piece: 0 }));
    assert_eq!(code(f.reject(&tx)), "rejections_used");
    f.ok(
        &owner,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0],
        }),
    );
    let job = f.render_job(&id);
    assert_eq!(job.status, RenderJobStatus::Done);
    f.check_supply();
}

#[test]
fn frames_above_the_split_are_rendered_checked_and_paid_as_strips() {
    let mut f = render_setup(4);
    let big = RenderJobSpec {
        width: 7680,
        height: 4320,
        ..spec(1)
    };
    let id = f.submit_render(big);
    assert_eq!(f.render_job(&id).pieces, 4);
    f.end_block();
    let mut next_row = 0;
    for index in 0..4 {
        let piece = f.render_piece(&id, index);
        assert_eq!((piece.area.frame, piece.area.y0), (1, next_row));
        next_row = piece.area.y1;
        f.commit_piece(&id, index, true);
    }
    assert_eq!(next_row, 4320);
    f.draw_checks();
    for index in 0..4 {
        f.verdict(&id, index, PASS);
    }
    let owner = f.validator.clone();
    f.ok(
        &owner,
        render(RenderTx::Approve {
            job: id,
            pieces: vec![0, 1, 2, 3],
        }),
    );
    let job = f.render_job(&id);
    assert_eq!((job.status, job.approved), (RenderJobStatus::Done, 4));
    f.check_supply();
}

#[test]
fn a_renderer_takes_no_more_pieces_than_its_capacity() {
    let mut f = render_setup(0);
    for i in 0..2 {
        let u = f.user(i);
        f.ok(&u, bond(200 * UNIT));
        f.ok(
            &u,
            Action::RegisterProvider {
                services: vec![ServiceOffer {
                    service: crate::render::SERVICE,
                    capacity: 2,
                    price_dc_per_unit: 5,
                }],
                location: Some(AMSTERDAM),
            },
        );
        f.ok(&u, advertise(BUILD));
    }
    let id = f.submit_render(spec(6));
    f.end_block();
    for i in 0..2 {
        assert_eq!(f.render_usage(&f.user(i).address()).rendering.len(), 2);
    }
    assert!(
        f.get::<Piece>(&Fixture::render_key(keys::piece(&id, 4)))
            .is_none(),
        "pieces 4 and 5 wait"
    );
    // A commitment frees a slot: the next piece goes out at the block's end.
    f.commit_piece(&id, 0, true);
    f.end_block();
    assert_eq!(f.render_piece(&id, 4).status, PieceStatus::Rendering);
}

#[test]
fn a_verifier_that_cannot_check_steps_aside_unslashed_and_step_asides_cannot_use_up_the_check() {
    let mut f = render_setup(6);
    let id = f.submit_render(spec(1));
    f.end_block();
    let renderer = f.commit_piece(&id, 0, true);
    f.draw_checks();
    let step = |f: &mut Fixture, who: &Keypair, reason: &str| {
        f.tx(
            who,
            render(RenderTx::StepAside {
                job: id,
                piece: 0,
                attempt: 0,
                reason: reason.into(),
            }),
        )
    };

    // Only the drawn verifier may step aside, with a short reason.
    let tx = step(&mut f, &renderer, "not mine");
    assert_eq!(code(f.reject(&tx)), "not_a_verifier");
    let first = f.pending_verifier(&id, 0);
    let tx = step(&mut f, &first, &"x".repeat(201));
    assert_eq!(code(f.reject(&tx)), "reason_too_long");

    // Stepping aside costs no stake, puts the fault on the record, frees the verifier and
    // draws another one at once.
    let stake_before = f.stake(&first).bonded;
    let tx = step(&mut f, &first, "blender: out of memory");
    f.apply(&tx).expect("steps aside");
    assert_eq!(f.stake(&first).bonded, stake_before, "no stake taken");
    assert!(
        f.failures(&first)
            .iter()
            .any(|r| r.contains("stepped aside") && r.contains("out of memory")),
        "{:?}",
        f.failures(&first)
    );
    assert!(f.render_usage(&first.address()).verifying.is_empty());
    let slot = &f.render_piece(&id, 0).verdicts[0];
    assert!(slot.stepped_aside && !slot.timed_out && slot.verdict.is_none());
    let second = f.pending_verifier(&id, 0);
    assert_ne!(second.address(), first.address());
    let tx = step(&mut f, &first, "again");
    assert_eq!(code(f.reject(&tx)), "not_a_verifier");

    // Its deadline passing later slashes nobody: the slot is closed.
    let first_deadline = f.render_piece(&id, 0).verdicts[0].deadline;
    let tx = step(&mut f, &second, "no scene");
    f.apply(&tx).expect("steps aside");
    let third = f.pending_verifier(&id, 0);
    // A third step-aside of the same render is refused: the remaining slots are for verdicts,
    // so no ring of verifiers can leave an honest render unchecked for free.
    let tx = step(&mut f, &third, "busy");
    assert_eq!(code(f.reject(&tx)), "step_asides_used");
    f.end_blocks_through(first_deadline);
    assert_eq!(f.stake(&first).bonded, stake_before);
    assert_eq!(f.pending_verifier(&id, 0).address(), third.address());
    f.verdict(&id, 0, PASS);
    assert_eq!(f.render_piece(&id, 0).status, PieceStatus::Offered);
    assert!(f.failures(&renderer).is_empty());
    f.check_supply();
}
