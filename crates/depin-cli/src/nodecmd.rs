//! `depin node init` writes a node folder (key, genesis, config); `depin node run` runs one.
//! The folder layout is shared with `depin devnet`.

use crate::keycmd::write_key;
use crate::output::{Printer, rows};
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use depin_node::config::{DEFAULT_LOG, NodeConfig, Role};
use depin_protocol::Genesis;
use depin_protocol::params::GenesisBalance;
use depin_types::{Address, Amount, Keypair};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Whole tokens every account funded by a development genesis receives.
pub const DEV_BALANCE_TOKENS: u128 = 1_000_000;

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Create a node folder: node.key, genesis.toml (a new single-validator chain unless
    /// --genesis is given) and config.toml.
    Init(InitArgs),
    /// Run a node from its config file until SIGINT or SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Validator,
    Provider,
    Full,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Validator => Role::Validator,
            RoleArg::Provider => Role::Provider,
            RoleArg::Full => Role::Full,
        }
    }
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Folder to create the node in.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:7300")]
    pub api: SocketAddr,
    /// Address the p2p network listens on.
    #[arg(long, default_value = "127.0.0.1:7301")]
    pub p2p: SocketAddr,
    /// Genesis file of the chain to join (copied); without it a new standalone chain is made.
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "validator")]
    pub role: RoleArg,
    /// API URL of the validator to follow (providers and full nodes).
    #[arg(long)]
    pub upstream: Option<String>,
}

/// The files of one node folder.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFiles {
    pub config_file: PathBuf,
    pub key_file: PathBuf,
    pub genesis_file: PathBuf,
    pub data_dir: PathBuf,
}

/// A development genesis: `validator` validates and sets the oracle price, and every account
/// of `funded` gets [`DEV_BALANCE_TOKENS`] whole tokens.
pub fn dev_genesis(chain_id: &str, validators: &[Address], funded: &[Address]) -> Genesis {
    // The first validator is the oracle authority of a development network.
    let authority = validators.first().copied().unwrap_or_default();
    let mut genesis = Genesis::devnet(chain_id, depin_node::now_ms(), validators, authority, &[]);
    let unit = 10u128.pow(u32::from(genesis.token.decimals));
    genesis.balances = funded
        .iter()
        .map(|address| GenesisBalance {
            address: *address,
            amount: Amount(DEV_BALANCE_TOKENS * unit),
        })
        .collect();
    genesis
}

/// The config of a node laid out as `node init` and `devnet` lay it out: every path relative
/// to the config file's folder.
pub fn node_config(
    role: Role,
    api_listen: SocketAddr,
    p2p_listen: SocketAddr,
    upstream: Option<String>,
) -> NodeConfig {
    NodeConfig {
        role,
        data_dir: "data".into(),
        genesis_file: "genesis.toml".into(),
        key_file: "node.key".into(),
        api_listen,
        p2p_listen,
        upstream,
        validator_peers: Vec::new(),
        net_listen: None,
        bootstrap: Vec::new(),
        storage_capacity_bytes: 0,
        storage_dir: None,
        compute_fault: None,
        render_blender: None,
        render_device: "CPU".into(),
        render_threads: 0,
        render_scene_keep_s: 300,
        render_fault: None,
        video_ffmpeg: None,
        video_threads: 1,
        video_fault: None,
        gateway_listen: None,
        gateway_eui: None,
        log: DEFAULT_LOG.into(),
    }
}

fn write_new_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes node.key, genesis.toml, data/ and (last, so its presence means a complete folder)
/// config.toml into `dir`. Refuses to overwrite anything.
pub fn write_node_dir(
    dir: &Path,
    key: &Keypair,
    genesis: &Genesis,
    config: &NodeConfig,
) -> anyhow::Result<NodeFiles> {
    let files = NodeFiles {
        config_file: dir.join("config.toml"),
        key_file: dir.join(&config.key_file),
        genesis_file: dir.join(&config.genesis_file),
        data_dir: dir.join(&config.data_dir),
    };
    if files.config_file.exists() {
        bail!(
            "{} already exists; pick another --dir",
            files.config_file.display()
        );
    }
    std::fs::create_dir_all(&files.data_dir)
        .with_context(|| format!("cannot create {}", files.data_dir.display()))?;
    write_key(&files.key_file, key)?;
    write_new_file(&files.genesis_file, &genesis.to_toml())?;
    write_new_file(&files.config_file, &config.to_toml())?;
    Ok(files)
}

pub fn run(out: Printer, command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Init(args) => init(out, args),
        NodeCommand::Run { config } => run_node(&config),
    }
}

fn init(out: Printer, args: InitArgs) -> anyhow::Result<()> {
    let role = Role::from(args.role);
    if role != Role::Validator {
        if args.upstream.is_none() {
            bail!(
                "a {} node follows a validator: pass --upstream with its API URL",
                role.as_str()
            );
        }
        if args.genesis.is_none() {
            bail!(
                "a {} node joins an existing chain: pass --genesis with its genesis.toml",
                role.as_str()
            );
        }
    }
    if let Some(url) = &args.upstream
        && !url.starts_with("http://")
    {
        bail!("--upstream {url:?} must be an http:// URL");
    }
    let key = Keypair::generate().context("cannot generate the node key")?;
    let genesis = match &args.genesis {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Genesis::from_toml(&text)
                .with_context(|| format!("{} is not usable", path.display()))?
        }
        None => {
            let mut suffix = [0u8; 4];
            getrandom::fill(&mut suffix)
                .map_err(|e| anyhow::anyhow!("no operating-system randomness: {e}"))?;
            let chain_id = format!("depin-local-{}", hex::encode(suffix));
            dev_genesis(&chain_id, &[key.address()], &[key.address()])
        }
    };
    let config = node_config(role, args.api, args.p2p, args.upstream.clone());
    let files = write_node_dir(&args.dir, &key, &genesis, &config)?;
    let report = serde_json::json!({
        "address": key.address(),
        "chain_id": genesis.chain_id,
        "role": role.as_str(),
        "api_url": format!("http://{}", args.api),
        "files": files,
    });
    out.emit(&report, || {
        let mut text = rows(&[
            ("address", key.address().to_string()),
            ("chain", genesis.chain_id.clone()),
            ("role", role.as_str().into()),
            ("api", format!("http://{}", args.api)),
            ("key", format!("wrote {}", files.key_file.display())),
            ("genesis", format!("wrote {}", files.genesis_file.display())),
            ("config", format!("wrote {}", files.config_file.display())),
        ]);
        text.push_str(&format!(
            "start it with: depin node run --config {}\n",
            files.config_file.display()
        ));
        Ok(text)
    })
}

fn run_node(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)
        .map_err(|e| anyhow::anyhow!("cannot load the node config: {e}"))?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter {:?} in the config", config.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: devnet appends node output to log files.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ran = runtime.block_on(depin_node::run(config));
    // A render or a compute run still going on a blocking thread must not hold the exit (the
    // chain is committed by now); its sandbox dies with this process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // NodeError's message already includes its cause; anyhow's chain would print it twice.
    ran.map_err(|e| anyhow::anyhow!("the node stopped with an error: {e}"))
}
