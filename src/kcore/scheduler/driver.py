"""The scheduler process's driver: informers in, bindings out.

    d = SchedulerDriver(client, load_config(path), leader_election=LeaderElectionConfig(...))
    await d.run()            # returns when leadership is lost (the process then exits)

- **Informers** (kcore.client): nodes → the core's node table; pods split
  three ways — assigned pods are charged to their node in the core (a bind
  seen through the watch confirms the assumption), unassigned pods whose
  ``schedulerName`` one of the profiles serves go to the scheduling queue,
  others are ignored.
- **Leader election** on a Lease (``kube-system/kube-scheduler``): every
  instance keeps its informers, core and queue warm; only the leader pops the
  queue and binds. Losing the lease ends ``run()``.
- **Scheduling loop** (leader): pop up to ``batch_size`` active pods, one
  ``schedule_many`` call (one cycle per pod, each seeing the previous
  placements), hand decisions to the binder, park failures. The loop does not
  wait for bindings, but stops popping while ``max_binding_backlog`` decisions
  wait to be bound, so priorities still order what is bound next.
- **Binder**: concurrent ``pods/binding`` POSTs; a failed bind forgets the
  assumption (which moves parked pods: its node has room again) and requeues
  the pod with backoff (unless the pod is gone or already bound).
- **Cluster events that move parked pods** (kcore's simple rule, see
  ``queue``): a node added; a node whose labels, taints, ``unschedulable``,
  allocatable or Ready status changed; an assigned pod deleted or finished.
  Heartbeat-only node updates move nothing.
- **Events** (the client's recorder, aggregated): ``Scheduled`` ("Successfully
  assigned ns/pod to node") and ``FailedScheduling`` with the core's kube
  message; an unschedulable pod also gets ``PodScheduled=False``,
  reason ``Unschedulable``, on its status (once per distinct message).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from kcore.client import (
    NODES,
    NORMAL,
    PODS,
    WARNING,
    EventRecorder,
    LeaderElectionConfig,
    LeaderElector,
    SharedInformerFactory,
)
from kcore.client import errors as E

from .binder import Binder, BindRequest
from .config import SchedulerConfig
from .core import Scheduler
from .metrics import SchedulerMetrics
from .queue import QueuedPod, SchedulingQueue, queue_key

__all__ = ["COMPONENT", "SchedulerDriver", "node_changed"]

log = logging.getLogger("kcore.scheduler")

COMPONENT = "default-scheduler"


def _assigned(pod: dict) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _ready_status(node: dict) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status")
    return None


def node_changed(old: dict, new: dict) -> bool:
    """Did a node change in a way that may make a parked pod fit? (Labels, taints,
    cordon, allocatable, Ready status; heartbeats do not count.)"""
    os_, ns_ = old.get("spec") or {}, new.get("spec") or {}
    if bool(os_.get("unschedulable")) != bool(ns_.get("unschedulable")) or \
            os_.get("taints") != ns_.get("taints"):
        return True
    if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
        return True
    if (old.get("status") or {}).get("allocatable") != \
            (new.get("status") or {}).get("allocatable"):
        return True
    return _ready_status(old) != _ready_status(new)


class SchedulerDriver:
    """One scheduler process's moving parts. ``client`` does the informers and
    bindings; ``event_client`` (default: ``client``) writes events, so a
    rate-limited client can keep event writes from competing with bindings;
    ``election_client`` renews the lease; ``bind_transport()`` makes each binder
    worker's transport (default: ``client``; see ``binder.DirectBinding``)."""

    def __init__(self, client, config: SchedulerConfig, *, seed: int = 0,
                 batch_size: int = 500, parallel_binds: int = 128,
                 max_binding_backlog: int = 2000,
                 initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_unschedulable: float = 60.0,
                 leader_election: LeaderElectionConfig | None = None,
                 event_client=None, election_client=None,
                 bind_transport: Callable[[], object] | None = None,
                 metrics: SchedulerMetrics | None = None,
                 after_sync: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.core = Scheduler(config, seed=seed)
        self.queue = SchedulingQueue(initial_backoff, max_backoff, max_unschedulable)
        self.batch_size = max(1, batch_size)
        self.max_binding_backlog = max(self.batch_size, max_binding_backlog)
        # pop again only once this much room is free (no trickle of 1-pod batches)
        self._min_room = min(self.batch_size, max(1, self.max_binding_backlog // 4))
        self.leader_election = leader_election
        self.election_client = election_client or client
        self.metrics = metrics or SchedulerMetrics()
        self.metrics.watch(self.queue.pending, self._cache_sizes)
        self.recorder = EventRecorder(event_client or client, component=COMPONENT)
        self.binder = Binder(client, self._bound, parallel_binds, bind_transport)
        self.after_sync = after_sync
        self.clock = clock
        self.factory = SharedInformerFactory(client)
        self.nodes = self.factory.informer(NODES)
        self.pods = self.factory.informer(PODS)
        self.nodes.add_event_handler(self._node_add, self._node_update, self._node_delete)
        self.pods.add_event_handler(self._pod_add, self._pod_update, self._pod_delete)
        self.elector: LeaderElector | None = None
        self.leading = False
        self.synced = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._conditions: dict[str, str] = {}      # pod key -> last Unschedulable message
        self._tasks: list[asyncio.Task] = []
        self.cycles = 0

    # -- informer handlers ---------------------------------------------------------------
    def _node_add(self, node: dict) -> None:
        self.core.add_node(node)
        self._move_all()

    def _node_update(self, old: dict, new: dict) -> None:
        if old is new:
            return
        self.core.update_node(old, new)
        if node_changed(old, new):
            self._move_all()

    def _node_delete(self, node: dict) -> None:
        self.core.delete_node(node)

    def _pod_add(self, pod: dict) -> None:
        if _assigned(pod):
            self.core.add_pod(pod)
            if self.queue.pods:
                self.queue.delete(queue_key(pod))
        elif not _finished(pod) and self.core.responsible_for(pod):
            self.queue.add(pod, self.clock())
            self._wake.set()

    def _pod_update(self, old: dict, new: dict) -> None:
        if old is new:
            return
        if _assigned(new):
            if not _assigned(old):
                self.queue.delete(queue_key(new))
                self._conditions.pop(queue_key(new), None)
            self.core.update_pod(old, new)
            if _finished(new) and not _finished(old):
                self._move_all()
        elif _finished(new):
            self.queue.delete(queue_key(new))
        elif self.core.responsible_for(new):
            self.queue.update(old, new, self.clock())
            self._wake.set()

    def _pod_delete(self, pod: dict) -> None:
        self.core.delete_pod(pod)
        if _assigned(pod):
            if not _finished(pod):
                self._move_all()
        else:
            self.queue.delete(queue_key(pod))
            self._conditions.pop(queue_key(pod), None)

    def _move_all(self) -> None:
        if self.queue.move_all(self.clock()):
            self._wake.set()

    def _cache_sizes(self) -> dict[str, int]:
        t = self.core.table
        assumed = sum(1 for r in t.pods.values() if r.assumed)
        return {"nodes": len(t.row_of), "pods": len(t.pods) - assumed, "assumed_pods": assumed}

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, sync_timeout: float | None = None) -> None:
        """Start the informers and wait for their first list."""
        self.factory.start()
        if not await self.factory.wait_for_cache_sync(sync_timeout):
            raise TimeoutError("scheduler: informer caches did not sync")
        self.synced.set()
        log.info("caches synced: %d nodes, %d pods, %d pending", len(self.nodes.store),
                 len(self.pods.store), len(self.queue))
        if self.after_sync is not None:
            self.after_sync()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        await self.binder.stop()
        await self.recorder.stop(timeout=1.0)
        await self.factory.shutdown()

    async def run(self) -> None:
        """Start, then lead (with leader election: once elected). Returns when the
        lease is lost; cancel it to stop (the lease is released)."""
        if not self.synced.is_set():
            await self.start()
        if self.leader_election is None:
            await self.lead()
            return
        name = self.leader_election.lock_name
        self.metrics.leader.labels(name).set(0)
        self.elector = LeaderElector(
            self.election_client, self.leader_election, on_started_leading=self.lead,
            on_new_leader=lambda who: log.info("new leader elected: %s", who))
        await self.elector.run()

    async def lead(self) -> None:
        """The leader's work: schedule and bind until cancelled."""
        self.leading = True
        name = self.leader_election.lock_name if self.leader_election else ""
        if name:
            self.metrics.leader.labels(name).set(1)
        log.info("leading: scheduling %d pending pods", len(self.queue))
        self.binder.start()
        flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        try:
            await self._schedule_loop()
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await flusher
            self.leading = False
            if name:
                self.metrics.leader.labels(name).set(0)
            await self.binder.stop()

    # -- the scheduling loop --------------------------------------------------------------
    async def _flush_loop(self) -> None:
        """Backoff pods whose time is up → active (every second); long-parked
        unschedulable pods → active or backoff (every 30 s, after 60 s parked)."""
        q = self.queue
        last_parked = self.clock()
        while True:
            now = self.clock()
            nxt = q.next_backoff_expiry()
            delay = 1.0 if nxt is None else min(1.0, max(nxt - now, 0.01))
            await asyncio.sleep(delay)
            now = self.clock()
            parked = now - last_parked >= 30.0
            if parked:
                last_parked = now
            if q.flush(now, unschedulable=parked):
                self._wake.set()

    async def _schedule_loop(self) -> None:
        q, core, binder = self.queue, self.core, self.binder
        while True:
            if not q.has_active():
                self._wake.clear()
                await self._wake.wait()
                continue
            room = self.max_binding_backlog - len(binder)
            if room < self._min_room:
                self._room.clear()
                await self._room.wait()
                continue
            now = self.clock()
            batch = q.pop(min(self.batch_size, room), now)
            todo: list[QueuedPod] = []
            for qp in batch:
                if (qp.pod.get("metadata") or {}).get("deletionTimestamp") or \
                        _assigned(qp.pod):
                    q.done(qp)          # being deleted / bound meanwhile: skip (as kube)
                else:
                    todo.append(qp)
            if not todo:
                continue
            t0 = time.perf_counter()
            try:
                decisions = core.schedule_many([qp.pod for qp in todo])
            except Exception:   # noqa: BLE001 - a core bug must not stop the scheduler
                log.exception("scheduling cycle failed; requeueing %d pods", len(todo))
                for qp in todo:
                    core.forget(qp.pod)
                    q.requeue_backoff(qp, self.clock())
                    self.metrics.attempt("error", _profile(qp.pod), 0.0)
                await asyncio.sleep(0.1)
                continue
            took = time.perf_counter() - t0
            self.cycles += len(todo)
            self.metrics.batch.observe(len(todo))
            per_pod = took / len(todo)
            alg = self.metrics.algorithm
            now = self.clock()
            for qp, d in zip(todo, decisions):
                alg.observe(per_pod)
                if d.node is not None:
                    md = qp.pod["metadata"]
                    binder.submit(BindRequest(md.get("namespace") or "default", md["name"],
                                              md.get("uid"), d.node, qp))
                else:
                    self._unschedulable(qp, d.message or "", now)
            await asyncio.sleep(0)

    def _unschedulable(self, qp: QueuedPod, message: str, now: float) -> None:
        self.metrics.attempt("unschedulable", _profile(qp.pod), now - qp.popped)
        self.recorder.event(qp.pod, WARNING, "FailedScheduling", message)
        self._set_unschedulable_condition(qp, message)
        self.queue.requeue_unschedulable(qp, now)

    def _set_unschedulable_condition(self, qp: QueuedPod, message: str) -> None:
        if self._conditions.get(qp.key) == message:
            return
        self._conditions[qp.key] = message
        md = qp.pod["metadata"]
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": None,
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for c in (qp.pod.get("status") or {}).get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                cond["lastTransitionTime"] = c.get("lastTransitionTime") or \
                    cond["lastTransitionTime"]
                if c.get("reason") == "Unschedulable" and c.get("message") == message:
                    return
        patch = {"status": {"conditions": [cond]}}
        task = asyncio.get_running_loop().create_task(self._patch_status(
            md.get("namespace") or "default", md["name"], patch))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _patch_status(self, ns: str, name: str, patch: dict) -> None:
        try:
            await self.client.patch(PODS, name, patch, ns, patch_type="strategic",
                                    subresource="status")
        except E.ApiError as e:
            log.debug("pod %s/%s: condition not updated: %s", ns, name, e)

    # -- binding results ------------------------------------------------------------------
    def _bound(self, req: BindRequest, err: Exception | None, seconds: float) -> None:
        qp: QueuedPod = req.token           # type: ignore[assignment]
        q = self.queue
        now = self.clock()
        if self.max_binding_backlog - len(self.binder) >= self._min_room:
            self._room.set()
        if err is None:
            self.metrics.binding.observe(seconds)
            self.metrics.attempt("scheduled", _profile(qp.pod), now - qp.popped)
            self.metrics.scheduled(qp.attempts, now - qp.initial_attempt)
            self.recorder.event(qp.pod, NORMAL, "Scheduled",
                                f"Successfully assigned {req.namespace}/{req.name} to "
                                f"{req.node}")
            q.done(qp)
            self._conditions.pop(qp.key, None)
            return
        self.core.forget(qp.pod)
        self._move_all()        # its node has room again (kube: as if an assigned pod left)
        msg = getattr(err, "message", "") or str(err)
        if isinstance(err, E.NotFound) or (isinstance(err, E.Conflict) and
                                           "already assigned" in msg):
            q.done(qp)           # gone, or bound by someone else: the informer tells the rest
            return
        log.info("binding %s to %s failed: %s", qp.key, req.node, msg)
        self.metrics.attempt("error", _profile(qp.pod), now - qp.popped)
        self.recorder.event(qp.pod, WARNING, "FailedScheduling",
                            f'running Bind plugin "DefaultBinder": {msg}')
        q.requeue_backoff(qp, now)

    # -- explain --------------------------------------------------------------------------
    def explain(self, namespace: str, name: str, top: int = 5) -> str:
        """The core's explanation for a cached pod, as the next cycle would see it."""
        pod = self.pods.store.get(namespace, name)
        if pod is None:
            raise KeyError(f"pod {namespace}/{name} not found in the scheduler's cache")
        return explain_text(self.core, pod, top)


def explain_text(core: Scheduler, pod: dict, top: int = 5) -> str:
    """``core.explain(pod).format()``, for a pending pod or — hypothetically, as if
    it were pending again — a bound one."""
    md = pod.get("metadata") or {}
    ref = f"{md.get('namespace') or 'default'}/{md.get('name', '')}"
    node = (pod.get("spec") or {}).get("nodeName")
    head = ""
    if node:
        head = (f"pod is bound to {node}; showing where it would be placed if it were "
                f"pending now\n")
        pod = {**pod, "spec": {k: v for k, v in pod["spec"].items() if k != "nodeName"}}
    return head + dataclasses.replace(core.explain(pod, top), pod=ref).format()


def _profile(pod: dict) -> str:
    return (pod.get("spec") or {}).get("schedulerName") or COMPONENT
