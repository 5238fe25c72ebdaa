"""Hollow nodes: many simulated kubelets in one process (kubemark / kwok style).

Each hollow node is a real Node (registered with capacity, labels, nodeInfo,
conditions) with a real Lease renewed every renew interval, and its pods go
Running with an IP from its pod CIDR (no processes). What makes 10,000 of
them cheap:

- one HTTP connection pool (a few keep-alive connections) and a fixed pool of
  writer coroutines, instead of a client and timers per node;
- renewals spread evenly over the interval (node i renews at offset
  i/N·interval) and driven by one ticker walking a queue already in due
  order (no heap, no per-node task);
- one watch on all pods (an informer), dispatched by spec.nodeName, instead of
  a watch per node;
- node status posted only when it changes or once per report period (kube's
  nodeStatusReportFrequency, 5 min), spread like the leases; pod status changes
  coalesced per pod (several events, one patch).

`HollowNodes.stats()` reports renewals, failures and heartbeat lateness
(completion time minus due time) and the oldest renewal age, the figure a node
lifecycle controller compares with its grace period."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import ipaddress
import json
import logging
import os
import resource
import time
from dataclasses import dataclass

import aiohttp
import orjson

from kcore.client import Client, NotFound, SharedInformer
from kcore.client.errors import AlreadyExists, ApiError, Conflict, TransportError
from kcore.client.resources import LEASES, NODES, PODS
from kcore.kubelet import node as N
from kcore.kubelet.agent import KubeletConfig
from kcore.kubelet.hollow_http import LeanPool
from kcore.kubelet.hostinfo import HostInfo, host_info
from kcore.kubelet.podips import PodIPAllocator
from kcore.kubelet.podstatus import CStatus, pod_status

log = logging.getLogger("kcore.kubelet.hollow")

HOLLOW_LABEL = "kcore.io/hollow"


@dataclass
class HollowConfig:
    count: int
    base: KubeletConfig
    prefix: str = "hollow-"
    connections: int = 32
    stats_file: str = ""
    stats_period: float = 5.0
    cluster_cidr: str = "10.128.0.0/9"   # synthesized /24s when a node has no podCIDR
    register_concurrency: int = 16       # leaves the API server room for heartbeats
    pipeline: int = 2                    # requests in flight per connection


class _Node:
    __slots__ = ("i", "name", "uid", "lease_rv", "due", "last_renew", "ips", "cidr",
                 "status_due", "conditions", "failures")

    def __init__(self, i: int, name: str):
        self.i, self.name = i, name
        self.uid = ""
        self.lease_rv = ""
        self.due = 0.0
        self.last_renew = 0.0
        self.ips: PodIPAllocator | None = None
        self.cidr = ""
        self.status_due = 0.0
        self.conditions: list | None = None
        self.failures = 0


class Lateness:
    """Heartbeat lateness: a fixed-bucket histogram (no per-sample memory)."""
    BOUNDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 1e9)

    def __init__(self):
        self.counts = [0] * len(self.BOUNDS)
        self.n = 0
        self.max = 0.0
        self.total = 0.0

    def add(self, v: float) -> None:
        v = max(v, 0.0)
        for i, b in enumerate(self.BOUNDS):
            if v <= b:
                self.counts[i] += 1
                break
        self.n += 1
        self.total += v
        self.max = max(self.max, v)

    def quantile(self, q: float) -> float:
        if not self.n:
            return 0.0
        want, seen = q * self.n, 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= want:
                return self.BOUNDS[i]
        return self.BOUNDS[-1]

    def as_dict(self) -> dict:
        return {"count": self.n, "mean_s": round(self.total / self.n, 4) if self.n else 0.0,
                "p50_le_s": self.quantile(0.5), "p99_le_s": self.quantile(0.99),
                "max_s": round(self.max, 4)}


class HollowNodes:
    def __init__(self, client, config: HollowConfig, *, host: HostInfo | None = None,
                 clock=time.time):
        self.client = client
        self.cfg = config
        self.clock = clock
        base = config.base
        self.host = host or host_info(base.root_dir if os.path.isdir(base.root_dir) else "/")
        self.node_ip = base.node_ip or "127.0.0.1"
        self.capacity = N.capacity_from_host(self.host, base.cpu or "4",
                                             base.memory or "16Gi", base.pods or 110,
                                             base.ephemeral_storage or "100Gi")
        self.nodes = [_Node(i, f"{config.prefix}{i}") for i in range(config.count)]
        self.by_name = {n.name: n for n in self.nodes}
        self.port = base.port
        self._net = ipaddress.ip_network(config.cluster_cidr)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._queue: asyncio.Queue | None = None
        self._heap: list[tuple[float, int, int]] = []
        self.lean: LeanPool | None = None
        self._pods_dirty: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._pods_event = asyncio.Event()
        self._pod_state: dict[str, str] = {}          # uid -> what we posted
        self.informer: SharedInformer | None = None
        self.server = None
        self.lateness = Lateness()
        self.renewals = 0
        self.renew_failures = 0
        self.max_gap = 0.0
        self.status_posts = 0
        self.pod_posts = 0
        self.pod_deletes = 0
        self.started_at = 0.0
        self._cpu0 = (0.0, 0.0)

    # -- objects --------------------------------------------------------------------------
    def _cidr(self, n: _Node) -> str:
        return str(ipaddress.ip_network((int(self._net.network_address) + (n.i << 8), 24)))

    def _spec(self, n: _Node) -> N.NodeSpecConfig:
        labels = N.default_labels(n.name, self.host, self.cfg.base.labels)
        labels[HOLLOW_LABEL] = "true"
        return N.NodeSpecConfig(name=n.name, node_ip=self.node_ip, hostname=n.name,
                                port=self.port, labels=labels, taints=self.cfg.base.taints,
                                capacity=self.capacity)

    def _adopt(self, n: _Node, node: dict) -> None:
        n.uid = node["metadata"].get("uid", "")
        cidr = (node.get("spec") or {}).get("podCIDR") or ""
        if cidr and cidr != n.cidr and (n.ips is None or not n.ips.by_uid):
            n.cidr, n.ips = cidr, PodIPAllocator(cidr, self.node_ip)
        if n.ips is None:
            n.cidr = self._cidr(n)
            n.ips = PodIPAllocator(n.cidr, self.node_ip)

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._install_session()
        self.started_at = self.clock()
        self._cpu0 = _cpu_seconds()
        from kcore.kubelet.hollow_server import HollowServer
        self.server = HollowServer(self)
        self.port = await self.server.start(self.cfg.base.address, self.cfg.base.port)
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for _ in range(max(1, self.cfg.connections * self.cfg.pipeline)):
            self._tasks.append(loop.create_task(self._writer()))
        self._tasks.append(loop.create_task(self._ticker()))
        self._tasks.append(loop.create_task(self._pod_writer()))
        if self.cfg.stats_file:
            self._tasks.append(loop.create_task(self._stats_loop()))
        await self._register_all()
        self.informer = SharedInformer(self.client, PODS)
        self.informer.add_event_handler(on_add=self._on_pod, on_update=lambda o, p:
                                        self._on_pod(p), on_delete=self._on_pod_delete)
        self.informer.start()

    def _schedule(self, n: _Node, registered_at: float) -> None:
        """A registered node joins the rotation: first renewal within one interval, at
        its own offset, so renewals stay spread however fast registration went."""
        interval = self.cfg.base.node_lease_renew_interval
        report = self.cfg.base.node_status_report_frequency
        count = max(len(self.nodes), 1)
        frac = n.i / count
        n.due = registered_at + interval * (0.1 + 0.9 * frac)
        n.status_due = registered_at + report * (0.5 + 0.5 * frac)
        heapq.heappush(self._heap, (n.due, n.i, 0))
        heapq.heappush(self._heap, (n.status_due, n.i, 1))

    def _install_session(self) -> None:
        """One pool of a few keep-alive connections for every hollow node: the lean
        pipelined pool for leases and node status, a small aiohttp pool (a Client of
        the given client's config) for the rest."""
        conf = self.client.config
        ctx = conf.ssl_context()
        conn = aiohttp.TCPConnector(limit=8, ssl=ctx if ctx is not None else False,
                                    keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=conn, json_serialize=lambda o: orjson.dumps(o).decode(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        self.client = Client(conf, session=self._session)
        self.lean = LeanPool(conf.server, conf.headers(), size=self.cfg.connections,
                             ssl_context=ctx)

    async def stop(self) -> None:
        if self.informer is not None:
            await self.informer.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self.server is not None:
            await self.server.stop()
        if self.lean is not None:
            self.lean.close()
        if self._session is not None:
            await self._session.close()
        if self.cfg.stats_file:
            self.write_stats()

    async def _register_all(self) -> None:
        sem = asyncio.Semaphore(self.cfg.register_concurrency)
        now = self.clock()
        h = self.host

        async def one(n: _Node) -> None:
            async with sem:
                spec = self._spec(n)
                obj = N.node_object(spec, h, now)
                delay = 0.2
                while True:
                    try:
                        try:
                            node = await self.client.create(NODES, obj)
                        except AlreadyExists:
                            node = await self.client.patch(
                                NODES, n.name, {"metadata": {"labels": spec.labels}})
                            node = await self.client.patch(NODES, n.name,
                                                           {"status": obj["status"]},
                                                           subresource="status")
                        self._adopt(n, node)
                        n.conditions = obj["status"]["conditions"]
                        lease = N.lease_object(n.name, n.uid, self.clock(),
                                               self.cfg.base.node_lease_duration)
                        out = await self.client.update(LEASES, lease)
                        n.lease_rv = out["metadata"].get("resourceVersion", "")
                        n.last_renew = self.clock()
                        self._schedule(n, n.last_renew)
                        return
                    except (ApiError, TransportError) as e:
                        log.warning("registering %s: %s", n.name, e)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 7.0)

        await asyncio.gather(*(one(n) for n in self.nodes))
        log.info("%d hollow nodes registered", len(self.nodes))

    # -- heartbeats -----------------------------------------------------------------------
    async def _ticker(self) -> None:
        """Pop due work off one heap and hand it to the writers."""
        interval = self.cfg.base.node_lease_renew_interval
        report = self.cfg.base.node_status_report_frequency
        heap, q, nodes = self._heap, self._queue, self.nodes
        tick = min(0.05, interval / 20)
        while True:
            now = self.clock()
            while heap and heap[0][0] <= now:
                due, i, kind = heapq.heappop(heap)
                n = nodes[i]
                if kind == 0:
                    q.put_nowait(("lease", n, due))
                    n.due = due + interval
                    if n.due < now:             # far behind: do not pile up
                        n.due = now + interval
                    heapq.heappush(heap, (n.due, i, 0))
                else:
                    q.put_nowait(("status", n, due))
                    n.status_due = max(due + report, now + 1)
                    heapq.heappush(heap, (n.status_due, i, 1))
            await asyncio.sleep(tick)

    async def _writer(self) -> None:
        q = self._queue
        while True:
            kind, n, due = await q.get()
            try:
                if kind == "lease":
                    await self._renew(n, due)
                else:
                    await self._post_status(n)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hollow %s %s", kind, n.name)

    async def _renew(self, n: _Node, due: float) -> None:
        now = self.clock()
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": n.name, "namespace": N.NODE_LEASE_NS,
                              "resourceVersion": n.lease_rv,
                              "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                   "name": n.name, "uid": n.uid}]},
                 "spec": {"holderIdentity": n.name,
                          "leaseDurationSeconds": self.cfg.base.node_lease_duration,
                          "renewTime": N.rfc3339_micro(now)}}
        if not n.lease_rv:
            del lease["metadata"]["resourceVersion"]
        try:
            out = await self.lean.request_json("PUT", LEASES.path(N.NODE_LEASE_NS, n.name),
                                               lease)
        except (Conflict, NotFound):
            n.lease_rv = ""
            self._retry(n, due)
            return
        except (ApiError, TransportError) as e:
            self.renew_failures += 1
            n.failures += 1
            if n.failures in (1, 10):
                log.warning("renewing lease of %s: %s", n.name, e)
            self._retry(n, due)
            return
        n.failures = 0
        n.lease_rv = out["metadata"].get("resourceVersion", "")
        done = self.clock()
        if n.last_renew:
            self.max_gap = max(self.max_gap, done - n.last_renew)
        n.last_renew = done
        self.renewals += 1
        self.lateness.add(done - due)

    def _retry(self, n: _Node, due: float) -> None:
        delay = min(0.2 * (2 ** min(n.failures, 6)), 7.0)
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._queue.put_nowait, ("lease", n, due))

    async def _post_status(self, n: _Node) -> None:
        st = N.node_status(self._spec(n), self.host, self.clock(), N.Pressure(), n.conditions)
        try:
            node = await self.lean.request_json("PATCH", NODES.path(None, n.name, "status"),
                                                {"status": st}, "application/merge-patch+json")
        except NotFound:
            log.warning("hollow node %s was deleted; registering it again", n.name)
            node = await self.client.create(NODES, N.node_object(self._spec(n), self.host,
                                                                 self.clock()))
            n.lease_rv = ""
        except (ApiError, TransportError) as e:
            log.warning("status of %s: %s", n.name, e)
            return
        self._adopt(n, node)
        n.conditions = st["conditions"]
        self.status_posts += 1

    # -- pods -----------------------------------------------------------------------------
    def _on_pod(self, pod: dict) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or node not in self.by_name:
            return
        md = pod["metadata"]
        uid = md.get("uid", "")
        if md.get("deletionTimestamp"):
            want = "delete"
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        else:
            want = "running"
        if self._pod_state.get(uid) == want and (want == "delete" or _is_running(pod)):
            return
        self._pods_dirty[uid] = pod
        self._pods_dirty.move_to_end(uid)
        self._pods_event.set()

    def _on_pod_delete(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        self._pods_dirty.pop(uid, None)
        self._pod_state.pop(uid, None)
        n = self.by_name.get((pod.get("spec") or {}).get("nodeName") or "")
        if n is not None and n.ips is not None:
            n.ips.release(uid)

    async def _pod_writer(self) -> None:
        """Drain the dirty pods (coalesced: one write per pod however many events)."""
        sem = asyncio.Semaphore(max(4, self.cfg.connections // 2))

        async def one(pod: dict) -> None:
            async with sem:
                try:
                    await self._sync_pod(pod)
                except (ApiError, TransportError) as e:
                    log.info("hollow pod %s: %s", pod["metadata"].get("name"), e)

        while True:
            await self._pods_event.wait()
            self._pods_event.clear()
            batch = list(self._pods_dirty.values())
            self._pods_dirty.clear()
            await asyncio.gather(*(one(p) for p in batch))

    async def _sync_pod(self, pod: dict) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid, ns, name = md.get("uid", ""), md.get("namespace", "default"), md["name"]
        n = self.by_name[spec["nodeName"]]
        if md.get("deletionTimestamp"):
            self._pod_state[uid] = "delete"
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(PODS, name, ns, grace_period_seconds=0,
                                         preconditions={"uid": uid})
            self.pod_deletes += 1
            return
        ip = n.ips.allocate(uid) if not spec.get("hostNetwork") else self.node_ip
        now = self.clock()
        cs = [CStatus(c["name"], c.get("image", ""), state="running", started_at=now,
                      container_id=f"fake://{uid[:8]}{i}", ready=True, started=True,
                      image_id="")
              for i, c in enumerate(spec.get("containers") or [])]
        ics = [CStatus(c["name"], c.get("image", ""), state="terminated", reason="Completed",
                       exit_code=0, started_at=now, finished_at=now)
               for c in spec.get("initContainers") or []]
        st = pod_status(pod, ics, cs, init_done=True, sandbox_ready=True, host_ip=self.node_ip,
                        pod_ip=ip, start_time=now, now=now)
        await self.client.patch(PODS, name, {"status": st}, ns, subresource="status")
        self._pod_state[uid] = "running"
        self.pod_posts += 1

    # -- figures --------------------------------------------------------------------------
    def stats(self) -> dict:
        now = self.clock()
        ages = [now - n.last_renew for n in self.nodes if n.last_renew]
        cpu = _cpu_seconds()
        wall = max(now - self.started_at, 1e-9)
        used = (cpu[0] - self._cpu0[0]) + (cpu[1] - self._cpu0[1])
        return {
            "nodes": len(self.nodes),
            "renewals": self.renewals,
            "renew_failures": self.renew_failures,
            "lateness": self.lateness.as_dict(),
            "oldest_renewal_age_s": round(max(ages), 3) if ages else None,
            "max_renewal_gap_s": round(self.max_gap, 3),
            "never_renewed": sum(1 for n in self.nodes if not n.last_renew),
            "status_posts": self.status_posts,
            "pod_status_posts": self.pod_posts,
            "pod_deletes": self.pod_deletes,
            "process_cpu_seconds": round(used, 2),
            "process_cpu_cores": round(used / wall, 3),
            "process_rss_bytes": _rss_bytes(),
            "seconds": round(wall, 1),
        }

    def write_stats(self) -> None:
        tmp = self.cfg.stats_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.stats(), fh)
        os.replace(tmp, self.cfg.stats_file)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.stats_period)
            with contextlib.suppress(OSError):
                self.write_stats()


def _is_running(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def _cpu_seconds() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0
