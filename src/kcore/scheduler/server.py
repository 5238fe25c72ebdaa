"""The scheduler's own HTTP endpoints: /healthz, /livez, /readyz, /metrics, /explain.

    GET /healthz                    ok (the process and its event loop are alive)
    GET /readyz                     ok once the informer caches have synced
    GET /metrics                    Prometheus text (kcore.scheduler.metrics)
    GET /explain?pod=NS/NAME[&top=N] the core's explanation for a cached pod,
                                    computed on the live cache; changes nothing
    GET /leader                     this instance's identity and the lease holder
"""
from __future__ import annotations

import ssl

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["make_app", "serve"]


def make_app(driver) -> web.Application:
    async def healthz(_req: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_req: web.Request) -> web.Response:
        if not driver.synced.is_set():
            return web.Response(status=503, text="informer caches not synced")
        return web.Response(text="ok")

    async def metrics(_req: web.Request) -> web.Response:
        return web.Response(body=driver.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def explain(req: web.Request) -> web.Response:
        ref = req.query.get("pod", "")
        ns, sep, name = ref.partition("/")
        if not sep:
            ns, name = "default", ref
        if not name:
            return web.Response(status=400, text="usage: /explain?pod=NAMESPACE/NAME\n")
        try:
            top = int(req.query.get("top", "5"))
            text = driver.explain(ns, name, top)
        except ValueError:
            return web.Response(status=400, text="top must be an integer\n")
        except KeyError as e:
            return web.Response(status=404, text=f"{e.args[0]}\n")
        return web.Response(text=text + "\n")

    async def leader(_req: web.Request) -> web.Response:
        el = driver.elector
        return web.json_response({
            "leading": driver.leading,
            "identity": el.config.identity if el else "",
            "holder": el.get_leader() if el else ""})

    app = web.Application()
    for path, fn in (("/healthz", healthz), ("/livez", healthz), ("/readyz", readyz),
                     ("/metrics", metrics), ("/explain", explain), ("/leader", leader)):
        app.router.add_get(path, fn)
    return app


async def serve(driver, host: str, port: int, *, secure_host: str = "",
                secure_port: int = -1, ssl_context: ssl.SSLContext | None = None
                ) -> tuple[web.AppRunner, int, int]:
    """Serve on host:port (plain; < 0 disables) and secure_host:secure_port (TLS;
    < 0 disables). Port 0 picks a free port. Returns (runner, port, secure port)."""
    runner = web.AppRunner(make_app(driver), access_log=None, handle_signals=False)
    await runner.setup()
    bound = [0, 0]
    for i, (h, p, ctx) in enumerate(((host, port, None),
                                     (secure_host or host, secure_port, ssl_context))):
        if p < 0 or (i == 1 and ctx is None):
            continue
        site = web.TCPSite(runner, h, p, ssl_context=ctx, reuse_address=True)
        await site.start()
        bound[i] = site._server.sockets[0].getsockname()[1]   # type: ignore[union-attr]
    return runner, bound[0], bound[1]
