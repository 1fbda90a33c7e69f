//! `node.toml`: what one member node runs with (docs/operations.md, "Node configuration").
//!
//! ```toml
//! data_dir = "data"                      # block log, index, sign-state, WAL
//! genesis = "../../genesis.json"
//! node_key = "../../keys/de-customs-node.json"
//!
//! [p2p]
//! listen = ["/ip4/127.0.0.1/tcp/7100"]
//! bootstrap = ["/ip4/127.0.0.1/tcp/7101/p2p/12D3KooW..."]
//!
//! [api]
//! listen = "127.0.0.1:7200"
//!
//! [log]
//! format = "pretty"                      # or "json"
//! ```
//!
//! Relative paths are relative to the directory holding the file. Every key is checked at
//! start: an unknown key or a bad value is refused with its name and what is expected, before
//! anything is opened.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest `node.toml` read: 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Default HTTP API address: loopback only.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7200";
/// Default libp2p listen address.
pub const DEFAULT_P2P_LISTEN: &str = "/ip4/127.0.0.1/tcp/7100";
/// Default bound on established libp2p connections.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 128;
/// Default bound on events waiting in the mempool.
pub const DEFAULT_MEMPOOL_MAX_EVENTS: usize = 100_000;
/// Default bound on the bytes of events waiting in the mempool: 256 MiB.
pub const DEFAULT_MEMPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Longest wait a proposer makes for events before proposing an empty block, by default: an
/// empty chain does not spin heights as fast as the network allows.
pub const DEFAULT_EMPTY_BLOCK_WAIT_MS: u64 = 1000;
/// How long after a height starts a proposer waits for more events before proposing a block
/// that is not full, by default: at a moderate load the heights (each costs every node a few
/// ms of fsyncs, signatures and messages) carry more events each, for at most this much
/// latency. A full block is proposed at once.
pub const DEFAULT_BLOCK_LINGER_MS: u64 = 50;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read node config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node config (an unknown key, a wrong type).
    #[error("node config {path}: {detail}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with the key and line.
        detail: String,
    },
    /// A value is out of range or unusable.
    #[error("node config {path}: `{key}` {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// The key, e.g. `p2p.listen`.
        key: String,
        /// What is expected.
        detail: String,
    },
}

impl ConfigError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "CONFIG_READ",
            ConfigError::Parse { .. } => "CONFIG_PARSE",
            ConfigError::Invalid { .. } => "CONFIG_INVALID",
        }
    }
}

/// The whole configuration of one node.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The data dir: block log, index, sign-state and WAL.
    pub data_dir: PathBuf,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The node's key file (`tradeloop keygen`); a validator's key is its consensus key.
    pub node_key: PathBuf,
    /// Peer-to-peer networking.
    #[serde(default)]
    pub p2p: P2pSection,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiSection,
    /// Local consensus settings.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Mempool bounds.
    #[serde(default)]
    pub mempool: MempoolSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// How the node uses the machine's cores.
    #[serde(default)]
    pub runtime: RuntimeSection,
}

/// `[p2p]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSection {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Peers to dial at start, each a multiaddr ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Bound on established connections.
    pub max_connections: u32,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            listen: vec![DEFAULT_P2P_LISTEN.into()],
            bootstrap: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// `[api]`. Its bounds mirror [`crate::api::ApiLimits`] field for field, so that `node.toml`
/// refuses a key it does not know (serde cannot flatten a struct into one that denies unknown
/// fields); every default comes from `ApiLimits::default` alone.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Bound on one request body, bytes.
    pub max_body_bytes: usize,
    /// Bound on events in one submission.
    pub max_events_per_request: usize,
    /// Requests handled at once; more are refused with 503 `OVERLOADED`.
    pub max_concurrent_requests: usize,
    /// Longest time one request may take, milliseconds (503 `TIMEOUT` after it).
    pub request_timeout_ms: u64,
    /// Longest `?wait=commit`, milliseconds (at least 2 s below `request_timeout_ms`).
    pub max_wait_ms: u64,
    /// Most headers in one `GET /v1/blocks` page.
    pub max_page_blocks: usize,
    /// Most events in one `GET /v1/trace/...` page.
    pub max_page_events: usize,
    /// `GET /v1/stream` connections open at once.
    pub max_streams: usize,
    /// Events buffered for one stream client.
    pub stream_buffer_events: usize,
    /// How long a stream client's full buffer may go untaken before it is disconnected, ms.
    pub stream_stall_ms: u64,
    /// Interval of the stream's heartbeats, ms.
    pub stream_heartbeat_ms: u64,
    /// TCP connections open at once.
    pub max_connections: usize,
    /// Time to deliver a request head (and longest keep-alive idle), ms.
    pub header_timeout_ms: u64,
    /// Bearer tokens (`[[api.tokens]]`); required when `listen` is not a loopback address.
    pub tokens: Vec<TokenConfig>,
}

/// `[[api.tokens]]`: one bearer token, by the SHA-256 of its bytes (`tradeloop token new`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for the operator and the logs, e.g. `erp`.
    pub name: String,
    /// SHA-256 of the token, 64 hex characters.
    pub sha256: String,
    /// Any of `read`, `submit`, `metrics`.
    pub scopes: Vec<String>,
}

impl Default for ApiSection {
    fn default() -> Self {
        let limits = crate::api::ApiLimits::default();
        ApiSection {
            listen: DEFAULT_API_LISTEN.parse().unwrap_or_else(|_| unreachable_default()),
            max_body_bytes: limits.max_body_bytes,
            max_events_per_request: limits.max_events_per_request,
            max_concurrent_requests: limits.max_concurrent_requests,
            request_timeout_ms: limits.request_timeout_ms,
            max_wait_ms: limits.max_wait_ms,
            max_page_blocks: limits.max_page_blocks,
            max_page_events: limits.max_page_events,
            max_streams: limits.max_streams,
            stream_buffer_events: limits.stream_buffer_events,
            stream_stall_ms: limits.stream_stall_ms,
            stream_heartbeat_ms: limits.stream_heartbeat_ms,
            max_connections: limits.max_connections,
            header_timeout_ms: limits.header_timeout_ms,
            tokens: Vec::new(),
        }
    }
}

impl ApiSection {
    /// The tokens as the API checks them (the config check has validated every entry).
    pub fn access(&self) -> crate::api::auth::Access {
        use crate::api::auth::{Scope, TokenEntry};
        crate::api::auth::Access {
            tokens: self
                .tokens
                .iter()
                .filter_map(|t| {
                    Some(TokenEntry {
                        name: t.name.clone(),
                        sha256: tradeloop_crypto::Hash::from_hex(&t.sha256).ok()?,
                        scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                    })
                })
                .collect(),
        }
    }

    /// Checks the tokens: each well formed, names unique, and some token whenever the API
    /// listens beyond loopback.
    fn check_tokens(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = format!("api.tokens[{i}]");
            if t.name.is_empty() || t.name.len() > 64 || !names.insert(t.name.as_str()) {
                return Err((
                    format!("{key}.name"),
                    "must be 1 to 64 characters and differ from every other token's".into(),
                ));
            }
            if t.sha256.len() != 64 || tradeloop_crypto::Hash::from_hex(&t.sha256).is_err() {
                return Err((
                    format!("{key}.sha256"),
                    "must be the 64 lower-case hex characters of the token's SHA-256 \
                     (`tradeloop token new` prints it)"
                        .into(),
                ));
            }
            if t.scopes.is_empty() {
                return Err((format!("{key}.scopes"), "must name at least one scope".into()));
            }
            if let Some(bad) = t.scopes.iter().find(|s| crate::api::auth::Scope::parse(s).is_none())
            {
                return Err((
                    format!("{key}.scopes"),
                    format!("`{bad}` is not a scope; the scopes are read, submit, metrics"),
                ));
            }
        }
        if self.tokens.is_empty() && !self.listen.ip().is_loopback() {
            return Err((
                "api.tokens".into(),
                format!(
                    "api.listen is {}, not a loopback address, so bearer tokens are required: \
                     create one with `tradeloop token new --name NAME --scopes read,submit` and \
                     add the [[api.tokens]] it prints, or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
    /// The API's bounds from this section (the rest at their defaults).
    pub fn limits(&self) -> crate::api::ApiLimits {
        let defaults = crate::api::ApiLimits::default();
        crate::api::ApiLimits {
            max_body_bytes: self.max_body_bytes,
            max_events_per_request: self.max_events_per_request,
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout_ms: self.request_timeout_ms,
            max_wait_ms: self.max_wait_ms,
            default_wait_ms: defaults.default_wait_ms.min(self.max_wait_ms),
            max_page_blocks: self.max_page_blocks,
            max_page_events: self.max_page_events,
            max_streams: self.max_streams,
            stream_buffer_events: self.stream_buffer_events,
            stream_stall_ms: self.stream_stall_ms,
            stream_heartbeat_ms: self.stream_heartbeat_ms,
            max_connections: self.max_connections,
            header_timeout_ms: self.header_timeout_ms,
            ..defaults
        }
    }
}

fn unreachable_default() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7200))
}

/// `[consensus]`: local overrides of the genesis round-0 timeouts (each validator's timers
/// are its own; the genesis values are the network's defaults), and the proposer's wait.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// Round-0 propose timeout, ms (default: the genesis value).
    pub timeout_propose_ms: Option<u64>,
    /// Round-0 prevote timeout, ms (default: the genesis value).
    pub timeout_prevote_ms: Option<u64>,
    /// Round-0 precommit timeout, ms (default: the genesis value).
    pub timeout_precommit_ms: Option<u64>,
    /// How long a proposer with an empty mempool waits for an event before proposing an empty
    /// block, ms (default [`DEFAULT_EMPTY_BLOCK_WAIT_MS`]).
    pub empty_block_wait_ms: Option<u64>,
    /// How long after a height starts a proposer with some events, but not a full block's,
    /// waits for more, ms (0 = none; default [`DEFAULT_BLOCK_LINGER_MS`]).
    pub block_linger_ms: Option<u64>,
}

/// `[mempool]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    /// Bound on pending events.
    pub max_events: usize,
    /// Bound on the encoded bytes of pending events.
    pub max_bytes: u64,
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            max_events: DEFAULT_MEMPOOL_MAX_EVENTS,
            max_bytes: DEFAULT_MEMPOOL_MAX_BYTES,
        }
    }
}

/// Most threads `[runtime] verify_threads` may name.
pub const MAX_VERIFY_THREADS: usize = 256;

/// `[runtime]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Threads that check the signatures (and the rest of the stateless checks) of arriving
    /// events: 0 (the default) uses one per core; 1 checks them on the chain worker itself,
    /// with no hand-off. Nodes that share a machine (a devnet) should split its cores between
    /// them: `tradeloop devnet init` writes cores / nodes, at least 1.
    pub verify_threads: usize,
}

/// `[log]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Line format.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,tradeloop_node=debug` (default `info`; the
    /// `RUST_LOG` environment variable overrides it).
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

impl NodeConfig {
    /// Reads and checks `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let shown = path.display().to_string();
        let read = |source| ConfigError::Read { path: shown.clone(), source };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut text,
        )
        .map_err(read)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid {
                path: shown,
                key: "(file)".into(),
                detail: format!("is larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        NodeConfig::parse(&text, &shown, base)
    }

    /// Parses and checks config text; `shown` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, shown: &str, base: &Path) -> Result<NodeConfig, ConfigError> {
        let mut config: NodeConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: shown.into(), detail: e.to_string() })?;
        for p in [&mut config.data_dir, &mut config.genesis, &mut config.node_key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.check(shown)?;
        Ok(config)
    }

    fn check(&self, shown: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, detail: String| ConfigError::Invalid {
            path: shown.into(),
            key: key.into(),
            detail,
        };
        if self.p2p.listen.is_empty() {
            return Err(invalid("p2p.listen", "must list at least one multiaddr".into()));
        }
        for (key, addrs) in
            [("p2p.listen", &self.p2p.listen), ("p2p.bootstrap", &self.p2p.bootstrap)]
        {
            for a in addrs {
                check_multiaddr(a, key == "p2p.bootstrap").map_err(|d| invalid(key, d))?;
            }
        }
        if self.p2p.max_connections == 0 || self.p2p.max_connections > 10_000 {
            return Err(invalid("p2p.max_connections", "must be 1..=10000".into()));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            return Err(invalid("api.max_body_bytes", "must be 1024..=67108864 (bytes)".into()));
        }
        if !(1..=100_000).contains(&self.api.max_events_per_request) {
            return Err(invalid("api.max_events_per_request", "must be 1..=100000".into()));
        }
        for (key, value) in [
            ("api.max_concurrent_requests", self.api.max_concurrent_requests),
            ("api.max_page_blocks", self.api.max_page_blocks),
            ("api.max_page_events", self.api.max_page_events),
            ("api.max_streams", self.api.max_streams),
            ("api.stream_buffer_events", self.api.stream_buffer_events),
            ("api.max_connections", self.api.max_connections),
        ] {
            if !(1..=100_000).contains(&value) {
                return Err(invalid(key, "must be 1..=100000".into()));
            }
        }
        self.api.check_tokens().map_err(|(key, detail)| invalid(&key, detail))?;
        for (key, ms) in [
            ("api.stream_stall_ms", self.api.stream_stall_ms),
            ("api.stream_heartbeat_ms", self.api.stream_heartbeat_ms),
            ("api.header_timeout_ms", self.api.header_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(invalid(key, "must be 100..=3600000 (ms)".into()));
            }
        }
        if !(1_000..=3_600_000).contains(&self.api.request_timeout_ms) {
            return Err(invalid("api.request_timeout_ms", "must be 1000..=3600000 (ms)".into()));
        }
        if self.api.max_wait_ms.saturating_add(crate::api::WAIT_MARGIN_MS)
            > self.api.request_timeout_ms
        {
            return Err(invalid(
                "api.max_wait_ms",
                format!(
                    "must be at least {} ms below api.request_timeout_ms ({})",
                    crate::api::WAIT_MARGIN_MS,
                    self.api.request_timeout_ms
                ),
            ));
        }
        if self.runtime.verify_threads > MAX_VERIFY_THREADS {
            return Err(invalid(
                "runtime.verify_threads",
                format!("must be 0..={MAX_VERIFY_THREADS} (0 = one per core)"),
            ));
        }
        let c = &self.consensus;
        for (key, ms) in [
            ("consensus.timeout_propose_ms", c.timeout_propose_ms),
            ("consensus.timeout_prevote_ms", c.timeout_prevote_ms),
            ("consensus.timeout_precommit_ms", c.timeout_precommit_ms),
            ("consensus.empty_block_wait_ms", c.empty_block_wait_ms),
        ] {
            if let Some(ms) = ms {
                if ms == 0 || ms > tradeloop_ledger::model::genesis::MAX_TIMEOUT_MS {
                    return Err(invalid(
                        key,
                        format!(
                            "must be 1..={} (milliseconds)",
                            tradeloop_ledger::model::genesis::MAX_TIMEOUT_MS
                        ),
                    ));
                }
            }
        }
        if c.block_linger_ms.is_some_and(|ms| ms > tradeloop_ledger::model::genesis::MAX_TIMEOUT_MS)
        {
            return Err(invalid(
                "consensus.block_linger_ms",
                format!(
                    "must be 0..={} (milliseconds; 0 proposes at once)",
                    tradeloop_ledger::model::genesis::MAX_TIMEOUT_MS
                ),
            ));
        }
        if self.mempool.max_events == 0 || self.mempool.max_events > 10_000_000 {
            return Err(invalid("mempool.max_events", "must be 1..=10000000".into()));
        }
        if self.mempool.max_bytes < 1024 * 1024 || self.mempool.max_bytes > 16 * 1024 * 1024 * 1024
        {
            return Err(invalid("mempool.max_bytes", "must be 1 MiB..=16 GiB (bytes)".into()));
        }
        if let Some(level) = &self.log.level {
            if level.trim().is_empty() {
                return Err(invalid("log.level", "must be a filter such as `info`".into()));
            }
        }
        Ok(())
    }

    /// The proposer's wait for events before an empty block, ms.
    pub fn empty_block_wait_ms(&self) -> u64 {
        self.consensus.empty_block_wait_ms.unwrap_or(DEFAULT_EMPTY_BLOCK_WAIT_MS)
    }

    /// The proposer's wait for more events before a block that is not full, ms.
    pub fn block_linger_ms(&self) -> u64 {
        self.consensus.block_linger_ms.unwrap_or(DEFAULT_BLOCK_LINGER_MS)
    }
}

/// Checks the shape of a TCP multiaddr we can use: `/ip4/A/tcp/P` or `/ip6/A/tcp/P` or
/// `/dns4|dns6|dns/NAME/tcp/P`, and for a bootstrap peer a final `/p2p/<peer id>`.
fn check_multiaddr(text: &str, needs_peer: bool) -> Result<(), String> {
    let expected = if needs_peer {
        "a multiaddr such as /ip4/127.0.0.1/tcp/7100/p2p/12D3KooW..."
    } else {
        "a multiaddr such as /ip4/127.0.0.1/tcp/7100"
    };
    let parts: Vec<&str> = text.split('/').collect();
    let ok_host = parts.len() >= 5
        && parts[0].is_empty()
        && match parts[1] {
            "ip4" => parts[2].parse::<std::net::Ipv4Addr>().is_ok(),
            "ip6" => parts[2].parse::<std::net::Ipv6Addr>().is_ok(),
            "dns" | "dns4" | "dns6" => !parts[2].is_empty(),
            _ => false,
        }
        && parts[3] == "tcp"
        && parts[4].parse::<u16>().is_ok();
    let rest = &parts[parts.len().min(5)..];
    let ok_tail = match rest {
        [] => !needs_peer,
        ["p2p", id] => !id.is_empty(),
        _ => false,
    };
    if ok_host && ok_tail {
        Ok(())
    } else {
        Err(format!("has {text:?}; expected {expected}"))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_api_section_defaults_are_the_api_limits_defaults() {
        assert_eq!(ApiSection::default().limits(), crate::api::ApiLimits::default());
    }

    use super::*;

    const MINIMAL: &str = "data_dir = \"data\"\ngenesis = \"g.json\"\nnode_key = \"k.json\"\n";

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, "node.toml", Path::new("/etc/tl"))
    }

    #[test]
    fn a_minimal_config_takes_defaults_and_anchors_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/tl/data"));
        assert_eq!(c.genesis, Path::new("/etc/tl/g.json"));
        assert_eq!(c.api.listen, DEFAULT_API_LISTEN.parse().unwrap());
        assert_eq!(c.p2p.listen, vec![DEFAULT_P2P_LISTEN.to_string()]);
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert_eq!(c.empty_block_wait_ms(), DEFAULT_EMPTY_BLOCK_WAIT_MS);
        assert_eq!(c.block_linger_ms(), DEFAULT_BLOCK_LINGER_MS);
        assert_eq!(c.runtime.verify_threads, 0);
    }

    #[test]
    fn a_full_config_parses() {
        let text = format!(
            "{MINIMAL}[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/9000\"]\nbootstrap = [\"/ip4/127.0.0.1/tcp/9001/p2p/12D3KooWabc\"]\nmax_connections = 16\n\
             [api]\nlisten = \"127.0.0.1:9100\"\n[consensus]\ntimeout_propose_ms = 500\nblock_linger_ms = 0\n\
             [mempool]\nmax_events = 10\nmax_bytes = 2000000\n[log]\nformat = \"json\"\nlevel = \"debug\"\n\
             [runtime]\nverify_threads = 1\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.runtime.verify_threads, 1);
        assert_eq!(c.p2p.max_connections, 16);
        assert_eq!(c.consensus.timeout_propose_ms, Some(500));
        assert_eq!(c.block_linger_ms(), 0);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let token = |name: &str, sha: &str, scopes: &str| {
            format!("[[api.tokens]]\nname = \"{name}\"\nsha256 = \"{sha}\"\nscopes = [{scopes}]\n")
        };
        let tokens = [
            token("erp", &"ab".repeat(31), "\"read\""),
            token("erp", &"ab".repeat(32), "\"write\""),
            token("erp", &"ab".repeat(32), ""),
            token("", &"ab".repeat(32), "\"read\""),
        ];
        let cases: [(&str, &str); 20] = [
            ("[runtime]\nverify_threads = 257\n", "runtime.verify_threads"),
            ("[runtime]\nthreads = 2\n", "threads"),
            ("colour = \"red\"\n", "colour"),
            ("[consensus]\nblock_linger_ms = 700000\n", "consensus.block_linger_ms"),
            ("[p2p]\nlisten = [\"127.0.0.1:9000\"]\n", "p2p.listen"),
            ("[p2p]\nbootstrap = [\"/ip4/127.0.0.1/tcp/9001\"]\n", "p2p.bootstrap"),
            ("[p2p]\nlisten = []\n", "p2p.listen"),
            ("[api]\nlisten = \"localhost\"\n", "listen"),
            ("[consensus]\ntimeout_prevote_ms = 0\n", "consensus.timeout_prevote_ms"),
            ("[mempool]\nmax_events = 0\n", "mempool.max_events"),
            ("[log]\nformat = \"xml\"\n", "xml"),
            ("[api]\nmax_body_bytes = \"big\"\n", "max_body_bytes"),
            ("[api]\nlisten = \"0.0.0.0:7200\"\n", "api.tokens"),
            ("[api]\nmax_streams = 0\n", "api.max_streams"),
            ("[api]\nstream_stall_ms = 5\n", "api.stream_stall_ms"),
            ("[api]\nmax_wait_ms = 39000\n", "api.max_wait_ms"),
            (&tokens[0], "api.tokens[0].sha256"),
            (&tokens[1], "api.tokens[0].scopes"),
            (&tokens[2], "api.tokens[0].scopes"),
            (&tokens[3], "api.tokens[0].name"),
        ];
        for (extra, named) in cases {
            let err = parse(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(err.to_string().contains(named), "{extra:?}: {err}");
        }
        let err = parse("genesis = \"g.json\"\nnode_key = \"k\"\n").unwrap_err();
        assert!(err.to_string().contains("data_dir"), "{err}");
        assert_eq!(err.code(), "CONFIG_PARSE");
    }

    #[test]
    fn tokens_are_kept_by_hash_and_allow_listening_beyond_loopback() {
        let sha = tradeloop_crypto::Hash::sha256(b"secret").to_hex();
        let text = format!(
            "{MINIMAL}[api]\nlisten = \"0.0.0.0:7200\"\n[[api.tokens]]\nname = \"erp\"\n\
             sha256 = \"{sha}\"\nscopes = [\"read\", \"submit\"]\n[[api.tokens]]\n\
             name = \"prometheus\"\nsha256 = \"{}\"\nscopes = [\"metrics\"]\n",
            tradeloop_crypto::Hash::sha256(b"scrape").to_hex()
        );
        let c = parse(&text).unwrap();
        let access = c.api.access();
        assert_eq!(access.tokens.len(), 2);
        assert_eq!(access.tokens[0].sha256, tradeloop_crypto::Hash::sha256(b"secret"));
        use crate::api::auth::Scope;
        assert_eq!(access.tokens[0].scopes, vec![Scope::Read, Scope::Submit]);
        assert_eq!(access.tokens[1].scopes, vec![Scope::Metrics]);
        let twice = text.replace("prometheus", "erp");
        assert!(parse(&twice).unwrap_err().to_string().contains("api.tokens[1].name"));
    }
}
