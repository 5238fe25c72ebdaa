"""Resource usage, cAdvisor-like, from /proc: the node (CPU, memory, the root
dir's file system, processes) and each pod's containers (their process groups).

CPU rates (usageNanoCores) are the change of cumulative CPU time since the
previous sample of the same thing, so a second look gives a rate."""
from __future__ import annotations

import os
import time

from kcore.kubelet.hostinfo import meminfo
from kcore.kubelet.timeutil import rfc3339

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def node_cpu_ns() -> int:
    """Cumulative busy CPU time of the machine, in nanoseconds."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    v = [int(x) for x in parts]
    busy = sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)    # minus idle and iowait
    return busy * 1_000_000_000 // _TICK


def process_groups() -> dict[int, tuple[int, int, int]]:
    """pgid → (cpu ns, rss bytes, processes) over every process in /proc."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pgid = int(f[2])
        cpu = (int(f[11]) + int(f[12])) * 1_000_000_000 // _TICK
        rss = int(f[21]) * _PAGE
        e = out.setdefault(pgid, [0, 0, 0])
        e[0] += cpu
        e[1] += rss
        e[2] += 1
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def fs_stats(path: str) -> dict:
    try:
        st = os.statvfs(path)
    except OSError:
        return {}
    cap, avail = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    return {"time": rfc3339(), "availableBytes": avail, "capacityBytes": cap,
            "usedBytes": cap - st.f_bfree * st.f_frsize, "inodesFree": st.f_favail,
            "inodes": st.f_files, "inodesUsed": st.f_files - st.f_ffree}


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


class StatsProvider:
    def __init__(self, kubelet, clock=time.time):
        self.kl = kubelet
        self.clock = clock
        self.start = clock()
        self.prev: dict[str, tuple[float, int]] = {}
        self._rate("node", node_cpu_ns())

    def _rate(self, key: str, cum_ns: int) -> int:
        now = time.monotonic()
        p = self.prev.get(key)
        self.prev[key] = (now, cum_ns)
        if p is None or now - p[0] <= 0:
            return 0
        return max(0, int((cum_ns - p[1]) / (now - p[0])))

    def _cpu(self, key: str, cum_ns: int, ts: str) -> dict:
        return {"time": ts, "usageNanoCores": self._rate(key, cum_ns),
                "usageCoreNanoSeconds": cum_ns}

    def summary(self) -> dict:
        ts = rfc3339(self.clock())
        mi = meminfo()
        total, avail = mi.get("MemTotal", 0), mi.get("MemAvailable", 0)
        used = total - mi.get("MemFree", 0)
        ws = total - avail
        node = {
            "nodeName": self.kl.config.node_name,
            "systemContainers": [],
            "startTime": rfc3339(self.start),
            "cpu": self._cpu("node", node_cpu_ns(), ts),
            "memory": {"time": ts, "availableBytes": avail, "usageBytes": used,
                       "workingSetBytes": ws, "rssBytes": ws, "pageFaults": 0,
                       "majorPageFaults": 0},
            "fs": fs_stats(self.kl.config.root_dir),
            "runtime": {"imageFs": fs_stats(self.kl.config.root_dir)},
            "rlimit": {"time": ts, "maxpid": _pid_max(),
                       "curproc": sum(1 for d in os.listdir("/proc") if d.isdigit())},
        }
        groups = process_groups()
        pods = []
        seen = set()
        for w in list(self.kl.workers.values()):
            cstats, pcpu, pmem, pproc = [], 0, 0, 0
            for r in w.all_recs():
                h = r.handle
                if h is None:
                    continue
                cpu_ns, rss, nproc = groups.get(h.pid, (0, 0, 0))
                key = f"c:{h.id}"
                seen.add(key)
                pcpu += cpu_ns
                pmem += rss
                pproc += nproc
                cstats.append({
                    "name": r.name, "startTime": rfc3339(h.started_at),
                    "cpu": self._cpu(key, cpu_ns, ts),
                    "memory": {"time": ts, "usageBytes": rss, "workingSetBytes": rss,
                               "rssBytes": rss, "pageFaults": 0, "majorPageFaults": 0},
                    "logs": {"time": ts, "usedBytes": _dir_bytes(os.path.dirname(h.log_path))},
                })
            pkey = f"p:{w.ref.uid}"
            seen.add(pkey)
            pods.append({
                "podRef": {"name": w.ref.name, "namespace": w.ref.namespace, "uid": w.ref.uid},
                "startTime": rfc3339(w.start_time or self.start),
                "containers": cstats,
                "cpu": self._cpu(pkey, pcpu, ts),
                "memory": {"time": ts, "usageBytes": pmem, "workingSetBytes": pmem,
                           "rssBytes": pmem},
                "process_stats": {"process_count": pproc},
            })
        for k in [k for k in self.prev if k != "node" and k not in seen]:
            del self.prev[k]
        return {"node": node, "pods": pods}


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 0
