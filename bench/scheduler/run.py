"""Scheduler kernel benchmark: pods/s at 1k-20k nodes, every feasible node scored.

For each cluster size it measures, on the pure core (no API server):

- **homogeneous**: pods of one shape (the cached path: O(log n) per pod after
  the first, only the bound node re-scored);
- **distinct**: every pod a new shape (the exhaustive path: a full Numba scan
  of the node table per pod);
- **reference**: the pure-Python reference scheduler on the same cluster,
  for the speed ratio — and a check that its first decisions are the fast
  path's decisions, pod for pod.

Pods are pre-built dicts fed through ``Scheduler.schedule_many`` in batches
(what a driver popping its queue does); parsing, shape lookup, the kernels
and the assume bookkeeping are all inside the timing. Writes JSON and a PNG.

    python bench/scheduler/run.py                        # 1k, 5k, 10k, 20k nodes
    python bench/scheduler/run.py --quick                # smaller counts
    python bench/scheduler/run.py --sizes 10000 --homogeneous 300000
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from kcore.scheduler import ReferenceScheduler, Scheduler, warmup  # noqa: E402

ANCHORS = [
    # (label, pods/s, nodes, note)
    ("kube-scheduler scheduler_perf SchedulingBasic floor", 810, 5000,
     "end to end, scores ~10% of nodes"),
    ("Gödel (ByteDance)", 1000, 30000, "end to end, published"),
]
TARGETS = {"homogeneous": 100_000, "distinct": 10_000}   # at 10k nodes

console = Console(width=None if sys.stdout.isatty() else 120)


def make_node(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i:06d}",
                         "labels": {"kubernetes.io/hostname": f"node-{i:06d}",
                                    "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110",
                                       "ephemeral-storage": "200Gi"}}}


def make_pod(i: int, cpu: str, memory: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i}", "namespace": "bench", "uid": f"uid-{i}"},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                                     "resources": {"requests": {"cpu": cpu,
                                                                "memory": memory}}}]}}


def homogeneous_pods(count: int) -> list[dict]:
    return [make_pod(i, "100m", "128Mi") for i in range(count)]


def distinct_pods(count: int) -> list[dict]:
    """Every pod its own shape: distinct cpu and memory requests."""
    return [make_pod(i, f"{50 + i % 2000}m", f"{64 * 1024 + i}Ki") for i in range(count)]


def build(cls, n: int, seed: int):
    s = cls(seed=seed)
    for i in range(n):
        s.add_node(make_node(i))
    return s


def timed_fast(n: int, pods: list[dict], batch: int, seed: int, progress, label: str):
    s = build(Scheduler, n, seed)
    s.schedule_many([])                       # sort the table outside the timing
    task = progress.add_task(label, total=len(pods))
    decisions = []
    cpu = 0.0
    t0 = time.perf_counter()
    for k in range(0, len(pods), batch):
        c0 = time.thread_time()
        decisions += s.schedule_many(pods[k:k + batch])
        cpu += time.thread_time() - c0
        progress.update(task, advance=min(batch, len(pods) - k))
    dt = time.perf_counter() - t0
    progress.remove_task(task)
    placed = sum(d.node is not None for d in decisions)
    return {"pods": len(pods), "placed": placed, "seconds": dt, "cpu_seconds": cpu,
            "pods_per_s": len(pods) / dt, "pods_per_cpu_s": len(pods) / cpu,
            "us_per_pod": dt / len(pods) * 1e6}, decisions


def timed_reference(n: int, pods: list[dict], seconds: float, seed: int, progress):
    ref = build(ReferenceScheduler, n, seed)
    task = progress.add_task(f"reference {n:>6} nodes", total=None)
    decisions = []
    t0 = time.perf_counter()
    c0 = time.thread_time()
    for p in pods:
        decisions.append(ref.schedule(p))
        progress.update(task, advance=1)
        if time.perf_counter() - t0 >= seconds:
            break
    dt = time.perf_counter() - t0
    cpu = time.thread_time() - c0
    progress.remove_task(task)
    return {"pods": len(decisions), "seconds": dt, "cpu_seconds": cpu,
            "pods_per_s": len(decisions) / dt, "pods_per_cpu_s": len(decisions) / cpu}, decisions


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numba
    import numpy
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "numba": numba.__version__,
            "loadavg_start": os.getloadavg()}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["nodes"] for r in results]
    fig, ax = plt.subplots(figsize=(8, 6.4))
    ax.plot(sizes, [r["homogeneous"]["pods_per_s"] for r in results], "o-",
            label="kcore, homogeneous pods (cached shape)")
    ax.plot(sizes, [r["distinct"]["pods_per_s"] for r in results], "s-",
            label="kcore, all-distinct pods (full scan per pod)")
    ax.plot(sizes, [r["reference"]["pods_per_s"] for r in results], "^--",
            label="kcore pure-Python reference")
    for label, rate, nodes, note in ANCHORS:
        ax.plot([nodes], [rate], "*", markersize=13, label=f"{label} ({note})")
    for kind, rate in TARGETS.items():
        ax.plot([10_000], [rate], "x", color="gray", markersize=9)
        ax.annotate(f"target {kind}", (10_000, rate), textcoords="offset points",
                    xytext=(6, 4), fontsize=8, color="gray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes (every feasible node scored)")
    ax.set_ylabel("pods scheduled per second")
    ax.set_title("kcore scheduler core: decisions per second vs cluster size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,10000,20000")
    ap.add_argument("--homogeneous", type=int, default=200_000, help="pods per size")
    ap.add_argument("--distinct", type=int, default=20_000, help="pods per size")
    ap.add_argument("--reference-seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=1000, help="pods per schedule_many call")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs of the fast paths per size; the best is reported, all are kept")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="leave the pre-built pods in the cyclic GC's young generations")
    ap.add_argument("--quick", action="store_true", help="50k homogeneous, 5k distinct, 1 s ref")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    ap.add_argument("--plot", type=Path, default=None, help="PNG path (default next to JSON)")
    args = ap.parse_args(argv)
    if args.quick:
        args.homogeneous, args.distinct, args.reference_seconds = 50_000, 5_000, 1.0
    sizes = [int(x) for x in args.sizes.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE.parent / "results" / f"scheduler-{stamp}.json"
    png = args.plot or out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)

    info = machine()
    with console.status("loading Numba kernels (compiled once, then cached)"):
        t0 = time.perf_counter()
        warmup()
        info["kernel_load_seconds"] = time.perf_counter() - t0
    homo = homogeneous_pods(args.homogeneous)
    dist = distinct_pods(args.distinct)
    if not args.no_gc_freeze:
        # The pre-built pods stand for an informer's cache: long-lived objects a
        # driver freezes after its initial list so the cyclic GC stops rescanning them.
        gc.collect()
        gc.freeze()
    results = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        sizes_task = progress.add_task("cluster sizes", total=len(sizes))
        for n in sizes:
            # at most 100 pods per node (nodes take 110): every pod is placed
            runs_h, runs_d = [], []
            for rep in range(args.repeat):
                h, _ = timed_fast(n, homo[:100 * n], args.batch, args.seed, progress,
                                  f"homogeneous {n:>6} nodes ({rep + 1}/{args.repeat})")
                d, dd = timed_fast(n, dist, args.batch, args.seed, progress,
                                   f"distinct    {n:>6} nodes ({rep + 1}/{args.repeat})")
                runs_h.append(h)
                runs_d.append(d)
            h = dict(max(runs_h, key=lambda x: x["pods_per_s"]),
                     runs_pods_per_s=[x["pods_per_s"] for x in runs_h])
            d = dict(max(runs_d, key=lambda x: x["pods_per_s"]),
                     runs_pods_per_s=[x["pods_per_s"] for x in runs_d])
            r, rd = timed_reference(n, dist, args.reference_seconds, args.seed, progress)
            agree = dd[:len(rd)] == rd
            results.append({"nodes": n, "homogeneous": h, "distinct": d, "reference": r,
                             "reference_agrees": agree,
                             "ratio_distinct_vs_reference": d["pods_per_s"] / r["pods_per_s"],
                             "ratio_homogeneous_vs_reference":
                                 h["pods_per_s"] / r["pods_per_s"]})
            progress.update(sizes_task, advance=1)
    info["loadavg_end"] = os.getloadavg()

    table = Table(title="kcore scheduler core — pods/s, every feasible node scored")
    for col in ("nodes", "homogeneous", "(per CPU-s)", "distinct", "(per CPU-s)", "reference",
                "distinct / ref", "ref agrees"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(f"{r['nodes']:,}", f"{r['homogeneous']['pods_per_s']:,.0f}",
                      f"{r['homogeneous']['pods_per_cpu_s']:,.0f}",
                      f"{r['distinct']['pods_per_s']:,.0f}",
                      f"{r['distinct']['pods_per_cpu_s']:,.0f}",
                      f"{r['reference']['pods_per_s']:,.2f}",
                      f"{r['ratio_distinct_vs_reference']:,.0f}x",
                      "yes" if r["reference_agrees"] else "NO")
    console.print(table)
    console.print("pods/s is wall clock; per CPU-s divides by the scheduling thread's CPU "
                  "time (what a dedicated core would do when other processes share the machine)")
    at5k = next((r for r in results if r["nodes"] == 5000), None)
    console.print("Published anchors (end to end, through an API server; kcore's figures "
                  "above are the scheduling core alone):")
    for label, rate, nodes, note in ANCHORS:
        console.print(f"  {label}: {rate:,} pods/s at {nodes:,} nodes ({note})")
    if at5k:
        console.print(f"  kcore core at 5,000 nodes, all scored: "
                      f"{at5k['homogeneous']['pods_per_s']:,.0f} pods/s homogeneous, "
                      f"{at5k['distinct']['pods_per_s']:,.0f} pods/s distinct")
    at10k = next((r for r in results if r["nodes"] == 10_000), None)
    if at10k:
        for kind, target in TARGETS.items():
            got = at10k[kind]["pods_per_s"]
            per_cpu = at10k[kind]["pods_per_cpu_s"]
            verdict = "met" if got >= target else "MISSED"
            console.print(f"  target at 10k nodes, {kind}: >= {target:,} pods/s -> "
                          f"{got:,.0f} wall ({verdict}), {per_cpu:,.0f} per CPU-second")
    console.print(f"load average start {info['loadavg_start']}, end {info['loadavg_end']} "
                  f"on {info['cores']} cores: other work on the machine lowers these numbers")

    doc = {"benchmark": "scheduler-kernel", "args": {k: (str(v) if isinstance(v, Path) else v)
                                                     for k, v in vars(args).items()},
           "machine": info, "anchors": [dict(zip(("label", "pods_per_s", "nodes", "note"), a))
                                        for a in ANCHORS],
           "targets_at_10k_nodes": TARGETS, "results": results}
    out.write_text(json.dumps(doc, indent=2))
    try:
        plot(results, png)
        console.print(f"wrote {out} and {png}")
    except ImportError:
        console.print(f"wrote {out} (no PNG: pip install 'kcore[bench]' for matplotlib)")
    return 0 if all(r["reference_agrees"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
