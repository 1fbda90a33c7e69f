//! `tradeloop event sign|show`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use tradeloop_crypto::keyfile::read_key_file;
use tradeloop_ledger::SignedEvent;

use super::{load_genesis, now_ms, open_ledger_read_only, ChainArgs};

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Sign an event body; prints the envelope as one JSON line.
    ///
    /// The body is a JSON object with `author`, `kind` and the kind's fields. `chain`, `key`,
    /// `time_ms` (now) and `nonce` (random) are filled in when missing and --genesis is given.
    Sign {
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The genesis file (to fill in `chain`).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// The body file, or `-` for standard input.
        body: PathBuf,
    },
    /// Show a committed event by its id.
    Show {
        #[command(flatten)]
        chain: ChainArgs,
        /// The event id (64 hex).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn event_sign(key_path: &Path, genesis: Option<&Path>, body_path: &Path) -> Result<ExitCode> {
    let key = read_key_file(key_path)?;
    let text = if body_path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(body_path)
            .with_context(|| format!("cannot read {}", body_path.display()))?
    };
    let mut body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).context("the body must be a JSON object")?;
    if let Some(g) = genesis {
        let genesis = load_genesis(g)?;
        body.entry("chain").or_insert_with(|| json!(genesis.hash.to_hex()));
    }
    body.entry("key").or_insert_with(|| json!(key.public_key().to_hex()));
    body.entry("time_ms").or_insert_with(|| json!(now_ms()));
    if !body.contains_key("nonce") {
        let mut n = [0u8; 16];
        getrandom::fill(&mut n)
            .map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
        body.insert("nonce".into(), json!(hex::encode(n)));
    }
    let signed = SignedEvent::sign(&serde_json::Value::Object(body), &key)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    println!("{}", signed.to_envelope_json());
    Ok(ExitCode::SUCCESS)
}

pub fn event_show(chain: &ChainArgs, id: &str, json: bool) -> Result<ExitCode> {
    let hash = tradeloop_crypto::Hash::from_hex(id).context("the event id is 64 hex characters")?;
    let ledger = open_ledger_read_only(chain)?;
    let Some(record) = ledger.event(&hash)? else {
        bail!("no event {id} on this ledger");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!(
            "event {} at height {} (index {}), block time {}",
            record.id, record.height, record.index, record.block_time_ms
        );
        println!("  {} by {}", record.kind, record.author);
        println!("{}", serde_json::to_string_pretty(&record.body)?);
    }
    Ok(ExitCode::SUCCESS)
}
