"""The kubelet's HTTP API (plain HTTP, as kcore's API server calls it):

    GET /healthz                                      ok
    GET /pods                                         PodList of the pods this kubelet runs
    GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=
        &limitBytes=&sinceSeconds=                    text/plain (streamed with follow)
    GET /stats/summary                                node and pod usage (kube's Summary API)

The API server proxies `pods/log` here (daemonEndpoints.kubeletEndpoint.Port)."""
from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import time

import orjson
from aiohttp import web

from kcore.kubelet.logs import LogIndex, attempts, read_lines
from kcore.kubelet.runtime.base import PodRef

log = logging.getLogger("kcore.kubelet.server")


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "t", "yes")


def _int(v: str | None) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise web.HTTPBadRequest(text=f"invalid integer {v!r}") from None


class KubeletServer:
    def __init__(self, kubelet, index_period: float = 0.5):
        self.kl = kubelet
        self.index_period = index_period
        self.indexes: dict[str, LogIndex] = {}
        self.app = web.Application()
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/pods", self.pods)
        self.app.router.add_get("/pods/", self.pods)
        self.app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        self.app.router.add_get("/stats/summary", self.summary)
        self.app.router.add_get("/stats/summary/", self.summary)
        self.runner: web.AppRunner | None = None
        self._task: asyncio.Task | None = None

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        srv = site._server
        bound = srv.sockets[0].getsockname()[1] if srv and srv.sockets else port
        self._task = asyncio.get_running_loop().create_task(self._index_loop())
        return bound

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.runner is not None:
            await self.runner.cleanup()

    # -- log timestamps -------------------------------------------------------------------
    def index(self, path: str) -> LogIndex:
        ix = self.indexes.get(path)
        if ix is None:
            ix = self.indexes[path] = LogIndex(path)
        return ix

    def observe_logs(self) -> None:
        now = time.time()
        live = set()
        for w in list(self.kl.workers.values()):
            for r in w.all_recs():
                if r.handle is not None:
                    live.add(r.handle.log_path)
                    self.index(r.handle.log_path).observe(now)
        for p in [p for p in self.indexes if p not in live]:
            self.indexes[p].observe(now)
            del self.indexes[p]

    async def _index_loop(self) -> None:
        while True:
            await asyncio.sleep(self.index_period)
            try:
                self.observe_logs()
            except Exception:
                log.exception("log index")

    # -- handlers -------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(self, request: web.Request) -> web.Response:
        items = []
        for w in list(self.kl.workers.values()):
            p = dict(w.pod)
            p["status"] = {**(p.get("status") or {}), **w.status()}
            items.append(p)
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def summary(self, request: web.Request) -> web.Response:
        body = self.kl.stats.summary() if self.kl.stats else {}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def _log_dir(self, ns: str, pod: str, container: str):
        w = self.kl.find_worker(ns, pod)
        if w is not None:
            return w, self.kl.runtime.log_dir(w.ref, container)
        dirs = glob.glob(os.path.join(self.kl.config.root_dir, "pods",
                                      glob.escape(f"{ns}_{pod}_") + "*", glob.escape(container)))
        if dirs:
            return None, max(dirs, key=os.path.getmtime)
        return None, None

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        q = request.query
        follow, previous = _bool(q.get("follow")), _bool(q.get("previous"))
        timestamps = _bool(q.get("timestamps"))
        tail, limit = _int(q.get("tailLines")), _int(q.get("limitBytes"))
        since_s = _int(q.get("sinceSeconds"))
        since = time.time() - since_s if since_s is not None else None
        if since is None and q.get("sinceTime"):
            from kcore.kubelet.timeutil import parse_time
            with contextlib.suppress(ValueError):
                since = parse_time(q["sinceTime"])
        w, log_dir = self._log_dir(ns, pod, container)
        rec = w.find(container) if w is not None else None
        if w is not None and rec is None:
            raise web.HTTPBadRequest(text=f'container {container} is not valid for pod {pod}')
        if log_dir is None and w is None:
            raise web.HTTPNotFound(text=f'pod "{pod}" in namespace "{ns}" not found on this '
                                   f'node')
        files = attempts(log_dir) if log_dir else []
        running_attempt = rec.handle.attempt if rec is not None and rec.handle else None
        if previous:
            cur = running_attempt if running_attempt is not None else (
                files[-1][0] if files and rec is not None and rec.waiting_reason else None)
            older = [f for f in files if cur is None or f[0] < cur]
            if running_attempt is None and rec is None:
                older = files[:-1]
            if not older:
                raise web.HTTPBadRequest(text=f'previous terminated container "{container}" '
                                         f'in pod "{pod}" not found')
            path = older[-1][1]
            follow = False
        else:
            if not files:
                reason = (rec.waiting_reason if rec is not None else "") or "ContainerCreating"
                raise web.HTTPBadRequest(text=f'container "{container}" in pod "{pod}" is '
                                         f'waiting to start: {reason}')
            path = files[-1][1]
            if running_attempt is not None:
                path = next((p for a, p in files if a == running_attempt), path)
        ix = self.index(path) if os.path.exists(path + ".idx") or running_attempt is not None \
            else None
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        data, off = read_lines(path, tail, limit, since, ix, timestamps)
        sent = len(data)
        if data:
            await resp.write(data)
        if follow and (limit is None or sent < limit):
            await self._follow(resp, w, rec, path, off, timestamps, ix, limit, sent)
        await resp.write_eof()
        return resp

    async def _follow(self, resp, w, rec, path, off, timestamps, ix, limit, sent) -> None:
        """Stream what the running container appends; end when it stops. The file stays
        open, so a pod deleted meanwhile (its logs removed) is still read to the end."""
        handle = rec.handle if rec is not None else None
        try:
            fh = open(path, "rb")  # noqa: SIM115 - held across awaits
        except OSError:
            return
        with fh:
            fh.seek(off)
            pending = b""
            while True:
                alive = handle is not None and rec.handle is handle and not handle.done.done()
                if ix is not None and alive:
                    ix.observe(time.time())
                pending += fh.read()
                raw = pending[:pending.rfind(b"\n") + 1] if alive else pending
                if raw:
                    pending = pending[len(raw):]
                    chunk = stamp(raw, off, ix, path) if timestamps else raw
                    off += len(raw)
                    if limit is not None:
                        chunk = chunk[:max(limit - sent, 0)]
                    try:
                        await resp.write(chunk)
                    except (ConnectionResetError, RuntimeError):
                        return
                    sent += len(chunk)
                    if limit is not None and sent >= limit:
                        return
                if not alive:
                    return
                await asyncio.sleep(0.2)


def stamp(raw: bytes, off: int, ix, path: str) -> bytes:
    from kcore.kubelet.timeutil import rfc3339_nano
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = time.time()
    out = []
    for line in raw.splitlines(keepends=True):
        ts = ix.time_at(off, mtime) if ix is not None else mtime
        out.append(rfc3339_nano(ts).encode() + b" " + line)
        off += len(line)
    return b"".join(out)


def pod_ref(ns: str, name: str, uid: str) -> PodRef:
    return PodRef(ns, name, uid)
