//! The JSONL export: the whole chain as one JSON object per line, readable with ordinary JSON
//! tools (docs/formats.md, "JSONL export").
//!
//! ```text
//! line 1      {"format":"tradeloop/export-jsonl","version":1,"genesis":<genesis JSON>}
//! line 1+h    {"header":{...},"certificate":{...},"events":[<envelope>,...]}   block h
//! last line   {"end":{"block_count":n,"tip_hash":"<hex>","app_hash":"<hex>"}}
//! ```
//!
//! Every byte string is lowercase hex; an event is its envelope `{"body":{...},"signature":..}`
//! with the body in the RFC 8785 form its author signed. A reader re-derives everything that is
//! hashed from these fields (the header's bincode layout, `JCS(body)`), so re-indenting a line
//! with a JSON tool changes nothing that is checked. It carries exactly what the binary export
//! carries, and [`crate::export::open_export`] reads either.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::export::file::{export_with, ExportItem, ExportTrailer, WriteError};
use crate::model::block::{Block, CertifiedBlock, CommitCertificate, Header};
use crate::model::event::SignedEvent;
use crate::model::genesis::Genesis;
use crate::storage::store::Ledger;
use crate::LedgerError;

/// The `format` of the first line.
pub const JSONL_FORMAT: &str = "tradeloop/export-jsonl";
/// The `version` of the first line.
pub const JSONL_VERSION: u32 = 1;
/// Longest line a reader accepts, in bytes: 96 MiB (a block of at most
/// [`crate::limits::MAX_BLOCK_BYTES`] events, hex signatures and JSON punctuation, with room).
pub const MAX_JSONL_LINE_BYTES: usize = 96 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadLine<G> {
    format: String,
    version: u32,
    genesis: G,
}

#[derive(Serialize)]
struct BlockLine<'a> {
    header: &'a Header,
    certificate: &'a CommitCertificate,
    events: Vec<Box<RawValue>>,
}

#[derive(Serialize)]
struct EndLine<'a> {
    end: &'a ExportTrailer,
}

/// Any line after the first: a block or the trailer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    header: Option<Header>,
    certificate: Option<CommitCertificate>,
    events: Option<Vec<Box<RawValue>>>,
    end: Option<ExportTrailer>,
}

fn raw(text: String) -> Result<Box<RawValue>, WriteError> {
    RawValue::from_string(text).map_err(|e| WriteError::Io(std::io::Error::other(e)))
}

/// Writes the JSONL export of the chain of `genesis` made of `blocks` (in order from height 1)
/// to `out`. Returns the block count. Like [`crate::export::binary::write_to`], it checks nothing.
pub fn write_jsonl<W: Write>(
    out: &mut W,
    genesis: &Genesis,
    blocks: impl IntoIterator<Item = Result<CertifiedBlock, LedgerError>>,
) -> Result<u64, WriteError> {
    let genesis_raw = raw(String::from_utf8_lossy(&genesis.canonical).into_owned())?;
    let head =
        HeadLine { format: JSONL_FORMAT.into(), version: JSONL_VERSION, genesis: genesis_raw };
    write_line(out, &head)?;
    let mut trailer = ExportTrailer::at_genesis(genesis);
    for block in blocks {
        let block = block.map_err(WriteError::Ledger)?;
        let events = block
            .block
            .events
            .iter()
            .map(|e| raw(e.to_envelope_json()))
            .collect::<Result<Vec<_>, _>>()?;
        let line =
            BlockLine { header: &block.block.header, certificate: &block.certificate, events };
        write_line(out, &line)?;
        trailer.follow(&block);
    }
    write_line(out, &EndLine { end: &trailer })?;
    Ok(trailer.block_count)
}

fn write_line<W: Write, T: Serialize>(out: &mut W, value: &T) -> Result<(), WriteError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| WriteError::Io(std::io::Error::other(e)))?;
    out.write_all(b"\n").map_err(WriteError::Io)
}

/// Writes the JSONL export of `ledger` to `path` (a new file), fsynced. Returns the block count.
pub fn export_jsonl<S: crate::storage::index::IndexStore>(
    ledger: &Ledger<S>,
    path: &Path,
) -> Result<u64, LedgerError> {
    export_with(ledger, path, |out, genesis, blocks| write_jsonl(out, genesis, blocks))
}

/// Reads a JSONL export line by line, each line read with a cap of [`MAX_JSONL_LINE_BYTES`].
#[derive(Debug)]
pub struct JsonlReader<R: BufRead> {
    reader: R,
    /// The genesis JSON of the first line, as it stands there.
    pub genesis_json: Vec<u8>,
    next_height: u64,
    line: u64,
    ended: bool,
}

/// One line, at most [`MAX_JSONL_LINE_BYTES`]; `None` at the end of the input.
fn read_line<R: BufRead>(reader: &mut R) -> Result<Option<Vec<u8>>, String> {
    let mut bytes = Vec::new();
    let n = reader
        .take(MAX_JSONL_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut bytes)
        .map_err(|e| format!("I/O error: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if bytes.len() > MAX_JSONL_LINE_BYTES {
        return Err(format!("a line is longer than {MAX_JSONL_LINE_BYTES} bytes"));
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else {
        return Err("the last line has no line ending: the export was truncated".into());
    }
    Ok(Some(bytes))
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads the first line (format, version, genesis).
    pub fn new(mut reader: R) -> Result<Self, LedgerError> {
        let bad = |m: String| LedgerError::Export(format!("JSONL export, line 1: {m}"));
        let line =
            read_line(&mut reader).map_err(bad)?.ok_or_else(|| bad("the file is empty".into()))?;
        let head: HeadLine<Box<RawValue>> = serde_json::from_slice(&line).map_err(|e| {
            bad(format!("not the header line {{\"format\",\"version\",\"genesis\"}}: {e}"))
        })?;
        if head.format != JSONL_FORMAT {
            return Err(bad(format!("format is \"{}\", not \"{JSONL_FORMAT}\"", head.format)));
        }
        if head.version != JSONL_VERSION {
            return Err(bad(format!(
                "version {} is not supported (this build reads {JSONL_VERSION})",
                head.version
            )));
        }
        Ok(JsonlReader {
            reader,
            genesis_json: head.genesis.get().as_bytes().to_vec(),
            next_height: 1,
            line: 1,
            ended: false,
        })
    }

    /// The next block or the trailer; errors name the height the line should have held.
    pub fn next_item(&mut self) -> Result<ExportItem, (u64, String)> {
        let height = self.next_height;
        if self.ended {
            return Err((height, "read past the trailer".into()));
        }
        self.line += 1;
        let at = self.line;
        let Some(bytes) =
            read_line(&mut self.reader).map_err(|e| (height, format!("line {at}: {e}")))?
        else {
            return Err((height, "the export ends without its trailer: it was truncated".into()));
        };
        let line: LineIn = serde_json::from_slice(&bytes)
            .map_err(|e| (height, format!("line {at} is not a block or trailer line: {e}")))?;
        match line {
            LineIn { header: None, certificate: None, events: None, end: Some(trailer) } => {
                let mut rest = [0u8; 1];
                if self.reader.read(&mut rest).map_err(|e| (height, e.to_string()))? != 0 {
                    return Err((height, "bytes follow the trailer".into()));
                }
                self.ended = true;
                Ok(ExportItem::End(trailer))
            }
            LineIn {
                header: Some(header),
                certificate: Some(certificate),
                events: Some(events),
                end: None,
            } => {
                let events = events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        SignedEvent::from_envelope_json(e.get().as_bytes())
                            .map_err(|r| (height, format!("line {at}, event {i}: {r}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.next_height += 1;
                Ok(ExportItem::Block(Box::new(CertifiedBlock {
                    block: Block { header, events },
                    certificate,
                })))
            }
            _ => Err((
                height,
                format!(
                    "line {at} must hold either \"header\", \"certificate\" and \"events\" (a \
                     block) or only \"end\" (the trailer)"
                ),
            )),
        }
    }
}
