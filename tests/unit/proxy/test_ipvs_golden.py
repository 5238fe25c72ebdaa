"""Replay what the real kernel (Debian 6.1 in the test VM) chose, on each engine.

ipvs_golden.json is recorded by ipvs_golden_vm.py: per case a fresh virtual
service, dests added in order (maybe an `ipvsadm -e` after), then SYNs from
given source addresses and ports, one connection at a time, each left in
SYN_RECV (active); weights may be edited between connections. The dispatcher
must pick the same real server for every one: rr/wrr order and cursors, the
lc/wlc/sed/nq arithmetic and tie-breaking, dh/sh hash_32 buckets and weights,
sh-port/sh-fallback, Maglev (hsiphash, turns, fallback), upper thresholds
(OVERLOAD), persistence templates with netmasks and quiescing -- all against
the kernel itself."""
from __future__ import annotations

import json
import os

import pytest

from kcore.proxy.dispatcher import (
    F_SYN,
    MH_FALLBACK,
    MH_PORT,
    SH_FALLBACK,
    SH_PORT,
    TCP,
    Flow,
    Service,
    ip4,
)

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ipvs_golden.json")
with open(GOLDEN) as fh:
    DATA = json.load(fh)

FLAGS = {"": 0, "sh-port": SH_PORT, "sh-fallback": SH_FALLBACK, "mh-port": MH_PORT,
         "mh-fallback": MH_FALLBACK}


def test_recorded_on_the_debian_kernel():
    assert DATA["kernel"].startswith("6.1.")
    assert len(DATA["cases"]) >= 30


@pytest.mark.parametrize("case", DATA["cases"], ids=[c["name"] for c in DATA["cases"]])
def test_kernel_choice(make, case):
    d = make()
    vip = ip4(case["vip"])
    flags = 0
    for f in case["flags"].split(","):
        flags |= FLAGS[f]
    svc = d.add_service(Service(vip, 80, "tcp", case["sched"], flags=flags,
                                persistence=case["persistence"],
                                netmask=case["netmask"] or "255.255.255.255"))
    name, by_addr = {}, {}
    for addr, port, w, u, lo in case["dests"]:
        did = d.add_dest(svc, addr, port, w, u_threshold=u, l_threshold=lo)
        name[did] = f"{addr}:{port}"
        by_addr[(addr, port)] = did
    got = []
    for step in case["steps"]:
        if step[0] == "edit":
            _, addr, port, w, u, lo = step
            d.update_dest(by_addr[(addr, port)], weight=w, u_threshold=u, l_threshold=lo)
            continue
        _, client, sport = step
        dest = d.lookup_or_schedule(Flow(TCP, ip4(client), sport, vip, 80, F_SYN), 0)
        got.append(name.get(dest, "-"))
    assert got == case["result"]
