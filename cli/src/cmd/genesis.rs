//! `tradeloop genesis init|add`.
//!
//! Every write is validated as a loaded genesis is ([`GenesisDoc::check_for_write`]), and a
//! genesis that may already run a chain is never changed in place by accident: see
//! docs/operations.md, "Changing a genesis".

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use tradeloop_crypto::PublicKey;
use tradeloop_ledger::model::genesis::{
    read_genesis_bytes, ConsensusParams, GenesisDoc, Participant, Role, ValidatorEntry,
};
use tradeloop_ledger::{Genesis, Ledger, LedgerError};

use super::{now_ms, read_key};
use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Start a genesis file with no participants.
    Init {
        /// Chain id: 1 to 64 characters of a-z, 0-9, '-', '.', '_', e.g. `tradeloop-asia-eu`.
        #[arg(long)]
        chain_id: String,
        /// Genesis time in Unix milliseconds, 2000-01-01 to 9999-12-31 (default: now).
        #[arg(long)]
        time_ms: Option<u64>,
        /// The file to create; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a participant (and optionally its validator) to a genesis file.
    ///
    /// While the genesis names no validator (no chain can run from it yet) the file is updated
    /// in place. Once it does, give `--out NEW` (the original is left as it is) or `--in-place`,
    /// which is refused if any `--data-dir` given holds this chain.
    Add(Box<AddArgs>),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The genesis file to extend.
    #[arg(long)]
    genesis: PathBuf,
    /// Write the result to this new file instead of changing --genesis.
    #[arg(long, conflicts_with = "in_place")]
    out: Option<PathBuf>,
    /// Rewrite --genesis although it names validators (a different genesis is a different
    /// chain: every data dir of the old one stops opening with it).
    #[arg(long)]
    in_place: bool,
    /// A data dir to check with --in-place: the change is refused if it holds this chain.
    /// Repeatable.
    #[arg(long = "data-dir", requires = "in_place")]
    data_dirs: Vec<PathBuf>,
    /// Participant id, e.g. `cn-exporter-acme`.
    #[arg(long)]
    id: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// exporter, importer, forwarder, bank, customs or auditor.
    #[arg(long)]
    role: String,
    /// ISO 3166-1 alpha-2 country (for customs: its jurisdiction).
    #[arg(long)]
    country: String,
    /// Event-signing public key (hex); repeatable.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Event-signing key file whose public key to add; repeatable.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
    /// Validator node public key (hex): makes this participant run a validator.
    #[arg(long)]
    validator_key: Option<String>,
    /// Validator node key file (instead of --validator-key).
    #[arg(long)]
    validator_key_file: Option<PathBuf>,
    /// Validator voting power, 1 to 2^40.
    #[arg(long, default_value_t = 10)]
    power: u64,
}

fn read_genesis_doc(path: &Path) -> Result<GenesisDoc> {
    let bytes = read_genesis_bytes(path)?;
    GenesisDoc::from_json_bytes(&bytes)
        .with_context(|| format!("{} is not a usable genesis file", path.display()))
}

fn write_genesis_doc(path: &Path, doc: &GenesisDoc, create_new: bool) -> Result<()> {
    doc.check_for_write().context("nothing was written")?;
    let bytes = doc.to_json_bytes();
    if create_new && path.exists() {
        bail!("{} already exists; choose another path", path.display());
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn parse_role(role: &str) -> Result<Role> {
    serde_json::from_value(json!(role)).map_err(|_| {
        anyhow::anyhow!(
            "role \"{role}\" must be one of exporter, importer, forwarder, bank, customs, auditor"
        )
    })
}

pub fn genesis(command: GenesisCommand) -> Result<ExitCode> {
    match command {
        GenesisCommand::Init { chain_id, time_ms, out } => {
            let doc = GenesisDoc {
                chain_id,
                genesis_time_ms: time_ms.unwrap_or_else(now_ms),
                participants: vec![],
                validators: vec![],
                member_nodes: Vec::new(),
                consensus: ConsensusParams::default(),
            };
            write_genesis_doc(&out, &doc, true)?;
            writeln!(
                Out,
                "wrote {}; add participants with `tradeloop genesis add`",
                out.display()
            )?;
        }
        GenesisCommand::Add(args) => add(*args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn add(args: AddArgs) -> Result<()> {
    let original = read_genesis_doc(&args.genesis)?;
    let mut doc = original.clone();
    let mut public_keys = Vec::new();
    for k in &args.keys {
        public_keys.push(PublicKey::from_hex(k).with_context(|| format!("--key {k}"))?);
    }
    for f in &args.key_files {
        public_keys.push(read_key(f)?.public_key());
    }
    let node_key = match (&args.validator_key, &args.validator_key_file) {
        (Some(k), None) => Some(PublicKey::from_hex(k).context("--validator-key")?),
        (None, Some(f)) => Some(read_key(f)?.public_key()),
        (None, None) => None,
        (Some(_), Some(_)) => bail!("give --validator-key or --validator-key-file, not both"),
    };
    doc.participants.push(Participant {
        id: args.id.clone(),
        name: args.name.clone(),
        role: parse_role(&args.role)?,
        country: args.country.clone(),
        keys: public_keys,
    });
    if let Some(node_key) = node_key {
        doc.validators.push(ValidatorEntry {
            participant: args.id.clone(),
            node_key,
            power: args.power,
        });
    }
    let target = match &args.out {
        Some(out) => out.clone(),
        None => {
            check_in_place(&args, &original)?;
            args.genesis.clone()
        }
    };
    write_genesis_doc(&target, &doc, args.out.is_some())?;
    writeln!(Out, "added {} to {}", args.id, target.display())?;
    Ok(())
}

/// Whether `args.genesis` may be rewritten: always while it names no validator (nothing can
/// have run from it), otherwise only with `--in-place` and no given data dir holding its chain.
fn check_in_place(args: &AddArgs, original: &GenesisDoc) -> Result<()> {
    if original.validators.is_empty() {
        return Ok(());
    }
    let shown = args.genesis.display();
    if !args.in_place {
        bail!(
            "{shown} already names validators, so a chain may be running from it, and changing it makes a different chain; \
             write the new genesis with --out NEW, or give --in-place (with --data-dir DIR for each data dir to check) if no chain uses it"
        );
    }
    let genesis = Genesis::from_doc(original.clone())
        .with_context(|| format!("{shown} is not a complete genesis"))?;
    for dir in &args.data_dirs {
        if !dir.join("blocks").is_dir() && !dir.join("index").is_dir() {
            bail!("{} is not a data dir (no blocks/ or index/ in it); give the data dirs of this chain", dir.display());
        }
        match Ledger::open(dir, genesis.clone()) {
            Ok(ledger) => bail!(
                "data dir {} holds chain {} of {shown} at height {}; a changed genesis would orphan it. Write the new genesis with --out NEW instead",
                dir.display(),
                genesis.hash,
                ledger.tip().height
            ),
            Err(LedgerError::WrongChain { .. }) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot tell whether data dir {} holds this chain, so {shown} is left as it is",
                    dir.display()
                )))
            }
        }
    }
    Ok(())
}
