//! Subcommands.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rayon::prelude::*;
use serde_json::json;
use tradeloop_crypto::keyfile::{read_key_file, write_key_file};
use tradeloop_crypto::{PublicKey, SigningKey};
use tradeloop_ledger::audit::{verify_data_dir, verify_export, AuditFailure, AuditReport};
use tradeloop_ledger::genesis::{ConsensusParams, GenesisDoc, Participant, Role, ValidatorEntry};
use tradeloop_ledger::store::EventRecord;
use tradeloop_ledger::{Genesis, Ledger, SignedEvent};

/// Longest line accepted in an events file, in bytes.
pub const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

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
    Genesis(GenesisCommand),
    /// Sign events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Append signed events (JSON lines) to a one-validator local chain.
    Append(AppendArgs),
    /// Print the events of a shipment, order, declaration, letter of credit or invoice in order.
    Trace {
        #[command(flatten)]
        chain: ChainArgs,
        /// `shipment:ID`, `order:ID`, `declaration:ID`, `lc:ID` or `invoice:ID`.
        reference: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show whether an order's trade loop is closed and which legs are open.
    Trade {
        #[command(flatten)]
        chain: ChainArgs,
        /// The order id.
        order_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a whole chain offline from the genesis alone (exit 0 only if everything holds).
    Verify(VerifyArgs),
    /// Write the whole chain to one self-contained export file.
    Export {
        #[command(flatten)]
        chain: ChainArgs,
        /// The export file to create.
        #[arg(long)]
        out: PathBuf,
    },
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
    /// Run a sample closed-loop trade on a local chain and audit it.
    Demo(crate::demo::DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Run the deterministic consensus simulator (validators, network and clock from a seed).
    Sim(SimArgs),
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

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The validator's node key file; it must be the chain's only validator.
    #[arg(long)]
    pub validator_key: PathBuf,
    /// Events per block (default: the genesis maximum).
    #[arg(long)]
    pub block_events: Option<usize>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    /// A file of signed event envelopes, one JSON object per line (`-` for standard input).
    pub events: PathBuf,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Validators (1 to 7 with the sample cast).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Seeds per scenario (1..=N).
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// Run only this seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run only this scenario (clean, lossy, isolate-one, split-2-2, rotating, crash-restart,
    /// byzantine-equivocate, byzantine-invalid-blocks, byzantine-future-rounds).
    #[arg(long, conflicts_with = "control")]
    pub scenario: Option<String>,
    /// Run a negative control instead (lost-wal, byzantine-third, majority-quorum): exits
    /// non-zero naming the violation it caught.
    #[arg(long)]
    pub control: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A node's data dir (the node must be stopped).
    #[arg(long, conflicts_with = "export", required_unless_present = "export")]
    pub data_dir: Option<PathBuf>,
    /// An export file.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// The genesis file you trust.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Keygen { out, json } => keygen(&out, json),
        Command::Genesis(g) => genesis(g),
        Command::Event(EventCommand::Sign { key, genesis, body }) => {
            event_sign(&key, genesis.as_deref(), &body)
        }
        Command::Event(EventCommand::Show { chain, id, json }) => event_show(&chain, &id, json),
        Command::Append(args) => append(args),
        Command::Trace { chain, reference, json } => trace(&chain, &reference, json),
        Command::Trade { chain, order_id, json } => trade(&chain, &order_id, json),
        Command::Verify(args) => verify(args),
        Command::Export { chain, out } => {
            let ledger = open_ledger_read_only(&chain)?;
            let blocks = tradeloop_ledger::export::export(&ledger, &out)?;
            println!("exported {blocks} blocks to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex { chain, discard_from } => reindex(&chain, discard_from),
        Command::Restore { export, genesis, data_dir, json } => {
            restore(&export, &genesis, &data_dir, json)
        }
        Command::Demo(args) => crate::demo::run(args),
        Command::Bench(b) => crate::bench::run(b),
        Command::Sim(args) => sim(args),
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

fn reindex(chain: &ChainArgs, discard_from: Option<u64>) -> Result<ExitCode> {
    let genesis = load_genesis(&chain.genesis)?;
    let (ledger, report) = Ledger::reindex(&chain.data_dir, genesis, discard_from)
        .with_context(|| format!("reindex of {} refused", chain.data_dir.display()))?;
    if let Some(d) = &report.discarded {
        let damaged = if d.damaged_bytes_removed {
            " and the damaged part of the log after them"
        } else {
            ""
        };
        eprintln!(
            "discarded {} intact block(s) from height {}{damaged}: {} bytes, saved to {}",
            d.intact_blocks,
            d.from_height,
            d.bytes,
            d.saved_to.display()
        );
    }
    if report.old_index_tip.is_none() {
        eprintln!(
            "note: the old index could not be read, so its committed height could not be \
             compared with the log; run `tradeloop verify` against an export if you have one"
        );
    }
    println!(
        "index rebuilt from the block log: {} blocks, tip {}",
        ledger.tip().height,
        ledger.tip().hash
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(export: &Path, genesis: &Path, data_dir: &Path, json: bool) -> Result<ExitCode> {
    let genesis = load_genesis(genesis)?;
    let bar = progress_bar(0);
    let result = tradeloop_ledger::restore::restore(export, &genesis, data_dir, &mut |h| {
        if let Some(b) = &bar {
            b.set_position(h);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = result.with_context(|| {
        format!("cannot restore {} from {}", data_dir.display(), export.display())
    })?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "restored {} blocks ({} events) into {}, verified from the genesis; tip {}",
            report.blocks,
            report.events,
            report.data_dir.display(),
            report.tip_hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn keygen(out: &Path, json: bool) -> Result<ExitCode> {
    let key = SigningKey::generate()?;
    write_key_file(out, &key)?;
    if json {
        println!("{}", json!({"public_key": key.public_key().to_hex(), "file": out}));
    } else {
        println!("{}", key.public_key().to_hex());
    }
    Ok(ExitCode::SUCCESS)
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

fn genesis(command: GenesisCommand) -> Result<ExitCode> {
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

fn event_sign(key_path: &Path, genesis: Option<&Path>, body_path: &Path) -> Result<ExitCode> {
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

fn event_show(chain: &ChainArgs, id: &str, json: bool) -> Result<ExitCode> {
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

struct Rejected {
    line: usize,
    code: String,
    message: String,
}

fn append(args: AppendArgs) -> Result<ExitCode> {
    let mut ledger = open_ledger(&args.chain)?;
    let validator = read_key_file(&args.validator_key)?;
    if ledger.genesis().validators.power_of(&validator.public_key()).is_none() {
        bail!("{} is not a validator key of this chain", args.validator_key.display());
    }
    if ledger.caught_up_on_open > 0 {
        eprintln!(
            "note: caught the index up by {} block(s) from the block log",
            ledger.caught_up_on_open
        );
    }
    let max = ledger.genesis().doc.consensus.max_block_events as usize;
    let per_block = args.block_events.unwrap_or(max).clamp(1, max);
    let reader: Box<dyn BufRead> = if args.events == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.events)
            .with_context(|| format!("cannot open {}", args.events.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut rejected = Vec::new();
    let (mut committed, mut blocks) = (0u64, 0u64);
    // Lines are read lazily, a block's worth at a time, so memory stays bounded by the block
    // size however long the file is. Unparseable lines are reported, not committed.
    let mut lines = reader.lines().enumerate();
    let mut line_numbers: std::collections::VecDeque<Vec<usize>> =
        std::collections::VecDeque::new();
    let mut read_error = None;
    let chunks = std::iter::from_fn(|| {
        let mut chunk = Vec::with_capacity(per_block);
        let mut numbers = Vec::with_capacity(per_block);
        for (n, line) in lines.by_ref() {
            let line_no = n + 1;
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    read_error = Some(format!("cannot read line {line_no}: {e}"));
                    break;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > MAX_EVENT_LINE_BYTES {
                rejected.push(Rejected {
                    line: line_no,
                    code: "EVENT_TOO_LARGE".into(),
                    message: "line is longer than 1 MiB".into(),
                });
                continue;
            }
            match SignedEvent::from_envelope_json(line.as_bytes()) {
                Ok(e) => {
                    chunk.push(e);
                    numbers.push(line_no);
                }
                Err(r) => rejected.push(Rejected {
                    line: line_no,
                    code: r.code.as_str(),
                    message: r.message,
                }),
            }
            if chunk.len() >= per_block {
                break;
            }
        }
        if chunk.is_empty() {
            return None;
        }
        line_numbers.push_back(numbers);
        Some(chunk)
    });
    let mut block_rejections = Vec::new();
    ledger.append_local_stream(chunks, &validator, &now_ms, &mut |chunk, block, rej| {
        block_rejections.push(rej);
        for b in block {
            committed += b.block.events.len() as u64;
            blocks += 1;
        }
        let _ = chunk;
    })?;
    if let Some(e) = read_error {
        bail!("{e}; the events before it were processed");
    }
    for (numbers, rej) in line_numbers.into_iter().zip(block_rejections) {
        for (i, r) in rej {
            rejected.push(Rejected { line: numbers[i], code: r.code.as_str(), message: r.message });
        }
    }
    rejected.sort_by_key(|r| r.line);
    let tip = ledger.tip();
    if args.json {
        let rej: Vec<_> = rejected
            .iter()
            .map(|r| json!({"line": r.line, "code": r.code, "message": r.message}))
            .collect();
        println!(
            "{}",
            json!({"committed": committed, "blocks": blocks, "rejected": rej, "height": tip.height, "tip": tip.hash})
        );
    } else {
        for r in &rejected {
            eprintln!("line {}: rejected {}: {}", r.line, r.code, r.message);
        }
        println!(
            "committed {committed} events in {blocks} blocks; {} rejected; height {} tip {}",
            rejected.len(),
            tip.height,
            tip.hash
        );
    }
    Ok(if rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub fn print_trace(records: &[EventRecord]) {
    for r in records {
        let body = &r.body;
        let pick = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let detail =
            ["location", "condition", "declaration_id", "invoice_id", "doc_id", "lc_id", "amount"]
                .iter()
                .filter_map(|k| pick(k).map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" ");
        println!("  h{:<5} {:<30} {:<24} {}", r.height, r.kind, r.author, detail);
    }
}

fn trace(chain: &ChainArgs, reference: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger_read_only(chain)?;
    let records = ledger.trace(reference)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        println!("{reference}: {} events", records.len());
        print_trace(&records);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_trade(status: &tradeloop_ledger::store::TradeStatus) {
    println!(
        "trade {} ({} -> {}): {}",
        status.order_id,
        status.buyer,
        status.seller,
        if status.closed {
            "CLOSED".to_string()
        } else {
            format!("open legs: {}", status.open_legs.join(", "))
        }
    );
    for leg in &status.legs {
        println!("  [{}] {:<16} {}", if leg.done { "x" } else { " " }, leg.leg, leg.detail);
    }
}

fn trade(chain: &ChainArgs, order_id: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger_read_only(chain)?;
    let status = ledger.trade_status(order_id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_trade(&status);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = if total > 0 {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} verifying [{bar:40}] {pos}/{len} blocks {per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

pub fn run_verify(
    data_dir: Option<&Path>,
    export: Option<&Path>,
    genesis: &Genesis,
) -> Result<AuditReport, AuditFailure> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut progress = |h: u64, total: u64| {
        let b = bar.get_or_insert_with(|| {
            progress_bar(total).unwrap_or_else(indicatif::ProgressBar::hidden)
        });
        b.set_position(h);
    };
    let result = match (data_dir, export) {
        (Some(d), _) => verify_data_dir(d, genesis, &mut progress),
        (None, Some(e)) => verify_export(e, genesis, &mut progress),
        (None, None) => {
            Err(AuditFailure { height: 0, reason: "give --data-dir or --export".into() })
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let genesis = load_genesis(&args.genesis)?;
    let started = std::time::Instant::now();
    let result = run_verify(args.data_dir.as_deref(), args.export.as_deref(), &genesis);
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(report) => {
            if args.json {
                println!("{}", json!({"ok": true, "report": report, "seconds": secs}));
            } else {
                println!(
                    "OK: chain {} verified from its genesis: {} blocks, {} events, tip {}, app hash {} ({secs:.2} s)",
                    report.chain, report.blocks, report.events, report.tip_hash, report.app_hash
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if args.json {
                println!("{}", json!({"ok": false, "failure": failure}));
            } else {
                println!("FAILED at {failure}");
            }
            let _ = std::io::stdout().flush();
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs the named scenario or control (`make` builds its config) for every seed, in parallel:
/// seeds are independent and each run is deterministic. Results are in seed order.
fn run_seeds(
    seeds: &[u64],
    make: impl Fn(u64) -> Option<tradeloop_node::sim::SimConfig> + Sync,
) -> Vec<Result<tradeloop_node::sim::SimReport, String>> {
    seeds
        .par_iter()
        .map(|&seed| {
            make(seed)
                .ok_or_else(|| "unknown scenario".to_string())
                .and_then(|config| tradeloop_node::sim::run(&config))
        })
        .collect()
}

fn sim_control(args: &SimArgs, control: &str, seeds: &[u64]) -> Result<ExitCode> {
    use tradeloop_node::sim::{SimConfig, CONTROLS};
    if !CONTROLS.contains(&control) {
        bail!("unknown control {control}; the controls are {}", CONTROLS.join(", "));
    }
    let mut caught = 0;
    let reports = run_seeds(seeds, |seed| SimConfig::control(control, args.validators, seed));
    for (&seed, report) in seeds.iter().zip(reports) {
        let report = report.map_err(anyhow::Error::msg)?;
        if let Some((what, detail)) = report.violation {
            if what != "liveness" {
                caught += 1;
                if caught == 1 {
                    println!("control {control} seed {seed}: caught {what}: {detail}");
                    println!(
                        "  replay: tradeloop sim --validators {} --control {control} --seed {seed}",
                        args.validators
                    );
                }
            }
        }
    }
    if caught == 0 {
        println!("control {control} passed clean over {} seeds: the checkers missed it (a bug in the checkers)", seeds.len());
        return Ok(ExitCode::SUCCESS);
    }
    println!("control {control}: violations caught in {caught} of {} seeds", seeds.len());
    Ok(ExitCode::FAILURE)
}

fn sim(args: SimArgs) -> Result<ExitCode> {
    use tradeloop_node::sim::{SimConfig, SCENARIOS};
    if !(1..=7).contains(&args.validators) {
        bail!("--validators must be 1 to 7 (the sample cast hosts seven validators)");
    }
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (1..=args.seeds).collect(),
    };
    if let Some(control) = &args.control {
        return sim_control(&args, control, &seeds);
    }
    let scenarios: Vec<&str> = match &args.scenario {
        Some(s) if SCENARIOS.contains(&s.as_str()) => vec![s.as_str()],
        Some(s) => bail!("unknown scenario {s}; the scenarios are {}", SCENARIOS.join(", ")),
        None => SCENARIOS.to_vec(),
    };
    let mut failures = 0;
    for scenario in scenarios {
        let (mut ok, mut total_ms, mut evidence) = (0u64, 0u64, 0usize);
        let reports =
            run_seeds(&seeds, |seed| SimConfig::scenario(scenario, args.validators, seed));
        for (&seed, result) in seeds.iter().zip(reports) {
            if let Ok(report) = &result {
                evidence += report.evidence.len();
            }
            match result {
                Ok(report) if report.violation.is_none() => {
                    ok += 1;
                    total_ms += report.time_ms;
                }
                Ok(report) => {
                    failures += 1;
                    let (what, detail) = report.violation.unwrap_or_default();
                    println!("FAIL {scenario} seed {seed}: {what}: {detail}");
                    println!("  replay: tradeloop sim --validators {} --scenario {scenario} --seed {seed}", args.validators);
                }
                Err(e) => {
                    failures += 1;
                    println!("FAIL {scenario} seed {seed}: {e}");
                    println!("  replay: tradeloop sim --validators {} --scenario {scenario} --seed {seed}", args.validators);
                }
            }
        }
        let mean = total_ms.checked_div(ok).unwrap_or(0);
        println!(
            "{scenario:<24} {ok}/{} seeds passed (n = {}; mean virtual time to target {mean} ms; equivocators proven by honest validators' evidence: {evidence})",
            seeds.len(),
            args.validators
        );
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
