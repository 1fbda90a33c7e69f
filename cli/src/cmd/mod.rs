//! Subcommands, one module per command group.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tradeloop_ledger::{Genesis, Ledger};

pub mod append;
pub mod audit;
pub mod bench;
pub mod client;
pub mod demo;
pub mod devnet;
pub mod event;
pub mod evidence;
pub mod genesis;
pub mod keys;
pub mod node;
pub mod query;
pub mod reindex;
pub mod sim;
pub mod token;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new ed25519 key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key file; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a genesis file.
    #[command(subcommand)]
    Genesis(genesis::GenesisCommand),
    /// Sign events, show a committed one, submit events to a running node.
    #[command(subcommand)]
    Event(event::EventCommand),
    /// Append signed events (JSON lines) to a one-validator local chain.
    Append(append::AppendArgs),
    /// Print the events of a shipment, order, declaration, letter of credit or invoice in order.
    Trace {
        #[command(flatten)]
        source: SourceArgs,
        /// `shipment:ID`, `order:ID`, `declaration:ID`, `lc:ID` or `invoice:ID`.
        reference: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show whether an order's trade loop is closed and which legs are open.
    Trade {
        #[command(flatten)]
        source: SourceArgs,
        /// The order id.
        order_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a whole chain offline from the genesis alone (exit 0 only if everything holds).
    Verify(audit::VerifyArgs),
    /// Write the chain to one self-contained export file (binary or JSONL), or its shipment
    /// and customs events as an EPCIS 2.0 document.
    Export(evidence::ExportArgs),
    /// Write an evidence bundle: one event, or every event of a trade, with the inclusion
    /// proofs, headers and certificates a third party checks offline (`verify-proof`).
    Proof(evidence::ProofArgs),
    /// Check an evidence bundle offline against the genesis (exit 0 only if everything holds).
    VerifyProof(evidence::VerifyProofArgs),
    /// Compare two copies of the chain (data dirs or exports): exit 0 the same, 3 one is a
    /// prefix of the other, 4 a split view (naming the validators that signed both blocks).
    Compare(evidence::CompareArgs),
    /// Rebuild the sled index from the block log (refuses if the log is damaged or shorter
    /// than the old index recorded, unless told what to drop with --discard-from).
    Reindex {
        #[command(flatten)]
        chain: ChainArgs,
        /// Drop block HEIGHT and every block after it (and any damage there) from the log
        /// before rebuilding. The dropped bytes are saved under DIR/discarded/. Use only when
        /// the blocks cannot be restored from an export or resynced from peers.
        #[arg(long, value_name = "HEIGHT", value_parser = clap::value_parser!(u64).range(1..))]
        discard_from: Option<u64>,
    },
    /// Write a new data dir from an export file, after verifying every block of it.
    Restore {
        /// The export file (from `tradeloop export`).
        #[arg(long)]
        export: PathBuf,
        /// The chain's genesis file (the export must be of this chain).
        #[arg(long)]
        genesis: PathBuf,
        /// The data dir to create; it must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one member node from its node.toml (Ctrl-C or SIGTERM stops it cleanly).
    Node(node::NodeArgs),
    /// A local network of member nodes on loopback.
    #[command(subcommand)]
    Devnet(devnet::DevnetCommand),
    /// Run a sample closed-loop trade on a local chain and audit it.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show a running node's status (over its HTTP API).
    Status(client::StatusArgs),
    /// API bearer tokens for a node's node.toml.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Run the deterministic consensus simulator (validators, network and clock from a seed).
    Sim(sim::SimArgs),
}

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
    Remote(client::NodeArgs),
}

impl SourceArgs {
    /// The one source these arguments name (clap has checked that exactly one is given).
    pub fn source(&self) -> Result<Source> {
        match (&self.node, &self.data_dir, &self.genesis) {
            (Some(node), _, _) => Ok(Source::Remote(client::NodeArgs {
                node: node.clone(),
                token: self.token.clone(),
            })),
            (None, Some(data_dir), Some(genesis)) => Ok(Source::Local(ChainArgs {
                data_dir: data_dir.clone(),
                genesis: genesis.clone(),
            })),
            _ => anyhow::bail!("give --data-dir DIR --genesis G.json, or --node URL"),
        }
    }
}

#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The node's data dir.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Keygen { out, json } => keys::keygen(&out, json),
        Command::Genesis(g) => genesis::genesis(g),
        Command::Event(event::EventCommand::Sign { key, genesis, body }) => {
            event::event_sign(&key, &genesis, &body)
        }
        Command::Event(event::EventCommand::Show { source, id, json }) => {
            event::event_show(&source.source()?, &id, json)
        }
        Command::Event(event::EventCommand::Submit(args)) => client::submit(args),
        Command::Append(args) => append::append(args),
        Command::Trace { source, reference, json } => {
            query::trace(&source.source()?, &reference, json)
        }
        Command::Trade { source, order_id, json } => {
            query::trade(&source.source()?, &order_id, json)
        }
        Command::Verify(args) => audit::verify(args),
        Command::Export(args) => evidence::export(args),
        Command::Proof(args) => evidence::proof(args),
        Command::VerifyProof(args) => evidence::verify_proof(args),
        Command::Compare(args) => evidence::compare_copies(args),
        Command::Reindex { chain, discard_from } => reindex::reindex(&chain, discard_from),
        Command::Restore { export, genesis, data_dir, json } => {
            reindex::restore(&export, &genesis, &data_dir, json)
        }
        Command::Node(args) => node::run(args),
        Command::Devnet(d) => devnet::run(d),
        Command::Demo(args) => demo::run(args),
        Command::Bench(b) => bench::run(b),
        Command::Sim(args) => sim::sim(args),
        Command::Status(args) => client::status(args),
        Command::Token(t) => token::run(t),
    }
}

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

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
