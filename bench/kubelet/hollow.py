"""Hollow-node scale test: N hollow nodes hold their heartbeats for M minutes with
the node lifecycle controller watching.

    python bench/kubelet/hollow.py                       # 10,000 nodes, 5 minutes
    python bench/kubelet/hollow.py --nodes 1000 --minutes 1 --out /tmp/h.json   # quick

Starts its own `kcore apiserver` (embedded store), `kcore controller-manager`
(node lifecycle + taint eviction, kube's default 40 s grace, 5 s monitor period)
and one `kcore kubelet --hollow-nodes=N`, on free 127.0.0.1 ports in a temp dir,
all stopped at the end. After registration it samples every `--sample` seconds:
nodes whose Ready condition is not True, nodes carrying an unreachable/not-ready
taint, the hollow process's heartbeat figures, CPU and RSS of each process.
Prints (and writes with --out) one JSON result; exit status 1 if any node lost
Ready during the run."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_rss(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK, int(f[21]) * os.sysconf("SC_PAGE_SIZE")


def get_json(url: str, timeout: float = 60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def node_health(server: str) -> tuple[int, int, int]:
    """(nodes, not Ready=True, tainted unreachable/not-ready), paging 500 at a time."""
    total = not_ready = tainted = 0
    cont = ""
    while True:
        url = f"{server}/api/v1/nodes?limit=500" + (f"&continue={cont}" if cont else "")
        page = get_json(url)
        for n in page.get("items") or []:
            total += 1
            ready = next((c for c in n["status"].get("conditions") or []
                          if c["type"] == "Ready"), {})
            if ready.get("status") != "True":
                not_ready += 1
            if any(t["key"] in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
                   for t in (n.get("spec") or {}).get("taints") or []):
                tainted += 1
        cont = (page.get("metadata") or {}).get("continue") or ""
        if not cont:
            return total, not_ready, tainted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--grace", default="40s", help="--node-monitor-grace-period")
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    root = tempfile.mkdtemp(prefix="kcore-hollow-bench-")
    procs: dict[str, subprocess.Popen] = {}
    py = [sys.executable, "-m", "kcore.cli.main"]

    def spawn(name: str, args: list[str]) -> subprocess.Popen:
        log = open(os.path.join(root, f"{name}.log"), "ab")
        p = subprocess.Popen(py + args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs[name] = p
        return p

    result: dict = {"nodes": a.nodes, "minutes": a.minutes, "cpus": os.cpu_count(),
                    "grace_period": a.grace}
    try:
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        spawn("apiserver", ["apiserver", f"--insecure-port={port}", "--secure-port=-1",
                            f"--data-dir={root}/data"])
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(server + "/readyz", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        spawn("controller-manager", [
            "controller-manager", f"--master={server}", "--leader-elect=false", "--port=0",
            "--controllers=nodelifecycle,taint-eviction-controller",
            f"--node-monitor-grace-period={a.grace}", "--node-monitor-period=5s"])
        stats_file = os.path.join(root, "hollow.json")
        t_reg = time.monotonic()
        spawn("hollow", ["kubelet", f"--master={server}", f"--hollow-nodes={a.nodes}",
                         "--port=0", "--address=127.0.0.1", "--node-ip=127.0.0.1",
                         f"--hollow-connections={a.connections}", f"--root-dir={root}/h",
                         f"--hollow-stats-file={stats_file}"])
        while True:
            time.sleep(1)
            for name, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited {p.returncode}")
            try:
                with open(stats_file) as fh:
                    s = json.load(fh)
                if s["never_renewed"] == 0 and s["renewals"] >= a.nodes:
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() - t_reg > 600:
                raise RuntimeError("registration took more than 10 minutes")
        result["registration_seconds"] = round(time.monotonic() - t_reg, 1)
        cpu0 = {n: proc_cpu_rss(p.pid)[0] for n, p in procs.items()}
        t0 = time.monotonic()
        samples = []
        end = t0 + a.minutes * 60
        while True:
            now = time.monotonic()
            total, not_ready, tainted = node_health(server)
            with open(stats_file) as fh:
                hs = json.load(fh)
            rss = {n: proc_cpu_rss(p.pid)[1] for n, p in procs.items()}
            samples.append({"t": round(now - t0, 1), "nodes": total, "not_ready": not_ready,
                            "tainted": tainted, "oldest_renewal_age_s":
                            hs["oldest_renewal_age_s"], "max_renewal_gap_s":
                            hs["max_renewal_gap_s"], "rss_mb": {k: v >> 20 for k, v in
                                                                 rss.items()},
                            "load1": os.getloadavg()[0]})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
            if now >= end:
                break
            time.sleep(max(0.0, min(a.sample, end - time.monotonic())))
        wall = time.monotonic() - t0
        cpu1 = {n: proc_cpu_rss(p.pid) for n, p in procs.items()}
        with open(stats_file) as fh:
            hs = json.load(fh)
        result.update({
            "steady_seconds": round(wall, 1),
            "min_ready": min(s["nodes"] - s["not_ready"] for s in samples),
            "max_not_ready": max(s["not_ready"] for s in samples),
            "max_tainted": max(s["tainted"] for s in samples),
            "cpu_cores": {n: round((cpu1[n][0] - cpu0[n]) / wall, 3) for n in procs},
            "rss_mb": {n: cpu1[n][1] >> 20 for n in procs},
            "heartbeats": {k: hs[k] for k in ("renewals", "renew_failures", "lateness",
                                              "max_renewal_gap_s", "status_posts")},
            "samples": samples,
            "ok": all(s["not_ready"] == 0 and s["tainted"] == 0 for s in samples),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        result["cpu_cores"]["total"] = round(sum(result["cpu_cores"].values()), 3)
    finally:
        for p in reversed(list(procs.values())):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(root, ignore_errors=True)
    out = json.dumps(result, indent=2)
    print(out)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(out + "\n")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
