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
from servers import Cluster, ClusterFailed, fs_type, last_line

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
SCHEMA = "kcore-bench-kv/1"


# ---- host facts ------------------------------------------------------------------

def system_cpu_s() -> dict[str, float]:
    """Busy and steal CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy_s": (user + nice + system + irq + softirq) / tck, "steal_s": steal / tck}


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
        "git": _cmd_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
    }


def kcore_command(explicit: str | None) -> list[str]:
    if explicit:
        return explicit.split()
    exe = shutil.which("kcore")
    return [exe, "etcd"] if exe else [sys.executable, "-m", "kcore.cli.main", "etcd"]


# ---- one server kind --------------------------------------------------------------

def bench_kind(kind: str, command: list[str], args: argparse.Namespace, say) -> dict:
    """Start a cluster of ``kind``, run every level, stop it. Never raises for a
    server that cannot start: the result says `skipped` and why."""
    out: dict = {"kind": kind, "command": command, "members": args.cluster,
                 "extra_args": args.etcd_arg if kind == "etcd" else args.kcore_arg,
                 "levels": []}
    cluster = Cluster(kind, command, size=args.cluster, root=args.data_root,
                      extra_args=out["extra_args"])
    try:
        say(f"[bold]{kind}[/]: starting {args.cluster} member(s): {' '.join(command)} …")
        try:
            cluster.start()
            status = cluster.wait_healthy(args.health_timeout)
        except (ClusterFailed, OSError) as exc:
            out.update(status="skipped", reason=str(exc),
                       log_tail=getattr(exc, "log_tail", ""))
            say(f"[yellow]{kind} skipped[/]: {escape(str(exc))}")
            return out
        out["member_status"] = status
        endpoints = cluster.endpoints
        if args.target == "leader":
            leaders = [s["endpoint"] for s in status.values() if s.get("is_leader")]
            if leaders:
                endpoints = leaders[:1]
            else:
                out["target_note"] = "no Maintenance.Status leader info; used all members"
        out["endpoints"] = endpoints
        out["status"] = "ok"

        for rep, clients in ((r, c) for r in range(args.repeat) for c in args.clients):
            spec = LoadSpec(endpoints=tuple(endpoints), clients=clients,
                            duration_s=args.duration, warmup_s=args.warmup,
                            value_size=args.value_size, key_space=args.key_space,
                            key_prefix=f"bench/{kind}-r{rep}-c{clients}", procs=args.procs,
                            conns=args.conns, timeout_s=args.timeout, loop=args.loop)

            def probe() -> dict[str, float]:
                sysc = system_cpu_s()
                return {"server_cpu_s": cluster.cpu_s(), "machine_busy_s": sysc["busy_s"],
                        "steal_s": sysc["steal_s"]}
            try:
                r = run_load(spec, probe=probe)
            except LoadError as exc:
                out["levels"].append({"clients": clients, "rep": rep, "error": str(exc)})
                say(f"[red]{kind} c={clients}:[/] {escape(str(exc))}")
                continue
            level = r.to_json()
            if not args.keep_histograms:
                level.pop("histogram")
            server_cpu = r.probe.get("server_cpu_s", 0.0)
            other = r.probe.get("machine_busy_s", 0.0) - server_cpu - r.gen_cpu_s
            level.update(
                rep=rep,
                server_cpu_s=round(server_cpu, 3),
                server_cpu_ms_per_put=round(server_cpu / r.puts * 1000, 4) if r.puts else None,
                other_cpu_s=round(max(other, 0.0), 3),
                other_cores=round(max(other, 0.0) / r.window_s, 2),
                errors_total=sum(r.errors.values()),
                loadavg_after=os.getloadavg()[0])
            out["levels"].append(level)
            say(f"  {kind} c={clients}: {r.puts_per_s:.0f} puts/s, p50 {_ms(r.p50_ms)}, "
                f"p99 {_ms(r.p99_ms)}, errors {sum(r.errors.values())}, CPU ms/call "
                f"server {_num(level['server_cpu_ms_per_put'], 3)} "
                f"gen {_num(r.gen_cpu_ms_per_call, 3)}; other {level['other_cores']} cores")
            dead = cluster.exited()
            if dead:
                tail = cluster.log_tail(next(iter(dead)))
                out.update(status="failed", log_tail=tail,
                           reason=f"member(s) exited during the run {dead}: {last_line(tail)}")
                say(f"[red]{kind}:[/] {escape(out['reason'])}")
                break
        return out
    finally:
        cluster.stop()


# ---- report ----------------------------------------------------------------------

def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} ms"


def _num(x: float | None, nd: int = 0) -> str:
    return "—" if x is None else f"{x:,.{nd}f}"


def compare(runs: dict[str, dict], levels: list[int]) -> list[dict]:
    """One row per concurrency: both servers side by side and kcore/etcd (pure).

    With repeats, each side is its median run by puts/s (the lower middle one).
    """
    def at(kind: str, c: int) -> dict:
        runs_at = sorted((lv for lv in runs.get(kind, {}).get("levels", [])
                          if lv.get("clients") == c and "error" not in lv),
                         key=lambda lv: lv["puts_per_s"])
        return runs_at[(len(runs_at) - 1) // 2] if runs_at else {}

    rows = []
    for c in levels:
        e, k = at("etcd", c), at("kcore", c)
        ratio = None
        if e.get("puts_per_s") and k.get("puts_per_s") is not None:
            ratio = round(k["puts_per_s"] / e["puts_per_s"], 3)
        rows.append({"clients": c, "etcd": e, "kcore": k, "ratio": ratio})
    return rows


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
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--kcore-cmd", default=None,
                    help="command for kcore's store (default: `kcore etcd` from PATH)")
    ap.add_argument("--etcd-arg", action="append", default=[], help="extra flag for etcd")
    ap.add_argument("--kcore-arg", action="append", default=[], help="extra flag for kcore")
    ap.add_argument("--target", choices=["all", "leader"], default="all",
                    help="with --cluster 3: dial every member round-robin, or the leader only")
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
            "cluster", "clients", "duration", "warmup", "repeat", "servers", "target", "procs", "conns",
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
    for kind in args.servers:
        result["servers"][kind] = bench_kind(kind, commands[kind], args, console.print)
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
