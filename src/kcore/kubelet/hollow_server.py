"""The one kubelet HTTP endpoint all hollow nodes share (their daemonEndpoints
point here): /healthz, /pods, /stats/summary, /metrics (heartbeat figures as
JSON) and empty /containerLogs (fake containers print nothing)."""
from __future__ import annotations

import orjson
from aiohttp import web


class HollowServer:
    def __init__(self, hollow):
        self.h = hollow
        self.app = web.Application()
        self.app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
        self.app.router.add_get("/pods", self.pods)
        self.app.router.add_get("/stats/summary", self.summary)
        self.app.router.add_get("/hollow/stats", self.stats)
        self.app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        self.runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        srv = site._server
        return srv.sockets[0].getsockname()[1] if srv and srv.sockets else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _json(self, body) -> web.Response:
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def pods(self, request):
        inf = self.h.informer
        items = [p for p in (inf.store.list() if inf else [])
                 if (p.get("spec") or {}).get("nodeName") in self.h.by_name]
        return self._json({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                           "items": items})

    async def summary(self, request):
        node = request.query.get("node", "")
        return self._json({"node": {"nodeName": node}, "pods": []})

    async def stats(self, request):
        return self._json(self.h.stats())

    async def logs(self, request):
        return web.Response(text="", content_type="text/plain")
