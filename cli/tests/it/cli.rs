//! The `tradeloop` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tradeloop_ledger::evidence::audit::verify_data_dir;
use tradeloop_ledger::sample::{ids, trade_events, Cast};
use tradeloop_ledger::{Genesis, Ledger};

use crate::support;
use support::now_ms;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tradeloop"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A chain on disk: genesis file, validator key file and every participant's key file.
struct Setup {
    dir: tempfile::TempDir,
    cast: Cast,
}

impl Setup {
    fn new() -> Setup {
        let (dir, cast) = support::chain_dir();
        Setup { dir, cast }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }
    fn append(&self, events: &str, block_events: &str) -> Output {
        run(&[
            "append",
            "--data-dir",
            &self.s("data"),
            "--genesis",
            &self.s("genesis.json"),
            "--validator-key",
            &self.s("validator.json"),
            "--block-events",
            block_events,
            "--json",
            &self.s(events),
        ])
    }
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["keygen", "--help"],
        vec!["genesis", "init", "--help"],
        vec!["genesis", "add", "--help"],
        vec!["event", "sign", "--help"],
        vec!["event", "show", "--help"],
        vec!["append", "--help"],
        vec!["trace", "--help"],
        vec!["trade", "--help"],
        vec!["verify", "--help"],
        vec!["export", "--help"],
        vec!["proof", "--help"],
        vec!["verify-proof", "--help"],
        vec!["compare", "--help"],
        vec!["reindex", "--help"],
        vec!["demo", "--help"],
        vec!["bench", "verify", "--help"],
        vec!["bench", "append", "--help"],
        vec!["sim", "--help"],
    ] {
        let o = run(&cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(stdout(&o).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn a_user_builds_a_chain_from_scratch_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    // Keys.
    for name in ["imp", "exp", "node"] {
        let o = run(&["keygen", "--out", &p(&format!("{name}.json")), "--json"]);
        assert!(o.status.success());
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["public_key"].as_str().unwrap().len(), 64);
    }
    assert!(!run(&["keygen", "--out", &p("imp.json")]).status.success(), "never overwrites a key");
    // Genesis.
    assert!(run(&["genesis", "init", "--chain-id", "test-chain", "--out", &p("g.json")])
        .status
        .success());
    let add = |args: &[&str]| {
        let mut all = vec!["genesis", "add", "--genesis"];
        let g = p("g.json");
        all.push(&g);
        all.extend_from_slice(args);
        run(&all)
    };
    assert!(add(&[
        "--id",
        "de-imp",
        "--name",
        "Importer",
        "--role",
        "importer",
        "--country",
        "DE",
        "--key-file",
        &p("imp.json")
    ])
    .status
    .success());
    assert!(add(&[
        "--id",
        "cn-exp",
        "--name",
        "Exporter",
        "--role",
        "exporter",
        "--country",
        "CN",
        "--key-file",
        &p("exp.json"),
        "--validator-key-file",
        &p("node.json"),
        "--power",
        "10"
    ])
    .status
    .success());
    let bad = add(&["--id", "x", "--name", "X", "--role", "pirate", "--country", "DE"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be one of"));
    // Sign an order and an acceptance, plus one the rules reject.
    let body = |v: Value, name: &str| std::fs::write(dir.path().join(name), v.to_string()).unwrap();
    body(
        json!({"author": "de-imp", "kind": "trade.order_placed", "order_id": "PO-1", "seller": "cn-exp",
        "incoterm": "FOB", "currency": "USD", "amount": "10.00",
        "lines": [{"sku": "A", "description": "d", "hs_code": "940542", "quantity": "1", "unit": "PCE"}]}),
        "b1.json",
    );
    body(
        json!({"author": "cn-exp", "kind": "trade.order_accepted", "order_id": "PO-1"}),
        "b2.json",
    );
    body(
        json!({"author": "cn-exp", "kind": "trade.order_accepted", "order_id": "PO-404"}),
        "b3.json",
    );
    let mut lines = String::new();
    for (b, k) in [("b1.json", "imp.json"), ("b2.json", "exp.json"), ("b3.json", "exp.json")] {
        let o = run(&["event", "sign", "--key", &p(k), "--genesis", &p("g.json"), &p(b)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        lines.push_str(&stdout(&o));
    }
    lines.push_str("{not json}\n");
    std::fs::write(dir.path().join("events.jsonl"), lines).unwrap();
    let o = run(&[
        "append",
        "--data-dir",
        &p("data"),
        "--genesis",
        &p("g.json"),
        "--validator-key",
        &p("node.json"),
        "--json",
        &p("events.jsonl"),
    ]);
    assert_eq!(o.status.code(), Some(1), "rejections make the exit status 1");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["committed"], 2, "accepted events still commit");
    let codes: Vec<(u64, &str)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(codes, vec![(3, "UNKNOWN_ORDER"), (4, "MALFORMED_EVENT")]);
    // Query, export, verify.
    let o = run(&["trade", "--data-dir", &p("data"), "--genesis", &p("g.json"), "--json", "PO-1"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["closed"], false);
    assert_eq!(v["open_legs"][0], "invoiced");
    let o = run(&[
        "trace",
        "--data-dir",
        &p("data"),
        "--genesis",
        &p("g.json"),
        "--json",
        "order:PO-1",
    ]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let id = v[1]["id"].as_str().unwrap().to_string();
    let o =
        run(&["event", "show", "--data-dir", &p("data"), "--genesis", &p("g.json"), "--json", &id]);
    let shown: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown["kind"], "trade.order_accepted");
    assert_eq!(shown["height"], v[1]["height"]);
    let o = run(&[
        "event",
        "show",
        "--data-dir",
        &p("data"),
        "--genesis",
        &p("g.json"),
        &"0".repeat(64),
    ]);
    assert!(!o.status.success());
    assert!(run(&[
        "export",
        "--data-dir",
        &p("data"),
        "--genesis",
        &p("g.json"),
        "--out",
        &p("x.tlx")
    ])
    .status
    .success());
    let o = run(&["verify", "--export", &p("x.tlx"), "--genesis", &p("g.json"), "--json"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["report"]["events"], 2);
    assert!(run(&["verify", "--data-dir", &p("data"), "--genesis", &p("g.json")]).status.success());
    assert!(run(&["reindex", "--data-dir", &p("data"), "--genesis", &p("g.json")])
        .status
        .success());
    // A tampered export fails with exit 1 and names the height.
    let mut bytes = std::fs::read(dir.path().join("x.tlx")).unwrap();
    let n = bytes.len();
    bytes[n - 200] ^= 1;
    std::fs::write(dir.path().join("bad.tlx"), bytes).unwrap();
    let o = run(&["verify", "--export", &p("bad.tlx"), "--genesis", &p("g.json")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("FAILED at height"), "{}", stdout(&o));
}

#[test]
fn demo_runs_and_leaves_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = run(&["demo", "--out", &out.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("CLOSED"));
    assert!(text.contains("EXPORT_NOT_CLEARED"));
    // Each party's events went through its own node, and all seven copies agree.
    assert!(text.contains("via cn-exporter-bright-node"), "{text}");
    assert!(text.contains("via de-customs-node"), "{text}");
    assert!(text.contains("all 7 copies are the same chain"), "{text}");
    for f in [
        "net/genesis.json",
        "events.jsonl",
        "chain.tlx",
        "net/keys/cn-exporter-bright.json",
        "net/keys/nodes/de-customs-node.json",
        "net/nodes/forwarder-pacific-link-node/node.toml",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let genesis = out.join("net/genesis.json").display().to_string();
    let o = run(&[
        "verify",
        "--export",
        &out.join("chain.tlx").display().to_string(),
        "--genesis",
        &genesis,
    ]);
    assert!(o.status.success());
    // The nodes are gone: every data dir opens for writing (no process holds its index).
    for node in ["de-customs-node", "cn-exporter-bright-node"] {
        let data = out.join("net/nodes").join(node).join("data");
        let o = run(&[
            "trade",
            "--data-dir",
            &data.display().to_string(),
            "--genesis",
            &genesis,
            "PO-1",
        ]);
        assert!(o.status.success(), "{node}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Signs events with the Python example of docs/signing.md and appends them.
#[test]
fn events_signed_in_python_are_accepted() {
    let python = support::python::signing_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/sign_event.py");
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/event_vectors.json");
    let o =
        Command::new(&python).arg(&script).arg("--check-vectors").arg(&vectors).output().unwrap();
    assert!(o.status.success(), "python vectors: {}", String::from_utf8_lossy(&o.stderr));
    let s = Setup::new();
    let mut lines = String::new();
    for (author, body) in [
        (
            ids::IMPORTER,
            json!({"author": ids::IMPORTER, "kind": "trade.order_placed", "order_id": "PY-1",
            "seller": ids::EXPORTER, "incoterm": "CIP", "currency": "EUR", "amount": "99.50",
            "lines": [{"sku": "Ü-1", "description": "Gerät \"x\"", "hs_code": "851713", "quantity": "3", "unit": "PCE"}]}),
        ),
        (
            ids::EXPORTER,
            json!({"author": ids::EXPORTER, "kind": "trade.order_accepted", "order_id": "PY-1"}),
        ),
    ] {
        std::fs::write(s.p("body.json"), body.to_string()).unwrap();
        let o = Command::new(&python)
            .arg(&script)
            .arg("--key")
            .arg(s.p(&format!("{author}.json")))
            .arg("--genesis")
            .arg(s.p("genesis.json"))
            .arg(s.p("body.json"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        lines.push_str(&stdout(&o));
    }
    std::fs::write(s.p("py.jsonl"), lines).unwrap();
    let o = s.append("py.jsonl", "10");
    assert!(o.status.success(), "{} {}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["committed"], 2);
}

/// xorshift64*, so the kill schedule is reproducible from the printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Bytes in the block log of `data` (every segment), 0 before the first block.
fn log_bytes(data: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(data.join("blocks")) else {
        return 0;
    };
    entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// Each round starts `append` on what is not committed yet and SIGKILLs it at a point chosen by
/// observable progress, not by time: once the block log has grown by a number of bytes drawn
/// from the seed (from 1 byte, inside the first block's write, to about three blocks). So
/// every round provably kills a run that has begun writing blocks and still has hundreds of
/// blocks to go; and every round checks the invariant: the data dir reopens at its last whole
/// block, index and log agree, no committed block is lost, and `verify` accepts the chain.
#[test]
fn sigkill_during_append_never_loses_or_corrupts_committed_blocks() {
    let mut seed: u64 = std::env::var("TRADELOOP_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ms)
        | 1;
    println!("kill schedule seed: {seed} (rerun with TRADELOOP_KILL_SEED={seed})");
    let s = Setup::new();
    let trades = 1..201;
    let t = now_ms();
    let envelopes: Vec<String> = trades
        .clone()
        .flat_map(|n| trade_events(&s.cast, n, t))
        .map(|e| e.to_envelope_json())
        .collect();
    let genesis = Genesis::load(&s.p("genesis.json")).unwrap();
    // A block of 5 sample events (plus header and certificate) is a few KiB.
    let block_bytes_estimate: u64 =
        envelopes[..5].iter().map(|e| e.len() as u64).sum::<u64>() + 1024;
    let (mut last_height, mut committed) = (0u64, 0usize);
    for round in 0..20 {
        // Like an operator resuming: feed what is not committed yet. Events commit in file
        // order (none is rejected), so the committed count says where to resume.
        let remaining_blocks = (envelopes.len() - committed) / 5;
        assert!(remaining_blocks > 100, "round {round}: the run must be far from its end");
        std::fs::write(s.p("rest.jsonl"), envelopes[committed..].join("\n")).unwrap();
        let before = log_bytes(&s.p("data"));
        let growth = 1 + next(&mut seed) % (3 * block_bytes_estimate);
        let mut child = bin()
            .args([
                "append",
                "--data-dir",
                &s.s("data"),
                "--genesis",
                &s.s("genesis.json"),
                "--validator-key",
                &s.s("validator.json"),
                "--block-events",
                "5",
                "--json",
                &s.s("rest.jsonl"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let grown = loop {
            let now = log_bytes(&s.p("data"));
            if now >= before + growth {
                break now - before;
            }
            let exited = child.try_wait().unwrap();
            assert!(
                exited.is_none(),
                "round {round}: append exited ({exited:?}) before the kill point"
            );
            assert!(std::time::Instant::now() < deadline, "round {round}: no progress in 60 s");
            std::thread::yield_now();
        };
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "round {round}: append had exited ({exited:?}) at the kill point"
        );
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Reopen: the chain is at its last committed block and the index matches the log.
        let ledger = Ledger::open(&s.p("data"), genesis.clone())
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): reopen failed: {e}"));
        let tip = ledger.tip().clone();
        assert_eq!(tip.height, ledger.log().len(), "round {round}: index and log agree");
        if tip.height > 0 {
            assert_eq!(ledger.block(tip.height).unwrap().block.header.hash(), tip.hash);
        }
        assert!(
            tip.height >= last_height,
            "round {round} (seed {seed}): a committed block was lost"
        );
        drop(ledger);
        let report = verify_data_dir(&s.p("data"), &genesis, &mut |_, _| {})
            .unwrap_or_else(|f| panic!("round {round} (seed {seed}): verify failed: {f}"));
        assert_eq!(report.blocks, tip.height);
        // A SIGKILL loses no written data: if the log grew by more than two whole blocks
        // (the average block of this log, twice), a new block was complete and must be
        // committed now. Smaller kill points may land inside the first block's write.
        if let Some(average_block) = log_bytes(&s.p("data")).checked_div(tip.height) {
            if grown > 2 * average_block {
                assert!(
                    tip.height > last_height,
                    "round {round} (seed {seed}): the log grew {grown} bytes (blocks average {average_block}) but no block was committed"
                );
            }
        }
        println!(
            "round {round}: killed after the log grew {grown} bytes (kill point {growth}), height {} ({} events)",
            tip.height, report.events
        );
        last_height = tip.height;
        committed = report.events as usize;
    }
    assert!(last_height > 0, "the rounds committed nothing (seed {seed})");
    // Finish the run, then every event is on the chain exactly once.
    std::fs::write(s.p("rest.jsonl"), envelopes[committed..].join("\n")).unwrap();
    let o = s.append("rest.jsonl", "50");
    assert!(o.status.success(), "{}", stdout(&o));
    // Re-submitting everything is refused, event by event, as replays.
    std::fs::write(s.p("all.jsonl"), envelopes[..50].join("\n")).unwrap();
    let v: Value = serde_json::from_str(&stdout(&s.append("all.jsonl", "50"))).unwrap();
    assert_eq!(v["committed"], 0);
    assert!(v["rejected"].as_array().unwrap().iter().all(|r| r["code"] == "DUPLICATE_EVENT"));
    let report = verify_data_dir(&s.p("data"), &genesis, &mut |_, _| {}).unwrap();
    assert_eq!(report.events as usize, envelopes.len());
    let ledger = Ledger::open(&s.p("data"), genesis).unwrap();
    for n in trades {
        assert!(ledger.trade_status(&format!("PO-{n}")).unwrap().closed, "trade {n}");
    }
}
