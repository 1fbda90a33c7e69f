//! Filling a node's (small) disk and freeing it again.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The size of each write while filling.
const CHUNK: usize = 64 * 1024;

/// Writes `dir/filler` until the file system is full; the file, to remove later.
pub fn fill(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).context("create the filler file")?;
    let chunk = vec![0xA5u8; CHUNK];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => return Err(e).context("fill the disk"),
        }
    }
    // Whatever a partial chunk left free.
    let byte = [0u8; 1];
    while file.write(&byte).is_ok_and(|n| n == 1) {}
    Ok(path)
}
