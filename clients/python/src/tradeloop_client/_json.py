"""Strict JSON reading: duplicate keys and non-finite numbers are refused, as tradeloop does."""

from __future__ import annotations

import json
from typing import Any, List, Tuple, Union


def _reject_duplicates(pairs: List[Tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: Union[bytes, str]) -> Any:
    """Parses JSON text; raises ``ValueError`` on bad JSON, a duplicate key, NaN or Infinity."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return json.loads(
        data, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
    )
