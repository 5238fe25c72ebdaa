"""The scheduling queue: which pending pod is tried next, and when a failed one comes back.

A pure data structure, as kube-scheduler's ``PriorityQueue`` is, with time
passed in (``now``) so tests step it by hand. Three places a pending pod can be:

- **active**: ready to be tried; popped by priority (``spec.priority``, higher
  first), then by the time it entered the queue (older first);
- **backoff**: it failed recently and waits ``initial · 2^(attempts−1)``
  seconds (1 s → 10 s by default) before it is active again;
- **unschedulable**: no node fitted; it waits for the cluster to change.

A popped pod is *in flight* until the driver calls ``done`` (bound) or hands
it back (``requeue_unschedulable``/``requeue_backoff``). The rules, as kube's:

- ``move_all(now)`` — the cluster changed (a node was added or its scheduling
  properties changed, an assigned pod was deleted): every unschedulable pod
  goes to backoff if its backoff has not expired, else to active. kcore does
  not ask which plugin rejected the pod; any such event moves them all.
- a pod that fails *after* a move request that happened while it was in
  flight goes to backoff, not unschedulable (the change it missed might make
  it fit: kube's ``moveRequestCycle``);
- ``flush(now)`` — backoff pods whose time is up become active, and pods
  parked as unschedulable for longer than ``max_unschedulable`` (60 s) are
  moved as above; the driver calls it every second;
- an update of a parked pod's spec, labels or annotations moves it at once
  (the update may make it fit); status-only updates just refresh the object.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["QueuedPod", "SchedulingQueue", "pod_priority", "queue_key"]

ACTIVE, BACKOFF, UNSCHEDULABLE, IN_FLIGHT = "active", "backoff", "unschedulable", "in-flight"


def queue_key(pod: dict) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name', '')}"


def pod_priority(pod: dict) -> int:
    p = (pod.get("spec") or {}).get("priority")
    try:
        return int(p) if p is not None else 0
    except (TypeError, ValueError):
        return 0


@dataclass(eq=False)
class QueuedPod:
    """A pending pod and its queue history (kube's QueuedPodInfo)."""
    key: str
    pod: dict
    priority: int
    timestamp: float            # when it last entered the queue (orders the active queue)
    initial_attempt: float      # when it was first added (e2e latency starts here)
    attempts: int = 0           # scheduling attempts so far
    cycle: int = 0              # the scheduling cycle that popped it last
    popped: float = 0.0         # when it was popped last
    where: str = ""
    deleted: bool = False       # deleted while in flight: never requeue
    seq: int = field(default=0, repr=False)


def _spec_changed(old: dict, new: dict) -> bool:
    """kube's isPodUpdated: anything but status and resourceVersion/generation/
    managedFields changed."""
    if old.get("spec") != new.get("spec"):
        return True
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return a.get("labels") != b.get("labels") or a.get("annotations") != b.get("annotations")


class SchedulingQueue:
    def __init__(self, initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_unschedulable: float = 60.0) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self.pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, float, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._parked: dict[str, QueuedPod] = {}
        self._seq = 0
        self.counts = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0, IN_FLIGHT: 0}
        self.scheduling_cycle = 0
        self.move_request_cycle = -1

    # -- sizes ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pods)

    def __contains__(self, key: str) -> bool:
        return key in self.pods

    def has_active(self) -> bool:
        return self.counts[ACTIVE] > 0

    def get(self, key: str) -> QueuedPod | None:
        return self.pods.get(key)

    # -- placement ------------------------------------------------------------------------
    def backoff_duration(self, qp: QueuedPod) -> float:
        d = self.initial_backoff
        for _ in range(1, qp.attempts):
            d *= 2
            if d >= self.max_backoff:
                return self.max_backoff
        return min(d, self.max_backoff)

    def backoff_expiry(self, qp: QueuedPod) -> float:
        return qp.timestamp + self.backoff_duration(qp)

    def _leave(self, qp: QueuedPod) -> None:
        if qp.where:
            self.counts[qp.where] -= 1
            if qp.where == UNSCHEDULABLE:
                del self._parked[qp.key]
        qp.where = ""
        self._seq += 1
        qp.seq = self._seq          # invalidates heap entries

    def _to_active(self, qp: QueuedPod) -> None:
        self._leave(qp)
        qp.where = ACTIVE
        self.counts[ACTIVE] += 1
        heapq.heappush(self._active, (-qp.priority, qp.timestamp, qp.seq, qp.key))

    def _to_backoff(self, qp: QueuedPod) -> None:
        self._leave(qp)
        qp.where = BACKOFF
        self.counts[BACKOFF] += 1
        heapq.heappush(self._backoff, (self.backoff_expiry(qp), qp.seq, qp.key))

    def _to_unschedulable(self, qp: QueuedPod) -> None:
        self._leave(qp)
        qp.where = UNSCHEDULABLE
        self.counts[UNSCHEDULABLE] += 1
        self._parked[qp.key] = qp

    def _to_active_or_backoff(self, qp: QueuedPod, now: float) -> None:
        if qp.attempts and self.backoff_expiry(qp) > now:
            self._to_backoff(qp)
        else:
            self._to_active(qp)

    # -- informer events ------------------------------------------------------------------
    def add(self, pod: dict, now: float) -> QueuedPod:
        """A new pending pod (or an update of one already queued)."""
        key = queue_key(pod)
        qp = self.pods.get(key)
        if qp is not None:
            self.update(qp.pod, pod, now)
            return qp
        qp = QueuedPod(key, pod, pod_priority(pod), now, now)
        self.pods[key] = qp
        self._to_active(qp)
        return qp

    def update(self, old: dict | None, new: dict, now: float) -> None:
        key = queue_key(new)
        qp = self.pods.get(key)
        if qp is None:
            self.add(new, now)
            return
        changed = _spec_changed(qp.pod, new)
        qp.pod = new
        prio = pod_priority(new)
        if qp.where == UNSCHEDULABLE and changed:
            qp.priority = prio
            self._to_active_or_backoff(qp, now)
        elif qp.where == ACTIVE and prio != qp.priority:
            qp.priority = prio
            self._to_active(qp)
        else:
            qp.priority = prio

    def delete(self, key: str) -> QueuedPod | None:
        """The pod is gone (or was bound by someone): forget it; a pod in flight is
        only marked, so a failure later does not requeue it."""
        qp = self.pods.pop(key, None)
        if qp is None:
            return None
        if qp.where == IN_FLIGHT:
            qp.deleted = True
        self._leave(qp)
        return qp

    # -- the scheduling loop's side -------------------------------------------------------
    def pop(self, n: int, now: float) -> list[QueuedPod]:
        """Up to n active pods, best first; they are in flight until done/requeued.
        All of them belong to one scheduling cycle per pod (cycles are counted)."""
        out: list[QueuedPod] = []
        heap, pods = self._active, self.pods
        while heap and len(out) < n:
            _, _, seq, key = heapq.heappop(heap)
            qp = pods.get(key)
            if qp is None or qp.seq != seq or qp.where != ACTIVE:
                continue
            self._leave(qp)
            qp.where = IN_FLIGHT
            self.counts[IN_FLIGHT] += 1
            self.scheduling_cycle += 1
            qp.cycle = self.scheduling_cycle
            qp.popped = now
            qp.attempts += 1
            out.append(qp)
        return out

    def done(self, qp: QueuedPod) -> None:
        """The pod is bound: it leaves the queue."""
        cur = self.pods.get(qp.key)
        if cur is qp:
            del self.pods[qp.key]
            self._leave(qp)

    def requeue_unschedulable(self, qp: QueuedPod, now: float) -> None:
        """No node fitted. Parked until the cluster changes — or backing off if it
        already changed since the pod was popped."""
        if not self._reclaim(qp, now):
            return
        if self.move_request_cycle >= qp.cycle:
            self._to_backoff(qp)
        else:
            self._to_unschedulable(qp)

    def requeue_backoff(self, qp: QueuedPod, now: float) -> None:
        """An error (a failed binding): retry after the pod's backoff."""
        if self._reclaim(qp, now):
            self._to_backoff(qp)

    def _reclaim(self, qp: QueuedPod, now: float) -> bool:
        if qp.deleted or self.pods.get(qp.key) is not qp:
            return False
        qp.timestamp = now
        return True

    # -- cluster events and timers --------------------------------------------------------
    def move_all(self, now: float) -> int:
        """Something changed that may make parked pods fit. Returns how many moved."""
        self.move_request_cycle = self.scheduling_cycle
        moved = list(self._parked.values())
        for qp in moved:
            self._to_active_or_backoff(qp, now)
        return len(moved)

    def flush(self, now: float, unschedulable: bool = True) -> int:
        """Backoff pods whose time is up → active; with ``unschedulable``, pods parked
        longer than max_unschedulable → active or backoff. Returns how many became
        active."""
        before = self.counts[ACTIVE]
        heap, pods = self._backoff, self.pods
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            qp = pods.get(key)
            if qp is not None and qp.seq == seq and qp.where == BACKOFF:
                self._to_active(qp)
        if unschedulable and self._parked:
            stale = [qp for qp in self._parked.values()
                     if now - qp.timestamp > self.max_unschedulable]
            for qp in stale:
                self._to_active_or_backoff(qp, now)
        return self.counts[ACTIVE] - before

    def next_backoff_expiry(self) -> float | None:
        """When the earliest backoff ends (None: nobody is backing off)."""
        heap, pods = self._backoff, self.pods
        while heap:
            exp, seq, key = heap[0]
            qp = pods.get(key)
            if qp is not None and qp.seq == seq and qp.where == BACKOFF:
                return exp
            heapq.heappop(heap)
        return None

    def pending(self) -> dict[str, int]:
        """kube's scheduler_pending_pods gauge: active, backoff, unschedulable (and
        in flight)."""
        return dict(self.counts)
