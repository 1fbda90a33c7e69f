"""Key files, event bodies and their signatures (docs/signing.md).

The recipe: ``canonical = RFC 8785(body)``, ``signing_bytes = b"tradeloop/event/v1\\0" +
canonical``, ``signature = Ed25519(secret, signing_bytes)``, ``id = SHA-256(signing_bytes)``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import _json

# Shared with verify.py (see _chain.py, which keeps the two from importing each other); still
# importable from this module, as before.
from ._chain import EVENT_DOMAIN as EVENT_DOMAIN
from ._chain import GENESIS_DOMAIN as GENESIS_DOMAIN
from ._chain import Genesis
from ._chain import PathLike as PathLike
from ._chain import genesis_hash_bytes
from .errors import KeyFileError, SigningError

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude the ledger accepts in a body."""
COMMON_FIELDS = ("chain", "author", "key", "kind", "time_ms", "nonce")
"""The fields every body has (docs/formats.md, "Events")."""
MAX_KEY_FILE_BYTES = 64 * 1024


def _unhex(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{what} is not hex") from None
    if len(raw) != length:
        raise KeyFileError(f"{what} must be {length} bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 event-signing key: the 32-byte seed (RFC 8032) and its public key.

    The secret is kept out of ``repr`` so that it does not end up in logs.
    """

    public_key: str
    """The public key, 64 lower-case hex characters (as the genesis lists it)."""
    _secret: bytes = field(repr=False)

    @classmethod
    def from_secret_hex(cls, secret_hex: str) -> "SigningKey":
        """A key from its 32-byte seed in hex."""
        seed = _unhex(secret_hex, 32, "secret_key")
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        return cls(public.hex(), seed)

    @classmethod
    def generate(cls) -> "SigningKey":
        """A new random key (for tests; real keys come from ``tradeloop keygen`` or an HSM)."""
        return cls.from_secret_hex(secrets.token_bytes(32).hex())

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return Ed25519PrivateKey.from_private_bytes(self._secret).sign(message)


def load_key(path: PathLike) -> SigningKey:
    """Reads a key file written by ``tradeloop keygen`` (or ``tradeloop devnet init``):
    ``{"public_key": "<hex>", "secret_key": "<hex>"}``.

    Raises :class:`KeyFileError` when the file cannot be read, is not such a JSON object, or its
    public key is not the one of its secret key.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"cannot read the key file {p}: {e}") from e
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{p} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    try:
        doc = _json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{p} is not JSON: {e}") from e
    if not isinstance(doc, dict) or "secret_key" not in doc or "public_key" not in doc:
        raise KeyFileError(f"{p} is not a key file: it needs public_key and secret_key")
    key = SigningKey.from_secret_hex(doc["secret_key"])
    if _unhex(doc["public_key"], 32, "public_key").hex() != key.public_key:
        raise KeyFileError(f"{p}: public_key is not the public key of secret_key")
    return key


def genesis_hash(genesis: Mapping[str, Any]) -> str:
    """The chain id: SHA-256(``"tradeloop/genesis/v1\\0"`` || RFC 8785 form of the genesis), hex."""
    return genesis_hash_bytes(genesis).hex()


def load_genesis_hash(path: PathLike) -> str:
    """The chain id of a genesis file (see :func:`genesis_hash`); raises ``ValueError`` when
    the file is not a tradeloop genesis."""
    return Genesis.from_file(path).hash_hex


def _check_values(value: Any, where: str) -> None:
    """The ledger refuses fractions and integers beyond 2^53-1: refuse them before signing."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise SigningError(f"{where} is an integer beyond 2^53-1; the ledger refuses it")
        return
    if isinstance(value, float):
        raise SigningError(
            f"{where} is a float; money, quantities and weights are decimal strings (\"12.50\")"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise SigningError(f"{where} has a key that is not a string: {k!r}")
            _check_values(v, f"{where}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_values(v, f"{where}[{i}]")
        return
    raise SigningError(f"{where} is a {type(value).__name__}, which is not JSON")


@dataclass(frozen=True)
class SignedEvent:
    """A signed event: its body, canonical bytes, signature and id."""

    body: Mapping[str, Any]
    """The body as signed."""
    canonical: bytes
    """The RFC 8785 form of the body (what the signature covers, after the domain tag)."""
    signature: str
    """The Ed25519 signature, 128 hex characters."""
    id: str
    """The event id, SHA-256 of the signing bytes, 64 hex characters."""

    @property
    def signing_bytes(self) -> bytes:
        """``b"tradeloop/event/v1\\0" + canonical``."""
        return EVENT_DOMAIN + self.canonical

    @property
    def kind(self) -> str:
        """The event's kind (``trade.order_placed``, ...)."""
        return str(self.body["kind"])

    @property
    def author(self) -> str:
        """The author's participant id."""
        return str(self.body["author"])

    def envelope(self) -> dict[str, Any]:
        """The envelope ``{"body": ..., "signature": ...}`` as a dict."""
        return {"body": dict(self.body), "signature": self.signature}

    def envelope_json(self) -> str:
        """The envelope as one JSON line, the body in its canonical form (what
        ``tradeloop event sign`` prints and ``POST /v1/events`` takes)."""
        return '{"body":' + self.canonical.decode("utf-8") + ',"signature":"' + self.signature + '"}'


def sign_body(body: Mapping[str, Any], key: SigningKey) -> SignedEvent:
    """Signs a complete body (common fields included) with ``key``.

    Checks what can be checked without the ledger: the common fields are present, ``key`` is
    the signing key's public key, and no value is a float or an integer beyond 2^53-1.
    Everything else (the kind's fields, the author's role and key) the node checks, answering a
    rejection code.
    """
    missing = [f for f in COMMON_FIELDS if f not in body]
    if missing:
        raise SigningError(f"the body lacks the common field(s) {', '.join(missing)}")
    if body["key"] != key.public_key:
        raise SigningError(
            f"the body's key {body['key']!r} is not the public key of the signing key "
            f"({key.public_key}); the ledger would answer BAD_SIGNATURE"
        )
    _check_values(body, "body")
    canonical = rfc8785.dumps(dict(body))
    signing_bytes = EVENT_DOMAIN + canonical
    event_id = hashlib.sha256(signing_bytes).hexdigest()
    signature = key.sign(signing_bytes).hex()
    return SignedEvent(dict(body), canonical, signature, event_id)


def new_nonce() -> str:
    """A random nonce, 32 hex characters."""
    return secrets.token_hex(16)


def now_ms() -> int:
    """This machine's clock, Unix milliseconds."""
    return int(time.time() * 1000)


def build_body(
    *,
    chain: str,
    author: str,
    key: str,
    kind: str,
    fields: Optional[Mapping[str, Any]] = None,
    time_ms: Optional[int] = None,
    nonce: Union[str, int, None] = None,
) -> dict[str, Any]:
    """An event body: the common fields plus the kind's ``fields`` (docs/events.md).

    ``time_ms`` defaults to now, ``nonce`` to a random hex string. Reuse the nonce when you
    retry the *same* event: the ledger then answers ``DUPLICATE_EVENT``/``DUPLICATE_NONCE``
    instead of recording it twice.
    """
    body: dict[str, Any] = dict(fields or {})
    clash = [f for f in COMMON_FIELDS if f in body]
    if clash:
        raise SigningError(f"fields must not set the common field(s) {', '.join(clash)}")
    body.update(
        {
            "chain": chain,
            "author": author,
            "key": key,
            "kind": kind,
            "time_ms": now_ms() if time_ms is None else time_ms,
            "nonce": new_nonce() if nonce is None else nonce,
        }
    )
    return body


@dataclass(frozen=True)
class Signer:
    """A participant's signer: its id, its key and the chain it signs for.

    >>> signer = Signer(author="cn-exporter-bright", key=load_key("keys/cn-exporter-bright.json"),
    ...                 chain=load_genesis_hash("genesis.json"))            # doctest: +SKIP
    >>> event = signer.sign("trade.order_accepted", {"order_id": "PO-1"})  # doctest: +SKIP
    """

    author: str
    """The participant id."""
    key: SigningKey
    """Its event-signing key (one the genesis lists for it)."""
    chain: str
    """The genesis hash, hex."""

    def sign(
        self,
        kind: str,
        fields: Optional[Mapping[str, Any]] = None,
        *,
        time_ms: Optional[int] = None,
        nonce: Union[str, int, None] = None,
    ) -> SignedEvent:
        """Builds the body of an event of ``kind`` with ``fields`` and signs it."""
        body = build_body(
            chain=self.chain,
            author=self.author,
            key=self.key.public_key,
            kind=kind,
            fields=fields,
            time_ms=time_ms,
            nonce=nonce,
        )
        return sign_body(body, self.key)
