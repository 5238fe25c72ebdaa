"""A multi-host install, for real: three test hosts as network namespaces on a
bridge (made by the test). Each runs a store member (client and peer TLS with
client-certificate auth, certificates from `kcore certs`), a kubelet and a proxy
(iptables mode, in its own namespace); host 0 also runs the API server (secure
port with client certificates for the node components), the controller manager
and the scheduler. A Service is reached from every host; then every process of
host 2 is killed and the cluster repairs itself: the node goes NotReady, its
pods come back on the other hosts, the Service still answers and the store
still takes writes with two members of three. Needs root, iproute2, iptables."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import netns
import pytest
from store_harness import wait_until

from kcore import pki
from kcore.cli.certs import generate

pytestmark = pytest.mark.skipif(not netns.available() or not os.path.exists(
    "/usr/sbin/iptables-restore"), reason="needs root, ip netns and iptables")

KCORE = [sys.executable, "-m", "kcore.cli.main"]


class Proc:
    def __init__(self, argv: list[str], log: str):
        self.log_path = log
        with open(log, "ab") as fh:
            self.p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill9(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(8)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def in_ns(hosts: netns.Hosts, i: int, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([*hosts.exec_prefix(i), *cmd], capture_output=True, text=True,
                          timeout=timeout)


SERVER = """
import http.server, socket, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get('NODE', socket.gethostname()).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()
"""


def test_three_hosts_tls_service_and_self_repair(tmpdir_path):
    hosts = netns.Hosts(3)
    procs: dict[str, Proc] = {}
    try:
        hosts.route("10.0.0.0/24")   # the Service CIDR, as a node's routes cover it
        ips = hosts.ips
        d = tmpdir_path
        pki_dir = os.path.join(d, "pki")
        generate(pki_dir, etcd={f"m{i}": ips[i] for i in range(3)},
                 apiserver_hosts=[ips[0]], nodes={f"host{i}": ips[i] for i in range(3)})

        def kubeconfig(name: str, cert: str) -> str:
            path = os.path.join(d, f"{name}.kubeconfig")
            rd = lambda n: open(os.path.join(pki_dir, n), "rb").read()  # noqa: E731
            with open(path, "w") as fh:
                fh.write(pki.kubeconfig(f"https://{ips[0]}:6443", rd("ca.crt"),
                                        rd(f"{cert}.crt"), rd(f"{cert}.key"), user=name))
            return path

        # --- the store: 3 members, client and peer TLS, client-certificate auth
        ic = ",".join(f"m{i}=https://{ips[i]}:2380" for i in range(3))
        for i in range(3):
            procs[f"etcd{i}"] = Proc([*hosts.exec_prefix(i), *KCORE, "etcd", "--name", f"m{i}",
                "--data-dir", f"{d}/etcd{i}",
                "--listen-client-urls", f"https://{ips[i]}:2379",
                "--advertise-client-urls", f"https://{ips[i]}:2379",
                "--listen-peer-urls", f"https://{ips[i]}:2380",
                "--initial-advertise-peer-urls", f"https://{ips[i]}:2380",
                "--initial-cluster", ic,
                f"--cert-file={pki_dir}/etcd-m{i}-server.crt",
                f"--key-file={pki_dir}/etcd-m{i}-server.key",
                f"--trusted-ca-file={pki_dir}/ca.crt", "--client-cert-auth=true",
                f"--peer-cert-file={pki_dir}/etcd-m{i}-peer.crt",
                f"--peer-key-file={pki_dir}/etcd-m{i}-peer.key",
                f"--peer-trusted-ca-file={pki_dir}/ca.crt", "--peer-client-cert-auth=true"],
                f"{d}/etcd{i}.log")

        # --- host 0: the API server over the TLS store, controller manager, scheduler
        etcd_servers = ",".join(f"https://{ip}:2379" for ip in ips)
        procs["apiserver"] = Proc([*hosts.exec_prefix(0), *KCORE, "apiserver",
            "--insecure-bind-address=127.0.0.1", "--insecure-port=8080",
            f"--bind-address={ips[0]}", "--secure-port=6443",
            f"--data-dir={d}/apiserver", f"--etcd-servers={etcd_servers}",
            f"--etcd-cafile={pki_dir}/ca.crt",
            f"--etcd-certfile={pki_dir}/apiserver-etcd-client.crt",
            f"--etcd-keyfile={pki_dir}/apiserver-etcd-client.key",
            f"--tls-cert-file={pki_dir}/apiserver.crt",
            f"--tls-private-key-file={pki_dir}/apiserver.key",
            f"--client-ca-file={pki_dir}/ca.crt", "--authorization-mode=AlwaysAllow",
            "--anonymous-auth=false", f"--service-account-key-file={pki_dir}/sa.key",
            "--service-cluster-ip-range=10.0.0.0/24"], f"{d}/apiserver.log")
        admin = kubeconfig("admin", "admin")

        def kubectl(*args: str) -> subprocess.CompletedProcess:
            return in_ns(hosts, 0, "kubectl", f"--kubeconfig={admin}",
                         f"--cache-dir={d}/kc", *args, timeout=30)
        wait_until(lambda: kubectl("get", "ns").returncode == 0, 60, "the API server over TLS")
        procs["cm"] = Proc([*hosts.exec_prefix(0), *KCORE, "controller-manager",
            "--master=http://127.0.0.1:8080", "--leader-elect=true",
            "--node-monitor-period=1s", "--node-monitor-grace-period=5s",
            "--cluster-cidr=10.244.0.0/16", "--allocate-node-cidrs=true",
            "--service-cluster-ip-range=10.0.0.0/24", "--port=10252"], f"{d}/cm.log")
        procs["sched"] = Proc([*hosts.exec_prefix(0), *KCORE, "scheduler",
            "--master=http://127.0.0.1:8080", "--leader-elect=true", "--port=10251"],
            f"{d}/sched.log")

        # --- every host: a kubelet and a proxy, talking TLS to the API server
        for i in range(3):
            kc = kubeconfig(f"host{i}", f"kubelet-host{i}-client")
            procs[f"kubelet{i}"] = Proc([*hosts.exec_prefix(i), *KCORE, "kubelet",
                f"--kubeconfig={kc}", f"--node-name=host{i}", f"--node-ip={ips[i]}",
                f"--root-dir={d}/kubelet{i}", "--port=10250", "--runtime=process",
                "--node-status-update-frequency=1s", "--node-lease-renew-interval=1s"],
                f"{d}/kubelet{i}.log")
            procs[f"proxy{i}"] = Proc([*hosts.exec_prefix(i), *KCORE, "proxy",
                f"--kubeconfig={kubeconfig('kube-proxy', 'kube-proxy')}",
                "--proxy-mode=iptables", f"--hostname-override=host{i}",
                "--cluster-cidr=10.244.0.0/16", "--healthz-port=10256"], f"{d}/proxy{i}.log")
        wait_until(lambda: kubectl("get", "nodes").stdout.count(" Ready ") == 3, 90,
                   "three Ready nodes")

        # --- a Deployment behind a Service, reached from every host
        tol = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 2},
               {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 2}]
        deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                               "tolerations": tol,
                               "containers": [{"name": "web", "image": "python",
                                               "command": ["python3", "-c", SERVER],
                                               "ports": [{"containerPort": 8000}]}]}}}}
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8000}]}}
        p = subprocess.run([*hosts.exec_prefix(0), "kubectl", f"--kubeconfig={admin}",
                            f"--cache-dir={d}/kc", "apply", "-f", "-"],
                           input=json.dumps(deploy) + "\n" + json.dumps(svc),
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        cip = wait_until(lambda: kubectl("get", "svc", "web", "-o",
                                         "jsonpath={.spec.clusterIP}").stdout.strip(), 30,
                         "a ClusterIP")
        wait_until(lambda: " 3/3 " in kubectl("get", "deploy", "web").stdout, 90,
                   "3 web pods ready")

        def reach(i: int) -> bool:
            r = in_ns(hosts, i, sys.executable, "-c",
                      f"import urllib.request;print(urllib.request.urlopen("
                      f"'http://{cip}:80/', timeout=3).read().decode())", timeout=10)
            return r.returncode == 0 and r.stdout.strip() != ""
        for i in range(3):
            wait_until(lambda i=i: reach(i), 60, f"the Service from host {i}")

        # --- host 2 dies: kill -9 every process it runs
        for name in ("kubelet2", "proxy2", "etcd2"):
            procs[name].kill9()
        wait_until(lambda: "NotReady" in kubectl("get", "node", "host2").stdout, 60,
                   "host2 NotReady")

        def repaired() -> bool:
            pods = json.loads(kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)
            running = [p for p in pods["items"] if p["status"].get("phase") == "Running"
                       and p["spec"].get("nodeName") in ("host0", "host1")
                       and not p["metadata"].get("deletionTimestamp")]
            return len(running) == 3
        wait_until(repaired, 120, "3 web pods running on host0 and host1")
        for i in (0, 1):
            wait_until(lambda i=i: reach(i), 60, f"the Service from host {i} after the failure")
        # the store, down to 2 of 3 members, still takes writes
        r = kubectl("create", "configmap", "after-failure", "--from-literal=ok=yes")
        assert r.returncode == 0, r.stderr
    finally:
        for p in procs.values():
            p.stop()
        # pods run as children of the kubelets' sessions; make sure nothing is left
        subprocess.run(["pkill", "-f", f"{tmpdir_path}/kubelet"], capture_output=True)
        hosts.close()
