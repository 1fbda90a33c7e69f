//! What several commands share: where the chain is (a data dir with its genesis, or a
//! running node), opening it, reading a key file, and the wall clock.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use tradeloop_ledger::{Genesis, Ledger};

/// Where a read command reads: a data dir offline, or a running node over its HTTP API.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The node's data dir, read offline (with --genesis).
    #[arg(long, required_unless_present = "node", conflicts_with = "node", requires = "genesis")]
    pub data_dir: Option<PathBuf>,
    /// The chain's genesis file (with --data-dir).
    #[arg(long, conflicts_with = "node")]
    pub genesis: Option<PathBuf>,
    /// Ask a running node over its HTTP API instead, e.g. http://127.0.0.1:7071.
    #[arg(long, value_name = "URL")]
    pub node: Option<String>,
    /// Bearer token for --node, when the node requires one; read from TRADELOOP_TOKEN when
    /// not given.
    #[arg(long, value_name = "TOKEN", env = "TRADELOOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A read command's source, resolved.
#[derive(Debug)]
pub enum Source {
    /// A data dir, read offline.
    Local(ChainArgs),
    /// A running node.
    Remote(NodeArgs),
}

impl SourceArgs {
    /// The one source these arguments name (clap has checked that exactly one is given).
    pub fn source(&self) -> Result<Source> {
        match (&self.node, &self.data_dir, &self.genesis) {
            (Some(node), _, _) => {
                Ok(Source::Remote(NodeArgs { node: node.clone(), token: self.token.clone() }))
            }
            (None, Some(data_dir), Some(genesis)) => Ok(Source::Local(ChainArgs {
                data_dir: data_dir.clone(),
                genesis: genesis.clone(),
            })),
            _ => anyhow::bail!("give --data-dir DIR --genesis G.json, or --node URL"),
        }
    }
}

/// A data dir and the genesis of its chain, for the commands that read or write one offline.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The node's data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
}

/// Reads and checks a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis> {
    Genesis::load(path).with_context(|| format!("cannot use genesis {}", path.display()))
}

/// Opens a data dir as its writer (`append`): creates it if missing, cuts a provably torn
/// tail and says so.
pub fn open_ledger(chain: &ChainArgs) -> Result<Ledger> {
    let genesis = load_genesis(&chain.genesis)?;
    let ledger = Ledger::open(&chain.data_dir, genesis)
        .with_context(|| format!("cannot open data dir {}", chain.data_dir.display()))?;
    if let Some(torn) = &ledger.torn_tail {
        eprintln!("note: cut a torn tail left by an earlier crash: {torn}");
    }
    Ok(ledger)
}

/// Opens a data dir for a read command: nothing in it is created or changed.
pub fn open_ledger_read_only(chain: &ChainArgs) -> Result<Ledger> {
    let genesis = load_genesis(&chain.genesis)?;
    let ledger = Ledger::open_read_only(&chain.data_dir, genesis)
        .with_context(|| format!("cannot read data dir {}", chain.data_dir.display()))?;
    if let Some(torn) = &ledger.torn_tail {
        eprintln!(
            "note: the block log ends in an unfinished write ({torn}); it is not part of the \
             chain and is left in place (the next append or node start cuts it)"
        );
    }
    Ok(ledger)
}

/// Reads a key file, warning on standard error if others can read it.
pub fn read_key(path: &Path) -> Result<tradeloop_crypto::SigningKey> {
    if let Some(warning) = tradeloop_crypto::keyfile::permission_warning(path) {
        writeln!(crate::output::Diag, "warning: {warning}");
    }
    Ok(tradeloop_crypto::keyfile::read_key_file(path)?)
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A running node to ask over its HTTP API.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's API address, e.g. http://127.0.0.1:7071 (its `[api] listen`).
    #[arg(long, value_name = "URL")]
    pub node: String,
    /// Bearer token, when the node requires one (its operator creates it with `tradeloop token
    /// new`); read from TRADELOOP_TOKEN when not given.
    #[arg(long, value_name = "TOKEN", env = "TRADELOOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}
