"""A server-sent events parser (the WHATWG HTML "event stream" interpretation), incremental and
bounded.

Feed it the bytes of a ``text/event-stream`` body as they arrive; it returns each message once
its blank line has arrived. Lines may end in CRLF, LF or CR (also split across chunks); comment
lines (``:heartbeat``) are ignored; ``data`` lines are joined with LF; ``id`` sets the last event
id (kept across messages, as the spec says; an id holding NUL is ignored); ``retry`` sets the
reconnection delay; a message without data is not dispatched. A line or message larger than
``max_message_bytes`` raises :class:`~tradeloop_client.errors.ResponseTooLarge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .errors import ResponseTooLarge

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest SSE message (or line) accepted; an event of the node is at most ~300 KiB."""


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched message: its ``event`` type (``message`` when unnamed), ``data``, and the
    last event id in force when it was dispatched (``None`` if none was ever set)."""

    event: str
    data: str
    id: Optional[str]
    retry_ms: Optional[int] = None


class SSEParser:
    """Incremental parser; see the module's documentation."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._skip_lf = False
        self._first_line = True
        self._event = ""
        self._data: List[str] = []
        self._data_bytes = 0
        self.last_event_id: Optional[str] = None
        """The last event id set by an ``id`` field (survives across messages)."""
        self.retry_ms: Optional[int] = None
        """The last reconnection delay set by a ``retry`` field."""

    def feed(self, chunk: bytes) -> List[ServerSentEvent]:
        """Parses ``chunk``; returns the messages it completed, in order."""
        out: List[ServerSentEvent] = []
        if not chunk:
            return out
        start = 0
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                start = 1
        n = len(chunk)
        while start < n:
            cr = chunk.find(b"\r", start)
            lf = chunk.find(b"\n", start)
            if cr == -1 and lf == -1:
                self._buffer += chunk[start:]
                if len(self._buffer) > self.max_message_bytes:
                    raise ResponseTooLarge(self.max_message_bytes, "a server-sent events line")
                break
            end = min(p for p in (cr, lf) if p != -1)
            self._buffer += chunk[start:end]
            line = bytes(self._buffer)
            self._buffer.clear()
            if chunk[end : end + 1] == b"\r":
                if end + 1 < n:
                    start = end + 2 if chunk[end + 1 : end + 2] == b"\n" else end + 1
                else:
                    self._skip_lf = True
                    start = n
            else:
                start = end + 1
            message = self._line(line)
            if message is not None:
                out.append(message)
        return out

    def _line(self, raw: bytes) -> Optional[ServerSentEvent]:
        if len(raw) > self.max_message_bytes:
            raise ResponseTooLarge(self.max_message_bytes, "a server-sent events line")
        if self._first_line:
            self._first_line = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        line = raw.decode("utf-8", errors="replace")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data_bytes += len(raw) + 1
            if self._data_bytes > self.max_message_bytes:
                raise ResponseTooLarge(self.max_message_bytes, "a server-sent events message")
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Optional[ServerSentEvent]:
        data, event = self._data, self._event
        self._data, self._event, self._data_bytes = [], "", 0
        if not data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id, self.retry_ms)
