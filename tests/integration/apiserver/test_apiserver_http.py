"""The seed's curls, health and metrics, watch edge cases, and malformed input
(hypothesis): no 5xx, nothing written."""
from __future__ import annotations

import json
import socket
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_seed_curls(cluster):
    s, body, _ = cluster.http("GET", "/")
    assert s == 200 and "/api/v1" in body["paths"]
    s, body, _ = cluster.http("GET", "/apis")
    assert {g["name"] for g in body["groups"]} >= {"apps", "autoscaling",
                                                   "coordination.k8s.io"}
    s, body, _ = cluster.http("GET", "/api/v1")
    pods = next(r for r in body["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and "watch" in pods["verbs"]
    s, body, _ = cluster.http("GET", "/version")
    assert body["major"] == "1" and body["minor"] == "32" and body["gitVersion"].startswith(
        "v1.32.")
    for path in ("/healthz/etcd", "/healthz", "/livez", "/readyz"):
        s, body, _ = cluster.http("GET", path)
        assert (s, body) == (200, "ok")
    s, body, _ = cluster.http("GET", "/apis/autoscaling/v1")
    assert body["groupVersion"] == "autoscaling/v1"
    s, body, _ = cluster.http("GET", "/metrics")
    assert "apiserver_request_total" in body
    s, body, _ = cluster.http("GET", "/openapi/v2")
    assert s == 404
    s, body, _ = cluster.http("GET", "/openapi/v3")
    assert "api/v1" in body["paths"]


def test_list_paging_and_too_old_watch(cluster):
    for i in range(5):
        s, _, _ = cluster.http("POST", "/api/v1/namespaces/default/configmaps",
                               {"metadata": {"name": f"page-{i}", "labels": {"pg": "1"}}})
        assert s == 201
    names, cont = [], ""
    while True:
        s, body, _ = cluster.http("GET", "/api/v1/namespaces/default/configmaps?"
                                  f"labelSelector=pg%3D1&limit=2&continue={cont}")
        names += [i["metadata"]["name"] for i in body["items"]]
        cont = body["metadata"].get("continue", "")
        if not cont:
            break
    assert names == [f"page-{i}" for i in range(5)]
    # a watch far in the past: ERROR event with a 410 Status once history is gone
    s, body, _ = cluster.http("GET", "/api/v1/namespaces/default/configmaps?watch=1&"
                              "resourceVersion=1&timeoutSeconds=1")
    assert s == 200


def test_watch_bookmarks_and_timeout(cluster):
    s, body, _ = cluster.http("GET", "/api/v1/namespaces/default/pods")
    rv = body["metadata"]["resourceVersion"]
    with urllib.request.urlopen(cluster.url + "/api/v1/namespaces/default/pods?watch=true&"
                                f"resourceVersion={rv}&timeoutSeconds=2&"
                                "allowWatchBookmarks=true&sendInitialEvents=false",
                                timeout=10) as r:
        raw = r.read()
    assert r.status == 200
    for line in raw.splitlines():
        assert json.loads(line)["type"] in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")


def test_body_limits_and_errors(cluster):
    s, body, _ = cluster.http("POST", "/api/v1/namespaces/default/configmaps",
                              b"x" * (3 * 1024 * 1024 + 10))
    assert s == 413 and body["reason"] == "RequestEntityTooLarge"
    s, body, _ = cluster.http("POST", "/api/v1/namespaces/default/configmaps", b"{not json")
    assert s == 400 and body["kind"] == "Status"
    s, body, _ = cluster.http("POST", "/api/v1/namespaces/default/configmaps", b"a: [",
                              ctype="application/yaml")
    assert s == 400
    s, body, _ = cluster.http("PATCH", "/api/v1/namespaces/default/configmaps/x", b"{}",
                              ctype="text/plain")
    assert s == 415
    s, body, _ = cluster.http("GET", "/api/v1/namespaces/default/nosuch")
    assert s == 404
    s, body, _ = cluster.http("GET", "/api/v1/pods?labelSelector=a+in+(")
    assert s == 400


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) |
                     st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda ch: st.lists(ch, max_size=4) | st.dictionaries(
                         st.sampled_from(["metadata", "spec", "status", "name", "containers",
                                          "image", "ports", "labels", "kind", "apiVersion",
                                          "replicas", "selector", "x"]) | st.text(max_size=8),
                         ch, max_size=5), max_leaves=25)


def _count(cluster, path):
    s, body, _ = cluster.http("GET", path)
    return len(body["items"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_json, target=st.sampled_from(["pods", "services", "replicationcontrollers"]),
       raw=st.binary(max_size=64), use_raw=st.booleans())
def test_fuzz_malformed_bodies(cluster, body, target, raw, use_raw):
    path = f"/api/v1/namespaces/fuzz/{target}"
    before = _count(cluster, f"/api/v1/{target}")
    data = raw if use_raw else json.dumps(body).encode()
    s, resp, _ = cluster.http("POST", "/api/v1/namespaces/default/" + target, data)
    assert s < 500, resp
    s2, resp2, _ = cluster.http("POST", path, data)     # namespace does not exist
    assert s2 < 500 and s2 != 201, resp2
    if s != 201:
        assert _count(cluster, f"/api/v1/{target}") == before
    else:
        name = resp["metadata"]["name"]
        cluster.http("DELETE", f"/api/v1/namespaces/default/{target}/{name}?gracePeriodSeconds=0")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(patch=_json, ctype=st.sampled_from(["application/merge-patch+json",
                                           "application/strategic-merge-patch+json",
                                           "application/json-patch+json"]))
def test_fuzz_patches(cluster, patch, ctype):
    s, _, _ = cluster.http("PUT", "/api/v1/namespaces/default/configmaps/fuzzed",
                           {"metadata": {"name": "fuzzed"}, "data": {"a": "b"}})
    if s == 404:
        cluster.http("POST", "/api/v1/namespaces/default/configmaps",
                     {"metadata": {"name": "fuzzed"}, "data": {"a": "b"}})
    s, resp, _ = cluster.http("PATCH", "/api/v1/namespaces/default/configmaps/fuzzed",
                              json.dumps(patch).encode(), ctype=ctype)
    assert s < 500, resp


def test_raw_socket_garbage(cluster):
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as sk:
        sk.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        data = sk.recv(1000)
    assert data.split(b" ")[1] == b"400"
    s, _, _ = cluster.http("GET", "/healthz")
    assert s == 200


@pytest.mark.parametrize("q", ["watch=1", "watch=True", "watch=true"])
def test_watch_param_forms(cluster, q):
    with urllib.request.urlopen(cluster.url + f"/api/v1/namespaces/default/services?{q}&"
                                "timeoutSeconds=1", timeout=10) as r:
        lines = r.read().splitlines()
    assert any(json.loads(ln)["object"]["metadata"]["name"] == "kubernetes" for ln in lines)


def test_sigterm_ends_watches_and_exits_at_once():
    """A stop does not wait for watch streams (kube-apiserver closes them): one idle
    watch ends with its last chunk, and one whose client stopped reading (its socket
    full) is cut, and the process is gone within seconds of SIGTERM."""
    import signal
    import time

    from .conftest import running

    with running("embedded", prefix="kcore-apiserver-stop-") as c:
        c.http("POST", "/api/v1/namespaces/default/configmaps",
               {"metadata": {"name": "big"}, "data": {"k": "x" * 200_000}})
        idle = socket.create_connection(("127.0.0.1", c.port))
        idle.sendall(b"GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        stuck = socket.create_connection(("127.0.0.1", c.port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /api/v1/configmaps?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        for i in range(20):        # ~4 MB of events the stuck client never reads
            status, _, _ = c.http("PUT", "/api/v1/namespaces/default/configmaps/big",
                                  {"metadata": {"name": "big"}, "data": {"k": str(i) * 200_000}})
            assert status == 200
        idle.settimeout(5)
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        c.proc.wait(15)
        took = time.monotonic() - t0
        assert c.proc.returncode == 0, c.log()
        assert took < 8, f"SIGTERM took {took:.1f}s with open watches"
        rest = b""
        while True:
            b = idle.recv(65536)
            if not b:
                break
            rest += b
        assert rest.endswith(b"0\r\n\r\n"), rest[-200:]   # the chunked stream's end
        idle.close()
        stuck.close()
