"""The controller manager: every controller in one process, leading or waiting.

With leader election on, the process serves /healthz and /metrics at once and
starts its informers and controllers only after winning the
`kube-system/kube-controller-manager` Lease; losing it ends the process (exit
1), as kube-controller-manager does, so a supervisor restarts it as a
candidate and no controller ever runs in two processes for longer than the
renew deadline. Without leader election the controllers start at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable

from aiohttp import web

from kcore.client.leaderelection import LeaderElectionConfig, LeaderElector
from kcore.controllers.context import ControllerContext, Options
from kcore.controllers.controller import Controller

log = logging.getLogger("kcore.controller-manager")


REGISTRY = {
    "replicationcontroller": "replication:new_replication_controller",
    "replicaset": "replication:new_replicaset_controller",
    "deployment": "deployment:DeploymentController",
    "endpoint": "endpoints:EndpointsController",
    "namespace": "namespace:NamespaceController",
    "serviceaccount": "serviceaccount:ServiceAccountsController",
    "serviceaccount-token": "serviceaccount:TokensController",
    "resourcequota": "resourcequota:ResourceQuotaController",
    "nodeipam": "nodeipam:NodeIpamController",
    "nodelifecycle": "nodelifecycle:NodeLifecycleController",
    "taint-eviction-controller": "tainteviction:TaintEvictionController",
    "garbagecollector": "garbagecollector:GarbageCollector",
    "podgc": "podgc:PodGCController",
    "horizontalpodautoscaling": "podautoscaler:HorizontalController",
    "root-ca-certificate-publisher-controller": "rootca:RootCACertPublisher",
    "csrsigning": "certificates:CSRSigningController",
    "csrapproving": "certificates:CSRApprovingController",
}


def constructor(name: str) -> Callable[[ControllerContext], Controller]:
    mod, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(f"kcore.controllers.{mod}"), attr)


ALL_CONTROLLERS = ("replicationcontroller", "replicaset", "deployment", "endpoint",
                   "namespace", "serviceaccount", "serviceaccount-token", "resourcequota",
                   "nodeipam", "nodelifecycle", "taint-eviction-controller",
                   "garbagecollector", "podgc", "horizontalpodautoscaling",
                   "root-ca-certificate-publisher-controller", "csrsigning", "csrapproving")
ALIASES = {"horizontal-pod-autoscaler-controller": "horizontalpodautoscaling",
           "node-lifecycle-controller": "nodelifecycle", "node-ipam-controller": "nodeipam",
           "endpoints": "endpoint", "replication-controller": "replicationcontroller",
           "root-ca-cert-publisher": "root-ca-certificate-publisher-controller",
           "certificatesigningrequest-signing-controller": "csrsigning",
           "certificatesigningrequest-approving-controller": "csrapproving"}


def select_controllers(spec: list[str], options: Options) -> list[str]:
    """kube's --controllers: '*' is every default controller, 'foo' enables,
    '-foo' disables. nodeipam needs --allocate-node-cidrs, the garbage collector
    --enable-garbage-collector, csrsigning the --cluster-signing-*-file pair."""
    spec = spec or ["*"]
    enabled: list[str] = []
    disabled = set()
    star = False
    for item in spec:
        item = item.strip()
        if item == "*":
            star = True
        elif item.startswith("-"):
            disabled.add(ALIASES.get(item[1:], item[1:]))
        elif item:
            name = ALIASES.get(item, item)
            if name not in ALL_CONTROLLERS:
                raise ValueError(f'"{item}" is not in the list of known controllers')
            enabled.append(name)
    if star:
        enabled += [c for c in ALL_CONTROLLERS if c not in enabled]
    out = [c for c in dict.fromkeys(enabled) if c not in disabled]
    if "nodeipam" in out and not options.allocate_node_cidrs:
        out.remove("nodeipam")
    if "garbagecollector" in out and not options.enable_garbage_collector:
        out.remove("garbagecollector")
    if "csrsigning" in out and not (options.cluster_signing_cert_file and
                                    options.cluster_signing_key_file):
        out.remove("csrsigning")
    return out


class ControllerManager:
    def __init__(self, client, options: Options, controllers: list[str],
                 leader_election: LeaderElectionConfig | None = None,
                 bind_address: str = "127.0.0.1", port: int = 10252,
                 secure_port: int = 0, tls_cert_file: str = "", tls_key_file: str = "",
                 use_service_account_credentials: bool = False):
        self.client = client
        self.use_sa_credentials = use_service_account_credentials
        self.options = options
        self.names = controllers
        self.le = leader_election
        self.bind_address, self.port = bind_address, port
        self.secure_port = secure_port
        self.tls_cert_file, self.tls_key_file = tls_cert_file, tls_key_file
        self.ctx: ControllerContext | None = None
        self.controllers: dict[str, Controller] = {}
        self.elector: LeaderElector | None = None
        self.leading = False
        self.started_at = time.time()
        self.ports: list[int] = []
        self._runners: list[web.AppRunner] = []

    # -- serving ----------------------------------------------------------------------
    async def serve(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/healthz/{check}", self._healthz)
        app.router.add_get("/livez", self._healthz)
        app.router.add_get("/readyz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        sites = []
        if self.port > 0:
            sites.append((self.port, None))
        ctx = self._ssl()
        if ctx is not None:
            sites.append((self.secure_port, ctx))
        if not sites:
            return
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        for port, ctx in sites:
            site = web.TCPSite(runner, self.bind_address, port, ssl_context=ctx,
                               reuse_address=True)
            await site.start()
        self.ports = [a[1] for a in runner.addresses]

    def _ssl(self) -> ssl.SSLContext | None:
        if self.secure_port <= 0 or not (self.tls_cert_file and self.tls_key_file):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return ctx

    async def _healthz(self, request: web.Request) -> web.Response:
        check = request.match_info.get("check")
        if check == "leaderElection" or (check is None and self.le is not None):
            # unhealthy when we believe we lead but have not renewed for too long
            e = self.elector
            if e is not None and self.leading and self.le is not None and \
                    time.monotonic() - e.observed_time > self.le.lease_duration + 20:
                return web.Response(text="leaderElection check failed", status=500)
        return web.Response(text="ok", content_type="text/plain")

    async def _metrics(self, request: web.Request) -> web.Response:
        lines = ["# TYPE leader_election_master_status gauge",
                 'leader_election_master_status{name="kube-controller-manager"} '
                 + str(1 if self.leading else 0)]
        for head, fn in (("workqueue_depth", lambda q: len(q)),
                         ("workqueue_adds_total", lambda q: q.adds_total),
                         ("workqueue_retries_total", lambda q: q.retries_total),
                         ("workqueue_processed_total", lambda q: q.processed_total),
                         ("workqueue_work_duration_seconds_sum",
                          lambda q: round(q.work_seconds_total, 6))):
            kind = "gauge" if head == "workqueue_depth" else "counter"
            lines.append(f"# TYPE {head} {kind}")
            for name, c in self.controllers.items():
                lines.append(f'{head}{{name="{name}"}} {fn(c.queue)}')
        lines.append("# TYPE kcore_controller_sync_errors_total counter")
        for name, c in self.controllers.items():
            lines.append(f'kcore_controller_sync_errors_total{{name="{name}"}} '
                         f'{c.sync_errors}')
        if self.ctx is not None:
            lines.append("# TYPE kcore_informer_events_total counter")
            for inf in self.ctx.informers.informers.values():
                lines.append(f'kcore_informer_events_total{{resource="{inf.res}"}} '
                             f'{inf.stats.events}')
        for c in self.controllers.values():
            extra = getattr(c, "metrics", None)
            if extra is not None:
                lines.extend(extra())
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain",
                            headers={"X-Content-Type": "version=0.0.4"})

    # -- running ----------------------------------------------------------------------
    async def run_controllers(self) -> None:
        """Build the controllers on a fresh context, start the informers, run them."""
        ctx = self.ctx = ControllerContext(self.client, self.options)
        try:
            await ctx.mapper.refresh(self.client)
        except Exception as e:  # noqa: BLE001 - the well-known resources still work
            log.warning("discovery failed (%s); using the built-in resource table", e)
        sa_clients = None
        if self.use_sa_credentials:
            from kcore.controllers.clientbuilder import ACCOUNTS, ServiceAccountClients
            sa_clients = ServiceAccountClients(self.client)
            for name in self.names:
                account = ACCOUNTS.get(name)
                if account:
                    ctx.clients[name] = await sa_clients.client_for(account)
        for name in self.names:
            self.controllers[name] = constructor(name)(ctx)
        ctx.informers.start()
        log.info("starting controllers: %s", ", ".join(self.names))
        tasks = [asyncio.create_task(c.run(), name=n) for n, c in self.controllers.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await ctx.close()
            if sa_clients is not None:
                await sa_clients.close()

    async def _lead(self) -> None:
        self.leading = True
        log.info("became leader; starting controllers")
        await self.run_controllers()

    async def run(self, stop: asyncio.Event) -> int:
        """Serve, (elect,) run until stop is set (0) or leadership is lost (1)."""
        await self.serve()
        lost = asyncio.Event()
        if self.le is not None:
            def stopped() -> None:
                self.leading = False
                lost.set()
            self.elector = LeaderElector(
                self.client, self.le, self._lead, on_stopped_leading=stopped,
                on_new_leader=lambda who: log.info("new leader elected: %s", who))
            main = asyncio.create_task(self.elector.run())
        else:
            self.leading = True
            main = asyncio.create_task(self.run_controllers())
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({main, waiter}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if main in done:
            exc = main.exception()
            if self.le is not None:
                log.error("leaderelection lost")
                code = 1
            elif exc is not None:
                log.error("controllers stopped: %r", exc)
                code = 1
        main.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await main
        for r in self._runners:
            await r.cleanup()
        return code


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"
