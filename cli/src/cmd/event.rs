//! `tradeloop event sign|show` (and `submit`, which lives with the node client in `client`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tradeloop_ledger::encoding::canonical::Value;
use tradeloop_ledger::limits::MAX_EVENT_BYTES;
use tradeloop_ledger::model::event::{check_unsigned_body, parse_body_json};
use tradeloop_ledger::{Rejection, SignedEvent};

use super::{load_genesis, now_ms, open_ledger_read_only, read_key};
use crate::input::read_bounded;
use crate::output::Out;

/// Largest body file `event sign` reads, in bytes: twice the largest canonical body
/// (`MAX_EVENT_BYTES`), room for any pretty-printing of a body the ledger can accept.
pub const MAX_BODY_FILE_BYTES: usize = 2 * MAX_EVENT_BYTES as usize;

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Sign an event body; prints the envelope as one JSON line.
    ///
    /// The body is a JSON object with `author`, `kind` and the kind's fields. `chain`, `key`,
    /// `time_ms` (now) and `nonce` (random) are filled in when missing. Before signing, the body
    /// gets every check the ledger makes without its state (JSON strictness, fields, kind,
    /// chain, author, key, size); a body the ledger would refuse is refused with the same code,
    /// and nothing is signed or printed.
    Sign {
        /// The signer's key file.
        #[arg(long)]
        key: PathBuf,
        /// The chain's genesis file (fills in `chain`; the checks need it).
        #[arg(long)]
        genesis: PathBuf,
        /// The body file, or `-` for standard input.
        body: PathBuf,
    },
    /// Submit signed events to a running node over its HTTP API; prints one line per event.
    ///
    /// Exit status 0 only if every event was accepted (with --wait: committed). Events the
    /// mempool has no room for are sent again after the node's Retry-After, a bounded number of
    /// times.
    Submit(super::client::SubmitArgs),
    /// Show a committed event by its id.
    Show {
        #[command(flatten)]
        source: super::SourceArgs,
        /// The event id (64 hex).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn event_sign(key_path: &Path, genesis: &Path, body_path: &Path) -> Result<ExitCode> {
    let key = read_key(key_path)?;
    let genesis = load_genesis(genesis)?;
    let text = read_bounded(body_path, MAX_BODY_FILE_BYTES, "body file", "MAX_BODY_FILE_BYTES")?;
    let refused = |r: Rejection| {
        anyhow::anyhow!("rejected {}: {}; nothing was signed", r.code.as_str(), r.message)
    };
    let mut body = parse_body_json(&text).map_err(refused)?;
    body.entry("chain".into()).or_insert_with(|| Value::String(genesis.hash_hex().into()));
    body.entry("key".into()).or_insert_with(|| Value::String(key.public_key().to_hex()));
    if !body.contains_key("time_ms") {
        let now =
            i64::try_from(now_ms()).context("the system clock is past the year 292 million")?;
        body.insert("time_ms".into(), Value::Int(now));
    }
    if !body.contains_key("nonce") {
        let mut n = [0u8; 16];
        getrandom::fill(&mut n)
            .map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
        body.insert("nonce".into(), Value::String(hex::encode(n)));
    }
    let body = Value::Object(body);
    let checked = check_unsigned_body(&genesis, &body.to_canonical()).map_err(refused)?;
    if checked.key != key.public_key() {
        // The ledger would refuse the signature: it must be made with the body's key.
        bail!(
            "rejected BAD_SIGNATURE: the body's \"key\" {} is not the key of {} ({}); nothing was signed",
            checked.key,
            key_path.display(),
            key.public_key()
        );
    }
    let signed = SignedEvent::sign_value(&body, &key);
    writeln!(Out, "{}", signed.to_envelope_json())?;
    Ok(ExitCode::SUCCESS)
}

pub fn event_show(source: &super::Source, id: &str, json: bool) -> Result<ExitCode> {
    let hash = tradeloop_crypto::Hash::from_hex(id).context("the event id is 64 hex characters")?;
    let record = match source {
        super::Source::Local(chain) => {
            let ledger = open_ledger_read_only(chain)?;
            let Some(record) = ledger.event(&hash)? else {
                bail!("no event {id} on this ledger");
            };
            record
        }
        super::Source::Remote(node) => {
            let client = super::client::Client::for_node(node, super::client::REQUEST_TIMEOUT_MS)?;
            let view: tradeloop_node::api::EventView = client
                .get_json(&format!("/v1/events/{}", hash.to_hex()), &format!("event {id}"))?;
            super::query::record_of(view)?
        }
    };
    if json {
        writeln!(Out, "{}", serde_json::to_string_pretty(&record)?)?;
    } else {
        writeln!(
            Out,
            "event {} at height {} (index {}), block time {}",
            record.id, record.height, record.index, record.block_time_ms
        )?;
        writeln!(Out, "  {} by {}", record.kind, record.author)?;
        writeln!(Out, "{}", serde_json::to_string_pretty(&record.body)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
