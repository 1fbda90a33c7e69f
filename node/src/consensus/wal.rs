//! The consensus write-ahead log (docs/formats.md, "Consensus WAL"): what a validator received and
//! sent at the height it is deciding, written before it acts on it and fsynced before it signs
//! anything ([`Wal::write`], [`Wal::sync`]), so that after a crash it replays the height to the
//! state of its last signature or later instead of starting it afresh.
//!
//! One file per height, `wal-<height:020>.log`: the magic `TLWAL001`, the height (u64 BE), then
//! frames of kind WAL_RECORD (docs/formats.md) whose payloads are opaque to this module (they
//! are `walrecord::WalRecord`s, encoded by the consensus adapter). Opening truncates a torn last record and refuses any
//! other damage; a decided height's file is removed once the block is committed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tradeloop_ledger::encoding::frame::{self, FrameRead};
use tradeloop_ledger::storage::failpoint;

/// Magic bytes at the start of every WAL file.
pub const WAL_MAGIC: &[u8; 8] = b"TLWAL001";
/// Largest record accepted, in bytes (a proposal part of a full block fits well below it).
pub const MAX_WAL_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Most records replayed for one height; a height that needs more is not converging and the
/// log must not grow without bound.
pub const MAX_WAL_RECORDS_PER_HEIGHT: usize = 1_000_000;

const HEADER_BYTES: usize = 16;

/// Why the WAL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file is damaged somewhere other than its tail.
    #[error("WAL {path} is damaged at offset {offset} ({detail}); the node cannot replay this height safely. Move the file aside only if the sign-state guard is intact")]
    Damaged {
        /// The file.
        path: String,
        /// Where.
        offset: usize,
        /// What.
        detail: String,
    },
    /// A record or the log is over its bound.
    #[error("WAL record refused: {0}")]
    TooLarge(String),
    /// An I/O error; the record is not durable.
    #[error("WAL {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier append failed part-way and could not be undone, so the file's tail is not
    /// known; nothing more is appended until the WAL is reopened (a restart of the node), which
    /// cuts the torn record.
    #[error("WAL {path}: an earlier append failed ({detail}); restart the node to reopen the WAL")]
    Uncertain {
        /// The file.
        path: String,
        /// The failure.
        detail: String,
    },
}

impl WalError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WalError::Damaged { .. } => "WAL_DAMAGED",
            WalError::TooLarge(_) => "WAL_TOO_LARGE",
            WalError::Io { .. } => "WAL_IO",
            WalError::Uncertain { .. } => "WAL_UNCERTAIN",
        }
    }
}

/// The WAL of the height being decided.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    height: u64,
    file: File,
    records: usize,
    /// Bytes in the file that are whole records (the header included).
    len: u64,
    /// Set when an append failed and its bytes could not be cut off again, or an fsync
    /// failed.
    uncertain: Option<String>,
    /// Records were written since the last fsync.
    unsynced: bool,
}

fn path_for(dir: &Path, height: u64) -> PathBuf {
    dir.join(format!("wal-{height:020}.log"))
}

impl Wal {
    /// Opens the WAL of `height` in `dir`, creating it if absent. Returns the WAL and the
    /// records already in it, in order, for replay. A torn last record is truncated.
    pub fn open(dir: &Path, height: u64) -> Result<(Wal, Vec<Vec<u8>>), WalError> {
        let path = path_for(dir, height);
        let shown = path.display().to_string();
        let io = |source| WalError::Io { path: shown.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let existing = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let (records, valid_len) = match &existing {
            Some(bytes) if bytes.len() >= HEADER_BYTES => scan(bytes, height, &shown)?,
            // A file shorter than its header is a creation torn by a crash: start it again.
            _ => (Vec::new(), 0),
        };
        let file = if valid_len == 0 {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(io)?;
            file.write_all(WAL_MAGIC)
                .and_then(|()| file.write_all(&height.to_be_bytes()))
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            OpenOptions::new().append(true).open(&path).map_err(io)?
        } else {
            let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
            if existing.as_ref().is_some_and(|b| b.len() > valid_len) {
                file.set_len(valid_len as u64).map_err(io)?;
            }
            // Records written but not fsynced before a crash of the process are still in the
            // page cache; make them durable before they are replayed and acted on.
            file.sync_all().map_err(io)?;
            file
        };
        let count = records.len();
        let len = if valid_len == 0 { HEADER_BYTES } else { valid_len } as u64;
        let wal = Wal {
            dir: dir.to_path_buf(),
            height,
            file,
            records: count,
            len,
            uncertain: None,
            unsynced: false,
        };
        Ok((wal, records))
    }

    /// The height this WAL belongs to.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Appends a record and fsyncs it: [`Wal::write`] then [`Wal::sync`]. A record whose
    /// fsync fails is cut off again, like one whose write fails.
    pub fn append(&mut self, record: &[u8]) -> Result<(), WalError> {
        let (records, len) = (self.records, self.len);
        self.write(record)?;
        let path = path_for(&self.dir, self.height).display().to_string();
        if let Err(e) = self.sync_to_disk(&path) {
            self.records = records;
            self.len = len;
            self.unsynced = false;
            if self.file.set_len(len).and_then(|()| self.file.sync_data()).is_err() {
                self.uncertain = Some(e.to_string());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Writes a record to the file without an fsync: it survives the process (the page cache
    /// holds it) but not a power loss until the next [`Wal::sync`]. The consensus adapter
    /// writes every input this way and syncs once before it signs anything, so each signature
    /// is preceded on disk by every input that led to it (as CometBFT does: only its own
    /// messages use `WriteSync`).
    pub fn write(&mut self, record: &[u8]) -> Result<(), WalError> {
        if record.is_empty() || record.len() > MAX_WAL_RECORD_BYTES {
            return Err(WalError::TooLarge(format!(
                "a record is 1 to {MAX_WAL_RECORD_BYTES} bytes, this one is {}",
                record.len()
            )));
        }
        if self.records >= MAX_WAL_RECORDS_PER_HEIGHT {
            return Err(WalError::TooLarge(format!(
                "height {} already has {MAX_WAL_RECORDS_PER_HEIGHT} records",
                self.height
            )));
        }
        let path = path_for(&self.dir, self.height).display().to_string();
        if let Some(detail) = &self.uncertain {
            return Err(WalError::Uncertain { path, detail: detail.clone() });
        }
        let bytes = frame::encode(frame::kind::WAL_RECORD, record);
        match self.write_bytes(&bytes, &path) {
            Ok(()) => {
                self.records += 1;
                self.len += bytes.len() as u64;
                self.unsynced = true;
                Ok(())
            }
            Err(e) => {
                // Cut what may have been written, so that the next record follows whole ones;
                // if even that fails the tail is unknown and the WAL refuses more appends.
                if self.file.set_len(self.len).is_err() {
                    self.uncertain = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Makes every record written so far durable (one fsync; nothing to do if there is none).
    /// If the fsync fails, what reached the disk is unknown: the WAL refuses every later
    /// write until it is reopened (a restart), and the caller must not sign.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if !self.unsynced {
            return Ok(());
        }
        let path = path_for(&self.dir, self.height).display().to_string();
        if let Some(detail) = &self.uncertain {
            return Err(WalError::Uncertain { path, detail: detail.clone() });
        }
        self.sync_to_disk(&path).inspect_err(|e| self.uncertain = Some(e.to_string()))
    }

    fn write_bytes(&mut self, bytes: &[u8], path: &str) -> Result<(), WalError> {
        let io = |source| WalError::Io { path: path.to_string(), source };
        let injected = |detail: String| WalError::Io {
            path: path.to_string(),
            source: std::io::Error::other(detail),
        };
        fail::fail_point!("wal::before-append", |a| failpoint::hit_with(a, injected));
        self.file.write_all(bytes).map_err(io)?;
        fail::fail_point!("wal::after-write", |a| failpoint::hit_with(a, injected));
        Ok(())
    }

    fn sync_to_disk(&mut self, path: &str) -> Result<(), WalError> {
        let io = |source| WalError::Io { path: path.to_string(), source };
        let injected = |detail: String| WalError::Io {
            path: path.to_string(),
            source: std::io::Error::other(detail),
        };
        self.file.sync_data().map_err(io)?;
        self.unsynced = false;
        fail::fail_point!("wal::after-fsync", |a| failpoint::hit_with(a, injected));
        Ok(())
    }

    /// The height is decided and its block committed: start the next height's WAL and remove
    /// the files of this and any earlier height.
    pub fn advance(self, next_height: u64) -> Result<Wal, WalError> {
        let dir = self.dir.clone();
        drop(self);
        let (wal, _) = Wal::open(&dir, next_height)?;
        let entries = std::fs::read_dir(&dir)
            .map_err(|source| WalError::Io { path: dir.display().to_string(), source })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let height = name
                .strip_prefix("wal-")
                .and_then(|s| s.strip_suffix(".log"))
                .and_then(|s| s.parse::<u64>().ok());
            if height.is_some_and(|h| h < next_height) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(wal)
    }
}

/// Scans a WAL file: its records and the length of its intact prefix.
fn scan(bytes: &[u8], height: u64, path: &str) -> Result<(Vec<Vec<u8>>, usize), WalError> {
    let damaged = |offset: usize, detail: String| WalError::Damaged {
        path: path.to_string(),
        offset,
        detail,
    };
    if &bytes[..8] != WAL_MAGIC {
        return Err(damaged(0, "missing TLWAL001 magic".into()));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&bytes[8..16]);
    if u64::from_be_bytes(h) != height {
        return Err(damaged(
            8,
            format!("file is for height {}, not {height}", u64::from_be_bytes(h)),
        ));
    }
    let mut records = Vec::new();
    let mut offset = HEADER_BYTES;
    loop {
        match frame::read(bytes, offset) {
            FrameRead::End => return Ok((records, offset)),
            FrameRead::Frame { kind: frame::kind::WAL_RECORD, payload, next } => {
                if records.len() >= MAX_WAL_RECORDS_PER_HEIGHT {
                    return Err(damaged(offset, "more records than a height may hold".into()));
                }
                records.push(payload.to_vec());
                offset = next;
            }
            FrameRead::Frame { kind, .. } => {
                return Err(damaged(offset, format!("unexpected frame kind {kind}")))
            }
            FrameRead::Torn => return Ok((records, offset)),
            FrameRead::Corrupt(detail) => {
                // A damaged record with nothing after it is a torn final write.
                let len = bytes
                    .get(offset + 1..offset + 5)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
                if offset + frame::FRAME_HEADER_BYTES + len >= bytes.len() {
                    return Ok((records, offset));
                }
                return Err(damaged(offset, detail));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, old) = Wal::open(dir.path(), 5).unwrap();
        assert!(old.is_empty());
        for i in 0..10u8 {
            wal.append(&[i; 40]).unwrap();
        }
        drop(wal);
        let (mut wal, old) = Wal::open(dir.path(), 5).unwrap();
        assert_eq!(old.len(), 10);
        assert_eq!(old[3], vec![3u8; 40]);
        wal.append(b"more").unwrap();
        drop(wal);
        let (_, old) = Wal::open(dir.path(), 5).unwrap();
        assert_eq!(old.len(), 11);
        assert_eq!(old[10], b"more");
    }

    #[test]
    fn a_torn_tail_is_truncated_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 9).unwrap();
        for i in 0..4u8 {
            wal.append(&[i; 100]).unwrap();
        }
        drop(wal);
        let path = path_for(dir.path(), 9);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 30]).unwrap();
        let (mut wal, old) = Wal::open(dir.path(), 9).unwrap();
        assert_eq!(old.len(), 3, "the torn fourth record is dropped");
        wal.append(b"after").unwrap();
        drop(wal);
        let (_, old) = Wal::open(dir.path(), 9).unwrap();
        assert_eq!(old.len(), 4);
        assert_eq!(old[3], b"after");
        // A flipped byte inside an earlier record is damage, not a torn tail.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_BYTES + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Wal::open(dir.path(), 9).unwrap_err().code(), "WAL_DAMAGED");
        // A file of another height under this name is refused too.
        let other = path_for(dir.path(), 10);
        std::fs::write(&other, [&WAL_MAGIC[..], &3u64.to_be_bytes()].concat()).unwrap();
        assert_eq!(Wal::open(dir.path(), 10).unwrap_err().code(), "WAL_DAMAGED");
    }

    #[test]
    fn advancing_prunes_decided_heights_and_bounds_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 1).unwrap();
        wal.append(b"x").unwrap();
        assert_eq!(wal.append(&[]).unwrap_err().code(), "WAL_TOO_LARGE");
        assert_eq!(
            wal.append(&vec![0u8; MAX_WAL_RECORD_BYTES + 1]).unwrap_err().code(),
            "WAL_TOO_LARGE"
        );
        let wal = wal.advance(2).unwrap();
        assert_eq!(wal.height(), 2);
        assert!(!path_for(dir.path(), 1).exists());
        assert!(path_for(dir.path(), 2).exists());
        // A creation torn before its header was written starts again cleanly.
        std::fs::write(path_for(dir.path(), 3), b"TLW").unwrap();
        let (_, old) = Wal::open(dir.path(), 3).unwrap();
        assert!(old.is_empty());
    }
}
