//! Restoring a data dir from an export: the recovery the corruption errors advise.
//!
//! ```text
//! export file (binary or JSONL) --AnyExport--> blocks --Ledger::commit_block (full validation)--> staging dir
//!                                                   trailer checked --> rename(staging, DIR)
//! ```
//!
//! Every block is validated exactly as the audit does (certificate against the auditor's
//! genesis, every event, every rule, the app hash) while it is written into a staging
//! directory beside the target; the trailer must match the last block; only then is the staging
//! directory renamed into place. A failed or interrupted restore leaves no data dir at the
//! target, and an existing non-empty directory is never touched.

use std::fs::File;
use std::path::{Path, PathBuf};

use tradeloop_crypto::Hash;

use crate::export::{open_export, AnyExport, ExportItem};
use crate::model::genesis::Genesis;
use crate::{Ledger, LedgerError};

/// What a restore wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    /// Blocks written.
    pub blocks: u64,
    /// Events written.
    pub events: u64,
    /// The last block's hash.
    pub tip_hash: Hash,
    /// The data dir written.
    pub data_dir: PathBuf,
}

/// Why a restore refused or failed. Nothing was written at the target in either case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The export does not verify against the genesis.
    #[error("the export does not verify{}: {reason}; nothing was restored", if *.height > 0 { format!(" at height {}", .height) } else { String::new() })]
    Invalid {
        /// The first bad height (0: the file or its genesis).
        height: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writing the data dir failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl RestoreError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RestoreError::Invalid { .. } => "EXPORT_INVALID",
            RestoreError::Ledger(e) => e.code(),
        }
    }
}

fn invalid(height: u64, reason: impl Into<String>) -> RestoreError {
    RestoreError::Invalid { height, reason: reason.into() }
}

/// Restores the chain of `genesis` from the export at `export` into a new data dir `dir`
/// (which must not exist, or be an empty directory). `progress(height)` after each block.
pub fn restore(
    export: &Path,
    genesis: &Genesis,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<RestoreReport, RestoreError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| LedgerError::io(format!("cannot list {}", dir.display()), e))?
            .next()
            .is_none();
        if !empty || !dir.is_dir() {
            return Err(LedgerError::DataDirNotEmpty(dir.display().to_string()).into());
        }
    }
    let mut reader = open_export(export).map_err(|e| match e {
        e @ LedgerError::Io { .. } => RestoreError::Ledger(e),
        other => invalid(0, other.to_string()),
    })?;
    let embedded = Genesis::from_json_bytes(reader.genesis_json())
        .map_err(|e| invalid(0, format!("the export's genesis is invalid: {e}")))?;
    if embedded.hash != genesis.hash {
        return Err(invalid(
            0,
            format!(
                "the export is for chain {}, but your genesis names chain {}",
                embedded.hash, genesis.hash
            ),
        ));
    }
    let staging = staging_path(dir);
    if staging.exists() {
        // A staging dir left by an interrupted restore holds nothing anyone relies on.
        std::fs::remove_dir_all(&staging)
            .map_err(|e| LedgerError::io(format!("cannot remove {}", staging.display()), e))?;
    }
    let result = write_staging(&mut reader, genesis, &staging, progress);
    let (blocks, events, tip_hash) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if dir.exists() {
        std::fs::remove_dir(dir)
            .map_err(|e| LedgerError::io(format!("cannot replace {}", dir.display()), e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| {
        LedgerError::io(format!("cannot move {} to {}", staging.display(), dir.display()), e)
    })?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| LedgerError::io(format!("cannot fsync {}", parent.display()), e))?;
    }
    Ok(RestoreReport { blocks, events, tip_hash, data_dir: dir.to_path_buf() })
}

fn staging_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!(".{name}.restoring"))
}

fn write_staging<R: std::io::BufRead>(
    reader: &mut AnyExport<R>,
    genesis: &Genesis,
    staging: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64, Hash), RestoreError> {
    let mut ledger = Ledger::open(staging, genesis.clone())?;
    let mut events = 0u64;
    loop {
        match reader.next_item() {
            Ok(ExportItem::Block(block)) => {
                let height = block.block.header.height;
                ledger.commit_block(&block).map_err(|e| match e {
                    LedgerError::InvalidBlock { height, detail } => invalid(height, detail),
                    LedgerError::RejectedEvent { height, index, rejection } => {
                        invalid(height, format!("event {index}: {rejection}"))
                    }
                    other => RestoreError::Ledger(other),
                })?;
                events += block.block.events.len() as u64;
                progress(height);
            }
            Ok(ExportItem::End(trailer)) => {
                let tip = ledger.tip();
                if trailer.block_count != tip.height
                    || trailer.tip_hash != tip.hash
                    || trailer.app_hash != tip.app_hash
                {
                    return Err(invalid(
                        tip.height + 1,
                        format!(
                            "the trailer promises {} blocks ending in {}, the file holds {} ending in {}",
                            trailer.block_count, trailer.tip_hash, tip.height, tip.hash
                        ),
                    ));
                }
                return Ok((tip.height, events, tip.hash));
            }
            Err((height, reason)) => return Err(invalid(height, reason)),
        }
    }
}
