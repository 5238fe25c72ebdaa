"""The stored form of an API object: its JSON without `metadata.resourceVersion`.

The store's revision of the key is the object's resourceVersion (kube stores it
the same way), so the value never holds it; reading sets it. `json_at` gives an
object's JSON at a revision straight from the stored bytes — what `decode_value`
then `orjson.dumps` would give, with resourceVersion first in the metadata — so a
watch cache serves an object it has just stored without walking the object again.
"""
from __future__ import annotations

import orjson

_MD = b'"metadata":{'
_RV = b'"resourceVersion":'


def encode_value(obj: dict) -> bytes:
    md = obj.get("metadata") or {}
    rv = md.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            md["resourceVersion"] = rv


def decode_value(value: bytes, rev: int) -> dict:
    obj = orjson.loads(value)
    md = obj.get("metadata")
    if md is None:
        md = obj["metadata"] = {}
    md["resourceVersion"] = str(rev)
    return obj


def json_at(value: bytes, rev: int) -> bytes | None:
    """`value` (an `encode_value` result) as JSON with metadata.resourceVersion =
    `rev`, or None when the bytes are not in the plain shape this splices (no
    top-level metadata object before any nested one, or a resourceVersion already
    in them): the caller then encodes the decoded object."""
    i = value.find(_MD)
    j = i + len(_MD)
    # top level: nothing before the match opens an object or array but the value's
    # own first brace (a brace or bracket inside a string only makes this refuse)
    if i < 0 or j >= len(value) or value.count(b"{", 0, i) != 1 \
            or value.find(b"[", 0, i) >= 0 or value.find(_RV) >= 0:
        return None
    rv = b'"resourceVersion":"' + str(rev).encode() + (b'"' if value[j] == 0x7D else b'",')
    return b"".join((value[:j], rv, value[j:]))
