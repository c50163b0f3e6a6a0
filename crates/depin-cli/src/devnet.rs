//! `depin devnet`: a local network of real node processes in one folder. The first run creates
//! keys, a genesis and a folder per node, starts the nodes and registers the providers; later
//! runs on the same folder resume the same chain. Ctrl-C or SIGTERM stops every node.

use crate::client::Client;
use crate::keycmd::{read_key, write_key};
use crate::nodecmd::{DEV_BALANCE_TOKENS, dev_genesis, node_config, write_node_dir};
use crate::output::{Printer, rows};
use crate::txcmd::{Network, send};
use anyhow::{Context, bail};
use clap::Args;
use depin_node::api_types::StatusResponse;
use depin_node::config::Role;
use depin_protocol::Action;
use depin_protocol::storage::StorageParams;
use depin_protocol::tx::ServiceOffer;
use depin_types::{Address, Keypair, ServiceKind};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHAIN_ID: &str = "depin-devnet";
/// Most validators a local devnet starts (each is a process with its own consensus port).
const MAX_VALIDATORS: u32 = 16;
const STATE_FILE: &str = "devnet.json";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);
/// Lines of a node's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 20;
/// Disk each devnet provider offers to the storage service.
const DEVNET_STORAGE_BYTES: u64 = 8 << 30;
/// Compute jobs each devnet provider runs at once.
const DEVNET_COMPUTE_SLOTS: u64 = 4;
/// Pieces each devnet render provider renders at once.
const DEVNET_RENDER_SLOTS: u64 = 2;
/// What each devnet provider offers, each at 1 DC per unit of the service (for compute, per
/// million fuel; for render, per 10⁹ pixel-samples). Only providers with a Blender
/// (`--render-providers`) advertise render and get render work.
/// Video is priced per gigapixel of output instead, and only providers with an ffmpeg
/// (`--video-providers`) advertise and get segments.
const PROVIDER_OFFERS: [(ServiceKind, u64); 4] = [
    (depin_protocol::storage::SERVICE, DEVNET_STORAGE_BYTES),
    (depin_protocol::compute::SERVICE, DEVNET_COMPUTE_SLOTS),
    (depin_protocol::render::SERVICE, DEVNET_RENDER_SLOTS),
    (depin_protocol::video::SERVICE, DEVNET_VIDEO_SESSIONS),
];
/// Segments each devnet orchestrator transcodes at once.
const DEVNET_VIDEO_SESSIONS: u64 = 2;
/// What devnet orchestrators charge, in DC per gigapixel of output (Livepeer's usual price
/// is of this order).
const DEVNET_VIDEO_PRICE_DC_PER_GIGAPIXEL: u64 = 300;
/// Environment overrides of NodeConfig::load that would make every devnet node share one
/// port, folder or upstream; the children must read their own config files.
const CHILD_ENV_REMOVED: [&str; 3] = ["DEPIN_API_LISTEN", "DEPIN_DATA_DIR", "DEPIN_UPSTREAM"];

#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Folder of the network; an existing one (with devnet.json) is resumed.
    #[arg(long, default_value = "./devnet-data")]
    pub dir: PathBuf,
    /// Validators to start (1 to 16).
    #[arg(long, default_value_t = 1)]
    pub validators: u32,
    /// Provider nodes to start next to the validators (storage needs 6 for the devnet
    /// erasure profile's success threshold).
    #[arg(long, default_value_t = 6)]
    pub providers: u32,
    /// API port of node 0; node i uses base+10*i for its API, base+10*i+1 for consensus and
    /// base+10*i+2 for the libp2p service network.
    #[arg(long, default_value_t = 7300)]
    pub base_port: u16,
    /// Block interval of a new network, in milliseconds (the genesis default is 1000).
    #[arg(long)]
    pub block_interval_ms: Option<u64>,
    /// Largest storage segment of a new network, in bytes (the genesis default is 64 MiB);
    /// small segments let tests cover multi-segment objects with small files.
    #[arg(long)]
    pub storage_segment_bytes: Option<u64>,
    /// How many of the providers render Blender jobs (the first ones; each measures the
    /// benchmark scene when it starts). Render needs two of one build to check each other.
    #[arg(long, default_value_t = 4)]
    pub render_providers: u32,
    /// The Blender binary the render providers use.
    #[arg(long, default_value = "blender")]
    pub blender: PathBuf,
    /// Pieces each render provider renders at once (its render offer's capacity).
    #[arg(long, default_value_t = DEVNET_RENDER_SLOTS)]
    pub render_slots: u64,
    /// Threads each render provider's Blender uses (0: every core). Several providers on one
    /// machine share its cores better with fewer each.
    #[arg(long, default_value_t = 0)]
    pub render_threads: u32,
    /// How many of the providers transcode video (the first ones). A dispute needs two
    /// video providers besides the orchestrator to verify it.
    #[arg(long, default_value_t = 3)]
    pub video_providers: u32,
    /// The ffmpeg the orchestrators use (ffprobe beside it).
    #[arg(long, default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
}

/// devnet.json: what runs where, for people and scripts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevnetFile {
    pub chain_id: String,
    pub nodes: Vec<DevnetNode>,
    pub user_key_file: PathBuf,
    pub user_address: Address,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevnetNode {
    pub name: String,
    pub role: String,
    pub address: Address,
    pub api_url: String,
    pub p2p_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    pub key_file: PathBuf,
    pub pid: u32,
}

/// A started node process. Dropping the fleet stops whatever still runs.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exited: bool,
}

#[derive(Default)]
struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    fn start(&mut self, name: &str, config_file: &Path) -> anyhow::Result<u32> {
        let dir = config_file.parent().unwrap_or(Path::new("."));
        let log = dir.join("node.log");
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let stderr = stdout
            .try_clone()
            .with_context(|| format!("cannot open {}", log.display()))?;
        let exe = std::env::current_exe().context("cannot find the depin executable")?;
        let mut command = Command::new(exe);
        command
            .arg("node")
            .arg("run")
            .arg("--config")
            .arg(config_file)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for var in CHILD_ENV_REMOVED {
            command.env_remove(var);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id();
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
            exited: false,
        });
        Ok(pid)
    }

    /// Reports nodes that exited on their own; true while at least one still runs.
    fn check(&mut self) -> bool {
        for p in self.procs.iter_mut().filter(|p| !p.exited) {
            if let Ok(Some(status)) = p.child.try_wait() {
                p.exited = true;
                eprintln!(
                    "devnet: {} exited on its own ({status}); see {}. The other nodes keep running.",
                    p.name,
                    p.log.display()
                );
            }
        }
        self.procs.iter().any(|p| !p.exited)
    }

    /// SIGTERM to every running node, up to [`STOP_TIMEOUT`] for them to finish, then SIGKILL.
    fn stop(&mut self) {
        for p in self.procs.iter_mut().filter(|p| !p.exited) {
            if let Ok(pid) = i32::try_from(p.child.id()) {
                // ESRCH only means it is already gone; try_wait below collects it.
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for p in self.procs.iter_mut().filter(|p| !p.exited) {
            loop {
                match p.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!(
                            "devnet: {} did not stop within {} s; killing it",
                            p.name,
                            STOP_TIMEOUT.as_secs()
                        );
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            p.exited = true;
        }
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| p.name == name)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Set by SIGINT or SIGTERM, watched by every wait of the devnet.
#[derive(Clone)]
struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Installs the signal handlers before any node starts, so a signal during setup still stops
/// the nodes instead of orphaning them.
fn watch_signals(runtime: &tokio::runtime::Runtime) -> anyhow::Result<StopFlag> {
    use tokio::signal::unix::{SignalKind, signal};
    let _guard = runtime.enter();
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let flag = StopFlag(Arc::new(AtomicBool::new(false)));
    let set = flag.clone();
    runtime.spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        set.0.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

/// A bare program name found on the PATH (ffprobe is looked for beside it), else as given.
fn resolve_program(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

fn port(base: u16, index: usize, offset: u16) -> anyhow::Result<u16> {
    u16::try_from(index)
        .ok()
        .and_then(|i| i.checked_mul(10))
        .and_then(|p| p.checked_add(base))
        .and_then(|p| p.checked_add(offset))
        .with_context(|| format!("--base-port {base} leaves no room for node {index}"))
}

fn write_state(dir: &Path, state: &DevnetFile) -> anyhow::Result<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    // Rename so that a reader never sees half a file.
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Waits until the node answers /v1/status, it exits, the signal flag is set or
/// [`READY_TIMEOUT`] passes.
fn wait_ready(
    fleet: &mut Fleet,
    name: &str,
    api_url: &str,
    stop: &StopFlag,
) -> anyhow::Result<StatusResponse> {
    let client = Client::new(api_url);
    let deadline = Instant::now() + READY_TIMEOUT;
    let proc = fleet
        .get_mut(name)
        .with_context(|| format!("{name} was not started"))?;
    loop {
        if stop.is_set() {
            bail!("interrupted while waiting for {name}");
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            proc.exited = true;
            bail!(
                "{name} exited during startup ({status}); last lines of {}:\n{}",
                proc.log.display(),
                log_tail(&proc.log)
            );
        }
        if let Ok(status) = client.get::<StatusResponse>("/v1/status") {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!(
                "{name} did not answer on {api_url}/v1/status within {} s; last lines of {}:\n{}",
                READY_TIMEOUT.as_secs(),
                proc.log.display(),
                log_tail(&proc.log)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Starts every node of `state` and waits for each API; fills in the fresh pids.
fn start_all(fleet: &mut Fleet, state: &mut DevnetFile, stop: &StopFlag) -> anyhow::Result<()> {
    for node in &mut state.nodes {
        node.pid = fleet.start(&node.name, &node.config_file)?;
    }
    for node in &state.nodes {
        wait_ready(fleet, &node.name, &node.api_url, stop)?;
    }
    Ok(())
}

/// Creates keys, genesis and a folder per node in `dir` (which holds nothing yet).
fn create(dir: &Path, args: &DevnetArgs) -> anyhow::Result<DevnetFile> {
    let validators = args.validators as usize;
    let count = validators + args.providers as usize;
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        keys.push(Keypair::generate().context("cannot generate a node key")?);
    }
    let user = Keypair::generate().context("cannot generate the user key")?;
    let mut funded: Vec<Address> = keys.iter().map(|k| k.address()).collect();
    funded.push(user.address());
    let validator_addresses: Vec<Address> =
        keys[..validators].iter().map(|k| k.address()).collect();
    let mut genesis = dev_genesis(CHAIN_ID, &validator_addresses, &funded);
    if let Some(interval) = args.block_interval_ms {
        anyhow::ensure!(interval >= 50, "--block-interval-ms must be at least 50");
        genesis.chain.block_interval_ms = interval;
    }
    if let Some(bytes) = args.storage_segment_bytes {
        anyhow::ensure!(
            bytes >= 128 * 1024,
            "--storage-segment-bytes must be at least 131072 (two encrypted blocks)"
        );
        genesis.update_service_params::<StorageParams>(|p| p.max_segment_bytes = bytes)?;
    }
    // Every validator lists the others' consensus addresses.
    let mut validator_peers = Vec::with_capacity(validators);
    for (i, key) in keys[..validators].iter().enumerate() {
        let p2p = SocketAddr::from(([127, 0, 0, 1], port(args.base_port, i, 1)?));
        validator_peers.push((key.address(), format!("{}@{p2p}", key.address())));
    }
    let mut nodes = Vec::with_capacity(count);
    for (i, key) in keys.iter().enumerate() {
        let name = format!("node-{i}");
        let api = SocketAddr::from(([127, 0, 0, 1], port(args.base_port, i, 0)?));
        let p2p = SocketAddr::from(([127, 0, 0, 1], port(args.base_port, i, 1)?));
        let (role, upstream) = if i < validators {
            (Role::Validator, None)
        } else {
            // Providers follow the chain and gossip transactions over the service network.
            (Role::Provider, None)
        };
        let mut config = node_config(role, api, p2p, upstream);
        // Every node joins the libp2p service network, bootstrapping from node 0.
        config.net_listen = Some(SocketAddr::from((
            [127, 0, 0, 1],
            port(args.base_port, i, 2)?,
        )));
        if i > 0 {
            let first = depin_net::peer_id_of(&keys[0].address())
                .map_err(|e| anyhow::anyhow!("node 0 key: {e}"))?;
            config.bootstrap = vec![format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{first}",
                port(args.base_port, 0, 2)?
            )];
        }
        if role == Role::Provider {
            config.storage_capacity_bytes = DEVNET_STORAGE_BYTES;
            if i - validators < args.render_providers as usize {
                config.render_blender = Some(args.blender.clone());
                config.render_threads = args.render_threads;
            }
            if i - validators < args.video_providers as usize {
                config.video_ffmpeg = Some(resolve_program(&args.ffmpeg));
            }
        }
        if role == Role::Validator {
            config.validator_peers = validator_peers
                .iter()
                .filter(|(address, _)| *address != key.address())
                .map(|(_, entry)| entry.clone())
                .collect();
        }
        let files = write_node_dir(&dir.join(&name), key, &genesis, &config)?;
        nodes.push(DevnetNode {
            name,
            role: role.as_str().to_string(),
            address: key.address(),
            api_url: format!("http://{api}"),
            p2p_addr: p2p,
            data_dir: files.data_dir,
            config_file: files.config_file,
            key_file: files.key_file,
            pid: 0,
        });
    }
    let user_key_file = dir.join("user.key");
    write_key(&user_key_file, &user)?;
    Ok(DevnetFile {
        chain_id: genesis.chain_id,
        nodes,
        user_key_file,
        user_address: user.address(),
    })
}

/// Bonds the storage and compute minimum for each provider node and registers it, signing
/// with the node's key and submitting through the validator's API.
fn register_providers(
    state: &DevnetFile,
    stop: &StopFlag,
    render_slots: u64,
) -> anyhow::Result<()> {
    let Some(validator) = state.nodes.first() else {
        return Ok(());
    };
    let client = Client::new(&validator.api_url);
    let network = Network::fetch(&client)?;
    let mut bond = depin_types::Amount::ZERO;
    for (service, _) in PROVIDER_OFFERS {
        bond = bond
            .checked_add(network.genesis.staking.min_stake(service))
            .context("minimum stakes overflow")?;
    }
    let services: Vec<ServiceOffer> = PROVIDER_OFFERS
        .iter()
        .map(|(service, capacity)| ServiceOffer {
            service: *service,
            capacity: if *service == depin_protocol::render::SERVICE {
                render_slots
            } else {
                *capacity
            },
            price_dc_per_unit: if *service == depin_protocol::video::SERVICE {
                DEVNET_VIDEO_PRICE_DC_PER_GIGAPIXEL
            } else {
                1
            },
        })
        .collect();
    for node in state
        .nodes
        .iter()
        .filter(|n| n.role == Role::Provider.as_str())
    {
        if stop.is_set() {
            bail!("interrupted while registering providers");
        }
        let key = read_key(&node.key_file)?;
        let register = Action::RegisterProvider {
            services: services.clone(),
            location: None,
        };
        for action in [Action::Bond { amount: bond }, register] {
            let kind = action.kind();
            send(&client, &network, &key, None, action, true)
                .with_context(|| format!("{kind} of {} failed", node.name))?;
        }
    }
    Ok(())
}

/// A node of a previous run whose process is still alive, found by its pid and its config
/// path on the command line (pids get reused).
fn still_running(state: &DevnetFile) -> Option<&DevnetNode> {
    state.nodes.iter().find(|node| {
        std::fs::read(format!("/proc/{}/cmdline", node.pid))
            .map(|cmdline| {
                String::from_utf8_lossy(&cmdline).contains(&*node.config_file.to_string_lossy())
            })
            .unwrap_or(false)
    })
}

/// Paths of a resumed network follow the folder, wherever it has moved.
fn relocate(dir: &Path, state: &mut DevnetFile) {
    for node in &mut state.nodes {
        let node_dir = dir.join(&node.name);
        node.config_file = node_dir.join("config.toml");
        node.data_dir = node_dir.join("data");
        node.key_file = node_dir.join("node.key");
    }
    state.user_key_file = dir.join("user.key");
}

fn summary(state: &DevnetFile, dir: &Path) -> String {
    let mut text = format!(
        "devnet {} is running in {} ({} nodes)\n",
        state.chain_id,
        dir.display(),
        state.nodes.len()
    );
    for n in &state.nodes {
        text.push_str(&format!(
            "  {:<7} {:<9} {}  {}  pid {}\n",
            n.name, n.role, n.api_url, n.address, n.pid
        ));
    }
    let api = state
        .nodes
        .first()
        .map(|n| n.api_url.clone())
        .unwrap_or_default();
    let other = state
        .nodes
        .get(1)
        .map(|n| n.address)
        .unwrap_or(state.user_address);
    let user_key = state.user_key_file.display();
    text.push_str(&rows(&[
        (
            "user",
            format!(
                "{} ({DEV_BALANCE_TOKENS} tokens at genesis), key {user_key}",
                state.user_address
            ),
        ),
        ("logs", format!("{}/node-*/node.log", dir.display())),
    ]));
    text.push_str(&format!(
        "\ntry:\n  depin --rpc {api} account show {}\n  depin --rpc {api} transfer --to {other} --amount 12.5 --key {user_key}\n  depin --rpc {api} chain status\n  depin --rpc {api} provider list\n\nCtrl-C stops every node; run the same command again to resume this network.\n",
        state.user_address
    ));
    text
}

pub fn run(out: Printer, args: DevnetArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stop = watch_signals(&runtime)?;
    if !args.dir.join(STATE_FILE).exists() && !(1..=MAX_VALIDATORS).contains(&args.validators) {
        bail!(
            "--validators {}: a devnet runs between 1 and {MAX_VALIDATORS} validators",
            args.validators
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let state_path = dir.join(STATE_FILE);
    let mut fleet = Fleet::default();
    let resumed = state_path.exists();
    let mut state = if resumed {
        let text = std::fs::read_to_string(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?;
        let mut state: DevnetFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a devnet state file", state_path.display()))?;
        relocate(&dir, &mut state);
        if let Some(node) = still_running(&state) {
            bail!(
                "this devnet is already running ({} is pid {}); stop it before resuming",
                node.name,
                node.pid
            );
        }
        eprintln!(
            "devnet: resuming {} from {} (--validators, --providers and --base-port are taken from it)",
            state.chain_id,
            state_path.display()
        );
        state
    } else {
        let non_empty = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if non_empty {
            bail!(
                "{} is not empty but holds no {STATE_FILE} (an interrupted setup?); \
                 remove it or pick another --dir",
                dir.display()
            );
        }
        create(&dir, &args)?
    };
    start_all(&mut fleet, &mut state, &stop)?;
    if !resumed {
        register_providers(&state, &stop, args.render_slots.max(1))?;
    }
    write_state(&dir, &state)?;
    out.emit(&state, || Ok(summary(&state, &dir)))?;

    while !stop.is_set() {
        if !fleet.check() {
            bail!("every node of the devnet has exited; see the node.log files");
        }
        std::thread::sleep(POLL);
    }
    eprintln!("devnet: stopping {} nodes", state.nodes.len());
    fleet.stop();
    eprintln!("devnet: stopped");
    Ok(())
}
