//! A node's wall clock set off from the machine's, with libfaketime (Debian's `faketime`
//! package): the offset is read from a file the test rewrites, so a clock can jump while the
//! node runs. The monotonic clock is left alone, as an NTP step leaves it: the node's timers
//! keep their pace and only its reading of the time of day moves.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// How often (seconds) the fake clock re-reads its offset file.
pub const REREAD_SECONDS: u32 = 1;

/// The path of libfaketime's multi-threaded library, installing Debian's `faketime` package
/// first when it is missing and this process may (root).
pub fn library() -> Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        bail!("libfaketime is not installed: install Debian's `faketime` package (apt-get install faketime)");
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "faketime"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get to install faketime")?;
    if !installed.success() {
        // The package lists may be missing on a fresh machine.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "faketime"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
    }
    find().context("apt-get installed faketime but libfaketimeMT.so.1 was not found")
}

fn find() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?;
    lib.flatten()
        .map(|arch| arch.path().join("faketime/libfaketimeMT.so.1"))
        .chain(std::iter::once(PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")))
        .find(|p| p.is_file())
}

/// Sets the clock offset in `file`, in seconds (`+20`, `-60`).
pub fn set_offset(file: &Path, seconds: i64) -> Result<()> {
    std::fs::write(file, format!("{seconds:+}\n")).context("write the fake clock's offset file")
}

/// The environment of a process whose clock is off by what `file` says.
pub fn env(library: &Path, file: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_CACHE_DURATION".into(), REREAD_SECONDS.to_string()),
    ]
}
