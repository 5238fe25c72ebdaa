"""`kcore certs`: the certificates of a multi-host cluster, in one directory.

    kcore certs --dir /etc/kcore/pki --etcd-members etcd1=10.0.0.11,etcd2=10.0.0.12 \
        --apiserver-hosts 10.0.0.10,master.example --nodes node1=10.0.0.21,node2=10.0.0.22

Creates (or keeps, when already there and still valid for the CA) ca.crt/key;
per etcd member etcd-<name>-server and etcd-<name>-peer (server+client usage,
SANs the member's address, its name and localhost); apiserver (serving, with
the kubernetes service names and the first service IP); apiserver-etcd-client;
admin (O=system:masters); kube-controller-manager, kube-scheduler, kube-proxy
clients; per node kubelet-<node> (server) and kubelet-<node>-client
(CN=system:node:<node>, O=system:nodes); and the service-account signing key.
"""
from __future__ import annotations

import ipaddress
import os
import sys

from kcore import pki
from kcore.cli.flags import FlagSet, run_flags


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, addr = it.partition("=")
        if not sep:
            raise ValueError(f"--{what}: expected name=address, got {it!r}")
        out[name] = addr
    return out


def first_service_ip(cidr: str) -> str:
    return str(next(ipaddress.ip_network(cidr, strict=False).hosts()))


def generate(d: str, etcd: dict[str, str], apiserver_hosts: list[str], nodes: dict[str, str],
             service_cidr: str = "10.0.0.0/24") -> list[str]:
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    written: list[str] = []
    if os.path.exists(p("ca.crt")) and os.path.exists(p("ca.key")):
        ca = pki.KeyPair.load(p("ca.crt"), p("ca.key"))
    else:
        ca = pki.make_ca("kcore-ca")
        ca.write(p("ca.crt"), p("ca.key"))
        written.append("ca")

    def leaf(name: str, cn: str, **kw) -> None:
        """Keep a pair that chains to the CA, has a month left and covers the hosts."""
        crt, key = p(f"{name}.crt"), p(f"{name}.key")
        if os.path.exists(crt) and os.path.exists(key):
            kp = pki.KeyPair.load(crt, key)
            if pki.cert_valid_for(kp.cert, ca.cert, min_days=30) and \
                    pki.cert_names(kp.cert) >= set(kw.get("hosts", ())):
                return
        pki.make_cert(ca, cn, **kw).write(crt, key)
        written.append(name)

    for name, addr in etcd.items():
        hosts = (addr, name, "localhost", "127.0.0.1")
        leaf(f"etcd-{name}-server", name, hosts=hosts, server=True, client=True)
        leaf(f"etcd-{name}-peer", name, hosts=hosts, server=True, client=True)
    svc = first_service_ip(service_cidr)
    leaf("apiserver", "kube-apiserver", server=True,
         hosts=tuple(apiserver_hosts) + (svc, "localhost", "127.0.0.1", "kubernetes",
                                          "kubernetes.default", "kubernetes.default.svc",
                                          "kubernetes.default.svc.cluster.local"))
    leaf("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True)
    leaf("admin", "admin", orgs=("system:masters",), client=True)
    leaf("kube-controller-manager", "system:kube-controller-manager", client=True)
    leaf("kube-scheduler", "system:kube-scheduler", client=True)
    leaf("kube-proxy", "system:kube-proxy", orgs=("system:node-proxier",), client=True)
    for node, addr in nodes.items():
        leaf(f"kubelet-{node}", node, hosts=(addr, node), server=True)
        leaf(f"kubelet-{node}-client", f"system:node:{node}", orgs=("system:nodes",),
             client=True)
    sa = p("sa.key")
    if not os.path.exists(sa):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fd = os.open(sa, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(k.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()))
        with open(p("sa.pub"), "wb") as fh:
            fh.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
        written.append("sa")
    return written


def run(argv: list[str]) -> int:
    fs = FlagSet("kcore certs", "Create the cluster's CA and certificates.")
    fs.add("dir", "str", "/etc/kcore/pki", "output directory")
    fs.add("etcd-members", "list", [], "name=address of each etcd member")
    fs.add("apiserver-hosts", "list", [], "addresses and names of the API server")
    fs.add("nodes", "list", [], "name=address of each node")
    fs.add("service-cluster-ip-range", "str", "10.0.0.0/24", "the Service CIDR")
    o, args = run_flags(fs, argv)
    if args:
        print(f"kcore certs: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    try:
        written = generate(o.dir, _pairs(o.etcd_members, "etcd-members"), o.apiserver_hosts,
                           _pairs(o.nodes, "nodes"), o.service_cluster_ip_range)
    except ValueError as e:
        print(f"kcore certs: {e}", file=sys.stderr)
        return 2
    print(f"{o.dir}: " + (f"created {', '.join(written)}" if written else "all present"))
    return 0
