"""The kubelet: registers its Node, renews its Lease, reports node status, and
runs the pods bound to it through a runtime (one `PodWorker` per pod).

    kl = Kubelet(client, KubeletConfig(node_name="n1", root_dir="/var/lib/kcore/n1"))
    await kl.start()        # registered, heartbeating, pods syncing, HTTP API up
    ...
    await kl.stop()         # containers stopped, sandboxes removed

Only the client layer is used to reach the API server."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

from kcore.client import EventRecorder, NotFound, SharedInformer
from kcore.client.errors import AlreadyExists, ApiError, Conflict, TransportError
from kcore.client.resources import (
    CONFIG_MAPS,
    ENDPOINTS,
    LEASES,
    NODES,
    PODS,
    SECRETS,
    SERVICES,
)
from kcore.kubelet import node as N
from kcore.kubelet.backoff import Backoff
from kcore.kubelet.hostinfo import HostInfo, host_info, meminfo, primary_ip
from kcore.kubelet.podips import PodIPAllocator
from kcore.kubelet.podworker import PodWorker

log = logging.getLogger("kcore.kubelet")


@dataclass
class KubeletConfig:
    node_name: str
    root_dir: str
    port: int = 10250
    address: str = "0.0.0.0"
    node_ip: str = ""
    hostname: str = ""
    runtime: str = "process"              # process | fake
    pod_network: str = "none"             # none | netns
    pod_cidr: str = ""
    labels: dict = field(default_factory=dict)
    taints: list = field(default_factory=list)
    cpu: str = ""
    memory: str = ""
    pods: int = 0
    ephemeral_storage: str = ""
    node_status_update_frequency: float = 10.0
    node_status_report_frequency: float = 300.0
    node_lease_duration: int = 40
    node_lease_renew_interval: float = 10.0
    image_registries: list = field(default_factory=list)
    crash_backoff_base: float = 10.0
    crash_backoff_max: float = 300.0
    image_backoff_base: float = 10.0
    image_backoff_max: float = 300.0
    register_node: bool = True
    eviction_memory_available: int = 100 * 2**20
    eviction_disk_available_pct: float = 10.0
    serve: bool = True


class Kubelet:
    def __init__(self, client, config: KubeletConfig, *, host: HostInfo | None = None,
                 runtime=None, clock=time.time):
        self.client = client
        self.config = config
        self.clock = clock
        self.host = host or host_info(config.root_dir)
        self.node_ip = config.node_ip or primary_ip()
        capacity = N.capacity_from_host(self.host, config.cpu, config.memory, config.pods,
                                        config.ephemeral_storage)
        self.node_cfg = N.NodeSpecConfig(
            name=config.node_name, node_ip=self.node_ip,
            hostname=config.hostname or config.node_name, port=config.port,
            labels=N.default_labels(config.node_name, self.host, config.labels),
            taints=list(config.taints), capacity=capacity, pod_cidr=config.pod_cidr)
        self.ips = PodIPAllocator(config.pod_cidr, self.node_ip)
        self.runtime = runtime
        self.crash_backoff = Backoff(config.crash_backoff_base, config.crash_backoff_max)
        self.image_backoff = Backoff(config.image_backoff_base, config.image_backoff_max)
        self.pulled_images: set[str] = set()
        self.workers: dict[str, PodWorker] = {}
        self.node_uid = ""
        self.node: dict | None = None
        self.pod_cidr = config.pod_cidr
        self.recorder = EventRecorder(client, component="kubelet", host=config.node_name)
        self.informer: SharedInformer | None = None
        self.node_informer: SharedInformer | None = None
        self.server = None
        self.port = config.port
        self.lease: dict | None = None
        self.lease_renewals = 0
        self.last_lease_renew = 0.0
        self.status_posts = 0
        self._conditions: list[dict] | None = None
        self._last_status_post = 0.0
        self._last_status_key = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self.stats = None
        self._api_env: tuple[float, dict] | None = None

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        os.makedirs(os.path.join(self.config.root_dir, "pods"), exist_ok=True)
        if self.runtime is None:
            self.runtime = self._make_runtime()
        if self.config.serve:
            from kcore.kubelet.server import KubeletServer
            from kcore.kubelet.stats import StatsProvider
            self.stats = StatsProvider(self)
            self.server = KubeletServer(self)
            self.port = await self.server.start(self.config.address, self.config.port)
            self.node_cfg.port = self.port
        if self.config.register_node:
            await self.register()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._lease_loop(), name="node lease"))
        self._tasks.append(loop.create_task(self._status_loop(), name="node status"))
        self.node_informer = SharedInformer(self.client, NODES, field_selector=
                                            f"metadata.name={self.config.node_name}")
        self.node_informer.add_event_handler(on_add=self._set_node,
                                             on_update=lambda o, n: self._set_node(n))
        self.node_informer.start()        # our own Node: a podCIDR assigned later, labels
        self.informer = SharedInformer(self.client, PODS,
                                       field_selector=f"spec.nodeName={self.config.node_name}")
        self.informer.add_event_handler(on_add=self._on_pod, on_update=lambda o, n:
                                        self._on_pod(n), on_delete=self._on_pod_delete)
        self.informer.start()

    def _make_runtime(self):
        if self.config.runtime == "fake":
            from kcore.kubelet.runtime.fake import FakeRuntime
            return FakeRuntime(self.config.root_dir, self.ips)
        from kcore.kubelet.runtime.process import ProcessRuntime, reap_leftovers
        n = reap_leftovers(self.config.root_dir)
        if n:
            log.info("stopped %d containers left by a previous kubelet", n)
        network = None
        if self.config.pod_network == "netns":
            from kcore.kubelet.runtime.netns import NetnsNetwork
            network = _LazyNetns(self)
            network.factory = lambda: NetnsNetwork(self.config.node_name, self.ips)
        rt = ProcessRuntime(self.config.root_dir, network)
        rt.node_ip = self.node_ip
        return rt

    async def stop(self) -> None:
        self._stopping = True
        for inf in (self.informer, self.node_informer):
            if inf is not None:
                await inf.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        workers = list(self.workers.values())
        for w in workers:
            w.task.cancel()
        for w in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await w.task
        if self.runtime is not None:
            await self.runtime.close()
        with contextlib.suppress(Exception):
            await self.recorder.stop()
        if self.server is not None:
            await self.server.stop()

    # -- the node -------------------------------------------------------------------------
    def _set_node(self, node: dict) -> None:
        self.node = node
        self.node_uid = node["metadata"].get("uid", "")
        cidr = (node.get("spec") or {}).get("podCIDR") or ""
        if cidr and cidr != self.pod_cidr and not self.ips.by_uid:
            log.info("pod CIDR %s", cidr)
            self.pod_cidr = cidr
            self.ips.__init__(cidr, self.node_ip)

    async def register(self) -> None:
        """Create the Node, or adopt an existing one (labels and status refreshed)."""
        delay = 0.2
        while True:
            obj = N.node_object(self.node_cfg, self.host, self.clock(), self._pressure())
            try:
                try:
                    node = await self.client.create(NODES, obj)
                except AlreadyExists:
                    cur = await self.client.get(NODES, self.config.node_name)
                    labels = {**(cur["metadata"].get("labels") or {}),
                              **self.node_cfg.labels}
                    patch: dict = {"metadata": {"labels": labels}}
                    if self.node_cfg.taints and not (cur.get("spec") or {}).get("taints"):
                        patch["spec"] = {"taints": self.node_cfg.taints}
                    await self.client.patch(NODES, self.config.node_name, patch)
                    node = await self.client.patch(NODES, self.config.node_name,
                                                   {"status": obj["status"]},
                                                   subresource="status")
                self._set_node(node)
                self._conditions = (node.get("status") or {}).get("conditions")
                self._last_status_post = self.clock()
                log.info("node %s registered (uid %s)", self.config.node_name, self.node_uid)
                return
            except (ApiError, TransportError) as e:
                log.warning("registering node %s: %s", self.config.node_name, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 7.0)

    def _pressure(self) -> N.Pressure:
        mi = meminfo()
        mem = mi.get("MemAvailable", 1 << 62) < self.config.eviction_memory_available
        disk = False
        try:
            st = os.statvfs(self.config.root_dir)
            disk = st.f_blocks > 0 and 100.0 * st.f_bavail / st.f_blocks < \
                self.config.eviction_disk_available_pct
        except OSError:
            pass
        pid = False
        try:
            with open("/proc/sys/kernel/pid_max") as fh:
                pid_max = int(fh.read())
            pid = len([d for d in os.listdir("/proc") if d.isdigit()]) > 0.95 * pid_max
        except (OSError, ValueError):
            pass
        return N.Pressure(mem, disk, pid)

    async def _lease_loop(self) -> None:
        """Renew the Lease every renew interval (kube: 10 s for a 40 s lease); on errors
        retry soon, doubling from 200 ms up to 7 s."""
        cfg = self.config
        delay = 0.2
        while True:
            try:
                await self.renew_lease()
                delay = 0.2
                await asyncio.sleep(cfg.node_lease_renew_interval)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - API errors and anything unexpected
                if isinstance(e, (ApiError, TransportError)):
                    log.warning("renewing lease: %s", e)
                else:
                    log.exception("renewing lease")
                self.lease = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 7.0)

    async def renew_lease(self) -> None:
        now = self.clock()
        if self.lease is not None:
            obj = dict(self.lease)
            obj["spec"] = {**obj["spec"], "renewTime": N.rfc3339_micro(now),
                           "holderIdentity": self.config.node_name,
                           "leaseDurationSeconds": self.config.node_lease_duration}
            try:
                self.lease = await self.client.update(LEASES, obj)
                self._renewed(now)
                return
            except (Conflict, NotFound):
                self.lease = None
        try:
            cur = await self.client.get(LEASES, self.config.node_name, N.NODE_LEASE_NS)
        except NotFound:
            obj = N.lease_object(self.config.node_name, self.node_uid, now,
                                 self.config.node_lease_duration)
            self.lease = await self.client.create(LEASES, obj)
            self._renewed(now)
            return
        cur["spec"] = {**(cur.get("spec") or {}), "renewTime": N.rfc3339_micro(now),
                       "holderIdentity": self.config.node_name,
                       "leaseDurationSeconds": self.config.node_lease_duration}
        self.lease = await self.client.update(LEASES, cur)
        self._renewed(now)

    def _renewed(self, now: float) -> None:
        self.lease_renewals += 1
        self.last_lease_renew = now

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.node_status_update_frequency)
            try:
                await self.update_node_status()
            except asyncio.CancelledError:
                raise
            except (ApiError, TransportError) as e:
                log.warning("updating node status: %s", e)
                if isinstance(e, NotFound):
                    await self.register()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any one failure
                log.exception("updating node status")

    async def update_node_status(self, force: bool = False) -> bool:
        """Post the node status when something changed or the report period passed."""
        now = self.clock()
        st = N.node_status(self.node_cfg, self.host, now, self._pressure(), self._conditions)
        conds = tuple(sorted((c["type"], c["status"]) for c in st["conditions"]))
        key = (conds, tuple(sorted(st["capacity"].items())))
        # compare with the Node as the API has it too (our informer's copy): the node
        # controller marks a node Unknown when it missed heartbeats, and the kubelet
        # must answer that at once, not at the next report period
        served = tuple(sorted((c.get("type"), c.get("status")) for c in
                              ((self.node or {}).get("status") or {}).get("conditions") or []))
        if not force and key == self._last_status_key and served == conds and \
                now - self._last_status_post < self.config.node_status_report_frequency:
            return False
        node = await self.client.patch(NODES, self.config.node_name, {"status": st},
                                       subresource="status")
        self._set_node(node)
        self._conditions = st["conditions"]
        self._last_status_key = key
        self._last_status_post = now
        self.status_posts += 1
        return True

    # -- pods -----------------------------------------------------------------------------
    def _on_pod(self, pod: dict) -> None:
        if self._stopping:
            return
        uid = pod["metadata"].get("uid", "")
        w = self.workers.get(uid)
        if w is None:
            st = (pod.get("status") or {}).get("phase")
            if st in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp"):
                return          # finished before this kubelet started: nothing to run
            self.workers[uid] = PodWorker(self, pod)
        else:
            w.update(pod)

    def _on_pod_delete(self, pod: dict) -> None:
        w = self.workers.get(pod["metadata"].get("uid", ""))
        if w is not None:
            w.remove()
        else:
            self._remove_logs(pod)

    def pod_worker_done(self, w: PodWorker) -> None:
        if self.workers.get(w.ref.uid) is w:
            del self.workers[w.ref.uid]
        if w.removed and not self._stopping:
            self._remove_logs(w.pod)

    def _remove_logs(self, pod: dict) -> None:
        import shutil

        from kcore.kubelet.runtime.base import PodRef
        d = os.path.join(self.config.root_dir, "pods", PodRef.of(pod).dirname)
        shutil.rmtree(d, ignore_errors=True)

    def find_worker(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            if w.ref.namespace == namespace and w.ref.name == name:
                return w
        return None

    async def api_service_env(self) -> dict[str, str]:
        """KUBERNETES_SERVICE_HOST/PORT for every container: the API server's own address
        from the `kubernetes` Endpoints (the process runtime routes no ClusterIPs without
        a proxy), else the Service's ClusterIP and 443; cached for 30 s."""
        now = self.clock()
        if self._api_env is not None and now - self._api_env[0] < 30:
            return self._api_env[1]
        env: dict[str, str] = {}
        try:
            ep = await self.client.get(ENDPOINTS, "kubernetes", "default")
            env = api_env_from(ep, None)
            if not env:
                env = api_env_from(None, await self.client.get(SERVICES, "kubernetes",
                                                                "default"))
        except (ApiError, TransportError) as e:
            log.debug("kubernetes service: %s", e)
        self._api_env = (now, env)
        return env

    async def lookup(self, kind: str, ns: str, name: str) -> dict | None:
        res = {"configmaps": CONFIG_MAPS, "secrets": SECRETS}[kind]
        try:
            return await self.client.get(res, name, ns)
        except NotFound:
            return None

    def event(self, pod: dict, type_: str, reason: str, message: str,
              field_path: str = "") -> None:
        """An Event about the pod (the client's recorder has no fieldPath yet, so the
        container is named in the message)."""
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": pod.get("metadata") or {}}
        with contextlib.suppress(Exception):
            self.recorder.event(obj, type_, reason, message)


def api_env_from(endpoints: dict | None, service: dict | None) -> dict[str, str]:
    """The in-cluster env vars from the `kubernetes` Endpoints (first address, https
    port) or, failing that, Service."""
    host, port = "", 0
    for ss in (endpoints or {}).get("subsets") or []:
        addrs, ports = ss.get("addresses") or [], ss.get("ports") or []
        if addrs and ports:
            p = next((p for p in ports if p.get("name") == "https"), ports[0])
            host, port = addrs[0].get("ip", ""), int(p.get("port") or 0)
            break
    if not host and service:
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP") or ""
        if ip and ip != "None":
            host, port = ip, 443
    if not host or not port:
        return {}
    hp = f"[{host}]" if ":" in host else host
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://{hp}:{port}"}


class _LazyNetns:
    """Creates the netns network once the pod CIDR is known (IPAM may assign it
    after registration)."""

    def __init__(self, kubelet: Kubelet):
        self.kl = kubelet
        self.factory = None
        self.net = None

    def _get(self):
        if self.net is None:
            if not self.kl.ips.cidr:
                raise RuntimeError("no pod CIDR yet (node spec.podCIDR is empty and no "
                                   "--pod-cidr)")
            self.net = self.factory()
        return self.net

    async def setup(self, ref):
        return await self._get().setup(ref)

    async def teardown(self, ref):
        if self.net is not None:
            await self.net.teardown(ref)

    async def close(self):
        if self.net is not None:
            await self.net.close()
