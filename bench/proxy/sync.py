"""Proxy sync cost: program N Services x E endpoints, then apply one change, in
iptables mode (here, inside a scratch network namespace) or IPVS mode (inside
the test VM, where the kernel has IPVS).

    sudo python bench/proxy/sync.py --mode iptables                 # 10,000 x 5
    ../shared/testvm/vm.sh run -v . -t 1800 \\
        'PYTHONPATH=src python3 bench/proxy/sync.py --mode ipvs --services 10000'
    python bench/proxy/sync.py --mode iptables --services 1000 --out r.json

Each Service is a ClusterIP with one TCP port (every 10th also a NodePort) and
E ready endpoints; the proxier is the one `kcore proxy` runs (IptablesProxier,
IPVSProxier), called directly with the ProxyState, so the figures are the
node-programming cost without the API server. Timed:

* program: the first sync on an empty node (iptables: render + one
  iptables-restore; ipvs: kernel read, kube-ipvs0 addresses, netlink batches,
  masquerade rules);
* one change: one Service gains an endpoint (kube-proxy's "add one rule");
* no change: a sync with nothing to do (iptables: the text hash matches;
  ipvs: the plan is empty);
* full resync (ipvs): the periodic sync that re-reads the kernel's table;
* ipvs also times the pyroute2-only path (PyrouteIPVS) on --pyroute2-services
  services, the reference the batched netlink path replaces.

iptables mode re-executes itself inside a network namespace it creates and
deletes (root needed); nothing outside it is touched. JSON to stdout and to
--out (default bench/results/proxy-sync-<mode>-<time>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))

from kcore.proxy.iptables_rules import Endpoint, NodeConfig, ServicePort  # noqa: E402
from kcore.proxy.servicemap import ProxyState  # noqa: E402

CIDR = "10.244.0.0/16"


def make_state(n: int, e: int, extra: int = 0, nodeport_every: int = 10) -> ProxyState:
    """n Services, e endpoints each; `extra` adds one endpoint to service 0."""
    svcs, eps = [], {}
    for i in range(n):
        cip = f"10.96.{i // 250}.{i % 250 + 1}"                 # n <= 64,000
        sp = ServicePort("bench", f"svc-{i}", cip, 80, "TCP", "http",
                         node_port=30000 + i // nodeport_every if i % nodeport_every == 0 else 0)
        svcs.append(sp)
        k = e + (extra if i == 0 else 0)
        gs = [i * e + j if j < e else n * e + j for j in range(k)]  # unique pod IPs
        eps[sp.port_name_string] = tuple(
            Endpoint(f"10.{244 + g // 62500}.{g // 250 % 250}.{g % 250 + 1}", 8080) for g in gs)
    return ProxyState(tuple(svcs), eps, {})


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_iptables(n: int, e: int) -> dict:
    from kcore.proxy.iptables_mode import IptablesProxier
    from kcore.proxy.iptables_rules import render
    node = NodeConfig(cluster_cidr=CIDR)
    st0, st1 = make_state(n, e), make_state(n, e, extra=1)
    p = IptablesProxier(node)
    t_render, text = timed(lambda: render(st0.services, st0.endpoints, node, ()))
    t_prog, r = timed(lambda: p.sync_blocking(st0))
    t_change, r1 = timed(lambda: p.sync_blocking(st1))
    t_none, r2 = timed(lambda: p.sync_blocking(st1))
    t_render1, _ = timed(lambda: render(st1.services, st1.endpoints, node,
                                        p.applier.existing_chains()))
    rules = int(r.detail.split()[0])
    saved = p.ipt.save("nat")
    p.cleanup_blocking()
    return {"program_s": t_prog, "render_s": t_render, "restore_s": t_prog - t_render,
            "one_change_s": t_change, "one_change_render_s": t_render1,
            "no_change_s": t_none, "rules": rules, "restore_bytes": len(text),
            "nat_rules_in_kernel": saved.count("\n-A "),
            "changed": [r.changed, r1.changed, r2.changed]}


def bench_ipvs(n: int, e: int, pyroute2_n: int) -> dict:
    from kcore.proxy.ipvs import apply_to, desired, plan
    from kcore.proxy.ipvs_kernel import KernelIPVS, PyrouteIPVS
    from kcore.proxy.ipvs_mode import IPVSProxier
    st0, st1 = make_state(n, e), make_state(n, e, extra=1)
    p = IPVSProxier("rr", NodeConfig(cluster_cidr=CIDR))
    t_prog, r = timed(lambda: p.sync_blocking(st0))
    t_change, r1 = timed(lambda: p.sync_blocking(st1))
    t_none, r2 = timed(lambda: p.sync_blocking(st1))
    t_full, r3 = timed(lambda: p.sync_blocking(st1, full=True))
    nodes = p.node_ips()
    t_plan, _ = timed(lambda: plan(desired(st1, "rr", nodes), p._have))
    k = KernelIPVS()
    t_read, table = timed(k.read)
    k.close()
    vs, dests = len(table), sum(len(x.dests) for x in table.values())
    t_clean, _ = timed(p.cleanup_blocking)
    out = {"program_s": t_prog, "program_ops": r.ops, "one_change_s": t_change,
           "one_change_ops": r1.ops, "no_change_s": t_none, "no_change_ops": r2.ops,
           "full_resync_s": t_full, "full_resync_ops": r3.ops, "plan_only_s": t_plan,
           "kernel_read_s": t_read, "virtual_servers": vs, "real_servers": dests,
           "cleanup_s": t_clean}
    if pyroute2_n:
        small = make_state(pyroute2_n, e)
        ops = plan(desired(small, "rr", []), {})
        slow = PyrouteIPVS()
        t_slow, failed = timed(lambda: slow.apply(ops))
        t_slow_read, _ = timed(slow.read)
        slow.apply(plan({}, apply_to({}, ops)))
        slow.close()
        fast = KernelIPVS()
        t_fast, failed2 = timed(lambda: fast.apply(ops))
        t_fast_read, _ = timed(fast.read)
        fast.apply(plan({}, apply_to({}, ops)))
        fast.close()
        out["pyroute2_compare"] = {
            "services": pyroute2_n, "ops": len(ops), "pyroute2_apply_s": t_slow,
            "batched_apply_s": t_fast, "pyroute2_read_s": t_slow_read,
            "batched_read_s": t_fast_read, "failures": [len(failed), len(failed2)],
            "pyroute2_ms_per_op": 1000 * t_slow / len(ops),
            "batched_ms_per_op": 1000 * t_fast / len(ops)}
    return out


def in_scratch_netns(argv: list[str]) -> int:
    """Run this script again inside a network namespace made (and removed) here."""
    name = f"kcbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__,
                               *argv, "--in-netns"]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("iptables", "ipvs"), default="iptables")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--pyroute2-services", type=int, default=100,
                    help="ipvs: size of the pyroute2-only comparison (0: skip)")
    ap.add_argument("--out", default="")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode == "iptables" and not a.in_netns:
        return in_scratch_netns([x for x in sys.argv[1:]])
    t0 = time.time()
    if a.mode == "iptables":
        res = bench_iptables(a.services, a.endpoints)
        res["iptables"] = subprocess.run(["iptables", "--version"], capture_output=True,
                                         text=True).stdout.strip()
    else:
        res = bench_ipvs(a.services, a.endpoints, a.pyroute2_services)
    doc = {"bench": "proxy-sync", "mode": a.mode, "services": a.services,
           "endpoints_per_service": a.endpoints, "result": res,
           "python": platform.python_version(), "kernel": platform.release(),
           "machine": platform.machine(), "cpus": os.cpu_count(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0)),
           "wall_s": time.time() - t0}
    text = json.dumps(doc, indent=2)
    print(text)
    out = a.out or os.path.join(HERE, "..", "results",
                                f"proxy-sync-{a.mode}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
