"""The hash chain, exactly as docs/CHAIN.md specifies it.

``hash = sha256(utf8(prev_hash + canonical_json(body)))`` where ``body`` holds
``data, kind, metadata, prev_hash, recorded_at, stream_id, type, version`` and the
canonical JSON is Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)``. The first record of a stream links to
``genesis_hash(stream_id)``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_GENESIS_PREFIX = b"eventstore.genesis\x00"


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, non-ASCII kept, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def genesis_hash(stream_id: str) -> str:
    """The ``prev_hash`` of a stream's first record."""
    return hashlib.sha256(_GENESIS_PREFIX + stream_id.encode("utf-8")).hexdigest()


def body_json(
    *,
    data_json: str,
    kind_json: str,
    metadata_json: str,
    prev_hash: str,
    recorded_at: str,
    stream_id_json: str,
    type_json: str,
    version: int,
) -> str:
    """``canonical_json(body)`` assembled from already-canonical parts (keys in sorted order).

    Equal, byte for byte, to ``canonical_json`` of the whole body dict; a test pins it.
    """
    return (
        f'{{"data":{data_json},"kind":{kind_json},"metadata":{metadata_json},'
        f'"prev_hash":"{prev_hash}","recorded_at":"{recorded_at}",'
        f'"stream_id":{stream_id_json},"type":{type_json},"version":{version}}}'
    )


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()
