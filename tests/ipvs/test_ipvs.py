"""kcore's IPVS mode against the real kernel (run in the test VM; see conftest).

One Service (ClusterIP 10.96.0.10:80, NodePort 30080) with three pods is
programmed by IPVSProxier; real connections from the client namespace check
what the kernel does with it, scheduler by scheduler, against the userspace
dispatcher's pure-Python reference (kcore.proxy.ipvs_ref) fed the same
connections: rr order, wrr ratios, sh stickiness per source, lc/sed/nq
choices with connections held open.
"""
from __future__ import annotations

import subprocess
import sys

from conftest import CLIENTS, NODE_IPS, POD_IPS, ROOT, sh

from kcore.proxy import ipvs_ref as ref
from kcore.proxy.iptables_rules import NodeConfig
from kcore.proxy.ipvs import format_table
from kcore.proxy.ipvs_kernel import KernelIPVS, PyrouteIPVS
from kcore.proxy.ipvs_mode import IPVSProxier
from kcore.proxy.servicemap import WEIGHTS_ANNOTATION, build

CIP, NODE_PORT = "10.96.0.10", 30080
NAMES = {ip: f"pod{i}" for i, ip in enumerate(POD_IPS)}


def state(services: list[tuple[str, str, int]], pods=POD_IPS, weights: str = ""):
    """Service dicts as the API server serves them: (name, clusterIP, nodePort)."""
    svcs, eps = [], []
    for name, cip, nport in services:
        svcs.append({"metadata": {"name": name, "namespace": "default"},
                     "spec": {"type": "NodePort" if nport else "ClusterIP", "clusterIP": cip,
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                         **({"nodePort": nport} if nport else {})}]}})
        meta = {"name": name, "namespace": "default"}
        if weights:
            meta["annotations"] = {WEIGHTS_ANNOTATION: weights}
        eps.append({"metadata": meta,
                    "subsets": [{"addresses": [{"ip": ip} for ip in pods],
                                 "ports": [{"name": "http", "port": 8080,
                                            "protocol": "TCP"}]}] if pods else []})
    return build(svcs, eps)


def proxier(sched: str) -> IPVSProxier:
    return IPVSProxier(scheduler=sched, node=NodeConfig(cluster_cidr="10.244.0.0/16"))


def ipvsadm() -> str:
    return sh("ipvsadm", "-Ln").stdout


def kcore_list() -> str:
    return sh(sys.executable, "-m", "kcore.cli.main", "proxy", "list").stdout


def dests_of(table: str, service_line: str) -> list[str]:
    """The real-server lines under one virtual server of an ipvsadm listing."""
    rest = table.split(service_line + "\n", 1)[1].splitlines()
    out = []
    for ln in rest:
        if not ln.startswith("  ->"):
            break
        out.append(ln)
    return out


class Oracle:
    """The reference dispatcher with the same service and dests, fed the same
    connections: the kernel must choose as it does."""

    def __init__(self, sched: str, vip: str, weights: dict[str, int] | None = None):
        self.e = ref.Engine(1, False, False, False, 1024, 7)
        self.vip = int.from_bytes(bytes(map(int, vip.split("."))), "big")
        self.sid = self.e.add_service(ref.TCP, self.vip, 80, ref.SCHEDULERS.index(sched), 0, 0,
                                      0xFFFFFFFF)
        self.names = {}
        for ip in POD_IPS:   # the proxier adds dests in address order
            a = int.from_bytes(bytes(map(int, ip.split("."))), "big")
            w = (weights or {}).get(ip, 1)
            self.names[self.e.add_dest(self.sid, a, 8080, w, 0, 0, False)] = NAMES[ip]
        self.sport, self.t = 20000, 0

    def new(self, src: str = CLIENTS[0], hold: bool = False) -> str:
        self.sport += 1
        self.t += 1
        s = int.from_bytes(bytes(map(int, src.split("."))), "big")
        d = self.e.lookup_or_schedule(ref.TCP, s, self.sport, self.vip, 80, ref.F_SYN, self.t)
        if hold:   # handshake done: ESTABLISHED, counted active
            self.e.lookup_or_schedule(ref.TCP, s, self.sport, self.vip, 80,
                                      ref.F_SYN | ref.F_ACK | ref.F_REPLY, self.t)
            self.e.lookup_or_schedule(ref.TCP, s, self.sport, self.vip, 80, ref.F_ACK, self.t)
        return self.names[d]


def expected_table(header: str, weights=(1, 1, 1), sched="rr") -> str:
    lines = [header, "Prot LocalAddress:Port Scheduler Flags",
             "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
    for addr in (NODE_IPS[1], CIP, NODE_IPS[0]):   # ipvsadm's order: 192.168.x before 10.x
        port = 80 if addr == CIP else NODE_PORT
        lines.append(f"TCP  {addr}:{port} {sched}")
        for ip, w in zip(POD_IPS, weights):
            lines.append(f"  -> {ip + ':8080':<28} Masq    {w:<6} {0:<10} {0:<10}")
    return "\n".join(lines) + "\n"


def test_service_through_ipvs(net):
    p = proxier("rr")
    res = p.sync_blocking(state([("web", CIP, NODE_PORT)]), full=True)
    assert res.changed and res.ops == 12
    # the table, exactly, as ipvsadm and `kcore proxy list` print it
    header = ipvsadm().splitlines()[0]
    assert header.startswith("IP Virtual Server version ")
    assert ipvsadm() == expected_table(header)
    assert kcore_list() == ipvsadm()
    assert format_table(p.table(), KernelIPVS().header()) == ipvsadm()
    # the ClusterIP is a local address (kube-ipvs0): it answers ping
    assert CIP in sh("ip", "-4", "addr", "show", "dev", "kube-ipvs0").stdout
    assert net.ping(CIP)
    assert "-m ipvs --vdir ORIGINAL --vmethod MASQ -j MASQUERADE" in sh(
        "iptables-save", "-t", "nat").stdout
    # a second sync changes nothing
    assert not p.sync_blocking(state([("web", CIP, NODE_PORT)])).changed
    assert not p.sync_blocking(state([("web", CIP, NODE_PORT)]), full=True).ops

    # rr: the kernel's order is the reference's, for the ClusterIP and the NodePort
    for host, port in ((CIP, 80), (NODE_IPS[1], NODE_PORT)):
        got = net.get(host, port, 300)
        assert not got["errors"], got["errors"]
        oracle = Oracle("rr", CIP)
        assert got["sequence"] == [oracle.new() for _ in range(300)]
        assert got["answers"] == {"pod0": 100, "pod1": 100, "pod2": 100}
        assert set(got["peers"]) == {"10.244.0.1"}   # masqueraded: client outside the CIDR

    # pod2 leaves: quiesced (weight 0) while its connections linger, no new traffic
    res = p.sync_blocking(state([("web", CIP, NODE_PORT)], pods=POD_IPS[:2]))
    assert res.pending == 2        # 10.244.0.1:30080 had no traffic: its pod2 went at once
    table = ipvsadm()
    for vs in (f"TCP  {CIP}:80 rr", f"TCP  {NODE_IPS[1]}:{NODE_PORT} rr"):
        assert f"  -> {POD_IPS[2] + ':8080':<28} Masq    0      0          " in "\n".join(
            dests_of(table, vs)), table
    assert len(dests_of(table, f"TCP  {NODE_IPS[0]}:{NODE_PORT} rr")) == 2
    got = net.get(CIP, 80, 60)
    assert got["answers"] == {"pod0": 30, "pod1": 30}, got
    # a dest without connections goes at once: a fresh service shows it
    p.sync_blocking(state([("web", CIP, NODE_PORT), ("idle", "10.96.0.20", 0)]))
    res = p.sync_blocking(state([("web", CIP, NODE_PORT), ("idle", "10.96.0.20", 0)],
                                pods=POD_IPS[:2]))
    idle = dests_of(ipvsadm(), "TCP  10.96.0.20:80 rr")
    assert len(idle) == 2 and POD_IPS[2] not in "".join(idle)

    # the Services go: virtual servers, addresses and traffic with them
    p.sync_blocking(state([]))
    assert "TCP" not in ipvsadm()
    assert CIP not in sh("ip", "-4", "addr", "show", "dev", "kube-ipvs0").stdout
    got = net.get(CIP, 80, 2, timeout=1.0)
    assert not got["answers"], got
    p.cleanup_blocking()
    assert "kube-ipvs0" not in sh("ip", "link").stdout


def test_schedulers_choose_as_the_reference(net):
    p = proxier("wrr")
    weights = {POD_IPS[0]: 1, POD_IPS[1]: 2, POD_IPS[2]: 3}
    wtext = ",".join(f"{ip}={w}" for ip, w in weights.items())
    web = [("web", CIP, NODE_PORT)]
    p.sync_blocking(state(web, weights=wtext), full=True)
    assert ipvsadm() == expected_table(ipvsadm().splitlines()[0], (1, 2, 3), "wrr")
    # wrr: ratios 1:2:3 and the kernel's interleaving
    got = net.get(CIP, 80, 60)
    oracle = Oracle("wrr", CIP, weights)
    assert got["sequence"] == [oracle.new() for _ in range(60)]
    assert got["answers"] == {"pod0": 10, "pod1": 20, "pod2": 30}

    # sh: the scheduler is edited in place; each source sticks to one pod
    p.scheduler = "sh"
    res = p.sync_blocking(state(web, weights=wtext))
    assert res.ops == 3 and "TCP  10.96.0.10:80 sh" in ipvsadm()
    got = net.get(CIP, 80, 48, src=CLIENTS)
    oracle = Oracle("sh", CIP, weights)
    per_src: dict[str, set] = {}
    for entry in got["sequence"]:
        src, _, name = entry.partition(">")
        per_src.setdefault(src, set()).add(name)
        assert name == oracle.new(src)
    assert all(len(v) == 1 for v in per_src.values()) and len(per_src) == len(CLIENTS)
    assert len(set().union(*per_src.values())) > 1

    # lc / sed / nq on fresh services, with connections held open (active)
    for i, sched in enumerate(("lc", "sed", "nq")):
        vip = f"10.96.0.{30 + i}"
        p.scheduler = sched
        p.sync_blocking(state([(sched, vip, 0)], weights=wtext))
        holder, names = net.hold(vip, 80, 7)
        oracle = Oracle(sched, vip, weights)
        assert names == [oracle.new(hold=True) for _ in range(7)], sched
        if sched == "sed":    # (active+1)/weight, ties to the newest dest
            assert names[:6] == ["pod2", "pod1", "pod2", "pod2", "pod1", "pod0"]
        lines = dests_of(ipvsadm(), f"TCP  {vip}:80 {sched}")
        active = {NAMES[ln.split()[1].split(":")[0]]: int(ln.split()[4]) for ln in lines}
        assert active == {n: names.count(n) for n in NAMES.values()}, (sched, lines)
        net.stop(holder)
    p.sync_blocking(state([]))
    p.cleanup_blocking()


def test_pyroute2_reference_agrees_with_the_batched_path(net):
    """The same commands through pyroute2's IPVS API one by one give the same
    kernel table, and both readers read the same thing."""
    from kcore.proxy.ipvs import apply_to, desired, plan
    st = state([("web", CIP, NODE_PORT)], weights=f"{POD_IPS[1]}=4")
    want = desired(st, "wlc", NODE_IPS)
    fast, slow = KernelIPVS(), PyrouteIPVS()
    try:
        ops = plan(want, fast.read())
        assert fast.apply(ops) == []
        batched = ipvsadm()
        assert fast.read() == slow.read() == apply_to({}, ops)
        assert fast.apply(plan({}, fast.read())) == []
        assert "TCP" not in ipvsadm()
        assert slow.apply(ops) == []
        assert ipvsadm() == batched
        assert slow.apply(plan({}, slow.read())) == []
    finally:
        fast.close()
        slow.close()


def test_kcore_proxy_list_on_an_empty_table(net):
    p = subprocess.run([sys.executable, "-m", "kcore.cli.main", "proxy", "list"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("IP Virtual Server version ")
