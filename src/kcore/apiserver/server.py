"""The API server: storage, registries with their watch caches, admission, HTTP.

    srv = APIServer(Config(insecure_port=0, data_dir=d))
    await srv.start()        # embedded store (or --etcd-servers), caches, bootstrap, :port
    ... srv.port ...
    await srv.stop()

One process, one event loop. The embedded store is an EtcdServer in the same
loop reached through kcore.store.client.local(); --etcd-servers reaches any
etcd v3 endpoint through kcore.store.client.connect(); both go through
StoreStorage, so everything above the storage interface is shared.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

from aiohttp import web

from kcore.api import errors as E
from kcore.api import kinds as K
from kcore.apiserver.admission import Chain
from kcore.apiserver.allocators import IPAllocator, PortAllocator
from kcore.apiserver.config import Config
from kcore.apiserver.hooks import QuotaHooks, ServiceHooks
from kcore.apiserver.metrics import Metrics
from kcore.apiserver.openapi import OpenAPI
from kcore.apiserver.registry import Registry
from kcore.apiserver.storage import StoreStorage

log = logging.getLogger("kcore.apiserver")


class APIServer:
    def __init__(self, config: Config, storage=None):
        self.config = config
        self.storage = storage
        self.embedded = None
        self.registries: dict[tuple[str, str, str], Registry] = {}
        self.metrics = Metrics()
        self.ips = IPAllocator(config.service_cluster_ip_range)
        self.ports = PortAllocator(config.service_node_port_range)
        self.hooks: dict = {}
        self.admission = Chain(self, config.admission_plugins)
        self.runners: list[web.AppRunner] = []
        self.servers: list[asyncio.Server] = []     # listening sockets (fast path)
        self.fronts: list = []                      # their fastpath.FastFront factories
        self.streams: dict = {}                     # watch handler task -> its request
        self.port = 0
        self.secure_port = 0                # the bound HTTPS port (0: not serving)
        from kcore.apiserver.auth import AlwaysAllow
        from kcore.apiserver.rbac import RBACAuthorizer
        self.rbac = RBACAuthorizer(self)
        self.authorizer = AlwaysAllow()     # the configured chain (secure.setup)
        self.service_accounts = None        # ServiceAccountTokens
        self.token_authenticator = None     # the secure port's RequestAuthenticator
        from kcore.api.authentication import REVIEW_KINDS as AUTHN_REVIEWS
        from kcore.api.authorization import REVIEW_KINDS as AUTHZ_REVIEWS
        from kcore.api.metrics import METRICS_KINDS
        from kcore.apiserver.metrics_api import ResourceMetrics
        # served without a storage registry: in discovery and OpenAPI all the same
        self.review_kinds = [*AUTHZ_REVIEWS, *AUTHN_REVIEWS, *METRICS_KINDS]
        self.resource_metrics = ResourceMetrics(self)
        self.started = time.time()
        self._event_lease = (0, 0.0)
        self._lease_lock = asyncio.Lock()
        K.load()
        self.openapi = OpenAPI(K.all_kinds() + self.review_kinds)

    # -- wiring -------------------------------------------------------------------------
    async def _open_storage(self) -> None:
        if self.storage is not None:
            return
        from kcore.store import client as sc
        if self.config.etcd_servers:
            tls = None
            if self.config.etcd_cafile or self.config.etcd_certfile:
                tls = sc.TLSConfig(self.config.etcd_cafile, self.config.etcd_certfile,
                                   self.config.etcd_keyfile)
            if self.config.etcd_pipeline_servers:
                if tls is not None:
                    raise ValueError("--etcd-pipeline-servers has no TLS; use it on a "
                                     "trusted network or drop it")
                client = sc.connect_pipeline(self.config.etcd_pipeline_servers, connections=2,
                                             grpc_endpoints=self.config.etcd_servers)
            else:
                client = sc.connect(self.config.etcd_servers, tls=tls)
            self.storage = StoreStorage(client)
        else:
            from kcore.store.config import ServerConfig
            from kcore.store.server import EtcdServer
            os.makedirs(self.config.data_dir, exist_ok=True)
            self.embedded = EtcdServer(ServerConfig(
                name="apiserver", data_dir=os.path.join(self.config.data_dir, "store"),
                listen_peer_urls=[]))       # one member: no peer port (2380 stays free)
            await self.embedded.start()
            self.storage = StoreStorage(sc.local(self.embedded))

    async def start(self, serve: bool = True) -> None:
        await self._open_storage()
        deadline = time.monotonic() + 30
        while True:
            try:
                await self.storage.health()
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"storage not reachable: {e}") from e
                await asyncio.sleep(0.2)
        svc_hooks = ServiceHooks(self.ips, self.ports)
        self.hooks = {"services": svc_hooks, "resourcequotas": QuotaHooks(self.admission.quota)}
        from kcore.apiserver import rbac, secure
        esc = rbac.EscalationHooks(self.rbac)
        self.hooks.update({p: esc for p in rbac.PLURALS})
        secure.setup(self)
        for k in K.all_kinds():
            self.registries[(k.group, k.version, k.plural)] = Registry(self, k)
        for r in self.registries.values():
            r.cache.start()
        for r in self.registries.values():
            await asyncio.wait_for(r.cache.ready.wait(), 60)
        svc_hooks.rebuild([e.obj for e in self.registry("", "v1", "services").cache.list()])
        secure_sock = None
        if serve and self.config.secure_port >= 0:
            secure_sock = secure.bind_socket(self.config.bind_address, self.config.secure_port)
            self.secure_port = secure_sock.getsockname()[1]
        try:
            await self.bootstrap()
            if "RBAC" in self.config.authorization_mode:
                await rbac.bootstrap(self)
        except BaseException:
            if secure_sock is not None:
                secure_sock.close()
            raise
        # Long-lived cached objects would make every full GC walk the whole cache; move
        # what exists now out of the collector's view and collect young objects less often:
        # each young collection also walks the state of every request in flight, and with
        # 200,000 (not 50,000) the e2e benchmark's collections took 1.4 s instead of
        # 2.2 s per 90,000 pods, the longest pause 178 ms instead of 577 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(200_000, 20, 100)
        if serve and self.config.insecure_port >= 0:
            from kcore.apiserver.app import make_app
            app = make_app(self)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            self.runners.append(runner)
            if self.config.fast_path:
                srv = await asyncio.get_running_loop().create_server(
                    self._front(app, runner), self.config.insecure_bind_address,
                    self.config.insecure_port, backlog=1024, reuse_address=True)
                self.servers.append(srv)
                self.port = srv.sockets[0].getsockname()[1]
            else:
                site = web.TCPSite(runner, self.config.insecure_bind_address,
                                   self.config.insecure_port, backlog=1024,
                                   reuse_address=True)
                await site.start()
                self.port = runner.addresses[0][1]
            log.info("serving insecurely on http://%s:%d", self.config.insecure_bind_address,
                     self.port)
        if secure_sock is not None:
            await self._serve_secure(secure_sock)

    async def _serve_secure(self, sock) -> None:
        from kcore.apiserver import secure
        from kcore.apiserver.app import make_app
        c = self.config
        try:
            cert, key = secure.serving_files(c)
            ctx = secure.ssl_context(cert, key, c.client_ca_file)
        except BaseException:
            sock.close()
            raise
        app = make_app(self, self.token_authenticator, self.authorizer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self.runners.append(runner)
        if c.fast_path:
            self.servers.append(await asyncio.get_running_loop().create_server(
                self._front(app, runner), sock=sock, ssl=ctx, backlog=1024))
        else:
            await web.SockSite(runner, sock, ssl_context=ctx, backlog=1024).start()
        log.info("serving securely on https://%s:%d (authorization: %s)", c.bind_address,
                 self.secure_port, ",".join(c.authorization_mode))

    def _front(self, app: web.Application, runner: web.AppRunner):
        """The listening socket's protocol factory: fastpath.FastFront, which hands
        what it does not serve itself to the runner's aiohttp server."""
        from kcore.apiserver.app import direct_handler
        from kcore.apiserver.fastpath import FastFront
        front = FastFront(app, direct_handler(app), runner.server, self.config.max_body_bytes)
        self.fronts.append(front)
        return front

    async def stop(self) -> None:
        for srv in self.servers:
            srv.close()
        for front in self.fronts:
            front.close()
        self.servers.clear()
        self.fronts.clear()
        await self._end_streams()
        for r in self.runners:
            await r.cleanup()
        self.runners.clear()
        for reg in self.registries.values():
            await reg.cache.stop()
        if self.storage is not None and self.embedded is None:
            await self.storage.close()
        if self.embedded is not None:
            await self.embedded.stop()

    async def _end_streams(self, grace: float = 1.0) -> None:
        """End every watch at once, as kube-apiserver does when it stops: each stream
        gets its last chunk; one whose client does not read (its write blocked on a
        full socket) is aborted after `grace` seconds instead of holding the stop up
        for aiohttp's shutdown timeout."""
        for reg in self.registries.values():
            for w in list(reg.cache.watchers):
                w.close()
        if not self.streams:
            return
        await asyncio.wait(list(self.streams), timeout=grace)
        for request in list(self.streams.values()):
            t = request.transport
            if t is not None:
                t.abort()
        if self.streams:
            await asyncio.wait(list(self.streams), timeout=grace)

    def registry(self, group: str, version: str, plural: str) -> Registry | None:
        return self.registries.get((group, version, plural))

    async def lease_for(self, kind: K.Kind) -> int:
        """Events expire after --event-ttl through a store lease shared for a minute."""
        if kind.plural != "events" or self.config.event_ttl <= 0:
            return 0
        lid, at = self._event_lease
        now = time.monotonic()
        if lid and now - at < 60:
            return lid
        async with self._lease_lock:
            lid, at = self._event_lease
            if lid and now - at < 60:
                return lid
            lid = await self.storage.grant_lease(self.config.event_ttl + 60)
            self._event_lease = (lid, now)
            return lid

    # -- bootstrap ----------------------------------------------------------------------
    async def bootstrap(self) -> None:
        """What kube-apiserver creates at start: system namespaces, the `kubernetes`
        Service on the range's first IP, and its Endpoints."""
        ns = self.registry("", "v1", "namespaces")
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            await _ensure(ns.create({"metadata": {"name": name}}, ""))
        svc = self.registry("", "v1", "services")
        port = self.secure_port or (self.config.secure_port if self.config.secure_port > 0
                                    else 6443)
        if await svc.current(svc.key("default", "kubernetes")) is not None:
            return      # a restart: its ClusterIP is already allocated, as is the rest
        await _ensure(svc.create({
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": self.ips.first_ip(), "type": "ClusterIP",
                     "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": port}]}}, "default"))
        ep = self.registry("", "v1", "endpoints")
        await _ensure(ep.create({
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": self.config.advertise_address}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]},
            "default"))


async def _ensure(coro) -> None:
    try:
        await coro
    except E.ApiError as e:
        if e.code != 409:
            raise
