"""What signing and verification both need: the domain tags, the genesis (the chain's trust
anchor, whose hash is the chain id) and the path type of the files they read.

It lives apart from :mod:`~tradeloop_client.signing` and :mod:`~tradeloop_client.verify` so that
neither imports the other: signing needs the genesis hash for ``chain`` (``load_genesis_hash``),
verification needs the event domain tag, and each module must import alone (no import circle, in
which one module sees the other half initialised). This module imports no module of the package
but the strict JSON reader.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any, Dict, List, Mapping, Set, Tuple, Union

import rfc8785

from . import _json

EVENT_DOMAIN = b"tradeloop/event/v1\x00"
"""Domain tag of event signing bytes and ids."""
GENESIS_DOMAIN = b"tradeloop/genesis/v1\x00"
"""Domain tag of the genesis hash (the chain id)."""
VALIDATORS_DOMAIN = b"tradeloop/validators/v1\x00"
"""Domain tag of the validator set's hash (``validators_hash`` of every header)."""
MAX_GENESIS_BYTES = 16 * 1024 * 1024
"""Largest genesis file read; a larger one is refused before it is parsed."""

PathLike = Union[str, "os.PathLike[str]"]
"""A file name: a ``str`` or a :class:`pathlib.Path`."""


def sha256(*parts: bytes) -> bytes:
    """SHA-256 of the concatenation of ``parts``."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def genesis_hash_bytes(doc: Mapping[str, Any]) -> bytes:
    """SHA-256(``"tradeloop/genesis/v1\\0"`` || RFC 8785 form of the genesis): the chain id."""
    return sha256(GENESIS_DOMAIN, rfc8785.dumps(dict(doc)))


class Genesis:
    """A genesis you trust: its hash (the chain id), validators and participants' keys."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        """From the parsed genesis JSON. Raises ``ValueError`` if it lacks what is needed."""
        try:
            self.doc: Mapping[str, Any] = doc
            self.hash: bytes = genesis_hash_bytes(doc)
            self.validators: List[Tuple[bytes, int]] = [
                (bytes.fromhex(v["node_key"]), int(v["power"])) for v in doc["validators"]
            ]
            self.power: Dict[bytes, int] = dict(self.validators)
            self.total_power: int = sum(p for _, p in self.validators)
            encoded = struct.pack(">Q", len(self.validators))
            for key, power in self.validators:
                encoded += key + struct.pack(">Q", power)
            self.validators_hash: bytes = sha256(VALIDATORS_DOMAIN, encoded)
            self.keys: Dict[str, Set[bytes]] = {
                p["id"]: {bytes.fromhex(k) for k in p["keys"]} for p in doc["participants"]
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a tradeloop genesis: {e!r}") from e

    @classmethod
    def from_json(cls, text: Union[bytes, str]) -> "Genesis":
        """From the genesis file's content (duplicate keys refused)."""
        return cls(_json.loads(text))

    @classmethod
    def from_file(cls, path: PathLike) -> "Genesis":
        """From a genesis file (e.g. the ``genesis.json`` of ``tradeloop devnet init``)."""
        with Path(path).open("rb") as f:
            raw = f.read(MAX_GENESIS_BYTES + 1)
        if len(raw) > MAX_GENESIS_BYTES:
            raise ValueError(f"{path} is larger than {MAX_GENESIS_BYTES} bytes")
        return cls.from_json(raw)

    @property
    def hash_hex(self) -> str:
        """The genesis hash, hex (the ``chain`` of every body of this chain)."""
        return self.hash.hex()
