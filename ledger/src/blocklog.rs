//! The block log: the source of truth (DESIGN §5).
//!
//! Append-only segment files `blocks-NNNNNNNN.log` in one directory, each starting with the
//! 8-byte magic `TLBLOG01` and followed by frames (see [`crate::frame`]) of kind BLOCK whose
//! payload is a bincode [`CertifiedBlock`]. A block counts as committed once its frame is
//! written and `fsync`ed (and, when a segment is created, the directory too).
//!
//! On open the whole log is scanned and every frame's CRC32C checked. A frame cut short at the
//! very end of the last segment is a torn write from a crash: a writer truncates it (a read-only
//! open reports it). Any other damage is corruption and is reported, never repaired silently.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::block::CertifiedBlock;
use crate::frame::{self, FrameRead};
use crate::{codec, LedgerError};

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

/// How the log was found on open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Bytes of a torn tail found after the last whole frame (truncated if writable).
    pub torn_tail_bytes: u64,
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

impl BlockLog {
    /// Opens (creating if `writable` and missing) the log in `dir` and scans every frame.
    pub fn open(dir: &Path, writable: bool) -> Result<(BlockLog, OpenReport), LedgerError> {
        let (log, report, damage) = BlockLog::open_inner(dir, writable, false)?;
        match damage {
            Some(e) => Err(e),
            None => Ok((log, report)),
        }
    }

    /// Opens the log read-only for an audit: the blocks before the first damaged frame are
    /// kept, and the damage (if any) is returned instead of failing the open.
    pub fn open_for_audit(
        dir: &Path,
    ) -> Result<(BlockLog, OpenReport, Option<LedgerError>), LedgerError> {
        if !dir.is_dir() {
            return Err(LedgerError::io(
                format!("{} is not a block log directory", dir.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        BlockLog::open_inner(dir, false, true)
    }

    fn open_inner(
        dir: &Path,
        writable: bool,
        lenient: bool,
    ) -> Result<(BlockLog, OpenReport, Option<LedgerError>), LedgerError> {
        if writable {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        }
        let mut segments = Vec::new();
        if dir.exists() {
            for entry in
                std::fs::read_dir(dir).map_err(io(format!("cannot list {}", dir.display())))?
            {
                let entry = entry.map_err(io(format!("cannot list {}", dir.display())))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(n) = name.strip_prefix("blocks-").and_then(|s| s.strip_suffix(".log")) {
                    let n: u32 = n.parse().map_err(|_| LedgerError::CorruptLog {
                        location: name.clone(),
                        height: 1,
                        detail: "unexpected segment file name".into(),
                    })?;
                    segments.push(n);
                }
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
        let mut log =
            BlockLog { dir: dir.to_path_buf(), locations: Vec::new(), current: None, writable };
        let mut report = OpenReport::default();
        let last = segments.len().checked_sub(1);
        for (i, &segment) in segments.iter().enumerate() {
            let path = segment_path(dir, segment);
            let data =
                std::fs::read(&path).map_err(io(format!("cannot read {}", path.display())))?;
            let is_last = Some(i) == last;
            let valid_len = match log.scan_segment(segment, &path, &data, is_last, &mut report) {
                Ok(len) => len,
                Err(e) if lenient => return Ok((log, report, Some(e))),
                Err(e) => return Err(e),
            };
            if is_last && writable {
                // Append mode: every write lands at the end, never over earlier frames.
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io(format!("cannot open {} for writing", path.display())))?;
                if valid_len < data.len() as u64 {
                    file.set_len(valid_len)
                        .and_then(|()| file.sync_all())
                        .map_err(io(format!("cannot truncate torn tail of {}", path.display())))?;
                }
                log.current = Some((segment, file, valid_len));
            }
        }
        Ok((log, report, None))
    }

    fn scan_segment(
        &mut self,
        segment: u32,
        path: &Path,
        data: &[u8],
        is_last: bool,
        report: &mut OpenReport,
    ) -> Result<u64, LedgerError> {
        let corrupt = |offset: usize, height: usize, detail: String| LedgerError::CorruptLog {
            location: format!("{} offset {offset}", path.display()),
            height: height as u64 + 1,
            detail,
        };
        if data.len() < SEGMENT_MAGIC.len() {
            if is_last && SEGMENT_MAGIC.starts_with(data) {
                report.torn_tail_bytes = data.len() as u64;
                return Ok(0);
            }
            return Err(corrupt(
                0,
                self.locations.len(),
                "segment is shorter than its header".into(),
            ));
        }
        if &data[..8] != SEGMENT_MAGIC {
            return Err(corrupt(
                0,
                self.locations.len(),
                "segment does not start with TLBLOG01".into(),
            ));
        }
        let mut offset = SEGMENT_MAGIC.len();
        loop {
            match frame::read(data, offset) {
                FrameRead::End => return Ok(offset as u64),
                FrameRead::Frame { kind, next, .. } => {
                    if kind != frame::kind::BLOCK {
                        return Err(corrupt(
                            offset,
                            self.locations.len(),
                            format!("unexpected frame kind {kind}"),
                        ));
                    }
                    self.locations.push(Location {
                        segment,
                        offset: offset as u64,
                        len: u32::try_from(next - offset).unwrap_or(u32::MAX),
                    });
                    offset = next;
                }
                FrameRead::Torn if is_last => {
                    report.torn_tail_bytes = (data.len() - offset) as u64;
                    return Ok(offset as u64);
                }
                FrameRead::Torn => {
                    return Err(corrupt(
                        offset,
                        self.locations.len(),
                        "frame cut short inside an older segment".into(),
                    ))
                }
                FrameRead::Corrupt(detail) => {
                    // A damaged last frame with nothing after it may be a torn write whose
                    // length field landed but whose payload did not: treat it as torn.
                    if is_last && frame_ends_at_eof(data, offset) {
                        report.torn_tail_bytes = (data.len() - offset) as u64;
                        return Ok(offset as u64);
                    }
                    return Err(corrupt(offset, self.locations.len(), detail));
                }
            }
        }
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
        use std::io::{Read, Seek, SeekFrom};
        let path = segment_path(&self.dir, loc.segment);
        let mut file = File::open(&path).map_err(io(format!("cannot open {}", path.display())))?;
        let mut buf = vec![0u8; loc.len as usize];
        file.seek(SeekFrom::Start(loc.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(io(format!("cannot read {}", path.display())))?;
        decode_block_frame(&buf, &format!("{} offset {}", path.display(), loc.offset), height)
    }

    /// Appends a block and fsyncs it. Returns its location.
    pub fn append(&mut self, block: &CertifiedBlock) -> Result<Location, LedgerError> {
        if !self.writable {
            return Err(LedgerError::io("block log", std::io::Error::other("opened read-only")));
        }
        let bytes = frame::encode(frame::kind::BLOCK, &codec::encode(block));
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
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
            // Leave no half-written frame behind: the next open would treat it as torn anyway.
            let _ = file.set_len(offset);
            return Err(LedgerError::io(format!("cannot append to {}", path.display()), e));
        }
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

fn frame_ends_at_eof(data: &[u8], offset: usize) -> bool {
    if data.len() < offset + frame::FRAME_HEADER_BYTES {
        return true;
    }
    let len = u32::from_be_bytes([
        data[offset + 1],
        data[offset + 2],
        data[offset + 3],
        data[offset + 4],
    ]);
    offset + frame::FRAME_HEADER_BYTES + len as usize >= data.len()
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
