"""Python client of the tradeloop node HTTP API.

* :mod:`~tradeloop_client.signing`: key files, event bodies, RFC 8785 + Ed25519 signatures
  (docs/signing.md).
* :class:`Client`: submit events (optionally waiting for their commit), read events, blocks,
  traces, trades, participants, the status and evidence bundles, follow the event stream.
* :mod:`~tradeloop_client.verify`: verify evidence bundles offline against a genesis file.

>>> from tradeloop_client import Client, Genesis, Signer, load_key      # doctest: +SKIP
>>> genesis = Genesis.from_file("net/genesis.json")                     # doctest: +SKIP
>>> me = Signer("cn-exporter-bright", load_key("net/keys/cn-exporter-bright.json"),
...             genesis.hash_hex)                                       # doctest: +SKIP
>>> with Client("http://127.0.0.1:7071") as node:                      # doctest: +SKIP
...     result = node.submit_one(me.sign("trade.order_accepted", {"order_id": "PO-1"}),
...                              wait=True)
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    Failure,
    KeyFileError,
    ProblemError,
    RequestTimeout,
    ResponseTooLarge,
    SigningError,
    StreamEnded,
    StreamTooSlow,
    TradeloopError,
    TransportError,
    UnexpectedResponse,
    VerificationError,
)
from .models import (
    Accepted,
    Block,
    BlockHeader,
    BlocksPage,
    CommitSignature,
    Committed,
    Envelope,
    EventRecord,
    EventResult,
    Full,
    Leg,
    NodeStatus,
    Participant,
    Participants,
    Pending,
    Rejected,
    SubmitResponse,
    Trace,
    Trade,
)
from .signing import (
    SignedEvent,
    Signer,
    SigningKey,
    build_body,
    genesis_hash,
    load_genesis_hash,
    load_key,
    sign_body,
)
from .sse import ServerSentEvent, SSEParser
from .verify import ExportReport, Genesis, ProvenEvent, Report, verify_bundle, verify_export

if TYPE_CHECKING:
    from .client import Client, EventStream, Submittable

__version__ = "0.1.0"

# The HTTP client is imported on first use, so that signing and offline verification
# (`python -m tradeloop_client.verify`) need neither httpx nor a network.
_CLIENT_NAMES = ("Client", "EventStream", "Submittable")


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Accepted",
    "Block",
    "BlockHeader",
    "BlocksPage",
    "Client",
    "CommitSignature",
    "Committed",
    "Envelope",
    "EventRecord",
    "EventResult",
    "EventStream",
    "ExportReport",
    "Failure",
    "Full",
    "Genesis",
    "KeyFileError",
    "Leg",
    "NodeStatus",
    "Participant",
    "Participants",
    "Pending",
    "ProblemError",
    "ProvenEvent",
    "Rejected",
    "Report",
    "RequestTimeout",
    "ResponseTooLarge",
    "SSEParser",
    "ServerSentEvent",
    "SignedEvent",
    "Signer",
    "SigningError",
    "SigningKey",
    "StreamEnded",
    "StreamTooSlow",
    "Submittable",
    "SubmitResponse",
    "Trace",
    "Trade",
    "TradeloopError",
    "TransportError",
    "UnexpectedResponse",
    "VerificationError",
    "build_body",
    "genesis_hash",
    "load_genesis_hash",
    "load_key",
    "sign_body",
    "verify_bundle",
    "verify_export",
    "__version__",
]
