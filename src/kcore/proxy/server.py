"""The proxy process: informers on Services and Endpoints, a sync loop that
drives one proxier, and /healthz, /metrics, /proxyMode over HTTP.

    srv = ProxyServer(client, proxier, SyncConfig(sync_period=30, min_sync_period=1))
    await srv.start()       # caches synced, first full sync done
    await srv.run()         # until stop()

Sync policy (kube-proxy's bounded-frequency runner): any Service/Endpoints
event asks for a sync; syncs are at least min_sync_period apart, so a burst
of events becomes one sync; every sync_period there is a full sync (the
proxier re-reads the node's state and repairs drift); while quiesced real
servers wait for their connections to end, a sync runs every
pending_interval; a failed sync is retried with backoff.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from kcore.proxy.proxier import Proxier, SyncResult
from kcore.proxy.servicemap import ProxyState, build

log = logging.getLogger("kcore.proxy")
_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
            2.048, 4.096, 8.192, 16.384, 32.768, 65.536)


@dataclass
class SyncConfig:
    sync_period: float = 30.0
    min_sync_period: float = 1.0
    pending_interval: float = 5.0
    hostname: str = ""


class ProxyMetrics:
    def __init__(self, mode: str) -> None:
        r = self.registry = CollectorRegistry()
        self.duration = Histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                                  "SyncProxyRules latency in seconds", buckets=_BUCKETS,
                                  registry=r)
        self.last = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                          "The last time proxy rules were successfully synced", registry=r)
        self.queued = Gauge("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                            "The last time a sync of proxy rules was queued", registry=r)
        self.failures = Counter("kubeproxy_sync_proxy_rules_failures_total",
                                "Syncs that raised (kcore)", registry=r)
        self.ops = Counter("kcore_proxy_sync_ops_total", "Commands issued to the node "
                           "(IPVS/dispatcher ops; one per iptables-restore)", registry=r)
        self.services = Gauge("kcore_proxy_service_ports", "Service ports proxied", registry=r)
        self.endpoints = Gauge("kcore_proxy_endpoints", "Ready endpoints proxied", registry=r)
        self.pending = Gauge("kcore_proxy_quiesced_real_servers", "Real servers at weight 0 "
                             "waiting for their connections to end", registry=r)
        Gauge("kcore_proxy_mode", "The proxy mode in use", ["mode"], registry=r).labels(
            mode).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ProxyServer:
    def __init__(self, client, proxier: Proxier, cfg: SyncConfig | None = None):
        self.client = client
        self.proxier = proxier
        self.cfg = cfg or SyncConfig()
        self.metrics = ProxyMetrics(proxier.mode)
        self.factory = None
        self.services = self.endpoints = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.last_sync = 0.0          # monotonic time of the last successful sync
        self.last_full = 0.0
        self.last_queued = 0.0        # oldest change not yet synced (0: none)
        self.syncs = 0
        self.last_result: SyncResult | None = None
        self.state = ProxyState()

    # -- informers ------------------------------------------------------------------------------
    def request_sync(self, *_args) -> None:
        if not self.last_queued:
            self.last_queued = time.monotonic()
            self.metrics.queued.set_to_current_time()
        self._wake.set()

    async def start(self, timeout: float = 60.0) -> None:
        from kcore.client import ENDPOINTS, SERVICES, SharedInformerFactory
        self.factory = SharedInformerFactory(self.client)
        self.services = self.factory.informer(SERVICES)
        self.endpoints = self.factory.informer(ENDPOINTS)
        for inf in (self.services, self.endpoints):
            inf.add_event_handler(on_add=self.request_sync, on_update=self._on_update,
                                  on_delete=self.request_sync)
        self.factory.start()
        if not await self.factory.wait_for_cache_sync(timeout):
            raise TimeoutError("Services/Endpoints caches did not sync")
        await self.sync(full=True)

    def _on_update(self, old, new) -> None:
        if old is new or (old.get("metadata", {}).get("resourceVersion") ==
                          new.get("metadata", {}).get("resourceVersion")):
            return
        self.request_sync()

    # -- syncing ----------------------------------------------------------------------------
    async def sync(self, full: bool = False) -> SyncResult:
        t0 = time.perf_counter()
        queued = self.last_queued
        self.last_queued = 0.0
        try:
            self.state = build(self.services.store.list() if self.services else [],
                               self.endpoints.store.list() if self.endpoints else [])
            res = await self.proxier.sync(self.state, full=full)
        except Exception:
            self.metrics.failures.inc()
            self.last_queued = queued or time.monotonic()
            raise
        dt = time.perf_counter() - t0
        self.metrics.duration.observe(dt)
        self.metrics.last.set_to_current_time()
        self.metrics.ops.inc(res.ops)
        self.metrics.services.set(len(self.state.services))
        self.metrics.endpoints.set(sum(len(v) for v in self.state.endpoints.values()))
        self.metrics.pending.set(res.pending)
        self.last_sync = time.monotonic()
        if full:
            self.last_full = self.last_sync
        self.syncs += 1
        self.last_result = res
        if res.changed or full:
            log.info("%s sync%s: %d service ports, %d ops, %s (%.1f ms)", self.proxier.mode,
                     " (full)" if full else "", len(self.state.services), res.ops, res.detail,
                     dt * 1000)
        return res

    async def run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            due_full = self.last_full + self.cfg.sync_period
            wait = due_full - now
            if self.last_result is not None and self.last_result.pending:
                wait = min(wait, self.last_sync + self.cfg.pending_interval - now)
            if backoff:
                wait = min(wait, backoff)
            if not self._wake.is_set() and wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            if self._stop.is_set():
                return
            gap = self.last_sync + self.cfg.min_sync_period - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            self._wake.clear()
            full = time.monotonic() >= self.last_full + self.cfg.sync_period
            try:
                await self.sync(full=full)
                backoff = 0.0
            except Exception as e:  # noqa: BLE001 - logged, retried
                backoff = min(max(backoff * 2, 1.0), self.cfg.sync_period)
                log.error("sync failed (retry in %.0f s): %s", backoff, e)
                self._wake.set()
                await asyncio.sleep(backoff)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def close(self) -> None:
        if self.factory is not None:
            await self.factory.shutdown()
        await self.proxier.close()

    # -- health -------------------------------------------------------------------------------
    def healthy(self) -> bool:
        """kube-proxy's rule: unhealthy when a queued change has waited longer than
        2 x sync_period, or nothing was ever synced."""
        if not self.last_sync:
            return False
        return not (self.last_queued and
                    time.monotonic() - self.last_queued > 2 * self.cfg.sync_period)


def make_app(srv: ProxyServer, healthz: bool = True, metrics: bool = True) -> web.Application:
    async def health(_req):
        now = time.time()
        last = now - (time.monotonic() - srv.last_sync) if srv.last_sync else 0.0
        body = {"lastUpdated": _iso(last), "currentTime": _iso(now),
                "nodeName": srv.cfg.hostname, "mode": srv.proxier.mode}
        return web.json_response(body, status=200 if srv.healthy() else 503)

    async def prom(_req):
        return web.Response(body=srv.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def proxy_mode(_req):
        return web.Response(text=srv.proxier.mode)

    app = web.Application()
    if healthz:
        app.router.add_get("/healthz", health)
        app.router.add_get("/livez", health)
    if metrics:
        app.router.add_get("/metrics", prom)
        app.router.add_get("/proxyMode", proxy_mode)
    return app


def _iso(t: float) -> str:
    if not t:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


async def serve_http(srv: ProxyServer, listeners: list[tuple[str, int, bool, bool]]
                     ) -> list[web.AppRunner]:
    """Start one site per (host, port, healthz?, metrics?); port 0 entries are skipped."""
    runners = []
    for host, port, hz, mt in listeners:
        if port <= 0:
            continue
        runner = web.AppRunner(make_app(srv, hz, mt), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        runners.append(runner)
    return runners
