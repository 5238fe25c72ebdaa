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


def run_case(name: str, sched: str, flags: str, dests: list[tuple], steps: list[tuple],
             vip: str = VIP, persistence: int = 0, netmask: str = "") -> dict:
    """dests: (addr, port, weight[, u_threshold, l_threshold]); steps: (client, port
    offset < 100) opens a connection, ("edit", addr, port, weight, u, l) runs
    `ipvsadm -e`. Connection entries outlive `ipvsadm -C`, so each case gets source
    ports of its own; and dests of its own too: a deleted dest still referenced by
    connections sits in the kernel's trash and would come back, counters and all."""
    global _case_no
    _case_no += 1

    def own(addr: str) -> str:
        return f"10.244.{_case_no}.{addr.rsplit('.', 1)[1]}"

    dests = [(own(d[0]), d[1], d[2], *(d[3:] or (0, 0))) for d in dests]
    plan = []
    for st in steps:
        if st[0] == "edit":
            plan.append(["edit", own(st[1]), *st[2:]])
        else:
            plan.append(["flow", st[0], 20000 + 100 * _case_no + st[1]])
    sh("ipvsadm -C")
    opts = f" -b {flags}" if flags else ""
    if persistence:
        opts += f" -p {persistence}" + (f" -M {netmask}" if netmask else "")
    sh(f"ipvsadm -A -t {vip}:80 -s {sched}{opts}")
    for addr, port, w, u, lo in dests:
        sh(f"ipvsadm -a -t {vip}:80 -r {addr}:{port} -m -w {w} -x {u} -y {lo}")
    socks, got = [], []
    for st in plan:
        if st[0] == "edit":
            _, addr, port, w, u, lo = st
            sh(f"ipvsadm -e -t {vip}:80 -r {addr}:{port} -m -w {w} -x {u} -y {lo}")
            continue
        _, client, sport = st
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((client, sport))
        s.setblocking(False)
        s.connect_ex((vip, 80))
        socks.append(s)
        seen = {}
        for _ in range(60):  # wait until IPVS has the entry (it is made by the SYN)
            seen = conns(vip)
            if (client, sport) in seen:
                break
            time.sleep(0.005)
        got.append(seen.get((client, sport), "-"))
    for s in socks:
        s.close()
    return {"name": name, "sched": sched, "flags": flags, "vip": vip,
            "persistence": persistence, "netmask": netmask,
            "dests": [list(d) for d in dests], "steps": plan, "result": got}


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
    cases.append(run_case("mh-quiesced-fallback", "mh", "mh-fallback", three,
                          [("edit", "10.244.0.2", 8080, 0, 0, 0)] + per_client))
    # upper/lower thresholds (every connection stays SYN_RECV: overload is only set here)
    capped = [("10.244.0.1", 8080, 1, 2, 0), ("10.244.0.2", 8080, 1, 3, 1),
              ("10.244.0.3", 8080, 2, 0, 0)]
    for sched in ("rr", "wrr", "lc", "wlc", "nq", "sh", "mh"):
        cases.append(run_case(f"{sched}-thresholds", sched, "", capped, one_client[:10]
                              if sched not in ("sh", "mh") else per_client[:20]))
    # weights changed between connections: wrr's cw/di rules, rr's cursor
    for sched in ("rr", "wrr", "wlc"):
        cases.append(run_case(f"{sched}-edits", sched, "", weighted, one_client[:4] + [
            ("edit", "10.244.0.9", 9090, 1, 0, 0)] + one_client[4:9] + [
            ("edit", "10.244.0.1", 8080, 4, 0, 0), ("edit", "10.244.0.2", 8080, 0, 0, 0)]
            + one_client[9:16]))
    # persistence: one template per client (or per /24), kept through quiescing
    cases.append(run_case("rr-persistent", "rr", "", three,
                          [(clients[i % 4], i) for i in range(12)], persistence=300))
    cases.append(run_case("wlc-persistent-netmask", "wlc", "", weighted,
                          [(clients[(i * 37) % 48], i) for i in range(14)],
                          persistence=600, netmask="255.255.255.0"))
    cases.append(run_case("rr-persistent-quiesce", "rr", "", three,
                          [(clients[0], 0), (clients[1], 1), (clients[2], 2)]
                          + [("edit", "10.244.0.3", 8080, 0, 0, 0)]
                          + [(clients[i % 4], 10 + i) for i in range(8)], persistence=300))
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
