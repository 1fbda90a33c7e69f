#!/usr/bin/env python3
"""Check tradeloop evidence offline, with nothing but the genesis file you trust.

    pip install cryptography rfc8785
    python3 verify_bundle.py --genesis GENESIS.json BUNDLE.json            # an evidence bundle
    python3 verify_bundle.py --genesis GENESIS.json --export CHAIN.jsonl   # a JSONL export

The checks are the Python client's (clients/python, `tradeloop_client.verify`, written from
docs/formats.md alone), run from this repository's copy of it when the package is not
installed; `python -m tradeloop_client.verify` is the same command. A bundle holds when every
event's signature (by a key the genesis lists for its author), id and RFC 9162 inclusion proof
hold, and every block's header hashes to what its commit certificate signs, the certificate
carries more than 2/3 of the genesis validators' power in distinct, valid signatures, and
everything names the genesis you trust. For a JSONL export the same checks run on every block,
plus the hash links, heights, times and the trailer; the ledger's rules are not replayed here
(`tradeloop verify` does that). Exit status 0 only if everything holds; each failure is printed
as `FAILED CODE: what`, with the codes of docs/formats.md.
"""

import sys
from pathlib import Path

try:
    from tradeloop_client.verify import main
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))
    from tradeloop_client.verify import main

if __name__ == "__main__":
    sys.exit(main())
