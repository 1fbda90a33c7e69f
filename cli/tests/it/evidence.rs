//! Evidence for third parties as a user runs it: `proof`, `verify-proof`, `compare`,
//! `export --format jsonl|epcis`, and the Python verifier of docs/examples on what the CLI made.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tradeloop_ledger::sample::{trade_events, Cast};
use tradeloop_ledger::{Genesis, Ledger, SignedEvent};

use crate::support;

const T0: u64 = 1_780_000_000_000;

fn tradeloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradeloop")).args(args).output().unwrap()
}

/// `tradeloop export` of the data dir in `format`, with `extra` arguments, to `out`.
fn export(data: &str, genesis: &str, format: &str, extra: &[&str], out: &str) -> Output {
    let args =
        ["export", "--data-dir", data, "--genesis", genesis, "--format", format, "--out", out];
    tradeloop(&[&args[..], extra].concat())
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A 4-validator chain of sample trade 1 (3 events a block, certified by validators 1..=3) in
/// `dir/data`, its genesis in `dir/genesis.json`.
fn chain(dir: &Path) -> (Cast, Vec<SignedEvent>) {
    let cast = Cast::deterministic(4, T0 - 1000).unwrap();
    std::fs::write(dir.join("genesis.json"), cast.genesis.doc.to_json_bytes()).unwrap();
    let mut ledger = Ledger::open(&dir.join("data"), cast.genesis.clone()).unwrap();
    let events = trade_events(&cast, 1, T0);
    for (i, chunk) in events.chunks(3).enumerate() {
        cast.commit(&mut ledger, chunk, T0 + 1000 * i as u64, 0, &[1, 2, 3]).unwrap();
    }
    (cast, events)
}

/// A genesis of the same cast under another chain id: a look-alike network.
fn foreign_genesis(cast: &Cast, path: &Path) {
    let mut doc = cast.genesis.doc.clone();
    doc.chain_id = "look-alike".into();
    std::fs::write(path, doc.to_json_bytes()).unwrap();
}

fn edit(path: &Path, out: &Path, f: impl FnOnce(&mut Value)) -> PathBuf {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(out, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    out.to_path_buf()
}

/// Bundles made by `proof`, and each tampering the issue names, as `verify-proof` and the
/// Python verifier of docs/examples judge them.
#[test]
fn bundles_from_the_cli_verify_in_rust_and_python_and_tampered_ones_fail_in_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cast, events) = chain(d);
    let (data, genesis) = (s(&d.join("data")), s(&d.join("genesis.json")));
    let departed = events
        .iter()
        .position(|e| String::from_utf8_lossy(&e.body).contains("shipment.departed"))
        .unwrap();
    let id = events[departed].id().to_hex();
    let ev = d.join("ev.json");
    let o =
        tradeloop(&["proof", "--data-dir", &data, "--genesis", &genesis, &id, "--out", &s(&ev)]);
    assert!(o.status.success(), "{}", text(&o));
    let o =
        tradeloop(&["proof", "--data-dir", &data, "--genesis", &genesis, &id, "--out", &s(&ev)]);
    assert!(!o.status.success() && text(&o).contains("must not exist"), "never overwrites");
    let t = d.join("t.json");
    let o = tradeloop(&[
        "proof",
        "--data-dir",
        &data,
        "--genesis",
        &genesis,
        "--trade",
        "PO-1",
        "--out",
        &s(&t),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tradeloop(&[
        "proof",
        "--data-dir",
        &data,
        "--genesis",
        &genesis,
        &"ab".repeat(32),
        "--out",
        &s(&d.join("x.json")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not on this ledger"), "{}", text(&o));
    let o = tradeloop(&[
        "proof",
        "--data-dir",
        &data,
        "--genesis",
        &genesis,
        "xyz",
        "--out",
        &s(&d.join("x.json")),
    ]);
    assert!(text(&o).contains("64 hex"), "{}", text(&o));

    let o = tradeloop(&["verify-proof", &s(&ev), "--genesis", &genesis]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.starts_with("OK: 1 event(s) certified"), "{out}");
    assert!(out.contains("shipment.departed") && out.contains("location=CNYTN"), "{out}");
    assert!(out.contains("30 of 40 voting power"), "{out}");
    let o = tradeloop(&["verify-proof", &s(&t), "--genesis", &genesis, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["events"].as_array().unwrap().len(), events.len());
    assert_eq!(v["report"]["blocks"].as_array().unwrap().len(), events.len().div_ceil(3));

    // The tamperings, each named by verify-proof and refused by the Python verifier.
    let changed = edit(&ev, &d.join("changed.json"), |v| {
        let body = hex::decode(v["events"][0]["body"].as_str().unwrap()).unwrap();
        let body = String::from_utf8(body).unwrap().replace("CNYTN", "CNSHA");
        v["events"][0]["body"] = hex::encode(body).into();
    });
    let dropped = edit(&ev, &d.join("dropped.json"), |v| {
        v["blocks"][0]["certificate"]["signatures"].as_array_mut().unwrap().pop();
    });
    let other = edit(&t, &d.join("other.json"), |v| {
        // Event 0's proof swapped for event 1's (same block): a proof for another event.
        let p1 = v["events"][1]["proof"].clone();
        v["events"][0]["proof"] = p1;
    });
    let header = edit(&ev, &d.join("header.json"), |v| {
        v["blocks"][0]["header"]["time_ms"] = (T0 + 99).into();
    });
    let foreign = d.join("foreign.json");
    foreign_genesis(&cast, &foreign);
    let cases: [(&Path, &str, &str); 5] = [
        (&changed, &genesis, "FAILED EVENT_ID"),
        (&dropped, &genesis, "FAILED CERTIFICATE"),
        (&other, &genesis, "FAILED INCLUSION_PROOF"),
        (&header, &genesis, "FAILED HEADER_HASH"),
        (&ev, &s(&foreign), "FAILED FOREIGN_GENESIS"),
    ];
    for (bundle, g, expected) in cases {
        let o = tradeloop(&["verify-proof", &s(bundle), "--genesis", g]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(expected), "{}: {}", bundle.display(), text(&o));
    }
    let o = tradeloop(&["verify-proof", &s(&d.join("genesis.json")), "--genesis", &genesis]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("FAILED BUNDLE_MALFORMED"), "{}", text(&o));

    let python = support::python::signing_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/verify_bundle.py");
    let py = |bundle: &Path, g: &str| {
        Command::new(&python).arg(&script).arg("--genesis").arg(g).arg(bundle).output().unwrap()
    };
    for good in [&ev, &t] {
        let o = py(good, &genesis);
        assert!(o.status.success(), "python on {}: {}", good.display(), text(&o));
        assert!(text(&o).starts_with("OK:"));
    }
    for (bundle, g, expected) in cases {
        let o = py(bundle, g);
        assert_eq!(o.status.code(), Some(1), "python accepted {}: {}", bundle.display(), text(&o));
        assert!(text(&o).contains(expected), "python on {}: {}", bundle.display(), text(&o));
    }
    // The test vector of docs/formats.md.
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/evidence");
    let o = py(&vectors.join("bundle-v1.json"), &s(&vectors.join("genesis.json")));
    assert!(o.status.success(), "python on the vector: {}", text(&o));
}

/// `export --format jsonl`: `verify` takes it like the binary export, and the Python verifier
/// replays its signatures and hashes.
#[test]
fn a_jsonl_export_is_verified_by_the_cli_and_replayed_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cast, events) = chain(d);
    let (data, genesis) = (s(&d.join("data")), s(&d.join("genesis.json")));
    let jsonl = d.join("chain.jsonl");
    let o = export(&data, &genesis, "jsonl", &[], &s(&jsonl));
    assert!(o.status.success(), "{}", text(&o));
    let o = tradeloop(&["verify", "--export", &s(&jsonl), "--genesis", &genesis, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["events"], events.len());
    let o = export(&data, &genesis, "binary", &["--trade", "PO-1"], &s(&d.join("x")));
    assert!(!o.status.success() && text(&o).contains("--format epcis only"), "{}", text(&o));
    // restore reads it too, and the restored copy is the same chain.
    let restored = d.join("restored");
    let o = tradeloop(&[
        "restore",
        "--export",
        &s(&jsonl),
        "--genesis",
        &genesis,
        "--data-dir",
        &s(&restored),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tradeloop(&["compare", &s(&restored), &data, "--genesis", &genesis]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let python = support::python::signing_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/verify_bundle.py");
    let py = |export: &Path, g: &str| {
        Command::new(&python)
            .arg(&script)
            .arg("--genesis")
            .arg(g)
            .arg("--export")
            .arg(export)
            .output()
            .unwrap()
    };
    let o = py(&jsonl, &genesis);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("{} events", events.len())), "{}", text(&o));
    // A changed event field in a block line: both refuse, the CLI naming the height.
    let lines: Vec<String> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(String::from).collect();
    let mut bad = lines.clone();
    bad[2] = bad[2].replace("\"packages\":400", "\"packages\":401");
    assert_ne!(bad[2], lines[2]);
    std::fs::write(d.join("bad.jsonl"), bad.join("\n") + "\n").unwrap();
    let o = tradeloop(&["verify", "--export", &s(&d.join("bad.jsonl")), "--genesis", &genesis]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("FAILED at height 2"), "{}", text(&o));
    assert_eq!(py(&d.join("bad.jsonl"), &genesis).status.code(), Some(1));
    // Truncated, and a foreign genesis.
    std::fs::write(d.join("cut.jsonl"), lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    assert_eq!(py(&d.join("cut.jsonl"), &genesis).status.code(), Some(1));
    let foreign = d.join("foreign.json");
    foreign_genesis(&cast, &foreign);
    let o = py(&jsonl, &s(&foreign));
    assert!(text(&o).contains("FOREIGN_GENESIS"), "{}", text(&o));
}

/// `compare` over data dirs and exports of a chain forked by a validator holding 15 of 35 power
/// that signed both sides.
#[test]
fn compare_says_same_prefix_or_split_view_with_the_equivocator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cast = Cast::deterministic(3, T0 - 1000).unwrap();
    let mut doc = cast.genesis.doc.clone();
    doc.validators[2].power = 15;
    cast.genesis = Genesis::from_doc(doc).unwrap();
    std::fs::write(d.join("genesis.json"), cast.genesis.doc.to_json_bytes()).unwrap();
    let genesis = s(&d.join("genesis.json"));
    let events = trade_events(&cast, 1, T0);
    let mut a = Ledger::open(&d.join("a"), cast.genesis.clone()).unwrap();
    let mut b = Ledger::open(&d.join("b"), cast.genesis.clone()).unwrap();
    for (i, chunk) in events[..6].chunks(2).enumerate() {
        cast.commit(&mut a, chunk, T0 + 1000 * i as u64, 0, &[0, 2]).unwrap();
        cast.commit(&mut b, chunk, T0 + 1000 * i as u64, 0, &[0, 2]).unwrap();
    }
    tradeloop_ledger::export::binary::export(&a, &d.join("a3.tlx")).unwrap();
    cast.commit(&mut a, &events[6..8], T0 + 10_000, 0, &[0, 2]).unwrap();
    cast.commit(&mut b, &events[6..7], T0 + 10_000, 0, &[1, 2]).unwrap();
    tradeloop_ledger::export::jsonl::export_jsonl(&a, &d.join("a.jsonl")).unwrap();
    drop((a, b));
    let cmp = |x: &str, y: &str, g: &str| {
        tradeloop(&["compare", &s(&d.join(x)), &s(&d.join(y)), "--genesis", g])
    };

    let o = cmp("a", "a.jsonl", &genesis);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).starts_with("SAME: both copies hold the same 4 block(s)"), "{}", text(&o));
    let o = cmp("a3.tlx", "a", &genesis);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("agree up to height 3") && text(&o).contains("goes on to height 4"),
        "{}",
        text(&o)
    );
    let o = cmp("a", "b", &genesis);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let out = text(&o);
    assert!(out.starts_with("SPLIT VIEW at height 4"), "{out}");
    let shared = cast.validator_keys[2].public_key().to_hex();
    assert!(out.contains("1 validator(s) holding 15 of 35 voting power signed both"), "{out}");
    assert!(out.contains(&shared), "{out}");
    let o = tradeloop(&[
        "compare",
        &s(&d.join("a.jsonl")),
        &s(&d.join("b")),
        "--genesis",
        &genesis,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(4));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["comparison"]["outcome"], "split");
    assert_eq!(v["comparison"]["equivocators"][0]["validator"], shared.as_str());
    assert_eq!(
        v["comparison"]["equivocators"][0]["in_a"]["signature"].as_str().unwrap().len(),
        128
    );
    // Another chain's genesis: refused, exit 1.
    let foreign = d.join("foreign.json");
    foreign_genesis(&cast, &foreign);
    let o = cmp("a.jsonl", "a3.tlx", &s(&foreign));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is an export of chain"), "{}", text(&o));
}

/// `export --format epcis`: the trade's shipment and customs events in EPCIS 2.0 form, each
/// carrying the ledger event id and height that `proof` takes.
#[test]
fn an_epcis_export_maps_the_trade_and_leads_back_to_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_cast, events) = chain(d);
    let (data, genesis) = (s(&d.join("data")), s(&d.join("genesis.json")));
    let out = d.join("trade.jsonld");
    let o = export(&data, &genesis, "epcis", &["--trade", "PO-1"], &s(&out));
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["type"], "EPCISDocument");
    assert_eq!(doc["schemaVersion"], "2.0");
    let list = doc["epcisBody"]["eventList"].as_array().unwrap();
    let steps: Vec<(&str, &str, &str)> = list
        .iter()
        .map(|e| {
            (
                e["tl:kind"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
                e.get("bizStep").and_then(Value::as_str).unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("shipment.booked", "TransactionEvent", "-"),
            ("customs.declaration_filed", "TransactionEvent", "-"),
            ("customs.cleared", "ObjectEvent", "inspecting"),
            ("shipment.picked_up", "ObjectEvent", "shipping"),
            ("shipment.departed", "ObjectEvent", "departing"),
            ("document.anchored", "TransactionEvent", "-"),
            ("customs.declaration_filed", "TransactionEvent", "-"),
            ("customs.cleared", "ObjectEvent", "inspecting"),
            ("shipment.arrived", "ObjectEvent", "arriving"),
            ("shipment.delivered", "ObjectEvent", "unloading"),
            ("shipment.received", "ObjectEvent", "receiving"),
        ]
    );
    let departed = &list[4];
    assert_eq!(departed["readPoint"]["id"], "https://vocabulary.uncefact.org/unlocode#CNYTN");
    assert_eq!(departed["disposition"], "in_transit");
    assert_eq!(departed["tl:vessel"], "urn:epc:id:imovn:9811000");
    assert!(departed.get("sourceList").is_none(), "the pick-up was the first outbound event");
    assert!(list[3]["sourceList"].is_array());
    let epcs = departed["epcList"].as_array().unwrap();
    assert!(epcs[0].as_str().unwrap().ends_with("/shipment/SHP-1"));
    assert!(epcs[1].as_str().unwrap().starts_with("urn:epc:id:bic:TLPU"));
    let txs: Vec<&str> = departed["bizTransactionList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(txs, ["po", "inv"]);
    assert_eq!(list[5]["bizTransactionList"][2]["type"], "bol");
    // The way back: the extension's event id is a committed event, and `proof` bundles it.
    let id = departed["tl:eventId"].as_str().unwrap();
    assert!(events.iter().any(|e| e.id().to_hex() == id));
    let o = tradeloop(&["proof", "--data-dir", &data, "--genesis", &genesis, id, "--out", "-"]);
    let bundle: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(bundle["events"][0]["height"], departed["tl:blockHeight"]);
    // Filters that match nothing say so.
    let o =
        export(&data, &genesis, "epcis", &["--shipment", "SHP-404"], &s(&d.join("none.jsonld")));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("shipment SHP-404 is not on this chain"), "{}", text(&o));
}

/// `trace`, `trade`, `event show` and `proof` with `--node` print exactly what they print from
/// the data dir, through bearer tokens and paged traces.
#[test]
fn reads_over_a_node_print_what_the_data_dir_prints() {
    use tradeloop_node::api::auth::{Access, Scope, TokenEntry};
    use tradeloop_node::api::testing::{spawn_fake_node_with_shared, FakeRuntime};
    use tradeloop_node::api::{ApiLimits, ApiShared};

    let dir = tempfile::tempdir().unwrap();
    let (cast, events) = chain(dir.path());
    let (data, genesis) = (s(&dir.path().join("data")), s(&dir.path().join("genesis.json")));
    let id = events[4].id().to_hex();
    let reads: Vec<Vec<&str>> = vec![
        vec!["trace", "shipment:SHP-1"],
        vec!["trace", "order:PO-1", "--json"],
        vec!["trade", "PO-1"],
        vec!["trade", "PO-1", "--json"],
        vec!["event", "show", &id],
        vec!["event", "show", &id, "--json"],
        vec!["proof", &id, "--out", "-"],
        vec!["proof", "--trade", "PO-1", "--out", "-"],
    ];
    let offline: Vec<Output> = reads
        .iter()
        .map(|args| {
            tradeloop(&[args.as_slice(), &["--data-dir", &data, "--genesis", &genesis]].concat())
        })
        .collect();

    let ledger = Ledger::open_read_only(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    let access = Access {
        tokens: vec![TokenEntry {
            name: "auditor".into(),
            sha256: tradeloop_crypto::Hash::sha256(b"auditor-token"),
            scopes: vec![Scope::Read],
        }],
    };
    // Pages of 4 events: the client must follow `next_offset` to print the whole trace.
    let limits = ApiLimits { max_page_events: 4, ..ApiLimits::default() };
    let node = spawn_fake_node_with_shared(
        FakeRuntime::accept_all(false),
        limits,
        ledger.view(),
        ApiShared { access, ..ApiShared::default() },
    )
    .unwrap();
    let url = node.url();
    for (args, local) in reads.iter().zip(&offline) {
        assert!(local.status.success(), "{args:?}: {}", text(local));
        let remote =
            tradeloop(&[args.as_slice(), &["--node", &url, "--token", "auditor-token"]].concat());
        assert!(remote.status.success(), "{args:?} --node: {}", text(&remote));
        assert_eq!(
            String::from_utf8_lossy(&remote.stdout),
            String::from_utf8_lossy(&local.stdout),
            "{args:?}"
        );
    }
    let trace = String::from_utf8_lossy(&offline[0].stdout).into_owned();
    assert!(trace.lines().count() > 5, "{trace}");

    // The token from the environment; none at all; both sources at once.
    let o = Command::new(env!("CARGO_BIN_EXE_tradeloop"))
        .args(["trade", "PO-1", "--node", &url])
        .env("TRADELOOP_TOKEN", "auditor-token")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = tradeloop(&["trade", "PO-1", "--node", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("UNAUTHORIZED") && text(&o).contains("bearer token"), "{}", text(&o));
    let o = tradeloop(&["trade", "PO-1", "--node", &url, "--data-dir", &data]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = tradeloop(&["trade", "PO-9", "--node", &url, "--token", "auditor-token"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("PO-9"), "{}", text(&o));
}

/// `token new` prints a token once and the node.toml entry that holds its SHA-256.
#[test]
fn token_new_prints_the_token_and_its_node_toml_entry() {
    let o = tradeloop(&["token", "new", "--name", "erp", "--scopes", "read,submit", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(v["sha256"], tradeloop_crypto::Hash::sha256(token.as_bytes()).to_hex());
    assert_eq!(v["scopes"], serde_json::json!(["read", "submit"]));
    let o = tradeloop(&["token", "new", "--name", "prom", "--scopes", "metrics"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("[[api.tokens]]") && out.contains("name = \"prom\""), "{out}");
    assert!(out.contains("scopes = [\"metrics\"]"), "{out}");
    let o = tradeloop(&["token", "new", "--name", "x", "--scopes", "write"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("`write` is not a scope"), "{}", text(&o));
}
