//! What the export formats share: the file written whole and fsynced, the trailer that names
//! the last block, and the items a reader yields.

use std::io::BufWriter;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tradeloop_crypto::Hash;

use crate::model::block::CertifiedBlock;
use crate::storage::index::IndexStore;
use crate::storage::store::Ledger;
use crate::LedgerError;

/// The last frame of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTrailer {
    /// Number of blocks exported.
    pub block_count: u64,
    /// Hash of the last block.
    pub tip_hash: Hash,
    /// App hash after the last block.
    pub app_hash: Hash,
}

impl ExportTrailer {
    /// The trailer of an export with no block yet: it names the genesis tip.
    pub fn at_genesis(genesis: &crate::model::genesis::Genesis) -> ExportTrailer {
        let tip = crate::model::block::Tip::genesis(genesis);
        ExportTrailer { block_count: 0, tip_hash: tip.hash, app_hash: tip.app_hash }
    }

    /// Counts `block` as the export's last block so far.
    pub fn follow(&mut self, block: &CertifiedBlock) {
        self.block_count += 1;
        self.tip_hash = block.block.header.hash();
        self.app_hash = block.block.header.app_hash;
    }
}

/// What the reader found next.
#[derive(Debug)]
pub enum ExportItem {
    /// A block.
    Block(Box<CertifiedBlock>),
    /// The trailer; nothing follows.
    End(ExportTrailer),
}

/// Why a format's writer stopped.
#[derive(Debug)]
pub enum WriteError {
    /// Writing failed.
    Io(std::io::Error),
    /// Reading a block failed.
    Ledger(LedgerError),
}

/// Writes the whole chain of `ledger` to `path` (a new file) with a format's writer (the
/// binary [`crate::export::binary::write_to`] or [`crate::export::jsonl::write_jsonl`]), fsynced. Returns the block count.
pub(crate) fn export_with<S: IndexStore>(
    ledger: &Ledger<S>,
    path: &Path,
    write: impl FnOnce(
        &mut BufWriter<std::fs::File>,
        &crate::model::genesis::Genesis,
        &mut dyn Iterator<Item = Result<CertifiedBlock, LedgerError>>,
    ) -> Result<u64, WriteError>,
) -> Result<u64, LedgerError> {
    let io = |e| LedgerError::io(format!("cannot write export {}", path.display()), e);
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
    let mut out = BufWriter::new(file);
    let tip = ledger.tip().height;
    let mut blocks = (1..=tip).map(|h| ledger.block(h));
    let count = write(&mut out, ledger.genesis(), &mut blocks).map_err(|e| match e {
        WriteError::Io(e) => io(e),
        WriteError::Ledger(e) => e,
    })?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(count)
}
