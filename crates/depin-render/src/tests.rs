//! Against Debian's Blender (installed by scripts/setup.sh), in the real sandbox.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::scenes::{self, Example};
use crate::{Blender, BlenderConfig, Capabilities, Region, RenderError, RenderSpec};

fn blender() -> Blender {
    Blender::new(BlenderConfig {
        threads: 2,
        ..BlenderConfig::default()
    })
}

fn caps(b: &Blender) -> Capabilities {
    b.probe()
        .expect("Blender runs (scripts/setup.sh installs it)")
}

fn test_scene(b: &Blender, script: &str, args: serde_json::Value, dir: &Path) -> PathBuf {
    scenes::build_script(b, script, &args, dir).expect("scene builds")
}

fn spec(frame: i64, samples: u32) -> RenderSpec {
    RenderSpec {
        frame,
        samples,
        seed: 7,
        resolution: None,
        region: None,
        denoise_off: false,
    }
}

#[test]
fn a_fixed_seed_renders_the_same_pixels_on_any_thread_count_and_a_region_is_its_crop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = blender();
    let caps = caps(&b);
    let scene = scenes::build(&b, Example::GlassAndLight, dir.path()).expect("builds");
    let one = Blender::new(BlenderConfig {
        threads: 1,
        ..b.config().clone()
    });
    let (info, a) = one
        .render_checked(&caps, dir.path(), &scene, &spec(1, 8))
        .expect("renders");
    assert_eq!((info.width, info.height), (160, 120));
    assert_eq!((a.image.width, a.image.height), (160, 120));
    let (_, c) = b
        .render_checked(&caps, dir.path(), &scene, &spec(1, 8))
        .expect("renders");
    assert_eq!(
        a.image.pixel_hash(),
        c.image.pixel_hash(),
        "1 and 2 threads"
    );
    assert!(
        a.image.rgba.chunks(4).any(|p| p[..3] != a.image.rgba[..3]),
        "not a blank frame"
    );

    // A region lands on exactly the same pixels as in the full frame, odd edges included.
    let region = Region {
        x0: 17,
        y0: 9,
        x1: 93,
        y1: 71,
    };
    let part = b
        .render(
            &caps,
            dir.path(),
            &scene,
            &RenderSpec {
                region: Some(region),
                ..spec(1, 8)
            },
        )
        .expect("renders a region");
    assert_eq!((part.frame_width, part.frame_height), (160, 120));
    assert_eq!(part.image, a.image.crop(region).expect("inside"));

    // `depin render local` in one Blender start: the same pixels as the provider's path, and
    // the scene's own samples when none are asked for.
    let local = b
        .render_local(
            dir.path(),
            &scene,
            &RenderSpec {
                region: Some(region),
                ..spec(1, 0)
            },
            Some(8),
        )
        .expect("renders locally");
    assert_eq!(local.rendered.image, part.image);
    assert_eq!(local.samples, 8);
    assert_eq!(local.blender_version, caps.blender);
    let corner = Region {
        x0: 0,
        y0: 0,
        x1: 8,
        y1: 8,
    };
    let own = b
        .render_local(
            dir.path(),
            &scene,
            &RenderSpec {
                region: Some(corner),
                ..spec(1, 0)
            },
            None,
        )
        .expect("renders locally");
    assert_eq!(own.samples, info.samples);

    // The renderer's commitment: the verifier fetches the tiles under the region, checks each
    // against the root, and finds its re-render in them.
    let tree = crate::tiles::TileTree::new(&a.image, 32).expect("tiles");
    let root = tree.root();
    for index in crate::tiles::tiles_covering(160, 120, 32, region) {
        let area = crate::tiles::tile_region(160, 120, 32, index);
        let tile = a.image.crop(area).expect("inside");
        let proof = tree.proof(index).expect("a tile");
        assert!(crate::tiles::verify_tile(
            &root, 160, 120, 32, &tile, &proof
        ));
        let x0 = area.x0.max(region.x0);
        let y0 = area.y0.max(region.y0);
        let overlap = Region {
            x0,
            y0,
            x1: area.x1.min(region.x1),
            y1: area.y1.min(region.y1),
        };
        let in_tile = Region {
            x0: overlap.x0 - area.x0,
            y0: overlap.y0 - area.y0,
            x1: overlap.x1 - area.x0,
            y1: overlap.y1 - area.y0,
        };
        let in_part = Region {
            x0: overlap.x0 - region.x0,
            y0: overlap.y0 - region.y0,
            x1: overlap.x1 - region.x0,
            y1: overlap.y1 - region.y0,
        };
        assert_eq!(
            tile.crop(in_tile).expect("inside"),
            part.image.crop(in_part).expect("inside")
        );
    }

    // A verifier's three check regions in one run, each exactly its crop.
    let checks = [
        Region {
            x0: 0,
            y0: 0,
            x1: 16,
            y1: 12,
        },
        Region {
            x0: 70,
            y0: 50,
            x1: 86,
            y1: 62,
        },
        Region {
            x0: 144,
            y0: 108,
            x1: 160,
            y1: 120,
        },
    ];
    let run = b
        .render_regions(&caps, dir.path(), &scene, &spec(1, 8), &checks)
        .expect("renders the regions");
    assert_eq!(run.images.len(), 3);
    for (image, region) in run.images.iter().zip(checks) {
        assert_eq!(image, &a.image.crop(region).expect("inside"), "{region}");
    }

    // Another seed, another noise pattern: the seed is what fixes the pixels.
    let other = b
        .render(
            &caps,
            dir.path(),
            &scene,
            &RenderSpec {
                seed: 8,
                ..spec(1, 8)
            },
        )
        .expect("renders");
    assert_ne!(other.image.pixel_hash(), a.image.pixel_hash());
}

/// Blender truncates a float32 border × size: exact fractions such as 324/360 used to land a
/// row short or long (a 64×35 check region). Every edge now comes back on its pixel.
#[test]
fn regions_on_any_row_and_column_come_back_at_their_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = blender();
    let caps = caps(&b);
    let scene = scenes::build(&b, Example::CameraFlight, dir.path()).expect("scene");
    let regions: Vec<Region> = (0..36u32)
        .map(|i| {
            let (x0, y0) = ((i * 37) % 577, (i * 10 + i / 3) % 325);
            Region {
                x0,
                y0,
                x1: x0 + 64,
                y1: y0 + 36,
            }
        })
        .chain([Region {
            x0: 576,
            y0: 324,
            x1: 640,
            y1: 360,
        }])
        .collect();
    let spec = RenderSpec {
        resolution: Some((640, 360)),
        ..spec(1, 1)
    };
    let run = b
        .render_regions(&caps, dir.path(), &scene, &spec, &regions)
        .expect("renders the regions");
    for (image, region) in run.images.iter().zip(&regions) {
        assert_eq!((image.width, image.height), (64, 36), "{region}");
    }
}

#[test]
fn the_other_example_scenes_build_and_render_their_frames() {
    let b = blender();
    let caps = caps(&b);
    for (example, frame) in [(Example::TexturedMesh, 1), (Example::CameraFlight, 48)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let scene = scenes::build(&b, example, dir.path()).expect("builds");
        let info = b.inspect(dir.path(), &scene).expect("inspects");
        let small = RenderSpec {
            resolution: Some((48, 32)),
            ..spec(frame, 4)
        };
        let (_, r) = b
            .render_checked(&caps, dir.path(), &scene, &small)
            .expect("renders");
        assert_eq!(
            (r.image.width, r.image.height),
            (48, 32),
            "{}",
            example.name()
        );
        if example == Example::CameraFlight {
            assert_eq!((info.frame_start, info.frame_end), (1, 48));
            let first = b
                .render(&caps, dir.path(), &scene, &RenderSpec { frame: 1, ..small })
                .expect("renders");
            assert_ne!(first.image, r.image, "the camera moves");
        }
    }
}

/// A `.blend` is untrusted: its registered text blocks and Python drivers never run (Blender
/// starts with auto-run disabled), and the sandbox holds even for code that does run: no
/// network, nothing written outside the output directory.
#[test]
fn a_scene_s_own_scripts_never_run_and_the_sandbox_holds_for_code_that_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let marker = outside.path().join("escaped");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listens");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("addr").port();
    let b = blender();
    let caps = caps(&b);
    let scene = test_scene(
        &b,
        include_str!("../test-scenes/hostile_script.py"),
        serde_json::json!({ "outside_path": marker, "port": port }),
        dir.path(),
    );
    let (_, r) = b
        .render_checked(&caps, dir.path(), &scene, &spec(1, 2))
        .expect("renders without running the scene's scripts");
    assert_eq!((r.image.width, r.image.height), (64, 48));
    assert!(!marker.exists(), "nothing written outside");
    assert!(listener.accept().is_err(), "no connection");

    // Our own code in the same sandbox, trying what a scene's script would.
    let probe = r#"
import json, os, socket, sys
args = json.loads(sys.argv[sys.argv.index("--") + 1])
report = {}
try:
    s = socket.socket(); s.settimeout(2); s.connect(("127.0.0.1", args["port"])); report["connect"] = "ok"
except Exception as e:
    report["connect"] = type(e).__name__
for name, path in (("outside", args["outside"]), ("bundle", "/job/in/x"), ("usr", "/usr/escaped"), ("root", "/etc/passwd")):
    try:
        open(path, "w").write("x"); report[name] = "ok"
    except Exception as e:
        report[name] = type(e).__name__
report["home"] = os.environ["HOME"]
report["host_home"] = os.path.exists("/root/.cargo")
report["niceness"] = os.nice(0)
open("/job/out/report.json", "w").write(json.dumps(report))
"#;
    let work = b
        .run(
            Some((dir.path(), &scene)),
            &[("script.py", probe)],
            &serde_json::json!({ "port": port, "outside": marker }),
        )
        .expect("runs");
    let mut text = String::new();
    std::fs::File::open(work.path().join("out/report.json"))
        .and_then(|mut f| f.read_to_string(&mut text))
        .expect("report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_ne!(report["connect"], "ok", "{report}");
    for place in ["outside", "bundle", "usr", "root"] {
        assert_ne!(report[place], "ok", "{place}: {report}");
    }
    assert_eq!(report["home"], "/job/home", "{report}");
    assert_eq!(report["host_home"], false, "{report}");
    // Blender yields the CPU to the node beside it.
    assert!(report["niceness"].as_u64() >= Some(10), "{report}");
    assert!(!marker.exists());
    assert!(listener.accept().is_err());
}

#[test]
fn bad_scenes_end_as_clear_errors_before_anything_renders() {
    let b = blender();
    let caps = caps(&b);

    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.blend");
    std::fs::write(&garbage, b"BLENDER-v304 this is not a blend file at all").expect("writes");
    let err = b
        .render_checked(&caps, dir.path(), &garbage, &spec(1, 2))
        .expect_err("refused");
    assert!(matches!(err, RenderError::UnreadableScene(_)), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let scene = test_scene(
        &b,
        include_str!("../test-scenes/missing_texture.py"),
        serde_json::json!({}),
        dir.path(),
    );
    match b.render_checked(&caps, dir.path(), &scene, &spec(1, 2)) {
        Err(RenderError::MissingFiles(files)) => assert_eq!(
            files,
            vec![
                "/nonexistent/wood.png".to_string(),
                "textures/brick.png".into()
            ],
        ),
        other => panic!("expected missing files, got {other:?}"),
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let scene = test_scene(
        &b,
        include_str!("../test-scenes/denoise.py"),
        serde_json::json!({}),
        dir.path(),
    );
    let result = b.render_checked(&caps, dir.path(), &scene, &spec(1, 2));
    if caps.denoise {
        result.expect("a build with OpenImageDenoise renders it");
    } else {
        assert!(
            matches!(result, Err(RenderError::DenoiseUnavailable)),
            "{result:?}"
        );
    }
    let (_, off) = b
        .render_checked(
            &caps,
            dir.path(),
            &scene,
            &RenderSpec {
                denoise_off: true,
                ..spec(1, 2)
            },
        )
        .expect("renders with the denoiser turned off");
    assert_eq!((off.image.width, off.image.height), (64, 48));

    // A scene outside its bundle, and a region outside the frame.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let err = b
        .render(&caps, elsewhere.path(), &scene, &spec(1, 2))
        .expect_err("refused");
    assert!(matches!(err, RenderError::SceneOutsideBundle(_)), "{err}");
    let err = b
        .render(
            &caps,
            dir.path(),
            &scene,
            &RenderSpec {
                region: Some(Region {
                    x0: 0,
                    y0: 0,
                    x1: 65,
                    y1: 10,
                }),
                ..spec(1, 2)
            },
        )
        .expect_err("refused");
    assert!(matches!(err, RenderError::BadRegion(_)), "{err}");
}

#[test]
fn a_run_past_its_limits_is_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = blender();
    let caps = caps(&b);
    let scene = scenes::build(&b, Example::GlassAndLight, dir.path()).expect("builds");
    let slow = Blender::new(BlenderConfig {
        wall_clock_limit_s: 2,
        ..b.config().clone()
    });
    let err = slow
        .render(&caps, dir.path(), &scene, &spec(1, 100_000))
        .expect_err("stopped");
    assert!(matches!(err, RenderError::TimedOut { limit_s: 2 }), "{err}");
    let tiny = Blender::new(BlenderConfig {
        output_limit_bytes: 2_000,
        ..b.config().clone()
    });
    let err = tiny
        .render(&caps, dir.path(), &scene, &spec(1, 1))
        .expect_err("stopped");
    assert!(matches!(err, RenderError::OutputTooLarge { .. }), "{err}");
}

#[test]
fn debian_blender_renders_on_the_cpu_without_denoising() {
    let caps = caps(&blender());
    assert!(caps.devices.contains(&crate::Device::Cpu));
    assert!(!caps.blender.is_empty());
}

#[test]
fn regions_and_devices_parse_strictly() {
    assert_eq!(
        "1,2,3,4".parse::<Region>(),
        Ok(Region {
            x0: 1,
            y0: 2,
            x1: 3,
            y1: 4
        })
    );
    for bad in ["1,2,3", "3,2,1,4", "a,b,c,d", "1,2,3,4,5", "-1,0,2,2"] {
        assert!(bad.parse::<Region>().is_err(), "{bad}");
    }
    assert_eq!("optix".parse::<crate::Device>(), Ok(crate::Device::Optix));
    assert!("metal".parse::<crate::Device>().is_err());
}

/// The scores of honest and cheating check regions against a verifier's re-render of the
/// same regions (with the pinned seed), for `scene` at `size` and `samples`.
fn calibration(
    b: &Blender,
    caps: &Capabilities,
    bundle: &Path,
    scene: &Path,
    size: (u32, u32),
    samples: u32,
    other_frame: i64,
) -> Vec<(&'static str, crate::Similarity)> {
    let (w, h) = size;
    let (rw, rh) = ((w / 10).max(8), (h / 10).max(8));
    let regions = [
        (w / 7, h / 5),
        (w / 2, h / 2 - rh / 2),
        (w - rw - w / 9, h - rh - h / 6),
    ]
    .map(|(x, y)| Region {
        x0: x,
        y0: y,
        x1: x + rw,
        y1: y + rh,
    });
    let base = RenderSpec {
        resolution: Some(size),
        ..spec(1, samples)
    };
    let one = Blender::new(BlenderConfig {
        threads: 1,
        ..b.config().clone()
    });
    let run = |b: &Blender, spec: &RenderSpec| {
        b.render_regions(caps, bundle, scene, spec, &regions)
            .expect("renders")
            .images
    };
    let verifier = run(b, &base);
    let honest_full = b
        .render(caps, bundle, scene, &base)
        .expect("renders the frame")
        .image;
    let honest: Vec<_> = regions
        .iter()
        .map(|r| honest_full.crop(*r).expect("inside"))
        .collect();
    let one_thread = run(&one, &base);
    let eighth = run(
        b,
        &RenderSpec {
            samples: (samples / 8).max(1),
            ..base.clone()
        },
    );
    let other_seed = run(
        b,
        &RenderSpec {
            seed: 9_999,
            ..base.clone()
        },
    );
    let other = run(
        b,
        &RenderSpec {
            frame: other_frame,
            ..base.clone()
        },
    );
    let blank: Vec<_> = verifier
        .iter()
        .map(|i| crate::Image {
            rgba: vec![0; i.rgba.len()],
            ..i.clone()
        })
        .collect();
    // Half of each region painted over in a flat colour.
    let painted: Vec<_> = honest
        .iter()
        .map(|i| {
            let mut p = i.clone();
            for px in p
                .rgba
                .chunks_exact_mut(4)
                .take((i.width * i.height / 2) as usize)
            {
                px.copy_from_slice(&[128, 128, 128, 255]);
            }
            p
        })
        .collect();
    let worst = |claimed: &[crate::Image]| {
        claimed
            .iter()
            .zip(&verifier)
            .map(|(c, v)| crate::compare(c, v).expect("same size"))
            .min_by(|a, b| a.ssim.total_cmp(&b.ssim))
            .expect("three regions")
    };
    vec![
        ("honest, crop of the full frame", worst(&honest)),
        ("honest, 1 thread", worst(&one_thread)),
        (
            "another seed (an honest render's noise)",
            worst(&other_seed),
        ),
        ("an eighth of the samples", worst(&eighth)),
        ("another frame's image", worst(&other)),
        ("half of each region painted over", worst(&painted)),
        ("blank", worst(&blank)),
    ]
}

/// The scores honest renders and cheats get (worst of three check regions), on the cheapest
/// example: an exact re-render is identical, and every cheat is far below the threshold.
#[test]
fn honest_check_regions_match_exactly_and_every_cheat_scores_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = blender();
    let caps = caps(&b);
    let scene = scenes::build(&b, Example::CameraFlight, dir.path()).expect("builds");
    let scores = calibration(&b, &caps, dir.path(), &scene, (160, 90), 32, 24);
    for (name, s) in &scores {
        println!("{name:<42} ssim {:.4}  psnr {:.1} dB", s.ssim, s.psnr_db);
    }
    for (name, s) in &scores[..2] {
        assert_eq!(s.ssim, 1.0, "{name}");
        assert_eq!(s.psnr_db, crate::IDENTICAL_PSNR_DB, "{name}");
    }
    for (name, s) in &scores[3..] {
        assert!(s.ssim < 0.95, "{name}: {s:?}");
    }
}

/// docs/BENCHMARKS.md: the scores on every example at a larger size.
/// `cargo test -p depin-render --release --lib -- --ignored calibrate --nocapture`
#[test]
#[ignore = "calibration run"]
fn calibrate_check_thresholds() {
    let b = blender();
    let caps = caps(&b);
    println!("| scene | render | worst SSIM | worst PSNR (dB) |");
    println!("|---|---|---:|---:|");
    for example in Example::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let scene = scenes::build(&b, example, dir.path()).expect("builds");
        let other = if example == Example::CameraFlight {
            24
        } else {
            1
        };
        for (name, s) in calibration(&b, &caps, dir.path(), &scene, (480, 270), 64, other) {
            if other == 1 && name.starts_with("another frame") {
                continue;
            }
            println!(
                "| {} | {name} | {:.4} | {:.1} |",
                example.name(),
                s.ssim,
                s.psnr_db
            );
        }
    }
}
