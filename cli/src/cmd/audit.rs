//! `tradeloop verify`: the auditor's offline check.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tradeloop_ledger::evidence::audit::{
    verify_data_dir, verify_export, AuditFailure, AuditReport,
};
use tradeloop_ledger::Genesis;

use super::load_genesis;
use crate::output::Out;

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

pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let genesis = load_genesis(&args.genesis)?;
    let started = std::time::Instant::now();
    let result = run_verify(args.data_dir.as_deref(), args.export.as_deref(), &genesis);
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(report) => {
            if args.json {
                writeln!(Out, "{}", json!({"ok": true, "report": report, "seconds": secs}))?;
            } else {
                writeln!(Out,
                    "OK: chain {} verified from its genesis: {} blocks, {} events, tip {}, app hash {} ({secs:.2} s)",
                    report.chain, report.blocks, report.events, report.tip_hash, report.app_hash
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if args.json {
                writeln!(Out, "{}", json!({"ok": false, "failure": failure}))?;
            } else {
                writeln!(Out, "FAILED at {failure}")?;
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
