//! Evidence for third parties: `proof`, `verify-proof`, `compare`, and the open export formats
//! (`export --format jsonl|epcis`). The work is in the ledger crate (proof, compare, jsonl,
//! epcis); these are thin shells over it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use tradeloop_crypto::Hash;
use tradeloop_ledger::evidence::compare::{compare, Comparison, ShownHeader, Side};
use tradeloop_ledger::evidence::proof::{
    event_bundle, trade_bundle, verify_bundle, BundleReport, EvidenceBundle, MAX_BUNDLE_BYTES,
};
use tradeloop_ledger::export::epcis::{default_base, EpcisBuilder, EpcisFilter};
use tradeloop_ledger::export::{open_export, ExportItem};
use tradeloop_ledger::model::block::CertifiedBlock;
use tradeloop_ledger::model::fields::rfc3339_ms;
use tradeloop_ledger::{Genesis, Ledger};

use super::{load_genesis, now_ms, open_ledger_read_only, ChainArgs};
use crate::input::read_bounded;
use crate::output::Out;

/// `compare`: the copies hold the same blocks to the same tip.
pub const COMPARE_SAME: u8 = 0;
/// `compare`: the same blocks up to the shorter copy's tip; the other is longer.
pub const COMPARE_PREFIX: u8 = 3;
/// `compare`: a split view, different blocks at one height.
pub const COMPARE_SPLIT: u8 = 4;

#[derive(Debug, Args)]
pub struct ProofArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// The event id (64 hex).
    #[arg(required_unless_present = "trade", conflicts_with = "trade")]
    pub event_id: Option<String>,
    /// Bundle every event of the trade of this order id instead (one header and certificate per
    /// block, shared by its events).
    #[arg(long, value_name = "ORDER_ID")]
    pub trade: Option<String>,
    /// The bundle file to create (it must not exist); `-` for standard output.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn proof(args: ProofArgs) -> Result<ExitCode> {
    let bundle = match args.source.source()? {
        super::Source::Local(chain) => {
            let ledger = open_ledger_read_only(&chain)?;
            match (&args.event_id, &args.trade) {
                (Some(id), _) => {
                    let id = Hash::from_hex(id).context("the event id is 64 hex characters")?;
                    event_bundle(&ledger, &id)?
                }
                (None, Some(order)) => trade_bundle(&ledger, order)?,
                (None, None) => bail!("give an EVENT_ID or --trade ORDER_ID"),
            }
        }
        super::Source::Remote(node) => {
            let client = super::client::Client::for_node(&node, super::client::REQUEST_TIMEOUT_MS)?;
            let (path, what) = match (&args.event_id, &args.trade) {
                (Some(id), _) => {
                    let id = Hash::from_hex(id).context("the event id is 64 hex characters")?;
                    (format!("/v1/events/{}/proof", id.to_hex()), format!("a proof of event {id}"))
                }
                (None, Some(order)) => (
                    format!("/v1/trades/{}/proof", super::query::segment(order)),
                    format!("a proof of trade {order}"),
                ),
                (None, None) => bail!("give an EVENT_ID or --trade ORDER_ID"),
            };
            let text = client.get_text(&path, &what)?;
            // Parsed (not verified: `verify-proof` does that against a genesis the reader
            // trusts) so that what is written is a bundle and is written as this build writes it.
            serde_json::from_str::<EvidenceBundle>(&text).with_context(|| {
                format!(
                    "the node at {} answered {what} that is not an evidence bundle",
                    client.base()
                )
            })?
        }
    };
    let text = bundle.to_json();
    if args.out == Path::new("-") {
        write!(Out, "{text}")?;
        return Ok(ExitCode::SUCCESS);
    }
    write_new(&args.out, text.as_bytes())?;
    writeln!(
        Out,
        "wrote {}: {} event(s) in {} block(s) of chain {}; check it with `tradeloop verify-proof {} --genesis GENESIS`",
        args.out.display(),
        bundle.events.len(),
        bundle.blocks.len(),
        bundle.chain,
        args.out.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file (never overwrites), fsynced.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The bundle file (from `tradeloop proof`), or `-` for standard input.
    pub bundle: PathBuf,
    /// The genesis file you trust.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn verify_proof(args: VerifyProofArgs) -> Result<ExitCode> {
    let genesis = load_genesis(&args.genesis)?;
    let bytes = read_bounded(&args.bundle, MAX_BUNDLE_BYTES, "bundle", "MAX_BUNDLE_BYTES")?;
    let report = verify_bundle(&bytes, &genesis);
    if args.json {
        writeln!(Out, "{}", json!({"ok": report.ok(), "report": report}))?;
    } else {
        print_report(&report, &genesis)?;
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_report(report: &BundleReport, genesis: &Genesis) -> Result<()> {
    if report.ok() {
        writeln!(
            Out,
            "OK: {} event(s) certified on chain {} ({}):",
            report.events.len(),
            report.chain,
            genesis.doc.chain_id
        )?;
    } else {
        for f in &report.failures {
            writeln!(Out, "FAILED {f}")?;
        }
        if report.events.is_empty() {
            return Ok(());
        }
        writeln!(Out, "these event(s) of the bundle passed every check:")?;
    }
    for e in &report.events {
        let detail = [
            "order_id",
            "shipment_id",
            "declaration_id",
            "invoice_id",
            "lc_id",
            "doc_id",
            "location",
            "amount",
            "currency",
        ]
        .iter()
        .filter_map(|k| e.body.get(k).and_then(|v| v.as_str()).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ");
        writeln!(
            Out,
            "  height {:<6} {}  {:<28} by {:<24} {detail}",
            e.height,
            rfc3339_ms(e.block_time_ms),
            e.kind,
            e.author
        )?;
        writeln!(Out, "      event {} (index {} in block {})", e.id, e.index, e.block_hash)?;
    }
    for b in &report.blocks {
        writeln!(
            Out,
            "  block {} {}: certified in round {} by {} validator(s) holding {} of {} voting power",
            b.height, b.hash, b.round, b.signers, b.signed_power, b.total_power
        )?;
    }
    if report.ok() {
        writeln!(
            Out,
            "This proves the genesis validators certified these events as signed by their authors; \
             not that what they say happened (docs/audit.md)."
        )?;
    }
    Ok(())
}

/// Reads a copy of the chain, a data dir or an export of either format, block by block.
enum ChainCopy {
    Ledger { ledger: Box<Ledger>, next: u64 },
    Export(Box<tradeloop_ledger::export::AnyExport<std::io::BufReader<std::fs::File>>>),
}

impl ChainCopy {
    fn open(path: &Path, genesis_path: &Path) -> Result<ChainCopy> {
        if path.is_dir() {
            let chain =
                ChainArgs { data_dir: path.to_path_buf(), genesis: genesis_path.to_path_buf() };
            return Ok(ChainCopy::Ledger {
                ledger: Box::new(open_ledger_read_only(&chain)?),
                next: 1,
            });
        }
        let reader =
            open_export(path).with_context(|| format!("cannot read export {}", path.display()))?;
        Ok(ChainCopy::Export(Box::new(reader)))
    }

    fn genesis_json(&self) -> Option<&[u8]> {
        match self {
            ChainCopy::Ledger { .. } => None,
            ChainCopy::Export(r) => Some(r.genesis_json()),
        }
    }

    fn next_block(&mut self) -> Result<Option<CertifiedBlock>, (u64, String)> {
        match self {
            ChainCopy::Ledger { ledger, next } => {
                if *next > ledger.tip().height {
                    return Ok(None);
                }
                let block = ledger.block(*next).map_err(|e| (*next, e.to_string()))?;
                *next += 1;
                Ok(Some(block))
            }
            ChainCopy::Export(r) => match r.next_item()? {
                ExportItem::Block(b) => Ok(Some(*b)),
                ExportItem::End(_) => Ok(None),
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The first copy: a data dir, or an export file (binary or JSONL).
    pub a: PathBuf,
    /// The second copy: a data dir, or an export file (binary or JSONL).
    pub b: PathBuf,
    /// The genesis file you trust.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit status: 0 the same chain to the same tip; 3 one copy is a prefix of the other; 4 a
/// split view; 1 a copy could not be read or is not a well-formed copy of this chain (and 2, as
/// for every command, a usage error).
pub fn compare_copies(args: CompareArgs) -> Result<ExitCode> {
    let genesis = load_genesis(&args.genesis)?;
    let mut copies = Vec::new();
    for (side, path) in [("A", &args.a), ("B", &args.b)] {
        let copy = ChainCopy::open(path, &args.genesis)
            .with_context(|| format!("copy {side} ({})", path.display()))?;
        if let Some(json) = copy.genesis_json() {
            let embedded = Genesis::from_json_bytes(json)
                .with_context(|| format!("copy {side}: the export's genesis is invalid"))?;
            if embedded.hash != genesis.hash {
                bail!(
                    "copy {side} ({}) is an export of chain {}, but your genesis names chain {}: \
                     the copies cannot be compared as one chain",
                    path.display(),
                    embedded.hash,
                    genesis.hash
                );
            }
        }
        copies.push(copy);
    }
    let (mut a, mut b) = match (copies.pop(), copies.pop()) {
        (Some(b), Some(a)) => (a, b),
        _ => bail!("two copies are needed"),
    };
    let outcome = compare(&genesis, &mut || a.next_block(), &mut || b.next_block())?;
    let code = match &outcome {
        Comparison::Same { .. } => COMPARE_SAME,
        Comparison::Prefix { .. } => COMPARE_PREFIX,
        Comparison::Split(_) => COMPARE_SPLIT,
    };
    if args.json {
        writeln!(Out, "{}", json!({"exit_code": code, "comparison": outcome}))?;
        return Ok(ExitCode::from(code));
    }
    let name = |side: Side| match side {
        Side::A => format!("A ({})", args.a.display()),
        Side::B => format!("B ({})", args.b.display()),
    };
    match &outcome {
        Comparison::Same { height, tip_hash } => writeln!(
            Out,
            "SAME: both copies hold the same {height} block(s) of chain {}, tip {tip_hash}",
            genesis.hash
        )?,
        Comparison::Prefix { longer, common_height, longer_height, common_hash } => {
            let shorter = if *longer == Side::A { Side::B } else { Side::A };
            writeln!(
                Out,
                "PREFIX: the copies agree up to height {common_height} ({common_hash}), the tip of {}; {} goes on to height {longer_height}",
                name(shorter),
                name(*longer)
            )?
        }
        Comparison::Split(split) => {
            writeln!(
                Out,
                "SPLIT VIEW at height {}: the copies hold different blocks there (they agree below it)",
                split.height
            )?;
            for (side, shown, error) in [
                (Side::A, &split.a, &split.a_certificate_error),
                (Side::B, &split.b, &split.b_certificate_error),
            ] {
                print_header(&name(side), shown)?;
                match error {
                    None => writeln!(Out, "    certificate: valid under the genesis")?,
                    Some(e) => writeln!(Out, "    certificate: INVALID ({e})")?,
                }
            }
            if split.a_certificate_error.is_some() || split.b_certificate_error.is_some() {
                writeln!(
                    Out,
                    "A block without a valid certificate is not a fork of the chain: that copy was altered or damaged; run `tradeloop verify` on it."
                )?;
            } else {
                writeln!(
                    Out,
                    "Both blocks are certified: {} validator(s) holding {} of {} voting power signed both (more than 1/3 is needed for a fork):",
                    split.equivocators.len(),
                    split.equivocating_power,
                    split.total_power
                )?;
                for e in &split.equivocators {
                    writeln!(Out, "  {} ({}, power {})", e.validator, e.participant, e.power)?;
                    writeln!(
                        Out,
                        "    precommit in A: round {} block {} signature {}",
                        e.in_a.round,
                        e.in_a.block_hash,
                        e.in_a.signature.to_hex()
                    )?;
                    writeln!(
                        Out,
                        "    precommit in B: round {} block {} signature {}",
                        e.in_b.round,
                        e.in_b.block_hash,
                        e.in_b.signature.to_hex()
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::from(code))
}

fn print_header(name: &str, shown: &ShownHeader) -> Result<()> {
    let h = &shown.header;
    writeln!(Out, "  {name}: block {}", shown.hash)?;
    writeln!(
        Out,
        "    height {} prev_hash {} time {} proposer {}",
        h.height,
        h.prev_hash,
        rfc3339_ms(h.time_ms),
        h.proposer
    )?;
    writeln!(
        Out,
        "    events_root {} event_count {} app_hash {} validators_hash {}",
        h.events_root, h.event_count, h.app_hash, h.validators_hash
    )?;
    Ok(())
}

/// The formats of `tradeloop export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The binary export (docs/formats.md, "Export file").
    Binary,
    /// One JSON object per line (docs/formats.md, "JSONL export").
    Jsonl,
    /// An EPCIS 2.0 JSON-LD EPCISDocument of the shipment and customs events (docs/events.md).
    Epcis,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The file to create; it must not exist.
    #[arg(long)]
    pub out: PathBuf,
    /// The export's format.
    #[arg(long, value_enum, default_value = "binary")]
    pub format: ExportFormat,
    /// epcis: only this shipment's events.
    #[arg(long, conflicts_with = "trade")]
    pub shipment: Option<String>,
    /// epcis: only the events of the shipments booked for this order.
    #[arg(long, value_name = "ORDER_ID")]
    pub trade: Option<String>,
    /// epcis: the https:// prefix of every identifier of this chain, ending in '/'
    /// (default https://id.example.org/tradeloop/<chain id>/; use a domain you control).
    #[arg(long)]
    pub base_uri: Option<String>,
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    if args.format != ExportFormat::Epcis
        && (args.shipment.is_some() || args.trade.is_some() || args.base_uri.is_some())
    {
        bail!("--shipment, --trade and --base-uri apply to --format epcis only; the binary and JSONL exports hold the whole chain");
    }
    let ledger = open_ledger_read_only(&args.chain)?;
    match args.format {
        ExportFormat::Binary => {
            let blocks = tradeloop_ledger::export::binary::export(&ledger, &args.out)?;
            writeln!(Out, "exported {blocks} blocks to {}", args.out.display())?;
        }
        ExportFormat::Jsonl => {
            let blocks = tradeloop_ledger::export::jsonl::export_jsonl(&ledger, &args.out)?;
            writeln!(Out, "exported {blocks} blocks to {} (JSONL)", args.out.display())?;
        }
        ExportFormat::Epcis => {
            let filter = match (&args.shipment, &args.trade) {
                (Some(s), _) => EpcisFilter::Shipment(s.clone()),
                (None, Some(o)) => EpcisFilter::Trade(o.clone()),
                (None, None) => EpcisFilter::All,
            };
            let base = args.base_uri.clone().unwrap_or_else(|| default_base(ledger.genesis()));
            let mut builder = EpcisBuilder::new(ledger.genesis(), &base, filter)?;
            for height in 1..=ledger.tip().height {
                builder.add_block(&ledger.block(height)?);
            }
            let document = builder.finish(now_ms())?;
            let count = document["epcisBody"]["eventList"].as_array().map_or(0, Vec::len);
            let mut text = serde_json::to_string_pretty(&document)?;
            text.push('\n');
            write_new(&args.out, text.as_bytes())?;
            writeln!(Out, "exported {count} EPCIS events to {}", args.out.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
