"""The API server's lean HTTP/1.1 front (apiserver/fastpath.py) on a real socket:
pipelined calls answered in order, handover to aiohttp at a request boundary (a
watch, a chunked body, a malformed head), 413 with a Status body, Connection:
close, and the same answers as the aiohttp path gives."""
from __future__ import annotations

import json
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.apiserver.fastpath import Head, fast_route, parse_head_ref

from .conftest import running


@pytest.fixture(scope="module")
def api():
    with running("embedded", "kcore-fastpath-") as c:
        yield c


# -- the head parser and the route filter (pure) -------------------------------------------
def _parsers():
    """The Python reference and, when built, the native kernel (what `parse_head` is)."""
    out = [parse_head_ref]
    try:
        from kcore._native.httphead import parse_head as native
        out.append(lambda head: native(head, Head))
    except ImportError:
        pass
    return out


@pytest.fixture(params=["reference", "native"])
def parse_head(request):
    ps = _parsers()
    if request.param == "native" and len(ps) < 2:
        pytest.skip("the native head parser is not built")
    return ps[0] if request.param == "reference" else ps[1]


def test_parse_head(parse_head):
    h = parse_head(b"POST /api/v1/namespaces/a/pods?x=1 HTTP/1.1\r\nHost: h\r\n"
                   b"Content-Length: 12\r\nConnection: keep-alive")
    assert (h.method, h.target, h.length, h.keep_alive) == (
        "POST", "/api/v1/namespaces/a/pods?x=1", 12, True)
    assert h.headers == [("Host", "h"), ("Content-Length", "12"), ("Connection", "keep-alive")]
    assert parse_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive is False
    assert parse_head(b"GET / HTTP/1.1").length == 0
    for bad in (b"GET / HTTP/1.0", b"HEAD / HTTP/1.1", b"GET  / HTTP/1.1", b"GET x HTTP/1.1",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked",
                b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade",
                b"POST / HTTP/1.1\r\nExpect: 100-continue",
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
                b"POST / HTTP/1.1\r\nContent-Length: -1",
                b"GET / HTTP/1.1\r\nHost: a\r\n folded",
                b"GET / HTTP/1.1\r\nBad Name : x", b"GET / HTTP/1.1\r\nnocolon",
                b"POST / HTTP/1.1\r\nContent-Length: \xb2",      # a digit to str.isdigit
                b"GET /\xe9 HTTP/1.1", b"G\xc9T / HTTP/1.1"):
        assert parse_head(bad) is None, bad


def _parse_head_bytes(head: bytes):
    """The reference: the head parsed as bytes, line by line (the parser before it
    decoded the head once)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1" or not parts[1].startswith(b"/"):
        return None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        return None
    headers, length, keep_alive = [], -1, True
    for ln in lines[1:]:
        name, sep, value = ln.partition(b":")
        if not sep or not name or name != name.strip() or ln[:1] in (b" ", b"\t"):
            return None
        n, v = name.decode("latin-1"), value.strip().decode("latin-1")
        low = n.lower()
        if low == "content-length":
            if not (v.isascii() and v.isdigit()) or (length >= 0 and int(v) != length):
                return None
            length = int(v)
        elif low in ("transfer-encoding", "upgrade", "expect"):
            return None
        elif low == "connection":
            tokens = {t.strip().lower() for t in v.split(",")}
            if "upgrade" in tokens:
                return None
            if "close" in tokens:
                keep_alive = False
        headers.append((n, v))
    return (method, target, headers, max(length, 0), keep_alive)


_PIECES = [b"GET", b"POST", b"HEAD", b" ", b"/", b"/api", b"\r\n", b":", b": ", b"Host",
           b"Content-Length", b"content-length", b"Connection", b"close", b"Upgrade",
           b"keep-alive, close", b"12", b"7", b"\xb2", b"\xa0", b"\x85", b"\xe9", b"\t",
           b"\x0b", b"HTTP/1.1", b"HTTP/1.0", b"x", b"Transfer-Encoding", b",", b"Expect"]


@settings(max_examples=3000, deadline=None)
@given(first=st.sampled_from([b"GET /x HTTP/1.1", b"POST /api/v1 HTTP/1.1",
                              b"PUT /a?b=c HTTP/1.1", b"DELETE / HTTP/1.0", b""]),
       rest=st.lists(st.sampled_from(_PIECES), max_size=16))
def test_parse_head_agrees_with_the_bytes_parser(first, rest):
    head = first + b"".join(rest)
    want = _parse_head_bytes(head)
    for parse in _parsers():
        got = parse(head)
        assert (None if got is None else
                (got.method, got.target, got.headers, got.length, got.keep_alive)) == want


_HEADER_BYTES = st.lists(st.one_of(st.binary(max_size=6), st.sampled_from(
    [b"\r\n", b":", b" ", b"\t", b"Content-Length", b"CONNECTION", b"Upgrade", b"close",
     b"0", b"42", b",", b"\xe9", b"\xa0", b"\x0c"])), max_size=24).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(head=st.one_of(st.binary(max_size=120), st.tuples(st.sampled_from(
    [b"GET / HTTP/1.1\r\n", b"PATCH /a%20b?c HTTP/1.1\r\nHost: x\r\n", b"POST / HTTP/1.1"]),
    _HEADER_BYTES).map(b"".join)))
def test_native_parse_head_agrees_with_the_reference_on_any_bytes(head):
    ps = _parsers()
    if len(ps) < 2:
        pytest.skip("the native head parser is not built")
    ref, nat = ps[0](head), ps[1](head)
    assert (None if ref is None else (ref.method, ref.target, ref.headers, ref.length,
                                      ref.keep_alive)) == \
        (None if nat is None else (nat.method, nat.target, nat.headers, nat.length,
                                   nat.keep_alive))


def test_fast_route():
    from multidict import MultiDict, MultiDictProxy

    def q(**kw):
        return MultiDictProxy(MultiDict(kw))
    info = fast_route("POST", "/api/v1/namespaces/a/pods", q())
    assert (info.verb, info.namespace, info.resource) == ("create", "a", "pods")
    info = fast_route("POST", "/api/v1/namespaces/a/pods/p/binding", q())
    assert (info.name, info.subresource) == ("p", "binding")
    assert fast_route("GET", "/apis/apps/v1", q())
    assert fast_route("GET", "/healthz/etcd", q())
    assert not fast_route("GET", "/api/v1/pods", q(watch="true"))
    assert not fast_route("GET", "/api/v1/watch/pods", q())
    assert not fast_route("GET", "/api/v1/namespaces/a/pods/p/log", q())
    assert not fast_route("POST", "/api/v1/namespaces/a/pods/p/exec", q())
    assert not fast_route("GET", "/api/v1/namespaces/a/services/s/proxy/x", q())
    assert not fast_route("GET", "/logs/", q())
    assert not fast_route("GET", "/", q())


# -- on the wire ----------------------------------------------------------------------------
def _conn(api) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    return s


def _req(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


class Reader:
    def __init__(self, s: socket.socket):
        self.s, self.buf = s, b""

    def _fill(self) -> bool:
        d = self.s.recv(65536)
        self.buf += d
        return bool(d)

    def response(self) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), "connection closed before a response"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                assert self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            body = b""
        return status, headers, body

    def closed(self) -> bool:
        try:
            return not self._fill()
        except ConnectionResetError:
            return True


def _cm(name: str, **data) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name}, "data": data}).encode()


def test_pipelined_calls_answered_in_order(api):
    s = _conn(api)
    r = Reader(s)
    s.sendall(_req("POST", "/api/v1/namespaces/default/configmaps", _cm("fp-a", k="1"))
              + _req("GET", "/api/v1/namespaces/default/configmaps/fp-a")
              + _req("GET", "/api/v1/namespaces/default/configmaps/fp-missing")
              + _req("DELETE", "/api/v1/namespaces/default/configmaps/fp-a"))
    st, h, body = r.response()
    assert st == 201 and h["content-type"] == "application/json" and "date" in h
    created = json.loads(body)
    st, _, body = r.response()
    assert st == 200 and json.loads(body)["metadata"]["resourceVersion"] == \
        created["metadata"]["resourceVersion"]
    st, _, body = r.response()
    missing = json.loads(body)
    assert st == 404 and missing["kind"] == "Status" and missing["reason"] == "NotFound"
    st, _, _ = r.response()
    assert st == 200
    s.close()


def test_same_answers_as_aiohttp(api):
    """A call the fast path serves and the same call through aiohttp (HTTP/1.0 is
    always handed over) agree on status, content type and body."""
    for path in ("/api/v1/namespaces/default/configmaps/none", "/version", "/apis/apps/v1",
                 "/api/v1/namespaces/default/services/kubernetes"):
        out = []
        for version in ("1.1", "1.0"):
            s = _conn(api)
            s.sendall(f"GET {path} HTTP/{version}\r\nHost: x\r\n\r\n".encode())
            r = Reader(s)
            st, h, body = r.response()
            out.append((st, h["content-type"], json.loads(body)))
            s.close()
        assert out[0] == out[1], path


def test_watch_on_a_fast_connection_is_handed_over(api):
    s = _conn(api)
    r = Reader(s)
    s.sendall(_req("POST", "/api/v1/namespaces/default/configmaps", _cm("fp-w")))
    st, _, body = r.response()
    assert st == 201
    rv = json.loads(body)["metadata"]["resourceVersion"]
    # a watch from that revision and, pipelined behind it, nothing else: aiohttp streams
    s.sendall(_req("GET", "/api/v1/namespaces/default/configmaps?watch=true&"
                   f"resourceVersion={rv}&timeoutSeconds=5&fieldSelector=metadata.name%3Dfp-w"))
    a = _conn(api)
    a.sendall(_req("PUT", "/api/v1/namespaces/default/configmaps/fp-w", _cm("fp-w", k="2")))
    assert Reader(a).response()[0] == 200
    a.close()
    while b'"MODIFIED"' not in r.buf:
        assert r._fill()
    assert b"HTTP/1.1 200" in r.buf and b"chunked" in r.buf.lower()
    s.close()


def test_chunked_body_goes_to_aiohttp(api):
    s = _conn(api)
    body = _cm("fp-chunked")
    s.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
              + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
              + _req("GET", "/api/v1/namespaces/default/configmaps/fp-chunked"))
    r = Reader(s)
    assert r.response()[0] == 201
    st, _, got = r.response()
    assert st == 200 and json.loads(got)["metadata"]["name"] == "fp-chunked"
    s.close()


def test_malformed_head_gets_aiohttp_400(api):
    s = _conn(api)
    s.sendall(b"GET /api/v1 HTTP/1.1\r\nBad Header\r\n\r\n")
    assert Reader(s).response()[0] == 400
    s.close()


def test_non_ascii_digit_length_gets_an_answer(api):
    """"²" is a digit to str.isdigit(): the parser once raised on int() of it and the
    connection was dropped without an answer; now aiohttp judges the head."""
    s = _conn(api)
    s.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: \xb2\r\n\r\n")
    assert Reader(s).response()[0] == 400
    s.close()


def test_too_large_body_is_413_status_and_close(api):
    s = _conn(api)
    n = 3 * 1024 * 1024 + 10
    s.sendall(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n"
              + f"Content-Length: {n}\r\n\r\n".encode() + b"x" * n)
    r = Reader(s)
    st, h, body = r.response()
    doc = json.loads(body)
    assert st == 413 and doc["kind"] == "Status" and doc["code"] == 413
    assert h.get("connection") == "close" and r.closed()
    s.close()
    s, _, _ = api.http("GET", "/api/v1/namespaces/default/configmaps")
    assert s == 200


def test_connection_close_is_honoured(api):
    s = _conn(api)
    s.sendall(_req("GET", "/version", extra="Connection: close\r\n"))
    r = Reader(s)
    st, h, _ = r.response()
    assert st == 200 and h["connection"] == "close" and r.closed()
    s.close()


def test_yaml_and_errors_with_bodies(api):
    s = _conn(api)
    r = Reader(s)
    s.sendall(_req("GET", "/api/v1/namespaces/default/services/kubernetes",
                   extra="Accept: application/yaml\r\n"))
    st, h, body = r.response()
    assert st == 200 and h["content-type"] == "application/yaml" and b"kind: Service" in body
    s.sendall(_req("POST", "/api/v1/namespaces/default/configmaps", b"{not json"))
    st, _, body = r.response()
    assert st == 400 and json.loads(body)["kind"] == "Status"
    s.close()
