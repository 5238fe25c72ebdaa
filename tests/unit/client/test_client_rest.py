"""The REST client: Status bodies as named exceptions, kubeconfig loading, verbs and
patch types against a real API server."""
from __future__ import annotations

import asyncio
import base64
import os

import pytest

from kcore.client import (
    CONFIG_MAPS,
    NAMESPACES,
    PODS,
    AlreadyExists,
    Client,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RESTMapper,
    TransportError,
    build_config,
    error_from_status,
    load_kubeconfig,
)
from kcore.client.errors import is_conflict


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_status_bodies_map_to_named_errors():
    def st(code, reason, msg="m"):
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                "reason": reason, "message": msg}
    assert isinstance(error_from_status(404, st(404, "NotFound")), NotFound)
    e = error_from_status(409, st(409, "AlreadyExists"))
    assert isinstance(e, AlreadyExists) and isinstance(e, Conflict) and not is_conflict(e)
    assert is_conflict(error_from_status(409, st(409, "Conflict")))
    assert isinstance(error_from_status(410, st(410, "Expired")), Gone)
    assert isinstance(error_from_status(410, st(410, "Gone")), Gone)
    f = error_from_status(403, st(403, "Forbidden", 'pods "x" is forbidden: exceeded quota'))
    assert isinstance(f, Forbidden) and f.message.endswith("exceeded quota") and f.code == 403
    assert isinstance(error_from_status(422, st(422, "Invalid")), Invalid)
    assert isinstance(error_from_status(404, "404 page not found"), NotFound)
    t = error_from_status(504, {**st(504, "Timeout"), "details": {"retryAfterSeconds": 2}})
    assert t.retry_after == 2.0


def test_kubeconfig_with_inline_data_and_master_override(tmp_path):
    ca = base64.b64encode(b"CA").decode()
    (tmp_path / "tok").write_text("secret-token\n")
    kc = tmp_path / "config"
    kc.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {{server: "https://10.0.0.1:6443", certificate-authority-data: {ca}}}
- name: c2
  cluster: {{server: "http://127.0.0.1:9", insecure-skip-tls-verify: true}}
users:
- name: u1
  user: {{tokenFile: tok}}
contexts:
- name: one
  context: {{cluster: c1, user: u1, namespace: team}}
- name: two
  context: {{cluster: c2, user: u1}}
current-context: one
""")
    cfg = load_kubeconfig(str(kc))
    assert cfg.server == "https://10.0.0.1:6443" and cfg.ca_data == b"CA"
    assert cfg.namespace == "team" and cfg.token_file == os.path.join(tmp_path, "tok")
    assert cfg.headers()["Authorization"] == "Bearer secret-token"
    assert load_kubeconfig(str(kc), "two").insecure_skip_tls_verify
    over = build_config(master="http://127.0.0.1:8080/", kubeconfig=str(kc))
    assert over.server == "http://127.0.0.1:8080" and over.token_file
    assert build_config(master="http://h:1").server == "http://h:1"


def test_unreachable_server_is_a_transport_error():
    async def main():
        async with Client("http://127.0.0.1:9") as c:
            with pytest.raises(TransportError):
                await c.get(PODS, "x", "default")
    run(main())


def test_verbs_and_patch_types(apiserver):
    async def main():
        async with Client(apiserver.url) as c:
            cm = await c.create(CONFIG_MAPS, {"metadata": {"name": "cm1", "labels": {"a": "1"}},
                                              "data": {"k": "v"}}, "default")
            assert cm["metadata"]["resourceVersion"]
            with pytest.raises(AlreadyExists):
                await c.create(CONFIG_MAPS, cm)
            stale = dict(cm, data={"k": "v2"})
            await c.patch(CONFIG_MAPS, "cm1", {"data": {"m": "1"}}, "default")
            with pytest.raises(Conflict):
                await c.update(CONFIG_MAPS, stale)          # resourceVersion precondition
            got = await c.patch(CONFIG_MAPS, "cm1", {"metadata": {"labels": {"b": "2"}}},
                                "default", patch_type="strategic")
            assert got["metadata"]["labels"] == {"a": "1", "b": "2"}
            got = await c.patch(CONFIG_MAPS, "cm1", [{"op": "remove", "path": "/data/k"}],
                                "default", patch_type="json")
            assert got["data"] == {"m": "1"}
            lst = await c.list(CONFIG_MAPS, "default", label_selector="b=2")
            assert [i["metadata"]["name"] for i in lst["items"]] == ["cm1"]
            for i in range(5):
                await c.create(CONFIG_MAPS, {"metadata": {"name": f"page-{i}"}}, "default")
            items, rv = await c.list_all(CONFIG_MAPS, "default", page_size=2)
            assert len(items) == 6 and int(rv) > 0
            await c.delete(CONFIG_MAPS, "cm1", "default")
            with pytest.raises(NotFound):
                await c.get(CONFIG_MAPS, "cm1", "default")
            with pytest.raises(Forbidden):
                await c.delete(NAMESPACES, "default")
            # a watch from a list's resourceVersion sees later changes only
            seen = []

            async def watch():
                async for ev in c.watch(CONFIG_MAPS, "default", resource_version=rv,
                                        timeout_seconds=5):
                    seen.append((ev.type, ev.object["metadata"]["name"]))
                    if ev.object["metadata"]["name"] == "page-0":
                        return
            t = asyncio.create_task(watch())
            await asyncio.sleep(0.2)
            await c.delete(CONFIG_MAPS, "page-0", "default")
            await asyncio.wait_for(t, 5)
            assert seen == [("DELETED", "cm1"), ("DELETED", "page-0")]
            m = RESTMapper()
            await m.refresh(c)
            assert m.for_kind("apps/v1", "Deployment").plural == "deployments"
            assert m.for_kind("v1", "Pod").namespaced
            assert "status" in m.for_kind("v1", "Pod").subresources
    run(main())


def test_watch_lines_split_at_any_byte():
    """Watch events whose lines arrive cut at arbitrary bytes (and several per read)
    come out whole, in order; blank keep-alive lines are skipped."""
    import orjson
    from aiohttp import web

    events = [{"type": "ADDED", "object": {"kind": "ConfigMap", "metadata": {
        "name": f"cm-{i}", "resourceVersion": str(10 + i)}, "data": {"k": "v" * (i * 13)}}}
        for i in range(40)]
    wire = b"".join(orjson.dumps(e) + (b"\n\n" if i % 7 == 0 else b"\n")
                    for i, e in enumerate(events))

    async def handler(request):
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        sizes = [1, 7, 2, 300, 5, 64, 3]
        i = n = 0
        while i < len(wire):
            step = sizes[n % len(sizes)]
            await resp.write(wire[i:i + step])
            await asyncio.sleep(0)
            i += step
            n += 1
        return resp

    async def main():
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/default/configmaps", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        c = Client(f"http://127.0.0.1:{port}")
        try:
            got = [(ev.type, ev.object) async for ev in c.watch(CONFIG_MAPS, "default")]
        finally:
            await c.close()
            await runner.cleanup()
        assert got == [(e["type"], e["object"]) for e in events]
    run(main())
