"""The scheduler process's Prometheus metrics, under kube-scheduler's names.

| metric | |
|---|---|
| `scheduler_schedule_attempts_total{result,profile}` | result: scheduled, unschedulable, error |
| `scheduler_e2e_scheduling_duration_seconds{result,profile}` | pop from the queue → bound (or failed) |
| `scheduler_pod_scheduling_duration_seconds{attempts}` | first queued → bound |
| `scheduler_scheduling_algorithm_duration_seconds` | the core's time per pod (batch time / batch size) |
| `scheduler_binding_duration_seconds` | the `pods/binding` POST |
| `scheduler_pending_pods{queue}` | active, backoff, unschedulable, in-flight (gauges, read at scrape time) |
| `scheduler_cache_size{type}` | nodes, pods (charged to nodes), assumed_pods |
| `scheduler_batch_size` | pods per scheduling batch |
| `leader_election_master_status{name}` | 1 while this instance leads |
"""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

__all__ = ["SchedulerMetrics"]

_LATENCY = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0,
            60.0)
_FAST = (0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05,
         0.1, 1.0)


class _Pending:
    """Reads the queue's counters and the cache's sizes when scraped."""

    def __init__(self, pending: Callable[[], dict[str, int]],
                 cache: Callable[[], dict[str, int]]) -> None:
        self.pending, self.cache = pending, cache

    def collect(self):
        g = GaugeMetricFamily("scheduler_pending_pods", "Number of pending pods, by the "
                              "queue type.", labels=["queue"])
        for q, n in sorted(self.pending().items()):
            g.add_metric([q], n)
        yield g
        c = GaugeMetricFamily("scheduler_cache_size", "Number of nodes, pods, and assumed "
                              "(bound) pods in the scheduler cache.", labels=["type"])
        for t, n in sorted(self.cache().items()):
            c.add_metric([t], n)
        yield c


class SchedulerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.attempts = Counter(
            "scheduler_schedule_attempts_total", "Number of attempts to schedule pods, by "
            "the result. 'unschedulable' means a pod could not be scheduled, while 'error' "
            "means an internal scheduler problem.", ["result", "profile"], registry=r)
        self.e2e = Histogram(
            "scheduler_e2e_scheduling_duration_seconds", "E2e scheduling latency in seconds "
            "(scheduling algorithm + binding)", ["result", "profile"], buckets=_LATENCY,
            registry=r)
        self.pod_duration = Histogram(
            "scheduler_pod_scheduling_duration_seconds", "E2e latency for a pod being "
            "scheduled which may include multiple scheduling attempts.", ["attempts"],
            buckets=_LATENCY, registry=r)
        self.algorithm = Histogram(
            "scheduler_scheduling_algorithm_duration_seconds", "Scheduling algorithm "
            "latency in seconds (per pod: a batch's time divided by its size)",
            buckets=_FAST, registry=r)
        self.binding = Histogram(
            "scheduler_binding_duration_seconds", "Binding latency in seconds",
            buckets=_LATENCY, registry=r)
        self.batch = Histogram(
            "scheduler_batch_size", "Pods taken from the active queue per scheduling batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000), registry=r)
        self.leader = Gauge(
            "leader_election_master_status", "Gauge of if the reporting system is master "
            "of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the "
            "string used to identify the lease.", ["name"], registry=r)
        self._children: dict = {}

    def watch(self, pending: Callable[[], dict[str, int]],
              cache: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_Pending(pending, cache))

    def attempt(self, result: str, profile: str, seconds: float) -> None:
        key = (result, profile)
        ch = self._children.get(key)
        if ch is None:
            ch = self._children[key] = (self.attempts.labels(result, profile),
                                        self.e2e.labels(result, profile))
        ch[0].inc()
        ch[1].observe(seconds)

    def scheduled(self, attempts: int, seconds: float) -> None:
        key = ("pod", min(attempts, 16))
        ch = self._children.get(key)
        if ch is None:
            ch = self._children[key] = self.pod_duration.labels(
                str(attempts) if attempts < 16 else "16+")
        ch.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
