"""Put throughput and latency: real etcd vs `kcore etcd`, same load, same run.

For each server kind (etcd, then kcore) this starts a fresh cluster (1 or 3
members on loopback, default fsync durability), waits for health, runs the
load generator at each concurrency, reads the server's CPU from /proc around
each measured window, and stops the cluster. Then it prints one table with
the kcore/etcd ratio and writes the whole run as JSON.

    python bench/kv/run.py                 # 1 member, 1,16,64,256 clients, 10 s each
    python bench/kv/run.py --quick         # a few seconds each
    python bench/kv/run.py --cluster 3     # 3 real etcd vs 3 kcore members
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.markup import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadgen import LoadError, LoadSpec, run_load, usable_cores
from procstat import descendants, fs_type, machine_cpu_s, process_table, top_consumers, tree_cpu_s
from servers import Cluster, ClusterFailed, last_line

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
SCHEMA = "kcore-bench-kv/1"


# ---- host facts ------------------------------------------------------------------

def _cmd_output(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}"


def host_facts(data_root: str) -> dict:
    import grpc

    return {
        "cores": usable_cores(), "loadavg": os.getloadavg(), "kernel": platform.release(),
        "python": platform.python_version(), "grpcio": grpc.__version__,
        "data_root": data_root, "data_root_fs": fs_type(data_root),
        "git": _cmd_output(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }


def kcore_command(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    exe = shutil.which("kcore")
    return [exe, "etcd"] if exe else [sys.executable, "-m", "kcore.cli.main", "etcd"]


# ---- servers and levels ----------------------------------------------------------

def schedule(kinds: list[str], clients: list[int], repeat: int,
             order: str) -> list[tuple[str, int, int]]:
    """The (kind, rep, clients) steps of a run (pure).

    sequential: all of one kind, then the next. interleaved: per level, every
    kind back to back (which goes first alternates per repeat), so a busy
    spell on a shared machine hits both sides instead of one.
    """
    if order == "sequential":
        return [(k, r, c) for k in kinds for r in range(repeat) for c in clients]
    steps = []
    for r in range(repeat):
        turn = kinds if r % 2 == 0 else kinds[::-1]
        steps += [(k, r, c) for c in clients for k in turn]
    return steps


def start_server(kind: str, command: list[str], args: argparse.Namespace,
                 say) -> tuple[Cluster | None, dict]:
    """Start a cluster of ``kind``; never raises for a server that cannot start:
    the cluster is None and the record says `skipped` and why."""
    out: dict = {"kind": kind, "command": command, "members": args.cluster,
                 "extra_args": args.etcd_arg if kind == "etcd" else args.kcore_arg,
                 "levels": []}
    cluster = Cluster(kind, command, size=args.cluster, root=args.data_root,
                      extra_args=out["extra_args"])
    say(f"[bold]{kind}[/]: starting {args.cluster} member(s): {' '.join(command)} …")
    try:
        cluster.start()
        status = cluster.wait_healthy(args.health_timeout)
    except (ClusterFailed, OSError) as exc:
        cluster.stop()
        out.update(status="skipped", reason=str(exc), log_tail=getattr(exc, "log_tail", ""))
        say(f"[yellow]{kind} skipped[/]: {escape(str(exc))}")
        return None, out
    except BaseException:
        cluster.stop()
        raise
    out["member_status"] = status
    endpoints = cluster.endpoints
    leaders = [s["endpoint"] for s in status.values() if s.get("is_leader")]
    if not leaders:
        out["target_note"] = "no Maintenance.Status leader info; used all members"
    elif args.target == "leader":
        endpoints = leaders[:1]
    elif args.target == "follower":
        endpoints = [e for e in endpoints if e != leaders[0]][:1]
    else:
        # round-robin from the leader: client i dials member (leader + i) mod n, so
        # every server gets the same mix (1 client: the leader, for etcd and kcore
        # alike; otherwise which member won the election would decide the row)
        i = endpoints.index(leaders[0])
        endpoints = endpoints[i:] + endpoints[:i]
    out.update(endpoints=endpoints, status="ok")
    return cluster, out


def run_level(cluster: Cluster, out: dict, rep: int, clients: int,
              args: argparse.Namespace, say) -> bool:
    """One measured level against a running cluster; False once a member died."""
    kind = out["kind"]
    spec = LoadSpec(endpoints=tuple(out["endpoints"]), clients=clients,
                    duration_s=args.duration, warmup_s=args.warmup,
                    value_size=args.value_size, key_space=args.key_space,
                    key_prefix=f"bench/r{rep}-c{clients}", procs=args.procs,
                    conns=args.conns, timeout_s=args.timeout, loop=args.loop)

    tables = []

    def probe() -> dict[str, float]:
        table, machine = process_table(), machine_cpu_s()
        tables.append(table)
        return {"server_cpu_s": tree_cpu_s(cluster.pids, table), "machine_busy_s": machine["busy_s"],
                "steal_s": machine["steal_s"]}

    try:
        r = run_load(spec, probe=probe)
    except LoadError as exc:
        out["levels"].append({"clients": clients, "rep": rep, "error": str(exc)})
        say(f"[red]{kind} c={clients}:[/] {escape(str(exc))}")
    else:
        level = r.to_json()
        if not args.keep_histograms:
            level.pop("histogram")
        server_cpu = r.probe.get("server_cpu_s", 0.0)
        other = max(r.probe.get("machine_busy_s", 0.0) - server_cpu - r.gen_cpu_s, 0.0)
        level.update(
            rep=rep, server_cpu_s=round(server_cpu, 3),
            server_cpu_ms_per_put=round(server_cpu / r.puts * 1000, 4) if r.puts else None,
            other_cpu_s=round(other, 3), other_cores=round(other / r.window_s, 2),
            errors_total=sum(r.errors.values()), loadavg_after=os.getloadavg()[0])
        if len(tables) == 2:                # who else ran: this run's own processes excluded
            ours = {p for pid in [*cluster.pids, os.getpid()]
                    for t in tables for p in descendants(pid, t)}
            level["other_top"] = top_consumers(tables[0], tables[1], ours)
        out["levels"].append(level)
        say(f"  {kind} c={clients}: {r.puts_per_s:.0f} puts/s, p50 {_ms(r.p50_ms)}, "
            f"p99 {_ms(r.p99_ms)}, errors {level['errors_total']}; CPU ms/put "
            f"server {_num(level['server_cpu_ms_per_put'], 3)} "
            f"gen {_num(r.gen_cpu_ms_per_call, 3)}; other {level['other_cores']} cores"
            + "".join(f" ({escape(u['comm'])} {u['cpu_s']:.1f}s)"
                      for u in level.get("other_top", [])[:2] if u["cpu_s"] >= 0.2 * r.window_s))
    dead = cluster.exited()
    if dead:
        tail = cluster.log_tail(next(iter(dead)))
        out.update(status="failed", log_tail=tail,
                   reason=f"member(s) exited during the run {dead}: {last_line(tail)}")
        say(f"[red]{kind}:[/] {escape(out['reason'])}")
        return False
    return True


def run_all(commands: dict[str, list[str]], args: argparse.Namespace, say) -> dict[str, dict]:
    """Run the schedule; every cluster started here is stopped here, also on errors."""
    steps = schedule(args.servers, args.clients, args.repeat, args.order)
    records: dict[str, dict] = {}
    clusters: dict[str, Cluster | None] = {}

    def ensure(kind: str) -> Cluster | None:
        if kind not in records:
            clusters[kind], records[kind] = start_server(kind, commands[kind], args, say)
        return clusters[kind]

    try:
        if args.order == "interleaved":     # all up for the whole run: same idle neighbours
            for kind in args.servers:
                ensure(kind)
        for i, (kind, rep, clients) in enumerate(steps):
            cluster = ensure(kind)
            if cluster is not None and not run_level(cluster, records[kind], rep, clients,
                                                     args, say):
                cluster.stop()
                clusters[kind] = None
            if cluster is not None and args.order == "sequential" and \
                    all(k != kind for k, _, _ in steps[i + 1:]):
                cluster.stop()
                clusters[kind] = None
    finally:
        for cluster in clusters.values():
            if cluster is not None:
                cluster.stop()
    return records


# ---- report ----------------------------------------------------------------------

def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} ms"


def _num(x: float | None, nd: int = 0) -> str:
    return "—" if x is None else f"{x:,.{nd}f}"


def compare(runs: dict[str, dict], levels: list[int]) -> list[dict]:
    """One row per concurrency: both servers side by side and kcore/etcd (pure).

    With repeats, each side shows its median run by puts/s, and the ratio is
    the median of the per-repeat ratios (kcore and etcd measured back to back
    when interleaved), which a slow drift in machine load cancels out of.
    """
    def ok(kind: str, c: int) -> list[dict]:
        return [lv for lv in runs.get(kind, {}).get("levels", [])
                if lv.get("clients") == c and "error" not in lv]

    def median_run(levels_at: list[dict]) -> dict:
        ordered = sorted(levels_at, key=lambda lv: lv["puts_per_s"])
        return ordered[(len(ordered) - 1) // 2] if ordered else {}

    rows = []
    for c in levels:
        e_runs, k_runs = ok("etcd", c), ok("kcore", c)
        e_by_rep = {lv.get("rep", 0): lv["puts_per_s"] for lv in e_runs}
        ratios = sorted(lv["puts_per_s"] / e_by_rep[lv.get("rep", 0)] for lv in k_runs
                        if e_by_rep.get(lv.get("rep", 0)))
        ratio = round(_median(ratios), 3) if ratios else None
        rows.append({"clients": c, "etcd": median_run(e_runs), "kcore": median_run(k_runs),
                     "ratio": ratio, "ratios": [round(r, 3) for r in ratios]})
    return rows


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def render(rows: list[dict], runs: dict[str, dict], console) -> None:
    from rich import box
    from rich.table import Table

    t = Table(title="KV Put: kcore etcd vs real etcd", title_justify="left",
              box=box.SIMPLE_HEAD, caption_justify="left",
              caption="CPU in ms per put; gen = the load generator; other = cores used by "
                      "the rest of the machine during the window (noise)")
    for name in ("clients", "server", "puts/s", "p50 ms", "p99 ms", "kcore\n/etcd",
                 "server\nCPU", "gen\nCPU", "other"):
            t.add_column(name, justify="left" if name == "server" else "right", no_wrap=True)
    for r in rows:
        for kind in ("etcd", "kcore"):
            lv = r[kind]
            ratio = ""
            if kind == "kcore" and r["ratio"] is not None:
                color = "green" if r["ratio"] >= 1.0 else "red"
                ratio = f"[{color}]{r['ratio']:.2f}[/]"
            elif kind == "kcore":
                ratio = "—"
            t.add_row(str(r["clients"]) if kind == "etcd" else "", kind,
                      _num(lv.get("puts_per_s")), _num(lv.get("p50_ms"), 2),
                      _num(lv.get("p99_ms"), 2),
                      ratio, _num(lv.get("server_cpu_ms_per_put"), 3),
                      _num(lv.get("gen_cpu_ms_per_call"), 3), _num(lv.get("other_cores"), 2),
                      end_section=kind == "kcore")
    console.print(t)
    for kind, run in runs.items():
        if run.get("status") != "ok":
            console.print(f"[yellow]{kind} {run.get('status')}[/]: {escape(run.get('reason', ''))}")
        errs = {lv["clients"]: lv["errors"] for lv in run.get("levels", []) if lv.get("errors")}
        if errs:
            console.print(f"[red]{kind} failed calls by clients[/]: {errs}")


# ---- main -----------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", type=int, choices=[1, 3], default=1, help="members per server")
    ap.add_argument("--clients", default="1,16,64,256", help="comma-separated concurrencies")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per level")
    ap.add_argument("--quick", action="store_true", help="3 s measured, 1 s warm-up per level")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole sweep N times; the table shows each median")
    ap.add_argument("--servers", default="etcd,kcore", help="which to run, in order")
    ap.add_argument("--order", choices=["interleaved", "sequential"], default="interleaved",
                    help="interleaved: both clusters up, levels alternate between them; "
                         "sequential: one cluster at a time")
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--kcore-cmd", default=None,
                    help="command for kcore's store (default: `kcore etcd` from PATH)")
    ap.add_argument("--etcd-arg", action="append", default=[], help="extra flag for etcd")
    ap.add_argument("--kcore-arg", action="append", default=[], help="extra flag for kcore")
    ap.add_argument("--target", choices=["all", "leader", "follower"], default="all",
                    help="with --cluster 3: dial every member round-robin starting with "
                         "the leader, the leader only, or one follower only")
    ap.add_argument("--procs", type=int, default=0, help="generator processes (0: auto)")
    ap.add_argument("--conns", type=int, default=1, help="connections per endpoint per process")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--key-space", type=int, default=0, help="0: new key per put; N: N keys")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-call timeout, seconds")
    ap.add_argument("--health-timeout", type=float, default=30.0)
    ap.add_argument("--data-root", default=None, help="parent dir of the temp data dirs")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/kv-<ts>.json)")
    ap.add_argument("--keep-histograms", action="store_true", help="store histograms in JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.duration, a.warmup = 3.0, 1.0
    a.clients = [int(c) for c in a.clients.split(",") if c.strip()]
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    unknown = set(a.servers) - {"etcd", "kcore"}
    if unknown:
        ap.error(f"unknown server(s): {sorted(unknown)}")
    return a


def _terminate_as_exit(signum, _frame) -> None:
    raise SystemExit(128 + signum)         # unwind so clusters stop and temp dirs go


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console()
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    data_root = args.data_root or os.environ.get("TMPDIR") or "/tmp"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = Path(args.out) if args.out else RESULTS / f"kv-{stamp}.json"

    commands = {"etcd": [args.etcd_bin], "kcore": kcore_command(args.kcore_cmd)}
    result = {
        "schema": SCHEMA, "started": dt.datetime.now().isoformat(timespec="seconds"),
        "host": host_facts(data_root),
        "config": {k: getattr(args, k) for k in (
            "cluster", "clients", "duration", "warmup", "repeat", "servers", "order", "target",
            "procs", "conns",
            "loop", "value_size", "key_space", "timeout")},
        "versions": {"etcd": _cmd_output([args.etcd_bin, "--version"]).splitlines()[0],
                     "kcore": _cmd_output([*commands["kcore"][:-1], "version"])},
        "durability": "server defaults (fsync on); no unsafe flags passed",
        "servers": {},
    }
    if result["host"]["data_root_fs"] in ("tmpfs", "ramfs"):
        console.print(f"[yellow]warning: {data_root} is {result['host']['data_root_fs']}: "
                      "fsync costs nothing there; use --data-root on a disk[/]")

    t0 = time.monotonic()
    result["servers"] = run_all(commands, args, console.print)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    result["comparison"] = compare(result["servers"], args.clients)
    for row in result["comparison"]:         # the comparison refers to levels, not copies
        for kind in ("etcd", "kcore"):
            lv = row[kind]
            row[kind] = {k: lv.get(k) for k in (
                "puts_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_put",
                "gen_cpu_ms_per_call", "errors_total", "other_cores")} if lv else None
    render(_rows_for_render(result["comparison"]), result["servers"], console)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"result: {out_path}")
    return 0


def _rows_for_render(rows: list[dict]) -> list[dict]:
    return [{**r, "etcd": r["etcd"] or {}, "kcore": r["kcore"] or {}} for r in rows]


if __name__ == "__main__":
    sys.exit(main())
