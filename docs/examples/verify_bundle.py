#!/usr/bin/env python3
"""Check tradeloop evidence offline, written from docs/formats.md alone.

    pip install cryptography rfc8785
    python3 verify_bundle.py --genesis GENESIS.json BUNDLE.json        # an evidence bundle
    python3 verify_bundle.py --genesis GENESIS.json --export CHAIN.jsonl   # a JSONL export

A bundle holds when every event's signature (by a key the genesis lists for its author), id and
RFC 9162 inclusion proof hold, and every block's header hashes to what its commit certificate
signs, the certificate carries more than 2/3 of the genesis validators' power in distinct, valid
signatures, and everything names the genesis you trust. For a JSONL export the same checks run on
every block, plus the hash links, heights, times and the trailer; the ledger's rules are not
replayed here (`tradeloop verify` does that). Exit status 0 only if everything holds; each
failure is printed as `FAILED CODE: what`, with the codes of docs/formats.md.

Signatures are checked by OpenSSL's Ed25519 (RFC 8032, which refuses a non-canonical S);
tradeloop's own verifier (`verify_strict`) also refuses small-order keys and R values, which no
honest signer produces and which cannot make a signature under a genesis key verify falsely.
"""

import argparse
import hashlib
import json
import struct
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS_DOMAIN = b"tradeloop/genesis/v1\x00"
VALIDATORS_DOMAIN = b"tradeloop/validators/v1\x00"
EVENT_DOMAIN = b"tradeloop/event/v1\x00"
BLOCK_DOMAIN = b"tradeloop/block/v1\x00"
VOTE_DOMAIN = b"tradeloop/vote/v1\x00"
PRECOMMIT = 2
MAX_CERTIFICATE_SIGNATURES = 1000
BUNDLE_FORMAT = "tradeloop/evidence"
JSONL_FORMAT = "tradeloop/export-jsonl"


class Failure(Exception):
    def __init__(self, code, what):
        super().__init__(f"{code}: {what}")
        self.code = code
        self.what = what


def reject_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def loads(text):
    return json.loads(text, object_pairs_hook=reject_duplicates)


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def unhex(value, length, what):
    if not isinstance(value, str):
        raise Failure("BUNDLE_MALFORMED", f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise Failure("BUNDLE_MALFORMED", f"{what} is not hex")
    if length is not None and len(raw) != length:
        raise Failure("BUNDLE_MALFORMED", f"{what} must be {length} bytes")
    return raw


def uint(value, bits, what):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise Failure("BUNDLE_MALFORMED", f"{what} must be an integer of {bits} bits")
    return value


class Genesis:
    def __init__(self, path):
        with open(path, "rb") as f:
            doc = loads(f.read())
        self.doc = doc
        self.hash = sha256(GENESIS_DOMAIN, rfc8785.dumps(doc))
        self.validators = [(bytes.fromhex(v["node_key"]), v["power"]) for v in doc["validators"]]
        self.power = dict(self.validators)
        self.total_power = sum(p for _, p in self.validators)
        encoded = struct.pack(">Q", len(self.validators))
        for key, power in self.validators:
            encoded += key + struct.pack(">Q", power)
        self.validators_hash = sha256(VALIDATORS_DOMAIN, encoded)
        self.keys = {p["id"]: {bytes.fromhex(k) for k in p["keys"]} for p in doc["participants"]}


HEADER_FIELDS = ["chain", "height", "prev_hash", "time_ms", "proposer", "events_root",
                 "event_count", "app_hash", "validators_hash"]


def header_bytes(h):
    """bincode(Header): fixed-width big-endian integers, 32-byte arrays without prefix."""
    if not isinstance(h, dict) or sorted(h) != sorted(HEADER_FIELDS):
        raise Failure("BUNDLE_MALFORMED", f"a header has exactly the fields {HEADER_FIELDS}")
    return (unhex(h["chain"], 32, "header.chain")
            + struct.pack(">Q", uint(h["height"], 64, "header.height"))
            + unhex(h["prev_hash"], 32, "header.prev_hash")
            + struct.pack(">Q", uint(h["time_ms"], 64, "header.time_ms"))
            + unhex(h["proposer"], 32, "header.proposer")
            + unhex(h["events_root"], 32, "header.events_root")
            + struct.pack(">I", uint(h["event_count"], 32, "header.event_count"))
            + unhex(h["app_hash"], 32, "header.app_hash")
            + unhex(h["validators_hash"], 32, "header.validators_hash"))


def verify_ed25519(key, message, signature):
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def check_block(genesis, header, certificate):
    """Returns the block hash if the header and certificate hold; raises Failure otherwise."""
    height = header["height"] if isinstance(header, dict) else None
    block_hash = sha256(BLOCK_DOMAIN, header_bytes(header))
    if unhex(header["chain"], 32, "header.chain") != genesis.hash:
        raise Failure("FOREIGN_GENESIS", f"block {height}'s header names another chain")
    if unhex(header["validators_hash"], 32, "header.validators_hash") != genesis.validators_hash:
        raise Failure("VALIDATOR_SET", f"block {height}'s header names another validator set")
    if not isinstance(certificate, dict) or sorted(certificate) != ["block_hash", "height", "round", "signatures"]:
        raise Failure("BUNDLE_MALFORMED", "a certificate has exactly height, round, block_hash, signatures")
    if unhex(certificate["block_hash"], 32, "certificate.block_hash") != block_hash or certificate["height"] != height:
        raise Failure("HEADER_HASH", f"block {height}'s header does not hash to the block its certificate signs")
    signatures = certificate["signatures"]
    if not isinstance(signatures, list) or len(signatures) > MAX_CERTIFICATE_SIGNATURES:
        raise Failure("CERTIFICATE", f"block {height}: at most {MAX_CERTIFICATE_SIGNATURES} signatures")
    vote = (VOTE_DOMAIN + genesis.hash + bytes([PRECOMMIT]) + struct.pack(">Q", height)
            + struct.pack(">I", uint(certificate["round"], 32, "certificate.round")) + b"\x01" + block_hash)
    power = 0
    previous = None
    for s in signatures:
        if not isinstance(s, dict) or sorted(s) != ["signature", "validator"]:
            raise Failure("BUNDLE_MALFORMED", "a certificate signature has exactly validator, signature")
        key = unhex(s["validator"], 32, "validator")
        if previous is not None and key <= previous:
            raise Failure("CERTIFICATE", f"block {height}: signers not in strictly ascending order (duplicate or reordered)")
        previous = key
        if key not in genesis.power:
            raise Failure("CERTIFICATE", f"block {height}: signer {key.hex()} is not a genesis validator")
        if not verify_ed25519(key, vote, unhex(s["signature"], 64, "signature")):
            raise Failure("CERTIFICATE", f"block {height}: the precommit of {key.hex()} does not verify")
        power += genesis.power[key]
    if not 3 * power > 2 * genesis.total_power:
        raise Failure("CERTIFICATE", f"block {height}: signers hold {power} of {genesis.total_power} power; more than 2/3 is required")
    return block_hash


def check_event(genesis, body, signature):
    """Checks canonical form, chain, author, key and signature; returns (event id, body object)."""
    try:
        obj = loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Failure("EVENT_MALFORMED", f"the body is not JSON: {e}")
    if not isinstance(obj, dict) or rfc8785.dumps(obj) != body:
        raise Failure("EVENT_MALFORMED", "the body is not a JSON object in RFC 8785 form")
    signing = EVENT_DOMAIN + body
    event_id = sha256(signing)
    if obj.get("chain") != genesis.hash.hex():
        raise Failure("FOREIGN_GENESIS", f"event {event_id.hex()} is for another chain")
    author, key_hex = obj.get("author"), obj.get("key")
    try:
        key = bytes.fromhex(key_hex)
    except (TypeError, ValueError):
        raise Failure("EVENT_KEY", f"event {event_id.hex()}: key is not hex")
    if author not in genesis.keys or key not in genesis.keys[author]:
        raise Failure("EVENT_KEY", f"event {event_id.hex()}: key {key_hex} is not one of {author!r}'s keys in the genesis")
    if not verify_ed25519(key, signing, signature):
        raise Failure("EVENT_SIGNATURE", f"event {event_id.hex()}: the signature does not verify")
    return event_id, obj


def leaf_hash(leaf):
    return sha256(b"\x00", leaf)


def node_hash(left, right):
    return sha256(b"\x01", left, right)


def merkle_root(leaves):
    """RFC 9162 §2.1.1 MTH; the empty tree is SHA-256 of nothing."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
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


def verify_bundle(genesis, path):
    failures, proven = [], []
    with open(path, "rb") as f:
        try:
            bundle = loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            return [Failure("BUNDLE_MALFORMED", f"not JSON: {e}")], []
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        return [Failure("BUNDLE_MALFORMED", "not an evidence bundle")], []
    if bundle.get("version") != 1:
        return [Failure("BUNDLE_VERSION", f"version {bundle.get('version')!r} is not 1")], []
    if sorted(bundle) != ["blocks", "chain", "events", "format", "version"]:
        return [Failure("BUNDLE_MALFORMED", "unexpected or missing top-level fields")], []
    if bundle["chain"] != genesis.hash.hex():
        failures.append(Failure("FOREIGN_GENESIS", f"the bundle is for chain {bundle['chain']}, your genesis names {genesis.hash.hex()}"))
    blocks, good = {}, {}
    for b in bundle["blocks"]:
        try:
            if not isinstance(b, dict) or sorted(b) != ["certificate", "header"]:
                raise Failure("BUNDLE_MALFORMED", "a block has exactly header and certificate")
            height = b["header"]["height"]
            if blocks and height <= max(blocks):
                raise Failure("BUNDLE_MALFORMED", "blocks are not in strictly ascending height")
            blocks[height] = b["header"]
            good[height] = check_block(genesis, b["header"], b["certificate"])
        except Failure as e:
            failures.append(e)
        except (KeyError, TypeError) as e:
            failures.append(Failure("BUNDLE_MALFORMED", f"a block is incomplete: {e}"))
    if not bundle["events"]:
        failures.append(Failure("BUNDLE_MALFORMED", "the bundle holds no event"))
    seen = set()
    for n, e in enumerate(bundle["events"]):
        try:
            if not isinstance(e, dict) or sorted(e) != ["body", "height", "id", "index", "proof", "signature"]:
                raise Failure("BUNDLE_MALFORMED", f"event {n} lacks or adds fields")
            if e["id"] in seen:
                raise Failure("BUNDLE_MALFORMED", f"event {n} appears twice")
            seen.add(e["id"])
            header = blocks.get(e["height"])
            if header is None:
                raise Failure("BLOCK_MISSING", f"event {n} names block {e['height']}, which the bundle does not hold")
            body = unhex(e["body"], None, "body")
            claimed = unhex(e["id"], 32, "id")
            if sha256(EVENT_DOMAIN, body) != claimed:
                raise Failure("EVENT_ID", f"event {n}: the body does not hash to the id {e['id']}")
            event_id, obj = check_event(genesis, body, unhex(e["signature"], 64, "signature"))
            path = [unhex(p, 32, "proof") for p in e["proof"]]
            if not verify_inclusion(event_id, uint(e["index"], 32, "index"), header["event_count"], path,
                                    bytes.fromhex(header["events_root"])):
                raise Failure("INCLUSION_PROOF", f"event {n} is not leaf {e['index']} of block {e['height']}'s events root")
            if e["height"] not in good:
                raise Failure("CERTIFICATE", f"event {n}: block {e['height']} is not validly certified")
            proven.append((e["height"], header["time_ms"], obj))
        except Failure as f:
            failures.append(f)
        except (KeyError, TypeError) as x:
            failures.append(Failure("BUNDLE_MALFORMED", f"event {n} is incomplete: {x}"))
    return failures, proven


def verify_jsonl(genesis, path):
    """Replays the signatures and hashes of a JSONL export; returns (failures, blocks, events)."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines[-1] != b"":
        return [Failure("EXPORT_MALFORMED", "the last line has no line ending: truncated")], 0, 0
    lines = lines[:-1]
    try:
        head = loads(lines[0])
        if head.get("format") != JSONL_FORMAT or head.get("version") != 1:
            return [Failure("EXPORT_MALFORMED", "line 1 is not a version 1 JSONL export header")], 0, 0
        if sha256(GENESIS_DOMAIN, rfc8785.dumps(head["genesis"])) != genesis.hash:
            return [Failure("FOREIGN_GENESIS", "the export is of another chain than your genesis")], 0, 0
        prev_hash, prev_time, app_hash, events = bytes(32), genesis.doc["genesis_time_ms"], bytes(32), 0
        height = 0
        for number, raw in enumerate(lines[1:], start=2):
            line = loads(raw)
            if "end" in line:
                end = line["end"]
                if number != len(lines) or sorted(line) != ["end"]:
                    raise Failure("EXPORT_MALFORMED", f"line {number}: the trailer must be the last line, alone")
                if (end["block_count"], bytes.fromhex(end["tip_hash"]), bytes.fromhex(end["app_hash"])) != (height, prev_hash, app_hash):
                    raise Failure("EXPORT_MALFORMED", "the trailer does not match the blocks")
                return [], height, events
            height += 1
            header, ids = line["header"], []
            if sorted(line) != ["certificate", "events", "header"]:
                raise Failure("EXPORT_MALFORMED", f"line {number} is not a block line")
            if header["height"] != height or bytes.fromhex(header["prev_hash"]) != prev_hash:
                raise Failure("EXPORT_MALFORMED", f"height {height}: not the next block of the chain")
            if header["time_ms"] < prev_time:
                raise Failure("EXPORT_MALFORMED", f"height {height}: time goes backwards")
            if bytes.fromhex(header["proposer"]) not in genesis.power:
                raise Failure("EXPORT_MALFORMED", f"height {height}: the proposer is not a validator")
            for envelope in line["events"]:
                if sorted(envelope) != ["body", "signature"]:
                    raise Failure("EXPORT_MALFORMED", f"height {height}: an event is not an envelope")
                event_id, _ = check_event(genesis, rfc8785.dumps(envelope["body"]), unhex(envelope["signature"], 64, "signature"))
                ids.append(event_id)
            if len(ids) != header["event_count"] or merkle_root(ids) != bytes.fromhex(header["events_root"]):
                raise Failure("EXPORT_MALFORMED", f"height {height}: the events do not match the events root")
            prev_hash = check_block(genesis, header, line["certificate"])
            prev_time, app_hash, events = header["time_ms"], bytes.fromhex(header["app_hash"]), events + len(ids)
        raise Failure("EXPORT_MALFORMED", "the export ends without its trailer: truncated")
    except Failure as f:
        return [f], 0, 0
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        return [Failure("EXPORT_MALFORMED", f"malformed line: {e!r}")], 0, 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genesis", required=True, help="the genesis file you trust")
    parser.add_argument("--export", help="a JSONL export to replay instead of a bundle")
    parser.add_argument("bundle", nargs="?", help="an evidence bundle from `tradeloop proof`")
    args = parser.parse_args()
    genesis = Genesis(args.genesis)
    if args.export:
        failures, blocks, events = verify_jsonl(genesis, args.export)
        for f in failures:
            print(f"FAILED {f.code}: {f.what}")
        if not failures:
            print(f"OK: {blocks} blocks, {events} events: signatures, ids, events roots, hash links and certificates hold")
        sys.exit(1 if failures else 0)
    if not args.bundle:
        parser.error("give a BUNDLE or --export FILE")
    failures, proven = verify_bundle(genesis, args.bundle)
    for f in failures:
        print(f"FAILED {f.code}: {f.what}")
    if not failures:
        print(f"OK: {len(proven)} event(s) certified on chain {genesis.hash.hex()}")
        for height, time_ms, body in proven:
            print(f"  height {height} block time {time_ms} ms: {body['kind']} by {body['author']}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
