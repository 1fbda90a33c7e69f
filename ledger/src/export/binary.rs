//! The export file: one self-contained, open-format copy of a chain (the exit guarantee).
//!
//! ```text
//! "TLEXPORT" (8 bytes) || version (u32 BE, = 1)
//! frame GENESIS  payload = RFC 8785 genesis JSON (its domain hash is the chain id)
//! frame BLOCK    payload = bincode CertifiedBlock, one per height from 1
//! frame END      payload = bincode ExportTrailer { block_count, tip_hash, app_hash }
//! ```
//!
//! Frames are those of [`crate::encoding::frame`]. The trailer lets a reader tell a complete export from
//! one cut off at a frame boundary.

use std::io::{Read, Write};
use std::path::Path;

use crate::encoding::frame::{self, StreamFrame};
use crate::export::file::{export_with, ExportItem, ExportTrailer, WriteError};
use crate::model::block::CertifiedBlock;
use crate::storage::index::IndexStore;
use crate::storage::store::Ledger;
use crate::{encoding::codec, LedgerError};

/// Magic at the start of an export.
pub const EXPORT_MAGIC: &[u8; 8] = b"TLEXPORT";
/// Export format version.
pub const EXPORT_VERSION: u32 = 1;

/// Writes the whole chain of `ledger` to `path` (a new file), fsynced. Returns the block count.
pub fn export<S: IndexStore>(ledger: &Ledger<S>, path: &Path) -> Result<u64, LedgerError> {
    export_with(ledger, path, |out, genesis, blocks| write_to(out, genesis, blocks))
}

/// Writes an export of the chain of `genesis` made of `blocks` (in order from height 1) to
/// `out`: header, genesis frame, one frame per block, and the trailer naming the last block
/// (the genesis tip for none). Nothing is checked: the auditor is what checks. Returns the
/// block count.
pub fn write_to<W: Write>(
    out: &mut W,
    genesis: &crate::model::genesis::Genesis,
    blocks: impl IntoIterator<Item = Result<CertifiedBlock, LedgerError>>,
) -> Result<u64, WriteError> {
    out.write_all(EXPORT_MAGIC).map_err(WriteError::Io)?;
    out.write_all(&EXPORT_VERSION.to_be_bytes()).map_err(WriteError::Io)?;
    out.write_all(&frame::encode(frame::kind::GENESIS, &genesis.canonical))
        .map_err(WriteError::Io)?;
    let mut trailer = ExportTrailer::at_genesis(genesis);
    for block in blocks {
        let block = block.map_err(WriteError::Ledger)?;
        let payload = codec::encode(&block).map_err(|e| {
            WriteError::Ledger(LedgerError::InvalidBlock {
                height: block.block.header.height,
                detail: e.to_string(),
            })
        })?;
        out.write_all(&frame::encode(frame::kind::BLOCK, &payload)).map_err(WriteError::Io)?;
        trailer.follow(&block);
    }
    out.write_all(&frame::encode(frame::kind::END, &codec::encode_small(&trailer)))
        .map_err(WriteError::Io)?;
    Ok(trailer.block_count)
}

/// Reads an export frame by frame.
#[derive(Debug)]
pub struct ExportReader<R: Read> {
    reader: R,
    /// The canonical genesis JSON carried by the export.
    pub genesis_json: Vec<u8>,
    next_height: u64,
    trailer: Option<ExportTrailer>,
}

impl<R: Read> ExportReader<R> {
    /// Reads the header and the genesis frame.
    pub fn new(mut reader: R) -> Result<Self, LedgerError> {
        let bad = |m: &str| LedgerError::Export(m.to_string());
        let mut head = [0u8; 12];
        reader.read_exact(&mut head).map_err(|_| bad("file is shorter than the export header"))?;
        if &head[..8] != EXPORT_MAGIC {
            return Err(bad("not a tradeloop export (missing TLEXPORT magic)"));
        }
        let version = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        if version != EXPORT_VERSION {
            return Err(LedgerError::Export(format!(
                "export version {version} is not supported (this build reads {EXPORT_VERSION})"
            )));
        }
        let genesis_json = match frame::read_stream(&mut reader)
            .map_err(|e| LedgerError::io("reading export", e))?
        {
            StreamFrame::Frame { kind: frame::kind::GENESIS, payload } => payload,
            _ => return Err(bad("the first frame is not an intact genesis frame")),
        };
        Ok(ExportReader { reader, genesis_json, next_height: 1, trailer: None })
    }

    /// The next block or the trailer. A frame that is cut off, damaged or out of place is an
    /// error naming the height it should have held.
    pub fn next_item(&mut self) -> Result<ExportItem, (u64, String)> {
        let height = self.next_height;
        if self.trailer.is_some() {
            return Err((height, "read past the trailer".into()));
        }
        let frame = frame::read_stream(&mut self.reader)
            .map_err(|e| (height, format!("I/O error: {e}")))?;
        match frame {
            StreamFrame::Frame { kind: frame::kind::BLOCK, payload } => {
                let block: CertifiedBlock = codec::decode(&payload)
                    .map_err(|e| (height, format!("block frame does not decode: {e}")))?;
                self.next_height += 1;
                Ok(ExportItem::Block(Box::new(block)))
            }
            StreamFrame::Frame { kind: frame::kind::END, payload } => {
                let trailer: ExportTrailer = codec::decode(&payload)
                    .map_err(|e| (height, format!("trailer does not decode: {e}")))?;
                let mut rest = [0u8; 1];
                if self.reader.read(&mut rest).map_err(|e| (height, e.to_string()))? != 0 {
                    return Err((height, "bytes follow the trailer".into()));
                }
                self.trailer = Some(trailer.clone());
                Ok(ExportItem::End(trailer))
            }
            StreamFrame::Frame { kind, .. } => {
                Err((height, format!("unexpected frame kind {kind}")))
            }
            StreamFrame::End => {
                Err((height, "the export ends without its trailer: it was truncated".into()))
            }
            StreamFrame::Torn => {
                Err((height, "the export ends inside a frame: it was truncated".into()))
            }
            StreamFrame::Corrupt(detail) => Err((height, detail)),
        }
    }
}
