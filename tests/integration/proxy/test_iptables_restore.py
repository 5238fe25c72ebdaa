"""The iptables applier against real iptables-restore, in a scratch namespace:
a large restore split into batches (leaf chains first) ends in exactly the
rules one restore would make, and partial restores (only changed chains)
keep the kernel equal to the full text."""
from __future__ import annotations

import json
import re
import sys

import pytest
from proxy_lab import Lab, available

from kcore.proxy.iptables_rules import Endpoint, NodeConfig, ServicePort, jump_rules, render

NODE = NodeConfig(cluster_cidr="10.244.0.0/16")


def services(n: int, eps: int, skip: int = -1):
    svcs, ep = [], {}
    for i in range(n):
        sp = ServicePort("t", f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}", 80,
                         node_port=30000 + i if i % 7 == 0 else 0)
        svcs.append(sp)
        k = 0 if i == skip else eps + (i % 3)
        ep[sp.port_name_string] = [Endpoint(f"10.244.{i // 50}.{(i % 50) * 5 + j + 1}", 8080)
                                   for j in range(k)]
    return svcs, ep


def kernel_rules(lab: Lab, ns: str) -> list[str]:
    out = []
    for table in ("nat", "filter"):
        text = lab.exec(ns, "iptables-save", "-t", table).stdout
        out += sorted(ln for ln in text.splitlines() if ln.startswith(("-A", ":KUBE")))
    return [re.sub(r"\[\d+:\d+\]", "", ln) for ln in out]


@pytest.fixture(scope="module")
def lab2():
    if not available():
        pytest.skip("needs root and iptables")
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def test_batched_and_partial_restores_match_one_restore(lab2):
    one, split = lab2.netns("one"), lab2.netns("split")
    svcs, ep = services(300, 2)
    text = render(svcs, ep, NODE)
    lab2.exec(one, "iptables-restore", "--noflush", input=text)
    code = (
        "import sys\n"
        "from kcore.proxy.iptables import Iptables, RuleApplier\n"
        "from kcore.proxy.iptables_rules import jump_rules\n"
        "a = RuleApplier(Iptables(), jump_rules(), batch_chains=100)\n"
        "a.apply(sys.stdin.read())\n")
    lab2.exec(split, sys.executable, "-c", code, input=text)
    for table, chain, rule in jump_rules():
        lab2.exec(one, "iptables", "-t", table, "-I", chain, "1", *rule)
    assert kernel_rules(lab2, one) == kernel_rules(lab2, split)
    assert len([r for r in kernel_rules(lab2, split) if r.startswith(":KUBE-SEP")]) > 600


def test_partial_restores_track_the_full_text(lab2):
    ns = lab2.netns("part")
    code = (
        "import sys, json\n"
        "sys.path.insert(0, {!r})\n"
        "from test_iptables_restore import services, NODE\n"
        "from kcore.proxy.iptables import Iptables, RuleApplier\n"
        "from kcore.proxy.iptables_rules import jump_rules, render\n"
        "a = RuleApplier(Iptables(), jump_rules())\n"
        "sizes = []\n"
        "for step in [dict(), dict(skip=5), dict(eps=4), dict(skip=7, eps=4), dict()]:\n"
        "    svcs, ep = services(60, step.get('eps', 2), step.get('skip', -1))\n"
        "    a.apply(render(svcs, ep, NODE, a.existing_chains()))\n"
        "    sizes.append(a.last_restore_bytes)\n"
        "print(json.dumps(sizes))\n").format(__file__.rsplit("/", 1)[0])
    sizes = json.loads(lab2.exec(ns, sys.executable, "-c", code).stdout)
    # one service lost its endpoints: its chains and the KUBE-SERVICES chains (nat, filter)
    assert sizes[1] < sizes[0] / 3
    assert sizes[2] > sizes[1] and sizes[4] < sizes[0]
    svcs, ep = services(60, 2)
    want = render(svcs, ep, NODE)
    ref = lab2.netns("ref")
    lab2.exec(ref, "iptables-restore", "--noflush", input=want)
    got, exp = kernel_rules(lab2, ns), kernel_rules(lab2, ref)
    builtin = ("-A PREROUTING ", "-A INPUT ", "-A FORWARD ", "-A OUTPUT ", "-A POSTROUTING ")
    got = [r for r in got if not r.startswith(builtin)]      # the jumps: ref has none
    assert got == exp


def test_kcore_proxy_cleanup_removes_chains_and_jumps(lab2):
    ns = lab2.netns("clean")
    code = ("import sys\n"
            "from kcore.proxy.iptables_mode import IptablesProxier\n"
            "from kcore.proxy.servicemap import ProxyState\n"
            "sys.path.insert(0, {!r})\n"
            "from test_iptables_restore import services, NODE\n"
            "svcs, ep = services(20, 2)\n"
            "p = IptablesProxier(NODE, sysctls=False)\n"
            "p.sync_blocking(ProxyState(tuple(svcs), {{k: tuple(v) for k, v in ep.items()}}))\n"
            ).format(__file__.rsplit("/", 1)[0])
    lab2.exec(ns, sys.executable, "-c", code)
    lab2.exec(ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24",
              "-j", "MASQUERADE")                      # a rule that is not the proxy's
    assert "KUBE-SEP-" in lab2.exec(ns, "iptables-save").stdout
    lab2.exec(ns, sys.executable, "-m", "kcore.cli.main", "proxy", "--cleanup",
              "--proxy-mode=iptables")
    left = lab2.exec(ns, "iptables-save").stdout
    assert "KUBE" not in left
    assert "-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE" in left
