"""Offline verification of evidence bundles and JSONL exports (docs/formats.md, "Evidence
bundle" and "JSONL export"), written from docs/formats.md alone.

A bundle *holds* when every event's id,
signature (by a key the genesis lists for its author) and RFC 9162 inclusion proof hold, and
every block's header hashes to what its commit certificate signs, the certificate carries more
than 2/3 of the genesis validators' power in distinct, valid signatures, and everything names
the genesis you trust. For a JSONL export the same checks run on every block, plus the hash
links, heights, times and the trailer; the ledger's rules are not replayed here (``tradeloop
verify`` does that). Nothing here talks to a node: the genesis file is the only trust anchor.

From a shell (exit status 0 only if everything holds; each failure printed as
``FAILED CODE: what``)::

    python -m tradeloop_client.verify --genesis GENESIS.json BUNDLE.json
    python -m tradeloop_client.verify --genesis GENESIS.json --export CHAIN.jsonl

Signatures are checked by OpenSSL's Ed25519 (RFC 8032, which refuses a non-canonical S);
tradeloop's own verifier (``verify_strict``) also refuses small-order keys and R values, which no
honest signer produces and which cannot make a signature under a genesis key verify falsely.
"""

from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import _json

# Shared with signing.py (see _chain.py, which keeps the two from importing each other); still
# importable from this module, as before.
from ._chain import EVENT_DOMAIN as EVENT_DOMAIN
from ._chain import GENESIS_DOMAIN as GENESIS_DOMAIN
from ._chain import MAX_GENESIS_BYTES as MAX_GENESIS_BYTES
from ._chain import VALIDATORS_DOMAIN as VALIDATORS_DOMAIN
from ._chain import Genesis as Genesis
from ._chain import PathLike as PathLike
from ._chain import sha256 as _sha256
from .errors import Failure, VerificationError

BLOCK_DOMAIN = b"tradeloop/block/v1\x00"
VOTE_DOMAIN = b"tradeloop/vote/v1\x00"
PRECOMMIT = 2
MAX_CERTIFICATE_SIGNATURES = 1000
MAX_PROOF_HASHES = 32
BUNDLE_FORMAT = "tradeloop/evidence"
JSONL_FORMAT = "tradeloop/export-jsonl"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
"""Largest bundle a node writes (``MAX_BUNDLE_BYTES`` of docs/formats.md)."""

HEADER_FIELDS = (
    "chain",
    "height",
    "prev_hash",
    "time_ms",
    "proposer",
    "events_root",
    "event_count",
    "app_hash",
    "validators_hash",
)


def _unhex(value: Any, length: Optional[int], what: str) -> bytes:
    if not isinstance(value, str):
        raise Failure("BUNDLE_MALFORMED", f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise Failure("BUNDLE_MALFORMED", f"{what} is not hex") from None
    if length is not None and len(raw) != length:
        raise Failure("BUNDLE_MALFORMED", f"{what} must be {length} bytes")
    return raw


def _uint(value: Any, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise Failure("BUNDLE_MALFORMED", f"{what} must be an integer of {bits} bits")
    return value


def _header_bytes(h: Any) -> bytes:
    """bincode(Header): fixed-width big-endian integers, 32-byte arrays without prefix."""
    if not isinstance(h, dict) or sorted(h) != sorted(HEADER_FIELDS):
        raise Failure("BUNDLE_MALFORMED", f"a header has exactly the fields {list(HEADER_FIELDS)}")
    return (
        _unhex(h["chain"], 32, "header.chain")
        + struct.pack(">Q", _uint(h["height"], 64, "header.height"))
        + _unhex(h["prev_hash"], 32, "header.prev_hash")
        + struct.pack(">Q", _uint(h["time_ms"], 64, "header.time_ms"))
        + _unhex(h["proposer"], 32, "header.proposer")
        + _unhex(h["events_root"], 32, "header.events_root")
        + struct.pack(">I", _uint(h["event_count"], 32, "header.event_count"))
        + _unhex(h["app_hash"], 32, "header.app_hash")
        + _unhex(h["validators_hash"], 32, "header.validators_hash")
    )


def block_hash(header: Mapping[str, Any]) -> bytes:
    """SHA-256(``"tradeloop/block/v1\\0"`` || bincode(header)) of a header in its JSON form."""
    return _sha256(BLOCK_DOMAIN, _header_bytes(dict(header)))


def _verify_ed25519(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def check_block(genesis: Genesis, header: Any, certificate: Any) -> bytes:
    """Returns the block hash if the header and certificate hold under ``genesis``; raises
    :class:`Failure` otherwise."""
    the_hash = _sha256(BLOCK_DOMAIN, _header_bytes(header))
    height = header["height"]
    if _unhex(header["chain"], 32, "header.chain") != genesis.hash:
        raise Failure("FOREIGN_GENESIS", f"block {height}'s header names another chain")
    if _unhex(header["validators_hash"], 32, "header.validators_hash") != genesis.validators_hash:
        raise Failure("VALIDATOR_SET", f"block {height}'s header names another validator set")
    if not isinstance(certificate, dict) or sorted(certificate) != [
        "block_hash",
        "height",
        "round",
        "signatures",
    ]:
        raise Failure(
            "BUNDLE_MALFORMED", "a certificate has exactly height, round, block_hash, signatures"
        )
    if (
        _unhex(certificate["block_hash"], 32, "certificate.block_hash") != the_hash
        or certificate["height"] != height
    ):
        raise Failure(
            "HEADER_HASH",
            f"block {height}'s header does not hash to the block its certificate signs",
        )
    signatures = certificate["signatures"]
    if not isinstance(signatures, list) or len(signatures) > MAX_CERTIFICATE_SIGNATURES:
        raise Failure(
            "CERTIFICATE", f"block {height}: at most {MAX_CERTIFICATE_SIGNATURES} signatures"
        )
    vote = (
        VOTE_DOMAIN
        + genesis.hash
        + bytes([PRECOMMIT])
        + struct.pack(">Q", height)
        + struct.pack(">I", _uint(certificate["round"], 32, "certificate.round"))
        + b"\x01"
        + the_hash
    )
    power = 0
    previous: Optional[bytes] = None
    for s in signatures:
        if not isinstance(s, dict) or sorted(s) != ["signature", "validator"]:
            raise Failure(
                "BUNDLE_MALFORMED", "a certificate signature has exactly validator, signature"
            )
        key = _unhex(s["validator"], 32, "validator")
        if previous is not None and key <= previous:
            raise Failure(
                "CERTIFICATE",
                f"block {height}: signers not in strictly ascending order (duplicate or reordered)",
            )
        previous = key
        if key not in genesis.power:
            raise Failure(
                "CERTIFICATE", f"block {height}: signer {key.hex()} is not a genesis validator"
            )
        if not _verify_ed25519(key, vote, _unhex(s["signature"], 64, "signature")):
            raise Failure(
                "CERTIFICATE", f"block {height}: the precommit of {key.hex()} does not verify"
            )
        power += genesis.power[key]
    if not 3 * power > 2 * genesis.total_power:
        raise Failure(
            "CERTIFICATE",
            f"block {height}: signers hold {power} of {genesis.total_power} power; "
            "more than 2/3 is required",
        )
    return the_hash


def check_event(genesis: Genesis, body: bytes, signature: bytes) -> Tuple[bytes, Dict[str, Any]]:
    """Checks canonical form, chain, author, key and signature of an event's body bytes;
    returns (event id, body object)."""
    try:
        obj = _json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Failure("EVENT_MALFORMED", f"the body is not JSON: {e}") from None
    if not isinstance(obj, dict) or rfc8785.dumps(obj) != body:
        raise Failure("EVENT_MALFORMED", "the body is not a JSON object in RFC 8785 form")
    signing = EVENT_DOMAIN + body
    event_id = _sha256(signing)
    if obj.get("chain") != genesis.hash.hex():
        raise Failure("FOREIGN_GENESIS", f"event {event_id.hex()} is for another chain")
    author, key_hex = obj.get("author"), obj.get("key")
    try:
        key = bytes.fromhex(key_hex)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Failure("EVENT_KEY", f"event {event_id.hex()}: key is not hex") from None
    if not isinstance(author, str) or author not in genesis.keys or key not in genesis.keys[author]:
        raise Failure(
            "EVENT_KEY",
            f"event {event_id.hex()}: key {key_hex} is not one of {author!r}'s keys in the genesis",
        )
    if not _verify_ed25519(key, signing, signature):
        raise Failure("EVENT_SIGNATURE", f"event {event_id.hex()}: the signature does not verify")
    return event_id, obj


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || leaf)."""
    return _sha256(b"\x00", leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01", left, right)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH; the empty tree is SHA-256 of nothing."""
    if not leaves:
        return _sha256(b"")
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: whether ``path`` leads from ``leaf`` at ``index`` of a tree of ``size``
    leaves to ``root``."""
    if index >= size or len(path) > MAX_PROOF_HASHES:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


@dataclass(frozen=True)
class ProvenEvent:
    """An event a bundle proves: its id, block height and time, and body."""

    id: str
    height: int
    index: int
    block_time_ms: int
    body: Dict[str, Any]

    @property
    def kind(self) -> str:
        """The event's kind."""
        return str(self.body.get("kind"))

    @property
    def author(self) -> str:
        """The author's participant id."""
        return str(self.body.get("author"))


@dataclass
class Report:
    """The outcome of :func:`verify_bundle`: what failed, and the events proven."""

    failures: List[Failure] = field(default_factory=list)
    events: List[ProvenEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed and at least one event is proven."""
        return not self.failures and bool(self.events)

    @property
    def event_ids(self) -> List[str]:
        """The ids of the proven events, in bundle order."""
        return [e.id for e in self.events]

    @property
    def codes(self) -> List[str]:
        """The codes of the failures."""
        return [f.code for f in self.failures]

    def raise_for_failures(self) -> "Report":
        """Raises :class:`VerificationError` unless the bundle holds; returns ``self``."""
        if not self.ok:
            raise VerificationError(
                self.failures or [Failure("BUNDLE_MALFORMED", "the bundle holds no event")]
            )
        return self


def _parse_bundle(bundle: Union[Mapping[str, Any], bytes, str]) -> Any:
    if isinstance(bundle, (bytes, str)):
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise Failure("BUNDLE_MALFORMED", f"larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            return _json.loads(bundle)
        except (ValueError, UnicodeDecodeError) as e:
            raise Failure("BUNDLE_MALFORMED", f"not JSON: {e}") from None
    return bundle


def verify_bundle(
    genesis: Genesis,
    bundle: Union[Mapping[str, Any], bytes, str],
    *,
    expect_events: Iterable[str] = (),
) -> Report:
    """Checks an evidence bundle (parsed, or its JSON text) against the genesis you trust.

    ``expect_events``: event ids the bundle must prove (e.g. the id you asked the proof of);
    one that is missing is an ``EVENT_NOT_IN_BUNDLE`` failure. Never raises for a bad bundle:
    every failure is in the report (see :meth:`Report.raise_for_failures`).
    """
    report = Report()
    try:
        parsed = _parse_bundle(bundle)
    except Failure as f:
        report.failures.append(f)
        return report
    _check_bundle(genesis, parsed, report)
    proven = set(report.event_ids)
    for wanted in expect_events:
        if wanted not in proven:
            report.failures.append(
                Failure("EVENT_NOT_IN_BUNDLE", f"the bundle does not prove event {wanted}")
            )
    return report


def _check_bundle(genesis: Genesis, bundle: Any, report: Report) -> None:
    failures = report.failures
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        failures.append(Failure("BUNDLE_MALFORMED", "not an evidence bundle"))
        return
    if bundle.get("version") != 1:
        failures.append(Failure("BUNDLE_VERSION", f"version {bundle.get('version')!r} is not 1"))
        return
    if sorted(bundle) != ["blocks", "chain", "events", "format", "version"]:
        failures.append(Failure("BUNDLE_MALFORMED", "unexpected or missing top-level fields"))
        return
    if not isinstance(bundle["blocks"], list) or not isinstance(bundle["events"], list):
        failures.append(Failure("BUNDLE_MALFORMED", "blocks and events must be lists"))
        return
    if bundle["chain"] != genesis.hash.hex():
        failures.append(
            Failure(
                "FOREIGN_GENESIS",
                f"the bundle is for chain {bundle['chain']}, your genesis names "
                f"{genesis.hash.hex()}",
            )
        )
    blocks: Dict[int, Dict[str, Any]] = {}
    good: Dict[int, bytes] = {}
    for b in bundle["blocks"]:
        try:
            if not isinstance(b, dict) or sorted(b) != ["certificate", "header"]:
                raise Failure("BUNDLE_MALFORMED", "a block has exactly header and certificate")
            height = _uint(b["header"]["height"], 64, "header.height")
            if blocks and height <= max(blocks):
                raise Failure("BUNDLE_MALFORMED", "blocks are not in strictly ascending height")
            blocks[height] = b["header"]
            good[height] = check_block(genesis, b["header"], b["certificate"])
        except Failure as bad:
            failures.append(bad)
        except (KeyError, TypeError) as x:
            failures.append(Failure("BUNDLE_MALFORMED", f"a block is incomplete: {x!r}"))
    if not bundle["events"]:
        failures.append(Failure("BUNDLE_MALFORMED", "the bundle holds no event"))
    seen: Set[Any] = set()
    for n, e in enumerate(bundle["events"]):
        try:
            if not isinstance(e, dict) or sorted(e) != [
                "body",
                "height",
                "id",
                "index",
                "proof",
                "signature",
            ]:
                raise Failure("BUNDLE_MALFORMED", f"event {n} lacks or adds fields")
            if not isinstance(e["id"], str) or e["id"] in seen:
                raise Failure("BUNDLE_MALFORMED", f"event {n} appears twice")
            seen.add(e["id"])
            header = blocks.get(e["height"])
            if header is None:
                raise Failure(
                    "BLOCK_MISSING",
                    f"event {n} names block {e['height']}, which the bundle does not hold",
                )
            body = _unhex(e["body"], None, "body")
            claimed = _unhex(e["id"], 32, "id")
            if _sha256(EVENT_DOMAIN, body) != claimed:
                raise Failure("EVENT_ID", f"event {n}: the body does not hash to the id {e['id']}")
            event_id, obj = check_event(genesis, body, _unhex(e["signature"], 64, "signature"))
            if not isinstance(e["proof"], list) or len(e["proof"]) > MAX_PROOF_HASHES:
                raise Failure("INCLUSION_PROOF", f"event {n}: at most {MAX_PROOF_HASHES} hashes")
            path = [_unhex(p, 32, "proof") for p in e["proof"]]
            index = _uint(e["index"], 32, "index")
            if not verify_inclusion(
                event_id,
                index,
                header["event_count"],
                path,
                _unhex(header["events_root"], 32, "header.events_root"),
            ):
                raise Failure(
                    "INCLUSION_PROOF",
                    f"event {n} is not leaf {e['index']} of block {e['height']}'s events root",
                )
            if e["height"] not in good:
                raise Failure(
                    "CERTIFICATE", f"event {n}: block {e['height']} is not validly certified"
                )
            report.events.append(
                ProvenEvent(event_id.hex(), e["height"], index, header["time_ms"], obj)
            )
        except Failure as f:
            failures.append(f)
        except (KeyError, TypeError) as x:
            failures.append(Failure("BUNDLE_MALFORMED", f"event {n} is incomplete: {x!r}"))


@dataclass
class ExportReport:
    """The outcome of :func:`verify_export`: what failed, and how much was checked."""

    failures: List[Failure] = field(default_factory=list)
    blocks: int = 0
    events: int = 0

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.failures


def verify_export(genesis: Genesis, data: Union[bytes, str]) -> ExportReport:
    """Replays the signatures and hashes of a JSONL export (its file's content) against the
    genesis you trust: every block's events, events root, hash link, height, time, proposer and
    certificate, and the trailer. Never raises for a bad export: the failure is in the report.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        blocks, events = _replay_export(genesis, raw.split(b"\n"))
        return ExportReport(blocks=blocks, events=events)
    except Failure as f:
        return ExportReport(failures=[f])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        return ExportReport(failures=[Failure("EXPORT_MALFORMED", f"malformed line: {e!r}")])


def _replay_export(genesis: Genesis, lines: List[bytes]) -> Tuple[int, int]:
    if lines[-1] != b"":
        raise Failure("EXPORT_MALFORMED", "the last line has no line ending: truncated")
    lines = lines[:-1]
    head = _json.loads(lines[0])
    if head.get("format") != JSONL_FORMAT or head.get("version") != 1:
        raise Failure("EXPORT_MALFORMED", "line 1 is not a version 1 JSONL export header")
    if _sha256(GENESIS_DOMAIN, rfc8785.dumps(head["genesis"])) != genesis.hash:
        raise Failure("FOREIGN_GENESIS", "the export is of another chain than your genesis")
    prev_hash, app_hash = bytes(32), bytes(32)
    prev_time, height, events = genesis.doc["genesis_time_ms"], 0, 0
    for number, text in enumerate(lines[1:], start=2):
        line = _json.loads(text)
        if "end" in line:
            end = line["end"]
            if number != len(lines) or sorted(line) != ["end"]:
                raise Failure(
                    "EXPORT_MALFORMED", f"line {number}: the trailer must be the last line, alone"
                )
            trailer = (end["block_count"], bytes.fromhex(end["tip_hash"]))
            if trailer + (bytes.fromhex(end["app_hash"]),) != (height, prev_hash, app_hash):
                raise Failure("EXPORT_MALFORMED", "the trailer does not match the blocks")
            return height, events
        height += 1
        if sorted(line) != ["certificate", "events", "header"]:
            raise Failure("EXPORT_MALFORMED", f"line {number} is not a block line")
        header = line["header"]
        if header["height"] != height or bytes.fromhex(header["prev_hash"]) != prev_hash:
            raise Failure("EXPORT_MALFORMED", f"height {height}: not the next block of the chain")
        if header["time_ms"] < prev_time:
            raise Failure("EXPORT_MALFORMED", f"height {height}: time goes backwards")
        if bytes.fromhex(header["proposer"]) not in genesis.power:
            raise Failure("EXPORT_MALFORMED", f"height {height}: the proposer is not a validator")
        ids = [_envelope_id(genesis, height, envelope) for envelope in line["events"]]
        if len(ids) != header["event_count"] or merkle_root(ids) != bytes.fromhex(
            header["events_root"]
        ):
            raise Failure(
                "EXPORT_MALFORMED", f"height {height}: the events do not match the events root"
            )
        prev_hash = check_block(genesis, header, line["certificate"])
        prev_time, app_hash = header["time_ms"], bytes.fromhex(header["app_hash"])
        events += len(ids)
    raise Failure("EXPORT_MALFORMED", "the export ends without its trailer: truncated")


def _envelope_id(genesis: Genesis, height: int, envelope: Any) -> bytes:
    if not isinstance(envelope, dict) or sorted(envelope) != ["body", "signature"]:
        raise Failure("EXPORT_MALFORMED", f"height {height}: an event is not an envelope")
    body = rfc8785.dumps(envelope["body"])
    event_id, _ = check_event(genesis, body, _unhex(envelope["signature"], 64, "signature"))
    return event_id


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m tradeloop_client.verify``: checks a bundle or a JSONL export; the exit
    status (0 only if everything holds)."""
    parser = argparse.ArgumentParser(
        prog="python -m tradeloop_client.verify",
        description="Check tradeloop evidence offline against the genesis you trust.",
    )
    parser.add_argument("--genesis", required=True, help="the genesis file you trust")
    parser.add_argument("--export", help="a JSONL export to replay instead of a bundle")
    parser.add_argument("bundle", nargs="?", help="an evidence bundle from `tradeloop proof`")
    args = parser.parse_args(argv)
    genesis = Genesis.from_file(args.genesis)
    if args.export:
        with open(args.export, "rb") as f:
            export = verify_export(genesis, f.read())
        _print_failures(export.failures)
        if export.ok:
            print(
                f"OK: {export.blocks} blocks, {export.events} events: signatures, ids, events "
                "roots, hash links and certificates hold"
            )
        return 0 if export.ok else 1
    if not args.bundle:
        parser.error("give a BUNDLE or --export FILE")
    with open(args.bundle, "rb") as f:
        report = verify_bundle(genesis, f.read(MAX_BUNDLE_BYTES + 1))
    _print_failures(report.failures)
    if report.ok:
        print(f"OK: {len(report.events)} event(s) certified on chain {genesis.hash_hex}")
        for e in report.events:
            print(f"  height {e.height} block time {e.block_time_ms} ms: {e.kind} by {e.author}")
    return 0 if report.ok else 1


def _print_failures(failures: Sequence[Failure]) -> None:
    for f in failures:
        print(f"FAILED {f.code}: {f.what}")


if __name__ == "__main__":
    sys.exit(main())
