//! The `tradeloop` binary under careless and hostile use: closed pipes, full disks, bad bytes,
//! huge inputs, bad numbers and genesis files that must not change under a running chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tradeloop_ledger::sample::{ids, trade_events, Cast};
use tradeloop_ledger::{Ledger, SignedEvent};

use crate::support;
use support::now_ms;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tradeloop"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// No panic reached the user: Rust's panic message and exit status 101 are absent.
fn assert_no_panic(o: &Output) {
    assert_ne!(o.status.code(), Some(101), "panicked: {}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
}

/// A chain on disk: genesis, validator key and every participant's key file.
struct Chain {
    dir: tempfile::TempDir,
    cast: Cast,
}

impl Chain {
    fn new() -> Chain {
        let (dir, cast) = support::chain_dir();
        Chain { dir, cast }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }
    fn chain_args(&self) -> Vec<String> {
        vec!["--data-dir".into(), self.s("data"), "--genesis".into(), self.s("genesis.json")]
    }
    fn append_cmd(&self, events: &str) -> Command {
        let mut c = bin();
        c.arg("append").args(self.chain_args()).args([
            "--validator-key",
            &self.s("validator.json"),
            "--json",
            &self.s(events),
        ]);
        c
    }
    fn append_json(&self, events: &str) -> (Output, Value) {
        let o = self.append_cmd(events).output().unwrap();
        assert_no_panic(&o);
        let v = serde_json::from_str(&text(&o.stdout))
            .unwrap_or_else(|e| panic!("{e}: {} {}", text(&o.stdout), text(&o.stderr)));
        (o, v)
    }
    /// Commits one sample trade (12 events) so the read commands have something to print.
    fn with_a_trade(self) -> Chain {
        let lines: Vec<String> = trade_events(&self.cast, 1, now_ms())
            .iter()
            .map(SignedEvent::to_envelope_json)
            .collect();
        std::fs::write(self.p("trade.jsonl"), lines.join("\n")).unwrap();
        let (o, v) = self.append_json("trade.jsonl");
        assert!(o.status.success(), "{v}");
        self
    }
    fn read_cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg(args[0]).args(self.chain_args()).args(&args[1..]);
        c
    }
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE, from the
/// first byte on, so the test does not depend on timing. (A FIFO, because its ends can be opened
/// and closed with safe code: the read end non-blocking, then the write end, then the read end
/// is dropped.)
fn closed_pipe() -> Stdio {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn a_closed_pipe_ends_read_commands_quietly_with_status_0() {
    let c = Chain::new().with_a_trade();
    for args in [
        vec!["trace", "shipment:SHP-1"],
        vec!["trace", "--json", "shipment:SHP-1"],
        vec!["trade", "PO-1"],
        vec!["verify"],
    ] {
        let o = c.read_cmd(&args).stdout(closed_pipe()).output().unwrap();
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        assert_eq!(text(&o.stderr), "", "{args:?}: nothing to say when the reader left");
    }
}

#[test]
fn a_full_disk_is_a_clear_error_not_a_panic() {
    let c = Chain::new().with_a_trade();
    for args in [vec!["trace", "shipment:SHP-1"], vec!["trade", "PO-1"]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let o = c.read_cmd(&args).stdout(full).output().unwrap();
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains("cannot write to standard output: No space left on device"), "{err}");
        assert_eq!(err.matches("os error 28").count(), 1, "the OS error once: {err}");
    }
}

#[test]
fn append_reports_what_it_committed_when_stdout_fails() {
    let c = Chain::new();
    let t = now_ms();
    let lines: Vec<String> =
        trade_events(&c.cast, 1, t).iter().map(SignedEvent::to_envelope_json).collect();
    std::fs::write(c.p("a.jsonl"), lines[..4].join("\n")).unwrap();
    std::fs::write(c.p("b.jsonl"), lines[4..8].join("\n")).unwrap();
    // A full disk: the events are committed, the summary goes to stderr, exit 1 with the reason.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = c.append_cmd("a.jsonl").stdout(full).output().unwrap();
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("\"committed\":4"), "the summary is on stderr: {err}");
    assert!(err.contains("cannot write to standard output"), "{err}");
    // A closed pipe: the summary goes to stderr too, and the status is append's own (0 here).
    let o = c.append_cmd("b.jsonl").stdout(closed_pipe()).output().unwrap();
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("\"committed\":4"), "{}", text(&o.stderr));
    let ledger = Ledger::open(&c.p("data"), c.cast.genesis.clone()).unwrap();
    assert_eq!(ledger.tip().height, 2, "both runs committed their block");
}

#[test]
fn every_unreadable_line_is_reported_and_the_rest_is_committed() {
    let c = Chain::new();
    let envelopes: Vec<Vec<u8>> = trade_events(&c.cast, 1, now_ms())
        .iter()
        .map(|e| e.to_envelope_json().into_bytes())
        .collect();
    // Lines 1..=12: a trade, with invalid UTF-8 at lines 3 and 8, an oversized line at 10 and
    // a blank line at 11; everything else must commit, including what follows each bad line.
    let mut file: Vec<Vec<u8>> = Vec::new();
    let mut events = envelopes.iter();
    for line in 1..=12 {
        match line {
            3 => file.push(b"\xff\xfe not text".to_vec()),
            8 => file.push(b"{\"body\":\"\xc3\x28\"}".to_vec()),
            10 => file.push(vec![b'x'; 1024 * 1024 + 1]),
            11 => file.push(Vec::new()),
            _ => file.push(events.next().unwrap().clone()),
        }
    }
    std::fs::write(c.p("mixed.jsonl"), file.join(&b"\n"[..])).unwrap();
    let (o, v) = c.append_json("mixed.jsonl");
    assert_eq!(o.status.code(), Some(1), "bad lines make the exit status 1");
    assert_eq!(v["committed"], 8, "{v}");
    let unreadable: Vec<u64> =
        v["unreadable"].as_array().unwrap().iter().map(|u| u["line"].as_u64().unwrap()).collect();
    assert_eq!(unreadable, [3, 8], "{v}");
    assert!(v["unreadable"][0]["reason"].as_str().unwrap().contains("UTF-8"), "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{v}");
    assert_eq!(rejected[0]["line"], 10);
    assert_eq!(rejected[0]["code"], "EVENT_TOO_LARGE");
    assert!(rejected[0]["message"].as_str().unwrap().contains("MAX_EVENT_LINE_BYTES"), "{v}");
    // The text summary says the same and names each line on stderr.
    std::fs::write(
        c.p("again.jsonl"),
        [b"\xff".to_vec(), envelopes[9].clone(), b"\xfe".to_vec()].join(&b"\n"[..]),
    )
    .unwrap();
    let o = bin()
        .arg("append")
        .args(c.chain_args())
        .args(["--validator-key", &c.s("validator.json"), &c.s("again.jsonl")])
        .output()
        .unwrap();
    assert_no_panic(&o);
    let out = text(&o.stdout);
    assert!(out.starts_with("committed 1 events in 1 blocks; 0 rejected; 2 unreadable"), "{out}");
    let err = text(&o.stderr);
    assert!(err.contains("line 1: unreadable") && err.contains("line 3: unreadable"), "{err}");
}

#[test]
fn event_sign_refuses_exactly_what_append_refuses_with_the_same_code() {
    let c = Chain::new();
    let g = c.genesis_hash();
    let imp = ids::IMPORTER;
    let order = |amount: &str| {
        format!(
            r#"{{"author":"{imp}","kind":"trade.order_placed","order_id":"PO-9","seller":"{}","incoterm":"FOB","currency":"USD",{amount},"lines":[{{"sku":"A","description":"d","hs_code":"940542","quantity":"1","unit":"PCE"}}]}}"#,
            ids::EXPORTER
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("duplicate keys", order(r#""amount":"1.00","amount":"999999.00""#), "MALFORMED_EVENT"),
        ("unknown kind", format!(r#"{{"author":"{imp}","kind":"trade.gift"}}"#), "UNKNOWN_KIND"),
        (
            "missing field",
            format!(r#"{{"author":"{imp}","kind":"trade.order_accepted"}}"#),
            "INVALID_FIELD",
        ),
        ("bad number", order(r#""amount":"12,50""#), "INVALID_FIELD"),
        (
            "oversize body",
            format!(
                r#"{{"author":"{imp}","kind":"shipment.exception","shipment_id":"S","exception_type":"damage","description":"{}"}}"#,
                "x".repeat(70 * 1024)
            ),
            "EVENT_TOO_LARGE",
        ),
        (
            "someone else's author",
            format!(
                r#"{{"author":"{}","kind":"trade.order_accepted","order_id":"PO-9"}}"#,
                ids::EXPORTER
            ),
            "KEY_NOT_AUTHORIZED",
        ),
        (
            "unknown author",
            r#"{"author":"nobody","kind":"trade.order_accepted","order_id":"PO-9"}"#.into(),
            "UNKNOWN_PARTICIPANT",
        ),
    ];
    for (what, body, code) in &cases {
        std::fs::write(c.p("body.json"), body).unwrap();
        let o = run(&[
            "event",
            "sign",
            "--key",
            &c.s(&format!("{imp}.json")),
            "--genesis",
            &c.s("genesis.json"),
            &c.s("body.json"),
        ]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{what}");
        assert_eq!(text(&o.stdout), "", "{what}: nothing is signed");
        let err = text(&o.stderr);
        assert!(err.contains(&format!("rejected {code}:")), "{what}: {err}");
        // What the ledger says about the same body, signed without the CLI's checks.
        let envelope = envelope_without_checks(&c, body, &g);
        std::fs::write(c.p("one.jsonl"), envelope).unwrap();
        let (_, v) = c.append_json("one.jsonl");
        assert_eq!(v["committed"], 0, "{what}: {v}");
        assert_eq!(v["rejected"][0]["code"], *code, "{what}: the ledger's own code: {v}");
    }
    // A good body still signs and commits; the field error message names the field.
    std::fs::write(c.p("body.json"), order(r#""amount":"1.00""#)).unwrap();
    let args = |b: &str| {
        vec![
            "event".to_string(),
            "sign".into(),
            "--key".into(),
            c.s(&format!("{imp}.json")),
            "--genesis".into(),
            c.s("genesis.json"),
            c.s(b),
        ]
    };
    let o = bin().args(args("body.json")).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::write(c.p("good.jsonl"), &o.stdout).unwrap();
    assert_eq!(c.append_json("good.jsonl").1["committed"], 1);
    std::fs::write(c.p("body.json"), order(r#""amount":"12,50""#)).unwrap();
    let err = text(&bin().args(args("body.json")).output().unwrap().stderr);
    assert!(err.contains("amount: \"12,50\" is not a decimal"), "names the field: {err}");
    // A body file larger than any acceptable body is refused before it is read whole.
    std::fs::write(c.p("huge.json"), vec![b' '; 2 * 256 * 1024 + 1]).unwrap();
    let o = bin().args(args("huge.json")).output().unwrap();
    assert_no_panic(&o);
    assert!(text(&o.stderr).contains("MAX_BODY_FILE_BYTES"), "{}", text(&o.stderr));
}

impl Chain {
    fn genesis_hash(&self) -> String {
        self.cast.genesis.hash_hex().to_string()
    }
}

/// The envelope of `body` with the common fields filled in as `event sign` fills them, signed
/// by the importer's key with no check at all; the body text is kept as given (a duplicate key
/// stays in it), as a careless signer would send it.
fn envelope_without_checks(c: &Chain, body: &str, chain: &str) -> String {
    let key = &c.cast.keys[ids::IMPORTER];
    let fill = format!(
        r#""chain":"{chain}","key":"{}","time_ms":{},"nonce":"n-{}","#,
        key.public_key().to_hex(),
        now_ms(),
        body.len()
    );
    let filled = format!("{{{fill}{}", &body[1..]);
    let signature = match serde_json::from_str::<Value>(&filled) {
        Ok(v) => SignedEvent::sign(&v, key).map(|s| s.signature.to_hex()).unwrap(),
        Err(_) => "00".repeat(64),
    };
    // serde_json keeps the last of duplicate keys, so the signature is over that reading: the
    // ledger must refuse the duplicate itself, not a bad signature.
    format!(r#"{{"body":{filled},"signature":"{signature}"}}"#)
}

#[test]
fn genesis_writes_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.json").display().to_string();
    let long = "a".repeat(100);
    for (chain_id, time, what) in [
        ("", "1800000000000", "chain id"),
        (long.as_str(), "1800000000000", "chain id"),
        ("Big Chain", "1800000000000", "chain id"),
        ("ok-chain", "18446744073709551615", "genesis time"),
        ("ok-chain", "1800000000", "genesis time"),
    ] {
        let o = run(&["genesis", "init", "--chain-id", chain_id, "--time-ms", time, "--out", &out]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{chain_id} {time}");
        assert!(text(&o.stderr).contains(what), "{}", text(&o.stderr));
        assert!(!dir.path().join("g.json").exists(), "nothing written for {chain_id} {time}");
    }
    let o = run(&[
        "genesis",
        "init",
        "--chain-id",
        "ok-chain",
        "--time-ms",
        "1800000000000",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn a_genesis_with_a_running_chain_is_not_rewritten_in_place() {
    let c = Chain::new().with_a_trade();
    let original = std::fs::read(c.p("genesis.json")).unwrap();
    let key = c.cast.keys[ids::CN_CUSTOMS].public_key().to_hex();
    let fresh = tradeloop_crypto::SigningKey::from_seed_label("newcomer").public_key().to_hex();
    let add = |extra: &[&str], key: &str| {
        let mut args = vec![
            "genesis",
            "add",
            "--id",
            "nl-importer",
            "--name",
            "Importer NL",
            "--role",
            "importer",
            "--country",
            "NL",
            "--key",
            key,
        ];
        let g = c.s("genesis.json");
        args.extend_from_slice(&["--genesis", &g]);
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_no_panic(&o);
        o
    };
    // No flag: refused, naming the way out.
    let o = add(&[], &fresh);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--out NEW"), "{}", text(&o.stderr));
    // --in-place with the chain's data dir: refused.
    let data = c.s("data");
    let o = add(&["--in-place", "--data-dir", &data], &fresh);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("holds chain"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(c.p("genesis.json")).unwrap(), original, "the file is untouched");
    // A key already owned by someone else is refused by the full genesis validation.
    let new = c.s("new.json");
    let o = add(&["--out", &new], &key);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("listed for both"), "{}", text(&o.stderr));
    assert!(!c.p("new.json").exists());
    // --out NEW writes a new genesis and leaves the old one and its chain alone.
    let o = add(&["--out", &new], &fresh);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(c.p("genesis.json")).unwrap(), original);
    let new_genesis = tradeloop_ledger::Genesis::load(&c.p("new.json")).unwrap();
    assert!(new_genesis.participant("nl-importer").is_some());
    assert!(Ledger::open(&c.p("data"), c.cast.genesis.clone()).is_ok(), "the chain still opens");
}

#[test]
fn runs_that_check_nothing_are_refused() {
    for args in [
        vec!["sim", "--seeds", "0"],
        vec!["sim", "--control", "lost-wal", "--seeds", "0"],
        vec!["bench", "append", "--events", "0"],
        vec!["bench", "verify", "--events", "0"],
        vec!["bench", "append", "--events", "10", "--block-events", "0"],
        vec!["bench", "append", "--events", "10", "--block-events", "1001"],
    ] {
        let o = run(&args);
        assert_no_panic(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?} must fail");
        let err = text(&o.stderr);
        assert!(
            err.contains("--seeds") || err.contains("--events") || err.contains("--block-events"),
            "{args:?} names the option: {err}"
        );
        assert!(!text(&o.stdout).contains("missed"), "{args:?}: {}", text(&o.stdout));
    }
}

#[test]
fn a_negative_control_exits_1_when_caught() {
    let o = run(&["sim", "--validators", "4", "--control", "byzantine-third", "--seeds", "1"]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("caught agreement"), "{}", text(&o.stdout));
}

#[test]
fn messages_say_it_once_and_in_plain_words() {
    let c = Chain::new().with_a_trade();
    // A missing genesis: the OS error appears once.
    let o = run(&["trade", "--data-dir", &c.s("data"), "--genesis", &c.s("nope.json"), "PO-1"]);
    let err = text(&o.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // The index lock held by another user of the data dir: no Rust Debug form.
    let held = Ledger::open(&c.p("data"), c.cast.genesis.clone()).unwrap();
    let o = c.read_cmd(&["trade", "PO-1"]).output().unwrap();
    drop(held);
    let err = text(&o.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(!err.contains("Os {") && !err.contains("kind:"), "{err}");
    assert!(err.matches("os error").count() <= 1, "the OS error is said at most once: {err}");
    // A secret key others can read is used, with a warning.
    use std::os::unix::fs::PermissionsExt;
    let key = c.p(&format!("{}.json", ids::IMPORTER));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        c.p("b.json"),
        json!({"author": ids::IMPORTER, "kind": "trade.order_accepted", "order_id": "PO-1"})
            .to_string(),
    )
    .unwrap();
    let o = run(&[
        "event",
        "sign",
        "--key",
        &key.display().to_string(),
        "--genesis",
        &c.s("genesis.json"),
        &c.s("b.json"),
    ]);
    assert!(text(&o.stderr).contains("readable by everyone"), "{}", text(&o.stderr));
}

#[test]
fn non_ascii_ids_are_printed_as_utf8() {
    let c = Chain::new();
    let id = "PO-ü-東京";
    let placed = c.cast.sign(
        ids::IMPORTER,
        "trade.order_placed",
        json!({"order_id": id, "seller": ids::EXPORTER, "incoterm": "FOB", "currency": "EUR",
            "amount": "5.00", "lines": [{"sku": "Gerät-ü", "description": "東京", "hs_code": "851713", "quantity": "1", "unit": "PCE"}]}),
        now_ms(),
        "u-1",
    );
    let unknown = c.cast.sign(
        ids::EXPORTER,
        "trade.order_accepted",
        json!({"order_id": "PO-ß-北"}),
        now_ms(),
        "u-2",
    );
    std::fs::write(
        c.p("u.jsonl"),
        [placed.to_envelope_json(), unknown.to_envelope_json()].join("\n"),
    )
    .unwrap();
    let (_, v) = c.append_json("u.jsonl");
    assert_eq!(v["committed"], 1, "{v}");
    assert!(v["rejected"][0]["message"].as_str().unwrap().contains("PO-ß-北"), "{v}");
    for args in [vec!["trade", id], vec!["trace", &format!("order:{id}")]] {
        let o = c.read_cmd(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        let out = String::from_utf8(o.stdout).expect("UTF-8 output");
        assert!(out.contains(id) || out.contains("trade.order_placed"), "{args:?}: {out}");
    }
    let o = c.read_cmd(&["trade", id]).output().unwrap();
    assert!(String::from_utf8(o.stdout).unwrap().contains(id));
    let o = c.read_cmd(&["trace", "--json", &format!("order:{id}")]).output().unwrap();
    assert!(String::from_utf8(o.stdout).unwrap().contains("Gerät-ü"), "JSON keeps UTF-8 as is");
}
