#!/usr/bin/env python3
"""Sign a tradeloop event from Python, using only `cryptography` and `rfc8785`.

    pip install cryptography rfc8785
    python3 sign_event.py --key KEYFILE --genesis GENESIS.json BODY.json > envelope.json
    python3 sign_event.py --check-vectors testdata/event_vectors.json

BODY.json holds the event body: `author`, `kind` and the kind's fields. `chain` (from the
genesis), `key` (from the key file), `time_ms` (now) and `nonce` (random) are filled in when
absent. The envelope is printed as one JSON line, ready for `tradeloop append` or the HTTP API.
"""

import argparse
import hashlib
import json
import secrets
import sys
import time

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EVENT_DOMAIN = b"tradeloop/event/v1\x00"
GENESIS_DOMAIN = b"tradeloop/genesis/v1\x00"


def reject_duplicates(pairs):
    """json.loads hook: tradeloop refuses bodies with duplicate keys, so refuse them here too."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read(), object_pairs_hook=reject_duplicates)


def genesis_hash(genesis):
    """SHA-256("tradeloop/genesis/v1\\0" || RFC 8785 form of the genesis JSON)."""
    return hashlib.sha256(GENESIS_DOMAIN + rfc8785.dumps(genesis)).hexdigest()


def sign(body, secret_key_hex):
    """Returns (canonical body bytes, signing bytes, event id hex, signature hex)."""
    canonical = rfc8785.dumps(body)
    signing_bytes = EVENT_DOMAIN + canonical
    event_id = hashlib.sha256(signing_bytes).hexdigest()
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_key_hex))
    signature = key.sign(signing_bytes).hex()
    return canonical, signing_bytes, event_id, signature


def envelope(canonical, signature):
    # The body is embedded in its canonical form; any formatting would do, since tradeloop
    # re-canonicalises it, but this keeps the line exactly what was signed.
    return '{"body":' + canonical.decode("utf-8") + ',"signature":"' + signature + '"}'


def check_vectors(path):
    vectors = load_json(path)
    for v in vectors:
        canonical, signing_bytes, event_id, signature = sign(v["body"], v["secret_key"])
        assert canonical.hex() == v["canonical_hex"], f"{v['name']}: canonical bytes differ"
        assert signing_bytes.hex() == v["signing_bytes_hex"], f"{v['name']}: signing bytes differ"
        assert event_id == v["event_id"], f"{v['name']}: event id differs"
        assert signature == v["signature"], f"{v['name']}: signature differs"
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["secret_key"]))
        public = key.public_key().public_bytes_raw().hex()
        assert public == v["public_key"], f"{v['name']}: public key differs"
    print(f"{len(vectors)} vectors match")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key", help="key file written by `tradeloop keygen`")
    parser.add_argument("--genesis", help="the chain's genesis file")
    parser.add_argument("--check-vectors", help="check test vectors instead of signing")
    parser.add_argument("body", nargs="?", help="event body JSON file, or - for stdin")
    args = parser.parse_args()
    if args.check_vectors:
        check_vectors(args.check_vectors)
        return
    if not (args.key and args.body):
        parser.error("--key and BODY are required")
    key_file = load_json(args.key)
    body = json.loads(sys.stdin.read() if args.body == "-" else open(args.body).read(),
                      object_pairs_hook=reject_duplicates)
    if args.genesis:
        body.setdefault("chain", genesis_hash(load_json(args.genesis)))
    body.setdefault("key", key_file["public_key"])
    body.setdefault("time_ms", int(time.time() * 1000))
    body.setdefault("nonce", secrets.token_hex(16))
    canonical, _, _, signature = sign(body, key_file["secret_key"])
    print(envelope(canonical, signature))


if __name__ == "__main__":
    main()
