//! The block log: the source of truth (docs/formats.md, "Block log").
//!
//! Append-only segment files `blocks-NNNNNNNN.log` in one directory, each starting with the
//! 8-byte magic `TLBLOG01` and followed by frames (see [`crate::encoding::frame`]) of kind BLOCK whose
//! payload is a bincode [`CertifiedBlock`]. A block counts as committed once its frame is
//! written and `fsync`ed (and, when a segment is created, the directory too).
//!
//! On open the whole log is scanned and every frame's CRC32C checked. A frame cut short at the
//! very end of the last segment is a torn write from a crash: a writer truncates it (a read-only
//! open reports it). Any other damage is corruption and is reported, never repaired silently.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::encoding::frame::{self, FrameRead};
use crate::model::block::{CertifiedBlock, Header};
use crate::model::event::SignedEvent;
use crate::{encoding::codec, LedgerError};

/// Magic bytes at the start of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"TLBLOG01";
/// A new segment is started once the current one exceeds this size: 128 MiB.
pub const MAX_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;

/// Where a block's frame lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    /// Segment number.
    pub segment: u32,
    /// Offset of the frame in the segment.
    pub offset: u64,
    /// Frame length including its header.
    pub len: u32,
}

/// How a block log is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read commands and audits: nothing is created, written, truncated or repaired.
    ReadOnly,
    /// The one writer (append, the node): may create the log and cut a provably torn tail.
    Writer,
}

/// An unfinished write found at the very end of the log: bytes after the last whole frame of the
/// last segment that no intact frame follows, at a height above anything known as committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment (always the last one).
    pub segment: u32,
    /// Where the unfinished frame starts (0: the segment header itself is unfinished).
    pub offset: u64,
    /// Bytes from `offset` to the end of the segment.
    pub bytes: u64,
    /// The height the unfinished block would have had.
    pub height: u64,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes of an unfinished write of block {} at segment {} offset {}",
            self.bytes, self.height, self.segment, self.offset
        )
    }
}

/// How the log was found on open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The torn tail found after the last whole frame, if any: cut by a writer, left in place
    /// (and not read) by a read-only open.
    pub torn_tail: Option<TornTail>,
}

impl OpenReport {
    /// Bytes of the torn tail (0 if none).
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail.as_ref().map_or(0, |t| t.bytes)
    }
}

/// What [`BlockLog::discard_from`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discarded {
    /// The first height removed.
    pub from_height: u64,
    /// Intact blocks removed (heights `from_height..from_height + intact_blocks`).
    pub intact_blocks: u64,
    /// Whether damaged bytes were removed as well (everything from the damage on).
    pub damaged_bytes_removed: bool,
    /// Bytes removed from the log.
    pub bytes: u64,
    /// Where the removed bytes were saved.
    pub saved_to: PathBuf,
}

/// The block log.
#[derive(Debug)]
pub struct BlockLog {
    dir: PathBuf,
    locations: Vec<Location>,
    current: Option<(u32, File, u64)>,
    writable: bool,
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("blocks-{segment:08}.log"))
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> LedgerError {
    move |e| LedgerError::io(context, e)
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot fsync directory {}", dir.display())))
}

/// Lists the segment numbers in `dir`, checking they run 0, 1, 2, ... without a gap.
fn list_segments(dir: &Path) -> Result<Vec<u32>, LedgerError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(format!("cannot list {}", dir.display())))? {
        let entry = entry.map_err(io(format!("cannot list {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("blocks-").and_then(|s| s.strip_suffix(".log")) {
            let n: u32 = n.parse().map_err(|_| LedgerError::CorruptLog {
                location: dir.join(&name).display().to_string(),
                height: 1,
                detail: "unexpected segment file name".into(),
            })?;
            segments.push(n);
        }
    }
    segments.sort_unstable();
    for (i, s) in segments.iter().enumerate() {
        if *s as usize != i {
            return Err(LedgerError::CorruptLog {
                location: segment_path(dir, u32::try_from(i).unwrap_or(u32::MAX))
                    .display()
                    .to_string(),
                height: 1,
                detail: "segment file is missing".into(),
            });
        }
    }
    Ok(segments)
}

/// Reads and decodes the block at a location of the log in `dir` (also for read views, which
/// share the directory with the one writer: a location is only handed out once its frame is
/// fsynced, and frames are never rewritten).
pub fn read_block(dir: &Path, loc: Location, height: u64) -> Result<CertifiedBlock, LedgerError> {
    let (buf, location) = read_frame_bytes(dir, loc)?;
    decode_block_frame(&buf, &location, height)
}

/// The bytes of the frame at `loc`, and where they are for messages.
fn read_frame_bytes(dir: &Path, loc: Location) -> Result<(Vec<u8>, String), LedgerError> {
    use std::io::{Read, Seek, SeekFrom};
    let path = segment_path(dir, loc.segment);
    let mut file = File::open(&path).map_err(io(format!("cannot open {}", path.display())))?;
    let mut buf = vec![0u8; loc.len as usize];
    file.seek(SeekFrom::Start(loc.offset))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(io(format!("cannot read {}", path.display())))?;
    Ok((buf, format!("{} offset {}", path.display(), loc.offset)))
}

/// Positions of wanted events must be strictly ascending (what the index hands out).
fn ascending(indexes: &[u32], height: u64) -> Result<(), LedgerError> {
    match indexes.windows(2).find(|w| w[0] >= w[1]) {
        Some(w) => Err(LedgerError::IndexInconsistent(format!(
            "events {} and {} of block {height} were asked for out of order",
            w[0], w[1]
        ))),
        None => Ok(()),
    }
}

/// Where the events of a block frame are, learnt by one full read of the frame with its
/// checksum checked ([`map_frame`]); later reads of some of its events then read only their
/// bytes ([`read_mapped_events`]). Holds the header and 4 bytes per event.
#[derive(Debug, Clone)]
pub struct FrameMap {
    /// The block's header, decoded from the checked frame.
    pub header: Header,
    /// The frame's location.
    pub location: Location,
    /// Event `i` is the payload's bytes `bounds[i]..bounds[i + 1]` (its body's u64 BE length,
    /// the body, the signature).
    bounds: Vec<u32>,
    /// CRC32C of each event's bytes, taken from the checked frame: a later read of the event
    /// alone is checked against it.
    crcs: Vec<u32>,
}

impl FrameMap {
    /// Events in the block.
    pub fn events(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Bytes of memory the map holds: itself (the header inline) and its two tables.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<FrameMap>()
            + (self.bounds.capacity() + self.crcs.capacity()) * std::mem::size_of::<u32>()
    }

    /// Where event `index` is in its segment file: the offset of its first byte and its length.
    pub fn event_span(&self, index: u32) -> Option<(u64, usize)> {
        let (start, end) = self.bounds_of(index).ok()?;
        let offset = self.location.offset + frame::FRAME_HEADER_BYTES as u64 + start as u64;
        Some((offset, end - start))
    }

    fn bounds_of(&self, index: u32) -> Result<(usize, usize), LedgerError> {
        let i = index as usize;
        match (self.bounds.get(i), self.bounds.get(i + 1)) {
            (Some(&start), Some(&end)) => Ok((start as usize, end as usize)),
            _ => Err(LedgerError::IndexInconsistent(format!(
                "index points at event {index} of block {}, which has {}",
                self.header.height,
                self.events()
            ))),
        }
    }
}

/// Reads the whole frame at `loc`, checks its checksum, and maps where its events are.
pub fn map_frame(dir: &Path, loc: Location, height: u64) -> Result<FrameMap, LedgerError> {
    let (buf, location) = read_frame_bytes(dir, loc)?;
    Ok(map_payload(&buf, &location, loc, height)?.1)
}

/// The payload of a frame read whole (its checksum checked) and its map.
fn map_payload<'a>(
    buf: &'a [u8],
    location: &str,
    loc: Location,
    height: u64,
) -> Result<(&'a [u8], FrameMap), LedgerError> {
    let corrupt =
        |detail: String| LedgerError::CorruptLog { location: location.to_string(), height, detail };
    let payload = match frame::read(buf, 0) {
        FrameRead::Frame { kind: frame::kind::BLOCK, payload, .. } => payload,
        FrameRead::Frame { kind, .. } => {
            return Err(corrupt(format!("unexpected frame kind {kind}")))
        }
        FrameRead::Corrupt(d) => return Err(corrupt(d)),
        FrameRead::Torn | FrameRead::End => return Err(corrupt("frame cut short".into())),
    };
    let (header, mut pos): (Header, usize) = codec::decode_prefix(payload)
        .map_err(|e| corrupt(format!("block header does not decode: {e}")))?;
    let u64_at = |at: usize| -> Result<u64, LedgerError> {
        payload
            .get(at..at.saturating_add(8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt(format!("block ends inside a length at byte {at}")))
    };
    let count = u64_at(pos)?;
    pos += 8;
    let signature_len = usize::try_from(
        codec::encoded_len(&tradeloop_crypto::Signature([0; 64]))
            .map_err(|e| corrupt(e.to_string()))?,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    // Each event takes at least its length prefix and signature: a count beyond what the
    // payload can hold is damage, not a reason to allocate.
    if count > (payload.len() / (8 + signature_len)) as u64 {
        return Err(corrupt(format!("block claims {count} events, more than its bytes can hold")));
    }
    let position = |p: usize| u32::try_from(p).map_err(|e| corrupt(e.to_string()));
    // Below the payload's length (checked above), so it fits a usize.
    let events = usize::try_from(count).map_err(|e| corrupt(e.to_string()))?;
    let mut bounds = Vec::with_capacity(events + 1);
    let mut crcs = Vec::with_capacity(events);
    bounds.push(position(pos)?);
    for at in 0..count {
        let body_len = usize::try_from(u64_at(pos)?).map_err(|e| corrupt(e.to_string()))?;
        let start = pos;
        pos = pos
            .checked_add(8 + signature_len)
            .and_then(|p| p.checked_add(body_len))
            .filter(|p| *p <= payload.len())
            .ok_or_else(|| corrupt(format!("event {at} runs past the end of the block")))?;
        bounds.push(position(pos)?);
        crcs.push(crc32c::crc32c(&payload[start..pos]));
    }
    Ok((payload, FrameMap { header, location: loc, bounds, crcs }))
}

/// Event `index` of a payload, which must fill `start..end` exactly.
fn decode_event(
    payload: &[u8],
    start: usize,
    end: usize,
    location: &str,
    height: u64,
    index: u32,
) -> Result<SignedEvent, LedgerError> {
    let corrupt =
        |detail: String| LedgerError::CorruptLog { location: location.to_string(), height, detail };
    let bytes = payload
        .get(start..end)
        .ok_or_else(|| corrupt(format!("event {index} runs past the end of the block")))?;
    let (event, used): (SignedEvent, usize) = codec::decode_prefix(bytes)
        .map_err(|e| corrupt(format!("event {index} does not decode: {e}")))?;
    if used != bytes.len() {
        return Err(corrupt(format!(
            "event {index} decodes from {used} of its {} bytes",
            bytes.len()
        )));
    }
    Ok(event)
}

/// Largest read buffer [`read_mapped_events`] keeps on a thread for its next reads: 1 MiB (a
/// longer run is read into a buffer of its own, freed after). Reads run on tokio's blocking
/// pool, whose threads are many; each keeps at most this much.
pub const MAX_KEPT_READ_BUFFER: usize = 1 << 20;

thread_local! {
    /// The read buffer of [`read_mapped_events`] on each reading thread.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most bytes between two wanted events that [`read_mapped_events`] reads through rather than
/// reading each separately: 64 KiB.
pub const MAX_READ_GAP: usize = 64 * 1024;

/// Events `indexes` (ascending) of a mapped block, reading only their bytes (events close
/// together in one read), each checked against the CRC32C its map took from the checked frame:
/// a changed byte is reported as damage to the log, never answered.
pub fn read_mapped_events(
    dir: &Path,
    map: &FrameMap,
    indexes: &[u32],
) -> Result<Vec<SignedEvent>, LedgerError> {
    read_mapped_events_keeping(dir, map, indexes, MAX_KEPT_READ_BUFFER)
}

/// [`read_mapped_events`], keeping the thread's buffer for runs of at most `keep` bytes.
pub(crate) fn read_mapped_events_keeping(
    dir: &Path,
    map: &FrameMap,
    indexes: &[u32],
    keep: usize,
) -> Result<Vec<SignedEvent>, LedgerError> {
    use std::os::unix::fs::FileExt;
    let height = map.header.height;
    ascending(indexes, height)?;
    let path = segment_path(dir, map.location.segment);
    let location = format!("{} offset {}", path.display(), map.location.offset);
    let file = File::open(&path).map_err(io(format!("cannot open {}", path.display())))?;
    let payload_offset = map.location.offset + frame::FRAME_HEADER_BYTES as u64;
    let mut out = Vec::with_capacity(indexes.len());
    let mut rest = indexes;
    while let Some(&first) = rest.first() {
        // A run: the wanted events from `first` on whose gaps are at most MAX_READ_GAP.
        let mut run = 1;
        let (start, mut end) = map.bounds_of(first)?;
        while let Some(&next) = rest.get(run) {
            let (s, e) = map.bounds_of(next)?;
            if s < end || s - end > MAX_READ_GAP {
                break;
            }
            end = e;
            run += 1;
        }
        let len = end - start;
        let mut check_run = |buf: &mut [u8]| -> Result<(), LedgerError> {
            file.read_exact_at(buf, payload_offset + start as u64)
                .map_err(io(format!("cannot read {}", path.display())))?;
            for &index in &rest[..run] {
                let (s, e) = map.bounds_of(index)?;
                let bytes = &buf[s - start..e - start];
                if map.crcs.get(index as usize) != Some(&crc32c::crc32c(bytes)) {
                    return Err(LedgerError::CorruptLog {
                        location: location.clone(),
                        height,
                        detail: format!(
                            "event {index} changed since its block was read and checked \
                             (CRC32C mismatch)"
                        ),
                    });
                }
                out.push(decode_event(bytes, 0, bytes.len(), &location, height, index)?);
            }
            Ok(())
        };
        if len <= keep {
            // The thread's buffer only grows (up to `keep`), so it is not zeroed
            // again for every read.
            READ_BUFFER.with_borrow_mut(|buf| {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                check_run(&mut buf[..len])
            })?;
        } else {
            check_run(&mut vec![0u8; len])?;
        }
        rest = &rest[run..];
    }
    Ok(out)
}

/// The first offset at or after `from` where an intact BLOCK frame starts, if any. Bytes a
/// crash leaves behind (a prefix of one frame, zeros) hold none; damage inside the log is
/// followed by the frames written after it.
fn next_intact_frame(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(frame::FRAME_HEADER_BYTES)).find(|&p| {
        data[p] == frame::kind::BLOCK && matches!(frame::read(data, p), FrameRead::Frame { .. })
    })
}

impl BlockLog {
    /// Opens the log in `dir` and scans every frame. `committed_height` is the highest height
    /// known as committed elsewhere (the index's tip, a validator's sign-state): no frame at or
    /// below it may be a torn tail. Any damage is an error and changes nothing; only a
    /// [`Access::Writer`] creates a missing log or cuts a provably torn tail (see
    /// [`OpenReport::torn_tail`]).
    pub fn open(
        dir: &Path,
        access: Access,
        committed_height: u64,
    ) -> Result<(BlockLog, OpenReport), LedgerError> {
        let (log, report, damage) = BlockLog::open_inner(dir, access, committed_height, false)?;
        match damage {
            Some(e) => Err(e),
            None => Ok((log, report)),
        }
    }

    /// Opens the log read-only for an audit: the blocks before the first damaged frame are
    /// kept, and the damage (if any) is returned instead of failing the open. The caller judges
    /// a torn tail against what it knows was committed.
    pub fn open_for_audit(
        dir: &Path,
    ) -> Result<(BlockLog, OpenReport, Option<LedgerError>), LedgerError> {
        BlockLog::open_inner(dir, Access::ReadOnly, 0, true)
    }

    fn open_inner(
        dir: &Path,
        access: Access,
        committed_height: u64,
        lenient: bool,
    ) -> Result<(BlockLog, OpenReport, Option<LedgerError>), LedgerError> {
        let writable = access == Access::Writer;
        if writable {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        } else if !dir.is_dir() {
            return Err(LedgerError::NotADataDir(format!(
                "{} is not a block log directory",
                dir.display()
            )));
        }
        let segments = list_segments(dir)?;
        let mut log =
            BlockLog { dir: dir.to_path_buf(), locations: Vec::new(), current: None, writable };
        let mut report = OpenReport::default();
        let last = segments.len().checked_sub(1);
        for (i, &segment) in segments.iter().enumerate() {
            let path = segment_path(dir, segment);
            let data =
                std::fs::read(&path).map_err(io(format!("cannot read {}", path.display())))?;
            let is_last = Some(i) == last;
            let (valid_len, torn) =
                match log.scan_segment(segment, &path, &data, is_last, committed_height) {
                    Ok(scanned) => scanned,
                    Err(e) if lenient => return Ok((log, report, Some(e))),
                    Err(e) => return Err(e),
                };
            if is_last && writable {
                // Append mode: every write lands at the end, never over earlier frames.
                let mut file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io(format!("cannot open {} for writing", path.display())))?;
                let mut len = valid_len;
                if torn.is_some() {
                    file.set_len(valid_len)
                        .and_then(|()| file.sync_all())
                        .map_err(io(format!("cannot cut the torn tail of {}", path.display())))?;
                    if valid_len == 0 {
                        // The segment's creation was cut short: finish its header.
                        file.write_all(SEGMENT_MAGIC)
                            .and_then(|()| file.sync_all())
                            .map_err(io(format!("cannot write {}", path.display())))?;
                        len = SEGMENT_MAGIC.len() as u64;
                    }
                }
                log.current = Some((segment, file, len));
            }
            report.torn_tail = torn;
        }
        Ok((log, report, None))
    }

    fn scan_segment(
        &mut self,
        segment: u32,
        path: &Path,
        data: &[u8],
        is_last: bool,
        committed_height: u64,
    ) -> Result<(u64, Option<TornTail>), LedgerError> {
        let corrupt = |offset: usize, height: u64, detail: String| LedgerError::CorruptLog {
            location: format!("{} (segment {segment}) offset {offset}", path.display()),
            height,
            detail,
        };
        let next_height = self.len() + 1;
        let torn = |offset: usize, height: u64| TornTail {
            segment,
            offset: offset as u64,
            bytes: (data.len() - offset) as u64,
            height,
        };
        if data.len() < SEGMENT_MAGIC.len() {
            // A crash while creating the segment (before its first frame) leaves a prefix of
            // the header; only the last segment can be new, and nothing committed is in it.
            if is_last && SEGMENT_MAGIC.starts_with(data) && next_height > committed_height {
                return Ok((0, (!data.is_empty()).then(|| torn(0, next_height))));
            }
            return Err(corrupt(0, next_height, "segment is shorter than its header".into()));
        }
        if &data[..8] != SEGMENT_MAGIC {
            return Err(corrupt(0, next_height, "segment does not start with TLBLOG01".into()));
        }
        let mut offset = SEGMENT_MAGIC.len();
        loop {
            let height = self.len() + 1;
            let damage = match frame::read(data, offset) {
                FrameRead::End => return Ok((offset as u64, None)),
                FrameRead::Frame { kind, next, .. } => {
                    if kind != frame::kind::BLOCK {
                        return Err(corrupt(
                            offset,
                            height,
                            format!("unexpected frame kind {kind}"),
                        ));
                    }
                    self.locations.push(Location {
                        segment,
                        offset: offset as u64,
                        len: u32::try_from(next - offset).unwrap_or(u32::MAX),
                    });
                    offset = next;
                    continue;
                }
                FrameRead::Torn => "the frame is cut short by the end of the segment".to_string(),
                FrameRead::Corrupt(detail) => detail,
            };
            // Only the end of the last frame being written can be torn: not in an older
            // segment, not a committed block, not anything an intact frame follows.
            if !is_last {
                return Err(corrupt(
                    offset,
                    height,
                    format!("{damage}, in a segment that later segments follow"),
                ));
            }
            if height <= committed_height {
                return Err(corrupt(
                    offset,
                    height,
                    format!(
                        "{damage}; block {height} was committed (recorded up to height \
                         {committed_height}), so this is damage, not an unfinished write"
                    ),
                ));
            }
            if let Some(at) = next_intact_frame(data, offset + 1) {
                return Err(corrupt(
                    offset,
                    height,
                    format!(
                        "{damage}, and an intact frame follows at offset {at}: damage inside \
                         the log, not an unfinished write at its end"
                    ),
                ));
            }
            return Ok((offset as u64, Some(torn(offset, height))));
        }
    }

    /// Removes every block from `height` on (and any damage after them), saving the removed
    /// bytes to a file in `save_dir` first. Only `tradeloop reindex --discard-from` calls it,
    /// when an operator chose to drop a damaged part of the log. `height` may be at most one
    /// above the last intact block.
    pub fn discard_from(
        dir: &Path,
        height: u64,
        save_dir: &Path,
    ) -> Result<Discarded, LedgerError> {
        let (log, _, damage) = BlockLog::open_inner(dir, Access::ReadOnly, 0, true)?;
        let intact = log.len();
        if height == 0 || height > intact + 1 {
            return Err(LedgerError::NotFound(format!(
                "height {height} in the block log (its intact blocks are 1..={intact}; \
                 --discard-from takes 1..={})",
                intact + 1
            )));
        }
        let segments = list_segments(dir)?;
        // The cut: the frame of `height`, or the end of the intact frames.
        let (cut_segment, cut_offset) = match log.location(height) {
            Some(loc) => (loc.segment, loc.offset),
            None => match log.locations.last() {
                Some(loc) => (loc.segment, loc.offset + u64::from(loc.len)),
                None => (0, 0),
            },
        };
        std::fs::create_dir_all(save_dir)
            .map_err(io(format!("cannot create {}", save_dir.display())))?;
        let saved_to = save_dir.join(format!("discarded-from-height-{height}.bin"));
        let mut saved = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&saved_to)
            .map_err(io(format!("cannot create {}", saved_to.display())))?;
        let mut bytes = 0u64;
        for &s in segments.iter().filter(|&&s| s >= cut_segment) {
            let path = segment_path(dir, s);
            let data =
                std::fs::read(&path).map_err(io(format!("cannot read {}", path.display())))?;
            let from = if s == cut_segment { cut_offset } else { 0 };
            let tail = data.get(usize::try_from(from).unwrap_or(usize::MAX)..).unwrap_or(&[]);
            saved.write_all(tail).map_err(io(format!("cannot write {}", saved_to.display())))?;
            bytes += tail.len() as u64;
        }
        saved.sync_all().map_err(io(format!("cannot fsync {}", saved_to.display())))?;
        sync_dir(save_dir)?;
        // Later segments go first, so a crash in between leaves a log that ends earlier, never
        // one with a gap.
        for &s in segments.iter().filter(|&&s| s > cut_segment).rev() {
            let path = segment_path(dir, s);
            std::fs::remove_file(&path).map_err(io(format!("cannot remove {}", path.display())))?;
        }
        if segments.contains(&cut_segment) {
            let path = segment_path(dir, cut_segment);
            let mut file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(format!("cannot open {}", path.display())))?;
            let magic = SEGMENT_MAGIC.len() as u64;
            if cut_offset > magic {
                file.set_len(cut_offset)
                    .and_then(|()| file.sync_all())
                    .map_err(io(format!("cannot truncate {}", path.display())))?;
            } else {
                // Nothing intact is kept in this segment: leave just a sound header.
                use std::io::{Seek, SeekFrom};
                file.set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
                    .and_then(|()| file.write_all(SEGMENT_MAGIC))
                    .and_then(|()| file.sync_all())
                    .map_err(io(format!("cannot rewrite {}", path.display())))?;
            }
        }
        sync_dir(dir)?;
        let damaged = damage.is_some();
        Ok(Discarded {
            from_height: height,
            intact_blocks: (intact + 1).saturating_sub(height),
            damaged_bytes_removed: damaged,
            bytes,
            saved_to,
        })
    }

    /// Number of blocks in the log.
    pub fn len(&self) -> u64 {
        self.locations.len() as u64
    }

    /// Whether the log holds no block.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// The location of the block at `height` (1-based).
    pub fn location(&self, height: u64) -> Option<Location> {
        let index = usize::try_from(height.checked_sub(1)?).ok()?;
        self.locations.get(index).copied()
    }

    /// Reads and decodes the block at `height`.
    pub fn read(&self, height: u64) -> Result<CertifiedBlock, LedgerError> {
        let loc = self
            .location(height)
            .ok_or_else(|| LedgerError::NotFound(format!("block at height {height}")))?;
        self.read_at(loc, height)
    }

    /// Reads and decodes the block at a location.
    pub fn read_at(&self, loc: Location, height: u64) -> Result<CertifiedBlock, LedgerError> {
        read_block(&self.dir, loc, height)
    }

    /// Appends a block and fsyncs it. Returns its location.
    pub fn append(&mut self, block: &CertifiedBlock) -> Result<Location, LedgerError> {
        if !self.writable {
            return Err(LedgerError::io(
                format!("block log {}", self.dir.display()),
                std::io::Error::other(
                    "opened read-only (or an earlier write failed and could not be undone; reopen the data dir)",
                ),
            ));
        }
        let payload = codec::encode(block).map_err(|e| LedgerError::InvalidBlock {
            height: block.block.header.height,
            detail: format!("the block cannot be encoded: {e}"),
        })?;
        if payload.len() > frame::MAX_FRAME_PAYLOAD as usize {
            return Err(LedgerError::InvalidBlock {
                height: block.block.header.height,
                detail: format!(
                    "the certified block is {} bytes; a block log frame holds at most {}",
                    payload.len(),
                    frame::MAX_FRAME_PAYLOAD
                ),
            });
        }
        let bytes = frame::encode(frame::kind::BLOCK, &payload);
        let needs_new = match &self.current {
            None => true,
            Some((_, _, len)) => *len + bytes.len() as u64 > MAX_SEGMENT_BYTES && *len > 8,
        };
        if needs_new {
            let segment = self.current.as_ref().map_or(0, |(s, _, _)| s + 1);
            let path = segment_path(&self.dir, segment);
            let mut file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(io(format!("cannot create {}", path.display())))?;
            file.write_all(SEGMENT_MAGIC)
                .and_then(|()| file.sync_all())
                .map_err(io(format!("cannot write {}", path.display())))?;
            sync_dir(&self.dir)?;
            self.current = Some((segment, file, SEGMENT_MAGIC.len() as u64));
        }
        let Some((segment, file, len)) = self.current.as_mut() else {
            return Err(LedgerError::io("block log", std::io::Error::other("no open segment")));
        };
        let offset = *len;
        let path = segment_path(&self.dir, *segment);
        let written = (|| -> Result<(), LedgerError> {
            let failed = io(format!("cannot append to {}", path.display()));
            fail::fail_point!("blocklog::before-write", crate::storage::failpoint::hit);
            file.write_all(&bytes).map_err(failed)?;
            fail::fail_point!("blocklog::after-write", crate::storage::failpoint::hit);
            file.sync_data().map_err(io(format!("cannot fsync {}", path.display())))
        })();
        if let Err(e) = written {
            // Leave no half-written frame behind (the next open would find it torn anyway).
            // If even that fails, refuse every further append: the file's end is unknown.
            if file.set_len(offset).and_then(|()| file.sync_data()).is_err() {
                self.writable = false;
            }
            return Err(e);
        }
        fail::fail_point!("blocklog::after-fsync", crate::storage::failpoint::hit);
        *len += bytes.len() as u64;
        let loc = Location {
            segment: *segment,
            offset,
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        };
        self.locations.push(loc);
        Ok(loc)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Decodes a BLOCK frame into a certified block.
pub fn decode_block_frame(
    buf: &[u8],
    location: &str,
    height: u64,
) -> Result<CertifiedBlock, LedgerError> {
    let corrupt =
        |detail: String| LedgerError::CorruptLog { location: location.to_string(), height, detail };
    match frame::read(buf, 0) {
        FrameRead::Frame { kind: frame::kind::BLOCK, payload, .. } => {
            codec::decode(payload).map_err(|e| corrupt(format!("block does not decode: {e}")))
        }
        FrameRead::Frame { kind, .. } => Err(corrupt(format!("unexpected frame kind {kind}"))),
        FrameRead::Corrupt(d) => Err(corrupt(d)),
        FrameRead::Torn | FrameRead::End => Err(corrupt("frame cut short".into())),
    }
}
