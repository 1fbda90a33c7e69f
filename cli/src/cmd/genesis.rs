//! `tradeloop genesis init|add`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use tradeloop_crypto::keyfile::read_key_file;
use tradeloop_crypto::PublicKey;
use tradeloop_ledger::genesis::{ConsensusParams, GenesisDoc, Participant, Role, ValidatorEntry};
use tradeloop_ledger::Genesis;

use super::now_ms;

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Start a genesis file with no participants.
    Init {
        /// Chain id, e.g. `tradeloop-asia-eu`.
        #[arg(long)]
        chain_id: String,
        /// Genesis time in Unix milliseconds (default: now).
        #[arg(long)]
        time_ms: Option<u64>,
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a participant (and optionally its validator) to a genesis file.
    Add {
        /// The genesis file to update.
        #[arg(long)]
        genesis: PathBuf,
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
        /// Validator voting power.
        #[arg(long, default_value_t = 10)]
        power: u64,
    },
}

fn read_genesis_doc(path: &Path) -> Result<GenesisDoc> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a genesis file", path.display()))
}

fn write_genesis_doc(path: &Path, doc: &GenesisDoc, create_new: bool) -> Result<()> {
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
                consensus: ConsensusParams::default(),
            };
            write_genesis_doc(&out, &doc, true)?;
            println!("wrote {}; add participants with `tradeloop genesis add`", out.display());
        }
        GenesisCommand::Add {
            genesis,
            id,
            name,
            role,
            country,
            keys,
            key_files,
            validator_key,
            validator_key_file,
            power,
        } => {
            let mut doc = read_genesis_doc(&genesis)?;
            let mut public_keys = Vec::new();
            for k in &keys {
                public_keys.push(PublicKey::from_hex(k).with_context(|| format!("--key {k}"))?);
            }
            for f in &key_files {
                public_keys.push(read_key_file(f)?.public_key());
            }
            let node_key = match (validator_key, validator_key_file) {
                (Some(k), None) => Some(PublicKey::from_hex(&k).context("--validator-key")?),
                (None, Some(f)) => Some(read_key_file(&f)?.public_key()),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    bail!("give --validator-key or --validator-key-file, not both")
                }
            };
            doc.participants.push(Participant {
                id: id.clone(),
                name,
                role: parse_role(&role)?,
                country,
                keys: public_keys,
            });
            if let Some(node_key) = node_key {
                doc.validators.push(ValidatorEntry { participant: id.clone(), node_key, power });
            }
            // Check what can be checked before writing; a genesis with no validator yet is fine.
            if !doc.validators.is_empty() {
                Genesis::from_doc(doc.clone())?;
            } else {
                tradeloop_ledger::genesis::check_participant_id(&id).map_err(anyhow::Error::msg)?;
            }
            write_genesis_doc(&genesis, &doc, false)?;
            println!("added {id} to {}", genesis.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
