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
import json.encoder
from typing import Any

_GENESIS_PREFIX = b"eventstore.genesis\x00"


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _not_serialisable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder that JSONEncoder.encode builds afresh on every call, built once. Without
# a markers dict it does not look for cycles: callers reject those first (orjson does).
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    _MAKE_ENCODER(
        None,
        _not_serialisable,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        True,
        False,
        False,
    )
    if _MAKE_ENCODER is not None
    else None
)


def canonical_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, non-ASCII kept, no NaN/Infinity.

    Exactly the text of ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, allow_nan=False)``.
    """
    if _C_ENCODE is None or isinstance(value, str):
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


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
