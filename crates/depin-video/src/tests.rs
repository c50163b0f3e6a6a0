//! Against Debian's ffmpeg (installed by scripts/setup.sh), on generated clips.

use crate::{Ffmpeg, Ladder, Mismatch, Opinion, SegmentFacts, VideoError, check_rendition, judge};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A `seconds`-long 640×360 30 fps MPEG-TS clip of ffmpeg's `pattern` source with a tone.
fn clip(ff: &Ffmpeg, dir: &Path, name: &str, pattern: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let args: Vec<OsString> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &format!("{pattern}=size=640x360:rate=30"),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "60",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
    ]
    .iter()
    .map(OsString::from)
    .chain([path.clone().into()])
    .collect();
    ff.ffmpeg(&args)
        .expect("ffmpeg makes a clip (scripts/setup.sh installs it)");
    path
}

fn ladder() -> Ladder {
    "240p,360p".parse().expect("ladder")
}

#[test]
fn the_same_settings_give_identical_renditions_of_each_rung_s_size_and_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ff = Ffmpeg::default();
    let source = clip(&ff, dir.path(), "source.ts", "testsrc2", 2);
    let facts = ff.probe(&source).expect("probes");
    assert_eq!((facts.width, facts.height, facts.frames), (640, 360, 60));
    assert!(facts.has_audio);
    let settings = crate::EncoderSettings::default();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let first = ff
        .transcode(&source, &ladder(), &settings, &a)
        .expect("transcodes");
    let second = ff
        .transcode(&source, &ladder(), &settings, &b)
        .expect("transcodes");
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].rung.name, "360p", "largest first");
    for (x, y) in first.iter().zip(&second) {
        assert_eq!(x.hash, y.hash, "{} is byte-identical", x.rung.name);
        let got = ff.probe(&x.path).expect("probes");
        assert_eq!((got.width, got.height), (x.rung.width, x.rung.height));
        assert!(got.has_audio, "audio copied");
        check_rendition(&x.rung, &facts, &got).expect("matches its rung and source");
        assert_eq!(got.pixels(), u64::from(x.rung.width * x.rung.height) * 60);
    }
    // Signatures and SSIM see the same video in every rung.
    assert!(
        ff.signatures_match(&first[0].path, &first[1].path)
            .expect("compares")
    );
    let ssim = ff
        .ssim(&first[0].path, &source, 640, 360)
        .expect("measures");
    assert!(ssim > 0.9, "honest 360p against its source: SSIM {ssim}");
}

#[test]
fn a_non_video_input_and_every_bad_rendition_are_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ff = Ffmpeg::default();
    let garbage = dir.path().join("garbage.ts");
    std::fs::write(&garbage, b"this is not a video segment").expect("writes");
    let err = ff.probe(&garbage).expect_err("not video");
    assert!(matches!(err, VideoError::NotVideo(_)), "{err}");
    let err = ff
        .transcode(&garbage, &ladder(), &Default::default(), dir.path())
        .expect_err("not video");
    assert!(matches!(err, VideoError::NotVideo(_)), "{err}");
    assert_eq!(err.code(), "not_video");

    let source = clip(&ff, dir.path(), "source.ts", "testsrc2", 2);
    let facts = ff.probe(&source).expect("probes");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let honest = ff
        .transcode(&source, &ladder(), &Default::default(), &out)
        .expect("transcodes");
    let (r360, r240) = (&honest[0], &honest[1]);
    let r240_facts = ff.probe(&r240.path).expect("probes");

    // The wrong resolution: a 240p rendition returned for the 360p rung.
    assert!(matches!(
        check_rendition(&r360.rung, &facts, &r240_facts),
        Err(Mismatch::Resolution { .. })
    ));
    // Fewer frames: a rendition of one second of a two-second source.
    let short = clip(&ff, dir.path(), "short.ts", "testsrc2", 1);
    let short_out = dir.path().join("short");
    std::fs::create_dir(&short_out).expect("mkdir");
    let cut = ff
        .transcode(&short, &ladder(), &Default::default(), &short_out)
        .expect("transcodes");
    let cut_facts = ff.probe(&cut[0].path).expect("probes");
    assert_eq!(
        check_rendition(&r360.rung, &facts, &cut_facts),
        Err(Mismatch::Frames {
            expected: 60,
            got: 30
        })
    );
    // Another segment's output: right size and frames, but not this video.
    let other = clip(&ff, dir.path(), "other.ts", "testsrc", 2);
    let other_out = dir.path().join("other");
    std::fs::create_dir(&other_out).expect("mkdir");
    let wrong = ff
        .transcode(&other, &ladder(), &Default::default(), &other_out)
        .expect("transcodes");
    let wrong_facts = ff.probe(&wrong[0].path).expect("probes");
    check_rendition(&r360.rung, &facts, &wrong_facts).expect("its size and frames fit");
    assert!(
        !ff.signatures_match(&r360.path, &wrong[0].path)
            .expect("compares"),
        "another segment's video is caught by its signature"
    );
    let ssim = ff
        .ssim(&wrong[0].path, &source, 640, 360)
        .expect("measures");
    assert!(
        ssim < 0.6,
        "another segment against the source: SSIM {ssim}"
    );
    // A codec other than H.264 is refused by the check alone.
    let mpeg2 = SegmentFacts {
        codec: "mpeg2video".into(),
        ..r240_facts
    };
    assert!(matches!(
        check_rendition(&r240.rung, &facts, &mpeg2),
        Err(Mismatch::Codec(_))
    ));
}

#[test]
fn ladders_parse_strictly_largest_first() {
    let ladder: Ladder = "360p, 1080p,720p".parse().expect("parses");
    assert_eq!(ladder.to_string(), "1080p,720p,360p");
    assert_eq!(
        ladder.pixels_per_frame(),
        1920 * 1080 + 1280 * 720 + 640 * 360
    );
    assert_eq!(Ladder::standard().to_string(), "1080p,720p,480p,360p");
    for bad in ["", "4k", "720p,720p", " , "] {
        assert!(bad.parse::<Ladder>().is_err(), "{bad:?}");
    }
}

#[test]
fn a_source_is_cut_at_keyframes_into_segments_that_play_alone() {
    let ff = Ffmpeg::default();
    let tmp = tempfile::tempdir().expect("tmp");
    let source = clip(&ff, tmp.path(), "live.ts", "testsrc2", 6);
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(&cut).expect("mkdir");
    let input = crate::Source::Input(source.to_string_lossy().into_owned());
    let mut cutter = crate::Cutter::start(&ff, &input, 2.0, false, &cut).expect("starts");
    let mut segments = Vec::new();
    while let Some(segment) = cutter.next_segment().expect("cuts") {
        let facts = ff.probe(&segment.path).expect("a segment decodes alone");
        assert_eq!(facts.frames, 60, "{segment:?}");
        assert!(facts.has_audio);
        segments.push(segment.seq);
    }
    assert_eq!(segments, [0, 1, 2]);
    assert!(
        ff.version()
            .expect("version")
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    );
    assert!(ff.working_encoders().contains(&crate::Encoder::Libx264));

    // A file that is no video ends the cut with a clear error, not an empty stream.
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, vec![7u8; 10_000]).expect("junk");
    let input = crate::Source::Input(junk.to_string_lossy().into_owned());
    let junk_cut = tmp.path().join("junk-cut");
    std::fs::create_dir_all(&junk_cut).expect("mkdir");
    let mut cutter = crate::Cutter::start(&ff, &input, 2.0, false, &junk_cut).expect("starts");
    assert!(matches!(
        cutter.next_segment(),
        Err(VideoError::NotVideo(_))
    ));
}

#[test]
fn a_second_opinion_agrees_with_the_same_bytes_and_catches_a_starved_encode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ff = Ffmpeg::default();
    let source = clip(&ff, dir.path(), "source.ts", "testsrc2", 2);
    let encode = |name: &str, ladder: &Ladder| {
        let out = dir.path().join(name);
        std::fs::create_dir(&out).expect("mkdir");
        ff.transcode(&source, ladder, &Default::default(), &out)
            .expect("transcodes")
    };
    let first = encode("first", &ladder());
    let second = encode("second", &ladder());
    // A cheat that keeps size, frames and length but spends a twentieth of the bits.
    let starved = Ladder(
        ladder()
            .rungs()
            .iter()
            .map(|r| crate::Rung {
                bitrate_kbps: r.bitrate_kbps / 20,
                ..*r
            })
            .collect(),
    );
    let starved = encode("starved", &starved);
    for i in 0..2 {
        let rung = first[i].rung;
        assert_eq!(
            ff.second_opinion(&rung, &source, &first[i].path, &second[i].path, true)
                .expect("compares"),
            Opinion::Agree,
            "{}: same build and settings, same bytes",
            rung.name
        );
        let starved_facts = ff.probe(&starved[i].path).expect("probes");
        check_rendition(&rung, &ff.probe(&source).expect("probes"), &starved_facts)
            .expect("a starved encode passes the local checks");
        for exact in [true, false] {
            let opinion = ff
                .second_opinion(&rung, &source, &starved[i].path, &first[i].path, exact)
                .expect("compares");
            assert!(
                matches!(opinion, Opinion::FirstWorse { .. }),
                "{} (exact {exact}): {opinion:?}",
                rung.name
            );
        }
    }
}

#[test]
fn the_judge_keeps_a_margin_only_between_different_encoders_of_the_same_video() {
    assert_eq!(judge(false, true, 0.990, 0.998), Opinion::Agree);
    assert!(matches!(
        judge(true, true, 0.990, 0.998),
        Opinion::FirstWorse { .. }
    ));
    assert!(matches!(
        judge(false, false, 0.990, 0.998),
        Opinion::FirstWorse { .. }
    ));
    assert!(matches!(
        judge(false, true, 0.998, 0.95),
        Opinion::SecondWorse { .. }
    ));
}
