"""Node lifecycle: notice nodes that stopped reporting, taint them, untaint them.

Every `--node-monitor-period` each node's health is probed: a heartbeat is a
change of its Ready condition's `lastHeartbeatTime` or of its Lease's
`renewTime` in `kube-node-lease`, observed on this controller's own clock.
A node silent for `--node-monitor-grace-period` (`--node-startup-grace-period`
if it never reported) gets every condition set to Unknown ("Kubelet stopped
posting node status."), its pods' Ready condition set to False, and the
`node.kubernetes.io/unreachable:NoExecute` taint (`not-ready:NoExecute` when
the kubelet reports Ready=False). NoExecute taints are applied through a
per-zone token bucket (`--node-eviction-rate`; `--secondary-node-eviction-rate`
for a large zone in partial disruption, none for a small one); when every
node of every zone is down the controller assumes its own network is at fault
and taints nothing. A node reporting Ready again loses the taints at once.
NoSchedule taints follow the conditions (not-ready, unreachable, memory/disk/
pid pressure, network-unavailable, unschedulable) as TaintNodesByCondition
does. The pods themselves are evicted by the taint eviction controller.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from kcore.api.meta import rfc3339
from kcore.client import errors as E
from kcore.client.events import NORMAL
from kcore.client.flowcontrol import TokenBucket
from kcore.client.resources import LEASES, NODES, PODS
from kcore.client.store import NODE_NAME_INDEX, deep_copy
from kcore.controllers import taints as T
from kcore.controllers.controller import Controller, periodic
from kcore.controllers.pods import condition

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
ZONE_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone")
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
NORMAL_STATE, PARTIAL, FULL = "Normal", "PartialDisruption", "FullDisruption"
TAINTING_PASS_PERIOD = 0.1


@dataclass
class NodeHealth:
    probe: float                     # local time of the last heartbeat seen
    heartbeat: str = ""              # Ready.lastHeartbeatTime last seen
    ready_transition: str = ""
    lease_renew: str = ""


@dataclass
class ZoneTainter:
    """Nodes waiting for their NoExecute taint, released at the zone's rate."""
    bucket: TokenBucket | None
    queue: OrderedDict = field(default_factory=OrderedDict)
    qps: float = 0.0


def zone_of(node: dict) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return ":\x00:".join(labels.get(k, "") for k in ZONE_LABELS)


def ready_status(node: dict) -> str:
    c = condition(node, "Ready")
    return c.get("status", "Unknown") if c else "Unknown"


def no_schedule_taints(node: dict) -> list[dict]:
    """The NoSchedule taints a node's conditions call for."""
    want = []
    rs = ready_status(node) if condition(node, "Ready") else None
    if rs == "False":
        want.append(T.taint(T.NOT_READY, T.NO_SCHEDULE))
    elif rs == "Unknown":
        want.append(T.taint(T.UNREACHABLE, T.NO_SCHEDULE))
    for ctype, key in (("MemoryPressure", T.MEMORY_PRESSURE), ("DiskPressure", T.DISK_PRESSURE),
                       ("PIDPressure", T.PID_PRESSURE),
                       ("NetworkUnavailable", T.NETWORK_UNAVAILABLE)):
        c = condition(node, ctype)
        if c is not None and c.get("status") == "True":
            want.append(T.taint(key, T.NO_SCHEDULE))
    if (node.get("spec") or {}).get("unschedulable"):
        want.append(T.taint(T.UNSCHEDULABLE, T.NO_SCHEDULE))
    return want


CONDITION_TAINT_KEYS = {T.NOT_READY, T.UNREACHABLE, T.MEMORY_PRESSURE, T.DISK_PRESSURE,
                        T.PID_PRESSURE, T.NETWORK_UNAVAILABLE, T.UNSCHEDULABLE}


class NodeLifecycleController(Controller):
    """Its workqueue carries node names for the NoSchedule taint sync; health
    monitoring and NoExecute tainting are periodic loops."""
    name = "nodelifecycle"
    component = "node-controller"

    def __init__(self, ctx, clock=time.monotonic):
        super().__init__(ctx, workers=2)
        o = ctx.options
        self.period = o.node_monitor_period
        self.grace = o.node_monitor_grace_period
        self.startup_grace = o.node_startup_grace_period
        self.eviction_rate = o.node_eviction_rate
        self.secondary_rate = o.secondary_node_eviction_rate
        self.large_cluster = o.large_cluster_size_threshold
        self.unhealthy_threshold = o.unhealthy_zone_threshold
        self.clock = clock
        self.health: dict[str, NodeHealth] = {}
        self.zones: dict[str, ZoneTainter] = {}
        self.zone_states: dict[str, str] = {}
        self.disrupted = False           # every node of every zone is down
        self.evictions = 0               # NoExecute taints applied
        self.nodes = self.informer(NODES)
        self.pods = self.informer(PODS)
        # the cluster-wide lease informer (shared with the garbage collector); node
        # leases are the ones in kube-node-lease
        self.leases = self.informer(LEASES)
        self.nodes.add_event_handler(self.enqueue, self._node_updated, self._node_deleted)

    def _node_updated(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}) != (new.get("spec") or {}) or \
                (old.get("status") or {}).get("conditions") != \
                (new.get("status") or {}).get("conditions"):
            self.enqueue(new)

    def _node_deleted(self, node: dict) -> None:
        name = node["metadata"]["name"]
        self.health.pop(name, None)
        for z in self.zones.values():
            z.queue.pop(name, None)

    def loops(self):
        return [lambda: periodic(self.monitor_node_health, self.period, "monitorNodeHealth"),
                lambda: periodic(self.tainting_pass, TAINTING_PASS_PERIOD, "tainting")]

    def metrics(self) -> list[str]:
        out = ["# TYPE node_collector_zone_health gauge"]
        for z, st in self.zone_states.items():
            out.append(f'node_collector_zone_health{{zone="{z.replace(chr(0), "")}"}} '
                       f'{100 if st == NORMAL_STATE else 0}')
        out.append("# TYPE node_collector_evictions_total counter")
        out.append(f"node_collector_evictions_total {self.evictions}")
        return out

    # -- NoSchedule taints (the workqueue) ------------------------------------------------
    async def sync(self, key: str) -> None:
        node = self.nodes.store.get("", key)
        if node is None:
            return
        want = no_schedule_taints(node)
        have = [t for t in T.node_taints(node, T.NO_SCHEDULE) if t.get("key") in
                CONDITION_TAINT_KEYS]
        add = [t for t in want if not any(T.same_taint(t, h) for h in have)]
        remove = [h for h in have if not any(T.same_taint(h, t) for t in want)]
        if add or remove:
            await T.update_taints(self.client, key, add, remove)

    # -- health ---------------------------------------------------------------------------
    def _probe(self, node: dict, now: float) -> NodeHealth:
        name = node["metadata"]["name"]
        ready = condition(node, "Ready")
        hb = (ready or {}).get("lastHeartbeatTime") or ""
        tr = (ready or {}).get("lastTransitionTime") or ""
        h = self.health.get(name)
        if h is None:
            h = self.health[name] = NodeHealth(probe=now, heartbeat=hb, ready_transition=tr)
        elif hb != h.heartbeat or (ready is not None and not h.heartbeat and tr !=
                                    h.ready_transition):
            h.probe, h.heartbeat, h.ready_transition = now, hb, tr
        lease = self.leases.store.get(NODE_LEASE_NAMESPACE, name)
        renew = ((lease or {}).get("spec") or {}).get("renewTime") or ""
        if renew and renew != h.lease_renew:
            h.lease_renew = renew
            h.probe = now
        return h

    async def monitor_node_health(self) -> None:
        now = self.clock()
        nodes = self.nodes.store.list()
        zone_nodes: dict[str, list[tuple[dict, str]]] = {}
        for node in nodes:
            name = node["metadata"]["name"]
            h = self._probe(node, now)
            never = condition(node, "Ready") is None
            grace = self.startup_grace if never else self.grace
            observed = ready_status(node)
            if now > h.probe + grace:
                updated = await self._mark_unknown(node, never)
                if updated is not None:
                    node = updated
                    self.health[name].heartbeat = (condition(node, "Ready") or {}).get(
                        "lastHeartbeatTime") or ""
            current = ready_status(node)
            if observed == "True" and current != "True":
                self.recorder.event(node, NORMAL, "NodeNotReady",
                                    f"Node {name} status is now: NodeNotReady")
                await self._mark_pods_not_ready(name)
            zone_nodes.setdefault(zone_of(node), []).append((node, current))
        self._handle_disruption(zone_nodes)
        for zone, members in zone_nodes.items():
            for node, current in members:
                await self._process_no_execute(node, current, zone)

    async def _mark_unknown(self, node: dict, never: bool) -> dict | None:
        now = rfc3339()
        st = deep_copy(node.get("status") or {})
        conds = st.setdefault("conditions", [])
        changed = False
        for ctype in CONDITIONS:
            c = next((x for x in conds if x.get("type") == ctype), None)
            if c is None:
                conds.append({"type": ctype, "status": "Unknown",
                              "reason": "NodeStatusNeverUpdated",
                              "message": "Kubelet never posted node status.",
                              "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                              "lastTransitionTime": now})
                changed = True
            elif c.get("status") != "Unknown":
                c.update(status="Unknown", reason="NodeStatusUnknown",
                         message="Kubelet stopped posting node status.",
                         lastTransitionTime=now)
                changed = True
        if not changed:
            return None
        obj = deep_copy(node)
        obj["status"] = st
        try:
            return await self.client.update_status(NODES, obj)
        except E.NotFound:
            return None
        except E.Conflict:
            return None      # the kubelet wrote meanwhile: look again next period

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        for pod in self.pods.store.by_index(NODE_NAME_INDEX, node_name):
            c = condition(pod, "Ready")
            if c is None or c.get("status") == "False":
                continue
            obj = deep_copy(pod)
            for x in obj["status"]["conditions"]:
                if x.get("type") == "Ready":
                    x["status"] = "False"
                    x["lastTransitionTime"] = rfc3339()
            try:
                await self.client.update_status(PODS, obj)
            except (E.NotFound, E.Conflict):
                continue

    # -- zones and NoExecute tainting -------------------------------------------------------
    def _zone_state(self, members: list[tuple[dict, str]]) -> str:
        not_ready = sum(1 for _, s in members if s != "True")
        total = len(members)
        if total and not_ready == total:
            return FULL
        if not_ready > 2 and not_ready / max(total, 1) >= self.unhealthy_threshold:
            return PARTIAL
        return NORMAL_STATE

    def _handle_disruption(self, zone_nodes: dict[str, list[tuple[dict, str]]]) -> None:
        states = {z: self._zone_state(m) for z, m in zone_nodes.items()}
        all_down = bool(states) and all(s == FULL for s in states.values())
        if all_down and not self.disrupted:
            log.warning("Controller detected that all Nodes are not-Ready. Entering master "
                        "disruption mode.")
            for z in self.zones.values():
                z.queue.clear()
        elif not all_down and self.disrupted:
            log.info("Controller detected that some Nodes are Ready. Exiting master "
                     "disruption mode.")
            for h in self.health.values():
                h.probe = self.clock()        # every node gets a fresh grace period
        self.disrupted = all_down
        for z, st in states.items():
            size = len(zone_nodes[z])
            if st == PARTIAL:
                qps = self.secondary_rate if size > self.large_cluster else 0.0
            else:
                qps = self.eviction_rate
            tainter = self.zones.get(z)
            if tainter is None or tainter.qps != qps:
                bucket = TokenBucket(qps, 1, self.clock) if qps > 0 else None
                old = tainter.queue if tainter else OrderedDict()
                self.zones[z] = ZoneTainter(bucket, old, qps)
            if self.zone_states.get(z) != st:
                log.info("zone %r is now in state %s", z.replace("\x00", ""), st)
            self.zone_states[z] = st

    async def _process_no_execute(self, node: dict, current: str, zone: str) -> None:
        name = node["metadata"]["name"]
        tainter = self.zones.get(zone)
        has = {t.get("key") for t in T.node_taints(node, T.NO_EXECUTE)}
        if current == "True":
            if tainter is not None:
                tainter.queue.pop(name, None)
            if has & {T.NOT_READY, T.UNREACHABLE}:
                await T.update_taints(self.client, name, remove=[
                    T.taint(T.NOT_READY, T.NO_EXECUTE), T.taint(T.UNREACHABLE, T.NO_EXECUTE)])
                self.recorder.event(node, NORMAL, "NodeReady",
                                    f"Node {name} status is now: NodeReady")
            return
        if self.disrupted:
            return
        want, other = (T.NOT_READY, T.UNREACHABLE) if current == "False" else \
            (T.UNREACHABLE, T.NOT_READY)
        if want in has and other not in has:
            return
        if other in has:
            # swap at once: the node was already being evicted
            await T.update_taints(self.client, name, add=[T.taint(want, T.NO_EXECUTE, True)],
                                  remove=[T.taint(other, T.NO_EXECUTE)])
            return
        if tainter is not None and name not in tainter.queue:
            tainter.queue[name] = self.clock()

    async def tainting_pass(self) -> None:
        if self.disrupted:
            return
        for tainter in self.zones.values():
            while tainter.queue and tainter.bucket is not None and tainter.bucket.try_accept():
                name, _ = tainter.queue.popitem(last=False)
                node = self.nodes.store.get("", name)
                if node is None:
                    continue
                current = ready_status(node)
                if current == "True":
                    continue
                want, other = (T.NOT_READY, T.UNREACHABLE) if current == "False" else \
                    (T.UNREACHABLE, T.NOT_READY)
                try:
                    await T.update_taints(self.client, name,
                                          add=[T.taint(want, T.NO_EXECUTE, True)],
                                          remove=[T.taint(other, T.NO_EXECUTE)])
                except E.ApiError as e:
                    log.warning("tainting node %s failed: %s", name, e)
                    tainter.queue[name] = self.clock()
                    continue
                self.evictions += 1
                log.info("node %s is %s: tainted %s:NoExecute", name,
                         "unreachable" if want == T.UNREACHABLE else "not ready", want)
            await asyncio.sleep(0)
