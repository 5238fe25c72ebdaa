"""Resource metrics from kubelet summaries: the pure part of metrics.k8s.io.

`CpuRates` turns cumulative CPU time (usageCoreNanoSeconds) into a rate over
a window, as metrics-server does between two scrapes: the newest earlier
sample at least `min_window` old is the window's start. A container seen for
the first time is measured since it started (its cumulative time began at
zero then); a node seen for the first time takes the kubelet's own rate
(over the kubelet's previous sample, whose age the summary does not give,
so the window says FIRST_LOOK_WINDOW). Time is passed in, never read here.

`node_metrics` / `pod_metrics` build the NodeMetrics / PodMetrics objects
(cpu in nanocores "…n", memory working set in "…Ki").
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from kcore.api.meta import parse_time_or_none
from kcore.api.metrics import GROUP, VERSION
from kcore.kubelet.timeutil import rfc3339

API_VERSION = f"{GROUP}/{VERSION}"
FIRST_LOOK_WINDOW = 10.0


def cpu_quantity(nanocores: int) -> str:
    return f"{max(int(nanocores), 0)}n"


def memory_quantity(nbytes: int) -> str:
    return f"{max(int(nbytes), 0) // 1024}Ki"


def window_string(seconds: float) -> str:
    """A metav1.Duration as Go prints it, to the millisecond ("1.5s", "10s")."""
    ms = max(int(round(seconds * 1000)), 0)
    if ms % 1000 == 0:
        s = ms // 1000
        if s >= 60:
            m, s = divmod(s, 60)
            return f"{m}m{s}s"
        return f"{s}s"
    return f"{ms / 1000:g}s"


@dataclass
class CpuRates:
    min_window: float = 1.0
    keep: float = 120.0           # samples (and keys) older than this are dropped
    samples: dict[str, deque] = field(default_factory=dict)

    def observe(self, key: str, now: float, cum_ns: int, started: float | None = None,
                fallback_nanocores: int | None = None) -> tuple[int, float] | None:
        """(nanocores, window seconds) for key at now; None when no rate is known."""
        q = self.samples.setdefault(key, deque())
        while q and now - q[0][0] > self.keep:
            q.popleft()
        base = None
        for t, c in reversed(q):
            if now - t >= self.min_window:
                base = (t, c)
                break
        q.append((now, cum_ns))
        while len(q) > 64:
            q.popleft()
        if base is None and started is not None and now - started > 0:
            base = (started, 0)
        if base is None:
            if fallback_nanocores is None:
                return None
            return max(int(fallback_nanocores), 0), FIRST_LOOK_WINDOW
        dt = now - base[0]
        if dt <= 0:
            return None
        return max(int((cum_ns - base[1]) / dt), 0), dt

    def prune(self, now: float) -> None:
        for k in [k for k, q in self.samples.items() if not q or now - q[-1][0] > self.keep]:
            del self.samples[k]


def _meta(obj: dict, now: float, namespaced: bool) -> dict:
    md = obj.get("metadata") or {}
    out = {"name": md.get("name", "")}
    if namespaced:
        out["namespace"] = md.get("namespace", "")
    out["creationTimestamp"] = rfc3339(now)
    if md.get("labels"):
        out["labels"] = dict(md["labels"])
    return out


def node_metrics(node: dict, summary_node: dict, rates: CpuRates, now: float) -> dict | None:
    """NodeMetrics for node from its summary's "node" part; None without usage."""
    cpu = summary_node.get("cpu") or {}
    mem = summary_node.get("memory") or {}
    if "usageCoreNanoSeconds" not in cpu or "workingSetBytes" not in mem:
        return None
    name = (node.get("metadata") or {}).get("name", "")
    r = rates.observe(f"node/{name}", now, int(cpu["usageCoreNanoSeconds"]),
                      fallback_nanocores=cpu.get("usageNanoCores"))
    if r is None:
        return None
    nanocores, window = r
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION,
            "metadata": _meta(node, now, False), "timestamp": rfc3339(now),
            "window": window_string(window),
            "usage": {"cpu": cpu_quantity(nanocores),
                      "memory": memory_quantity(mem["workingSetBytes"])}}


def pod_metrics(pod: dict, summary_pod: dict, rates: CpuRates, now: float) -> dict | None:
    """PodMetrics for pod from its entry in a summary's "pods"; None without
    container usage."""
    uid = (pod.get("metadata") or {}).get("uid", "")
    containers, windows = [], []
    for c in summary_pod.get("containers") or []:
        cpu, mem = c.get("cpu") or {}, c.get("memory") or {}
        if "usageCoreNanoSeconds" not in cpu:
            continue
        started = parse_time_or_none(c.get("startTime"))
        r = rates.observe(f"pod/{uid}/{c.get('name')}/{c.get('startTime')}", now,
                          int(cpu["usageCoreNanoSeconds"]), started=started)
        if r is None:
            continue
        windows.append(r[1])
        containers.append({"name": c.get("name", ""),
                           "usage": {"cpu": cpu_quantity(r[0]),
                                     "memory": memory_quantity(mem.get("workingSetBytes", 0))}})
    if not containers:
        return None
    return {"kind": "PodMetrics", "apiVersion": API_VERSION,
            "metadata": _meta(pod, now, True), "timestamp": rfc3339(now),
            "window": window_string(min(windows)), "containers": containers}


def metrics_list(kind: str, items: list[dict]) -> dict:
    return {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {},
            "items": items}
