//! An export of either format, told apart by its first bytes.

use std::path::Path;

use crate::export::binary::{ExportReader, EXPORT_MAGIC};
use crate::export::file::ExportItem;
use crate::export::jsonl::JsonlReader;
use crate::LedgerError;

/// An export in either format, told apart by its first bytes: the binary format starts with
/// [`EXPORT_MAGIC`], the JSONL format ([`crate::export::jsonl`]) with `{`.
#[derive(Debug)]
pub enum AnyExport<R: std::io::BufRead> {
    /// The binary format.
    Binary(ExportReader<R>),
    /// The JSONL format.
    Jsonl(JsonlReader<R>),
}

impl<R: std::io::BufRead> AnyExport<R> {
    /// Reads the start of an export of either format (its header and genesis).
    pub fn new(mut reader: R) -> Result<Self, LedgerError> {
        let (binary, jsonl) = {
            let head = reader.fill_buf().map_err(|e| LedgerError::io("reading export", e))?;
            let n = head.len().min(EXPORT_MAGIC.len());
            (n > 0 && head[..n] == EXPORT_MAGIC[..n], head.first() == Some(&b'{'))
        };
        if binary {
            return Ok(AnyExport::Binary(ExportReader::new(reader)?));
        }
        if jsonl {
            return Ok(AnyExport::Jsonl(JsonlReader::new(reader)?));
        }
        Err(LedgerError::Export(
            "not a tradeloop export: neither the binary format (it starts with TLEXPORT) nor the \
             JSONL format (a JSON object on each line); give a file written by `tradeloop export`"
                .into(),
        ))
    }

    /// The genesis JSON the export carries.
    pub fn genesis_json(&self) -> &[u8] {
        match self {
            AnyExport::Binary(r) => &r.genesis_json,
            AnyExport::Jsonl(r) => &r.genesis_json,
        }
    }

    /// The format's name, `binary` or `jsonl`.
    pub fn format(&self) -> &'static str {
        match self {
            AnyExport::Binary(_) => "binary",
            AnyExport::Jsonl(_) => "jsonl",
        }
    }

    /// The next block or the trailer (see [`ExportReader::next_item`]).
    pub fn next_item(&mut self) -> Result<ExportItem, (u64, String)> {
        match self {
            AnyExport::Binary(r) => r.next_item(),
            AnyExport::Jsonl(r) => r.next_item(),
        }
    }
}

/// Opens an export file of either format.
pub fn open_export(
    path: &Path,
) -> Result<AnyExport<std::io::BufReader<std::fs::File>>, LedgerError> {
    let file = std::fs::File::open(path)
        .map_err(|e| LedgerError::io(format!("cannot open {}", path.display()), e))?;
    AnyExport::new(std::io::BufReader::with_capacity(1 << 20, file))
}
