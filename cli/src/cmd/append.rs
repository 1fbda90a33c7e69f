//! `tradeloop append`: signed events into blocks on a one-validator local chain.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use tradeloop_ledger::{Ledger, SignedEvent};

use super::{now_ms, open_ledger, read_key, ChainArgs};
use crate::input::{BoundedLines, Line};
use crate::output::{Diag, Out, StdoutError};

/// Longest line accepted in an events file, in bytes (1 MiB; an envelope holds at most a
/// 256 KiB body, `MAX_EVENT_BYTES`, so no valid event comes near it).
pub const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The validator's node key file; it must be the chain's only validator.
    #[arg(long)]
    pub validator_key: PathBuf,
    /// Events per block, 1 to the genesis maximum (default: the genesis maximum).
    #[arg(long)]
    pub block_events: Option<usize>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    /// A file of signed event envelopes, one JSON object per line (`-` for standard input).
    pub events: PathBuf,
}

/// An envelope the ledger refused (or a line too long to be one).
struct Rejected {
    line: usize,
    code: String,
    message: String,
}

/// A line that could not be read as text at all.
struct Unreadable {
    line: usize,
    reason: String,
}

/// What one `append` did: the truth about every line.
#[derive(Default)]
struct Summary {
    committed: u64,
    blocks: u64,
    rejected: Vec<Rejected>,
    unreadable: Vec<Unreadable>,
    height: u64,
    tip: String,
}

impl Summary {
    fn text(&self) -> String {
        format!(
            "committed {} events in {} blocks; {} rejected; {} unreadable; height {} tip {}",
            self.committed,
            self.blocks,
            self.rejected.len(),
            self.unreadable.len(),
            self.height,
            self.tip
        )
    }

    fn json(&self) -> serde_json::Value {
        let rejected: Vec<_> = self
            .rejected
            .iter()
            .map(|r| json!({"line": r.line, "code": r.code, "message": r.message}))
            .collect();
        let unreadable: Vec<_> =
            self.unreadable.iter().map(|u| json!({"line": u.line, "reason": u.reason})).collect();
        json!({"committed": self.committed, "blocks": self.blocks, "rejected": rejected,
            "unreadable": unreadable, "height": self.height, "tip": self.tip})
    }

    /// Rejections and unreadable lines go to standard error in text mode, in line order.
    fn report_lines(&self) {
        let mut lines: Vec<(usize, String)> = self
            .rejected
            .iter()
            .map(|r| (r.line, format!("rejected {}: {}", r.code, r.message)))
            .chain(self.unreadable.iter().map(|u| (u.line, format!("unreadable: {}", u.reason))))
            .collect();
        lines.sort_by_key(|(n, _)| *n);
        for (n, what) in lines {
            writeln!(Diag, "line {n}: {what}");
        }
    }

    fn print(&self, json: bool) -> Result<(), StdoutError> {
        if json {
            writeln!(Out, "{}", self.json())
        } else {
            writeln!(Out, "{}", self.text())
        }
    }

    fn exit_code(&self) -> ExitCode {
        if self.rejected.is_empty() && self.unreadable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

pub fn append(args: AppendArgs) -> Result<ExitCode> {
    let mut ledger = open_ledger(&args.chain)?;
    let validator = read_key(&args.validator_key)?;
    if ledger.genesis().validators.power_of(&validator.public_key()).is_none() {
        bail!("{} is not a validator key of this chain", args.validator_key.display());
    }
    let max = ledger.genesis().doc.consensus.max_block_events as usize;
    let per_block = match args.block_events {
        None => max,
        Some(n) if (1..=max).contains(&n) => n,
        Some(n) => bail!(
            "--block-events {n} is outside 1 to {max} (this chain's consensus.max_block_events); give a value in that range"
        ),
    };
    if ledger.caught_up_on_open > 0 {
        writeln!(
            Diag,
            "note: caught the index up by {} block(s) from the block log",
            ledger.caught_up_on_open
        );
    }
    let reader: Box<dyn BufRead> = if args.events == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.events)
            .with_context(|| format!("cannot open events file {}", args.events.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut summary = Summary::default();
    let result = commit_lines(&mut ledger, &validator, reader, per_block, &mut summary);
    summary.rejected.sort_by_key(|r| r.line);
    summary.height = ledger.tip().height;
    summary.tip = ledger.tip().hash.to_string();
    if let Err(e) = result {
        // What was committed before the failure is on the chain: say so before the error.
        summary.report_lines();
        writeln!(Diag, "{}", summary.text());
        return Err(e.context(format!(
            "append stopped after committing {} events in {} blocks",
            summary.committed, summary.blocks
        )));
    }
    if !args.json {
        summary.report_lines();
    }
    if let Err(e) = summary.print(args.json) {
        // The events are committed whatever happens to stdout; the summary goes to stderr.
        writeln!(Diag, "{}", if args.json { summary.json().to_string() } else { summary.text() });
        if e.is_closed_pipe() {
            return Ok(summary.exit_code());
        }
        bail!("{e}; the summary above was written to standard error instead");
    }
    Ok(summary.exit_code())
}

/// Reads envelopes line by line (each with the [`MAX_EVENT_LINE_BYTES`] cap), a block's worth at
/// a time so memory stays bounded by the block size however long the input is, and commits
/// them. Every line that is not committed is accounted for in `summary`.
fn commit_lines(
    ledger: &mut Ledger,
    validator: &tradeloop_crypto::SigningKey,
    reader: Box<dyn BufRead>,
    per_block: usize,
    summary: &mut Summary,
) -> Result<()> {
    let mut lines = BoundedLines::new(reader, MAX_EVENT_LINE_BYTES);
    let mut line_numbers: VecDeque<Vec<usize>> = VecDeque::new();
    let (rejected, unreadable) = (&mut summary.rejected, &mut summary.unreadable);
    let chunks = std::iter::from_fn(|| {
        let mut chunk = Vec::with_capacity(per_block);
        let mut numbers = Vec::with_capacity(per_block);
        for line in lines.by_ref() {
            let (number, bytes) = match line {
                Line::Text { number, bytes } => (number, bytes),
                Line::TooLong { number } => {
                    rejected.push(Rejected {
                        line: number,
                        code: "EVENT_TOO_LARGE".into(),
                        message: format!(
                            "line is longer than {MAX_EVENT_LINE_BYTES} bytes (MAX_EVENT_LINE_BYTES); skipped"
                        ),
                    });
                    continue;
                }
                Line::Failed { number, error } => {
                    unreadable.push(Unreadable {
                        line: number,
                        reason: format!("cannot read: {error}; nothing from here on was read"),
                    });
                    break;
                }
            };
            if let Err(e) = std::str::from_utf8(&bytes) {
                unreadable.push(Unreadable {
                    line: number,
                    reason: format!(
                        "not valid UTF-8 (byte {} of the line); an envelope is UTF-8 JSON",
                        e.valid_up_to() + 1
                    ),
                });
                continue;
            }
            if bytes.trim_ascii().is_empty() {
                continue;
            }
            match SignedEvent::from_envelope_json(&bytes) {
                Ok(e) => {
                    chunk.push(e);
                    numbers.push(number);
                }
                Err(r) => rejected.push(Rejected {
                    line: number,
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
    let (mut committed, mut blocks) = (0u64, 0u64);
    let mut block_rejections = Vec::new();
    let result = ledger.append_local_stream(chunks, validator, &now_ms, &mut |_, block, rej| {
        block_rejections.push(rej);
        for b in block {
            committed += b.block.events.len() as u64;
            blocks += 1;
        }
    });
    summary.committed = committed;
    summary.blocks = blocks;
    for (numbers, rej) in line_numbers.into_iter().zip(block_rejections) {
        for (i, r) in rej {
            let line = numbers.get(i).copied().unwrap_or_default();
            summary.rejected.push(Rejected { line, code: r.code.as_str(), message: r.message });
        }
    }
    result.context("cannot commit to the data dir")?;
    Ok(())
}
