//! The API driven through its router (and once through a real socket) against fake runtimes
//! that answer [`ApiCommand`]s from a script. Every wait is bounded by [`TEST_DEADLINE`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tower::ServiceExt;
use tradeloop_crypto::{Hash, SigningKey};
use tradeloop_ledger::SignedEvent;

use tradeloop_node::api::testing::{fake_block_hash, run_fake_runtime, sample_status, FakeRuntime};
use tradeloop_node::api::*;
use tradeloop_node::chain::notice::{CommitNotice, Committed, Evicted};

/// No test waits longer than this for anything.
const TEST_DEADLINE: Duration = Duration::from_secs(10);

fn event(nonce: u64) -> SignedEvent {
    let key = SigningKey::from_seed_label("api-test-exporter");
    let body = json!({"author": "cn-exporter-acme", "kind": "order.placed", "nonce": nonce,
        "key": key.public_key().to_hex(), "time_ms": 1_700_000_000_000u64});
    SignedEvent::sign(&body, &key).unwrap()
}

fn envelopes(events: &[SignedEvent]) -> String {
    let parts: Vec<String> = events.iter().map(SignedEvent::to_envelope_json).collect();
    format!("[{}]", parts.join(","))
}

struct Harness {
    router: Router,
    commands: Option<mpsc::Receiver<ApiCommand>>,
    commits: broadcast::Sender<CommitNotice>,
    /// The ledger the read endpoints answer from, and its directory.
    ledger: tradeloop_ledger::Ledger,
    _dir: tempfile::TempDir,
}

fn harness(limits: ApiLimits) -> Harness {
    let (dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    harness_on(limits, dir, ledger)
}

fn harness_on(
    limits: ApiLimits,
    dir: tempfile::TempDir,
    ledger: tradeloop_ledger::Ledger,
) -> Harness {
    let (tx, rx) = mpsc::channel(limits.command_channel);
    let (commits, _) = broadcast::channel(16);
    Harness {
        router: router(tx, commits.clone(), ledger.view(), limits),
        commands: Some(rx),
        commits,
        ledger,
        _dir: dir,
    }
}

impl Harness {
    /// Starts a [`FakeRuntime`] on the harness's channels.
    fn with_fake(mut self, fake: FakeRuntime) -> Harness {
        let rx = self.commands.take().unwrap();
        tokio::spawn(run_fake_runtime(fake, rx, self.commits.clone()));
        self
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

async fn call(router: &Router, request: Request<Body>) -> Answer {
    let response = tokio::time::timeout(TEST_DEADLINE, router.clone().oneshot(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Answer { status, headers, json }
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn assert_problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.json);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(answer.json["code"], code, "{}", answer.json);
    assert_eq!(answer.json["status"], status);
    assert_eq!(answer.json["type"], format!("urn:tradeloop:problem:{code}"));
    assert!(answer.json["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(answer.json["detail"].as_str().is_some_and(|t| !t.is_empty()));
}

fn statuses(answer: &Answer) -> Vec<String> {
    answer.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_mixed_batch_gets_one_verdict_per_event_in_order() {
    let events: Vec<SignedEvent> = (0..4).map(event).collect();
    let ids: Vec<Hash> = events.iter().map(SignedEvent::id).collect();
    let at = Committed { height: 7, block_hash: fake_block_hash(7), index: 3 };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (script_ids, script_seen) = (ids.clone(), seen.clone());
    let fake = FakeRuntime {
        verdict: Box::new(move |e| {
            let id = e.id();
            script_seen.lock().unwrap().push(id);
            match script_ids.iter().position(|i| *i == id) {
                Some(0) => EventResult::Accepted { id },
                Some(1) => EventResult::Rejected {
                    id: Some(id),
                    code: "BAD_SIGNATURE".into(),
                    message: "the signature does not verify".into(),
                },
                Some(2) => EventResult::committed(id, at),
                _ => EventResult::Full { id, retry_after_ms: 250 },
            }
        }),
        commit_accepted: false,
        status: sample_status(),
    };
    let h = harness(ApiLimits::default()).with_fake(fake);
    // Element 1 does not parse: it has no signature. The others still go through.
    let body = format!(
        "[{}, {{\"body\": {{\"kind\": \"x\"}}}}, {}, {}, {}]",
        events[0].to_envelope_json(),
        events[1].to_envelope_json(),
        events[2].to_envelope_json(),
        events[3].to_envelope_json()
    );
    let answer = call(&h.router, post("/v1/events", body)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    let hex = |i: usize| ids[i].to_hex();
    assert_eq!(answer.json["results"][0], json!({"status": "accepted", "id": hex(0)}));
    assert_eq!(answer.json["results"][1]["status"], "rejected");
    assert_eq!(answer.json["results"][1]["code"], "MALFORMED_EVENT");
    assert!(answer.json["results"][1].get("id").is_none(), "an unparsed event has no id");
    assert_eq!(
        answer.json["results"][2],
        json!({"status": "rejected", "id": hex(1), "code": "BAD_SIGNATURE",
            "message": "the signature does not verify"})
    );
    assert_eq!(
        answer.json["results"][3],
        json!({"status": "committed", "id": hex(2), "height": 7,
            "block_hash": fake_block_hash(7).to_hex(), "index": 3})
    );
    assert_eq!(
        answer.json["results"][4],
        json!({"status": "full", "id": hex(3), "retry_after_ms": 250})
    );
    assert!(answer.json.get("timed_out").is_none());
    assert_eq!(*seen.lock().unwrap(), ids, "the runtime gets the parsed events in order");
    // The answer is the shared wire type.
    let typed: SubmitResponse = serde_json::from_value(answer.json).unwrap();
    assert_eq!(typed.results.len(), 5);
}

#[tokio::test]
async fn each_element_reaches_the_ledger_parser_as_its_own_bytes() {
    let h = harness(ApiLimits::default()).with_fake(FakeRuntime::accept_all(false));
    let good = event(1);
    // Reformatted JSON is the same event (the id is of the canonical body) ...
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<Value>(&good.to_envelope_json()).unwrap(),
    )
    .unwrap();
    // ... but a duplicate key, which a generic JSON value would silently collapse, is refused by
    // the ledger's strict parser: proof that the element's bytes, not a re-serialisation, went in.
    let duplicate = good.to_envelope_json().replacen("{\"body\":{", "{\"body\":{\"nonce\":5,", 1);
    let body = format!("[{pretty},{duplicate}]");
    let answer = call(&h.router, post("/v1/events", body)).await;
    assert_eq!(answer.json["results"][0], json!({"status": "accepted", "id": good.id().to_hex()}));
    assert_eq!(answer.json["results"][1]["code"], "MALFORMED_EVENT", "{}", answer.json);
    // A single object is accepted as well as an array.
    let answer = call(&h.router, post("/v1/events", event(2).to_envelope_json())).await;
    assert_eq!(statuses(&answer), ["accepted"]);
}

#[tokio::test]
async fn malformed_json_is_400_problem_json_with_a_code() {
    let h = harness(ApiLimits::default()).with_fake(FakeRuntime::accept_all(false));
    for (body, code) in [
        ("{not json", "MALFORMED_JSON"),
        ("", "MALFORMED_JSON"),
        ("[{\"a\":1},", "MALFORMED_JSON"),
        ("\u{0}", "MALFORMED_JSON"),
        ("42", "NOT_EVENTS"),
        ("\"text\"", "NOT_EVENTS"),
        ("[]", "NO_EVENTS"),
    ] {
        let answer = call(&h.router, post("/v1/events", body)).await;
        assert_problem(&answer, 400, code);
    }
    let bytes = vec![0xff, 0xfe, b'{'];
    assert_problem(&call(&h.router, post("/v1/events", bytes)).await, 400, "MALFORMED_JSON");
}

#[tokio::test]
async fn bad_query_and_unknown_paths_are_problems() {
    let h = harness(ApiLimits::default()).with_fake(FakeRuntime::accept_all(false));
    let body = || event(1).to_envelope_json();
    for query in ["?wait=forever", "?timeout_ms=5", "?wait=commit&timeout_ms=-1", "?wiat=commit"] {
        let answer = call(&h.router, post(&format!("/v1/events{query}"), body())).await;
        assert_problem(&answer, 400, "BAD_QUERY");
    }
    assert_problem(&call(&h.router, get("/v2/nothing")).await, 404, "NOT_FOUND");
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let limits = ApiLimits { max_body_bytes: 1024, ..ApiLimits::default() };
    let h = harness(limits).with_fake(FakeRuntime::accept_all(false));
    let big = format!("[{}]", vec![event(1).to_envelope_json(); 8].join(","));
    assert!(big.len() > 1024);
    let answer = call(&h.router, post("/v1/events", big)).await;
    assert_problem(&answer, 413, "BODY_TOO_LARGE");
    assert!(answer.json["detail"].as_str().unwrap().contains("1024"));
}

#[tokio::test]
async fn more_events_than_allowed_is_413_and_nothing_is_submitted() {
    let limits = ApiLimits { max_events_per_request: 2, ..ApiLimits::default() };
    let seen = Arc::new(Mutex::new(0usize));
    let counted = seen.clone();
    let fake = FakeRuntime {
        verdict: Box::new(move |e| {
            *counted.lock().unwrap() += 1;
            EventResult::Accepted { id: e.id() }
        }),
        commit_accepted: false,
        status: sample_status(),
    };
    let h = harness(limits).with_fake(fake);
    let body = envelopes(&[event(1), event(2), event(3)]);
    let answer = call(&h.router, post("/v1/events", body)).await;
    assert_problem(&answer, 413, "TOO_MANY_EVENTS");
    assert_eq!(*seen.lock().unwrap(), 0, "nothing reached the runtime");
    // Many tiny elements are refused by their count (the array is not read past the limit).
    let tiny = format!("[{}]", vec!["{}"; 100_000].join(","));
    assert_problem(&call(&h.router, post("/v1/events", tiny)).await, 413, "TOO_MANY_EVENTS");
    // Exactly the limit goes through.
    let answer = call(&h.router, post("/v1/events", envelopes(&[event(1), event(2)]))).await;
    assert_eq!(statuses(&answer), ["accepted", "accepted"]);
    assert_eq!(*seen.lock().unwrap(), 2);
}

#[tokio::test]
async fn all_full_is_429_with_retry_after() {
    let fake = FakeRuntime {
        verdict: Box::new(|e| EventResult::Full { id: e.id(), retry_after_ms: 1500 }),
        commit_accepted: false,
        status: sample_status(),
    };
    let h = harness(ApiLimits::default()).with_fake(fake);
    let answer = call(&h.router, post("/v1/events", envelopes(&[event(1), event(2)]))).await;
    assert_problem(&answer, 429, "MEMPOOL_FULL");
    assert_eq!(answer.headers[header::RETRY_AFTER], "2", "1500 ms rounds up to 2 s");
    assert_eq!(answer.json["retry_after_ms"], 1500);
}

#[tokio::test]
async fn wait_commit_is_answered_by_a_commit_notice() {
    let h = harness(ApiLimits::default()).with_fake(FakeRuntime::accept_all(true));
    let events = [event(1), event(2)];
    let answer =
        call(&h.router, post("/v1/events?wait=commit&timeout_ms=5000", envelopes(&events))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["timed_out"], false);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            answer.json["results"][i],
            json!({"status": "committed", "id": e.id().to_hex(), "height": 1,
                "block_hash": fake_block_hash(1).to_hex(), "index": i})
        );
    }
}

#[tokio::test]
async fn wait_commit_after_a_lag_is_answered_through_lookup() {
    let limits = ApiLimits::default();
    let (tx, mut rx) = mpsc::channel(limits.command_channel);
    // Room for 2 notices: the runtime sends 4 before the handler reads any, so it lags and the
    // notice with its event is gone.
    let (commits, _) = broadcast::channel(2);
    let (_dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let router = router(tx, commits.clone(), ledger.view(), limits);
    let lookups = Arc::new(Mutex::new(0usize));
    let lookups_seen = lookups.clone();
    let at = Committed { height: 1, block_hash: fake_block_hash(1), index: 0 };
    tokio::spawn(async move {
        let mut committed = Vec::new();
        while let Some(command) = rx.recv().await {
            match command {
                ApiCommand::Submit { events, reply } => {
                    committed = events.iter().map(SignedEvent::id).collect();
                    let notice = CommitNotice {
                        height: 1,
                        block_hash: at.block_hash,
                        event_ids: committed.clone(),
                        evicted: vec![],
                    };
                    commits.send(notice).unwrap();
                    for height in 2..5 {
                        let filler = CommitNotice {
                            height,
                            block_hash: fake_block_hash(height),
                            event_ids: vec![],
                            evicted: vec![],
                        };
                        commits.send(filler).unwrap();
                    }
                    let verdicts =
                        committed.iter().map(|id| EventResult::Accepted { id: *id }).collect();
                    reply.send(verdicts).unwrap();
                }
                ApiCommand::Lookup { ids, reply } => {
                    *lookups_seen.lock().unwrap() += 1;
                    let found = ids.iter().map(|id| committed.contains(id).then_some(at)).collect();
                    reply.send(found).unwrap();
                }
                ApiCommand::Status { .. } => {}
            }
        }
    });
    let e = event(1);
    let answer =
        call(&router, post("/v1/events?wait=commit&timeout_ms=5000", e.to_envelope_json())).await;
    assert_eq!(answer.json["timed_out"], false, "{}", answer.json);
    assert_eq!(
        answer.json["results"][0],
        json!({"status": "committed", "id": e.id().to_hex(), "height": 1,
            "block_hash": fake_block_hash(1).to_hex(), "index": 0})
    );
    assert_eq!(*lookups.lock().unwrap(), 1, "the lag was answered by one Lookup");
}

#[tokio::test]
async fn an_event_evicted_by_a_commit_answers_rejected_to_its_waiter() {
    let limits = ApiLimits::default();
    let (tx, mut rx) = mpsc::channel(limits.command_channel);
    let (commits, _) = broadcast::channel(16);
    let (_dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let router = router(tx, commits.clone(), ledger.view(), limits);
    let (kept, lost) = (event(1), event(2));
    let lost_id = lost.id();
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            if let ApiCommand::Submit { events, reply } = command {
                let verdicts =
                    events.iter().map(|e| EventResult::Accepted { id: e.id() }).collect();
                reply.send(verdicts).unwrap();
                let notice = CommitNotice {
                    height: 7,
                    block_hash: fake_block_hash(7),
                    event_ids: vec![events[0].id()],
                    evicted: vec![Evicted {
                        id: lost_id,
                        code: "DUPLICATE_NONCE".into(),
                        message: "nonce 2 was used by another event".into(),
                    }],
                };
                commits.send(notice).unwrap();
            }
        }
    });
    let started = std::time::Instant::now();
    let answer = call(
        &router,
        post("/v1/events?wait=commit&timeout_ms=20000", envelopes(&[kept.clone(), lost])),
    )
    .await;
    assert!(started.elapsed() < TEST_DEADLINE, "answered at the notice, not at the timeout");
    assert_eq!(answer.json["timed_out"], false, "{}", answer.json);
    assert_eq!(answer.json["results"][0]["status"], "committed");
    assert_eq!(answer.json["results"][0]["id"], kept.id().to_hex());
    let rejected = &answer.json["results"][1];
    assert_eq!(rejected["status"], "rejected", "{}", answer.json);
    assert_eq!(rejected["id"], lost_id.to_hex());
    assert_eq!(rejected["code"], "DUPLICATE_NONCE");
    let message = rejected["message"].as_str().unwrap();
    assert!(message.contains("evicted at height 7") && message.contains("nonce 2"), "{message}");
}

#[tokio::test]
async fn a_wait_that_times_out_answers_pending_and_timed_out() {
    let fake = FakeRuntime {
        verdict: Box::new(|e| {
            if e.id() == event(2).id() {
                EventResult::Rejected {
                    id: Some(e.id()),
                    code: "DUPLICATE_NONCE".into(),
                    message: "m".into(),
                }
            } else {
                EventResult::Accepted { id: e.id() }
            }
        }),
        commit_accepted: false,
        status: sample_status(),
    };
    let h = harness(ApiLimits::default()).with_fake(fake);
    let started = std::time::Instant::now();
    let answer = call(
        &h.router,
        post("/v1/events?wait=commit&timeout_ms=50", envelopes(&[event(1), event(2)])),
    )
    .await;
    assert!(started.elapsed() < TEST_DEADLINE);
    assert_eq!(answer.json["timed_out"], true, "{}", answer.json);
    assert_eq!(
        answer.json["results"][0],
        json!({"status": "pending", "id": event(1).id().to_hex()})
    );
    assert_eq!(answer.json["results"][1]["status"], "rejected", "a rejection is not waited for");
}

#[tokio::test]
async fn a_wait_longer_than_the_cap_is_capped() {
    let limits = ApiLimits { max_wait_ms: 30, ..ApiLimits::default() };
    let h = harness(limits).with_fake(FakeRuntime::accept_all(false));
    let answer = call(
        &h.router,
        post("/v1/events?wait=commit&timeout_ms=600000", event(1).to_envelope_json()),
    )
    .await;
    assert_eq!(answer.json["timed_out"], true);
    assert_eq!(statuses(&answer), ["pending"]);
}

#[tokio::test]
async fn status_round_trips_over_a_real_socket_and_serve_shuts_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ApiLimits::default();
    let (tx, rx) = mpsc::channel(limits.command_channel);
    let (commits, _) = broadcast::channel(16);
    tokio::spawn(run_fake_runtime(FakeRuntime::accept_all(false), rx, commits.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    let (_dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let server = tokio::spawn(serve(
        listener,
        tx,
        commits,
        ledger.view(),
        limits,
        ApiShared::open(),
        async {
            let _ = stopped.await;
        },
    ));

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(TEST_DEADLINE, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let status: NodeStatus = serde_json::from_str(body).unwrap();
    assert_eq!(status, sample_status());
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["genesis_hash"], Hash::sha256(b"genesis").to_hex(), "hashes are hex");

    stop.send(()).unwrap();
    tokio::time::timeout(TEST_DEADLINE, server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn serve_refuses_limits_that_cannot_work() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let (commits, _) = broadcast::channel(1);
    let limits = ApiLimits { request_timeout_ms: 1000, ..ApiLimits::default() };
    let (_dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let err = serve(listener, tx, commits, ledger.view(), limits, ApiShared::open(), async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("request_timeout_ms"), "{err}");
    assert!(ApiLimits::default().check().is_ok());
}

#[tokio::test]
async fn a_runtime_that_is_gone_is_503() {
    let mut h = harness(ApiLimits::default());
    drop(h.commands.take());
    let answer = call(&h.router, post("/v1/events", event(1).to_envelope_json())).await;
    assert_problem(&answer, 503, "NODE_UNAVAILABLE");
    assert_problem(&call(&h.router, get("/v1/status")).await, 503, "NODE_UNAVAILABLE");
}

#[tokio::test]
async fn a_runtime_that_drops_the_reply_is_503_and_a_wrong_count_is_500() {
    let mut h = harness(ApiLimits::default());
    let mut rx = h.commands.take().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(command) = rx.recv().await {
            n += 1;
            if let ApiCommand::Submit { reply, .. } = command {
                if n == 2 {
                    reply.send(vec![]).unwrap(); // too few verdicts
                } // the first is dropped unanswered
            }
        }
    });
    let body = || event(1).to_envelope_json();
    assert_problem(&call(&h.router, post("/v1/events", body())).await, 503, "NODE_UNAVAILABLE");
    assert_problem(&call(&h.router, post("/v1/events", body())).await, 500, "INTERNAL");
}

#[tokio::test]
async fn a_full_command_queue_is_503_with_retry_after() {
    let limits = ApiLimits { command_channel: 1, ..ApiLimits::default() };
    let (tx, _rx) = mpsc::channel(limits.command_channel);
    let (filler, _) = oneshot::channel();
    tx.try_send(ApiCommand::Status { reply: filler }).unwrap();
    let (commits, _) = broadcast::channel(1);
    let (_dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let router = router(tx, commits, ledger.view(), limits);
    let answer = call(&router, post("/v1/events", event(1).to_envelope_json())).await;
    assert_problem(&answer, 503, "NODE_BUSY");
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_and_slow_ones_time_out() {
    let limits =
        ApiLimits { max_concurrent_requests: 1, request_timeout_ms: 300, ..ApiLimits::default() };
    let mut h = harness(limits);
    // A runtime that takes Status commands, says so, and never answers them.
    let mut rx = h.commands.take().unwrap();
    let (took, mut taken) = mpsc::channel(4);
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Some(command) = rx.recv().await {
            kept.push(command);
            let _ = took.try_send(());
        }
    });
    let first = tokio::spawn({
        let router = h.router.clone();
        async move { call(&router, get("/v1/status")).await }
    });
    // Once the runtime holds the first request's command, that request holds the only slot.
    tokio::time::timeout(TEST_DEADLINE, taken.recv()).await.unwrap().unwrap();
    // The limit is one for the whole API, not one per route.
    let second = call(&h.router, post("/v1/events", event(1).to_envelope_json())).await;
    assert_problem(&second, 503, "OVERLOADED");
    assert!(second.headers.contains_key(header::RETRY_AFTER));
    let first = tokio::time::timeout(TEST_DEADLINE, first).await.unwrap().unwrap();
    assert_problem(&first, 503, "TIMEOUT");
    held.abort();
}

/// A one-validator ledger holding one whole closed-loop trade (`PO-1`) in two blocks (7 and 12
/// events), behind the harness.
fn trade_harness() -> (Harness, tradeloop_ledger::sample::Cast, Vec<SignedEvent>) {
    use tradeloop_ledger::sample::{trade_events, Cast};
    let t0 = tradeloop_node::api::testing::SAMPLE_GENESIS_MS;
    let cast = Cast::deterministic(1, t0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger =
        tradeloop_ledger::Ledger::open(&dir.path().join("data"), cast.genesis.clone()).unwrap();
    let events = trade_events(&cast, 1, t0 + 1_000);
    ledger.append_local(&events[..7], t0 + 2_000, &cast.validator_keys[0]).unwrap();
    ledger.append_local(&events[7..], t0 + 3_000, &cast.validator_keys[0]).unwrap();
    assert_eq!(ledger.tip().height, 2);
    (harness_on(ApiLimits::default(), dir, ledger), cast, events)
}

async fn call_text(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = tokio::time::timeout(TEST_DEADLINE, router.clone().oneshot(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn each_committed_event_is_served_with_its_place_and_an_envelope_that_verifies() {
    let (h, _cast, events) = trade_harness();
    for (i, e) in events.iter().enumerate() {
        let answer = call(&h.router, get(&format!("/v1/events/{}", e.id()))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        let view: EventView = serde_json::from_value(answer.json).unwrap();
        let record = h.ledger.event(&e.id()).unwrap().unwrap();
        assert_eq!((view.height, view.index), (record.height, record.index), "event {i}");
        assert_eq!(view.block_hash, h.ledger.block(view.height).unwrap().block.header.hash());
        // The envelope as served parses back to the same signed event (same id, signature).
        let again =
            SignedEvent::from_envelope_json(&serde_json::to_vec(&view.envelope).unwrap()).unwrap();
        assert_eq!(again.id(), e.id());
        assert_eq!(again.signature, e.signature);
    }
    let unknown = call(&h.router, get(&format!("/v1/events/{}", Hash::sha256(b"x")))).await;
    assert_problem(&unknown, 404, "EVENT_NOT_FOUND");
    for bad in ["xyz", "00", &"g".repeat(64)] {
        assert_problem(&call(&h.router, get(&format!("/v1/events/{bad}"))).await, 400, "BAD_PATH");
    }
}

#[tokio::test]
async fn proofs_of_an_event_and_of_a_trade_verify_offline_against_the_genesis() {
    let (h, cast, events) = trade_harness();
    let (status, text) =
        call_text(&h.router, get(&format!("/v1/events/{}/proof", events[9].id()))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let report = tradeloop_ledger::evidence::proof::verify_bundle(text.as_bytes(), &cast.genesis);
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.events.len(), 1);
    assert_eq!(report.events[0].id, events[9].id());

    let (status, text) = call_text(&h.router, get("/v1/trades/PO-1/proof")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let report = tradeloop_ledger::evidence::proof::verify_bundle(text.as_bytes(), &cast.genesis);
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.events.len(), events.len());

    let missing = call(&h.router, get(&format!("/v1/events/{}/proof", Hash::sha256(b"x")))).await;
    assert_problem(&missing, 404, "EVENT_NOT_FOUND");
    assert_problem(&call(&h.router, get("/v1/trades/PO-9/proof")).await, 404, "NOT_ON_LEDGER");
}

#[tokio::test]
async fn blocks_are_listed_in_bounded_pages_and_served_with_certificate_and_event_ids() {
    let (h, _cast, events) = trade_harness();
    let page = call(&h.router, get("/v1/blocks")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.json);
    let page: BlocksPage = serde_json::from_value(page.json).unwrap();
    assert_eq!(page.height, 2);
    assert_eq!(page.blocks.len(), 2);
    assert_eq!(page.next_from, None);
    for header in &page.blocks {
        assert_eq!(header.hash, h.ledger.block(header.height).unwrap().block.header.hash());
    }
    let first: BlocksPage =
        serde_json::from_value(call(&h.router, get("/v1/blocks?limit=1")).await.json).unwrap();
    assert_eq!((first.blocks.len(), first.next_from), (1, Some(2)));
    let second: BlocksPage =
        serde_json::from_value(call(&h.router, get("/v1/blocks?from=2&limit=1")).await.json)
            .unwrap();
    assert_eq!((second.blocks[0].height, second.next_from), (2, None));
    let past: BlocksPage =
        serde_json::from_value(call(&h.router, get("/v1/blocks?from=9")).await.json).unwrap();
    assert!(past.blocks.is_empty());
    for bad in ["/v1/blocks?limit=0", "/v1/blocks?from=x", "/v1/blocks?colour=red"] {
        assert_problem(&call(&h.router, get(bad)).await, 400, "BAD_QUERY");
    }

    let block = call(&h.router, get("/v1/blocks/1")).await;
    assert_eq!(block.status, StatusCode::OK, "{}", block.json);
    let block: BlockView = serde_json::from_value(block.json).unwrap();
    let ids: Vec<String> = events[..7].iter().map(|e| e.id().to_hex()).collect();
    assert_eq!(block.event_ids, ids);
    assert_eq!(block.header.event_count, 7);
    assert_eq!(block.certificate.signatures.len(), 1);
    for missing in ["/v1/blocks/0", "/v1/blocks/3"] {
        assert_problem(&call(&h.router, get(missing)).await, 404, "BLOCK_NOT_FOUND");
    }
    assert_problem(&call(&h.router, get("/v1/blocks/one")).await, 400, "BAD_PATH");
}

#[tokio::test]
async fn a_trace_is_served_in_ledger_order_and_in_pages_and_a_trade_reports_closed() {
    let (h, _cast, _events) = trade_harness();
    let expected: Vec<Hash> = h.ledger.trace("order:PO-1").unwrap().iter().map(|r| r.id).collect();
    assert!(expected.len() > 10);
    let whole: TraceView =
        serde_json::from_value(call(&h.router, get("/v1/trace/order:PO-1")).await.json).unwrap();
    assert_eq!(whole.events.iter().map(|e| e.id).collect::<Vec<_>>(), expected);
    assert_eq!((whole.total, whole.next_offset, whole.height), (expected.len(), None, 2));

    let mut paged = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        let page: TraceView = serde_json::from_value(
            call(&h.router, get(&format!("/v1/trace/order:PO-1?limit=4&offset={at}"))).await.json,
        )
        .unwrap();
        assert!(page.events.len() <= 4);
        paged.extend(page.events.iter().map(|e| e.id));
        offset = page.next_offset;
    }
    assert_eq!(paged, expected);
    assert_problem(&call(&h.router, get("/v1/trace/order:PO-9")).await, 404, "NOT_ON_LEDGER");
    assert_problem(&call(&h.router, get("/v1/trace/order:PO-1?limit=0")).await, 400, "BAD_QUERY");
    assert_problem(&call(&h.router, get("/v1/trace/PO-1")).await, 400, "BAD_PATH");
    assert_problem(&call(&h.router, get("/v1/trace/pallet:P-1")).await, 400, "BAD_PATH");
    assert_problem(&call(&h.router, get("/v1/trace/order:")).await, 400, "BAD_PATH");
    // What the document's pattern allows is a lookup: an id longer than any the ledger takes
    // (128 bytes; here 129 characters, 258 bytes) is on no ledger, not a malformed path.
    let long = format!("/v1/trace/shipment:{}", "%C3%A9".repeat(129));
    assert_problem(&call(&h.router, get(&long)).await, 404, "NOT_ON_LEDGER");

    let trade = call(&h.router, get("/v1/trades/PO-1")).await;
    assert_eq!(trade.status, StatusCode::OK, "{}", trade.json);
    let trade: TradeView = serde_json::from_value(trade.json).unwrap();
    assert_eq!((trade.state.as_str(), trade.closed), ("CLOSED", true));
    assert!(trade.open_legs.is_empty());
    assert!(trade.legs.iter().all(|l| l.done));
    assert_problem(&call(&h.router, get("/v1/trades/PO-9")).await, 404, "NOT_ON_LEDGER");
}

#[tokio::test]
async fn the_participants_are_the_genesis_participants() {
    let (h, cast, _events) = trade_harness();
    let answer = call(&h.router, get("/v1/participants")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let view: ParticipantsView = serde_json::from_value(answer.json).unwrap();
    assert_eq!(view.genesis_hash, cast.genesis.hash);
    let ids: Vec<&str> = view.participants.iter().map(|p| p.id.as_str()).collect();
    let expected: Vec<&str> = cast.genesis.doc.participants.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(view.participants.iter().all(|p| !p.keys.is_empty() && !p.role.is_empty()));
}

/// One server-sent event as a client sees it.
#[derive(Debug, Default)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Reads a `GET /v1/stream` response body as SSE messages (heartbeat comments skipped).
struct SseReader {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl SseReader {
    async fn open(router: &Router, request: Request<Body>) -> SseReader {
        let response = tokio::time::timeout(TEST_DEADLINE, router.clone().oneshot(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        SseReader { body: response.into_body().into_data_stream(), buffer: String::new() }
    }

    /// The next message, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Sse> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Sse::default();
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        message.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        message.event = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        message.data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(message);
                }
                continue;
            }
            match tokio::time::timeout(TEST_DEADLINE, self.body.next()).await.unwrap() {
                Some(chunk) => self.buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
                None => return None,
            }
        }
    }

    /// The next `n` committed events: (SSE id, event id).
    async fn events(&mut self, n: usize) -> Vec<(String, Hash)> {
        let mut out = Vec::new();
        while out.len() < n {
            let m = self.next().await.expect("the stream ended early");
            assert_eq!(m.event.as_deref(), Some(STREAM_EVENT_NAME), "{m:?}");
            let view: EventView = serde_json::from_str(&m.data).unwrap();
            assert_eq!(m.id.as_deref(), Some(format!("{}:{}", view.height, view.index).as_str()));
            out.push((m.id.unwrap(), view.id));
        }
        out
    }
}

fn stream_from(query: &str, last_event_id: Option<&str>) -> Request<Body> {
    let mut request = Request::get(format!("/v1/stream{query}"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_stream_sends_every_committed_event_in_order_and_resumes_after_the_last_id() {
    let (h, _cast, events) = trade_harness();
    let expected: Vec<Hash> = events.iter().map(SignedEvent::id).collect();
    let mut stream = SseReader::open(&h.router, stream_from("?from=1", None)).await;
    let got = stream.events(events.len()).await;
    assert_eq!(got.iter().map(|(_, id)| *id).collect::<Vec<_>>(), expected);
    assert_eq!(got[0].0, "1:0");
    assert_eq!(got[7].0, "2:0");

    // A client that stopped after "1:3" reconnects with it: the next event is "1:4", no gap,
    // no duplicate, to the end.
    let mut resumed = SseReader::open(&h.router, stream_from("", Some("1:3"))).await;
    let rest = resumed.events(events.len() - 4).await;
    assert_eq!(rest.iter().map(|(_, id)| *id).collect::<Vec<_>>(), expected[4..]);
    assert_eq!(rest[0].0, "1:4");
    // Last-Event-ID wins over from=.
    let mut both = SseReader::open(&h.router, stream_from("?from=1", Some("2:10"))).await;
    assert_eq!(both.events(1).await[0], ("2:11".to_owned(), expected[18]));

    for bad in ["12", "x:y", "1:2:3"] {
        let answer = call(&h.router, stream_from("", Some(bad))).await;
        assert_problem(&answer, 400, "BAD_QUERY");
    }
    assert_problem(&call(&h.router, stream_from("?since=1", None)).await, 400, "BAD_QUERY");
}

#[tokio::test]
async fn a_live_stream_delivers_the_blocks_committed_after_it_opened() {
    let (mut h, cast, _events) = trade_harness();
    // No `from`: the stream starts with the next block.
    let mut stream = SseReader::open(&h.router, stream_from("", None)).await;
    let t0 = tradeloop_node::api::testing::SAMPLE_GENESIS_MS;
    let more = tradeloop_ledger::sample::trade_events(&cast, 2, t0 + 10_000);
    let key = cast.validator_keys[0].clone();
    for (n, chunk) in more.chunks(10).enumerate() {
        let (blocks, rejected) =
            h.ledger.append_local(chunk, t0 + 11_000 + n as u64, &key).unwrap();
        assert!(rejected.is_empty(), "{rejected:?}");
        let block = blocks.last().unwrap();
        let _ = h.commits.send(CommitNotice {
            height: block.block.header.height,
            block_hash: block.block.header.hash(),
            event_ids: chunk.iter().map(SignedEvent::id).collect(),
            evicted: vec![],
        });
    }
    let got = stream.events(more.len()).await;
    assert_eq!(
        got.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        more.iter().map(SignedEvent::id).collect::<Vec<_>>()
    );
    assert_eq!(got[0].0, "3:0");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_told_it_was_too_slow_and_disconnected() {
    let (dir_ledger, _cast, events) = trade_harness();
    let Harness { ledger, _dir: dir, .. } = dir_ledger;
    let limits =
        ApiLimits { stream_buffer_events: 2, stream_stall_ms: 200, ..ApiLimits::default() };
    let h = harness_on(limits, dir, ledger);
    let mut stream = SseReader::open(&h.router, stream_from("?from=1", None)).await;
    // Read nothing while the producer fills the buffer and waits out the stall.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut delivered = 0;
    let last = loop {
        let m = stream.next().await.expect("a too_slow message before the end");
        if m.event.as_deref() == Some(STREAM_TOO_SLOW_NAME) {
            break m;
        }
        delivered += 1;
    };
    assert!(delivered < events.len(), "{delivered}");
    let word: StreamTooSlow = serde_json::from_str(&last.data).unwrap();
    assert_eq!(word.code, "STREAM_TOO_SLOW");
    // The event that did not fit is the one right after the delivered ones.
    let next =
        if delivered < 7 { format!("1:{delivered}") } else { format!("2:{}", delivered - 7) };
    assert_eq!(word.next_event, next);
    assert!(stream.next().await.is_none(), "the stream ends after too_slow");
}

#[tokio::test]
async fn streams_over_max_streams_are_refused_and_a_closed_one_frees_its_place() {
    let (dir_ledger, _cast, _events) = trade_harness();
    let Harness { ledger, _dir: dir, .. } = dir_ledger;
    let h = harness_on(ApiLimits { max_streams: 1, ..ApiLimits::default() }, dir, ledger);
    let first = SseReader::open(&h.router, stream_from("", None)).await;
    let refused = call(&h.router, stream_from("", None)).await;
    assert_problem(&refused, 503, "TOO_MANY_STREAMS");
    assert!(refused.headers.contains_key(header::RETRY_AFTER));
    drop(first);
    // The producer notices the closed client and lets go of its permit.
    let deadline = tokio::time::Instant::now() + TEST_DEADLINE;
    loop {
        let response = h.router.clone().oneshot(stream_from("", None)).await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_open_stream_does_not_keep_the_server_from_shutting_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ApiLimits::default();
    let (tx, _rx) = mpsc::channel(limits.command_channel);
    let (commits, _) = broadcast::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let (_dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let server = tokio::spawn(serve(
        listener,
        tx,
        commits,
        ledger.view(),
        limits,
        ApiShared::open(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(TEST_DEADLINE, stream.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    stop.send(()).unwrap();
    tokio::time::timeout(TEST_DEADLINE, server).await.unwrap().unwrap().unwrap();
    // The stream was ended, not cut: the client reads to its end.
    let mut rest = Vec::new();
    tokio::time::timeout(TEST_DEADLINE, stream.read_to_end(&mut rest)).await.unwrap().unwrap();
}

fn harness_shared(shared: ApiShared) -> Harness {
    let (dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    let limits = ApiLimits::default();
    let (tx, rx) = mpsc::channel(limits.command_channel);
    let (commits, _) = broadcast::channel(16);
    Harness {
        router: router_with_shared(tx, commits.clone(), ledger.view(), limits, shared),
        commands: Some(rx),
        commits,
        ledger,
        _dir: dir,
    }
}

fn with_token(mut request: Request<Body>, token: &str) -> Request<Body> {
    request.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    request
}

async fn text_of(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = tokio::time::timeout(TEST_DEADLINE, router.clone().oneshot(request))
        .await
        .unwrap()
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn tokens_gate_every_route_by_scope() {
    use auth::{Access, Scope, TokenEntry};
    let entry = |name: &str, scopes: Vec<Scope>| TokenEntry {
        name: name.into(),
        sha256: Hash::sha256(format!("{name}-secret").as_bytes()),
        scopes,
    };
    let access = Access {
        tokens: vec![
            entry("erp", vec![Scope::Read, Scope::Submit]),
            entry("auditor", vec![Scope::Read]),
            entry("prometheus", vec![Scope::Metrics]),
        ],
    };
    let h = harness_shared(ApiShared { access, metrics: Default::default() })
        .with_fake(FakeRuntime::accept_all(false));
    let r = &h.router;
    let bare = call(r, get("/v1/status")).await;
    assert_problem(&bare, 401, "UNAUTHORIZED");
    assert_eq!(bare.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_problem(&call(r, with_token(get("/v1/status"), "wrong")).await, 401, "UNAUTHORIZED");
    // An unknown path is refused for want of a token before it is found missing: the API's
    // shape is not shown to strangers.
    assert_problem(&call(r, get("/v1/nothing")).await, 401, "UNAUTHORIZED");
    assert_eq!(call(r, with_token(get("/v1/status"), "auditor-secret")).await.status, 200);
    let body = envelopes(&[event(1)]);
    let refused = call(r, with_token(post("/v1/events", body.clone()), "auditor-secret")).await;
    assert_problem(&refused, 403, "FORBIDDEN");
    assert!(refused.json["detail"].as_str().unwrap().contains("auditor"), "{}", refused.json);
    let ok = call(r, with_token(post("/v1/events", body), "erp-secret")).await;
    assert_eq!(statuses(&ok), vec!["accepted"]);
    let (status, _, _) = text_of(r, with_token(get("/metrics"), "erp-secret")).await;
    assert_eq!(status, 403);
    let (status, _, text) = text_of(r, with_token(get("/metrics"), "prometheus-secret")).await;
    assert_eq!(status, 200, "{text}");
    assert_problem(
        &call(r, with_token(get("/v1/status"), "prometheus-secret")).await,
        403,
        "FORBIDDEN",
    );
}

#[tokio::test]
async fn metrics_show_the_status_gauges_and_count_requests_by_route_and_status() {
    let h = harness_shared(ApiShared::open()).with_fake(FakeRuntime::accept_all(false));
    let r = &h.router;
    assert_eq!(call(r, get("/v1/status")).await.status, 200);
    assert_eq!(call(r, get("/v1/status")).await.status, 200);
    assert_eq!(call(r, get("/v1/events/zz")).await.status, 400);
    assert_eq!(call(r, get("/v1/nothing/here")).await.status, 404);
    let (status, headers, text) = text_of(r, get("/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(headers[header::CONTENT_TYPE], tradeloop_node::metrics::CONTENT_TYPE);
    let peers = sample_status().connected_peers.len();
    for line in [
        format!("tradeloop_peers {peers}"),
        format!("tradeloop_mempool_events {}", sample_status().mempool_events),
        "tradeloop_api_requests_total{method=\"GET\",route=\"/v1/status\",status=\"200\"} 2"
            .to_owned(),
        "tradeloop_api_requests_total{method=\"GET\",route=\"/v1/events/{id}\",status=\"400\"} 1"
            .to_owned(),
        "tradeloop_api_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
            .to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

/// A real server over the fake runtime with these limits; its address and the sender that
/// stops it.
async fn real_server(limits: ApiLimits) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(limits.command_channel);
    let (commits, _) = broadcast::channel(16);
    tokio::spawn(run_fake_runtime(FakeRuntime::accept_all(false), rx, commits.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    let (dir, ledger) = tradeloop_node::api::testing::empty_ledger().unwrap();
    tokio::spawn(async move {
        let _dir = dir;
        let _ = serve(listener, tx, commits, ledger.view(), limits, ApiShared::open(), async {
            let _ = stopped.await;
        })
        .await;
    });
    (addr, stop)
}

/// Reads until the server closes the connection (or TEST_DEADLINE passes: a failure).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    tokio::time::timeout(TEST_DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("the server kept the connection open")
        .unwrap_or_default();
    raw
}

async fn status_over(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned()
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_at_the_header_timeout() {
    let limits = ApiLimits { header_timeout_ms: 300, ..ApiLimits::default() };
    let (addr, _stop) = real_server(limits).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One header byte every 50 ms, never the blank line that ends the head.
    let trickle = async {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let raw = read_until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"), "{raw:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // An idle keep-alive connection is closed the same way; the server still serves.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_until_closed(&mut idle).await.is_empty());
    assert!(status_over(addr).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_and_the_bound_frees_up() {
    let limits = ApiLimits { max_connections: 2, ..ApiLimits::default() };
    let (addr, _stop) = real_server(limits).await;
    let held: Vec<tokio::net::TcpStream> = vec![
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    // Give the server time to accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(&mut third).await;
    assert!(answer.is_empty(), "over the bound: {}", String::from_utf8_lossy(&answer));
    drop(held);
    let deadline = std::time::Instant::now() + TEST_DEADLINE;
    loop {
        let text = status_over(addr).await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bound never freed up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fake runtime whose verdict depends on the event's nonce: 0..=9 accepted, 10..=19 already
/// committed, 20..=29 `RULE_A`, 30..=39 `RULE_B`, 40.. full.
fn by_nonce() -> FakeRuntime {
    let mut fake = FakeRuntime::accept_all(false);
    fake.verdict = Box::new(|e: &SignedEvent| {
        let body: Value = serde_json::from_slice(&e.body).unwrap();
        let id = e.id();
        match body["nonce"].as_u64().unwrap() {
            0..=9 => EventResult::Accepted { id },
            10..=19 => EventResult::committed(
                id,
                Committed { height: 7, block_hash: fake_block_hash(7), index: 2 },
            ),
            20..=29 => EventResult::Rejected {
                id: Some(id),
                code: "RULE_A".into(),
                message: "rule a says no".into(),
            },
            30..=39 => EventResult::Rejected {
                id: Some(id),
                code: "RULE_B".into(),
                message: "rule b says no".into(),
            },
            _ => EventResult::Full { id, retry_after_ms: 1500 },
        }
    });
    fake
}

#[tokio::test]
async fn a_request_that_admits_nothing_is_a_problem_with_every_result() {
    let h = harness(ApiLimits::default()).with_fake(by_nonce());
    let submit = |nonces: &[u64]| {
        let events: Vec<SignedEvent> = nonces.iter().map(|&n| event(n)).collect();
        post("/v1/events", envelopes(&events))
    };
    // One refused event: 422 with the ledger's code and sentence.
    let one = call(&h.router, post("/v1/events", event(20).to_envelope_json())).await;
    assert_problem(&one, 422, "RULE_A");
    assert!(one.json["detail"].as_str().unwrap().starts_with("rule a says no"), "{}", one.json);
    assert_eq!(one.json["results"][0]["code"], "RULE_A");
    // Refusals with different codes: EVENTS_REJECTED, each event's code in `results`.
    let two = call(&h.router, submit(&[21, 30, 11, 40])).await;
    assert_problem(&two, 422, "EVENTS_REJECTED");
    assert_eq!(statuses(&two), vec!["rejected", "rejected", "committed", "full"]);
    assert!(two.headers.get(header::RETRY_AFTER).is_none());
    // Already on the chain: 409 saying where.
    let replay = call(&h.router, submit(&[12])).await;
    assert_problem(&replay, 409, "ALREADY_COMMITTED");
    assert!(replay.json["detail"].as_str().unwrap().contains("height 7"), "{}", replay.json);
    assert_eq!(replay.json["results"][0]["height"], 7);
    // Full and committed, nothing refused: 429 with Retry-After and the results.
    let full = call(&h.router, submit(&[40, 13])).await;
    assert_problem(&full, 429, "MEMPOOL_FULL");
    assert_eq!(full.headers[header::RETRY_AFTER], "2");
    assert_eq!(statuses(&full), vec!["full", "committed"]);
    // One admitted event makes the request a 200 with every result.
    let mixed = call(&h.router, submit(&[1, 22, 14, 41])).await;
    assert_eq!(mixed.status, 200, "{}", mixed.json);
    assert_eq!(statuses(&mixed), vec!["accepted", "rejected", "committed", "full"]);
    // An element that does not parse counts as refused.
    let bad = call(&h.router, post("/v1/events", "[{\"body\": 5}]")).await;
    assert_problem(&bad, 422, "MALFORMED_EVENT");
}

#[tokio::test]
async fn a_node_far_behind_its_peers_refuses_submissions_until_it_catches_up() {
    let metrics = Arc::new(tradeloop_node::metrics::Metrics::new());
    let h = harness_shared(ApiShared { access: Default::default(), metrics: metrics.clone() })
        .with_fake(FakeRuntime::accept_all(false));
    let body = envelopes(&[event(1)]);
    metrics.on_commit(5, 0, 1, 0.001);
    metrics.on_peer_height(5 + NOT_SYNCED_LAG_BLOCKS + 1);
    let behind = call(&h.router, post("/v1/events", body.clone())).await;
    assert_problem(&behind, 503, "NOT_SYNCED");
    assert_eq!(behind.headers[header::RETRY_AFTER], "2");
    // Reads still answer (each with the height it was read at).
    assert_eq!(call(&h.router, get("/v1/status")).await.status, 200);
    // A later poll where no peer is that far ahead, or this node catching up, lifts it.
    metrics.on_poll(5 + NOT_SYNCED_LAG_BLOCKS);
    assert_eq!(statuses(&call(&h.router, post("/v1/events", body)).await), vec!["accepted"]);
}
