"""kube-proxy's iptables layout as a pure function: chain names hashed exactly
as kube-proxy does (checked against names every cluster has), the
KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP structure, 1/n probabilities, masquerade,
nodePorts, REJECT for services without endpoints, affinity, stale chains;
and the text is accepted by iptables-restore --test when the host has it."""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from fractions import Fraction

import pytest

from kcore.proxy.iptables_rules import (
    Endpoint,
    NodeConfig,
    ServicePort,
    endpoint_chain,
    jump_rules,
    probability,
    render,
    service_chain,
)

NODE = NodeConfig(cluster_cidr="10.244.0.0/16")


def web(n=3, **kw):
    svc = ServicePort("default", "web", "10.96.0.10", 80, node_port=30080, **kw)
    eps = [Endpoint(f"10.244.{i}.5", 8080) for i in range(1, n + 1)]
    return svc, {svc.port_name_string: eps}


def rules(text, table, chain):
    tab = text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]
    return [ln for ln in tab.splitlines() if ln.startswith(f"-A {chain} ")]


@pytest.mark.parametrize("name,proto,want", [
    ("default/kubernetes:https", "TCP", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("kube-system/kube-dns:dns", "UDP", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("kube-system/kube-dns:dns-tcp", "TCP", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("kube-system/kube-dns:metrics", "TCP", "KUBE-SVC-JD5MR3NA4I4DYORP"),
    ("default/nginx", "TCP", "KUBE-SVC-2CMXP7HKUVJN7L6M"),
])
def test_service_chain_names_match_kube_proxy(name, proto, want):
    assert service_chain(name, proto) == want


def test_endpoint_chain_name_matches_kube_proxy():
    assert endpoint_chain("default/nginx", "tcp", "10.244.2.2:80") == "KUBE-SEP-HUXRPHBUO34UVPEF"


def test_port_name_string():
    assert ServicePort("kube-system", "kube-dns", "10.96.0.10", 53, "UDP",
                       port_name="dns").port_name_string == "kube-system/kube-dns:dns"
    assert ServicePort("default", "nginx", "10.96.0.1", 80).port_name_string == "default/nginx"


def test_probabilities_make_a_uniform_choice():
    for n in range(1, 12):
        svc, eps = web(n)
        chain = service_chain(svc.port_name_string, "tcp")
        lines = rules(render([svc], eps, NODE), "nat", chain)
        assert len(lines) == n
        left, shares = Fraction(1), []
        for i, ln in enumerate(lines):
            m = re.search(r"--probability (\S+)", ln)
            if i < n - 1:
                assert m and m.group(1) == probability(n - i)
                p = Fraction(1, n - i)  # the exact value the 10-digit string stands for
            else:
                assert m is None  # the last one always matches
                p = Fraction(1)
            shares.append(left * p)
            left -= left * p
        assert shares == [Fraction(1, n)] * n
    assert [probability(k) for k in (4, 3, 2)] == ["0.2500000000", "0.3333333333",
                                                   "0.5000000000"]


def test_layout_of_one_service():
    svc, eps = web(2)
    text = render([svc], eps, NODE)
    sc = service_chain("default/web", "tcp")
    seps = [endpoint_chain("default/web", "tcp", f"10.244.{i}.5:8080") for i in (1, 2)]
    assert rules(text, "nat", "KUBE-SERVICES") == [
        ('-A KUBE-SERVICES -m comment --comment "default/web cluster IP" -m tcp -p tcp '
        '-d 10.96.0.10/32 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ'),
        ('-A KUBE-SERVICES -m comment --comment "default/web cluster IP" -m tcp -p tcp '
        f'-d 10.96.0.10/32 --dport 80 -j {sc}'),
        ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
        'be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'),
    ]
    assert rules(text, "nat", sc) == [
        (f"-A {sc} -m comment --comment default/web -m statistic --mode random --probability "
        f"0.5000000000 -j {seps[0]}"),
        f"-A {sc} -m comment --comment default/web -j {seps[1]}",
    ]
    assert rules(text, "nat", seps[0]) == [
        f"-A {seps[0]} -m comment --comment default/web -s 10.244.1.5/32 -j KUBE-MARK-MASQ",
        (f"-A {seps[0]} -m comment --comment default/web -m tcp -p tcp -j DNAT "
        "--to-destination 10.244.1.5:8080"),
    ]
    assert rules(text, "nat", "KUBE-NODEPORTS") == [
        ("-A KUBE-NODEPORTS -m comment --comment default/web -m tcp -p tcp --dport 30080 "
        "-j KUBE-MARK-MASQ"),
        f"-A KUBE-NODEPORTS -m comment --comment default/web -m tcp -p tcp --dport 30080 -j {sc}",
    ]
    assert rules(text, "nat", "KUBE-MARK-MASQ") == ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
    assert rules(text, "nat", "KUBE-POSTROUTING")[-1].endswith("-j MASQUERADE")
    assert rules(text, "filter", "KUBE-SERVICES") == []


def test_no_endpoints_rejects_and_has_no_chains():
    svc = ServicePort("ns", "down", "10.96.1.1", 443, port_name="https", node_port=31443,
                      external_ips=("192.0.2.10",))
    text = render([svc], {}, NODE)
    assert rules(text, "filter", "KUBE-SERVICES") == [
        ('-A KUBE-SERVICES -m comment --comment "ns/down:https has no endpoints" -m tcp -p tcp '
        '-d 10.96.1.1/32 --dport 443 -j REJECT')]
    ext = rules(text, "filter", "KUBE-EXTERNAL-SERVICES")
    assert len(ext) == 2 and "-d 192.0.2.10/32" in ext[0] and "--dport 31443" in ext[1]
    assert "KUBE-SVC-" not in text and "KUBE-SEP-" not in text


def test_masquerade_options_affinity_and_udp():
    svc, eps = web(2, affinity_seconds=10800)
    text = render([svc], eps, NodeConfig(masquerade_all=True, masquerade_bit=15,
                                         random_fully=True))
    assert '--dport 80 -j KUBE-MARK-MASQ' in text and "! -s" not in text
    assert "--mark 0x8000/0x8000" in text and "MASQUERADE --random-fully" in text
    sc = service_chain("default/web", "tcp")
    lines = rules(text, "nat", sc)
    assert [ln for ln in lines if "--rcheck --seconds 10800 --reap" in ln] == lines[:2]
    sep = endpoint_chain("default/web", "tcp", "10.244.1.5:8080")
    assert f"-m recent --name {sep} --set -m tcp -p tcp -j DNAT" in text
    dns = ServicePort("kube-system", "kube-dns", "10.96.0.10", 53, "UDP", port_name="dns")
    text = render([dns], {"kube-system/kube-dns:dns": [Endpoint("10.244.0.3", 53)]}, NODE)
    assert "-j KUBE-SVC-TCOU7JCQXEZGVUNU" in text and "-m udp -p udp" in text


def test_stale_chains_are_flushed_and_deleted():
    svc, eps = web(1)
    keep = [service_chain("default/web", "tcp"),
            endpoint_chain("default/web", "tcp", "10.244.1.5:8080")]
    gone = ["KUBE-SVC-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB"]
    text = render([svc], eps, NODE, existing_chains=keep + gone + ["KUBE-SERVICES", "DOCKER"])
    for c in gone:
        assert f":{c} - [0:0]" in text and f"-X {c}\n" in text
    for c in keep:
        assert f"-X {c}" not in text
    assert "DOCKER" not in text


def test_deterministic_and_comment_free_when_large():
    svcs, eps = [], {}
    for i in range(30):
        s = ServicePort("ns", f"s{i}", f"10.96.2.{i + 1}", 80)
        svcs.append(s)
        eps[s.port_name_string] = [Endpoint(f"10.244.{i}.{j + 1}", 80) for j in range(40)]
    a = render(svcs, eps, NODE)
    shuffled = svcs[:]
    random.Random(1).shuffle(shuffled)
    eps2 = {k: list(reversed(v)) for k, v in eps.items()}
    assert render(shuffled, eps2, NODE) == a
    sc = service_chain("ns/s0", "tcp")
    assert "comment" not in rules(a, "nat", sc)[0]  # 1200 endpoint chains > 1000
    assert "cluster IP" in rules(a, "nat", "KUBE-SERVICES")[0]


def test_nodeport_addresses():
    svc, eps = web(1)
    text = render([svc], eps, NodeConfig(node_port_addresses=("192.168.1.10/32",)))
    assert rules(text, "nat", "KUBE-SERVICES")[-1].endswith("-d 192.168.1.10/32 -j KUBE-NODEPORTS")


def test_every_jump_target_is_declared():
    svc, eps = web(3, affinity_seconds=60)
    other = ServicePort("ns", "none", "10.96.3.3", 80)
    text = render([svc, other], eps, NODE)
    builtin = {"ACCEPT", "DROP", "RETURN", "REJECT", "DNAT", "MARK", "MASQUERADE"}
    for table in ("filter", "nat"):
        body = text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]
        declared = set(re.findall(r"^:(\S+) ", body, re.MULTILINE))
        for target in re.findall(r" -j (\S+)", body):
            assert target in declared | builtin, (table, target)
    assert {(t, c) for t, c, _ in jump_rules()} >= {("nat", "PREROUTING"), ("nat", "OUTPUT"),
                                                     ("nat", "POSTROUTING")}


@pytest.mark.skipif(shutil.which("iptables-restore") is None or os.geteuid() != 0,
                    reason="needs iptables-restore and root")
def test_iptables_restore_accepts_it():
    svc, eps = web(4, affinity_seconds=300, external_ips=("192.0.2.7",))
    dns = ServicePort("kube-system", "kube-dns", "10.96.0.10", 53, "UDP", port_name="dns")
    text = render([svc, dns, ServicePort("a", "b", "10.96.9.9", 9)],
                  {**eps, "kube-system/kube-dns:dns": [Endpoint("10.244.0.3", 53)]},
                  NodeConfig(cluster_cidr="10.244.0.0/16", random_fully=True),
                  existing_chains=["KUBE-SEP-ZZZZZZZZZZZZZZZZ"])
    r = subprocess.run(["iptables-restore", "--test", "--noflush"], input=text, text=True, check=False,
                       capture_output=True)
    if r.returncode != 0 and ("Permission denied" in r.stderr or "not supported" in r.stderr
                              or "Could not fetch" in r.stderr):
        pytest.skip(f"iptables unusable here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
