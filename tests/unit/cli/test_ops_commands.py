"""kcore systemd and kcore certs: the units' command lines are accepted by the
components they start (every flag parses), and the certificates chain to the CA
with the names and usages a multi-host install needs."""
from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kcore import pki
from kcore.cli.certs import generate


def kcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kcore.cli.main", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("role,extra", [
    ("etcd", ["--name=etcd1", "--address=10.0.0.11",
              "--initial-cluster=etcd1=https://10.0.0.11:2380,etcd2=https://10.0.0.12:2380"]),
    ("master", ["--etcd-servers=https://10.0.0.11:2379"]),
    ("node", ["--node-name=node1", "--master=https://10.0.0.10:6443"]),
])
def test_units_start_components_with_flags_they_accept(tmp_path, role, extra):
    pki_dir = tmp_path / "pki"
    generate(str(pki_dir), etcd={"etcd1": "10.0.0.11"}, apiserver_hosts=["10.0.0.10"],
             nodes={"node1": "10.0.0.21"})
    out = tmp_path / "units"
    p = kcore("systemd", f"--role={role}", f"--out={out}", f"--pki-dir={pki_dir}",
              "--kcore-bin=kcore", *extra)
    assert p.returncode == 0, p.stderr
    units = sorted(os.listdir(out))
    expected = {"etcd": ["etcd.service"],
                "master": ["kube-apiserver.service", "kube-controller-manager.service",
                           "kube-scheduler.service"],
                "node": ["kube-proxy.service", "kubelet.service"]}[role]
    assert units == expected
    for name in units:
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.read(out / name)
        svc = cp["Service"]
        assert svc["Restart"] == "on-failure" and svc["RestartSec"] == "5"
        assert svc["LimitNOFILE"] == "65536"
        if name == "etcd.service":
            assert svc["Type"] == "notify"
        argv = shlex.split(svc["ExecStart"].replace("\\\n", " "))
        assert argv[0] == "kcore"
        # every flag in the unit parses: `--help` after them only runs if they do
        p = kcore(*argv[1:], "--help")
        assert p.returncode == 0, f"{name}: {p.stderr}"


def test_certs_chain_with_names_and_usages(tmp_path):
    d = tmp_path / "pki"
    p = kcore("certs", f"--dir={d}", "--etcd-members=e1=10.0.0.11",
              "--apiserver-hosts=10.0.0.10,master.example", "--nodes=n1=10.0.0.21")
    assert p.returncode == 0, p.stderr
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())

    def cert(name):
        c = x509.load_pem_x509_certificate((d / f"{name}.crt").read_bytes())
        assert c.issuer == ca.subject
        ca.public_key().verify(c.signature, c.tbs_certificate_bytes,
                               __import__("cryptography.hazmat.primitives.asymmetric.ec",
                                          fromlist=["ECDSA"]).ECDSA(c.signature_hash_algorithm))
        return c

    def sans(c):
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | \
            {str(v) for v in ext.get_values_for_type(x509.IPAddress)}

    api = cert("apiserver")
    assert {"10.0.0.10", "master.example", "10.0.0.1", "kubernetes.default.svc"} <= sans(api)
    assert {"10.0.0.11", "e1"} <= sans(cert("etcd-e1-peer"))
    eku = cert("etcd-e1-peer").extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert pki.subject_user(cert("admin")) == (
        "admin", ["system:masters"])
    assert pki.subject_user(cert("kubelet-n1-client")) == ("system:node:n1", ["system:nodes"])
    before = (d / "ca.crt").read_bytes()
    assert kcore("certs", f"--dir={d}").returncode == 0
    assert (d / "ca.crt").read_bytes() == before, "a second run keeps the CA"


def test_down_cleans_up_the_proxy_mode_up_started():
    from kcore.cli.supervise import Component
    from kcore.cli.up import proxy_cleanup_argv
    k = [sys.executable, "-m", "kcore.cli.main"]
    c = Component("proxy", k + ["proxy", "--master=http://127.0.0.1:8080",
                                "--proxy-mode=iptables", "--healthz-port=10256"])
    assert proxy_cleanup_argv(c) == k + ["proxy", "--cleanup", "--proxy-mode=iptables"]
    assert proxy_cleanup_argv(Component("proxy", k + ["proxy", "--proxy-mode=none"])) is None
    assert proxy_cleanup_argv(Component("kubelet", k + ["kubelet", "--port=0"])) is None
