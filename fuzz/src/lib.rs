//! Shared fixtures of the fuzz targets: one fixed sample chain (genesis and keys), built once
//! per process, and a scratch directory per input for the targets that read files.
//!
//! Every target states what it asserts in its own header comment; docs/fuzzing.md lists them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tradeloop_ledger::sample::Cast;

/// Genesis time of the fixed chain (Unix ms), the same as the ledger's integration tests.
pub const GENESIS_TIME_MS: u64 = 1_780_000_000_000 - 1000;

/// Validators of the fixed chain.
pub const VALIDATORS: usize = 1;

/// The fixed sample cast: deterministic keys and one validator (its blocks certify themselves,
/// so the generated exports verify).
pub fn cast() -> &'static Cast {
    static CAST: OnceLock<Cast> = OnceLock::new();
    CAST.get_or_init(|| match Cast::deterministic(VALIDATORS, GENESIS_TIME_MS) {
        Ok(cast) => cast,
        // The sample cast is valid by construction; a failure here is a bug in the fixture,
        // not a finding of the fuzzer.
        Err(e) => panic!("the sample cast does not build: {e}"),
    })
}

/// A fresh scratch directory for one input; removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// Creates the directory (under `$TMPDIR`).
    pub fn new() -> Scratch {
        match tempfile::Builder::new().prefix("tradeloop-fuzz-").tempdir() {
            Ok(dir) => Scratch { dir },
            Err(e) => panic!("cannot create a scratch directory: {e}"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `relative` (creating parent directories) and returns its path.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                panic!("cannot create {}: {e}", parent.display());
            }
        }
        if let Err(e) = std::fs::write(&path, bytes) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// Splits fuzz input into small integers and the rest, without panicking on short input.
#[derive(Debug)]
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    /// The next byte, or 0 when the input is used up.
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next 8 bytes big-endian, zero-padded.
    pub fn u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        for b in out.iter_mut() {
            *b = self.u8();
        }
        u64::from_be_bytes(out)
    }

    /// The next 32 bytes, zero-padded.
    pub fn array32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for b in out.iter_mut() {
            *b = self.u8();
        }
        out
    }

    /// The next `n` bytes (fewer if the input ends).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    /// True if nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
