//! `tradeloop event submit` and `tradeloop status` against the real HTTP API
//! (`tradeloop_node::api::serve`) over a fake runtime that answers from a script. The fake checks
//! and commits nothing: these tests are of the client and the HTTP layer, not of a node. The
//! end-to-end test comes with the node runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::SignedEvent;
use tradeloop_node::api::testing::{
    fake_block_hash, sample_status, spawn_fake_node, FakeNode, FakeRuntime,
};
use tradeloop_node::api::{ApiLimits, EventResult, NodeStatus};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tradeloop"))
}

fn event(nonce: u64) -> SignedEvent {
    let key = SigningKey::from_seed_label("cli-client-test");
    let body = json!({"author": "cn-exporter-acme", "kind": "order.placed", "nonce": nonce,
        "key": key.public_key().to_hex(), "time_ms": 1_700_000_000_000u64});
    SignedEvent::sign(&body, &key).unwrap()
}

/// An events file with these lines.
fn events_file(lines: &[String]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n") + "\n").unwrap();
    file
}

fn submit(node: &str, file: &tempfile::NamedTempFile, extra: &[&str]) -> Output {
    let path = file.path().to_str().unwrap();
    bin().args(["event", "submit", "--node", node, path]).args(extra).output().unwrap()
}

fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn node(fake: FakeRuntime) -> FakeNode {
    spawn_fake_node(fake, ApiLimits::default()).unwrap()
}

#[test]
fn submit_prints_one_line_per_event_in_batches_and_exits_0_when_all_are_accepted() {
    let node = node(FakeRuntime::accept_all(false));
    let events: Vec<SignedEvent> = (0..5).map(event).collect();
    let file = events_file(&events.iter().map(SignedEvent::to_envelope_json).collect::<Vec<_>>());
    let out = submit(&node.url(), &file, &["--batch", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want: Vec<String> = events.iter().map(|e| format!("accepted {}", e.id())).collect();
    assert_eq!(stdout_lines(&out), want);
    assert!(stderr(&out).contains("5 events: 5 accepted"), "{}", stderr(&out));
}

#[test]
fn a_rejection_or_a_bad_line_is_printed_and_exits_1() {
    let bad = event(2).id();
    let fake = FakeRuntime {
        verdict: Box::new(move |e| {
            if e.id() == bad {
                EventResult::Rejected {
                    id: Some(e.id()),
                    code: "DUPLICATE_NONCE".into(),
                    message: "nonce 2 was used before; sign the event with a new nonce".into(),
                }
            } else {
                EventResult::Accepted { id: e.id() }
            }
        }),
        commit_accepted: false,
        status: sample_status(),
    };
    let node = node(fake);
    let lines =
        vec![event(1).to_envelope_json(), "{\"body\": {}}".into(), event(2).to_envelope_json()];
    let out = submit(&node.url(), &events_file(&lines), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got = stdout_lines(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].starts_with("rejected line 2 MALFORMED_EVENT: "), "{got:?}");
    assert_eq!(got[1], format!("accepted {}", event(1).id()));
    assert_eq!(
        got[2],
        format!(
            "rejected {bad} DUPLICATE_NONCE: nonce 2 was used before; sign the event with a new nonce"
        )
    );
}

#[test]
fn submit_wait_reports_the_commit() {
    let node = node(FakeRuntime::accept_all(true));
    let e = event(1);
    let out = submit(&node.url(), &events_file(&[e.to_envelope_json()]), &["--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout_lines(&out),
        [format!("committed {} height 1 block {} index 0", e.id(), fake_block_hash(1))]
    );
}

#[test]
fn submit_wait_that_times_out_reports_pending_and_exits_1() {
    let node = node(FakeRuntime::accept_all(false));
    let e = event(1);
    let file = events_file(&[e.to_envelope_json()]);
    let out = submit(&node.url(), &file, &["--wait", "--timeout-ms", "50"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got = stdout_lines(&out);
    assert!(got[0].starts_with(&format!("pending {}: ", e.id())), "{got:?}");
}

#[test]
fn a_full_mempool_is_waited_out_and_the_batch_sent_again() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let fake = FakeRuntime {
        // The first two events the runtime sees find it full: one whole request, so 429.
        verdict: Box::new(move |e| {
            if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                EventResult::Full { id: e.id(), retry_after_ms: 20 }
            } else {
                EventResult::Accepted { id: e.id() }
            }
        }),
        commit_accepted: false,
        status: sample_status(),
    };
    let node = node(fake);
    let events = [event(1), event(2)];
    let file = events_file(&events.iter().map(SignedEvent::to_envelope_json).collect::<Vec<_>>());
    let out = submit(&node.url(), &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The 429 carries each event's `full` result; those events are sent again.
    assert!(stderr(&out).contains("no room for 2 events"), "{}", stderr(&out));
    assert_eq!(calls.load(Ordering::SeqCst), 4, "sent twice");
    let want: Vec<String> = events.iter().map(|e| format!("accepted {}", e.id())).collect();
    assert_eq!(stdout_lines(&out), want);
}

#[test]
fn a_mempool_that_stays_full_ends_in_full_lines_and_exit_1() {
    let fake = FakeRuntime {
        verdict: Box::new(|e| EventResult::Full { id: e.id(), retry_after_ms: 1 }),
        commit_accepted: false,
        status: sample_status(),
    };
    let node = node(fake);
    let e = event(1);
    let out = submit(&node.url(), &events_file(&[e.to_envelope_json()]), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout_lines(&out)[0].starts_with(&format!("full {}: ", e.id())));
}

#[test]
fn a_node_that_is_not_running_is_named_with_what_to_check() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let out = submit(&url, &events_file(&[event(1).to_envelope_json()]), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("not reachable at {url}")), "{err}");
    assert!(err.contains("`tradeloop node` is running") && err.contains("[api] listen"), "{err}");
    let out = bin().args(["status", "--node", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not reachable"), "{}", stderr(&out));
}

#[test]
fn status_prints_a_summary_or_the_json() {
    let node = node(FakeRuntime::accept_all(false));
    let out = bin().args(["status", "--node", &node.url(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: NodeStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status, sample_status());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tip_hash"], "0".repeat(64));

    let out = bin().args(["status", "--node", &format!("{}/", node.url())]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chain      tradeloop-test"), "{text}");
    assert!(text.contains("validator: yes"), "{text}");
    assert!(text.contains("12D3KooWPeerOne"), "{text}");
}

#[test]
fn an_https_or_bare_address_is_refused_with_the_form_to_use() {
    let file = events_file(&[event(1).to_envelope_json()]);
    for url in ["https://127.0.0.1:1", "127.0.0.1:1"] {
        let out = submit(url, &file, &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("http://"), "{}", stderr(&out));
    }
}

/// A batch that admits nothing is a 409 or 422 problem carrying every result: the client prints
/// them as it prints a 200's.
#[test]
fn batches_answered_409_or_422_are_printed_event_by_event() {
    let (refused, known) = (event(1).id(), event(2).id());
    let fake = FakeRuntime {
        verdict: Box::new(move |e| {
            if e.id() == refused {
                EventResult::Rejected {
                    id: Some(e.id()),
                    code: "EXPORT_NOT_CLEARED".into(),
                    message: "shipment SHP-1 has no export clearance".into(),
                }
            } else if e.id() == known {
                EventResult::committed(
                    e.id(),
                    tradeloop_node::chain::Committed {
                        height: 3,
                        block_hash: fake_block_hash(3),
                        index: 0,
                    },
                )
            } else {
                EventResult::Accepted { id: e.id() }
            }
        }),
        commit_accepted: false,
        status: sample_status(),
    };
    let node = node(fake);
    let lines: Vec<String> = (1..=3).map(|n| event(n).to_envelope_json()).collect();
    let out = submit(&node.url(), &events_file(&lines), &["--batch", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got = stdout_lines(&out);
    assert_eq!(
        got,
        vec![
            format!(
                "rejected {refused} EXPORT_NOT_CLEARED: shipment SHP-1 has no export clearance"
            ),
            format!("committed {known} height 3 block {} index 0", fake_block_hash(3)),
            format!("accepted {}", event(3).id()),
        ],
        "{}",
        stderr(&out)
    );
}
