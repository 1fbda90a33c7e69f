"""Typed views of the node's JSON answers (docs/api.md).

Each answer class has ``from_json`` (which raises ``ValueError`` on a shape it does not know),
and every class here, the parts of an answer included (a result, a leg, a participant, a
signature, an envelope), keeps the JSON object it was parsed from in ``raw``, so fields a newer
node adds stay reachable. ``raw`` takes no part in ``==`` or ``repr``; a value made by hand
rather than parsed (``Accepted(id)``) has an empty ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _str(o: Mapping[str, Any], key: str) -> str:
    v = o.get(key)
    if not isinstance(v, str):
        raise ValueError(f"`{key}` is missing or not a string")
    return v


def _int(o: Mapping[str, Any], key: str) -> int:
    v = o.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"`{key}` is missing or not an integer")
    return v


def _opt_int(o: Mapping[str, Any], key: str) -> Optional[int]:
    return None if o.get(key) is None else _int(o, key)


def _bool(o: Mapping[str, Any], key: str) -> bool:
    v = o.get(key)
    if not isinstance(v, bool):
        raise ValueError(f"`{key}` is missing or not a boolean")
    return v


def _list(o: Mapping[str, Any], key: str) -> List[Any]:
    v = o.get(key)
    if not isinstance(v, list):
        raise ValueError(f"`{key}` is missing or not a list")
    return v


# ---------------------------------------------------------------------------------------------
# POST /v1/events


@dataclass(frozen=True)
class Accepted:
    """In the mempool; it will be proposed."""

    id: str
    status: str = "accepted"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Committed:
    """On the chain at ``height``, block ``block_hash``, position ``index``."""

    id: str
    height: int
    block_hash: str
    index: int
    status: str = "committed"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Rejected:
    """Refused with a stable ``code`` (docs/events.md) and a ``message`` for a person. ``id`` is
    ``None`` when the envelope did not parse far enough to have one."""

    id: Optional[str]
    code: str
    message: str
    status: str = "rejected"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Full:
    """The mempool had no room for it: send it again after ``retry_after_ms``."""

    id: str
    retry_after_ms: int
    status: str = "full"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Pending:
    """Only with ``wait=commit``: accepted, not committed when the wait ended."""

    id: str
    status: str = "pending"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


EventResult = Union[Accepted, Committed, Rejected, Full, Pending]
"""What became of one submitted event."""


def event_result_from_json(value: Any) -> EventResult:
    """One element of ``results``."""
    o = _obj(value, "a result")
    status = o.get("status")
    if status == "accepted":
        return Accepted(_str(o, "id"), raw=o)
    if status == "committed":
        return Committed(
            _str(o, "id"), _int(o, "height"), _str(o, "block_hash"), _int(o, "index"), raw=o
        )
    if status == "rejected":
        rid = o.get("id")
        if rid is not None and not isinstance(rid, str):
            raise ValueError("`id` is not a string")
        return Rejected(rid, _str(o, "code"), _str(o, "message"), raw=o)
    if status == "full":
        return Full(_str(o, "id"), _int(o, "retry_after_ms"), raw=o)
    if status == "pending":
        return Pending(_str(o, "id"), raw=o)
    raise ValueError(f"unknown result status {status!r}")


@dataclass(frozen=True)
class SubmitResponse:
    """The answer to a submission: one result per event, in request order.

    ``timed_out`` is ``None`` without a commit wait; with one, ``True`` when the wait ended before
    every accepted event was committed (those are :class:`Pending`). ``attempts`` is how many
    requests the client made (more than one after a 429 or ``full`` events).

    ``raw`` is the node's answer when one request answered every event; when the client made
    several (batches, or ``full`` events sent again), no single answer holds them all, so ``raw``
    is put together in the same shape: ``{"results": [...], "timed_out": ...}``, each result the
    ``raw`` of the request that settled it (see :meth:`combine`).
    """

    results: List[EventResult]
    timed_out: Optional[bool] = None
    attempts: int = 1
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "SubmitResponse":
        o = _obj(value, "the answer")
        timed_out = o.get("timed_out")
        if timed_out is not None and not isinstance(timed_out, bool):
            raise ValueError("`timed_out` is not a boolean")
        return cls([event_result_from_json(r) for r in _list(o, "results")], timed_out, raw=o)

    @classmethod
    def combine(
        cls, results: List[EventResult], timed_out: Optional[bool], attempts: int
    ) -> "SubmitResponse":
        """The answer to a submission that took several requests, ``raw`` made of the results'
        own ``raw`` (``timed_out`` only when a commit wait was asked, as the node answers)."""
        raw: Dict[str, Any] = {"results": [dict(r.raw) for r in results]}
        if timed_out is not None:
            raw["timed_out"] = timed_out
        return cls(results, timed_out, attempts, raw=raw)

    @property
    def all_committed(self) -> bool:
        """Whether every event is committed."""
        return all(isinstance(r, Committed) for r in self.results)


# ---------------------------------------------------------------------------------------------
# Reads


@dataclass(frozen=True)
class NodeStatus:
    """``GET /v1/status``."""

    chain_id: str
    genesis_hash: str
    height: int
    tip_hash: str
    validator: bool
    node_key: str
    connected_peers: List[str]
    mempool_events: int
    mempool_bytes: int
    syncing: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "NodeStatus":
        o = _obj(value, "the status")
        return cls(
            chain_id=_str(o, "chain_id"),
            genesis_hash=_str(o, "genesis_hash"),
            height=_int(o, "height"),
            tip_hash=_str(o, "tip_hash"),
            validator=_bool(o, "validator"),
            node_key=_str(o, "node_key"),
            connected_peers=[str(p) for p in _list(o, "connected_peers")],
            mempool_events=_int(o, "mempool_events"),
            mempool_bytes=_int(o, "mempool_bytes"),
            syncing=_bool(o, "syncing"),
            raw=o,
        )


@dataclass(frozen=True)
class Envelope:
    """An event as signed: its body and signature."""

    body: Dict[str, Any]
    signature: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> Dict[str, Any]:
        """``{"body": ..., "signature": ...}``, ready to submit again."""
        return {"body": self.body, "signature": self.signature}


@dataclass(frozen=True)
class EventRecord:
    """A committed event (``GET /v1/events/{id}``, each event of a trace or of the stream)."""

    id: str
    height: int
    index: int
    block_hash: str
    block_time_ms: int
    kind: str
    author: str
    envelope: Envelope
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "EventRecord":
        o = _obj(value, "an event")
        env = _obj(o.get("envelope"), "`envelope`")
        body = _obj(env.get("body"), "`envelope.body`")
        return cls(
            id=_str(o, "id"),
            height=_int(o, "height"),
            index=_int(o, "index"),
            block_hash=_str(o, "block_hash"),
            block_time_ms=_int(o, "block_time_ms"),
            kind=_str(o, "kind"),
            author=_str(o, "author"),
            envelope=Envelope(dict(body), _str(env, "signature"), raw=env),
            raw=o,
        )

    @property
    def position(self) -> str:
        """``HEIGHT:INDEX``, the event's id in the stream."""
        return f"{self.height}:{self.index}"


@dataclass(frozen=True)
class BlockHeader:
    """A block header as the API shows it (with its ``hash``)."""

    height: int
    hash: str
    prev_hash: str
    time_ms: int
    proposer: str
    events_root: str
    event_count: int
    app_hash: str
    validators_hash: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "BlockHeader":
        o = _obj(value, "a header")
        return cls(
            height=_int(o, "height"),
            hash=_str(o, "hash"),
            prev_hash=_str(o, "prev_hash"),
            time_ms=_int(o, "time_ms"),
            proposer=_str(o, "proposer"),
            events_root=_str(o, "events_root"),
            event_count=_int(o, "event_count"),
            app_hash=_str(o, "app_hash"),
            validators_hash=_str(o, "validators_hash"),
            raw=o,
        )


@dataclass(frozen=True)
class BlocksPage:
    """``GET /v1/blocks``: one page of headers; ``next_from`` while there are more."""

    height: int
    blocks: List[BlockHeader]
    next_from: Optional[int]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "BlocksPage":
        o = _obj(value, "a page of blocks")
        return cls(
            _int(o, "height"),
            [BlockHeader.from_json(b) for b in _list(o, "blocks")],
            _opt_int(o, "next_from"),
            o,
        )


@dataclass(frozen=True)
class CommitSignature:
    """One validator's precommit signature."""

    validator: str
    signature: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Block:
    """``GET /v1/blocks/{height}``: header, commit certificate and event ids."""

    header: BlockHeader
    round: int
    signatures: List[CommitSignature]
    event_ids: List[str]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "Block":
        o = _obj(value, "a block")
        cert = _obj(o.get("certificate"), "`certificate`")
        sigs = []
        for s in _list(cert, "signatures"):
            s = _obj(s, "a signature")
            sigs.append(CommitSignature(_str(s, "validator"), _str(s, "signature"), raw=s))
        return cls(
            BlockHeader.from_json(o.get("header")),
            _int(cert, "round"),
            sigs,
            [str(i) for i in _list(o, "event_ids")],
            o,
        )


@dataclass(frozen=True)
class Trace:
    """``GET /v1/trace/{reference}``: one page of the events of a reference, in ledger order."""

    reference: str
    height: int
    total: int
    events: List[EventRecord]
    next_offset: Optional[int]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "Trace":
        o = _obj(value, "a trace")
        return cls(
            _str(o, "reference"),
            _int(o, "height"),
            _int(o, "total"),
            [EventRecord.from_json(e) for e in _list(o, "events")],
            _opt_int(o, "next_offset"),
            o,
        )


@dataclass(frozen=True)
class Leg:
    """One leg of a trade (``order_placed``, ``export_cleared``, ``paid``, ...)."""

    leg: str
    done: bool
    detail: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Trade:
    """``GET /v1/trades/{order_id}``: whether the trade's loop is closed."""

    order_id: str
    height: int
    buyer: str
    seller: str
    state: str
    closed: bool
    legs: List[Leg]
    open_legs: List[str]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "Trade":
        o = _obj(value, "a trade")
        legs = []
        for leg in _list(o, "legs"):
            leg = _obj(leg, "a leg")
            legs.append(Leg(_str(leg, "leg"), _bool(leg, "done"), _str(leg, "detail"), raw=leg))
        return cls(
            order_id=_str(o, "order_id"),
            height=_int(o, "height"),
            buyer=_str(o, "buyer"),
            seller=_str(o, "seller"),
            state=_str(o, "state"),
            closed=_bool(o, "closed"),
            legs=legs,
            open_legs=[str(x) for x in _list(o, "open_legs")],
            raw=o,
        )


@dataclass(frozen=True)
class Participant:
    """A genesis participant."""

    id: str
    name: str
    role: str
    country: str
    keys: List[str]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Participants:
    """``GET /v1/participants``: the genesis's chain id, hash and participants."""

    chain_id: str
    genesis_hash: str
    participants: List[Participant]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> "Participants":
        o = _obj(value, "the participants")
        out = []
        for p in _list(o, "participants"):
            p = _obj(p, "a participant")
            out.append(
                Participant(
                    _str(p, "id"),
                    _str(p, "name"),
                    _str(p, "role"),
                    _str(p, "country"),
                    [str(k) for k in _list(p, "keys")],
                    raw=p,
                )
            )
        return cls(_str(o, "chain_id"), _str(o, "genesis_hash"), out, o)

    def by_id(self, participant_id: str) -> Optional[Participant]:
        """The participant with this id, if any."""
        return next((p for p in self.participants if p.id == participant_id), None)
