"""The exceptions of the package. Every one derives from :class:`TradeloopError`."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence


class TradeloopError(Exception):
    """Base class of every error this package raises."""


class KeyFileError(TradeloopError):
    """A key file could not be read, or its keys do not belong together."""


class SigningError(TradeloopError):
    """An event body cannot be signed (a float, an integer beyond 2^53, a wrong key, ...)."""


class TransportError(TradeloopError):
    """The node could not be reached, or the connection broke before a whole answer arrived."""


class RequestTimeout(TransportError):
    """The request, or the read of its answer, took longer than its timeout."""


class ResponseTooLarge(TradeloopError):
    """The answer was larger than the client accepts (``max_response_bytes``, or an SSE
    message larger than ``max_event_bytes``)."""

    def __init__(self, limit: int, what: str = "the response") -> None:
        super().__init__(f"{what} is larger than {limit} bytes; refused")
        self.limit = limit


class UnexpectedResponse(TradeloopError):
    """The node answered something that is neither the documented JSON nor a problem
    document (e.g. an HTML error page of a proxy, or a 200 that is not JSON)."""

    def __init__(self, status: int, message: str, body: bytes = b"") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body[:4096]


class ProblemError(TradeloopError):
    """An RFC 9457 problem answer (``application/problem+json``) of the node.

    Attributes:
        status: the HTTP status (400, 404, 413, 429, 503, ...).
        code: the stable code of docs/api.md (``BAD_QUERY``, ``EVENT_NOT_FOUND``,
            ``MEMPOOL_FULL``, ...).
        detail: what was wrong and what to do, for a person. For a 401 ``UNAUTHORIZED`` it is
            the client's own advice (pass ``token=`` to :class:`~tradeloop_client.Client`, the
            scope needed, ``tradeloop token new``): the node's words, written for its CLI's
            ``--token``, stay in ``problem["detail"]``.
        title: the problem's constant summary.
        type: the problem type URI (``urn:tradeloop:problem:CODE``).
        retry_after_ms: when the node asked to retry later (``retry_after_ms`` in the body, else
            the ``Retry-After`` header), in milliseconds; else ``None``.
        problem: the whole problem document.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        type: str = "",
        retry_after_ms: Optional[int] = None,
        problem: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.type = type
        self.retry_after_ms = retry_after_ms
        self.problem: Mapping[str, Any] = problem if problem is not None else {}


class StreamTooSlow(TradeloopError):
    """The node ended an event stream because this client read too slowly (SSE event
    ``too_slow``, code ``STREAM_TOO_SLOW``).

    Reconnect with ``last_event_id`` (the id of the last event this client received; the node
    resumes right after it) and read faster. ``next_event`` is the first event not received.
    """

    def __init__(
        self, code: str, detail: str, next_event: str, last_event_id: Optional[str]
    ) -> None:
        super().__init__(f"{code}: {detail} (next event {next_event})")
        self.code = code
        self.detail = detail
        self.next_event = next_event
        self.last_event_id = last_event_id


class StreamEnded(TransportError):
    """An event stream broke and could not be resumed within its reconnect attempts."""


class VerificationError(TradeloopError):
    """Evidence did not verify; ``failures`` says each reason with its docs/formats.md code."""

    def __init__(self, failures: Sequence["Failure"]) -> None:
        text = "; ".join(f"{f.code}: {f.what}" for f in failures) or "no failure recorded"
        super().__init__(f"the evidence does not verify: {text}")
        self.failures = list(failures)


class Failure(TradeloopError):
    """One failed check of an evidence bundle, with the code of docs/formats.md
    (``BUNDLE_MALFORMED``, ``FOREIGN_GENESIS``, ``VALIDATOR_SET``, ``HEADER_HASH``,
    ``CERTIFICATE``, ``BLOCK_MISSING``, ``EVENT_ID``, ``EVENT_KEY``, ``EVENT_MALFORMED``,
    ``EVENT_SIGNATURE``, ``INCLUSION_PROOF``) or ``EVENT_NOT_IN_BUNDLE`` (the bundle lacks an
    event it was expected to prove)."""

    def __init__(self, code: str, what: str) -> None:
        super().__init__(f"{code}: {what}")
        self.code = code
        self.what = what

    def __repr__(self) -> str:
        return f"Failure({self.code!r}, {self.what!r})"
