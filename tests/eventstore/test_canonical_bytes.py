"""The fast path hashes exactly docs/CHAIN.md's bytes: the body the store builds from
pre-encoded parts is byte for byte the canonical JSON of the record, and canonical JSON
is the documented ``json.dumps``."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from eventstore import (
    canonical_json,
)
from eventstore._canonical import body_json

# -- the fast path hashes the spec's bytes ---------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@given(
    data=objects,
    metadata=objects,
    stream=st.text(min_size=1, max_size=20),
    type_=st.text(min_size=1, max_size=20),
    version=st.integers(1, 10**9),
)
def test_the_fast_body_is_byte_for_byte_the_canonical_body(
    data: dict[str, object],
    metadata: dict[str, object],
    stream: str,
    type_: str,
    version: int,
) -> None:
    prev, at = "ab" * 32, "2026-12-01T09:00:00.000001Z"
    full = canonical_json(
        {
            "data": data,
            "kind": "event",
            "metadata": metadata,
            "prev_hash": prev,
            "recorded_at": at,
            "stream_id": stream,
            "type": type_,
            "version": version,
        }
    )
    fast = body_json(
        data_json=canonical_json(data),
        kind_json=canonical_json("event"),
        metadata_json=canonical_json(metadata),
        prev_hash=prev,
        recorded_at=at,
        stream_id_json=canonical_json(stream),
        type_json=canonical_json(type_),
        version=version,
    )
    assert fast == full


@given(value=objects)
def test_canonical_json_is_the_documented_json_dumps(value: dict[str, object]) -> None:
    documented = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert canonical_json(value) == documented
