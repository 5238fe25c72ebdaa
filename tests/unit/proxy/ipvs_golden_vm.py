"""Record the kernel's IPVS choices as golden vectors (run inside the test VM).

    ../shared/testvm/vm.sh run -v . -t 900 'python3 tests/unit/proxy/ipvs_golden_vm.py'

Writes tests/unit/proxy/ipvs_golden.json; test_ipvs_golden.py replays every
case on both engines. Each case: a fresh virtual service, dests added in
order, then TCP connections opened one at a time from given source addresses
and ports (a SYN only: the real servers sit behind a blackhole route, so every
connection stays in SYN_RECV, i.e. active); the real server IPVS picked for
each is read back with `ipvsadm -Lnc`. Needs root, ipvsadm and iproute2;
stdlib only (the guest's Python is slow: keep cases small).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

VIP = "10.96.0.10"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ipvs_golden.json")


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


def setup(n_clients: int, vips: list[str]) -> list[str]:
    sh("ip link add kc0 type dummy && ip link set kc0 up")
    for v in vips:
        sh(f"ip addr add {v}/32 dev kc0")
    clients = [f"192.168.{i // 200}.{1 + i % 200}" for i in range(n_clients)]
    batch = "".join(f"addr add {c}/32 dev kc0\n" for c in clients)
    subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
    sh("ip route add blackhole 10.244.0.0/16")
    return clients


def conns(vip: str) -> dict[tuple[str, int], str]:
    out = {}
    for line in sh("ipvsadm -Lnc").splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] == "TCP" and parts[4] == f"{vip}:80":
            host, port = parts[3].rsplit(":", 1)
            out[(host, int(port))] = parts[5]
    return out


_case_no = 0


def run_case(name: str, sched: str, flags: str, dests: list[tuple[str, int, int]],
             flows: list[tuple[str, int]], vip: str = VIP, extra: list[str] | None = None) -> dict:
    """flows: (client, port offset < 100); connection entries outlive `ipvsadm -C`,
    so each case gets source ports of its own."""
    global _case_no
    _case_no += 1
    flows = [(c, 20000 + 100 * _case_no + off) for c, off in flows]
    # dests of their own too: a deleted dest still referenced by connections sits in
    # the kernel's trash and would come back, counters and all, in the next case
    dests = [(f"10.244.{_case_no}.{addr.rsplit('.', 1)[1]}", port, w) for addr, port, w in dests]
    extra = [c.replace("10.244.0.", f"10.244.{_case_no}.") for c in extra or []]
    sh("ipvsadm -C")
    sh(f"ipvsadm -A -t {vip}:80 -s {sched}" + (f" -b {flags}" if flags else ""))
    for addr, port, w in dests:
        sh(f"ipvsadm -a -t {vip}:80 -r {addr}:{port} -m -w {w}")
    for cmd in extra or []:
        sh(cmd)
    socks, got = [], []
    for client, sport in flows:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((client, sport))
        s.setblocking(False)
        s.connect_ex((vip, 80))
        socks.append(s)
        seen = {}
        for _ in range(200):  # wait until IPVS has the entry (it is made by the SYN)
            seen = conns(vip)
            if (client, sport) in seen:
                break
            time.sleep(0.005)
        got.append(seen.get((client, sport), "-"))
    for s in socks:
        s.close()
    return {"name": name, "sched": sched, "flags": flags, "vip": vip,
            "dests": [list(d) for d in dests], "flows": [list(f) for f in flows],
            "extra": extra or [], "result": got}


def main() -> int:
    vips = [VIP] + [f"10.96.{1 + i}.{7 * i + 3}" for i in range(12)]
    clients = setup(48, vips)
    three = [("10.244.0.1", 8080, 1), ("10.244.0.2", 8080, 1), ("10.244.0.3", 8080, 1)]
    weighted = [("10.244.0.1", 8080, 1), ("10.244.0.2", 8080, 2), ("10.244.0.9", 9090, 5)]
    with_zero = [("10.244.0.1", 8080, 2), ("10.244.0.2", 8080, 0), ("10.244.0.3", 8080, 3)]
    per_client = [(c, 0) for c in clients]
    one_client = [(clients[0], i) for i in range(24)]
    cases = []
    for sched in ("rr", "wrr", "lc", "wlc", "sed", "nq"):
        cases.append(run_case(f"{sched}-weighted", sched, "", weighted, one_client[:12]))
        cases.append(run_case(f"{sched}-zero", sched, "", with_zero, one_client[12:24]))
    cases.append(run_case("sh-weighted", "sh", "", weighted, per_client))
    cases.append(run_case("sh-zero", "sh", "", with_zero, per_client))
    cases.append(run_case("sh-port", "sh", "sh-port", three, one_client))
    cases.append(run_case("sh-fallback", "sh", "sh-fallback", with_zero, per_client))
    cases.append(run_case("mh-three", "mh", "", three, per_client))
    cases.append(run_case("mh-weighted", "mh", "", weighted, per_client))
    cases.append(run_case("mh-port", "mh", "mh-port", weighted, one_client))
    cases.append(run_case("mh-zero", "mh", "", with_zero, per_client))
    cases.append(run_case("mh-zero-fallback", "mh", "mh-fallback", with_zero, per_client))
    cases.append(run_case(
        "mh-quiesced-fallback", "mh", "mh-fallback", three, per_client,
        extra=[f"ipvsadm -e -t {VIP}:80 -r 10.244.0.2:8080 -m -w 0"]))
    for i, v in enumerate(vips[1:]):
        cases.append(run_case(f"dh-vip{i}", "dh", "", weighted, [(clients[i], 0)], vip=v))
    with open(OUT, "w") as fh:
        json.dump({"kernel": os.uname().release, "cases": cases}, fh, indent=1)
        fh.write("\n")
    bad = [c["name"] for c in cases if "-" in c["result"] and "zero" not in c["name"]]
    print(f"{len(cases)} cases written to {OUT}; kernel {os.uname().release}; "
          f"cases with unscheduled flows: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
