"""`kcore up`, `kcore status`, `kcore down`: the whole cluster on one machine.

    kcore up [--data-dir ./kcore-data] [--hollow-nodes N] [--proxy-mode auto]
    export KUBECONFIG=./kcore-data/admin.kubeconfig
    kcore status
    kcore down

`up` starts, as background processes supervised through
`<data-dir>/run/state.json` (logs in `<data-dir>/logs/`): the API server with
its embedded store (HTTP on 127.0.0.1:8080, HTTPS on :6443 with certificates
it creates on first start under `<data-dir>/pki`, RBAC; the store's etcd v3
API on 127.0.0.1:2379 for etcdctl and backups), the controller manager, the
scheduler, one real kubelet for this machine (process runtime), optionally a
process of N hollow nodes, and the proxy in the best mode this node allows
(ipvs, then iptables, then userspace; the choice is logged). It waits until
every component is healthy, prints a status table and the `export KUBECONFIG`
line, and returns. A second `up` on the same data dir resumes the cluster
with its objects; `down` stops every component cleanly (SIGTERM, then SIGKILL
after a timeout), losing nothing that was acknowledged.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sys

from kcore.cli.flags import FlagSet, run_flags
from kcore.cli.supervise import Component, Supervisor, print_table


def _flags(prog: str) -> FlagSet:
    fs = FlagSet(prog, "The whole cluster on this machine.")
    a = fs.add
    a("data-dir", "str", os.environ.get("KCORE_DATA_DIR", "./kcore-data"), "cluster state")
    return fs


def up_flags() -> FlagSet:
    fs = _flags("kcore up")
    a = fs.add
    a("insecure-port", "int", 8080, "API server HTTP port on 127.0.0.1")
    a("secure-port", "int", 6443, "API server HTTPS port")
    a("bind-address", "str", "0.0.0.0", "API server HTTPS address")
    a("etcd-port", "int", 2379, "the store's etcd v3 API on 127.0.0.1 (-1: off)")
    a("controller-manager-port", "int", 10252, "controller manager /healthz port")
    a("scheduler-port", "int", 10251, "scheduler /healthz port")
    a("kubelet-port", "int", 10250, "kubelet port")
    a("proxy-healthz-port", "int", 10256, "proxy /healthz port")
    a("node-name", "str", socket.gethostname().lower(), "this machine's node name")
    a("hollow-nodes", "int", 0, "also run N simulated nodes in one process")
    a("proxy-mode", "str", "auto", "auto (ipvs, iptables, userspace), one of those, or none")
    a("kubelet-runtime", "str", "process", "process (real processes) or fake")
    a("pod-network", "str", "none", "none (host network) or netns (root)")
    a("service-cluster-ip-range", "str", "10.0.0.0/24", "the Service CIDR")
    a("cluster-cidr", "str", "10.244.0.0/16", "the pod CIDR")
    a("authorization-mode", "list", ["RBAC"], "API server authorization on the secure port")
    a("timeout", "duration", 90.0, "how long to wait for every component to be healthy")
    a("foreground", "bool", False, "stay attached and stop everything on Ctrl-C")
    return fs


def _kcore() -> list[str]:
    return [sys.executable, "-m", "kcore.cli.main"]


def ensure_pki(data_dir: str, node: str, service_cidr: str) -> tuple[str, str]:
    """CA, serving, admin, component certificates and the service-account key under
    <data-dir>/pki (created once, reused), and <data-dir>/admin.kubeconfig's inputs."""
    from kcore.cli.certs import generate

    d = os.path.join(data_dir, "pki")
    hosts = sorted({"localhost", "127.0.0.1", socket.gethostname(), node})
    generate(d, etcd={}, apiserver_hosts=hosts, nodes={node: "127.0.0.1"},
             service_cidr=service_cidr)
    return d, os.path.join(data_dir, "admin.kubeconfig")


def write_kubeconfig(pki_dir: str, path: str, server: str) -> None:
    from kcore import pki

    def rd(n: str) -> bytes:
        with open(os.path.join(pki_dir, n), "rb") as fh:
            return fh.read()
    pki.write_pem(path, pki.kubeconfig(server, rd("ca.crt"), rd("admin.crt"),
                                       rd("admin.key")).encode(), private=True)


def choose_proxy_mode(wanted: str) -> str:
    """The best mode this node allows, as kube-proxy falls back: ipvs, iptables, userspace."""
    if wanted != "auto":
        return wanted
    try:
        from kcore.proxy import modes
        return modes.best_mode()
    except ImportError:
        pass
    if os.geteuid() == 0 and os.path.exists("/usr/sbin/iptables-restore"):
        return "iptables"
    return "userspace"


def components(o, pki_dir: str) -> list[Component]:
    d = os.path.abspath(o.data_dir)
    master = f"http://127.0.0.1:{o.insecure_port}"
    k = _kcore()
    api = k + ["apiserver", f"--data-dir={d}/apiserver",
               "--insecure-bind-address=127.0.0.1", f"--insecure-port={o.insecure_port}",
               f"--secure-port={o.secure_port}", f"--bind-address={o.bind_address}",
               f"--cert-dir={pki_dir}", f"--tls-cert-file={pki_dir}/apiserver.crt",
               f"--tls-private-key-file={pki_dir}/apiserver.key",
               f"--client-ca-file={pki_dir}/ca.crt", "--enable-bootstrap-token-auth",
               f"--service-account-key-file={pki_dir}/sa.key",
               f"--service-account-signing-key-file={pki_dir}/sa.key",
               f"--authorization-mode={','.join(o.authorization_mode)}",
               f"--service-cluster-ip-range={o.service_cluster_ip_range}"]
    addr = f"127.0.0.1:{o.insecure_port}, :{o.secure_port}"
    if o.etcd_port >= 0:
        api.append(f"--listen-client-urls=http://127.0.0.1:{o.etcd_port}")
        addr += f", etcd 127.0.0.1:{o.etcd_port}"
    out = [Component("apiserver", api, addr, f"{master}/readyz")]
    out.append(Component("controller-manager", k + [
        "controller-manager", f"--master={master}", "--leader-elect=true",
        f"--cluster-cidr={o.cluster_cidr}", "--allocate-node-cidrs=true",
        f"--service-cluster-ip-range={o.service_cluster_ip_range}",
        f"--service-account-private-key-file={pki_dir}/sa.key",
        f"--root-ca-file={pki_dir}/ca.crt", f"--port={o.controller_manager_port}",
        f"--cluster-signing-cert-file={pki_dir}/ca.crt",
        f"--cluster-signing-key-file={pki_dir}/ca.key"],
        f"127.0.0.1:{o.controller_manager_port}",
        f"http://127.0.0.1:{o.controller_manager_port}/healthz"))
    out.append(Component("scheduler", k + [
        "scheduler", f"--master={master}", "--leader-elect=true",
        f"--port={o.scheduler_port}"], f"127.0.0.1:{o.scheduler_port}",
        f"http://127.0.0.1:{o.scheduler_port}/healthz"))
    out.append(Component("kubelet", k + [
        "kubelet", f"--master={master}", f"--node-name={o.node_name}",
        f"--root-dir={d}/kubelet", f"--port={o.kubelet_port}",
        f"--runtime={o.kubelet_runtime}", f"--pod-network={o.pod_network}"],
        f"127.0.0.1:{o.kubelet_port}", f"http://127.0.0.1:{o.kubelet_port}/healthz"))
    if o.hollow_nodes > 0:
        out.append(Component("hollow-nodes", k + [
            "kubelet", f"--master={master}", f"--hollow-nodes={o.hollow_nodes}",
            f"--root-dir={d}/hollow", "--port=0"], f"{o.hollow_nodes} nodes", ""))
    mode = choose_proxy_mode(o.proxy_mode)
    if mode != "none" and _has_command("proxy"):
        out.append(Component("proxy", k + [
            "proxy", f"--master={master}", f"--proxy-mode={mode}",
            f"--cluster-cidr={o.cluster_cidr}", f"--hostname-override={o.node_name}",
            f"--healthz-port={o.proxy_healthz_port}"],
            f"{mode} mode, 127.0.0.1:{o.proxy_healthz_port}",
            f"http://127.0.0.1:{o.proxy_healthz_port}/healthz"))
    return out


def _wait_nodes(port: int, want: int, timeout: float) -> int:
    """Show the nodes registering (hollow nodes take a while at thousands)."""
    import json
    import time
    import urllib.request

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    n = 0
    with Progress(TextColumn("nodes registered"), BarColumn(), TextColumn("{task.completed:,}/"
                  "{task.total:,}"), TimeElapsedColumn(), transient=False) as bar:
        t = bar.add_task("nodes", total=want)
        deadline = time.monotonic() + timeout
        while n < want and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/api/v1/nodes", timeout=10) as r:
                    n = len(json.load(r).get("items", []))
            except OSError:
                pass
            bar.update(t, completed=n)
            if n < want:
                time.sleep(1.0)
    return n


def _has_command(name: str) -> bool:
    from kcore.cli.main import SUBCOMMANDS
    return name in SUBCOMMANDS


def run(argv: list[str]) -> int:
    o, args = run_flags(up_flags(), argv)
    if args:
        print(f"kcore up: unexpected argument {args[0]!r}", file=sys.stderr)
        return 2
    try:
        ipaddress.ip_network(o.service_cluster_ip_range, strict=False)
        ipaddress.ip_network(o.cluster_cidr, strict=False)
    except ValueError as e:
        print(f"kcore up: {e}", file=sys.stderr)
        return 2
    os.makedirs(o.data_dir, exist_ok=True)
    pki_dir, kc = ensure_pki(o.data_dir, o.node_name, o.service_cluster_ip_range)
    host = "127.0.0.1" if o.bind_address in ("0.0.0.0", "::", "") else o.bind_address
    if o.secure_port > 0:
        write_kubeconfig(pki_dir, kc, f"https://{host}:{o.secure_port}")
    sup = Supervisor(o.data_dir)
    comps = components(o, pki_dir)
    # the API server first (everything else talks to it), then the rest together
    sup.start(comps[0])
    bad = sup.wait_healthy([comps[0].name], o.timeout)
    if not bad:
        for c in comps[1:]:
            sup.start(c)
        bad = sup.wait_healthy([c.name for c in comps], o.timeout)
    if not bad and o.hollow_nodes > 0:
        _wait_nodes(o.insecure_port, o.hollow_nodes + 1, o.timeout * 4)
    print_table(sup.rows())
    if bad:
        for n in bad:
            print(f"\n{n} is not healthy; the end of {sup.log_dir}/{n}.log:\n"
                  f"{sup.log_tail(n)}", file=sys.stderr)
        if not o.foreground:
            return 1
    if o.secure_port > 0:
        print(f"export KUBECONFIG={os.path.abspath(kc)}")
    else:
        print(f"kubectl --server=http://127.0.0.1:{o.insecure_port} get nodes")
    if not o.foreground:
        return 0
    import signal
    import time
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.5)
    sup.stop()
    return 0


def run_status(argv: list[str]) -> int:
    o, _ = run_flags(_flags("kcore status"), argv)
    sup = Supervisor(o.data_dir)
    if not sup.components:
        print(f"no cluster in {o.data_dir} (run `kcore up`)")
        return 1
    rows = sup.rows()
    print_table(rows)
    return 0 if all(r[3] == "yes" for r in rows) else 1


def proxy_cleanup_argv(c: Component) -> list[str] | None:
    """`kcore proxy --cleanup` for the mode a proxy component ran in (None: nothing)."""
    if "proxy" not in c.argv:
        return None
    mode = next((a.split("=", 1)[1] for a in c.argv if a.startswith("--proxy-mode=")), "")
    if mode in ("", "none"):
        return None
    return c.argv[:c.argv.index("proxy") + 1] + ["--cleanup", f"--proxy-mode={mode}"]


def run_down(argv: list[str]) -> int:
    import subprocess
    fs = _flags("kcore down")
    fs.add("timeout", "duration", 30.0, "SIGKILL components still running after this")
    fs.add("cleanup-proxy", "bool", True, "remove the Service rules the proxy programmed "
           "(kube-proxy --cleanup); =false keeps them")
    o, _ = run_flags(fs, argv)
    sup = Supervisor(o.data_dir)
    if not sup.components:
        print(f"no cluster in {o.data_dir}")
        return 0
    killed = sup.stop(o.timeout)
    for n in killed:
        print(f"{n} did not stop within {o.timeout:g}s and was killed")
    print_table(sup.rows())
    proxy = sup.components.get("proxy")
    cmd = proxy_cleanup_argv(proxy) if proxy is not None and o.cleanup_proxy else None
    if cmd is not None:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           env={**os.environ, **proxy.env})
        if r.returncode == 0:
            print("proxy rules removed")
        else:
            print(f"proxy rules not removed: {(r.stderr or r.stdout).strip()[-300:]}",
                  file=sys.stderr)
            return 1
    return 0
