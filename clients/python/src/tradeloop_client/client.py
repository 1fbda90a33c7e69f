"""The HTTP client of a tradeloop node (docs/api.md).

Every request has a timeout, and every answer is read with a size bound
(``max_response_bytes``) and a deadline; problem answers (``application/problem+json``) become
:class:`~tradeloop_client.errors.ProblemError`.
"""

from __future__ import annotations

import collections
import email.utils
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)
from urllib.parse import quote

import httpx

from . import _json
from .errors import (
    ProblemError,
    RequestTimeout,
    ResponseTooLarge,
    StreamEnded,
    StreamTooSlow,
    TradeloopError,
    TransportError,
    UnexpectedResponse,
)
from .models import (
    Block,
    BlockHeader,
    BlocksPage,
    Envelope,
    EventRecord,
    EventResult,
    Full,
    NodeStatus,
    Participants,
    SubmitResponse,
    Trace,
    Trade,
)
from .signing import SignedEvent
from .sse import DEFAULT_MAX_MESSAGE_BYTES, SSEParser
from .verify import Genesis, Report, verify_bundle

__all__ = ["Client", "EventStream", "Submittable"]

DEFAULT_TIMEOUT = 10.0
"""Seconds for one request and the read of its answer (a commit wait adds its own length)."""
DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection."""
DEFAULT_MAX_RESPONSE_BYTES = 80 * 1024 * 1024
"""Largest answer read (an evidence bundle is at most 64 MiB)."""
DEFAULT_MAX_ATTEMPTS = 5
"""Requests per batch while the node answers 429 (or 503 NODE_BUSY/OVERLOADED), or ``full``."""
DEFAULT_MAX_RETRY_WAIT = 30.0
"""Longest single wait honoured from a Retry-After, in seconds."""
DEFAULT_RETRY_WAIT = 1.0
"""Wait before a retry when the node names none, in seconds."""
MAX_EVENTS_PER_REQUEST = 1000
"""The node's default ``max_events_per_request``; larger submissions are split."""
DEFAULT_STREAM_IDLE_TIMEOUT = 60.0
"""Seconds a stream may stay silent (the node sends a heartbeat every 15 s by default)."""
TOKEN_ENV = "TRADELOOP_TOKEN"
"""Environment variable read for the bearer token when none is given."""
TOKEN_DOC = 'docs/operations.md, "API access: bearer tokens"'
"""Where an operator reads how to issue tokens (named in the advice of a 401)."""

Submittable = Union[SignedEvent, Envelope, Mapping[str, Any], str, bytes]
"""An event to submit: a :class:`SignedEvent`, an :class:`Envelope` (e.g. of a read event), an
envelope as a dict ``{"body": {...}, "signature": "..."}``, or an envelope's JSON text."""

_RETRYABLE_503 = frozenset({"NODE_BUSY", "OVERLOADED", "NOT_SYNCED"})


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: httpx.Headers
    body: bytes


def _parse_retry_after(value: Optional[str]) -> Optional[int]:
    """A Retry-After header (seconds or an HTTP date) in milliseconds."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0, int((when - datetime.now(timezone.utc)).total_seconds() * 1000))


def _envelope_text(event: Submittable) -> str:
    if isinstance(event, SignedEvent):
        return event.envelope_json()
    if isinstance(event, Envelope):
        return json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))
    if isinstance(event, bytes):
        event = event.decode("utf-8")
    if isinstance(event, str):
        text = event.strip()
        if not text:
            raise ValueError("an empty string is not an envelope")
        return text
    if isinstance(event, Mapping):
        return json.dumps(dict(event), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    raise TypeError(f"cannot submit a {type(event).__name__}: give a SignedEvent or an envelope")


def _token_scopes(scope: str) -> str:
    """The ``--scopes`` of ``tradeloop token new`` to suggest for a request needing ``scope``:
    a client that submits also reads (status, events, proofs), so its token needs both."""
    return "read,submit" if scope == "submit" else scope


def _segment(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("a path segment must be a non-empty string")
    return quote(value, safe=":")



def _results_document(reply: "_Reply") -> Optional[Dict[str, Any]]:
    """The per-event answer of ``POST /v1/events``: a 200's body, or the body of a 409, 422 or
    429 problem that carries ``results`` (a request that admitted no event); else ``None``."""
    if reply.status != 200 and reply.status not in (409, 422, 429):
        return None
    try:
        doc = _json.loads(reply.body)
    except (ValueError, UnicodeDecodeError) as e:
        if reply.status == 200:
            raise UnexpectedResponse(reply.status, f"the answer is not JSON: {e}", reply.body) from e
        return None
    if not isinstance(doc, dict):
        if reply.status == 200:
            raise UnexpectedResponse(200, "the submit answer is not an object", reply.body)
        return None
    if reply.status != 200 and not isinstance(doc.get("results"), list):
        return None
    return doc

class Client:
    """A client of one node's HTTP API.

    >>> with Client("http://127.0.0.1:7071") as node:          # doctest: +SKIP
    ...     print(node.status().height)

    Args:
        base_url: the node's ``[api] listen`` address as a URL, e.g. ``http://127.0.0.1:7071``.
        token: a bearer token (sent as ``Authorization: Bearer TOKEN``); when ``None``, the
            environment variable ``TRADELOOP_TOKEN`` is used if set. A node without configured
            tokens ignores it.
        timeout: seconds for one request including the read of its answer (a commit wait adds
            its ``timeout_ms``).
        connect_timeout: seconds to open a connection.
        max_response_bytes: largest answer read; a larger one raises
            :class:`~tradeloop_client.errors.ResponseTooLarge`.
        max_attempts: requests per batch while the node says it is full or busy.
        max_retry_wait: longest wait honoured from the node's ``Retry-After``, seconds.
        transport: an ``httpx`` transport (for tests, or a custom connection pool).
        trust_env: whether ``httpx`` reads proxy settings from the environment (off by default:
            the API is plain HTTP on a private network or loopback).
        sleep: the function used to wait before a retry (for tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        transport: Optional[httpx.BaseTransport] = None,
        trust_env: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be 1 or more")
        self._token_source: Optional[str] = "the token= argument" if token is not None else None
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
            if token is not None:
                self._token_source = f"the environment variable {TOKEN_ENV}"
        headers = {"user-agent": "tradeloop-client-python/0.1", "accept": "application/json"}
        if token is not None:
            if not token or any(c.isspace() for c in token) or not token.isprintable():
                raise ValueError("a bearer token is printable text without whitespace")
            headers["authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_response_bytes = max_response_bytes
        self.max_attempts = max_attempts
        self.max_retry_wait = float(max_retry_wait)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            transport=transport,
            trust_env=trust_env,
            follow_redirects=False,
        )

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def _timeout(self, seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(self.connect_timeout, seconds))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Union[str, int]]] = None,
        content: Optional[bytes] = None,
        timeout: Optional[float] = None,
    ) -> _Reply:
        """One request; the answer read whole within ``max_response_bytes`` and the timeout."""
        seconds = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        headers = {"content-type": "application/json"} if content is not None else None
        what = f"{method} {self.base_url}{path}"
        try:
            with self._http.stream(
                method,
                path,
                params=dict(params) if params else None,
                content=content,
                headers=headers,
                timeout=self._timeout(seconds),
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise ResponseTooLarge(self.max_response_bytes, f"the answer to {what}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise ResponseTooLarge(self.max_response_bytes, f"the answer to {what}")
                    if time.monotonic() > deadline:
                        raise RequestTimeout(f"{what}: the answer took longer than {seconds} s")
                return _Reply(response.status_code, response.headers, bytes(body))
        except httpx.TimeoutException as e:
            raise RequestTimeout(f"{what}: no answer within {seconds} s ({e!r})") from e
        except httpx.HTTPError as e:
            raise TransportError(
                f"{what}: the node is not reachable or broke the connection ({e!r}); check "
                "that `tradeloop node` runs and that the URL is its [api] listen address"
            ) from e

    def _unauthorized_advice(self, scope: str) -> str:
        """What to do about a 401 ``UNAUTHORIZED``, in this client's terms.

        The node's own ``detail`` is written for the CLI (``--token``); a Python caller passes
        the token to the constructor instead, and needs to know which scope to ask for and who
        issues tokens.
        """
        issue = (
            f"the node's operator issues tokens with `tradeloop token new --name NAME --scopes "
            f"{_token_scopes(scope)}` and lists their SHA-256 in the node's [[api.tokens]] "
            f"({TOKEN_DOC})"
        )
        if self._token_source is None:
            return (
                f"this node requires a bearer token with the `{scope}` scope and this client sent "
                f'none: pass it as Client("{self.base_url}", token="TOKEN"), or set the '
                f"environment variable {TOKEN_ENV}; {issue}"
            )
        return (
            f"this node refused the bearer token this client sent (from {self._token_source}): "
            f"it is not one of the node's tokens, or was revoked; ask the node's operator for a "
            f'token with the `{scope}` scope and pass it as Client("{self.base_url}", '
            f'token="TOKEN"); {issue}'
        )

    def _error(self, reply: _Reply, scope: str = "read") -> TradeloopError:
        """The exception for a non-200 answer to a request that needs the token ``scope``."""
        try:
            doc = _json.loads(reply.body)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("code"), str):
            body_retry = doc.get("retry_after_ms")
            retry_ms = (
                body_retry
                if isinstance(body_retry, int) and not isinstance(body_retry, bool)
                else _parse_retry_after(reply.headers.get("retry-after"))
            )
            status = doc.get("status")
            detail = str(doc.get("detail", ""))
            if reply.status == 401 and doc["code"] == "UNAUTHORIZED":
                # The node's words (kept in `problem`) tell a CLI user about --token.
                detail = self._unauthorized_advice(scope)
            return ProblemError(
                status if isinstance(status, int) else reply.status,
                doc["code"],
                detail,
                title=str(doc.get("title", "")),
                type=str(doc.get("type", "")),
                retry_after_ms=retry_ms,
                problem=doc,
            )
        snippet = reply.body[:200].decode("utf-8", errors="replace")
        return UnexpectedResponse(reply.status, f"not a problem document: {snippet!r}", reply.body)

    def _json(self, reply: _Reply) -> Any:
        if reply.status != 200:
            raise self._error(reply)
        try:
            return _json.loads(reply.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise UnexpectedResponse(reply.status, f"the answer is not JSON: {e}", reply.body) from e

    def _get(self, path: str, params: Optional[Mapping[str, Union[str, int]]] = None) -> Any:
        return self._json(self._send("GET", path, params=params))

    @staticmethod
    def _model(parse: Callable[[Any], Any], value: Any, what: str) -> Any:
        try:
            return parse(value)
        except (ValueError, TypeError, KeyError) as e:
            raise UnexpectedResponse(200, f"{what} is not as docs/api.md describes: {e}") from e

    # -- submitting ----------------------------------------------------------------------------

    def submit(
        self,
        events: Union[Submittable, Sequence[Submittable]],
        *,
        wait: bool = False,
        wait_timeout_ms: Optional[int] = None,
        retry_full: bool = True,
        batch_size: int = MAX_EVENTS_PER_REQUEST,
    ) -> SubmitResponse:
        """Submits one event or a list of them (``POST /v1/events``); one result per event, in
        order: :class:`~tradeloop_client.models.Accepted`,
        :class:`~tradeloop_client.models.Committed` (height, block hash, index),
        :class:`~tradeloop_client.models.Rejected` (code, message),
        :class:`~tradeloop_client.models.Full` (retry_after_ms) or, with ``wait``,
        :class:`~tradeloop_client.models.Pending`.

        With ``wait`` the node answers when every accepted event is committed or after
        ``wait_timeout_ms`` (the node's default wait when ``None``; capped by its
        ``max_wait_ms``).

        A 429 (``MEMPOOL_FULL``) or 503 ``NODE_BUSY``/``OVERLOADED`` answer is retried after the
        node's ``retry_after_ms``/``Retry-After`` (at most ``max_retry_wait``), and with
        ``retry_full`` so are the events answered ``full``, at most ``max_attempts`` requests per
        batch; then the last problem is raised (or, for ``full`` events, their result returned).
        A list longer than ``batch_size`` goes in several requests. A broken connection is not
        retried: resubmitting the same signed events is safe (the ledger answers ``committed`` or
        ``DUPLICATE_EVENT``), so the caller may do it.
        """
        if isinstance(events, (SignedEvent, Envelope, Mapping, str, bytes)):
            items: List[Submittable] = [events]
        else:
            items = list(events)
        if not items:
            raise ValueError("nothing to submit")
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"batch_size must be 1 to {MAX_EVENTS_PER_REQUEST}")
        if wait_timeout_ms is not None and wait_timeout_ms < 1:
            raise ValueError("wait_timeout_ms must be 1 or more")
        texts = [_envelope_text(e) for e in items]
        answers = [
            self._submit_batch(texts[start : start + batch_size], wait, wait_timeout_ms, retry_full)
            for start in range(0, len(texts), batch_size)
        ]
        if len(answers) == 1:
            return answers[0]  # its `raw` is the node's answer, or put together by the batch
        results: List[EventResult] = []
        timed_out: Optional[bool] = None
        for answer in answers:
            results.extend(answer.results)
            if answer.timed_out is not None:
                timed_out = bool(timed_out) or answer.timed_out
        return SubmitResponse.combine(results, timed_out, sum(a.attempts for a in answers))

    def submit_one(
        self, event: Submittable, *, wait: bool = False, wait_timeout_ms: Optional[int] = None
    ) -> EventResult:
        """:meth:`submit` of one event; its result."""
        return self.submit(event, wait=wait, wait_timeout_ms=wait_timeout_ms).results[0]

    def _submit_batch(
        self, texts: List[str], wait: bool, wait_timeout_ms: Optional[int], retry_full: bool
    ) -> SubmitResponse:
        params: Dict[str, Union[str, int]] = {}
        seconds = self.timeout
        if wait:
            params["wait"] = "commit"
            if wait_timeout_ms is not None:
                params["timeout_ms"] = wait_timeout_ms
            # The node's default wait is 10 s and its longest 30 s (docs/api.md, Limits).
            seconds += (wait_timeout_ms if wait_timeout_ms is not None else 10_000) / 1000
        slots: List[Optional[EventResult]] = [None] * len(texts)
        todo = list(range(len(texts)))
        timed_out: Optional[bool] = None
        attempts = 0
        while True:
            attempts += 1
            content = ("[" + ",".join(texts[i] for i in todo) + "]").encode("utf-8")
            reply = self._send("POST", "/v1/events", params=params, content=content, timeout=seconds)
            doc = _results_document(reply)
            if doc is not None:
                # 200, or a request that admitted nothing (409 every event committed already,
                # 422 refused, 429 no room): each carries one result per event.
                answer: SubmitResponse = self._model(SubmitResponse.from_json, doc, "the submit answer")
                if len(answer.results) != len(todo):
                    raise UnexpectedResponse(
                        200,
                        f"{len(answer.results)} results for {len(todo)} events",
                        reply.body,
                    )
                if answer.timed_out is not None:
                    timed_out = bool(timed_out) or answer.timed_out
                full: List[int] = []
                wait_ms = 0
                for i, result in zip(todo, answer.results):
                    slots[i] = result
                    if isinstance(result, Full):
                        full.append(i)
                        wait_ms = max(wait_ms, result.retry_after_ms)
                if not full or not retry_full or attempts >= self.max_attempts:
                    break
                self._sleep(min(wait_ms / 1000, self.max_retry_wait))
                todo = full
                continue
            error = self._error(reply, "submit")
            retryable = isinstance(error, ProblemError) and (
                error.status == 429 or (error.status == 503 and error.code in _RETRYABLE_503)
            )
            if not retryable or attempts >= self.max_attempts:
                if all(s is None for s in slots):
                    raise error
                break  # the events still to send keep their earlier `full` results
            assert isinstance(error, ProblemError)
            retry_ms = error.retry_after_ms if error.retry_after_ms is not None else DEFAULT_RETRY_WAIT * 1000
            self._sleep(min(retry_ms / 1000, self.max_retry_wait))
        done: List[EventResult] = [s for s in slots if s is not None]
        if len(done) != len(slots):  # pragma: no cover - every slot is filled by a 200 above
            raise UnexpectedResponse(200, "some events got no result")
        if attempts == 1:
            return answer  # one request answered every event: `raw` is the node's own answer
        return SubmitResponse.combine(done, timed_out, attempts)

    # -- reads ---------------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        """``GET /v1/status``: chain, height, tip, peers, mempool, syncing."""
        result: NodeStatus = self._model(NodeStatus.from_json, self._get("/v1/status"), "the status")
        return result

    def wait_for_height(self, height: int, *, timeout: float = 60.0, poll: float = 0.2) -> NodeStatus:
        """Polls the status until the node's height is at least ``height``; raises
        :class:`~tradeloop_client.errors.RequestTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.height >= height:
                return status
            if time.monotonic() > deadline:
                raise RequestTimeout(
                    f"{self.base_url} is at height {status.height}, not {height}, after {timeout} s"
                )
            self._sleep(poll)

    def event(self, event_id: str) -> EventRecord:
        """``GET /v1/events/{id}``: a committed event, its envelope, height, index, block."""
        value = self._get(f"/v1/events/{_segment(event_id)}")
        result: EventRecord = self._model(EventRecord.from_json, value, "the event")
        return result

    def event_proof(self, event_id: str) -> Dict[str, Any]:
        """``GET /v1/events/{id}/proof``: the event's evidence bundle (docs/formats.md), as JSON."""
        value = self._get(f"/v1/events/{_segment(event_id)}/proof")
        if not isinstance(value, dict):
            raise UnexpectedResponse(200, "the evidence bundle is not a JSON object")
        return value

    def verify_event_proof(self, event_id: str, genesis: Genesis) -> Report:
        """Fetches the event's evidence bundle and verifies it offline against ``genesis`` (the
        genesis file you trust, not one the node serves); raises
        :class:`~tradeloop_client.errors.VerificationError` unless it holds and proves this
        event."""
        bundle = self.event_proof(event_id)
        return verify_bundle(genesis, bundle, expect_events=[event_id]).raise_for_failures()

    def blocks(self, from_height: int = 1, limit: Optional[int] = None) -> BlocksPage:
        """``GET /v1/blocks?from=H&limit=N``: one page of headers (``next_from`` while more)."""
        params: Dict[str, Union[str, int]] = {"from": from_height}
        if limit is not None:
            params["limit"] = limit
        result: BlocksPage = self._model(BlocksPage.from_json, self._get("/v1/blocks", params), "the blocks")
        return result

    def iter_blocks(
        self, from_height: int = 1, to_height: Optional[int] = None, page: Optional[int] = None
    ) -> Iterator[BlockHeader]:
        """Every header from ``from_height`` to ``to_height`` (default: the tip when the first
        page was read), page by page."""
        next_from: Optional[int] = from_height
        while next_from is not None:
            current = self.blocks(next_from, page)
            if to_height is None:
                to_height = current.height
            for header in current.blocks:
                if header.height > to_height:
                    return
                yield header
            if not current.blocks or current.blocks[-1].height >= to_height:
                return
            next_from = current.next_from

    def block(self, height: int) -> Block:
        """``GET /v1/blocks/{height}``: header, commit certificate and event ids."""
        result: Block = self._model(Block.from_json, self._get(f"/v1/blocks/{int(height)}"), "the block")
        return result

    def trace(self, reference: str, *, offset: int = 0, limit: Optional[int] = None) -> Trace:
        """``GET /v1/trace/{reference}``: one page of the events of ``order:ID``,
        ``shipment:ID``, ``declaration:ID``, ``lc:ID`` or ``invoice:ID``, in ledger order."""
        params: Dict[str, Union[str, int]] = {}
        if offset:
            params["offset"] = offset
        if limit is not None:
            params["limit"] = limit
        value = self._get(f"/v1/trace/{_segment(reference)}", params)
        result: Trace = self._model(Trace.from_json, value, "the trace")
        return result

    def iter_trace(self, reference: str, *, page: Optional[int] = None) -> Iterator[EventRecord]:
        """Every event of a trace, page by page (each page read at its own tip)."""
        offset: Optional[int] = 0
        while offset is not None:
            current = self.trace(reference, offset=offset, limit=page)
            yield from current.events
            if current.next_offset is not None and current.next_offset <= offset:
                raise UnexpectedResponse(200, "the trace's next_offset does not advance")
            offset = current.next_offset

    def trade(self, order_id: str) -> Trade:
        """``GET /v1/trades/{order_id}``: ``state`` ``CLOSED``/``OPEN``, each leg, the open ones."""
        value = self._get(f"/v1/trades/{_segment(order_id)}")
        result: Trade = self._model(Trade.from_json, value, "the trade")
        return result

    def trade_proof(self, order_id: str) -> Dict[str, Any]:
        """``GET /v1/trades/{order_id}/proof``: the evidence bundle of every event of a trade."""
        value = self._get(f"/v1/trades/{_segment(order_id)}/proof")
        if not isinstance(value, dict):
            raise UnexpectedResponse(200, "the evidence bundle is not a JSON object")
        return value

    def verify_trade_proof(self, order_id: str, genesis: Genesis) -> Report:
        """Fetches a trade's evidence bundle and verifies it offline against ``genesis``; raises
        :class:`~tradeloop_client.errors.VerificationError` unless it holds."""
        return verify_bundle(genesis, self.trade_proof(order_id)).raise_for_failures()

    def participants(self) -> Participants:
        """``GET /v1/participants``: the genesis participants."""
        value = self._get("/v1/participants")
        result: Participants = self._model(Participants.from_json, value, "the participants")
        return result

    # -- the stream ----------------------------------------------------------------------------

    def stream(
        self,
        *,
        from_height: Optional[int] = None,
        last_event_id: Optional[str] = None,
        reconnect: bool = True,
        max_reconnects: int = 5,
        reconnect_delay: float = 0.5,
        idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT,
        max_event_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> "EventStream":
        """Follows ``GET /v1/stream``: every committed event in chain order (see
        :class:`EventStream`).

        Starts right after ``last_event_id`` (``HEIGHT:INDEX``) if given, else at the first
        event of ``from_height``, else with the first block after the node's height at this
        call (read with ``GET /v1/status`` here). The connection opens at the first read.
        """
        return EventStream(
            self,
            from_height=from_height,
            last_event_id=last_event_id,
            reconnect=reconnect,
            max_reconnects=max_reconnects,
            reconnect_delay=reconnect_delay,
            idle_timeout=idle_timeout,
            max_event_bytes=max_event_bytes,
        )


class EventStream(Iterator[EventRecord]):
    """An iterator over the node's committed events (``GET /v1/stream``), in chain order.

    Heartbeats are ignored. When the connection breaks (or the node ends it), the stream
    reconnects by itself with ``Last-Event-ID`` set to the last event received, so the caller
    sees every event exactly once, with no gap and no duplicate; after ``max_reconnects``
    consecutive failed attempts it raises :class:`~tradeloop_client.errors.StreamEnded`.
    A node that finds this client too slow ends the stream with ``too_slow``: that is raised as
    :class:`~tradeloop_client.errors.StreamTooSlow` (after the events received before it), and
    ``last_event_id`` says where to resume. If nothing arrives for ``idle_timeout`` seconds
    (not even a heartbeat) the connection counts as broken.

    Use it as a context manager, or call :meth:`close`, to release the connection.
    """

    def __init__(
        self,
        client: Client,
        *,
        from_height: Optional[int],
        last_event_id: Optional[str],
        reconnect: bool,
        max_reconnects: int,
        reconnect_delay: float,
        idle_timeout: float,
        max_event_bytes: int,
    ) -> None:
        self._client = client
        self._from = from_height
        self._received_id: Optional[str] = last_event_id or None
        self.last_event_id: Optional[str] = last_event_id or None
        """The id (``HEIGHT:INDEX``) of the last event this iterator returned: reconnect with it
        to continue right after it."""
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.reconnect_delay = reconnect_delay
        self.idle_timeout = idle_timeout
        self.max_event_bytes = max_event_bytes
        self.connections = 0
        """How many connections this stream opened (1 plus its reconnects)."""
        self._failures = 0
        self._retry_ms: Optional[int] = None
        self._response: Optional[httpx.Response] = None
        self._chunks: Optional[Iterator[bytes]] = None
        self._parser = SSEParser(max_event_bytes)
        self._queue: Deque[Union[EventRecord, StreamTooSlow]] = collections.deque()
        self._closed = False
        if self._from is None and self._received_id is None:
            # "With the next block committed": pinned now, so that neither a commit before the
            # first read nor a reconnect before the first event loses anything.
            self._from = client.status().height + 1

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> "EventStream":
        return self

    def close(self) -> None:
        """Closes the connection; the iterator then ends."""
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            try:
                response.close()
            except httpx.HTTPError:
                pass

    def _connect(self) -> None:
        client = self._client
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        params: Dict[str, Union[str, int]] = {}
        if self._received_id:
            headers["last-event-id"] = self._received_id
        elif self._from is not None:
            params["from"] = self._from
        timeout = httpx.Timeout(
            client.timeout, connect=client.connect_timeout, read=self.idle_timeout
        )
        request = client._http.build_request(
            "GET", "/v1/stream", params=params, headers=headers, timeout=timeout
        )
        what = f"GET {client.base_url}/v1/stream"
        try:
            response = client._http.send(request, stream=True)
        except httpx.TimeoutException as e:
            raise RequestTimeout(f"{what}: no answer within {self.idle_timeout} s ({e!r})") from e
        except httpx.HTTPError as e:
            raise TransportError(f"{what}: the node is not reachable ({e!r})") from e
        if response.status_code != 200:
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > 64 * 1024:
                        break
            except httpx.HTTPError:
                pass
            finally:
                response.close()
            reply = _Reply(response.status_code, response.headers, bytes(body))
            raise client._error(reply, "read")
        self.connections += 1
        self._parser = SSEParser(self.max_event_bytes)
        self._response = response
        self._chunks = response.iter_bytes()

    def _reconnect_or_raise(self, cause: Optional[BaseException]) -> None:
        self._drop()
        if not self.reconnect:
            self._closed = True
            if cause is None:
                return
            raise StreamEnded(f"the event stream broke: {cause!r}") from cause
        self._failures += 1
        if self._failures > self.max_reconnects:
            self._closed = True
            raise StreamEnded(
                f"the event stream broke and {self.max_reconnects} reconnects failed "
                f"(last: {cause!r}); resume with last_event_id={self.last_event_id!r}"
            ) from cause
        delay = self.reconnect_delay * (2 ** (self._failures - 1))
        if self._retry_ms is not None:
            delay = max(delay, self._retry_ms / 1000)
        self._client._sleep(min(delay, self._client.max_retry_wait))

    def __next__(self) -> EventRecord:
        while True:
            if self._queue:
                item = self._queue.popleft()
                if isinstance(item, StreamTooSlow):
                    self.close()
                    raise item
                self.last_event_id = item.position
                return item
            if self._closed:
                raise StopIteration
            if self._chunks is None:
                try:
                    self._connect()
                except ProblemError as e:
                    if e.code != "TOO_MANY_STREAMS" or not self.reconnect:
                        self.close()
                        raise
                    self._retry_ms = e.retry_after_ms
                    self._reconnect_or_raise(e)
                    continue
                except TransportError as e:
                    self._reconnect_or_raise(e)
                    continue
            assert self._chunks is not None
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._reconnect_or_raise(None)  # the node ended the stream (e.g. it stopped)
                continue
            except httpx.HTTPError as e:
                self._reconnect_or_raise(e)
                continue
            self._failures = 0
            for message in self._parser.feed(chunk):
                self._handle(message.event, message.data, message.id, message.retry_ms)

    def _handle(self, event: str, data: str, sse_id: Optional[str], retry_ms: Optional[int]) -> None:
        self._retry_ms = retry_ms
        if event == "event":
            try:
                record = EventRecord.from_json(_json.loads(data))
            except ValueError as e:
                self.close()
                raise UnexpectedResponse(200, f"a stream event is not as docs/api.md says: {e}") from e
            if sse_id and sse_id != record.position:
                self.close()
                raise UnexpectedResponse(
                    200, f"stream id {sse_id} differs from the event's position {record.position}"
                )
            self._received_id = record.position
            self._queue.append(record)
        elif event == "too_slow":
            try:
                word = _json.loads(data)
            except ValueError:
                word = {}
            if not isinstance(word, dict):
                word = {}
            self._queue.append(
                StreamTooSlow(
                    str(word.get("code", "STREAM_TOO_SLOW")),
                    str(word.get("detail", data)),
                    str(word.get("next_event", "")),
                    self._received_id,
                )
            )
        # Other event types are for newer clients: ignored.
