"""End-to-end scheduler benchmark: real `kcore apiserver` + `kcore scheduler` processes.

    python bench/scheduler/e2e.py                          # 10,000 nodes, 30,000 pods
    python bench/scheduler/e2e.py --nodes 500 --pods 2000  # CI size
    python bench/scheduler/e2e.py --profile                # + py-spy of both servers

1. starts `kcore apiserver` (embedded store, temp data dir on disk, fsync on)
   on a free 127.0.0.1 port;
2. registers ``--nodes`` Node objects through the API as a kubelet would
   (capacity/allocatable 32 cpu, 128 Gi, 110 pods, a Ready condition,
   hostname/zone labels) — or, with ``--hollow``, starts
   `kcore kubelet --hollow-nodes=N` and waits for its nodes;
3. starts `kcore scheduler` (leader election on, as deployed) and waits until
   it leads and its cache holds every node;
4. watches pods and creates ``--pods`` pods (scheduler_perf's pod-default:
   100m / 500Mi, one container port) with ``--concurrency`` creates in flight
   on keep-alive connections;
5. waits until the watch has shown every pod bound (``spec.nodeName``).

Reported: time from the first create until every pod is bound, pods/s over
that window, create→bound latency percentiles per pod (the create request's
send time in this process to the watch event showing it bound — the pod's
``creationTimestamp`` has one-second resolution; it is cross-checked), the
create phase alone, the scheduler's own metrics (attempts, binding latency,
batch sizes), and CPU seconds of each process during the window (the CPU
split: apiserver, scheduler, this benchmark, everything else on the machine).
JSON and a PNG (created/bound over time, latency CDF) go to ``--out``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

ANCHORS = [
    # (label, pods/s, nodes, note)
    ("kube-scheduler scheduler_perf SchedulingBasic (floor)", 810, 5000,
     "scores ~10% of nodes"),
    ("Gödel (ByteDance)", 1000, 30000, "published"),
]
TARGET = 2000
NS = "sched-bench"

console = Console(width=None if sys.stdout.isatty() else 120)


# -- processes ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], log: str):
        self.name, self.args, self.log = name, args, log
        with open(log, "ab") as fh:
            self.p = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited {self.p.returncode}:\n{tail(self.log)}")

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rpartition(")")[2].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v) - idle) / tck, sum(v) / tck


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- a lean HTTP/1.1 client for the load (the generator shares the cores it measures) -------
class Conn:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection(self.host, self.port)
        self.w.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        i = low.find(b"content-length:")
        if i >= 0:
            n = int(head[i + 15:head.index(b"\r\n", i)])
            data = await self.r.readexactly(n) if n else b""
        elif b"transfer-encoding: chunked" in low:
            data = b""
            while True:
                size = int((await self.r.readuntil(b"\r\n")).strip(), 16)
                data += await self.r.readexactly(size + 2)
                if size == 0:
                    break
            data = data[:-2]
        else:
            data = b""
        return status, data

    def close(self) -> None:
        if self.w is not None:
            self.w.close()
            self.w = None


async def parallel(base: str, items: list, conc: int, make, on_done) -> list[str]:
    """POST make(item) → (path, body) for every item over conc keep-alive connections."""
    host, port = base.split("//")[1].split(":")
    errors: list[str] = []
    it = iter(items)

    async def worker():
        c = Conn(host, int(port))
        try:
            for item in it:
                path, body = make(item)
                for attempt in range(5):
                    try:
                        status, data = await c.request("POST", path, body)
                    except (OSError, asyncio.IncompleteReadError) as e:
                        c.close()
                        if attempt == 4:
                            errors.append(f"{path}: {e}")
                        await asyncio.sleep(0.1)
                        continue
                    if status == 429 and attempt < 4:
                        await asyncio.sleep(0.2)
                        continue
                    if status >= 300 and status != 409:
                        errors.append(f"{path}: {status} {data[:200]!r}")
                    break
                on_done(item)
        finally:
            c.close()
    await asyncio.gather(*[worker() for _ in range(conc)])
    return errors


def node_body(i: int) -> bytes:
    name = f"node-{i:06d}"
    res = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "200Gi"}
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "kubernetes.io/os": "linux",
                                              "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
        "spec": {},
        "status": {"capacity": res, "allocatable": res,
                   "conditions": [{"type": "Ready", "status": "True",
                                   "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status"}],
                   "nodeInfo": {"kubeletVersion": "v1.30.0-kcore-bench"}}})


def pod_body(i: int) -> bytes:
    """scheduler_perf's config/templates/pod-default.yaml."""
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"pod-{i:06d}", "namespace": NS, "labels": {"app": "bench"}},
        "spec": {"containers": [{
            "name": "pause", "image": "registry.k8s.io/pause:3.9",
            "ports": [{"containerPort": 80}],
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"},
                          "limits": {"cpu": "100m", "memory": "500Mi"}}}]}})


async def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    import aiohttp
    try:
        async with aiohttp.ClientSession() as s, \
                s.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.read()
    except (TimeoutError, aiohttp.ClientError, OSError):
        return 0, b""


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        k, _, v = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[k] = float(v)
    return out


def metric_sum(m: dict[str, float], name: str, **labels: str) -> float:
    tot = 0.0
    for k, v in m.items():
        base = k.split("{", 1)[0]
        if base == name and all(f'{a}="{b}"' in k for a, b in labels.items()):
            tot += v
    return tot


def histogram_quantile(m: dict[str, float], name: str, q: float) -> float | None:
    buckets = []
    for k, v in m.items():
        if k.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', k).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), v))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, c in buckets:
        if c >= q * total:
            return le
    return None


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


# -- the run --------------------------------------------------------------------------------
async def bench(args, root: str) -> dict:
    kcore = [sys.executable, "-m", "kcore.cli.main"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs: dict[str, Proc] = {}
    res: dict = {"nodes": args.nodes, "pods": args.pods, "concurrency": args.concurrency,
                 "hollow": args.hollow, "store": args.store, "apiservers": args.apiservers}
    progress = Progress(TextColumn("{task.description:<22}"), BarColumn(),
                        MofNCompleteColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[rate]}"), console=console, transient=False)
    try:
        store_args: list[str] = []
        if args.store == "process":
            # the classic master install: etcd (here `kcore etcd`) in its own process,
            # the API servers its clients (watches over gRPC, reads and writes over
            # kcore's pipelined protocol)
            cport, pport, peer = free_port(), free_port(), free_port()
            procs["store"] = Proc("store", [
                *kcore, "etcd", "--name=store", f"--data-dir={os.path.join(root, 'store')}",
                f"--listen-client-urls=http://127.0.0.1:{cport}",
                f"--advertise-client-urls=http://127.0.0.1:{cport}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=store=http://127.0.0.1:{peer}",
                f"--listen-pipeline-urls=tcp://127.0.0.1:{pport}"],
                os.path.join(root, "store.log"))
            store_args = [f"--etcd-servers=http://127.0.0.1:{cport}",
                          f"--etcd-pipeline-servers=tcp://127.0.0.1:{pport}"]
        ports = [port] + [free_port() for _ in range(args.apiservers - 1)]
        for i, ap_port in enumerate(ports):
            name = "apiserver" if i == 0 else f"apiserver{i + 1}"
            procs[name] = Proc(name, [
                *kcore, "apiserver", f"--insecure-port={ap_port}", "--secure-port=-1",
                f"--data-dir={os.path.join(root, name)}", *store_args, *args.apiserver_arg],
                os.path.join(root, f"{name}.log"))
            deadline = time.monotonic() + 60
            while (await http_get(f"http://127.0.0.1:{ap_port}/readyz"))[0] != 200:
                for p in procs.values():
                    p.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready")
                await asyncio.sleep(0.2)
        # with several API servers the scheduler talks to the last one, this
        # benchmark (node registration, creates, the watch) to the first
        sched_master = f"http://127.0.0.1:{ports[-1]}"
        host, p = "127.0.0.1", port
        c = Conn(host, p)
        await c.request("POST", "/api/v1/namespaces", orjson.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        c.close()

        with progress:
            # nodes and scheduler ---------------------------------------------------------
            sport = free_port()
            surl = f"http://127.0.0.1:{sport}"

            def start_scheduler():
                procs["scheduler"] = Proc("scheduler", [
                    *kcore, "scheduler", f"--master={sched_master}", "--leader-elect=true",
                    f"--port={sport}", *args.scheduler_arg],
                    os.path.join(root, "scheduler.log"))
            t0 = time.perf_counter()
            errs: list[str] = []
            if args.hollow:
                # the scheduler's cache counts the nodes as they register (cheaper than
                # listing 10k nodes again and again)
                start_scheduler()
                procs["kubelet"] = Proc("kubelet", [
                    *kcore, "kubelet", f"--hollow-nodes={args.nodes}", f"--master={base}",
                    f"--root-dir={os.path.join(root, 'kubelet')}", "--port=0",
                    "--address=127.0.0.1", "--cpu=32", "--memory=128Gi", "--max-pods=110",
                    *args.kubelet_arg], os.path.join(root, "kubelet.log"))
            else:
                task = progress.add_task("nodes registered", total=args.nodes, rate="")
                errs = await parallel(base, list(range(args.nodes)), args.concurrency,
                                      lambda i: ("/api/v1/nodes", node_body(i)),
                                      lambda _i: progress.advance(task))
                dt = time.perf_counter() - t0
                res["node_registration"] = {"seconds": round(dt, 2),
                                            "per_second": round(args.nodes / dt, 1),
                                            "errors": len(errs)}
                if errs:
                    raise RuntimeError(f"{len(errs)} node registrations failed: {errs[:3]}")
                if args.precreate:
                    res.update(await run_drain(args, base, procs, progress, start_scheduler,
                                               surl))
                    return res
                start_scheduler()
            task = progress.add_task("hollow nodes in cache" if args.hollow
                                     else "scheduler cache", total=args.nodes, rate="")
            t1 = time.perf_counter()
            while True:
                for p in procs.values():
                    p.check()
                st, body = await http_get(surl + "/metrics")
                if st == 200:
                    m = parse_metrics(body.decode())
                    n = metric_sum(m, "scheduler_cache_size", type="nodes")
                    progress.update(task, completed=n)
                    if n >= args.nodes and metric_sum(m, "leader_election_master_status") == 1:
                        break
                if time.perf_counter() - t1 > args.timeout:
                    raise TimeoutError("scheduler did not sync/lead")
                await asyncio.sleep(0.5)
            if args.hollow:
                dt = time.perf_counter() - t0
                res["node_registration"] = {"seconds": round(dt, 2),
                                            "per_second": round(args.nodes / dt, 1),
                                            "errors": 0}
            res["scheduler_ready_seconds"] = round(time.perf_counter() - t1, 2)

            # pods ------------------------------------------------------------------------
            res.update(await run_pods(args, base, procs, progress, surl, root))
    finally:
        for name in ("kubelet", "scheduler", *sorted((n for n in procs
                                                      if n.startswith("apiserver")),
                                                     reverse=True), "store"):
            if name in procs:
                procs[name].stop()
        res["logs_tail"] = {n: tail(p.log, 1500) for n, p in procs.items()}
    return res


async def run_pods(args, base: str, procs: dict, progress: Progress, surl: str,
                   root: str) -> dict:
    from kcore.client import PODS, Client
    n = args.pods
    sent = [0.0] * n
    bound_at = [0.0] * n
    bound_wall = [0.0] * n
    created_ts: dict[int, str] = {}
    created_n = bound_n = 0
    ctask = progress.add_task("pods created", total=n, rate="")
    btask = progress.add_task("pods bound", total=n, rate="")
    done = asyncio.Event()
    timeline: list[tuple[float, int, int]] = []

    client = Client(base)
    lst = await client.list(PODS, NS, limit=1)
    rv = lst["metadata"]["resourceVersion"]
    synced = asyncio.Event()

    async def watch():
        nonlocal bound_n, rv
        while bound_n < n:
            try:
                synced.set()
                async for ev in client.watch(PODS, NS, resource_version=rv,
                                             timeout_seconds=3600):
                    obj = ev.object
                    md = obj.get("metadata") or {}
                    rv = md.get("resourceVersion") or rv
                    if ev.type == "BOOKMARK":
                        continue
                    name = md.get("name", "")
                    if not name.startswith("pod-"):
                        continue
                    i = int(name[4:])
                    if i not in created_ts:
                        created_ts[i] = md.get("creationTimestamp", "")
                    if not bound_at[i] and (obj.get("spec") or {}).get("nodeName"):
                        bound_at[i] = time.perf_counter()
                        bound_wall[i] = time.time()
                        bound_n += 1
                        if bound_n >= n:
                            done.set()
                            return
            except Exception as e:  # noqa: BLE001 - resume the watch
                console.log(f"watch: {e!r}; resuming")
                await asyncio.sleep(0.2)

    def created(i: int) -> None:
        nonlocal created_n
        created_n += 1

    def make(i: int):
        sent[i] = time.perf_counter()
        return (f"/api/v1/namespaces/{NS}/pods", pod_body(i))

    async def ticker(t0: float):
        while not done.is_set():
            await asyncio.sleep(0.5)
            now = time.perf_counter() - t0
            timeline.append((round(now, 2), created_n, bound_n))
            progress.update(ctask, completed=created_n,
                            rate=f"{created_n / max(now, 1e-9):,.0f}/s")
            progress.update(btask, completed=bound_n,
                            rate=f"{bound_n / max(now, 1e-9):,.0f}/s")
            for p in procs.values():
                p.check()

    pids = {name: p.pid for name, p in procs.items()}
    wtask = asyncio.get_running_loop().create_task(watch())
    await synced.wait()
    await asyncio.sleep(0.2)
    profilers = start_profilers(args, pids, root) if args.profile else {}
    perf = start_perf(args, pids["apiserver"]) if args.perf else None
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    me0, (busy0, tot0) = self_cpu(), machine_busy()
    t0 = time.perf_counter()
    tick = asyncio.get_running_loop().create_task(ticker(t0))
    errs = await parallel(base, list(range(n)), args.concurrency, make, created)
    t_created = time.perf_counter()
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except TimeoutError:
        console.print(f"[red]timeout: {bound_n}/{n} bound after {args.timeout}s")
    t_end = time.perf_counter()
    cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rss = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    me1, (busy1, tot1) = self_cpu(), machine_busy()
    profiles = stop_profilers(profilers)
    if perf is not None:
        stop_profiler(perf)
    tick.cancel()
    wtask.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await wtask
    progress.update(ctask, completed=created_n)
    progress.update(btask, completed=bound_n)
    timeline.append((round(t_end - t0, 2), created_n, bound_n))

    st, body = await http_get(surl + "/metrics")
    m = parse_metrics(body.decode()) if st == 200 else {}
    await client.close()

    window = t_end - t0
    last_bound = max(bound_at) if bound_n == n else t_end
    total = last_bound - t0
    lat = [bound_at[i] - sent[i] for i in range(n) if bound_at[i]]
    cpu = {name: round(cpu1[name] - cpu0[name], 2) for name in pids}
    cpu["bench"] = round(me1 - me0, 2)
    cpu["machine_busy"] = round(busy1 - busy0, 2)
    cpu["other"] = round(max(0.0, cpu["machine_busy"] - sum(cpu[k] for k in pids)
                             - cpu["bench"]), 2)
    cores = (tot1 - tot0) / window if window else 0
    seconds_ts = sorted({v for v in created_ts.values() if v})
    from kcore.api.meta import parse_time
    parsed: dict[str, float] = {}
    coarse = []
    for i, ts in created_ts.items():
        if ts and bound_wall[i]:
            if ts not in parsed:
                parsed[ts] = parse_time(ts)
            coarse.append(bound_wall[i] - parsed[ts])
    out = {
        "mode": "e2e",
        "bound": bound_n,
        "create_errors": len(errs),
        "seconds": round(total, 3),
        "pods_per_second": round(bound_n / total, 1) if total else 0.0,
        "create": {"seconds": round(t_created - t0, 3),
                   "per_second": round(n / (t_created - t0), 1)},
        "latency_ms": {"p50": round(pct(lat, 50) * 1000, 1),
                       "p90": round(pct(lat, 90) * 1000, 1),
                       "p99": round(pct(lat, 99) * 1000, 1),
                       "max": round(max(lat) * 1000, 1) if lat else 0.0,
                       "basis": "create request sent -> watch shows spec.nodeName"},
        "creation_timestamps": {"first": seconds_ts[0] if seconds_ts else "",
                                "last": seconds_ts[-1] if seconds_ts else ""},
        "latency_from_creation_timestamp_ms": {
            "p50": round(pct(coarse, 50) * 1000), "p99": round(pct(coarse, 99) * 1000),
            "basis": "creationTimestamp (1 s resolution: reads up to 1 s high) -> watch"},
        "cpu_seconds": cpu,
        "cpu_per_pod_ms": {k: round(v * 1000 / max(bound_n, 1), 3) for k, v in cpu.items()},
        "machine_cores": round(cores, 2),
        "peak_rss_mb": rss,
        "scheduler_metrics": {
            "attempts_scheduled": metric_sum(m, "scheduler_schedule_attempts_total",
                                             result="scheduled"),
            "attempts_unschedulable": metric_sum(m, "scheduler_schedule_attempts_total",
                                                 result="unschedulable"),
            "attempts_error": metric_sum(m, "scheduler_schedule_attempts_total",
                                         result="error"),
            "binding_p50_s": histogram_quantile(m, "scheduler_binding_duration_seconds", 0.5),
            "binding_p99_s": histogram_quantile(m, "scheduler_binding_duration_seconds", 0.99),
            "e2e_p99_s": histogram_quantile(m, "scheduler_e2e_scheduling_duration_seconds",
                                            0.99),
            "algorithm_per_pod_p50_s": histogram_quantile(
                m, "scheduler_scheduling_algorithm_duration_seconds", 0.5),
            "batches": metric_sum(m, "scheduler_batch_size_count"),
            "mean_batch": round(metric_sum(m, "scheduler_batch_size_sum") /
                                max(metric_sum(m, "scheduler_batch_size_count"), 1), 1),
        },
        "timeline": timeline,
        "latency_sample_ms": [round(x * 1000, 1) for x in sorted(lat)[::max(1, len(lat) // 500)]],
    }
    if profiles:
        out["profile"] = profiles
    return out


async def run_drain(args, base: str, procs: dict, progress: Progress, start_scheduler,
                    surl: str) -> dict:
    """--precreate: every pod exists (Pending) before the scheduler starts; the
    time from starting `kcore scheduler` until all are bound isolates scheduling
    and binding from pod creation (scheduler_perf's view)."""
    from kcore.client import PODS, Client
    n = args.pods
    ctask = progress.add_task("pods created (pending)", total=n, rate="")
    t0 = time.perf_counter()
    errs = await parallel(base, list(range(n)), args.concurrency,
                          lambda i: (f"/api/v1/namespaces/{NS}/pods", pod_body(i)),
                          lambda _i: progress.advance(ctask))
    create_s = time.perf_counter() - t0
    client = Client(base)
    rv = (await client.list(PODS, NS, limit=1))["metadata"]["resourceVersion"]
    btask = progress.add_task("pods bound", total=n, rate="")
    bound: set[int] = set()
    first = [0.0]
    done = asyncio.Event()

    async def watch():
        nonlocal rv
        while len(bound) < n:
            try:
                async for ev in client.watch(PODS, NS, resource_version=rv,
                                             timeout_seconds=3600):
                    md = ev.object.get("metadata") or {}
                    rv = md.get("resourceVersion") or rv
                    name = md.get("name", "")
                    if ev.type == "BOOKMARK" or not name.startswith("pod-"):
                        continue
                    if (ev.object.get("spec") or {}).get("nodeName"):
                        if not first[0]:
                            first[0] = time.perf_counter()
                        bound.add(int(name[4:]))
                        if len(bound) >= n:
                            done.set()
                            return
            except Exception as e:  # noqa: BLE001 - resume the watch
                console.log(f"watch: {e!r}; resuming")
                await asyncio.sleep(0.2)
    wtask = asyncio.get_running_loop().create_task(watch())
    await asyncio.sleep(0.3)
    me0, (busy0, _t) = self_cpu(), machine_busy()
    api0 = cpu_seconds(procs["apiserver"].pid)
    t0 = time.perf_counter()
    start_scheduler()
    timeline: list[tuple[float, int, int]] = []
    while not done.is_set():
        procs["scheduler"].check()
        if time.perf_counter() - t0 > args.timeout:
            console.print(f"[red]timeout: {len(bound)}/{n} bound")
            break
        now = time.perf_counter() - t0
        timeline.append((round(now, 2), n, len(bound)))
        progress.update(btask, completed=len(bound),
                        rate=f"{len(bound) / max(now, 1e-9):,.0f}/s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
    t_end = time.perf_counter()
    progress.update(btask, completed=len(bound))
    cpu = {"apiserver": round(cpu_seconds(procs["apiserver"].pid) - api0, 2),
           "scheduler": round(cpu_seconds(procs["scheduler"].pid), 2),
           "bench": round(self_cpu() - me0, 2)}
    busy = machine_busy()[0] - busy0
    cpu["other"] = round(max(0.0, busy - sum(cpu.values())), 2)
    wtask.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await wtask
    st, body = await http_get(surl + "/metrics")
    m = parse_metrics(body.decode()) if st == 200 else {}
    await client.close()
    drain = (t_end - first[0]) if first[0] else 0.0
    timeline.append((round(t_end - t0, 2), n, len(bound)))
    return {
        "mode": "precreate",
        "bound": len(bound), "create_errors": len(errs),
        "create": {"seconds": round(create_s, 3), "per_second": round(n / create_s, 1)},
        "seconds": round(t_end - t0, 3),
        "pods_per_second": round(len(bound) / (t_end - t0), 1),
        "scheduler_start_to_first_bound_s": round(first[0] - t0, 2) if first[0] else None,
        "drain": {"seconds": round(drain, 3),
                  "pods_per_second": round(len(bound) / drain, 1) if drain else 0.0},
        "cpu_seconds": cpu,
        "cpu_per_pod_ms": {k: round(v * 1000 / max(len(bound), 1), 3)
                           for k, v in cpu.items()},
        "peak_rss_mb": {"apiserver": peak_rss_mb(procs["apiserver"].pid),
                        "scheduler": peak_rss_mb(procs["scheduler"].pid)},
        "scheduler_metrics": {
            "attempts_scheduled": metric_sum(m, "scheduler_schedule_attempts_total",
                                             result="scheduled"),
            "binding_p50_s": histogram_quantile(m, "scheduler_binding_duration_seconds", 0.5),
            "binding_p99_s": histogram_quantile(m, "scheduler_binding_duration_seconds", 0.99),
            "mean_batch": round(metric_sum(m, "scheduler_batch_size_sum") /
                                max(metric_sum(m, "scheduler_batch_size_count"), 1), 1)},
        "timeline": timeline,
    }


# -- profiling ------------------------------------------------------------------------------
def start_profilers(args, pids: dict[str, int], root: str) -> dict:
    spy = shutil.which("py-spy")
    if spy is None:
        console.print("[yellow]py-spy not found: no profile")
        return {}
    out = {}
    for name in ("apiserver", "scheduler"):
        path = os.path.join(args.profile_dir or root, f"{name}.folded")
        p = subprocess.Popen([spy, "record", "--pid", str(pids[name]), "--rate", str(args.profile_rate),
                              "--format", "raw", "--output", path, "--nonblocking", "--gil"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[name] = (p, path)
    return out


def start_perf(args, pid: int):
    """`perf record` of the API server during the pods phase (C and kernel level:
    the interpreter, the garbage collector, malloc, page faults, syscalls)."""
    exe = shutil.which("perf")
    if exe is None:
        console.print("[yellow]perf not found: no perf profile")
        return None
    path = os.path.abspath(args.perf)
    console.print(f"perf profile of the API server: {path} (perf report -i {path})")
    return subprocess.Popen([exe, "record", "-F", "499", "-g", "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(p) -> None:
    """SIGINT a profiler (py-spy or perf writes its file then), killed if it hangs."""
    p.send_signal(signal.SIGINT)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def stop_profilers(profilers: dict) -> dict:
    res = {}
    for name, (p, path) in profilers.items():
        stop_profiler(p)
        res[name] = {"folded": path, **summarize_folded(path)}
    return res


def summarize_folded(path: str, top: int = 25) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    selfc: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    try:
        with open(path) as fh:
            for line in fh:
                stack, _, count = line.rstrip().rpartition(" ")
                try:
                    c = int(count)
                except ValueError:
                    continue
                frames = [re.sub(r" \((.*/)?([^/]+)\)", r" (\2)", f)
                          for f in stack.split(";")]
                total += c
                if frames:
                    selfc[frames[-1]] = selfc.get(frames[-1], 0) + c
                for f in set(frames):
                    incl[f] = incl.get(f, 0) + c
    except OSError:
        return {}
    share = lambda d: [(k, round(100 * v / total, 1)) for k, v in  # noqa: E731
                       sorted(d.items(), key=lambda kv: -kv[1])[:top]]
    return {"samples": total, "self_pct": share(selfc), "inclusive_pct": share(incl)}


# -- output ---------------------------------------------------------------------------------
def report(res: dict) -> None:
    t = Table(title=f"kcore scheduler end to end: {res['nodes']:,} nodes, {res['pods']:,} pods")
    t.add_column("")
    t.add_column("value", justify="right")
    if "pods_per_second" not in res:
        console.print(res)
        return
    if res.get("mode") == "precreate":
        d = res["drain"]
        cpu = res["cpu_seconds"]
        for k, v in (
                ("pods created first", f"{res['create']['per_second']:,.0f} pods/s"),
                ("scheduler start → all bound", f"{res['seconds']:.2f} s "
                 f"({res['pods_per_second']:,.0f} pods/s)"),
                ("scheduler start → first bound",
                 f"{res['scheduler_start_to_first_bound_s']} s"),
                ("first bound → all bound (drain)", f"{d['seconds']:.2f} s "
                 f"({d['pods_per_second']:,.0f} pods/s)"),
                ("binding p50 / p99 (scheduler)",
                 f"{res['scheduler_metrics']['binding_p50_s']} / "
                 f"{res['scheduler_metrics']['binding_p99_s']} s"),
                ("CPU s (apiserver / scheduler / bench / other)",
                 f"{cpu['apiserver']} / {cpu['scheduler']} / {cpu['bench']} / "
                 f"{cpu['other']}")):
            t.add_row(k, v)
        console.print(t)
        anchors(f"{d['pods_per_second']:,.0f}", res["nodes"],
                "drain: pods created first, every node scored")
        return
    lat = res["latency_ms"]
    rows = [
        ("first create → all bound", f"{res['seconds']:.2f} s"),
        ("throughput", f"{res['pods_per_second']:,.0f} pods/s"),
        ("create→bound p50 / p90 / p99", f"{lat['p50']:,.0f} / {lat['p90']:,.0f} / "
                                          f"{lat['p99']:,.0f} ms"),
        ("creates alone", f"{res['create']['per_second']:,.0f} pods/s"),
        ("bound", f"{res['bound']:,} (create errors {res['create_errors']})"),
        ("binding p50 / p99 (scheduler)", f"{res['scheduler_metrics']['binding_p50_s']} / "
                                          f"{res['scheduler_metrics']['binding_p99_s']} s"),
        ("mean batch", f"{res['scheduler_metrics']['mean_batch']}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    cpu = res["cpu_seconds"]
    names = ([k for k in cpu if k.startswith("apiserver")]
             + [k for k in ("store", "scheduler", "kubelet") if k in cpu] + ["bench", "other"])
    t.add_row(f"CPU s ({' / '.join(names)})", " / ".join(str(cpu[k]) for k in names))
    per = res["cpu_per_pod_ms"]
    t.add_row("CPU ms per pod (apiserver / scheduler)",
              f"{per.get('apiserver', 0)} / {per.get('scheduler', 0)}")
    console.print(t)
    anchors(f"{res['pods_per_second']:,.0f}", res["nodes"],
            f"every node scored; p99 {lat['p99']:,.0f} ms; target ≥ {TARGET:,}")
    for name, prof in (res.get("profile") or {}).items():
        console.print(f"[bold]{name}[/] top self time ({prof.get('samples', 0)} samples):")
        for fn, share in prof.get("self_pct", [])[:12]:
            console.print(f"  {share:5.1f}%  {fn}")


def anchors(rate: str, nodes: int, note: str) -> None:
    a = Table(title="anchors (end to end)")
    for col in ("system", "pods/s", "nodes", "note"):
        a.add_column(col, justify="right" if col in ("pods/s", "nodes") else "left")
    a.add_row("[bold]kcore", f"[bold]{rate}", f"{nodes:,}", note)
    for label, r, n, nt in ANCHORS:
        a.add_row(label, f"{r:,}", f"{n:,}", nt)
    console.print(a)


def plot(res: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib not installed: no PNG")
        return
    if not res.get("timeline"):
        return
    xs = res.get("latency_sample_ms") or []
    if xs:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    else:
        fig, ax = plt.subplots(1, 1, figsize=(6.5, 4))
    ts = [x[0] for x in res["timeline"]]
    ax.plot(ts, [x[1] for x in res["timeline"]], label="created")
    ax.plot(ts, [x[2] for x in res["timeline"]], label="bound")
    ax.set_ylabel("pods")
    ax.set_xlabel("seconds since first create" if res.get("mode") != "precreate"
                  else "seconds since the scheduler started")
    if res.get("mode") == "precreate":
        ax.set_title(f"{res['nodes']:,} nodes, pods created first: drain "
                     f"{res['drain']['pods_per_second']:,.0f} pods/s")
    else:
        ax.set_title(f"{res['nodes']:,} nodes: {res['pods_per_second']:,.0f} pods/s "
                     f"(target {TARGET:,})")
    ax.legend()
    ax.grid(alpha=0.3)
    if xs:
        bx.plot(xs, [i / len(xs) for i in range(len(xs))])
        bx.set_xlabel("create → bound (ms)")
        bx.set_ylabel("fraction of pods")
        bx.set_title(f"p99 {res['latency_ms']['p99']:,.0f} ms")
        bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--pods", type=int, default=30000)
    ap.add_argument("--concurrency", type=int, default=64, help="creates in flight")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds to wait for every pod to be bound")
    ap.add_argument("--precreate", action="store_true",
                    help="create every pod first, then start the scheduler: measures "
                    "scheduling + binding alone (the drain rate)")
    ap.add_argument("--hollow", action="store_true",
                    help="nodes from `kcore kubelet --hollow-nodes=N` instead of API objects")
    ap.add_argument("--scheduler-arg", action="append", default=[],
                    help="extra flag for kcore scheduler (repeatable, use --scheduler-arg=--x=y)")
    ap.add_argument("--apiserver-arg", action="append", default=[])
    ap.add_argument("--store", choices=["embedded", "process"], default="embedded",
                    help="the API server's embedded store, or `kcore etcd` in its own "
                    "process (fsync on either way)")
    ap.add_argument("--apiservers", type=int, default=1,
                    help="API server processes (more than 1 needs --store process): the "
                    "scheduler uses the last, this benchmark the first")
    ap.add_argument("--kubelet-arg", action="append", default=[])
    ap.add_argument("--profile", action="store_true", help="py-spy both servers during "
                    "the pods phase; top functions go to the JSON")
    ap.add_argument("--profile-rate", type=int, default=97, help="py-spy samples per second")
    ap.add_argument("--profile-dir", default="", help="keep the collapsed stacks here")
    ap.add_argument("--perf", default="", metavar="FILE",
                    help="`perf record` the API server during the pods phase into FILE")
    ap.add_argument("--out", default="", help="JSON path (PNG next to it)")
    ap.add_argument("--data-root", default="", help="parent of the temp data dir")
    args = ap.parse_args()
    if args.hollow:
        help_ = subprocess.run([sys.executable, "-m", "kcore.cli.main", "kubelet", "--help"],
                               capture_output=True, text=True, cwd=ROOT)
        if "hollow-nodes" not in help_.stdout + help_.stderr:
            console.print("[red]--hollow: this kcore has no `kcore kubelet --hollow-nodes`")
            return 2
    if args.hollow and args.precreate:
        console.print("[red]--precreate registers nodes through the API: not with --hollow")
        return 2
    if args.apiservers > 1 and args.store != "process":
        console.print("[red]--apiservers > 1 needs --store process (one store for all)")
        return 2
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="kcore-sched-e2e-", dir=args.data_root or None)
    stop = {"sig": None}

    def on_signal(sig, _frm):
        stop["sig"] = sig
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        res = asyncio.run(bench(args, root))
    except KeyboardInterrupt:
        console.print("[red]interrupted")
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                      "loadavg": os.getloadavg()}
    res["anchors"] = [dict(zip(("label", "pods_per_s", "nodes", "note"), a)) for a in ANCHORS]
    res["target_pods_per_s"] = TARGET
    res["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = args.out or str(ROOT / "bench" / "results" /
                          f"scheduler-e2e-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        json.dump(res, fh, indent=1)
    plot(res, os.path.splitext(out)[0] + ".png")
    report(res)
    console.print(f"JSON: {out}")
    ok = res.get("bound") == args.pods
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
