"""The process runtime with real processes: exit codes, signals, graceful stop,
exec, log files, leftovers reaped; the fake runtime; the lean HTTP pool."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from aiohttp import web

from kcore.kubelet.hollow import Lateness
from kcore.kubelet.hollow_http import LeanPool
from kcore.kubelet.podips import PodIPAllocator
from kcore.kubelet.runtime.base import PodRef, Sandbox, StartError
from kcore.kubelet.runtime.fake import FakeRuntime
from kcore.kubelet.runtime.process import ProcessRuntime, reap_leftovers

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WHO": "kcore"}
SB = Sandbox(PodRef("ns", "p", "uid-1"), "127.0.0.1")


def run(coro):
    return asyncio.run(coro)


def test_exit_codes_logs_and_exec(tmp_path):
    async def go():
        rt = ProcessRuntime(str(tmp_path))
        c = await rt.start_container({}, {"name": "c", "command": ["sh", "-c"],
                                          "args": ["echo out $WHO; echo err >&2; exit 4"]},
                                     SB, 0, ENV)
        e = await asyncio.wait_for(c.done, 10)
        assert (e.code, e.reason, e.signal) == (4, "Error", 0)
        assert open(c.log_path).read() == "out kcore\nerr\n"
        assert c.log_path.endswith("ns_p_uid-1/c/0.log")
        s = await rt.start_container({}, {"name": "s", "command": ["sleep", "30"]}, SB, 1, ENV)
        code, out = await rt.exec(s, ["sh", "-c", "echo $WHO; exit 2"], 5)
        assert (code, out) == (2, "kcore")
        assert (await rt.exec(s, ["sleep", "5"], 0.2))[0] is None
        t0 = time.monotonic()
        e = await rt.stop_container(s, 5)
        assert (e.code, e.signal) == (143, signal.SIGTERM) and time.monotonic() - t0 < 3
        stubborn = await rt.start_container({}, {"name": "t", "command": [
            "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]}, SB, 0, ENV)
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        e = await rt.stop_container(stubborn, 0.5)
        assert e.code == 137 and 0.4 < time.monotonic() - t0 < 3
        with pytest.raises(StartError, match="executable file not found"):
            await rt.start_container({}, {"name": "x", "command": ["no-such-binary-kc"]},
                                     SB, 0, ENV)
        with pytest.raises(StartError, match="chdir to cwd"):
            await rt.start_container({}, {"name": "y", "command": ["true"],
                                          "workingDir": "/no/such/dir"}, SB, 0, ENV)
        d = await rt.start_container({}, {"name": "d", "image": "python"}, SB, 0, ENV)
        assert not d.done.done()           # no command: a stand-in that runs until stopped
        await rt.close()
        assert d.done.done()
    run(go())


def test_reap_leftovers(tmp_path):
    async def go():
        rt = ProcessRuntime(str(tmp_path))
        c = await rt.start_container({}, {"name": "c", "command": ["sleep", "30"]}, SB, 0, ENV)
        return c.pid
    pid = run(go())               # the loop is gone; the process is not
    os.killpg(pid, 0)
    assert reap_leftovers(str(tmp_path)) == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("leftover still alive")
    assert reap_leftovers(str(tmp_path)) == 0


def test_fake_runtime(tmp_path):
    async def go():
        rt = FakeRuntime(str(tmp_path), PodIPAllocator("10.9.0.0/24"))
        sb = await rt.setup_sandbox({"metadata": {"name": "p", "namespace": "d", "uid": "u"}})
        assert sb.ip == "10.9.0.2"
        c = await rt.start_container({}, {"name": "c", "image": "x"}, sb, 0, {})
        assert not c.done.done()
        assert (await rt.stop_container(c, 1)).code == 143
        await rt.teardown_sandbox(sb.pod)
        assert not rt.ips.by_uid
    run(go())


def test_lean_pool_pipelines_and_parses(tmp_path):
    async def go():
        seen = []

        async def put(request):
            body = await request.json()
            seen.append(body["n"])
            if body["n"] == 3:
                return web.json_response({"kind": "Status", "code": 409, "reason": "Conflict",
                                          "message": "the object has been modified"},
                                         status=409)
            return web.json_response({"n": body["n"], "metadata": {"resourceVersion": "7"}})

        async def chunked(request):
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"a":')
            await resp.write(b'1}')
            await resp.write_eof()
            return resp
        app = web.Application()
        app.router.add_put("/x", put)
        app.router.add_get("/c", chunked)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        pool = LeanPool(f"http://127.0.0.1:{port}", {"Authorization": "Bearer t"}, size=2,
                        depth=4)
        outs = await asyncio.gather(*(pool.request_json("PUT", "/x", {"n": i})
                                      for i in range(20) if i != 3))
        assert sorted(o["n"] for o in outs) == [i for i in range(20) if i != 3]
        from kcore.client.errors import Conflict
        with pytest.raises(Conflict):
            await pool.request_json("PUT", "/x", {"n": 3})
        st, raw = await pool.request("GET", "/c")
        assert (st, raw) == (200, b'{"a":1}')
        pool.close()
        await runner.cleanup()
    run(go())


def test_lateness_histogram():
    h = Lateness()
    for v in [0.001] * 98 + [3.0, 30.0]:
        h.add(v)
    d = h.as_dict()
    assert d["count"] == 100 and d["p50_le_s"] == 0.01 and d["p99_le_s"] == 5
    assert d["max_s"] == 30.0
