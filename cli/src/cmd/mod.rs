//! Subcommands, one module per command group.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

pub mod append;
pub mod args;
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

pub use args::{
    load_genesis, now_ms, open_ledger, open_ledger_read_only, read_key, ChainArgs, Source,
    SourceArgs,
};

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
