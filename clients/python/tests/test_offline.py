"""Tests that need no node: signing vectors, the evidence vector, the SSE parser, and the
client's retries, errors, token and bounds against a mock transport."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

import httpx
import pytest

import tradeloop_client
from conftest import REPO
from tradeloop_client import models
from tradeloop_client import (
    Accepted,
    Client,
    Committed,
    Full,
    Genesis,
    KeyFileError,
    ProblemError,
    RequestTimeout,
    ResponseTooLarge,
    SigningError,
    SigningKey,
    SSEParser,
    StreamEnded,
    StreamTooSlow,
    TransportError,
    UnexpectedResponse,
    build_body,
    genesis_hash,
    load_key,
    sign_body,
    verify_bundle,
)

TESTDATA = REPO / "testdata"
ID = "ab" * 32


def test_signing_reproduces_every_vector_byte_for_byte() -> None:
    vectors = json.loads((TESTDATA / "event_vectors.json").read_text())
    assert len(vectors) >= 3
    for v in vectors:
        key = SigningKey.from_secret_hex(v["secret_key"])
        assert key.public_key == v["public_key"]
        event = sign_body(v["body"], key)
        assert event.canonical.hex() == v["canonical_hex"], v["name"]
        assert event.signing_bytes.hex() == v["signing_bytes_hex"], v["name"]
        assert event.id == v["event_id"], v["name"]
        assert event.signature == v["signature"], v["name"]
        assert json.loads(event.envelope_json()) == {"body": v["body"], "signature": v["signature"]}
    assert "secret" not in repr(key) and v["secret_key"] not in repr(key)


def test_key_files_and_bodies(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "me.json"
    path.write_text(json.dumps({"public_key": key.public_key, "secret_key": key._secret.hex()}))
    assert load_key(path) == key
    other = SigningKey.generate()
    path.write_text(json.dumps({"public_key": other.public_key, "secret_key": key._secret.hex()}))
    with pytest.raises(KeyFileError):
        load_key(path)
    path.write_text('{"public_key": "00", "public_key": "11", "secret_key": "22"}')
    with pytest.raises(KeyFileError):
        load_key(path)
    with pytest.raises(KeyFileError):
        load_key(tmp_path / "absent.json")

    body = build_body(chain="11" * 32, author="a", key=key.public_key, kind="trade.order_accepted",
                      fields={"order_id": "PO-1"}, time_ms=5, nonce="n")
    assert sign_body(body, key).id == sign_body(dict(reversed(list(body.items()))), key).id
    with pytest.raises(SigningError):
        sign_body({**body, "amount": 12.5}, key)
    with pytest.raises(SigningError):
        sign_body({**body, "packages": 2**53}, key)
    with pytest.raises(SigningError):
        sign_body(body, other)  # the body names another key
    with pytest.raises(SigningError):
        build_body(chain="11", author="a", key="k", kind="x", fields={"nonce": 1})


def test_the_evidence_vector_verifies_and_tampering_fails() -> None:
    genesis = Genesis.from_file(TESTDATA / "evidence" / "genesis.json")
    assert genesis.hash_hex == genesis_hash(json.loads((TESTDATA / "evidence" / "genesis.json").read_text()))
    text = (TESTDATA / "evidence" / "bundle-v1.json").read_bytes()
    report = verify_bundle(genesis, text)
    assert report.ok, report.failures
    assert [e.kind for e in report.events] == ["trade.order_accepted"]
    assert (report.events[0].height, report.events[0].index) == (1, 1)
    bundle = json.loads(text)
    bundle["events"][0]["proof"].reverse()
    assert "INCLUSION_PROOF" in verify_bundle(genesis, bundle).codes
    assert verify_bundle(genesis, b"{not json").codes == ["BUNDLE_MALFORMED"]
    assert verify_bundle(genesis, {"format": "tradeloop/evidence", "version": 2}).codes == ["BUNDLE_VERSION"]
    dup = text.replace(b'"version"', b'"version": 1, "version"', 1)
    assert verify_bundle(genesis, dup).codes == ["BUNDLE_MALFORMED"]


def test_offline_verification_needs_no_http_library() -> None:
    """Signing and `python -m tradeloop_client.verify` run where httpx is not installed."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "import tradeloop_client, tradeloop_client.verify\n"
        "assert 'tradeloop_client.client' not in sys.modules\n"
        "from tradeloop_client.verify import main\n"
        "sys.exit(main(['--genesis', sys.argv[1], sys.argv[2]]))\n"
    )
    evidence = TESTDATA / "evidence"
    run = subprocess.run(
        [sys.executable, "-c", code, str(evidence / "genesis.json"), str(evidence / "bundle-v1.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("OK: 1 event(s) certified"), run.stdout
    assert tradeloop_client.Client is Client


# -- SSE ---------------------------------------------------------------------------------------


def test_sse_parser_handles_line_endings_comments_and_split_chunks() -> None:
    stream = (
        b"\xef\xbb\xbf:heartbeat\n\n"
        b"id: 1:0\nevent: event\ndata: {\"a\":\ndata: 1}\n\n"
        b"retry: 2500\r\n: another comment\r\ndata:x\r\rid\n"
        b"data: y\r\n\r\n"
        b"event: too_slow\ndata: {}\n\n"
        b"event: unfinished\ndata: z\n"
    )
    for size in (1, 2, 3, 7, len(stream)):
        parser = SSEParser()
        messages = []
        for i in range(0, len(stream), size):
            messages += parser.feed(stream[i : i + size])
        assert [(m.event, m.data, m.id) for m in messages] == [
            ("event", '{"a":\n1}', "1:0"),
            ("message", "x", "1:0"),
            ("message", "y", ""),
            ("too_slow", "{}", ""),
        ], size
        assert parser.retry_ms == 2500


def test_sse_parser_is_bounded() -> None:
    parser = SSEParser(max_message_bytes=100)
    with pytest.raises(ResponseTooLarge):
        parser.feed(b"data: " + b"x" * 200)
    parser = SSEParser(max_message_bytes=100)
    with pytest.raises(ResponseTooLarge):
        parser.feed(b"data: " + b"x" * 60 + b"\ndata: " + b"y" * 60 + b"\n")


# -- the client against a mock transport ---------------------------------------------------------


def problem(status: int, code: str, headers: Optional[Dict[str, str]] = None, **extra: Any) -> httpx.Response:
    doc = {"type": f"urn:tradeloop:problem:{code}", "title": "t", "status": status, "code": code,
           "detail": f"detail of {code}", **extra}
    return httpx.Response(status, headers={"content-type": "application/problem+json", **(headers or {})},
                          content=json.dumps(doc).encode())


def mock_client(handler: Callable[[httpx.Request], httpx.Response], sleeps: List[float], **kw: Any) -> Client:
    return Client("http://node.test", transport=httpx.MockTransport(handler), sleep=sleeps.append, **kw)


def envelope(n: int) -> Dict[str, Any]:
    return {"body": {"n": n}, "signature": "00" * 64}


def test_429_is_retried_after_retry_after_then_succeeds() -> None:
    sleeps: List[float] = []
    calls: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return problem(429, "MEMPOOL_FULL", {"retry-after": "2"})
        if len(calls) == 2:
            return problem(429, "MEMPOOL_FULL", {"retry-after": "2"}, retry_after_ms=700)
        if len(calls) == 3:
            return problem(503, "NODE_BUSY", {"retry-after": "1"})
        return httpx.Response(200, json={"results": [{"status": "accepted", "id": ID}]})

    client = mock_client(handler, sleeps)
    answer = client.submit(envelope(1))
    assert answer.results == [Accepted(ID)] and answer.attempts == 4
    assert sleeps == [2.0, 0.7, 1.0]
    assert all(r.url.path == "/v1/events" and r.method == "POST" for r in calls)
    assert json.loads(calls[0].content) == [envelope(1)]


def test_retries_are_bounded_and_the_last_problem_is_raised() -> None:
    sleeps: List[float] = []
    client = mock_client(lambda r: problem(429, "MEMPOOL_FULL", {"retry-after": "100"}), sleeps,
                         max_attempts=3, max_retry_wait=5)
    with pytest.raises(ProblemError) as caught:
        client.submit(envelope(1))
    assert (caught.value.status, caught.value.code, caught.value.retry_after_ms) == (429, "MEMPOOL_FULL", 100_000)
    assert sleeps == [5.0, 5.0]
    # A problem that is not about load is not retried.
    sleeps.clear()
    client = mock_client(lambda r: problem(413, "TOO_MANY_EVENTS"), sleeps)
    with pytest.raises(ProblemError) as caught:
        client.submit(envelope(1))
    assert caught.value.code == "TOO_MANY_EVENTS" and sleeps == []


def test_full_events_are_sent_again_and_results_keep_their_order() -> None:
    sleeps: List[float] = []
    bodies: List[Any] = []
    other = "cd" * 32

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.url.params["wait"] == "commit" and request.url.params["timeout_ms"] == "5000"
        if len(bodies) == 1:
            return httpx.Response(200, json={"timed_out": False, "results": [
                {"status": "full", "id": ID, "retry_after_ms": 300},
                {"status": "committed", "id": other, "height": 3, "block_hash": "ee" * 32, "index": 0}]})
        return httpx.Response(200, json={"timed_out": True, "results": [{"status": "pending", "id": ID}]})

    client = mock_client(handler, sleeps)
    answer = client.submit([envelope(1), envelope(2)], wait=True, wait_timeout_ms=5000)
    assert bodies == [[envelope(1), envelope(2)], [envelope(1)]]
    assert sleeps == [0.3]
    assert answer.timed_out is True
    assert answer.results[0].status == "pending" and answer.results[1] == Committed(other, 3, "ee" * 32, 0)
    # Two requests settled the batch: `raw` holds each result as the request that settled it said.
    assert answer.raw == {"timed_out": True, "results": [
        {"status": "pending", "id": ID},
        {"status": "committed", "id": other, "height": 3, "block_hash": "ee" * 32, "index": 0}]}

    # Without retry_full, a `full` result is returned as it is.
    bodies.clear()
    first = mock_client(handler, sleeps).submit([envelope(1), envelope(2)], wait=True, wait_timeout_ms=5000,
                                                retry_full=False)
    assert first.results[0] == Full(ID, 300) and len(bodies) == 1
    # One request answered every event: `raw` is that answer itself.
    assert first.raw["results"][0] == {"status": "full", "id": ID, "retry_after_ms": 300}
    assert first.raw["timed_out"] is False and first.results[0].raw is first.raw["results"][0]


def test_large_submissions_are_split_into_batches() -> None:
    sizes: List[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content))
        sizes.append(n)
        return httpx.Response(200, json={"results": [{"status": "accepted", "id": ID}] * n})

    answer = mock_client(handler, []).submit([envelope(i) for i in range(5)], batch_size=2)
    assert sizes == [2, 2, 1] and len(answer.results) == 5
    # Three answers: `raw` is put together in the shape of one, from each result's own JSON.
    assert answer.raw == {"results": [{"status": "accepted", "id": ID}] * 5}
    assert all(r.raw == {"status": "accepted", "id": ID} for r in answer.results)


def test_bearer_token_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: List[Optional[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") != "Bearer s3cret":
            return problem(401, "UNAUTHORIZED", {"www-authenticate": "Bearer"})
        return httpx.Response(200, json={"chain_id": "c", "genesis_hash": ID, "participants": []})

    monkeypatch.delenv("TRADELOOP_TOKEN", raising=False)
    with pytest.raises(ProblemError) as caught:
        mock_client(handler, []).participants()
    assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")
    assert mock_client(handler, [], token="s3cret").participants().chain_id == "c"
    monkeypatch.setenv("TRADELOOP_TOKEN", "s3cret")
    assert mock_client(handler, []).participants().chain_id == "c"
    assert seen == [None, "Bearer s3cret", "Bearer s3cret"]
    with pytest.raises(ValueError):
        mock_client(handler, [], token="two words")


NODE_401_DETAIL = (
    "this node requires a bearer token: send `Authorization: Bearer TOKEN` (the CLI takes --token "
    "or TRADELOOP_TOKEN); the node's operator creates tokens with `tradeloop token new`"
)
"""The node's detail of a 401 (node/src/api/auth.rs), written for its CLI."""


def test_401_says_how_to_give_this_client_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 401 tells a Python caller what to do in the client's terms: the constructor's ``token=``
    (or TRADELOOP_TOKEN), the scope this request needs, and that the node's operator issues tokens
    with `tradeloop token new`; not the CLI's --token."""

    def handler(request: httpx.Request) -> httpx.Response:
        return problem(401, "UNAUTHORIZED", {"www-authenticate": "Bearer"}, detail=NODE_401_DETAIL)

    def refusal(call: Callable[[], object]) -> ProblemError:
        with pytest.raises(ProblemError) as caught:
            call()
        err = caught.value
        assert (err.status, err.code) == (401, "UNAUTHORIZED")
        assert "--token" not in str(err) and "CLI" not in str(err)
        assert err.problem["detail"] == NODE_401_DETAIL  # the node's own words are kept
        assert 'Client("http://node.test", token="TOKEN")' in err.detail
        assert "`tradeloop token new --name NAME --scopes " in err.detail
        assert 'docs/operations.md, "API access: bearer tokens"' in err.detail
        return err

    monkeypatch.delenv("TRADELOOP_TOKEN", raising=False)
    anonymous = mock_client(handler, [])
    for call in (anonymous.status, anonymous.participants, lambda: anonymous.trade("PO-1"),
                 lambda: next(anonymous.stream(from_height=1))):
        err = refusal(call)
        assert "sent none" in err.detail and "TRADELOOP_TOKEN" in err.detail
        assert "`read` scope" in err.detail and "--scopes read`" in err.detail
    err = refusal(lambda: anonymous.submit(envelope(1)))
    assert "`submit` scope" in err.detail and "--scopes read,submit`" in err.detail

    # A token the node does not know: say where it came from, never what it is.
    err = refusal(mock_client(handler, [], token="s3cret").participants)
    assert "refused the bearer token" in err.detail and "from the token= argument" in err.detail
    assert "s3cret" not in str(err)
    monkeypatch.setenv("TRADELOOP_TOKEN", "0ld-t0ken")
    err = refusal(lambda: mock_client(handler, []).submit(envelope(1)))
    assert "from the environment variable TRADELOOP_TOKEN" in err.detail and "`submit` scope" in err.detail
    assert "0ld-t0ken" not in str(err)

    # Other problems keep the node's detail (a 403 already names the scope and no CLI flag).
    forbidden = mock_client(lambda r: problem(403, "FORBIDDEN"), []).participants
    with pytest.raises(ProblemError) as caught:
        forbidden()
    assert caught.value.detail == "detail of FORBIDDEN"


def test_answers_are_bounded_and_checked() -> None:
    big = b"[" + b"0," * 600_000 + b"0]"
    client = mock_client(lambda r: httpx.Response(200, content=big), [], max_response_bytes=1_000_000)
    with pytest.raises(ResponseTooLarge):
        client.status()

    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(big))  # no content-length checked first

    with pytest.raises(ResponseTooLarge):
        mock_client(chunked, [], max_response_bytes=1_000_000).status()
    with pytest.raises(UnexpectedResponse):
        mock_client(lambda r: httpx.Response(200, content=b"<html>"), []).status()
    with pytest.raises(UnexpectedResponse):
        mock_client(lambda r: httpx.Response(502, content=b"<html>bad gateway</html>"), []).status()
    with pytest.raises(UnexpectedResponse):
        mock_client(lambda r: httpx.Response(200, json={"height": "x"}), []).status()
    with pytest.raises(UnexpectedResponse):
        mock_client(lambda r: httpx.Response(200, content=b'{"a": 1, "a": 2}'), []).status()


def test_transport_failures_and_timeouts_are_typed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TransportError):
        mock_client(refuse, []).status()
    with pytest.raises(RequestTimeout):
        mock_client(slow, []).status()
    # And against a real closed port on loopback.
    with Client("http://127.0.0.1:9", timeout=2) as client:
        with pytest.raises(TransportError):
            client.status()


def test_path_segments_are_escaped() -> None:
    paths: List[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return problem(404, "NOT_ON_LEDGER")

    client = mock_client(handler, [])
    with pytest.raises(ProblemError):
        client.trade("PO/../1?x")
    with pytest.raises(ProblemError):
        client.trace("order:PO 1")
    assert paths == ["/v1/trades/PO%2F..%2F1%3Fx", "/v1/trace/order:PO%201"]


def event_json(height: int, index: int) -> str:
    return json.dumps({"id": f"{height:032x}{index:032x}", "height": height, "index": index,
                       "block_hash": "ee" * 32, "block_time_ms": 1, "kind": "k", "author": "a",
                       "envelope": {"body": {"kind": "k"}, "signature": "00" * 64}})


def sse(height: int, index: int) -> bytes:
    return f"id: {height}:{index}\nevent: event\ndata: {event_json(height, index)}\n\n".encode()


def test_stream_ignores_heartbeats_resumes_after_a_cut_and_raises_too_slow() -> None:
    requests: List[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json={})
        requests.append(request)
        if len(requests) == 1:
            assert request.url.params["from"] == "1" and "last-event-id" not in request.headers
            body = b":heartbeat\n\n" + sse(1, 0) + sse(1, 1) + sse(2, 0)[:40]  # then the connection ends
        else:
            assert request.headers["last-event-id"] == "1:1" and "from" not in request.url.params
            too_slow = {"code": "STREAM_TOO_SLOW", "detail": "read faster", "next_event": "3:0"}
            body = sse(2, 0) + b":heartbeat\n\n" + b"event: too_slow\ndata: " + json.dumps(too_slow).encode() + b"\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    sleeps: List[float] = []
    client = mock_client(handler, sleeps)
    stream = client.stream(from_height=1, reconnect_delay=0.25)
    got = []
    with pytest.raises(StreamTooSlow) as caught:
        for record in stream:
            got.append(record.position)
    assert got == ["1:0", "1:1", "2:0"]
    assert caught.value.code == "STREAM_TOO_SLOW" and caught.value.next_event == "3:0"
    assert caught.value.last_event_id == "2:0" == stream.last_event_id
    assert stream.connections == 2 and sleeps == [0.25]
    assert list(stream) == []  # closed


def test_stream_gives_up_after_bounded_reconnects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json={})
        raise httpx.ConnectError("refused", request=request)

    sleeps: List[float] = []
    stream = mock_client(handler, sleeps).stream(last_event_id="5:1", max_reconnects=3, reconnect_delay=1)
    with pytest.raises(StreamEnded):
        next(stream)
    assert sleeps == [1, 2, 4]


def test_stream_without_a_start_begins_after_the_current_height() -> None:
    seen: List[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json={
                "chain_id": "c", "genesis_hash": ID, "height": 41, "tip_hash": ID, "validator": True,
                "node_key": ID, "connected_peers": [], "mempool_events": 0, "mempool_bytes": 0,
                "syncing": False})
        seen.append(request.url.params["from"])
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(42, 0))

    stream = mock_client(handler, []).stream(reconnect=False)
    assert [r.position for r in stream] == ["42:0"] and seen == ["42"]


def test_the_package_is_typed() -> None:
    import tradeloop_client

    assert (Path(tradeloop_client.__file__).parent / "py.typed").is_file()


# -- every answer model keeps its JSON ------------------------------------------------------------

HEADER = {"height": 2, "hash": "aa" * 32, "prev_hash": "bb" * 32, "time_ms": 5, "proposer": "cc" * 32,
          "events_root": "dd" * 32, "event_count": 1, "app_hash": "ee" * 32, "validators_hash": "ff" * 32,
          "chain": "11" * 32}
EVENT = {"id": ID, "height": 2, "index": 0, "block_hash": "aa" * 32, "block_time_ms": 5,
         "kind": "trade.order_placed", "author": "a", "later_field": "kept",
         "envelope": {"body": {"kind": "trade.order_placed"}, "signature": "00" * 64}}
ANSWERS: Dict[str, Any] = {
    "NodeStatus": {"chain_id": "c", "genesis_hash": ID, "height": 2, "tip_hash": ID, "validator": True,
                   "node_key": ID, "connected_peers": ["p"], "mempool_events": 0, "mempool_bytes": 0,
                   "syncing": False, "later_field": "kept"},
    "EventRecord": EVENT,
    "BlocksPage": {"height": 2, "blocks": [HEADER], "next_from": None},
    "Block": {"header": HEADER, "event_ids": [ID],
              "certificate": {"height": 2, "round": 0, "block_hash": "aa" * 32,
                              "signatures": [{"validator": "cc" * 32, "signature": "00" * 64}]}},
    "Trace": {"reference": "order:PO-1", "height": 2, "total": 1, "events": [EVENT], "next_offset": None},
    "Trade": {"order_id": "PO-1", "height": 2, "buyer": "b", "seller": "s", "state": "OPEN", "closed": False,
              "legs": [{"leg": "order_placed", "done": True, "detail": "d", "later_field": "kept"}],
              "open_legs": ["paid"]},
    "Participants": {"chain_id": "c", "genesis_hash": ID, "participants": [
        {"id": "a", "name": "A", "role": "exporter", "country": "CN", "keys": [ID], "later_field": "kept"}]},
    "SubmitResponse": {"timed_out": False, "results": [
        {"status": "accepted", "id": ID},
        {"status": "committed", "id": ID, "height": 2, "block_hash": "aa" * 32, "index": 0},
        {"status": "rejected", "id": None, "code": "MALFORMED_EVENT", "message": "m"},
        {"status": "full", "id": ID, "retry_after_ms": 100},
        {"status": "pending", "id": ID, "later_field": "kept"}]},
}
"""One JSON answer of each endpoint (docs/api.md), as the node sends it; each parsed into the
model of the same name."""


def answer_models() -> List[type]:
    """Every class of the models module: the answers and their parts."""
    return [c for c in vars(models).values()
            if isinstance(c, type) and c.__module__ == models.__name__ and dataclasses.is_dataclass(c)]


def parsed_parts(value: Any) -> Iterator[Any]:
    """``value`` and every model inside it (in fields, lists of them, an event's envelope)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield value
        for f in dataclasses.fields(value):
            if f.name != "raw":
                yield from parsed_parts(getattr(value, f.name))
    elif isinstance(value, list):
        for item in value:
            yield from parsed_parts(item)


def test_every_answer_model_keeps_the_json_it_was_parsed_from_in_raw() -> None:
    """The README's promise: every answer model keeps its JSON object in ``raw``. Checked for
    every model the package exports, and for every part of every parsed answer."""
    classes = answer_models()
    exported = {getattr(tradeloop_client, name) for name in tradeloop_client.__all__}
    assert len(classes) >= 18 and set(classes) <= exported, "a model the package does not export"
    for cls in classes:
        raw = {f.name: f for f in dataclasses.fields(cls)}.get("raw")
        assert raw is not None, f"{cls.__name__} has no `raw`"
        assert not raw.compare and not raw.repr, f"{cls.__name__}.raw takes part in == or repr"

    seen = set()
    for name, doc in ANSWERS.items():
        parsed = getattr(models, name).from_json(doc)
        assert parsed.raw is doc, name
        for part in parsed_parts(parsed):
            seen.add(type(part))
            assert isinstance(part.raw, Mapping) and part.raw, f"{type(part).__name__} in {name}: no raw"
    assert seen == set(classes), f"not parsed in this test: {set(classes) - seen}"

    trade = models.Trade.from_json(ANSWERS["Trade"])
    assert trade.legs[0].raw["later_field"] == "kept"
    event = models.EventRecord.from_json(EVENT)
    assert event.raw["later_field"] == "kept" and event.envelope.raw is EVENT["envelope"]
    submitted = models.SubmitResponse.from_json(ANSWERS["SubmitResponse"])
    assert [r.raw for r in submitted.results] == ANSWERS["SubmitResponse"]["results"]
    # `raw` takes no part in equality: a result made by hand equals a parsed one.
    assert submitted.results[0] == Accepted(ID) and Accepted(ID).raw == {}
