"""`kcore systemd --role etcd|master|node`: systemd units for a multi-host install,
named and flagged like the classic master/node install they replace.

    kcore systemd --role etcd --name etcd1 --address 10.0.0.11 \
        --initial-cluster etcd1=https://10.0.0.11:2380,etcd2=...,etcd3=... --out /etc/systemd/system
    kcore systemd --role master --etcd-servers https://10.0.0.11:2379,... --out ...
    kcore systemd --role node --node-name node1 --address 10.0.0.21 --master https://10.0.0.10:6443

Every unit: Restart=on-failure, RestartSec=5, LimitNOFILE=65536; the store is
Type=notify (kcore etcd tells systemd when it serves). With --pki-dir (as made
by `kcore certs`) TLS flags point into it.
"""
from __future__ import annotations

import os
import shutil
import sys

from kcore.cli.flags import FlagSet, run_flags

UNIT = """[Unit]
Description={description}
Documentation=https://github.com/kcore/kcore/tree/main/docs
After={after}
{wants}
[Service]
Type={type}
{workdir}ExecStart={exec}
Restart=on-failure
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def _exec(binary: str, sub: str, flags: list[str]) -> str:
    return " \\\n  ".join([f"{binary} {sub}"] + flags)


def units(o) -> dict[str, str]:
    kb = o.kcore_bin
    pki = o.pki_dir.rstrip("/")
    out: dict[str, str] = {}
    if o.role == "etcd":
        scheme = "https" if pki else "http"
        flags = [f"--name={o.name}", f"--data-dir={o.data_dir or '/var/lib/etcd'}",
                 f"--listen-client-urls={scheme}://{o.address}:2379,http://127.0.0.1:2379",
                 f"--advertise-client-urls={scheme}://{o.address}:2379",
                 f"--listen-peer-urls={scheme}://{o.address}:2380",
                 f"--initial-advertise-peer-urls={scheme}://{o.address}:2380",
                 f"--initial-cluster={o.initial_cluster or f'{o.name}={scheme}://{o.address}:2380'}",
                 f"--initial-cluster-token={o.initial_cluster_token}",
                 "--initial-cluster-state=new"]
        if pki:
            flags += [f"--cert-file={pki}/etcd-{o.name}-server.crt",
                      f"--key-file={pki}/etcd-{o.name}-server.key",
                      f"--trusted-ca-file={pki}/ca.crt", "--client-cert-auth=true",
                      f"--peer-cert-file={pki}/etcd-{o.name}-peer.crt",
                      f"--peer-key-file={pki}/etcd-{o.name}-peer.key",
                      f"--peer-trusted-ca-file={pki}/ca.crt", "--peer-client-cert-auth=true"]
        out["etcd.service"] = UNIT.format(
            description="etcd-compatible key-value store (kcore etcd)",
            after="network-online.target", wants="Wants=network-online.target\n",
            type="notify", workdir=f"WorkingDirectory={o.data_dir or '/var/lib/etcd'}\n",
            exec=_exec(kb, "etcd", flags))
    elif o.role == "master":
        api = ["--insecure-bind-address=127.0.0.1", "--insecure-port=8080",
               f"--etcd-servers={o.etcd_servers}",
               f"--service-cluster-ip-range={o.service_cluster_ip_range}",
               "--bind-address=0.0.0.0", "--secure-port=6443",
               f"--data-dir={o.data_dir or '/var/lib/kcore'}",
               "--allow-privileged=false"]
        if pki:
            api += [f"--etcd-cafile={pki}/ca.crt", f"--etcd-certfile={pki}/apiserver-etcd-client.crt",
                    f"--etcd-keyfile={pki}/apiserver-etcd-client.key",
                    f"--tls-cert-file={pki}/apiserver.crt",
                    f"--tls-private-key-file={pki}/apiserver.key",
                    f"--client-ca-file={pki}/ca.crt",
                    f"--service-account-key-file={pki}/sa.key",
                    "--authorization-mode=Node,RBAC"]
        out["kube-apiserver.service"] = UNIT.format(
            description="Kubernetes API Server (kcore apiserver)",
            after="network.target etcd.service", wants="", type="simple", workdir="",
            exec=_exec(kb, "apiserver", api))
        cm = ["--master=http://127.0.0.1:8080", "--leader-elect=true",
              f"--cluster-cidr={o.cluster_cidr}", "--allocate-node-cidrs=true",
              f"--service-cluster-ip-range={o.service_cluster_ip_range}"]
        out["kube-controller-manager.service"] = UNIT.format(
            description="Kubernetes Controller Manager (kcore controller-manager)",
            after="kube-apiserver.service", wants="", type="simple", workdir="",
            exec=_exec(kb, "controller-manager", cm))
        out["kube-scheduler.service"] = UNIT.format(
            description="Kubernetes Scheduler (kcore scheduler)",
            after="kube-apiserver.service", wants="", type="simple", workdir="",
            exec=_exec(kb, "scheduler", ["--master=http://127.0.0.1:8080",
                                         "--leader-elect=true"]))
    elif o.role == "node":
        kubelet = [f"--node-name={o.node_name}", "--root-dir=/var/lib/kubelet", "--port=10250"]
        kubelet += ([f"--kubeconfig={o.kubeconfig}"] if o.kubeconfig else [f"--master={o.master}"])
        out["kubelet.service"] = UNIT.format(
            description="Kubernetes Node Agent (kcore kubelet)", after="network-online.target",
            wants="Wants=network-online.target\n", type="simple",
            workdir="WorkingDirectory=/var/lib/kubelet\n", exec=_exec(kb, "kubelet", kubelet))
        proxy = [f"--proxy-mode={o.proxy_mode}", f"--cluster-cidr={o.cluster_cidr}",
                 f"--hostname-override={o.node_name}"]
        proxy += ([f"--kubeconfig={o.kubeconfig}"] if o.kubeconfig else [f"--master={o.master}"])
        out["kube-proxy.service"] = UNIT.format(
            description="Kubernetes Network Proxy (kcore proxy)", after="network.target",
            wants="", type="simple", workdir="", exec=_exec(kb, "proxy", proxy))
    return out


def run(argv: list[str]) -> int:
    fs = FlagSet("kcore systemd", "Write systemd units for one role of a multi-host install.")
    fs.add("role", "str", "", "etcd, master or node")
    fs.add("out", "str", "/etc/systemd/system", "directory for the units ('-' = print)")
    fs.add("kcore-bin", "str", shutil.which("kcore") or "/usr/local/bin/kcore", "kcore binary")
    fs.add("pki-dir", "str", "", "certificates from `kcore certs` (enables TLS flags)")
    fs.add("name", "str", "etcd1", "etcd member name")
    fs.add("address", "str", "127.0.0.1", "this host's address")
    fs.add("initial-cluster", "str", "", "etcd --initial-cluster")
    fs.add("initial-cluster-token", "str", "etcd-cluster", "etcd --initial-cluster-token")
    fs.add("data-dir", "str", "", "data directory")
    fs.add("etcd-servers", "str", "http://127.0.0.1:2379", "store endpoints for the master")
    fs.add("service-cluster-ip-range", "str", "10.0.0.0/24", "the Service CIDR")
    fs.add("cluster-cidr", "str", "10.244.0.0/16", "the pod CIDR")
    fs.add("node-name", "str", "", "node name")
    fs.add("master", "str", "http://127.0.0.1:8080", "API server URL for node components")
    fs.add("kubeconfig", "str", "", "kubeconfig for node components (instead of --master)")
    fs.add("proxy-mode", "str", "iptables", "kcore proxy mode")
    o, args = run_flags(fs, argv)
    if o.role not in ("etcd", "master", "node") or args:
        print("kcore systemd: --role must be etcd, master or node", file=sys.stderr)
        return 2
    if o.role == "node" and not o.node_name:
        print("kcore systemd: --role node needs --node-name", file=sys.stderr)
        return 2
    for name, text in units(o).items():
        if o.out == "-":
            print(f"# {name}\n{text}")
            continue
        os.makedirs(o.out, exist_ok=True)
        path = os.path.join(o.out, name)
        with open(path, "w") as fh:
            fh.write(text)
        print(f"wrote {path}")
    return 0
