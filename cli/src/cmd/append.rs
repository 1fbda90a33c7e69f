//! `tradeloop append`: signed events into blocks on a one-validator local chain.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use tradeloop_crypto::keyfile::read_key_file;
use tradeloop_ledger::SignedEvent;

use super::{now_ms, open_ledger, ChainArgs};

/// Longest line accepted in an events file, in bytes.
pub const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

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

struct Rejected {
    line: usize,
    code: String,
    message: String,
}

pub fn append(args: AppendArgs) -> Result<ExitCode> {
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
