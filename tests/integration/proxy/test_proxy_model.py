"""The proxy's pure parts: Services/Endpoints to a ProxyState, the IPVS table a
node should have and the fewest commands to get there, ipvsadm's listing, the
netlink encoding, and the iptables applier's change detection (with a fake
iptables). No root needed."""
from __future__ import annotations

import socket
import struct

import pytest

from kcore.proxy import netlink as nl
from kcore.proxy.iptables import RuleApplier
from kcore.proxy.iptables_rules import (
    NodeConfig,
    jump_rules,
    render,
    render_ipvs,
)
from kcore.proxy.ipvs import (
    FWD_LOCAL,
    Entry,
    Op,
    RealServer,
    VirtualServer,
    apply_to,
    bound_addresses,
    desired,
    format_table,
    plan,
)
from kcore.proxy.ipvs_kernel import (
    CMD_ATTR_DEST,
    CMD_ATTR_SERVICE,
    _parse_dest,
    _parse_service,
    encode,
)
from kcore.proxy.servicemap import WEIGHTS_ANNOTATION, build, parse_weights


def svc(name, cip="10.96.0.10", ports=None, type_="ClusterIP", ns="default", **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"type": type_, "clusterIP": cip,
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP",
                                         "nodePort": 30080}], **spec}}


def eps(name, ips, ports=None, not_ready=(), ns="default", weights=""):
    meta = {"name": name, "namespace": ns}
    if weights:
        meta["annotations"] = {WEIGHTS_ANNOTATION: weights}
    return {"metadata": meta,
            "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                         "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                         "ports": ports or [{"name": "http", "port": 8080,
                                             "protocol": "TCP"}]}]}


# -- servicemap ----------------------------------------------------------------------------------
def test_build_follows_kube_proxy_rules():
    state = build(
        [svc("web", type_="NodePort"), svc("headless", cip="None"),
         svc("ext", type_="ExternalName"), svc("plain", cip="10.96.0.11"),
         svc("aff", cip="10.96.0.12", sessionAffinity="ClientIP",
             externalIPs=["192.0.2.50", "bogus"])],
        [eps("web", ["10.244.0.2", "10.244.0.1"], not_ready=["10.244.0.9"],
             weights="10.244.0.2=3,junk,10.244.0.1=x"),
         eps("plain", ["10.244.1.1"], ports=[{"name": "other", "port": 1}]),
         eps("aff", ["10.244.2.1"])])
    by = {s.name: s for s in state.services}
    assert set(by) == {"web", "plain", "aff"}
    assert by["web"].node_port == 30080 and by["plain"].node_port == 0
    assert by["aff"].affinity_seconds == 10800 and by["aff"].external_ips == ("192.0.2.50",)
    assert [e.ip for e in state.endpoints["default/web:http"]] == ["10.244.0.2", "10.244.0.1"]
    assert "default/plain:http" not in state.endpoints   # port names must match
    w = state.endpoints["default/web:http"]
    assert state.weight("default/web:http", w[0]) == 3
    assert state.weight("default/web:http", w[1]) == 1
    assert parse_weights("1.2.3.4=0, 1.2.3.5=7") == {"1.2.3.4": 0, "1.2.3.5": 7}


# -- desired / plan ----------------------------------------------------------------------------
def web_state(ips=("10.244.0.1", "10.244.0.2", "10.244.0.3"), weights="", **kw):
    return build([svc("web", type_="NodePort", **kw)], [eps("web", list(ips), weights=weights)])


def test_desired_virtual_servers():
    want = desired(web_state(externalIPs=["192.0.2.50"]), "wrr", ["192.168.1.10"])
    assert sorted(want) == [("tcp", "10.96.0.10", 80), ("tcp", "192.0.2.50", 80),
                            ("tcp", "192.168.1.10", 30080)]
    e = want[("tcp", "10.96.0.10", 80)]
    assert e.vs.scheduler == "wrr" and [str(r) for r in e.dests.values()] == [
        "10.244.0.1:8080", "10.244.0.2:8080", "10.244.0.3:8080"]
    assert bound_addresses(want, ["192.168.1.10"]) == {"10.96.0.10", "192.0.2.50"}
    with pytest.raises(ValueError):
        desired(web_state(), "nope")


def test_plan_from_empty_then_nothing_to_do():
    want = desired(web_state(), "rr", ["192.168.1.10"])
    ops = plan(want, {})
    assert [o.kind for o in ops] == ["add_service"] + ["add_dest"] * 3 + \
        ["add_service"] + ["add_dest"] * 3
    have = apply_to({}, ops)
    assert plan(want, have) == []
    # the kernel lists dests newest first
    assert [r.addr for r in have[("tcp", "10.96.0.10", 80)].dests.values()] == [
        "10.244.0.3", "10.244.0.2", "10.244.0.1"]


def test_plan_minimal_changes_and_graceful_removal():
    have = apply_to({}, plan(desired(web_state(), "rr"), {}))
    key = ("tcp", "10.96.0.10", 80)
    # weight change and a new endpoint
    want = desired(web_state(("10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.0.4"),
                             weights="10.244.0.1=5"), "rr")
    ops = plan(want, have)
    assert [(o.kind, str(o.rs), o.rs.weight) for o in ops] == [
        ("set_dest", "10.244.0.1:8080", 5), ("add_dest", "10.244.0.4:8080", 1)]
    # an endpoint leaves while it has connections: quiesced, then deleted once idle
    busy = dict(have)
    busy[key] = Entry(have[key].vs, {**have[key].dests, ("10.244.0.3", 8080): RealServer(
        "10.244.0.3", 8080, 1, active=2, inactive=1)})
    want = desired(web_state(("10.244.0.1", "10.244.0.2")), "rr")
    ops = plan(want, busy)
    assert [(o.kind, str(o.rs), o.rs.weight) for o in ops] == [("set_dest", "10.244.0.3:8080", 0)]
    quiet = apply_to(busy, ops)
    assert plan(want, quiet) == [] or all(o.kind != "del_dest" for o in plan(want, quiet))
    idle = dict(quiet)
    idle[key] = Entry(quiet[key].vs, {k: RealServer(r.addr, r.port, r.weight)
                                      for k, r in quiet[key].dests.items()})
    assert [(o.kind, str(o.rs)) for o in plan(want, idle)] == [("del_dest", "10.244.0.3:8080")]
    # graceful=False (and UDP) delete at once
    assert [o.kind for o in plan(want, busy, graceful=False)] == ["del_dest"]
    # an endpoint that comes back is un-quiesced
    back = plan(desired(web_state(), "rr"), quiet)
    assert [(o.kind, o.rs.weight) for o in back] == [("set_dest", 1)]


def test_plan_scheduler_edit_ownership_and_local_dests():
    have = apply_to({}, plan(desired(web_state(), "rr"), {}))
    foreign = VirtualServer("tcp", "192.0.2.9", 443, "wlc")
    have[foreign.key] = Entry(foreign, {})
    mine = VirtualServer("tcp", "10.96.0.99", 80, "rr")
    have[mine.key] = Entry(mine, {})
    want = desired(web_state(), "sh")
    ops = plan(want, have, owned=lambda vs: vs.addr.startswith("10.96."))
    assert [(o.kind, str(o.vs)) for o in ops] == [("set_service", "TCP 10.96.0.10:80"),
                                                   ("del_service", "TCP 10.96.0.99:80")]
    # a dest at a local address reads back as Local (1): not a change
    key = ("tcp", "10.96.0.10", 80)
    local = apply_to(have, ops)
    local[key].dests = {k: RealServer(r.addr, r.port, r.weight, FWD_LOCAL)
                        for k, r in local[key].dests.items()}
    assert plan(want, local, owned=lambda vs: False) == []


# -- ipvsadm -Ln ---------------------------------------------------------------------------------
def test_format_table_is_ipvsadm_layout():
    vs = VirtualServer("tcp", "10.96.0.10", 80, "rr")
    aff = VirtualServer("tcp", "10.96.0.9", 443, "sh", flags=0x18, timeout=300)
    udp = VirtualServer("udp", "10.96.0.2", 53, "rr")
    table = {vs.key: Entry(vs, {("10.244.0.2", 8080): RealServer("10.244.0.2", 8080, 1, 0, 3, 12),
                                ("10.244.0.10", 8080): RealServer("10.244.0.10", 8080, 0)}),
             aff.key: Entry(aff, {}), udp.key: Entry(udp, {})}
    assert format_table(table) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.96.0.9:443 sh (sh-fallback,sh-port) persistent 300\n"
        "TCP  10.96.0.10:80 rr\n"
        "  -> 10.244.0.2:8080              Masq    1      3          12        \n"
        "  -> 10.244.0.10:8080             Masq    0      0          0         \n"
        "UDP  10.96.0.2:53 rr\n")


# -- netlink encoding --------------------------------------------------------------------------
@pytest.mark.parametrize("op", [
    Op("add_service", VirtualServer("tcp", "10.96.0.10", 80, "wrr")),
    Op("set_service", VirtualServer("udp", "10.96.0.2", 53, "sh", 0x08, 600, "255.255.255.0")),
    Op("add_dest", VirtualServer("tcp", "10.96.0.10", 80), RealServer("10.244.0.1", 8080, 7)),
])
def test_netlink_messages_round_trip(op):
    body = encode(op)
    cmd, version, _ = struct.unpack_from("=BBH", body)
    assert version == 1 and cmd in (1, 2, 5)
    top = nl.parse_attrs(body, 4)
    vs = _parse_service(nl.parse_attrs(top[CMD_ATTR_SERVICE]) | ({} if op.kind != "add_dest" else {
        6: b"rr\0", 7: struct.pack("=II", 0, 0), 8: b"\0" * 4}))
    assert (vs.proto, vs.addr, vs.port) == op.vs.key
    if op.kind != "add_dest":
        assert (vs.scheduler, vs.flags, vs.timeout, vs.netmask) == (
            op.vs.scheduler, op.vs.flags, op.vs.timeout, op.vs.netmask)
    else:
        a = nl.parse_attrs(top[CMD_ATTR_DEST])
        a[7] = a[8] = b"\0" * 4
        assert _parse_dest(a) == op.rs
        assert socket.inet_ntoa(a[1]) == "10.244.0.1"


# -- iptables applier ------------------------------------------------------------------------
class FakeIptables:
    def __init__(self):
        self.restores, self.rules, self.nat_chains = [], set(), set()

    def restore(self, text):
        self.restores.append(text)
        for ln in text.splitlines():
            if ln.startswith(":"):
                self.nat_chains.add(ln[1:].split()[0])
            elif ln.startswith("-X "):
                self.nat_chains.discard(ln[3:])

    def chains(self, table):
        return set(self.nat_chains)

    def has_rule(self, table, chain, rule):
        return (table, chain, tuple(rule)) in self.rules

    def ensure_rule(self, table, chain, rule):
        self.rules.add((table, chain, tuple(rule)))
        return True

    def delete_rule(self, table, chain, rule):
        self.rules.discard((table, chain, tuple(rule)))


def test_applier_skips_unchanged_text_and_removes_stale_chains():
    ipt = FakeIptables()
    a = RuleApplier(ipt, jump_rules())
    node = NodeConfig(cluster_cidr="10.244.0.0/16")
    s1 = web_state()
    t1 = render(s1.services, s1.endpoints, node, a.existing_chains())
    assert a.apply(t1) and len(ipt.restores) == 1 and len(ipt.rules) == len(jump_rules())
    assert not a.apply(render(s1.services, s1.endpoints, node, a.existing_chains()))
    s2 = web_state(("10.244.0.1",))
    t2 = render(s2.services, s2.endpoints, node, a.existing_chains())
    assert "-X KUBE-SEP-" in t2 and a.apply(t2)
    # only what changed went to iptables-restore: the service chain, two deletions
    part = ipt.restores[-1]
    assert "KUBE-POSTROUTING" not in part and "*filter" not in part
    assert part.count("-X KUBE-SEP-") == 2 and part.count(":KUBE-SVC-") == 1, part
    assert "-A KUBE-SERVICES" not in part
    assert not a.apply(render(s2.services, s2.endpoints, node, a.existing_chains()))
    assert a.healthy()
    ipt.rules.clear()                       # a firewall reload
    assert not a.healthy()
    assert a.apply(render(s2.services, s2.endpoints, node, a.existing_chains()), force=True)
    assert a.healthy() and len(ipt.restores) == 3


def test_ipvs_masquerade_rules():
    text = render_ipvs(NodeConfig(cluster_cidr="10.244.0.0/16"))
    assert "! -s 10.244.0.0/16 -m ipvs --vdir ORIGINAL --vmethod MASQ -j MASQUERADE" in text
    assert "-m ipvs --vdir ORIGINAL --vmethod MASQ -j MASQUERADE" in render_ipvs(
        NodeConfig(cluster_cidr="10.244.0.0/16", masquerade_all=True))


def test_format_table_sorts_like_ipvsadm():
    """Recorded in the test VM: `ipvsadm -Ln` (sorting is its default) of this
    table puts 192.168.77.1 and 9.1.1.1 before 10.x -- its comparator subtracts
    unsigned addresses into an int."""
    t = {}
    for a in ["10.96.0.10", "10.244.0.1", "192.168.77.1", "10.96.0.2", "10.96.1.1", "9.1.1.1"]:
        vs = VirtualServer("tcp", a, 80, "rr")
        t[vs.key] = Entry(vs, {(d, 8080): RealServer(d, 8080) for d in
                               ["10.244.0.12", "10.244.0.10", "10.244.0.11", "10.244.0.9"]})
    order = [ln.split()[1] for ln in format_table(t).splitlines() if ln.startswith("TCP")]
    assert order == ["192.168.77.1:80", "9.1.1.1:80", "10.96.0.2:80", "10.96.0.10:80",
                     "10.96.1.1:80", "10.244.0.1:80"]
    dests = [ln.split()[1] for ln in format_table(t).splitlines()[4:8]]
    assert dests == ["10.244.0.9:8080", "10.244.0.10:8080", "10.244.0.11:8080",
                     "10.244.0.12:8080"]
