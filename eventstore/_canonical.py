"""The hash chains, exactly as docs/CHAIN.md specifies them.

Each stream: ``hash = sha256(utf8(prev_hash + body))`` where ``body`` is the canonical
JSON object of ``data, kind, metadata, prev_hash, recorded_at, stream_id, type, version``
with ``data`` and ``metadata`` as their stored text, and the canonical JSON is Python's
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)``. The first record of a stream links to ``genesis_hash(stream_id)``.

The store: ``log_hash = sha256(utf8(prev_log_hash + hash + str(position)))``, linking
every record to the one before it in commit order; position 1 links to ``LOG_GENESIS``.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from typing import Any, Literal

_GENESIS_PREFIX = b"eventstore.genesis\x00"

LOG_GENESIS = hashlib.sha256(b"eventstore.log.genesis").hexdigest()
"""The ``prev_log_hash`` of the store's first record (position 1)."""


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


def log_link(prev_log_hash: str, hash_: str, position: int) -> str:
    """The store-wide link of the record at ``position`` whose hash is ``hash_``."""
    return hashlib.sha256(f"{prev_log_hash}{hash_}{position}".encode()).hexdigest()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _DuplicateKey(ValueError):
    """Valid JSON (RFC 8259 only says keys SHOULD be unique), but never canonical."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}")
        result[key] = value
    return result


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)


TextProblem = tuple[Literal["unreadable record", "non-canonical text"], str]


def text_problem(text: object, what: str) -> TextProblem | None:
    """Why stored ``text`` is not the canonical JSON text of an object, as ``(reason,
    detail)``: ``"unreadable record"`` (not text, not JSON, not an object) or
    ``"non-canonical text"``; None when it is canonical.

    The reader's rule: a record's ``data`` and ``metadata`` must be exactly
    ``canonical_json`` of the object they parse to, so that no two readers (nor the
    database's own JSON functions) can take different values from one hashed text:
    duplicate keys, whitespace, other float or escape forms are refused.
    """
    if not isinstance(text, str):
        return "unreadable record", f"{what} is {type(text).__name__}, not text"
    try:
        value = _STRICT.decode(text)
    except _DuplicateKey as exc:
        return "non-canonical text", f"{what} has a {exc}"
    except ValueError as exc:
        return "unreadable record", f"{what} is not JSON: {exc}"
    if not isinstance(value, dict):
        return "unreadable record", f"{what} is a JSON {type(value).__name__}, not an object"
    try:
        canonical = canonical_json(value)
    except ValueError as exc:  # a number too large for a float (1e400) reads as inf
        return "non-canonical text", f"{what} has no canonical form: {exc}"
    if canonical != text:
        return "non-canonical text", f"{what} is not canonical JSON: {text[:80]!r}"
    return None
