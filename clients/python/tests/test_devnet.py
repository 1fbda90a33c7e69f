"""The client against a real devnet: the closed-loop trade submitted from Python, each party to
its own node, then reads, the stream and offline verification of every proof."""

from __future__ import annotations

import copy
import json
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

from conftest import Devnet, Node, tradeloop_binary
from sample_trade import (
    CN_CUSTOMS,
    DE_CUSTOMS,
    EXPORTER,
    EXPORTER_BANK,
    FORWARDER,
    IMPORTER,
    IMPORTER_BANK,
    trade_steps,
)
from tradeloop_client import (
    Client,
    Committed,
    EventRecord,
    Genesis,
    ProblemError,
    Rejected,
    SignedEvent,
    verify_bundle,
)

COMMIT_WAIT_MS = 20_000
"""How long the node may wait for one event's commit (as the demo does)."""
ORDER = "PY-1"
"""The order number of the trade (ids PO-PY-1, SHP-PY-1, ...)."""


@dataclass(frozen=True)
class Step:
    author: str
    node: Node
    event: SignedEvent
    result: Committed


@dataclass(frozen=True)
class TradeRun:
    order_id: str
    shipment_id: str
    steps: List[Step]
    early: SignedEvent
    early_result: Rejected
    early_node: Node

    @property
    def top(self) -> int:
        return max(s.result.height for s in self.steps)


@pytest.fixture(scope="module")
def trade(devnet: Devnet) -> TradeRun:
    """Runs the sample closed-loop trade: each event signed in Python by its author, submitted to
    the author's own node (its member node, or the validator it runs) with ?wait=commit. Before
    the forwarder files the export declaration, it tries a departure: rejected."""
    steps: List[Step] = []
    early: Optional[Tuple[SignedEvent, Rejected, Node]] = None
    for author, kind, fields in trade_steps(ORDER):
        if kind == "customs.declaration_filed" and author == FORWARDER:
            # The rules at work: the ship cannot leave before export clearance.
            node = devnet.node_of(FORWARDER)
            departure = devnet.signer(FORWARDER).sign(
                "shipment.departed",
                {"shipment_id": f"SHP-{ORDER}", "location": "CNYTN", "event_time_ms": int(time.time() * 1000)},
            )
            result = devnet.client(node).submit_one(departure, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
            assert isinstance(result, Rejected), f"a departure before export clearance: {result}"
            early = (departure, result, node)
        node = devnet.node_of(author)
        event = devnet.signer(author).sign(kind, fields)
        result = devnet.client(node).submit_one(event, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
        assert isinstance(result, Committed), f"{kind} by {author} via {node.name}: {result}"
        steps.append(Step(author, node, event, result))
    assert early is not None
    return TradeRun(f"PO-{ORDER}", f"SHP-{ORDER}", steps, early[0], early[1], early[2])


def all_event_ids(client: Client, to_height: int) -> List[Tuple[str, str]]:
    """(position, id) of every event of blocks 1..to_height, in chain order, from the blocks."""
    out = []
    for header in client.iter_blocks(1, to_height):
        if header.event_count:
            block = client.block(header.height)
            assert len(block.event_ids) == header.event_count
            out += [(f"{header.height}:{i}", e) for i, e in enumerate(block.event_ids)]
    return out


# -------------------------------------------------------------------------------------------


def test_every_node_is_up_on_the_genesis_chain(devnet: Devnet) -> None:
    participants = None
    for node in devnet.nodes:
        client = devnet.client(node)
        status = client.status()
        assert status.genesis_hash == devnet.genesis.hash_hex
        assert status.chain_id == devnet.genesis.doc["chain_id"]
        assert status.validator == node.validator
        listed = client.participants()
        assert listed.genesis_hash == devnet.genesis.hash_hex
        participants = participants or listed
        assert listed == participants
    assert participants is not None
    ids = {p.id for p in participants.participants}
    assert ids == {EXPORTER, IMPORTER, FORWARDER, EXPORTER_BANK, IMPORTER_BANK, CN_CUSTOMS, DE_CUSTOMS}
    for p in participants.participants:
        assert devnet.signer(p.id).key.public_key in p.keys
    # The parties with no validator of their own submit through their member node.
    for party in (EXPORTER, IMPORTER, FORWARDER):
        assert not devnet.node_of(party).validator
    for party in (IMPORTER_BANK, EXPORTER_BANK, CN_CUSTOMS, DE_CUSTOMS):
        assert devnet.node_of(party).validator


def test_closed_loop_trade_commits_each_event_via_its_authors_own_node(
    devnet: Devnet, trade: TradeRun
) -> None:
    kinds = [s.event.kind for s in trade.steps]
    assert kinds[0] == "trade.order_placed" and kinds[-1] == "payment.settled"
    for wanted in ("trade.invoice_issued", "shipment.booked", "customs.cleared", "shipment.departed",
                   "shipment.delivered", "shipment.received"):
        assert wanted in kinds
    heights = [s.result.height for s in trade.steps]
    assert heights == sorted(heights), "each event was committed before the next was sent"
    for step in trade.steps:
        assert step.node.participant == step.author, f"{step.event.kind} went to {step.node.name}"
        assert step.result.id == step.event.id
        assert len(step.result.block_hash) == 64
    # Every event reads back, as signed, from another party's node once it has the block.
    reader = devnet.client_of(DE_CUSTOMS)
    reader.wait_for_height(trade.top, timeout=30)
    for step in trade.steps:
        record = reader.event(step.event.id)
        assert (record.height, record.index, record.block_hash) == (
            step.result.height, step.result.index, step.result.block_hash)
        assert record.kind == step.event.kind and record.author == step.author
        assert record.envelope.body == dict(step.event.body)
        assert record.envelope.signature == step.event.signature
    # Submitting a committed event again answers where it is.
    again = devnet.client_of(IMPORTER).submit_one(trade.steps[0].event)
    assert again == trade.steps[0].result


def test_departure_before_export_clearance_is_rejected_with_its_stable_code(
    devnet: Devnet, trade: TradeRun
) -> None:
    rejected = trade.early_result
    assert trade.early_node.participant == FORWARDER and not trade.early_node.validator
    assert rejected.code == "EXPORT_NOT_CLEARED"
    assert rejected.id == trade.early.id
    assert trade.shipment_id in rejected.message
    # It was never recorded: the read is a typed 404.
    with pytest.raises(ProblemError) as caught:
        devnet.client_of(FORWARDER).event(trade.early.id)
    assert (caught.value.status, caught.value.code) == (404, "EVENT_NOT_FOUND")
    assert caught.value.detail


def test_a_request_that_admits_nothing_is_a_problem_carrying_each_result(
    devnet: Devnet, trade: TradeRun
) -> None:
    """422 with the ledger's code for a refused event, 409 with where for a committed one; the
    client reads the per-event results out of either, so a replay answers `committed`."""
    url = trade.early_node.url
    refused = httpx.post(f"{url}/v1/events", content=trade.early.envelope_json(), timeout=15)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    doc = refused.json()
    # Refused now for its place in the finished trade; the answer's code is the event's own.
    assert doc["code"] == doc["results"][0]["code"] == "SHIPMENT_OUT_OF_ORDER", doc
    first = trade.steps[0]
    replay = httpx.post(f"{url}/v1/events", content=first.event.envelope_json(), timeout=15)
    assert replay.status_code == 409, replay.text
    assert replay.json()["code"] == "ALREADY_COMMITTED"
    assert replay.json()["results"][0]["height"] == first.result.height
    # The client: a replay of the whole trade to every node is `committed` where it was.
    for node in devnet.nodes:
        # A node a block behind would admit the last event again (until that block reaches it).
        devnet.client(node).wait_for_height(trade.top, timeout=30)
        again = devnet.client(node).submit([s.event for s in trade.steps])
        assert [(r.id, r.height) for r in again.results if isinstance(r, Committed)] == [
            (s.event.id, s.result.height) for s in trade.steps
        ]


def test_trade_is_reported_closed(devnet: Devnet, trade: TradeRun) -> None:
    for party in (IMPORTER, EXPORTER):
        client = devnet.client_of(party)
        client.wait_for_height(trade.top, timeout=30)
        status = client.trade(trade.order_id)
        assert status.state == "CLOSED", status.open_legs
        assert status.closed and status.open_legs == []
        assert (status.buyer, status.seller) == (IMPORTER, EXPORTER)
        legs = [leg.leg for leg in status.legs]
        assert legs == ["order_placed", "order_accepted", "invoiced", "booked", "export_cleared",
                        "departed", "arrived", "import_cleared", "delivered", "received", "paid"]
        assert all(leg.done for leg in status.legs)


def test_trace_lists_the_trade_in_ledger_order(devnet: Devnet, trade: TradeRun) -> None:
    client = devnet.client_of(EXPORTER)
    client.wait_for_height(trade.top, timeout=30)
    whole = list(client.iter_trace(f"order:{trade.order_id}", page=4))
    assert [e.id for e in whole] == [s.event.id for s in trade.steps]
    page = client.trace(f"order:{trade.order_id}", limit=4)
    assert page.total == len(trade.steps) and page.next_offset == 4 and len(page.events) == 4
    shipment = client.trace(f"shipment:{trade.shipment_id}")
    assert shipment.events[0].kind == "shipment.booked"
    assert [(e.height, e.index) for e in shipment.events] == sorted((e.height, e.index) for e in shipment.events)


def test_blocks_are_paged_and_linked(devnet: Devnet, trade: TradeRun) -> None:
    client = devnet.client_of(CN_CUSTOMS)
    client.wait_for_height(trade.top, timeout=30)
    page = client.blocks(1, limit=2)
    assert [b.height for b in page.blocks] == [1, 2] and page.next_from == 3
    headers = list(client.iter_blocks(1, trade.top, page=7))
    assert [h.height for h in headers] == list(range(1, trade.top + 1))
    for prev, header in zip(headers, headers[1:]):
        assert header.prev_hash == prev.hash
    last = client.block(trade.top)
    assert last.header == headers[-1]
    assert trade.steps[-1].event.id in last.event_ids


def test_batch_submission_has_one_result_per_event_in_order(devnet: Devnet) -> None:
    importer = devnet.signer(IMPORTER)
    orders = []
    for n in range(4):
        fields = dict(trade_steps(f"B{n}")[0][2])
        orders.append(importer.sign("trade.order_placed", fields))
    replay = orders[0]
    batch: List[Any] = [orders[0], orders[1], '{"body": {}}', orders[2], orders[3], replay.envelope()]
    answer = devnet.client_of(IMPORTER).submit(batch, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
    assert answer.timed_out is False
    results = answer.results
    assert len(results) == len(batch)
    for i in (0, 1, 3, 4):
        assert isinstance(results[i], Committed), results[i]
        assert results[i].id == batch[i].id
    assert isinstance(results[2], Rejected) and results[2].code == "MALFORMED_EVENT" and results[2].id is None
    # The same event twice in one request is one event: both answers say where it is.
    assert results[5] == results[0]
    # A changed event under a used nonce is refused.
    reused = importer.sign("trade.order_placed", dict(trade_steps("B9")[0][2]), nonce=replay.body["nonce"])
    again = devnet.client_of(IMPORTER).submit_one(reused, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
    assert isinstance(again, Rejected) and again.code == "DUPLICATE_NONCE" and again.id == reused.id


def test_every_event_proof_and_the_trade_proof_verify_offline(devnet: Devnet, trade: TradeRun) -> None:
    genesis = Genesis.from_file(devnet.genesis_path)
    client = devnet.client_of(DE_CUSTOMS)
    top = client.status().height
    events = all_event_ids(client, top)
    assert {s.event.id for s in trade.steps} <= {e for _, e in events}
    for position, event_id in events:
        report = client.verify_event_proof(event_id, genesis)
        assert report.ok and report.event_ids == [event_id]
        height, index = (int(x) for x in position.split(":"))
        assert (report.events[0].height, report.events[0].index) == (height, index)
    report = client.verify_trade_proof(trade.order_id, genesis)
    assert report.event_ids == [s.event.id for s in trade.steps]
    assert [e.kind for e in report.events] == [s.event.kind for s in trade.steps]


def _tamper(bundle: Dict[str, Any], change: str) -> Dict[str, Any]:
    b = copy.deepcopy(bundle)
    event = b["events"][0]
    if change == "body":
        body = bytearray(bytes.fromhex(event["body"]))
        body[body.index(b'"kind"') + 9] ^= 0x01
        event["body"] = body.hex()
    elif change == "proof":
        event["proof"] = [("%064x" % 1)] + event["proof"][1:] if event["proof"] else ["00" * 32]
    elif change == "index":
        event["index"] += 1
    elif change == "signature":
        sig = bytearray(bytes.fromhex(event["signature"]))
        sig[0] ^= 0x01
        event["signature"] = sig.hex()
    elif change == "header":
        b["blocks"][0]["header"]["time_ms"] += 1
    elif change == "certificate":
        sig = b["blocks"][0]["certificate"]["signatures"][0]
        raw = bytearray(bytes.fromhex(sig["signature"]))
        raw[5] ^= 0x80
        sig["signature"] = raw.hex()
    elif change == "quorum":
        sigs = b["blocks"][0]["certificate"]["signatures"]
        del sigs[: len(sigs) - 2]  # 2 of 4 equal validators is not more than 2/3
    else:  # pragma: no cover
        raise AssertionError(change)
    return b


@pytest.mark.parametrize(
    "change, code",
    [
        ("body", "EVENT_ID"),
        ("proof", "INCLUSION_PROOF"),
        ("index", "INCLUSION_PROOF"),
        ("signature", "EVENT_SIGNATURE"),
        ("header", "HEADER_HASH"),
        ("certificate", "CERTIFICATE"),
        ("quorum", "CERTIFICATE"),
    ],
)
def test_a_tampered_proof_fails(devnet: Devnet, trade: TradeRun, change: str, code: str) -> None:
    genesis = Genesis.from_file(devnet.genesis_path)
    client = devnet.client_of(EXPORTER)
    client.wait_for_height(trade.top, timeout=30)
    bundle = client.event_proof(trade.steps[3].event.id)
    assert verify_bundle(genesis, bundle).ok
    report = verify_bundle(genesis, _tamper(bundle, change))
    assert not report.ok
    assert code in report.codes, report.failures
    with pytest.raises(Exception):
        report.raise_for_failures()


def test_a_proof_fails_against_another_genesis(devnet: Devnet, trade: TradeRun) -> None:
    doc = copy.deepcopy(dict(devnet.genesis.doc))
    doc["chain_id"] = "another-chain"
    other = Genesis(doc)
    bundle = devnet.client_of(EXPORTER).trade_proof(trade.order_id)
    report = verify_bundle(other, bundle)
    assert "FOREIGN_GENESIS" in report.codes and not report.ok


def test_a_proof_of_an_event_with_siblings_verifies_and_fails_when_tampered(devnet: Devnet) -> None:
    """Events submitted together share a block, so their inclusion proofs are not empty."""
    genesis = Genesis.from_file(devnet.genesis_path)
    importer = devnet.signer(IMPORTER)
    events = [importer.sign("trade.order_placed", dict(trade_steps(f"S{n}")[0][2])) for n in range(5)]
    client = devnet.client_of(IMPORTER)
    answer = client.submit(events, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
    assert answer.all_committed, answer
    committed = [r for r in answer.results if isinstance(r, Committed)]
    shared = max({r.height for r in committed}, key=lambda h: sum(r.height == h for r in committed))
    sibling = next(r for r in committed if r.height == shared and r.index > 0)
    bundle = client.event_proof(sibling.id)
    assert bundle["events"][0]["proof"], "an event with siblings has a non-empty inclusion proof"
    assert verify_bundle(genesis, bundle, expect_events=[sibling.id]).ok
    broken = copy.deepcopy(bundle)
    path = broken["events"][0]["proof"]
    path[-1] = path[-1][:-2] + ("00" if path[-1][-2:] != "00" else "01")
    assert "INCLUSION_PROOF" in verify_bundle(genesis, broken).codes
    assert "EVENT_NOT_IN_BUNDLE" in verify_bundle(genesis, bundle, expect_events=["ab" * 32]).codes


def _read(stream: Iterator[EventRecord], count: int) -> List[EventRecord]:
    out = []
    for record in stream:
        out.append(record)
        if len(out) == count:
            break
    assert len(out) == count, f"the stream ended after {len(out)} of {count} events"
    return out


def test_stream_resumes_with_last_event_id_without_gap_or_duplicate(devnet: Devnet, trade: TradeRun) -> None:
    client = devnet.client_of(IMPORTER)
    client.wait_for_height(trade.top, timeout=30)
    expected = all_event_ids(client, client.status().height)
    assert len(expected) >= len(trade.steps)
    first_part = 7
    with client.stream(from_height=1, idle_timeout=30, max_reconnects=2) as stream:
        got = _read(stream, first_part)
        resume_at = stream.last_event_id
    assert resume_at == got[-1].position
    # The connection is gone; a new one resumes right after the last event received.
    with client.stream(last_event_id=resume_at, idle_timeout=30, max_reconnects=2) as stream:
        got += _read(stream, len(expected) - first_part)
    assert [(e.position, e.id) for e in got] == expected
    assert len({e.id for e in got}) == len(got)
    by_id = {s.event.id: s for s in trade.steps}
    for record in got:
        if record.id in by_id:
            step = by_id[record.id]
            assert (record.height, record.index) == (step.result.height, step.result.index)
            assert record.envelope.signature == step.event.signature


class CuttingTransport(httpx.BaseTransport):
    """A real transport that breaks the first stream connection after ``cut_after`` bytes (in
    the middle of a message) and records the Last-Event-ID of each stream request."""

    def __init__(self, cut_after: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.cut_after = cut_after
        self.cuts = 0
        self.stream_requests: List[Optional[str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != "/v1/stream":
            return response
        self.stream_requests.append(request.headers.get("last-event-id"))
        if self.cuts:
            return response
        self.cuts += 1
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Cut(response.stream, self.cut_after),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner:
            if sent + len(chunk) >= self.limit:
                yield chunk[: self.limit - sent]
                raise httpx.RemoteProtocolError("connection cut by the test")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


def test_stream_reconnects_by_itself_after_a_broken_connection(devnet: Devnet, trade: TradeRun) -> None:
    node = devnet.node_of(EXPORTER)
    reader = devnet.client(node)
    reader.wait_for_height(trade.top, timeout=30)
    expected = all_event_ids(reader, reader.status().height)
    transport = CuttingTransport(cut_after=5_000 + secrets.randbelow(2_000))
    with Client(node.url, transport=transport, timeout=15) as client:
        with client.stream(from_height=1, idle_timeout=30, reconnect_delay=0.1) as stream:
            got = _read(stream, len(expected))
            assert stream.connections == 2
    assert [(e.position, e.id) for e in got] == expected
    first, second = transport.stream_requests[:2]
    assert first is None
    assert second is not None and second in [p for p, _ in expected]
    assert expected.index(next(x for x in expected if x[0] == second)) < len(expected) - 1


def test_stream_delivers_new_commits_as_they_happen(devnet: Devnet) -> None:
    client = devnet.client_of(FORWARDER)
    with client.stream(idle_timeout=30) as stream:
        event = devnet.signer(IMPORTER).sign("trade.order_placed", dict(trade_steps("LIVE")[0][2]))
        result = devnet.client_of(IMPORTER).submit_one(event, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
        assert isinstance(result, Committed)
        record = next(stream)
    assert record.id == event.id and (record.height, record.index) == (result.height, result.index)


def test_every_answer_keeps_the_nodes_json_in_raw(devnet: Devnet, trade: TradeRun) -> None:
    """Each answer model (and each of its parts) carries the object the node sent, every field
    of it, also those the model does not parse."""
    client = devnet.client_of(EXPORTER)
    client.wait_for_height(trade.top, timeout=30)
    with httpx.Client(base_url=devnet.node_of(EXPORTER).url, timeout=15.0) as http:
        participants = client.participants()
        assert participants.raw == http.get("/v1/participants").json()
        assert [p.raw for p in participants.participants] == participants.raw["participants"]
        block = client.block(trade.steps[0].result.height)
        assert block.raw == http.get(f"/v1/blocks/{block.header.height}").json()
        assert block.header.raw == block.raw["header"]
        assert [s.raw for s in block.signatures] == block.raw["certificate"]["signatures"]
        event = client.event(trade.steps[0].event.id)
        assert event.raw == http.get(f"/v1/events/{event.id}").json()
        assert event.envelope.raw == event.raw["envelope"]
    status = client.status()
    assert status.raw["height"] == status.height and status.raw["tip_hash"] == status.tip_hash
    page = client.blocks(1, limit=2)
    assert [b["height"] for b in page.raw["blocks"]] == [1, 2] and page.raw["next_from"] == 3
    assert [b.raw for b in page.blocks] == page.raw["blocks"]
    trace = client.trace(f"order:{trade.order_id}", limit=4)
    assert trace.raw["reference"] == f"order:{trade.order_id}" and trace.raw["total"] == len(trade.steps)
    assert [e.raw for e in trace.events] == trace.raw["events"]
    status_of_trade = client.trade(trade.order_id)
    assert status_of_trade.raw["state"] == "CLOSED"
    assert [leg.raw for leg in status_of_trade.legs] == status_of_trade.raw["legs"]
    again = client.submit([s.event for s in trade.steps[:2]])  # committed already: a 409
    assert [r.raw for r in again.results] == again.raw["results"]
    assert again.raw["results"][0]["status"] == "committed"
    assert again.raw["results"][0]["height"] == trade.steps[0].result.height


def test_whole_request_errors_are_typed_problems(devnet: Devnet) -> None:
    client = devnet.client_of(EXPORTER)
    cases: List[Tuple[Callable[[], object], int, str]] = [
        (lambda: client.event("zz"), 400, "BAD_PATH"),
        (lambda: client.event("00" * 32), 404, "EVENT_NOT_FOUND"),
        (lambda: client.event_proof("00" * 32), 404, "EVENT_NOT_FOUND"),
        (lambda: client.trade("PO-NOPE"), 404, "NOT_ON_LEDGER"),
        (lambda: client.trade_proof("PO-NOPE"), 404, "NOT_ON_LEDGER"),
        (lambda: client.trace("order:PO-NOPE"), 404, "NOT_ON_LEDGER"),
        (lambda: client.trace("nothing:X"), 400, "BAD_PATH"),
        (lambda: client.blocks(1, limit=0), 400, "BAD_QUERY"),
        (lambda: client.block(10**9), 404, "BLOCK_NOT_FOUND"),
        (lambda: client.submit('{"body": '), 400, "MALFORMED_JSON"),
        (lambda: next(client.stream(last_event_id="nonsense")), 400, "BAD_QUERY"),
    ]
    for call, status, code in cases:
        with pytest.raises(ProblemError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (status, code), caught.value
        assert caught.value.detail and caught.value.type.endswith(code)


def test_a_node_with_tokens_answers_only_a_token_with_the_scope(devnet: Devnet) -> None:
    """The importer's node lists two tokens (read+submit, read only): the client without a
    token gets 401, the read-only token reads and gets 403 for a submission, and the full token
    (what every other test through this node uses) submits."""
    node = devnet.node_of(IMPORTER)
    tokens = devnet.tokens[node.name]
    importer = devnet.signer(IMPORTER)
    order = importer.sign("trade.order_placed", dict(trade_steps("TOKEN")[0][2]))
    with Client(node.url, timeout=15.0) as anonymous:
        calls: List[Tuple[Callable[[], object], str]] = [
            (anonymous.status, "read"),
            (anonymous.participants, "read"),
            (lambda: anonymous.submit_one(order), "submit"),
        ]
        for call, scope in calls:
            with pytest.raises(ProblemError) as caught:
                call()
            assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED"), caught.value
            # Said in the client's terms, not the CLI's: the constructor's token=, the scope.
            detail = caught.value.detail
            assert "--token" not in str(caught.value), caught.value
            assert f'Client("{node.url}", token="TOKEN")' in detail and f"`{scope}` scope" in detail
    # The command the advice names is the CLI's own: it makes a token with that scope.
    command = re.search(r"`(tradeloop token new [^`]*)`", detail)
    assert command is not None, detail
    args = command.group(1).replace("NAME", "advice-check").split()[1:]
    made = subprocess.run([str(tradeloop_binary()), *args, "--json"], check=True, timeout=60,
                          capture_output=True)
    assert json.loads(made.stdout)["scopes"] == ["read", "submit"]
    with Client(node.url, timeout=15.0, token="not-a-token-of-this-node") as wrong:
        with pytest.raises(ProblemError) as caught:
            wrong.status()
        assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")
    with Client(node.url, timeout=15.0, token=tokens["read"]) as reader:
        assert reader.status().genesis_hash == devnet.genesis.hash_hex
        with pytest.raises(ProblemError) as caught:
            reader.submit_one(order)
        assert (caught.value.status, caught.value.code) == (403, "FORBIDDEN"), caught.value
        assert "submit" in caught.value.detail
    committed = devnet.client(node).submit_one(order, wait=True, wait_timeout_ms=COMMIT_WAIT_MS)
    assert isinstance(committed, Committed), committed
    # The other nodes ask for no token (and hold the event once their chain has the block).
    other = devnet.node_of(EXPORTER)
    deadline = time.monotonic() + 20.0
    with Client(other.url, timeout=15.0) as anonymous:
        while True:
            try:
                assert anonymous.event(order.id).id == order.id
                break
            except ProblemError as e:
                if e.code != "EVENT_NOT_FOUND" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
