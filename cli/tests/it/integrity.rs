//! Crashes at every durable step of a commit (failpoints) and bit rot and truncation of the
//! block log and of sled's files, through the binary a user runs. Every build of the binary has
//! the ledger's failpoints compiled in (the workspace Cargo.toml turns them on), inert unless
//! `FAILPOINTS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tradeloop_ledger::sample::trade_events;

use crate::support;
use support::now_ms;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tradeloop"))
}

struct Chain {
    dir: tempfile::TempDir,
    events: usize,
}

impl Chain {
    /// A genesis, a validator key and one sample trade as an events file (19 events).
    fn new() -> Chain {
        let (dir, cast) = support::chain_dir();
        let events: Vec<String> =
            trade_events(&cast, 1, now_ms()).iter().map(|e| e.to_envelope_json()).collect();
        std::fs::write(dir.path().join("events.jsonl"), events.join("\n") + "\n").unwrap();
        Chain { dir, events: events.len() }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }
    /// `append` with one event per block, and failpoints set.
    fn append(&self, failpoints: &str) -> Output {
        bin()
            .args(["append", "--data-dir", &self.s("data"), "--genesis", &self.s("genesis.json")])
            .args(["--validator-key", &self.s("validator.json"), "--block-events", "1", "--json"])
            .arg(self.s("events.jsonl"))
            .env("FAILPOINTS", failpoints)
            .output()
            .unwrap()
    }
    fn verify(&self) -> Output {
        bin()
            .args(["verify", "--data-dir", &self.s("data"), "--genesis", &self.s("genesis.json")])
            .args(["--json"])
            .output()
            .unwrap()
    }
    /// The height `verify` reports (it must pass).
    fn verified_height(&self) -> u64 {
        let out = self.verify();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert!(out.status.success(), "verify failed: {v}");
        v["report"]["blocks"].as_u64().unwrap()
    }
}

#[test]
fn a_crash_at_every_durable_step_leaves_the_block_before_or_after_and_verify_agrees() {
    // Before and after the block write, the fsync, the index batch and its flush.
    let points = [
        "blocklog::before-write",
        "blocklog::after-write",
        "blocklog::after-fsync",
        "index::before-apply",
        "index::after-apply",
        "index::after-flush",
    ];
    for point in points {
        for skip in [0u64, 3, 7, 11, 17] {
            let chain = Chain::new();
            // The (skip+1)-th block's step aborts the process on the spot (a new chain's first
            // index batch records its genesis, before any block).
            let passes = if point.ends_with("apply") { skip + 1 } else { skip };
            let out = chain.append(&format!("{point}={passes}*off->return(abort)"));
            assert!(!out.status.success(), "{point}/{skip}: append survived its crash");
            // `skip` blocks were committed before the crash; the crashing one may or may not be.
            let height = chain.verified_height();
            assert!(
                height == skip || height == skip + 1,
                "{point}/{skip}: the reopened chain has {height} blocks"
            );
            let written_and_synced = matches!(
                point,
                "blocklog::after-fsync"
                    | "index::before-apply"
                    | "index::after-apply"
                    | "index::after-flush"
            );
            if written_and_synced {
                assert_eq!(height, skip + 1, "{point}/{skip}: a durable block was lost");
            }
            if point == "blocklog::before-write" {
                assert_eq!(height, skip, "{point}/{skip}: a block appeared that was never written");
            }
            // The writer goes on: the rest commits, what was committed is refused as a replay.
            let out = chain.append("");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["height"].as_u64(), Some(chain.events as u64), "{point}/{skip}: {v}");
            let rejected = v["rejected"].as_array().unwrap();
            assert_eq!(rejected.len() as u64, height, "{point}/{skip}: {v}");
            assert!(rejected.iter().all(|r| r["code"] == "DUPLICATE_EVENT"), "{point}/{skip}: {v}");
            assert_eq!(chain.verified_height(), chain.events as u64);
        }
    }
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::metadata(&path).unwrap().len() > 0 {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A read command after the damage: it must either answer with the whole chain (the damage
/// hit nothing the chain depends on, or the index was caught up from the log) or refuse
/// saying what to do. It never answers with a shorter chain.
fn assert_detected_or_whole(chain: &Chain, what: &str) {
    let out = chain.verify();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if out.status.success() {
        assert_eq!(v["report"]["blocks"].as_u64(), Some(chain.events as u64), "{what}: {v}");
    } else {
        let text = format!("{v} {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            ["restore", "reindex", "export", "resync"].iter().any(|w| text.contains(w)),
            "{what}: the refusal says nothing about what to do: {text}"
        );
    }
    let trade = bin()
        .args(["trade", "--data-dir", &chain.s("data"), "--genesis", &chain.s("genesis.json")])
        .args(["PO-1", "--json"])
        .output()
        .unwrap();
    if trade.status.success() {
        let status: serde_json::Value = serde_json::from_slice(&trade.stdout).unwrap();
        assert_eq!(status["closed"], true, "{what}: a read command saw a shorter chain");
    }
}

#[test]
fn bit_rot_and_truncation_of_the_log_and_the_index_are_detected_never_hidden() {
    let seed0: u64 = std::env::var("TRADELOOP_ROT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ms)
        | 1;
    println!("bit rot seed: {seed0} (rerun with TRADELOOP_ROT_SEED={seed0})");
    let mut seed = seed0;
    let base = Chain::new();
    let out = base.append("");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pristine = base.p("data");
    for trial in 0..40 {
        let chain = Chain { dir: tempfile::tempdir().unwrap(), events: base.events };
        for f in ["genesis.json", "validator.json", "events.jsonl"] {
            std::fs::copy(base.p(f), chain.p(f)).unwrap();
        }
        copy_tree(&pristine, &chain.p("data"));
        let (target, kind) = match trial % 4 {
            0 => (vec![chain.p("data/blocks/blocks-00000000.log")], "log bit flip"),
            1 => (vec![chain.p("data/blocks/blocks-00000000.log")], "log truncation"),
            2 => (files_under(&chain.p("data/index")), "index bit flip"),
            _ => (files_under(&chain.p("data/index")), "index truncation"),
        };
        let file = &target[(next(&mut seed) % target.len() as u64) as usize];
        let mut bytes = std::fs::read(file).unwrap();
        let at = (next(&mut seed) % bytes.len() as u64) as usize;
        if kind.ends_with("bit flip") {
            bytes[at] ^= 1 << (next(&mut seed) % 8);
        } else {
            bytes.truncate(at);
        }
        std::fs::write(file, &bytes).unwrap();
        let what = format!("trial {trial} ({kind} of {} at {at}, seed {seed0})", file.display());
        assert_detected_or_whole(&chain, &what);
        if kind.starts_with("log") {
            // Every byte of the log belongs to a committed block: damage there is always
            // found, by every opener.
            assert!(!chain.verify().status.success(), "{what}: verify passed a damaged log");
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn restore_from_an_export_brings_a_damaged_data_dir_back_with_the_same_tip() {
    let chain = Chain::new();
    assert!(chain.append("").status.success());
    let export = chain.s("backup.tlx");
    let out = bin()
        .args(["export", "--data-dir", &chain.s("data"), "--genesis", &chain.s("genesis.json")])
        .args(["--out", &export])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before: serde_json::Value = serde_json::from_slice(&chain.verify().stdout).unwrap();
    let log = chain.p("data/blocks/blocks-00000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&log, &bytes).unwrap();
    let out = chain.verify();
    assert!(!out.status.success());
    // reindex refuses and names the way out; restore does not overwrite; a new dir works.
    let out = bin()
        .args(["reindex", "--data-dir", &chain.s("data"), "--genesis", &chain.s("genesis.json")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("restore") && err.contains("--discard-from"),
        "{err}"
    );
    let restore = |dir: &str| {
        bin()
            .args(["restore", "--export", &export, "--genesis", &chain.s("genesis.json")])
            .args(["--data-dir", dir])
            .output()
            .unwrap()
    };
    let out = restore(&chain.s("data"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwrites"));
    std::fs::rename(chain.p("data"), chain.p("damaged")).unwrap();
    let out = restore(&chain.s("data"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: serde_json::Value = serde_json::from_slice(&chain.verify().stdout).unwrap();
    assert_eq!(after["report"]["tip_hash"], before["report"]["tip_hash"]);
    assert_eq!(after["ok"], true);
}

#[test]
fn read_commands_refuse_a_mistyped_data_dir_and_create_nothing() {
    let chain = Chain::new();
    assert!(chain.append("").status.success());
    let typo = chain.s("dat");
    for args in [
        vec!["trade", "PO-1"],
        vec!["trace", "shipment:SHP-1"],
        vec!["export", "--out", "x.tlx"],
        vec!["verify"],
        vec!["event", "show", "00"],
    ] {
        let mut cmd = bin();
        cmd.current_dir(chain.dir.path()).args(&args).args(["--data-dir", &typo]);
        cmd.args(["--genesis", &chain.s("genesis.json")]);
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded on a typo");
        assert!(!chain.p("dat").exists(), "{args:?} created the mistyped data dir");
        assert!(!chain.p("x.tlx").exists(), "{args:?} wrote an export of nothing");
    }
}
