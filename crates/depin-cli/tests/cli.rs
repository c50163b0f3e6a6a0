//! End-to-end tests of the `depin` binary: key files, a devnet of real node processes on
//! 127.0.0.1 (transactions, errors, rewards, shutdown and resume), and a node killed with
//! SIGKILL that must come back with the same chain.
//!
//! Every test binds only 127.0.0.1, uses a temp dir, and kills what it started in a Drop guard.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_depin");

fn command() -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "DEPIN_RPC",
        "DEPIN_API_LISTEN",
        "DEPIN_DATA_DIR",
        "DEPIN_UPSTREAM",
    ] {
        c.env_remove(var);
    }
    c
}

fn depin(args: &[&str]) -> Output {
    command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run depin")
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "depin {}\nstatus: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs depin, asserts success, returns stdout.
fn ok(args: &[&str]) -> String {
    let out = depin(args);
    assert!(out.status.success(), "{}", describe(args, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs depin, asserts a failure with exit code 1, returns stderr.
fn fails(args: &[&str]) -> String {
    let out = depin(args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(args, &out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `depin --rpc RPC --json ARGS...` parsed.
fn json(rpc: &str, args: &[&str]) -> Value {
    let mut all = vec!["--rpc", rpc, "--json"];
    all.extend_from_slice(args);
    let text = ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn units(v: &Value) -> u128 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an amount: {v}"))
}

fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Below the kernel's ephemeral range (32768 and up here): ports the kernel hands out to
/// outgoing connections and `:0` binds of the tests running beside this one cannot land on a
/// devnet's ports between this check and the nodes binding them.
const FIXED_PORTS: std::ops::Range<u32> = 10_000..32_000;

/// A base port whose API, p2p and consensus ports (base + 10 * i + 0, 1, 2) are free, drawn
/// at random from [`FIXED_PORTS`] so tests running in parallel pick different ones.
fn free_base_port(nodes: u16) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let span = FIXED_PORTS.end - FIXED_PORTS.start - 10 * u32::from(nodes) - 3;
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        hasher.write_u128(now.map(|d| d.as_nanos()).unwrap_or_default());
        let base = (FIXED_PORTS.start + (hasher.finish() % u64::from(span)) as u32) as u16;
        let free = (0..nodes).all(|i| {
            [0, 1, 2].iter().all(|o| {
                let port = base + 10 * i + o;
                TcpListener::bind(("127.0.0.1", port)).is_ok()
                    && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            })
        });
        if free {
            return base;
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

fn sigterm(child: &Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
}

fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    wait_until(timeout, "process exit", || child.try_wait().expect("wait"))
}

/// A process this test started; killed (with the devnet's nodes) if the test ends early.
struct Guard {
    child: Child,
    log: PathBuf,
    devnet_dir: Option<PathBuf>,
}

impl Guard {
    fn spawn(args: &[&str], log: &Path, devnet_dir: Option<&Path>) -> Guard {
        let file = std::fs::File::create(log).expect("log");
        let child = command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn depin");
        Guard {
            child,
            log: log.to_path_buf(),
            devnet_dir: devnet_dir.map(Path::to_path_buf),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("process exited ({status}):\n{}", self.log());
        }
    }
}

/// The last `lines` lines of a log file.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what its processes said, which CI keeps.
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                log_tail(&self.log, 40)
            );
            let node_logs = self
                .devnet_dir
                .as_deref()
                .and_then(|d| std::fs::read_dir(d).ok())
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path().join("node.log"))
                .filter(|log| log.exists());
            for log in node_logs {
                eprintln!("--- {} ---\n{}", log.display(), log_tail(&log, 40));
            }
        }
        // A killed devnet cannot stop its nodes: stop those that are still ours.
        if let Some(state) = self.devnet_dir.as_deref().and_then(read_state) {
            for pid in node_pids(&state) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("node") && pid_alive(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

fn read_state(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("devnet.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn node_pids(state: &Value) -> Vec<i32> {
    state["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["pid"].as_i64())
                .map(|p| p as i32)
                .collect()
        })
        .unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
}

fn height(rpc: &str) -> u64 {
    json(rpc, &["chain", "status"])["height"]
        .as_u64()
        .expect("height")
}

fn balance(rpc: &str, address: &str) -> u128 {
    units(&json(rpc, &["account", "show", address])["balance"])
}

/// Waits for a devnet to write its state file with pids other than `old_pids` and for every
/// node API to answer.
fn wait_devnet(guard: &mut Guard, dir: &Path, old_pids: &[i32]) -> Value {
    let state = wait_until(Duration::from_secs(120), "devnet.json", || {
        guard.assert_running();
        read_state(dir).filter(|s| {
            let pids = node_pids(s);
            !pids.is_empty() && pids.iter().all(|p| !old_pids.contains(p))
        })
    });
    // devnet.json names every process once started; their APIs may take a moment longer.
    for node in state["nodes"].as_array().expect("nodes") {
        let rpc = str_of(node, "api_url");
        wait_until(Duration::from_secs(60), "every node's API", || {
            guard.assert_running();
            depin(&["--rpc", rpc, "chain", "status"])
                .status
                .success()
                .then_some(())
        });
    }
    state
}

/// Starts `depin node run` and waits until its API answers.
fn start_node(run: &[&str], log: &Path, rpc: &str) -> Guard {
    let mut node = Guard::spawn(run, log, None);
    wait_until(Duration::from_secs(30), "the node API", || {
        node.assert_running();
        depin(&["--rpc", rpc, "chain", "status"])
            .status
            .success()
            .then_some(())
    });
    node
}

/// Key files are readable by their owner only.
fn assert_private(path: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{path}");
}

#[test]
fn key_files_round_trip_through_mnemonic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let (a, b, c) = (path("a.key"), path("b.key"), path("c.key"));

    let address = ok(&["key", "new", "--out", &a]).trim().to_string();
    assert!(address.starts_with("depin1"), "{address}");
    assert_private(&a);
    assert_eq!(ok(&["key", "show", &a]).trim(), address);
    let shown: Value = serde_json::from_str(&ok(&["--json", "key", "show", &a])).expect("json");
    assert_eq!(shown["address"], address.as_str());
    assert!(fails(&["key", "new", "--out", &a]).contains("exists"));

    let words = ok(&["key", "export-mnemonic", &a]).trim().to_string();
    assert_eq!(words.split_whitespace().count(), 24, "{words}");
    let imported = ok(&["key", "import-mnemonic", "--out", &b, "--words", &words]);
    assert_eq!(imported.trim(), address);

    // From stdin, as `export-mnemonic | import-mnemonic` does.
    let mut child = command()
        .args(["key", "import-mnemonic", "--out", &c])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{words}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), address);
    for file in [&b, &c] {
        assert_private(file);
        assert_eq!(ok(&["key", "show", file]).trim(), address);
    }
    let bad = fails(&[
        "key",
        "import-mnemonic",
        "--out",
        &path("d.key"),
        "--words",
        "abandon abandon",
    ]);
    assert!(bad.contains("mnemonic"), "{bad}");
    assert!(!tmp.path().join("d.key").exists());
}

#[test]
fn coverage_sim_reports_outcomes_by_reason_and_writes_a_map() {
    let tmp = tempfile::tempdir().expect("tmp");
    let map = tmp.path().join("map.geojson");
    let map_arg = map.to_string_lossy().into_owned();
    let args = [
        "--json",
        "sim",
        "coverage",
        "--hotspots",
        "24",
        "--seed",
        "5",
        "--cheaters",
        "0.25",
        "--rounds",
        "2",
        "--map",
        &map_arg,
    ];
    let out: Value = serde_json::from_str(&ok(&args)).expect("one json object");
    let report = &out["report"];
    assert_eq!(report["hotspots"].as_array().map(Vec::len), Some(24));
    assert!(
        report["outcomes"]["witness_rewarded"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    let map: Value =
        serde_json::from_slice(&std::fs::read(&map).expect("map written")).expect("geojson");
    assert_eq!(map["type"], "FeatureCollection");
    let human = ok(&[
        "sim",
        "coverage",
        "--hotspots",
        "8",
        "--rounds",
        "2",
        "--map",
        &map_arg,
    ]);
    assert!(
        human.contains("beacon_rewarded") && human.contains("honest"),
        "{human}"
    );
    assert!(fails(&["sim", "coverage", "--hotspots", "1"]).contains("at least 2"));
    assert!(fails(&["sim", "coverage", "--cheaters", "2"]).contains("fraction"));
}

/// `depin render local` runs the provider's sandboxed Blender path on an example scene: the
/// pixels are those of the full frame's region, and bad input is a clear, coded error.
#[test]
fn render_local_renders_a_frame_or_region_and_refuses_bad_input() {
    use depin_render::scenes::{Example, build};
    let tmp = tempfile::tempdir().expect("tmp");
    let blender = depin_render::Blender::new(depin_render::BlenderConfig::default());
    let scene = build(&blender, Example::GlassAndLight, tmp.path()).expect("scene builds");
    let scene = scene.to_string_lossy().into_owned();
    let full = tmp.path().join("full.png").to_string_lossy().into_owned();
    let part = tmp.path().join("part.png").to_string_lossy().into_owned();
    let args = [
        "--json",
        "render",
        "local",
        &scene,
        "-f",
        "1",
        "-o",
        &full,
        "--samples",
        "4",
    ];
    let report: Value = serde_json::from_str(&ok(&args)).expect("one json object");
    assert_eq!(report["frame_width"], 160, "{report}");
    assert_eq!(report["seed"], 1, "{report}");
    let full_png = std::fs::read(&full).expect("frame written");
    let full_image = depin_render::Image::decode_png(&full_png, 1 << 20).expect("png");
    let human = ok(&[
        "render",
        "local",
        &scene,
        "-o",
        &part,
        "--samples",
        "4",
        "--region",
        "8,4,40,36",
    ]);
    assert!(human.contains("8,4,40,36 (32×32)"), "{human}");
    let part_image =
        depin_render::Image::decode_png(&std::fs::read(&part).expect("written"), 1 << 20)
            .expect("png");
    let region = "8,4,40,36".parse().expect("region");
    assert_eq!(part_image, full_image.crop(region).expect("inside"));

    let outside = fails(&["render", "local", &scene, "--region", "0,0,161,10"]);
    assert!(outside.contains("outside the 160×120 frame"), "{outside}");
    let garbage = tmp.path().join("garbage.blend");
    std::fs::write(&garbage, b"not a blend").expect("writes");
    let out = depin(&["--json", "render", "local", &garbage.to_string_lossy()]);
    let error: Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert_eq!(error["error"]["code"], "unreadable_scene", "{error}");
    let out = depin(&["render", "local", &scene, "--resolution", "0x10"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 to 65536"));
    let score: Value =
        serde_json::from_str(&ok(&["--json", "render", "benchmark"])).expect("one json object");
    assert!(
        score["megapixel_samples_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{score}"
    );
    assert_eq!(score["device"], "CPU", "{score}");
}

#[test]
fn devnet_runs_transactions_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_string_lossy().into_owned();
    let base = free_base_port(2).to_string();
    let args = [
        "devnet",
        "--dir",
        &dir_s,
        "--providers",
        "1",
        "--render-providers",
        "0",
        "--base-port",
        &base,
    ];
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet-1.log"), Some(&dir));
    let state = wait_devnet(&mut devnet, &dir, &[]);
    let nodes = state["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 2);
    assert_eq!(str_of(&state, "chain_id"), "depin-devnet");
    let rpc0 = str_of(&nodes[0], "api_url").to_string();
    let rpc1 = str_of(&nodes[1], "api_url").to_string();
    assert_eq!(rpc0, format!("http://127.0.0.1:{base}"));
    let validator = str_of(&nodes[0], "address").to_string();
    let validator_key = str_of(&nodes[0], "key_file").to_string();
    let provider = str_of(&nodes[1], "address").to_string();
    let user = str_of(&state, "user_address").to_string();
    let user_key = str_of(&state, "user_key_file").to_string();

    // A transfer moves exactly the amount, and the sender pays amount plus fee.
    let recipient_key = tmp.path().join("r.key").to_string_lossy().into_owned();
    let recipient = ok(&["key", "new", "--out", &recipient_key])
        .trim()
        .to_string();
    let before = balance(&rpc0, &user);
    let sent = json(
        &rpc0,
        &[
            "transfer", "--to", &recipient, "--amount", "12.5", "--key", &user_key,
        ],
    );
    assert_eq!(sent["status"], "committed");
    let tx_height = sent["height"].as_u64().expect("height");
    let tx_hash = str_of(&sent, "hash").to_string();
    assert_eq!(balance(&rpc0, &recipient), 12_500_000);
    let shown = json(&rpc0, &["tx", "show", &tx_hash]);
    assert_eq!(shown["status"], "committed");
    assert_eq!(shown["height"].as_u64(), Some(tx_height));
    let fee = units(&shown["tx"]["fee"]);
    assert!(fee > 0);
    assert_eq!(balance(&rpc0, &user), before - 12_500_000 - fee);
    let block = json(&rpc0, &["block", "show", &tx_height.to_string()]);
    assert!(
        block["txs"]
            .as_array()
            .expect("txs")
            .iter()
            .any(|t| t["hash"] == tx_hash.as_str()),
        "{block}"
    );
    let by_hash = json(&rpc0, &["block", "show", str_of(&block, "hash")]);
    assert_eq!(by_hash["header"]["height"].as_u64(), Some(tx_height));
    assert!(
        json(&rpc0, &["block", "show", "latest"])["header"]["height"].as_u64() >= Some(tx_height)
    );
    let human = ok(&["--rpc", &rpc0, "account", "show", &recipient]);
    assert!(human.contains("12.5 DPN"), "{human}");

    // The provider node forwards to the validator and answers once it has followed the block.
    // It signs with the nonce the provider sees, so let it follow the validator first (a
    // follower trails by up to a block).
    let validator_height = height(&rpc0);
    wait_until(Duration::from_secs(30), "the provider to follow", || {
        (height(&rpc1) >= validator_height).then_some(())
    });
    let forwarded = json(
        &rpc1,
        &[
            "transfer", "--to", &recipient, "--amount", "1", "--key", &user_key,
        ],
    );
    assert_eq!(forwarded["status"], "committed");
    assert_eq!(balance(&rpc0, &recipient), 13_500_000);

    let bonded = json(
        &rpc0,
        &["stake", "bond", "--amount", "100", "--key", &user_key],
    );
    assert_eq!(bonded["status"], "committed");
    let account = json(&rpc0, &["account", "show", &user]);
    assert_eq!(units(&account["stake"]["bonded"]), 100_000_000);

    let list = json(&rpc0, &["provider", "list"]);
    let listed = list["providers"].as_array().expect("providers");
    let entry = listed
        .iter()
        .find(|p| p["address"] == provider.as_str())
        .unwrap_or_else(|| panic!("devnet provider not listed: {list}"));
    let services: Vec<&str> = entry["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    assert_eq!(services, ["storage", "compute", "render", "video"]);
    assert_eq!(units(&entry["bonded"]), 400_000_000);
    let one = json(&rpc0, &["provider", "show", &provider]);
    assert_eq!(one["address"], provider.as_str());

    // 2 tokens at the genesis price of $1 buy $2 / $0.00001 = 200000 DC.
    let bought = json(&rpc0, &["dc", "buy", "--amount", "2", "--key", &user_key]);
    assert_eq!(bought["status"], "committed");
    let account = json(&rpc0, &["account", "show", &user]);
    assert_eq!(account["data_credits"], "200000");
    assert_eq!(units(&json(&rpc0, &["supply"])["burned"]), 2_000_000);

    // A broadcaster locks some of them for transcoding tickets; the deposit only comes back
    // after an unlock period longer than any ticket lives.
    let funded = json(
        &rpc0,
        &[
            "video",
            "fund",
            "--deposit",
            "50000",
            "--reserve",
            "20000",
            "--key",
            &user_key,
        ],
    );
    assert_eq!(funded["deposit_dc"], "50000", "{funded}");
    assert_eq!(funded["reserve_dc"], "20000", "{funded}");
    assert_eq!(funded["barred"], false, "{funded}");
    let account = json(&rpc0, &["account", "show", &user]);
    assert_eq!(account["data_credits"], "130000");
    let shown = ok(&["--rpc", &rpc0, "video", "broadcaster", &user]);
    assert!(shown.contains("50000 DC"), "{shown}");
    assert!(shown.contains("locked (no unlock started)"), "{shown}");
    let early = fails(&["--rpc", &rpc0, "video", "withdraw", "--key", &user_key]);
    assert!(early.contains("not_unlocked"), "{early}");
    let unlocked = json(&rpc0, &["video", "unlock", "--key", &user_key]);
    assert!(unlocked["withdraw_from"].as_u64().is_some(), "{unlocked}");
    let early = fails(&["--rpc", &rpc0, "video", "withdraw", "--key", &user_key]);
    assert!(early.contains("still_locked"), "{early}");
    let bad = fails(&["--rpc", &rpc0, "video", "broadcaster", "nobody"]);
    assert!(bad.contains("not an address"), "{bad}");

    let priced = json(
        &rpc0,
        &[
            "oracle",
            "set-price",
            "--usd",
            "1.25",
            "--key",
            &validator_key,
        ],
    );
    assert_eq!(priced["status"], "committed");
    // The report counts from the epoch boundary: the price of this epoch stays.
    let supply = json(&rpc0, &["supply"]);
    assert_eq!(supply["token_price_usd_micro"].as_u64(), Some(1_000_000));
    assert_eq!(
        supply["next_token_price_usd_micro"].as_u64(),
        Some(1_250_000)
    );
    let denied = fails(&[
        "--rpc",
        &rpc0,
        "oracle",
        "set-price",
        "--usd",
        "2",
        "--key",
        &user_key,
    ]);
    assert!(denied.contains("unauthorized"), "{denied}");

    let too_much = fails(&[
        "--rpc", &rpc0, "transfer", "--to", &recipient, "--amount", "5000000", "--key", &user_key,
    ]);
    assert!(too_much.contains("insufficient_balance"), "{too_much}");
    // Bad amounts are refused before any request (this URL has no node).
    let huge = "9".repeat(60);
    for (amount, code) in [
        ("1e5", "invalid_amount"),
        (huge.as_str(), "amount_overflow"),
    ] {
        let nowhere = "http://127.0.0.1:1";
        let args = [
            "--rpc", nowhere, "transfer", "--to", &recipient, "--amount", amount,
        ];
        let err = fails(&[&args[..], &["--key", &user_key]].concat());
        assert!(err.contains(code), "{err}");
    }
    let unreachable = fails(&["--rpc", "http://127.0.0.1:1", "chain", "status"]);
    assert!(unreachable.contains("http://127.0.0.1:1"), "{unreachable}");

    // Both nodes follow the same chain.
    let h0 = height(&rpc0);
    let h1 = height(&rpc1);
    assert!(h0.abs_diff(h1) <= 2, "validator at {h0}, provider at {h1}");
    let status1 = json(&rpc1, &["chain", "status"]);
    assert_eq!(status1["role"], "provider");

    // Epoch 0 ends at height 30 and pays the validator.
    let epoch_blocks = json(&rpc0, &["chain", "status"])["epoch_blocks"]
        .as_u64()
        .expect("epoch_blocks");
    wait_until(
        Duration::from_secs(epoch_blocks * 2 + 30),
        "the first epoch",
        || (height(&rpc0) >= epoch_blocks).then_some(()),
    );
    let rewards = json(&rpc0, &["rewards", "--epoch", "0"]);
    let paid = rewards["rewards"]
        .as_array()
        .expect("rewards")
        .iter()
        .find(|r| r["account"] == validator.as_str())
        .unwrap_or_else(|| panic!("validator not paid: {rewards}"));
    assert!(units(&paid["amount"]) > 0);
    let mine = json(&rpc0, &["rewards", "--account", &validator]);
    assert_eq!(mine["epochs"][0]["epoch"].as_u64(), Some(0));
    let latest = json(&rpc0, &["rewards"]);
    assert!(latest["epoch"].as_u64().is_some());

    // SIGTERM stops the devnet and every node, with exit code 0.
    let user_balance = balance(&rpc0, &user);
    let stopped_height = height(&rpc0);
    let stopped_block = json(&rpc0, &["block", "show", &stopped_height.to_string()]);
    let old_pids = node_pids(&state);
    sigterm(&devnet.child);
    let status = wait_exit(&mut devnet.child, Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", devnet.log());
    for pid in &old_pids {
        assert!(!pid_alive(*pid), "node pid {pid} still running");
    }

    // The same command resumes the same chain.
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet-2.log"), Some(&dir));
    let resumed = wait_devnet(&mut devnet, &dir, &old_pids);
    assert_eq!(resumed["user_address"], user.as_str());
    assert_eq!(balance(&rpc0, &user), user_balance);
    assert!(height(&rpc0) >= stopped_height);
    let again = json(&rpc0, &["block", "show", &stopped_height.to_string()]);
    assert_eq!(again["hash"], stopped_block["hash"]);
    sigterm(&devnet.child);
    let status = wait_exit(&mut devnet.child, Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", devnet.log());
    for pid in node_pids(&resumed) {
        assert!(!pid_alive(pid), "node pid {pid} still running");
    }
}

#[test]
fn node_survives_sigkill_with_its_committed_chain() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("node");
    let dir_s = dir.to_string_lossy().into_owned();
    let base = free_base_port(1);
    let api = format!("127.0.0.1:{base}");
    let p2p = format!("127.0.0.1:{}", base + 1);
    let rpc = format!("http://{api}");
    let init: Value = serde_json::from_str(&ok(&[
        "--json", "node", "init", "--dir", &dir_s, "--api", &api, "--p2p", &p2p,
    ]))
    .expect("json");
    assert!(str_of(&init, "chain_id").starts_with("depin-local-"));
    let key = dir.join("node.key").to_string_lossy().into_owned();
    let config = dir.join("config.toml").to_string_lossy().into_owned();
    assert!(dir.join("genesis.toml").exists());
    let run = ["node", "run", "--config", config.as_str()];

    let mut node = start_node(&run, &tmp.path().join("node-1.log"), &rpc);
    let recipient = ok(&[
        "key",
        "new",
        "--out",
        &tmp.path().join("r.key").to_string_lossy(),
    ])
    .trim()
    .to_string();

    // Hash -> height of every transaction the node reported committed.
    let mut committed: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..3 {
        let r = json(
            &rpc,
            &[
                "transfer", "--to", &recipient, "--amount", "1", "--key", &key,
            ],
        );
        committed.insert(
            str_of(&r, "hash").to_string(),
            r["height"].as_u64().expect("height"),
        );
    }
    // A burst with explicit nonces, not waited for: whatever is committed before the kill
    // must survive it; what is still pending may be lost.
    let account = json(&rpc, &["account", "show", str_of(&init, "address")]);
    let nonce = account["nonce"].as_u64().expect("nonce");
    let mut pending = Vec::new();
    for i in 0..5 {
        let r = json(
            &rpc,
            &[
                "transfer",
                "--to",
                &recipient,
                "--amount",
                "0.5",
                "--key",
                &key,
                "--no-wait",
                "--nonce",
                &(nonce + i).to_string(),
            ],
        );
        assert_eq!(r["status"], "pending");
        assert!(r["height"].is_null());
        pending.push(str_of(&r, "hash").to_string());
    }
    std::thread::sleep(Duration::from_millis(1500));
    for hash in &pending {
        let out = depin(&["--rpc", &rpc, "--json", "tx", "show", hash]);
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
            && v["status"] == "committed"
        {
            committed.insert(hash.clone(), v["height"].as_u64().expect("height"));
        }
    }
    let head = height(&rpc);
    let head_block = json(&rpc, &["block", "show", &head.to_string()]);
    node.child.kill().expect("SIGKILL");
    node.child.wait().expect("wait");

    let mut node = start_node(&run, &tmp.path().join("node-2.log"), &rpc);
    assert!(height(&rpc) >= head, "head went back from {head}");
    let again = json(&rpc, &["block", "show", &head.to_string()]);
    assert_eq!(again["hash"], head_block["hash"]);
    assert_eq!(
        again["header"]["state_root"],
        head_block["header"]["state_root"]
    );
    for (hash, at) in &committed {
        let v = json(&rpc, &["tx", "show", hash]);
        assert_eq!(v["status"], "committed", "{hash}");
        assert_eq!(v["height"].as_u64(), Some(*at), "{hash}");
    }
    // The restarted node keeps taking transactions with the right nonce once its consensus is
    // back (on a loaded 2-core machine that restart alone can take tens of seconds).
    let restarted = height(&rpc);
    wait_until(
        Duration::from_secs(120),
        "consensus back after the kill",
        || (height(&rpc) > restarted).then_some(()),
    );
    let after = json(
        &rpc,
        &[
            "transfer", "--to", &recipient, "--amount", "1", "--key", &key,
        ],
    );
    assert_eq!(after["status"], "committed");

    sigterm(&node.child);
    let status = wait_exit(&mut node.child, Duration::from_secs(30));
    assert!(status.success(), "{status}:\n{}", node.log());
}

/// One unlabelled value of a node's Prometheus metrics.
fn metric(rpc: &str, name: &str) -> Option<u64> {
    let out = Command::new("curl")
        .args(["-sf", &format!("{rpc}/metrics")])
        .output()
        .ok()?;
    let prefix = format!("{name} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
}

fn head_of(rpc: &str) -> (u64, String) {
    let status = json(rpc, &["chain", "status"]);
    (
        status["height"].as_u64().expect("height"),
        str_of(&status, "state_root").to_string(),
    )
}

fn block_at(rpc: &str, height: u64) -> (String, String) {
    let block = json(rpc, &["block", "show", &height.to_string()]);
    (
        str_of(&block, "hash").to_string(),
        str_of(&block["header"], "state_root").to_string(),
    )
}

/// Four validator processes on loopback: one killed with SIGKILL, finalization goes on with
/// three; restarted, it catches up to the same chain.
#[test]
fn four_validator_processes_survive_a_crash() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_string_lossy().into_owned();
    let base = free_base_port(4).to_string();
    let args = [
        "devnet",
        "--dir",
        &dir_s,
        "--validators",
        "4",
        "--providers",
        "0",
        "--render-providers",
        "0",
        "--base-port",
        &base,
    ];
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet.log"), Some(&dir));
    let state = wait_devnet(&mut devnet, &dir, &[]);
    let nodes = state["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 4);
    let rpcs: Vec<String> = nodes
        .iter()
        .map(|n| str_of(n, "api_url").to_string())
        .collect();
    wait_until(
        Duration::from_secs(60),
        "four validators at height 3",
        || rpcs.iter().all(|r| height(r) >= 3).then_some(()),
    );

    // A transaction posted to one validator reaches the others' mempools by libp2p gossip
    // (once the gossip mesh has formed: keep sending until one arrives).
    let user_key = str_of(&state, "user_key_file").to_string();
    let to = str_of(&nodes[0], "address").to_string();
    let transfer = [
        "--rpc", &rpcs[1], "transfer", "--to", &to, "--amount", "1", "--key", &user_key,
    ];
    wait_until(
        Duration::from_secs(90),
        "a gossiped tx at validator 2",
        || {
            ok(&transfer);
            metric(&rpcs[2], "depin_txs_accepted_total").filter(|n| *n > 0)
        },
    );

    // The service network's counters are exported.
    assert!(metric(&rpcs[2], "depin_net_peers_connected").is_some_and(|n| n > 0));
    assert!(metric(&rpcs[2], "depin_net_txs_received_total").is_some_and(|n| n > 0));

    let victim = nodes[3]["pid"].as_i64().expect("pid") as i32;
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");
    let at_kill = height(&rpcs[0]);
    wait_until(
        Duration::from_secs(60),
        "progress with three of four",
        || (height(&rpcs[0]) >= at_kill + 3).then_some(()),
    );

    let config = str_of(&nodes[3], "config_file").to_string();
    let _restarted = start_node(
        &["node", "run", "--config", &config],
        &tmp.path().join("node-3-restarted.log"),
        &rpcs[3],
    );
    let target = height(&rpcs[0]) + 2;
    wait_until(
        Duration::from_secs(90),
        "the restarted validator to catch up",
        || (height(&rpcs[3]) >= target).then_some(()),
    );
    for h in [1, at_kill, target] {
        let expected = block_at(&rpcs[0], h);
        for rpc in &rpcs[1..] {
            assert_eq!(block_at(rpc, h), expected, "{rpc} differs at height {h}");
        }
    }
    let (h0, root0) = head_of(&rpcs[0]);
    assert!(h0 >= target, "{root0}");
}

#[test]
fn storage_put_and_get_survive_providers_going_down() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_string_lossy().into_owned();
    let base = free_base_port(10).to_string();
    // Nine providers: the devnet profile places 8 pieces, so repairs have somewhere to go.
    let args = [
        "devnet",
        "--dir",
        &dir_s,
        "--providers",
        "9",
        "--render-providers",
        "0",
        "--base-port",
        &base,
        "--block-interval-ms",
        "200",
        // 1 MiB segments: the 3 MB object spans four, crossing segment boundaries.
        "--storage-segment-bytes",
        "1048576",
    ];
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet.log"), Some(&dir));
    let state = wait_devnet(&mut devnet, &dir, &[]);
    let nodes = state["nodes"].as_array().expect("nodes").clone();
    let rpc = str_of(&nodes[0], "api_url").to_string();
    let user_key = str_of(&state, "user_key_file").to_string();
    json(&rpc, &["dc", "buy", "--amount", "10", "--key", &user_key]);

    // Zero, one and three million bytes, encrypted and public: each comes back exactly.
    let mut ids = Vec::new();
    for (name, len, public) in [
        ("empty", 0usize, false),
        ("one", 1, true),
        ("big", 3_000_000, false),
    ] {
        let input = tmp.path().join(name);
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&input, &bytes).expect("write input");
        let input_s = input.to_string_lossy().into_owned();
        let mut put = vec![
            "storage", "put", &input_s, "--epochs", "500", "--key", &user_key,
        ];
        if public {
            put.push("--public");
        }
        let stored = json(&rpc, &put);
        assert_eq!(stored["status"], "active", "{stored}");
        let expected_segments = if len == 3_000_000 { 4 } else { 1 };
        assert_eq!(stored["segments"], expected_segments, "{stored}");
        let id = str_of(&stored, "id").to_string();
        let output = tmp.path().join(format!("{name}.out"));
        let output_s = output.to_string_lossy().into_owned();
        json(
            &rpc,
            &["storage", "get", &id, "-o", &output_s, "--key", &user_key],
        );
        assert_eq!(std::fs::read(&output).expect("output"), bytes, "{name}");
        ids.push((id, bytes));
    }
    let listed = json(&rpc, &["storage", "ls", "--key", &user_key]);
    assert_eq!(listed["deals"].as_array().expect("deals").len(), 3);

    // Two of the six providers holding the big object's pieces die: any 4 of the other pieces
    // still rebuild it.
    let (big_id, big) = ids[2].clone();
    let deal = json(&rpc, &["storage", "status", &big_id]);
    let holders: Vec<String> = deal["segments"][0]["pieces"]
        .as_array()
        .expect("pieces")
        .iter()
        .filter(|p| p["state"] == "stored")
        .filter_map(|p| p["provider"].as_str().map(str::to_string))
        .take(2)
        .collect();
    for node in &nodes {
        if holders.iter().any(|h| h == str_of(node, "address")) {
            let pid = node["pid"].as_i64().expect("pid") as i32;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let output = tmp.path().join("big.again");
    let output_s = output.to_string_lossy().into_owned();
    json(
        &rpc,
        &[
            "storage", "get", &big_id, "-o", &output_s, "--key", &user_key,
        ],
    );
    assert_eq!(std::fs::read(&output).expect("output"), big);

    // Their pieces miss two proofs (slashed, visible to the operator), are lost, and a
    // surviving holder repairs the segment onto other providers.
    let stored_by = |deal: &Value| -> Vec<String> {
        deal["segments"][0]["pieces"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter(|p| p["state"] == "stored")
                    .filter_map(|p| p["provider"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut last_seen = String::new();
    wait_until(
        Duration::from_secs(240),
        "the segment to be repaired",
        || {
            let deal = json(&rpc, &["storage", "status", &big_id]);
            // Each new state of the segment goes to stderr: shown if the wait times out.
            let segment = deal["segments"][0].to_string();
            if segment != last_seen {
                eprintln!("segment 0 now: {segment}");
                last_seen = segment;
            }
            let now = stored_by(&deal);
            (now.len() >= 6
                && deal["segments"][0]["needs_repair"] == false
                && holders.iter().all(|h| !now.contains(h)))
            .then_some(())
        },
    );
    let shown = json(&rpc, &["provider", "show", &holders[0]]);
    assert!(
        shown.to_string().contains(" missed of ") || shown.to_string().contains(" missed and "),
        "{shown}"
    );
    json(
        &rpc,
        &[
            "storage", "get", &big_id, "-o", &output_s, "--key", &user_key,
        ],
    );
    assert_eq!(std::fs::read(&output).expect("output"), big);

    // A piece rots on a provider's disk: downloads still return the right bytes (the bad
    // piece fails verification and another is fetched) and the provider fails its next proof.
    let deal = json(&rpc, &["storage", "status", &big_id]);
    let victim = deal["segments"][0]["pieces"]
        .as_array()
        .expect("pieces")
        .iter()
        .find(|p| p["state"] == "stored")
        .expect("a stored piece")
        .clone();
    let rotten_provider = str_of(&victim, "provider").to_string();
    let root = str_of(&victim, "root").to_string();
    let holder = nodes
        .iter()
        .find(|n| n["address"] == rotten_provider.as_str())
        .expect("the provider's node");
    let piece_path = Path::new(str_of(holder, "data_dir"))
        .join("storage")
        .join("pieces")
        .join(&root[..2])
        .join(&root);
    let len = std::fs::metadata(&piece_path).expect("piece file").len();
    std::fs::write(&piece_path, vec![0u8; len as usize]).expect("rot the piece");
    json(
        &rpc,
        &[
            "storage", "get", &big_id, "-o", &output_s, "--key", &user_key,
        ],
    );
    assert_eq!(std::fs::read(&output).expect("output"), big);
    wait_until(
        Duration::from_secs(90),
        "the rotten piece's proof to fail",
        || {
            let shown = json(&rpc, &["provider", "show", &rotten_provider]);
            shown.to_string().contains(" invalid of ").then_some(())
        },
    );

    // An unknown id and a missing key are clear errors; delete refunds and closes the deal.
    let unknown = fails(&["--rpc", &rpc, "storage", "status", &"00".repeat(32)]);
    assert!(unknown.contains("unknown_deal"), "{unknown}");
    let keyless = fails(&["--rpc", &rpc, "storage", "get", &big_id, "-o", &output_s]);
    assert!(keyless.contains("--key"), "{keyless}");
    json(&rpc, &["storage", "delete", &big_id, "--key", &user_key]);
    let deal = json(&rpc, &["storage", "status", &big_id]);
    assert_eq!(deal["deal"]["status"], "deleted");
}

/// A provider process restarted from its devnet config with a compute fault switched on.
fn restart_with_fault(node: &Value, fault: &str, log: &Path) -> Guard {
    restart_with_config(node, &format!("compute_fault = \"{fault}\""), log)
}

/// A provider process restarted from its devnet config with `line` added to it.
/// A node log line saying the render sweep removed at least one bundle.
fn sweeps_a_bundle() -> impl Fn(&str) -> bool {
    |line: &str| {
        line.contains("render files no one can need removed")
            && line
                .split_whitespace()
                .any(|w| w.strip_prefix("bundles=").is_some_and(|n| n != "0"))
    }
}

fn restart_with_config(node: &Value, line: &str, log: &Path) -> Guard {
    let pid = node["pid"].as_i64().expect("pid") as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    wait_until(Duration::from_secs(30), "the provider to stop", || {
        (!pid_alive(pid)).then_some(())
    });
    start_with_config(node, line, log)
}

/// A stopped provider started from its devnet config with `line` added to it.
fn start_with_config(node: &Value, line: &str, log: &Path) -> Guard {
    let config = str_of(node, "config_file");
    let text = std::fs::read_to_string(config).expect("config");
    // Each `key = value` given replaces the key's line if the file has one.
    let keys: Vec<&str> = line
        .lines()
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    let mut text: String = text
        .lines()
        .filter(|l| {
            let key = l.split('=').next().map(str::trim).unwrap_or_default();
            !keys.contains(&key)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{line}\n"));
    std::fs::write(config, text).expect("config");
    start_node(
        &["node", "run", "--config", config],
        log,
        str_of(node, "api_url"),
    )
}

/// The compute service across processes: jobs pushed to five providers, one of which lies
/// and one of which vanishes after committing; the honest majority's result is accepted,
/// paid and fetched; the liar and the silent one are slashed; bad jobs are refused.
#[test]
fn compute_jobs_are_run_by_replicas_and_the_majority_result_wins() {
    let modules = depin_compute::examples::build(false).unwrap_or_else(|e| panic!("{e}"));
    let digest = modules
        .iter()
        .find(|p| p.file_stem().is_some_and(|s| s == "digest"))
        .expect("digest example")
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_string_lossy().into_owned();
    let base = free_base_port(6).to_string();
    let args = [
        "devnet",
        "--dir",
        &dir_s,
        "--providers",
        "5",
        "--render-providers",
        "0",
        "--base-port",
        &base,
        "--block-interval-ms",
        "300",
    ];
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet.log"), Some(&dir));
    let state = wait_devnet(&mut devnet, &dir, &[]);
    let nodes = state["nodes"].as_array().expect("nodes").clone();
    let rpc = str_of(&nodes[0], "api_url").to_string();
    let user_key = str_of(&state, "user_key_file").to_string();
    json(&rpc, &["dc", "buy", "--amount", "10", "--key", &user_key]);
    let with_rpc = |args: &[&str]| -> Vec<String> {
        ["--rpc", rpc.as_str()]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let failing = |args: &[&str]| {
        let all = with_rpc(args);
        fails(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Bad jobs leave nothing behind: more replicas than providers, an escrow bigger than the
    // Data Credits held, a malformed id, an unknown job.
    let dc_before =
        json(&rpc, &["account", "show", str_of(&state, "user_address")])["data_credits"]
            .to_string();
    let err = failing(&[
        "compute",
        "submit",
        &digest,
        "--replicas",
        "6",
        "--key",
        &user_key,
    ]);
    assert!(err.contains("not_enough_providers"), "{err}");
    let err = failing(&[
        "compute",
        "submit",
        &digest,
        "--max-fuel",
        "100000000000",
        "--max-price",
        "1000",
        "--key",
        &user_key,
    ]);
    assert!(err.contains("insufficient_data_credits"), "{err}");
    let err = failing(&["compute", "status", "00"]);
    assert!(err.contains("bad_job_id"), "{err}");
    let err = failing(&["compute", "status", &"0".repeat(64)]);
    assert!(err.contains("unknown_job"), "{err}");
    let dc_after = json(&rpc, &["account", "show", str_of(&state, "user_address")])["data_credits"]
        .to_string();
    assert_eq!(dc_before, dc_after);

    // Provider 1 will lie about its result; provider 2 will vanish once it has committed.
    let liar = str_of(&nodes[1], "address").to_string();
    let vanisher = str_of(&nodes[2], "address").to_string();
    let _liar_node = restart_with_fault(&nodes[1], "wrong_result", &tmp.path().join("liar.log"));
    let _gone_node = restart_with_fault(
        &nodes[2],
        "exit_after_commit",
        &tmp.path().join("vanisher.log"),
    );

    // An input folder; the digest job prints the SHA-256 of every file in it.
    let input = tmp.path().join("input");
    std::fs::create_dir_all(input.join("sub")).expect("mkdir");
    std::fs::write(input.join("a.txt"), "the quick brown fox\n").expect("write");
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(input.join("sub/big.bin"), &big).expect("write");
    let input_s = input.to_string_lossy().into_owned();
    let submitted = json(
        &rpc,
        &[
            "compute",
            "submit",
            &digest,
            "--input",
            &input_s,
            "--replicas",
            "5",
            "--wait",
            "--key",
            &user_key,
        ],
    );
    let id = str_of(&submitted, "id").to_string();
    let job = &submitted["job"];
    assert_eq!(job["status"], "Done", "{submitted}");
    let agreed: Vec<&str> = job["agreed"]
        .as_array()
        .expect("agreed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(agreed.len(), 3, "{submitted}");
    assert!(!agreed.contains(&liar.as_str()) && !agreed.contains(&vanisher.as_str()));
    assert_eq!(job["accepted"]["exit"]["Exited"], 0, "{submitted}");
    assert!(
        job["paid_dc"].as_u64().is_some_and(|dc| dc > 0),
        "{submitted}"
    );
    assert_eq!(job["escrow_dc"], 0, "{submitted}");

    // The result comes back from a replica that agreed, checked against the chain's outcome.
    let out = tmp.path().join("result");
    let out_s = out.to_string_lossy().into_owned();
    let fetched = json(&rpc, &["compute", "result", &id, "-o", &out_s]);
    assert_eq!(fetched["exit_code"], 0, "{fetched}");
    let stdout = std::fs::read_to_string(out.join("stdout")).expect("stdout");
    let expected = Command::new("sha256sum")
        .arg("sub/big.bin")
        .current_dir(&input)
        .output()
        .expect("sha256sum");
    let expected = String::from_utf8_lossy(&expected.stdout).trim().to_string();
    assert!(stdout.contains(&expected), "{stdout} lacks {expected}");
    assert_eq!(
        std::fs::read_to_string(out.join("exit")).expect("exit"),
        "exited 0\n"
    );
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).expect("result.json"))
            .expect("json");
    assert_eq!(recorded["agreed"], job["agreed"]);
    assert_eq!(recorded["fuel_used"], job["accepted"]["fuel_used"]);

    // The liar was outvoted and the vanished replica counted silent: both slashed.
    let shown = json(&rpc, &["provider", "show", &liar]).to_string();
    assert!(shown.contains("compute result outvoted"), "{shown}");
    let shown = json(&rpc, &["provider", "show", &vanisher]).to_string();
    assert!(shown.contains("no compute result revealed"), "{shown}");

    // Arguments and stdin reach the job, and output files come back: wordcount given a
    // folder that does not exist counts its stdin, a file of the input.
    let wordcount = modules
        .iter()
        .find(|p| p.file_stem().is_some_and(|s| s == "wordcount"))
        .expect("wordcount example")
        .to_string_lossy()
        .into_owned();
    let counted = json(
        &rpc,
        &[
            "compute",
            "submit",
            &wordcount,
            "--input",
            &input_s,
            "--stdin",
            "a.txt",
            "--wait",
            "--key",
            &user_key,
            "--args",
            "/no/such/folder",
        ],
    );
    assert_eq!(counted["job"]["status"], "Done", "{counted}");
    let counted_id = str_of(&counted, "id").to_string();
    let out = tmp.path().join("counted");
    let out_s = out.to_string_lossy().into_owned();
    let fetched = json(&rpc, &["compute", "result", &counted_id, "-o", &out_s]);
    assert_eq!(
        fetched["files"],
        serde_json::json!(["counts.txt"]),
        "{fetched}"
    );
    let stdout = std::fs::read_to_string(out.join("stdout")).expect("stdout");
    assert!(stdout.contains("1 lines 4 words 20 bytes"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(out.join("files/counts.txt")).expect("counts"),
        stdout
    );

    // Bad modules end as results the replicas agree on: not wasm, and an endless loop that
    // stops at its fuel limit.
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not webassembly").expect("write");
    let endless = tmp.path().join("endless.wat");
    std::fs::write(
        &endless,
        r#"(module (func (export "_start") (loop (br 0))))"#,
    )
    .expect("write");
    for (module, exit, fuel) in [
        (&junk, "InvalidModule", None),
        (&endless, "OutOfFuel", Some(5_000_000u64)),
    ] {
        let module_s = module.to_string_lossy().into_owned();
        let settled = json(
            &rpc,
            &[
                "compute",
                "submit",
                &module_s,
                "--max-fuel",
                "5000000",
                "--wait",
                "--key",
                &user_key,
            ],
        );
        assert_eq!(settled["job"]["status"], "Done", "{settled}");
        assert_eq!(settled["job"]["accepted"]["exit"], exit, "{settled}");
        if let Some(fuel) = fuel {
            assert_eq!(settled["job"]["accepted"]["fuel_used"], fuel, "{settled}");
        }
    }

    // A run that outlasts its deadline ends with that status: the replicas agree on it, are
    // paid the genesis share of the escrow for their time, and the rest goes back.
    let endless_s = endless.to_string_lossy().into_owned();
    let dc_before =
        json(&rpc, &["account", "show", str_of(&state, "user_address")])["data_credits"].clone();
    let settled = json(
        &rpc,
        &[
            "compute",
            "submit",
            &endless_s,
            "--max-fuel",
            "100000000000",
            "--deadline-blocks",
            "16",
            "--wait",
            "--key",
            &user_key,
        ],
    );
    assert_eq!(settled["job"]["status"], "Done", "{settled}");
    assert_eq!(
        settled["job"]["accepted"]["exit"], "DeadlineExceeded",
        "{settled}"
    );
    let paid = u128::from(settled["job"]["paid_dc"].as_u64().expect("paid_dc"));
    assert!(paid > 0, "{settled}");
    let dc_after =
        units(&json(&rpc, &["account", "show", str_of(&state, "user_address")])["data_credits"]);
    assert_eq!(
        units(&dc_before) - paid,
        dc_after,
        "the rest of the escrow went back"
    );

    // A job whose bytes nobody sends (a consumer getting replicas slashed, before): they
    // commit `Unfetchable` in time, are paid the attempt fee, and none is slashed for it.
    let unsent = tmp.path().join("unsent.wat");
    std::fs::write(
        &unsent,
        r#"(module (func (export "_start") (drop (i32.const 424242))))"#,
    )
    .expect("write");
    let unsent_s = unsent.to_string_lossy().into_owned();
    let settled = json(
        &rpc,
        &[
            "compute",
            "submit",
            &unsent_s,
            "--no-send",
            "--deadline-blocks",
            "8",
            "--wait",
            "--key",
            &user_key,
        ],
    );
    assert_eq!(settled["job"]["status"], "Done", "{settled}");
    assert_eq!(
        settled["job"]["accepted"]["exit"], "Unfetchable",
        "{settled}"
    );
    assert!(
        settled["job"]["paid_dc"].as_u64().is_some_and(|dc| dc > 0),
        "{settled}"
    );
    let unsent_id = str_of(&settled, "id").to_string();
    for agreed in settled["job"]["agreed"].as_array().expect("agreed") {
        let shown = json(
            &rpc,
            &["provider", "show", agreed.as_str().expect("address")],
        );
        assert!(!shown.to_string().contains(&unsent_id), "{shown}");
    }
}

/// The render service across processes: eight render providers (five of them cheat: a blank
/// frame, an eighth of the samples, a painted region, another frame's image, and one killed
/// as it starts rendering) render the 16 frames of the camera-flight example; every cheat is
/// caught with its reason on its record, the job completes on the honest renders, and the
/// approved frames come back checked against their commitments and encoded by ffmpeg. Absurd
/// jobs are refused with the Data Credits untouched.
#[test]
fn render_jobs_are_checked_paid_and_every_cheat_is_caught() {
    use depin_render::scenes::{Example, build};
    let tmp = tempfile::tempdir().expect("tmp");
    let blender = depin_render::Blender::new(depin_render::BlenderConfig::default());
    let scene_dir = tmp.path().join("scene");
    std::fs::create_dir_all(&scene_dir).expect("mkdir");
    let scene = build(&blender, Example::CameraFlight, &scene_dir).expect("scene builds");
    let scene = scene.to_string_lossy().into_owned();
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_string_lossy().into_owned();
    let base = free_base_port(9).to_string();
    let args = [
        "devnet",
        "--dir",
        &dir_s,
        "--providers",
        "8",
        "--render-providers",
        "8",
        "--base-port",
        &base,
        "--block-interval-ms",
        "300",
    ];
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet.log"), Some(&dir));
    let state = wait_devnet(&mut devnet, &dir, &[]);
    let nodes = state["nodes"].as_array().expect("nodes").clone();
    let rpc = str_of(&nodes[0], "api_url").to_string();
    let user_key = str_of(&state, "user_key_file").to_string();
    let user = str_of(&state, "user_address").to_string();
    json(&rpc, &["dc", "buy", "--amount", "10", "--key", &user_key]);

    // Five providers cheat, each its own way.
    let faults = [
        "blank",
        "few_samples",
        "paint",
        "other_frame",
        "exit_mid_render",
    ];
    let mut cheats = Vec::new();
    let mut guards = Vec::new();
    for (node, fault) in nodes[1..].iter().zip(faults) {
        let log = tmp.path().join(format!("{fault}.log"));
        // A short scene keep, so the sweep of a done job's scene and bundle shows below.
        guards.push(restart_with_config(
            node,
            &format!("render_fault = \"{fault}\"\nrender_scene_keep_s = 5"),
            &log,
        ));
        cheats.push((str_of(node, "address").to_string(), fault));
    }
    // Every provider measured the benchmark scene and advertised its build and score.
    wait_until(Duration::from_secs(180), "eight render providers", || {
        let listed = json(&rpc, &["render", "providers"]);
        (listed.as_array().map_or(0, Vec::len) == 8).then_some(())
    });
    let listed = json(&rpc, &["render", "providers"]);
    for p in listed.as_array().expect("providers") {
        assert!(
            p["score_pixel_samples_per_s"]
                .as_u64()
                .is_some_and(|s| s > 0),
            "{p}"
        );
        assert!(str_of(p, "build").starts_with("Blender "), "{p}");
    }

    // Absurd jobs are refused by the genesis limits before anything is paid.
    let dc_before = json(&rpc, &["account", "show", &user])["data_credits"].clone();
    for (flag, value, code) in [
        ("--resolution", "16384x16384", "resolution_too_large"),
        ("--samples", "0", "bad_samples"),
        ("--frames", "1-20000", "too_many_frames"),
    ] {
        let err = fails(&[
            "--rpc", &rpc, "render", "submit", &scene, flag, value, "--key", &user_key,
        ]);
        assert!(err.contains(code), "{flag} {value}: {err}");
    }
    let err = fails(&["--rpc", &rpc, "render", "status", "00"]);
    assert!(err.contains("bad_job_id"), "{err}");
    let err = fails(&["--rpc", &rpc, "render", "status", &"0".repeat(64)]);
    assert!(err.contains("unknown_job"), "{err}");
    assert_eq!(
        json(&rpc, &["account", "show", &user])["data_credits"],
        dc_before
    );

    // Sixteen frames fill the eight providers' sixteen slots: every cheat gets work.
    let submitted = json(
        &rpc,
        &[
            "render",
            "submit",
            &scene,
            "--frames",
            "1-16",
            "--resolution",
            "64x36",
            "--samples",
            "16",
            "--wait",
            "--key",
            &user_key,
        ],
    );
    let id = str_of(&submitted, "id").to_string();
    let pieces = submitted["view"]["pieces"].as_array().expect("pieces");
    assert_eq!(pieces.len(), 16, "{submitted}");
    // Checked: offered, or already approved at the genesis deadline.
    for p in pieces {
        assert!(
            matches!(p["status"].as_str(), Some("Offered" | "Approved")),
            "{p}"
        );
    }

    // Every cheat is on record with its reason.
    for (address, fault) in &cheats {
        let shown = json(&rpc, &["provider", "show", address]).to_string();
        let reason = if *fault == "exit_mid_render" {
            "render not committed in time"
        } else {
            "render failed its check"
        };
        assert!(shown.contains(reason), "{fault}: {shown}");
        // The measured scores of each cheat, for docs/BENCHMARKS.md (--no-capture shows them).
        let record = json(&rpc, &["provider", "show", address]);
        for failure in record["failures"].as_array().into_iter().flatten() {
            eprintln!("cheat {fault}: {}", failure["reason"]);
        }
    }
    // The honest renders were checked by someone else and match exactly.
    for p in pieces {
        let renderer = str_of(p, "renderer");
        assert!(!cheats.iter().any(|(a, _)| a == renderer), "{p}");
        for slot in p["verdicts"].as_array().expect("verdicts") {
            if !slot["verdict"].is_null() {
                assert_eq!(slot["verdict"]["ssim_ppm"], 1_000_000, "{p}");
            }
        }
    }
    let status = ok(&["--rpc", &rpc, "render", "status", &id]);
    assert!(
        status.contains("0 queued, 0 rendering, 0 checking"),
        "{status}"
    );
    assert!(status.contains("0 failed"), "{status}");

    // The consumer approves what is still offered; then all 16 frames come back, checked.
    let out = tmp.path().join("frames");
    let out_s = out.to_string_lossy().into_owned();
    let offered = pieces.iter().filter(|p| p["status"] == "Offered").count();
    let approving = depin(&[
        "--rpc", &rpc, "--json", "render", "approve", &id, "--key", &user_key,
    ]);
    // The last offered pieces may be approved by the deadline meanwhile.
    assert!(
        approving.status.success()
            || offered == 0
            || String::from_utf8_lossy(&approving.stderr).contains("not"),
        "{}",
        String::from_utf8_lossy(&approving.stderr)
    );
    wait_until(Duration::from_secs(60), "every piece approved", || {
        let view = json(&rpc, &["render", "status", &id]);
        (view["job"]["approved"] == 16).then_some(())
    });
    let video = tmp.path().join("flight.mp4");
    let video_s = video.to_string_lossy().into_owned();
    let fetched = json(
        &rpc,
        &[
            "render", "fetch", &id, "-o", &out_s, "--video", &video_s, "--key", &user_key,
        ],
    );
    assert_eq!(
        fetched["frames"].as_array().map(Vec::len),
        Some(16),
        "{fetched}"
    );
    let first = std::fs::read(out.join("frame_0001.png")).expect("frame 1");
    let image = depin_render::Image::decode_png(&first, 1 << 20).expect("png");
    assert_eq!((image.width, image.height), (64, 36));
    assert!(std::fs::metadata(&video).is_ok_and(|m| m.len() > 0));
    let done = json(&rpc, &["render", "status", &id]);
    assert_eq!(done["job"]["status"], "Done", "{done}");
    assert_eq!(done["job"]["approved"], 16, "{done}");
    assert_eq!(done["job"]["escrow_dc"], 0, "{done}");

    // The renders no one may fetch any more (every cheat's, all rejected) are swept from the
    // providers' disks; the approved ones stay for the consumer.
    let made = |node: &Value| {
        let dir = Path::new(str_of(node, "data_dir"))
            .join("render")
            .join("made");
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    };
    for (node, fault) in nodes[1..].iter().zip(faults) {
        wait_until(Duration::from_secs(90), "a cheat's renders swept", || {
            (made(node) == 0).then_some(())
        });
        assert_eq!(made(node), 0, "{fault}");
    }
    let kept: usize = nodes.iter().map(made).sum();
    assert!(kept >= 16, "{kept} renders kept");
    // The job done, each cheat's unpacked scene goes after its keep, then the bundle with the
    // note of its job (the killed one keeps what it had).
    let scenes = |node: &Value| {
        let dir = Path::new(str_of(node, "data_dir"))
            .join("render")
            .join("scenes");
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    };
    let bundle_swept = sweeps_a_bundle();
    for (node, fault) in nodes[1..].iter().zip(faults) {
        if fault == "exit_mid_render" {
            continue;
        }
        let log = tmp.path().join(format!("{fault}.log"));
        wait_until(Duration::from_secs(90), "a done job's scene swept", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (scenes(node) == 0 && text.lines().any(&bundle_swept)).then_some(())
        });
    }
    drop(guards);
}

/// A short clip with audio, made by ffmpeg: `seconds` of a moving test picture, one
/// keyframe every 2 s so it cuts into 2 s segments.
fn test_clip(path: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=640x360:rate=30")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
        ])
        .arg(seconds.to_string())
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-c:a", "aac",
        ])
        .arg(path)
        .status()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(status.success());
}

/// The video service across processes: a clip streamed through two orchestrators is cut,
/// paid with tickets, transcoded, checked and served as HLS that ffprobe reads; an
/// orchestrator that returns garbage, the wrong resolution, fewer frames or another
/// segment's output is caught (the reason on the stream's record) and replaced, and one
/// killed mid-stream is replaced without losing a segment; bad sources are refused.
#[test]
fn video_streams_are_transcoded_checked_and_every_cheat_is_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let clip = tmp.path().join("clip.mp4");
    test_clip(&clip, 6);
    let clip = clip.to_string_lossy().into_owned();
    let dir = tmp.path().join("devnet");
    let dir_s = dir.to_string_lossy().into_owned();
    let streams = tmp.path().join("streams").to_string_lossy().into_owned();
    let base = free_base_port(3).to_string();
    let args = [
        "devnet",
        "--dir",
        &dir_s,
        "--providers",
        "3",
        "--render-providers",
        "0",
        "--video-providers",
        "3",
        "--base-port",
        &base,
        "--block-interval-ms",
        "300",
    ];
    let mut devnet = Guard::spawn(&args, &tmp.path().join("devnet.log"), Some(&dir));
    let state = wait_devnet(&mut devnet, &dir, &[]);
    let nodes = state["nodes"].as_array().expect("nodes").clone();
    let rpc = str_of(&nodes[0], "api_url").to_string();
    let user_key = str_of(&state, "user_key_file").to_string();
    let (cheat, honest) = (
        str_of(&nodes[1], "address").to_string(),
        str_of(&nodes[2], "address").to_string(),
    );
    wait_until(Duration::from_secs(60), "three orchestrators", || {
        let listed = json(&rpc, &["video", "orchestrators"]);
        (listed.as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    let publish_as = |key: &str, source: &str, pinned: &[&str], extra: &[&str]| -> Output {
        let mut all = vec![
            "--rpc",
            &rpc,
            "--json",
            "video",
            "publish",
            source,
            "--ladder",
            "360p,240p",
            "--key",
            key,
            "--dir",
            &streams,
            "--http-listen",
            "127.0.0.1:0",
            "--exit-when-done",
        ];
        for p in pinned {
            all.extend(["--orchestrator", p]);
        }
        all.extend_from_slice(extra);
        depin(&all)
    };
    let publish = |source: &str, pinned: &[&str]| -> Output {
        publish_as(
            &user_key,
            source,
            pinned,
            &["--second-opinion-percent", "100"],
        )
    };

    // No deposit yet: nothing is sent.
    let out = publish(&clip, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no ticket deposit"),
        "{}",
        describe(&["video", "publish"], &out)
    );
    json(&rpc, &["dc", "buy", "--amount", "10", "--key", &user_key]);
    json(
        &rpc,
        &[
            "video",
            "fund",
            "--deposit",
            "50000",
            "--reserve",
            "5000",
            "--key",
            &user_key,
        ],
    );

    // A file that is not video is refused with ffmpeg's reason.
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, vec![7u8; 50_000]).expect("junk");
    let out = publish(&junk.to_string_lossy(), &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no video"),
        "{}",
        describe(&["video", "publish", "junk"], &out)
    );

    // A segment over the 4 MiB limit is never sent: the stream records why and goes on.
    let big = tmp.path().join("big.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .args([
            "testsrc2=size=1920x1080:rate=30",
            "-t",
            "2",
            "-c:v",
            "libx264",
        ])
        .args(["-preset", "ultrafast", "-qp", "0", "-g", "60"])
        .arg(&big)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let out = publish(&big.to_string_lossy(), &[]);
    assert!(
        out.status.success(),
        "{}",
        describe(&["video", "publish", "big"], &out)
    );
    let record: Value = serde_json::from_slice(&out.stdout).expect("json");
    let segments = record["segments"].as_array().expect("segments");
    assert!(
        !segments.is_empty()
            && segments
                .iter()
                .all(|s| str_of(s, "check").starts_with("segment_too_large")),
        "{record}"
    );

    // An honest stream, served as HLS while the broadcaster runs.
    let log = tmp.path().join("publish.log");
    let mut live = Guard::spawn(
        &[
            "--rpc",
            &rpc,
            "video",
            "publish",
            &clip,
            "--ladder",
            "360p,240p",
            "--key",
            &user_key,
            "--dir",
            &streams,
            "--http-listen",
            "127.0.0.1:0",
            "--second-opinion-percent",
            "100",
        ],
        &log,
        None,
    );
    let url = wait_until(Duration::from_secs(60), "the stream to end", || {
        live.assert_running();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("playback "))?
            .trim()
            .to_string();
        text.contains("until Ctrl-C").then_some(url)
    });
    let id = url
        .split("/streams/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("stream id")
        .to_string();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0", &url])
        .output()
        .expect("ffprobe");
    let probed = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success(), "{probed}");
    for size in ["h264,640,360", "h264,426,240", "aac"] {
        assert!(probed.contains(size), "{size} in {probed}");
    }
    sigterm(&live.child);
    wait_exit(&mut live.child, Duration::from_secs(10));
    let record = json(&rpc, &["video", "status", &id, "--dir", &streams]);
    let segments = record["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 3, "{record}");
    for s in segments {
        assert_eq!(str_of(s, "check"), "ok", "{s}");
        assert!(s["paid_nano_dc"].as_u64().is_some_and(|p| p > 0), "{s}");
        // Both run this build with the stream's settings: the standby's bytes are the same.
        let opinion = &s["second_opinion"];
        assert_eq!(str_of(opinion, "verdict"), "agree", "{s}");
        assert!(
            str_of(opinion, "detail").contains("360p: same bytes"),
            "{s}"
        );
    }
    let listed = json(&rpc, &["video", "streams", "--dir", &streams]);
    assert!(
        listed
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["id"] == id.as_str()))
    );

    // A live push: ffmpeg sends the clip over RTMP at its own pace, as OBS would.
    let rtmp = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let rtmp_log = tmp.path().join("rtmp.log");
    let mut receiver = Guard::spawn(
        &[
            "--rpc",
            &rpc,
            "--json",
            "video",
            "publish",
            "--rtmp-listen",
            &rtmp,
            "--ladder",
            "360p,240p",
            "--key",
            &user_key,
            "--dir",
            &streams,
            "--http-listen",
            "127.0.0.1:0",
            "--exit-when-done",
        ],
        &rtmp_log,
        None,
    );
    let push = wait_until(Duration::from_secs(30), "the RTMP push to connect", || {
        receiver.assert_running();
        std::thread::sleep(Duration::from_millis(500));
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i", &clip])
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/stream"))
            .status()
            .expect("ffmpeg");
        status.success().then_some(status)
    });
    assert!(push.success());
    assert!(wait_exit(&mut receiver.child, Duration::from_secs(60)).success());
    let pushed = receiver.log();
    assert!(
        pushed.contains("\"check\": \"ok\"") && !pushed.contains("\"state\": \"failed\""),
        "{pushed}"
    );

    // Each cheat is caught on the first segment it cheats on, dropped with the reason, and
    // the segment transcoded again by the honest one.
    let mut cheating: Option<Guard> = None;
    for (fault, reason) in [
        ("garbage", "does not decode"),
        ("wrong_resolution", "the rung is 640×360"),
        ("fewer_frames", "frames"),
        ("other_segment", "output, not this segment's"),
        (
            "low_bitrate",
            "second opinion: its 360p rendition scores SSIM",
        ),
        ("exit_mid_stream", "no answer"),
    ] {
        let line = format!("video_fault = \"{fault}\"");
        let log = tmp.path().join(format!("{fault}.log"));
        cheating = Some(match cheating.take() {
            None => restart_with_config(&nodes[1], &line, &log),
            Some(mut previous) => {
                sigterm(&previous.child);
                wait_exit(&mut previous.child, Duration::from_secs(30));
                start_with_config(&nodes[1], &line, &log)
            }
        });
        let out = publish(&clip, &[&cheat, &honest]);
        assert!(
            out.status.success(),
            "{fault}: {}",
            describe(&["video", "publish"], &out)
        );
        let record: Value = serde_json::from_slice(&out.stdout).expect("json");
        let segments = record["segments"].as_array().expect("segments");
        assert_eq!(segments.len(), 3, "{fault}: {record}");
        assert!(
            segments.iter().all(|s| str_of(s, "check") == "ok"),
            "{fault}: every segment served: {record}"
        );
        let dropped = record["dropped"].as_array().expect("dropped");
        assert!(
            dropped.iter().any(
                |d| d["orchestrator"] == cheat.as_str() && str_of(d, "reason").contains(reason)
            ),
            "{fault}: dropped for {reason:?}: {record}"
        );
        assert_eq!(
            segments.last().map(|s| str_of(s, "orchestrator")),
            Some(honest.as_str()),
            "{fault}"
        );
        if fault != "low_bitrate" {
            continue;
        }
        // Only the second opinion saw it: the broadcaster disputes the segment on chain, the
        // two other video providers are drawn, re-transcode, and both find it wrong.
        let seq = segments
            .iter()
            .find(|s| s["second_opinion"]["verdict"] == "primary_dropped")
            .and_then(|s| s["seq"].as_u64())
            .expect("a segment the second opinion decided")
            .to_string();
        let decided = json(
            &rpc,
            &[
                "video",
                "dispute",
                str_of(&record, "id"),
                &seq,
                "--orchestrator",
                &cheat,
                "--dir",
                &streams,
                "--evidence-listen",
                "127.0.0.1:0",
                "--wait-s",
                "90",
                "--key",
                &user_key,
            ],
        );
        assert_eq!(str_of(&decided, "outcome"), "upheld", "{decided}");
        assert_eq!(str_of(&decided, "rung"), "360p", "{decided}");
        let votes = decided["verifiers"].as_array().expect("verifiers");
        assert!(
            votes.len() >= 2 && votes.iter().filter(|v| v["guilty"] == true).count() >= 2,
            "{decided}"
        );
        assert!(votes.iter().all(|v| v["verifier"] != cheat.as_str()));
    }

    // A broadcaster that forges or replays its tickets gets nothing transcoded: the honest
    // orchestrator refuses each before any work, with the code on the stream's record.
    for (fault, code) in [
        ("forged", "bad_ticket_signature"),
        ("replayed", "replayed_ticket"),
    ] {
        let out = publish_as(&user_key, &clip, &[&honest], &["--ticket-fault", fault]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && stdout.contains(&format!("refused ({code})")),
            "{fault}: {}",
            describe(&["video", "publish", "--ticket-fault", fault], &out)
        );
    }

    // A broadcaster whose deposit and reserve cannot cover one winning ticket is refused by
    // every orchestrator before any work.
    let poor_key = tmp.path().join("poor.key").to_string_lossy().into_owned();
    let poor = ok(&["key", "new", "--out", &poor_key]).trim().to_string();
    json(
        &rpc,
        &[
            "transfer", "--to", &poor, "--amount", "5", "--key", &user_key,
        ],
    );
    json(&rpc, &["dc", "buy", "--amount", "1", "--key", &poor_key]);
    json(
        &rpc,
        &[
            "video",
            "fund",
            "--deposit",
            "500",
            "--reserve",
            "500",
            "--key",
            &poor_key,
        ],
    );
    let out = publish_as(&poor_key, &clip, &[], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.contains("refused (broadcaster_underfunded)"),
        "{}",
        describe(&["video", "publish", "underfunded"], &out)
    );
}
