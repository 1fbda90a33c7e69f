//! `tradeloop reindex` and `tradeloop restore`: rebuilding a data dir's index, and a new data
//! dir from an export.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tradeloop_ledger::Ledger;

use super::{load_genesis, ChainArgs};
use crate::output::Out;

pub fn reindex(chain: &ChainArgs, discard_from: Option<u64>) -> Result<ExitCode> {
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
    writeln!(
        Out,
        "index rebuilt from the block log: {} blocks, tip {}",
        ledger.tip().height,
        ledger.tip().hash
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn restore(export: &Path, genesis: &Path, data_dir: &Path, json: bool) -> Result<ExitCode> {
    let genesis = load_genesis(genesis)?;
    let bar = super::audit::progress_bar(0);
    let result =
        tradeloop_ledger::storage::restore::restore(export, &genesis, data_dir, &mut |h| {
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
