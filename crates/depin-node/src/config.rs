//! Node configuration (TOML file plus `DEPIN_*` environment overrides) and key files.

use depin_types::{KeyFile, Keypair};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default API port.
pub const DEFAULT_API_PORT: u16 = 7300;
/// Default p2p port (used once the p2p network lands).
pub const DEFAULT_P2P_PORT: u16 = 7301;

/// Which part a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Produces and finalizes blocks.
    Validator,
    /// Offers services; follows the chain.
    Provider,
    /// Follows the chain and serves the API.
    Full,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Validator => "validator",
            Role::Provider => "provider",
            Role::Full => "full",
        }
    }
}

/// How a render provider cheats in a fault test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderFault {
    /// Commits an all-black image instead of rendering.
    Blank,
    /// Renders at an eighth of the job's samples.
    FewSamples,
    /// Paints a grey block over the left three quarters of the middle rows it rendered.
    Paint,
    /// Renders the next frame instead of the one asked.
    OtherFrame,
    /// Stops the node process once Blender has started on a piece.
    ExitMidRender,
}

/// How a video orchestrator cheats in a fault test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoFault {
    /// Returns random bytes as renditions (committed to as they are).
    Garbage,
    /// Scales every rendition to half the rung's size.
    WrongResolution,
    /// Drops the last frames of every rendition.
    FewerFrames,
    /// Returns the renditions of the segment it transcoded before.
    OtherSegment,
    /// Encodes every rung at a twentieth of its bitrate: right size, frames and length, a
    /// picture only a second orchestrator's rendition shows to be poor.
    LowBitrate,
    /// Stops the node process when its third segment arrives.
    ExitMidStream,
}

/// How a compute provider misbehaves in a fault test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeFault {
    /// Commits to (and reveals) a result that is not what the job produced.
    WrongResult,
    /// Stops the node process right after its commitment is in a block.
    ExitAfterCommit,
}

/// The node's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub role: Role,
    /// Holds the chain database. Relative paths are relative to the config file.
    pub data_dir: PathBuf,
    pub genesis_file: PathBuf,
    pub key_file: PathBuf,
    pub api_listen: SocketAddr,
    /// Reserved for the p2p network; recorded so devnet layouts stay stable.
    pub p2p_listen: SocketAddr,
    /// API URL of the node to follow and forward transactions to (non-validators).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Consensus addresses of the other validators, as `depin1...@host:port`
    /// (validators only; this node's own is `p2p_listen`).
    #[serde(default)]
    pub validator_peers: Vec<String>,
    /// The libp2p service network (transaction gossip): TCP port, and the same UDP port for
    /// QUIC. Absent: the node does not join it.
    #[serde(default)]
    pub net_listen: Option<SocketAddr>,
    /// libp2p bootstrap peers, multiaddrs ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Bytes this node offers to the storage service (0: it stores nothing). Needs
    /// `net_listen`: pieces travel over the service network.
    #[serde(default)]
    pub storage_capacity_bytes: u64,
    /// Where pieces are kept; relative to the config file. Default: `storage` next to the
    /// chain data.
    #[serde(default)]
    pub storage_dir: Option<PathBuf>,
    /// Misbehaviour for fault tests of the compute service; never set it on a real node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_fault: Option<ComputeFault>,
    /// The Blender binary this provider renders with (an official build for GPU devices).
    /// Absent: the node is no render provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_blender: Option<PathBuf>,
    /// Cycles device: `CPU`, `CUDA`, `OPTIX` or `HIP`.
    #[serde(default = "default_render_device")]
    pub render_device: String,
    /// Threads Blender renders with (0: every core of the machine).
    #[serde(default)]
    pub render_threads: u32,
    /// How long an unpacked scene stays after its last piece here, in seconds (the same job
    /// often sends another soon; the bundle it came from stays while its job is open).
    #[serde(default = "default_render_scene_keep_s")]
    pub render_scene_keep_s: u64,
    /// Misbehaviour for fault tests of the render service; never set it on a real node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_fault: Option<RenderFault>,
    /// The ffmpeg this orchestrator transcodes with (ffprobe beside it). Absent: the node
    /// transcodes no video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_ffmpeg: Option<PathBuf>,
    /// Threads libx264 encodes with: orchestrators of one thread count make byte-identical
    /// renditions, so a stream pins it (1 by default).
    #[serde(default = "default_video_threads")]
    pub video_threads: u32,
    /// Misbehaviour for fault tests of the video service; never set it on a real node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_fault: Option<VideoFault>,
    /// Where this hotspot's LoRa packet forwarder sends its UDP datagrams (Semtech GWMP,
    /// usually port 1700). Absent: the node is no hotspot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_listen: Option<SocketAddr>,
    /// The EUI of that gateway, 16 hex digits, as asserted on chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_eui: Option<String>,
    /// tracing filter, e.g. `info` or `depin_chain=debug`.
    #[serde(default = "default_log")]
    pub log: String,
}

/// Our logs at info; the consensus engine's chatter only when it matters.
pub const DEFAULT_LOG: &str =
    "info,commonware_consensus=warn,commonware_storage=warn,commonware_p2p=warn";

fn default_render_scene_keep_s() -> u64 {
    300
}

fn default_render_device() -> String {
    "CPU".into()
}

fn default_video_threads() -> u32 {
    1
}

fn default_log() -> String {
    DEFAULT_LOG.into()
}

/// Why a config or key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads a config file, resolves relative paths against its folder and applies
    /// environment overrides (`DEPIN_API_LISTEN`, `DEPIN_DATA_DIR`, `DEPIN_UPSTREAM`, `DEPIN_LOG`).
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read_text(path)?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.data_dir,
            &mut config.genesis_file,
            &mut config.key_file,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = config.storage_dir.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        config.apply_env()?;
        if config.gateway_listen.is_some() != config.gateway_eui.is_some() {
            return Err(ConfigError::Invalid(
                "`gateway_listen` and `gateway_eui` go together".into(),
            ));
        }
        if let Some(eui) = &config.gateway_eui {
            parse_eui(eui).map_err(ConfigError::Invalid)?;
        }
        if config.role != Role::Validator
            && config.upstream.is_none()
            && config.net_listen.is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "a {} node follows the chain over the service network (set `net_listen` and `bootstrap`) or from `upstream` (the API URL of a node)",
                config.role.as_str()
            )));
        }
        Ok(config)
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Ok(v) = std::env::var("DEPIN_API_LISTEN") {
            self.api_listen = v
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("DEPIN_API_LISTEN={v:?}")))?;
        }
        if let Ok(v) = std::env::var("DEPIN_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("DEPIN_UPSTREAM") {
            self.upstream = Some(v);
        }
        if let Ok(v) = std::env::var("DEPIN_LOG") {
            self.log = v;
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// `validator_peers` parsed into addresses.
    pub fn validator_peer_addresses(
        &self,
    ) -> Result<std::collections::BTreeMap<depin_types::Address, SocketAddr>, ConfigError> {
        let mut out = std::collections::BTreeMap::new();
        for entry in &self.validator_peers {
            let bad =
                |why: &str| ConfigError::Invalid(format!("validator_peers entry {entry:?}: {why}"));
            let (address, socket) = entry
                .split_once('@')
                .ok_or_else(|| bad("expected depin1...@host:port"))?;
            let address: depin_types::Address =
                address.parse().map_err(|_| bad("not a depin address"))?;
            let socket: SocketAddr = socket.parse().map_err(|_| bad("not a host:port"))?;
            out.insert(address, socket);
        }
        Ok(out)
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|cause| ConfigError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// Writes a key file readable only by its owner (mode 0600). Refuses to overwrite.
pub fn write_key_file(path: &Path, key: &Keypair) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |cause| ConfigError::Io {
        path: path.to_path_buf(),
        cause,
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    let json = serde_json::to_string_pretty(&KeyFile::from_keypair(key))
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    file.write_all(json.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a key file written by [`write_key_file`].
pub fn read_key_file(path: &Path) -> Result<Keypair, ConfigError> {
    let text = read_text(path)?;
    if text.len() > 4096 {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            message: "key file is too large".into(),
        });
    }
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    file.to_keypair().map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A gateway EUI: 16 hex digits, with or without `0x` and `-`/`:` separators.
pub fn parse_eui(text: &str) -> Result<u64, String> {
    let digits: String = text
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    if digits.len() != 16 {
        return Err(format!("gateway EUI {text:?} is not 16 hex digits"));
    }
    u64::from_str_radix(&digits, 16).map_err(|_| format!("gateway EUI {text:?} is not hex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.json");
        let key = Keypair::generate().expect("key");
        write_key_file(&path, &key).expect("write");
        assert_eq!(read_key_file(&path).expect("read").address(), key.address());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(write_key_file(&path, &key).is_err(), "must not overwrite");
    }
}
