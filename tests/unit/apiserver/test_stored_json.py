"""`stored.json_at` (JSON spliced from the stored bytes) against its reference:
decode the stored value, then encode the object."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.apiserver.stored import decode_value, encode_value, json_at
from kcore.apiserver.watchcache import Entry, Event

_text = st.text(alphabet=st.sampled_from('ab{}[]":,\\ é\x00metadatresourceVsion'),
                max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), _text)
_json = st.recursive(_scalar, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(_text, kids, max_size=3)), max_leaves=12)
_keys = st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status", "items", "x"])


@st.composite
def objects(draw) -> dict:
    """API-object-like dicts: any top-level key order, a metadata dict (maybe empty,
    maybe holding nested objects, a resourceVersion or a "metadata" key of its own),
    other members with arbitrary JSON (nested "metadata" objects included)."""
    obj: dict = {}
    for k in draw(st.lists(_keys, unique=True, max_size=6)):
        if k == "metadata":
            obj[k] = draw(st.dictionaries(st.sampled_from(
                ["name", "namespace", "labels", "resourceVersion", "metadata", "uid"]),
                _json, max_size=4))
        elif k in ("apiVersion", "kind"):
            obj[k] = draw(_text)
        else:
            obj[k] = draw(st.one_of(_json, st.fixed_dictionaries({"metadata": _json})))
    return obj


@settings(max_examples=600, deadline=None)
@given(objects(), st.integers(1, 2**62))
def test_json_at_agrees_with_decode_then_encode(obj, rev):
    value = encode_value(obj)
    out = json_at(value, rev)
    ref = decode_value(value, rev)
    if out is not None:
        assert orjson.loads(out) == ref
        assert orjson.loads(out)["metadata"]["resourceVersion"] == str(rev)
    ent = Entry(b"/k", ref, rev, value)
    assert orjson.loads(ent.json()) == ref
    assert ent.json() is ent.json()
    line = Event("MODIFIED", ent, None, rev).line()
    assert line.endswith(b"\n") and orjson.loads(line) == {"type": "MODIFIED", "object": ref}


def test_json_at_splices_the_usual_shape():
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default", "resourceVersion": "7"},
           "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}
    value = encode_value(pod)
    assert b"resourceVersion" not in value
    assert pod["metadata"]["resourceVersion"] == "7"     # put back after encoding
    out = json_at(value, 42)
    assert out is not None and out.startswith(
        b'{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"42","name":"p"')
    assert json_at(encode_value({"kind": "X", "metadata": {}}), 3) == \
        b'{"kind":"X","metadata":{"resourceVersion":"3"}}'


def test_json_at_refuses_what_it_cannot_place():
    # a nested "metadata" before the top-level one, none at all, a stray resourceVersion
    assert json_at(orjson.dumps({"spec": {"metadata": {}}, "metadata": {"name": "a"}}), 1) \
        is None
    assert json_at(orjson.dumps({"kind": "X"}), 1) is None
    assert json_at(orjson.dumps({"metadata": {"a": {"resourceVersion": "9"}}}), 1) is None
    assert json_at(b'{"metadata":{', 1) is None
