"""`kcore proxy` for real, on a node made of network namespaces.

    client ns --veth-- node ns (kcore proxy) --bridge kbr0-- pod0, pod1, pod2 (TCP servers)
                          |
                        mgmt0 --hub bridge-- kcore apiserver (this namespace)

The node runs `kcore proxy` against a real `kcore apiserver`; the test writes a
NodePort Service and its Endpoints (as the endpoints controller would) and
sends real connections from the client namespace: the ClusterIP and the
NodePort spread over the three pods (chi-square), a removed endpoint gets no
more traffic, a deleted Service refuses. `--proxy-mode=ipvs` on this kernel
(no IPVS) ends up in iptables mode and says so; `--proxy-mode=userspace`
forwards through the dispatcher.
"""
from __future__ import annotations

import sys

import pytest
from proxy_lab import CLUSTER_CIDR, NETTOOLS, wait_until

PODS = 3
PORTS = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
EP_PORTS = [{"name": "http", "port": 8080, "protocol": "TCP"}]
CHI2_DF2_P001 = 13.816  # chi-square, 2 degrees of freedom, p = 0.001


def chi2(counts: dict, names: list[str]) -> float:
    n = sum(counts.get(x, 0) for x in names)
    e = n / len(names)
    return sum((counts.get(x, 0) - e) ** 2 / e for x in names)


class Node:
    """The node namespace, its pods and a client, with a kcore proxy."""

    def __init__(self, lab, api, tmp, short: str, pods: int = PODS):
        self.lab, self.api, self.tmp = lab, api, tmp
        self.ns = lab.netns(short)
        self.mgmt = lab.join(self.ns)
        lab.ip(self.ns, "link", "add", "kbr0", "type", "bridge")
        lab.ip(self.ns, "addr", "add", "10.244.0.1/24", "dev", "kbr0")
        lab.ip(self.ns, "link", "set", "kbr0", "up")
        # an uplink that leads nowhere: the node routes everything, as a real node does
        lab.ip(self.ns, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
        lab.ip(self.ns, "link", "set", "uplink1", "up")
        lab.ip(self.ns, "link", "set", "uplink0", "up")
        lab.ip(self.ns, "route", "add", "default", "dev", "uplink0")
        self.pods, self.pod_ips = [], []
        for i in range(pods):
            pod = lab.netns(f"{short}p{i}")
            ip = f"10.244.0.{10 + i}"
            lab.veth(self.ns, f"veth{i}", pod, "eth0", "", f"{ip}/24")
            lab.ip(self.ns, "link", "set", f"veth{i}", "master", "kbr0")
            lab.ip(pod, "route", "add", "default", "via", "10.244.0.1")
            lab.serve(pod, f"pod{i}", 8080, str(tmp / f"{short}-pod{i}.log"))
            self.pods.append(pod)
            self.pod_ips.append(ip)
        self.client = lab.netns(f"{short}c")
        lab.veth(self.ns, "cli0", self.client, "eth0", "192.168.77.1/24", "192.168.77.2/24")
        lab.ip(self.client, "route", "add", "default", "via", "192.168.77.1")
        self.proxy = None
        self.log = str(tmp / f"{short}-proxy.log")

    def start_proxy(self, mode: str, *extra: str):
        self.proxy = self.lab.spawn(self.ns, [
            sys.executable, "-m", "kcore.cli.main", "proxy", f"--master={self.api.url}",
            f"--proxy-mode={mode}", f"--cluster-cidr={CLUSTER_CIDR}",
            f"--hostname-override={self.ns}", "--min-sync-period=100ms", "--sync-period=10s",
            "--healthz-port=10256", "--metrics-port=10249", *extra], self.log,
            env={"PYTHONUNBUFFERED": "1"})
        wait_until(lambda: self.logged(" sync (full)"), 30, what=f"first sync of {self.log}")
        return self.proxy

    def logged(self, text: str) -> bool:
        if self.proxy is not None and self.proxy.poll() is not None:
            raise AssertionError(f"proxy exited:\n{open(self.log).read()[-3000:]}")
        with open(self.log) as fh:
            return text in fh.read()

    def get(self, host: str, port: int, n: int, timeout: float = 1.0) -> dict:
        return self.lab.nettools(self.client, "get", host, str(port), str(n), str(timeout))

    def http(self, path: str, port: int) -> str:
        code = ("import urllib.request,sys;"
                f"r=urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=5);"
                "sys.stdout.write(str(r.status)+' '+r.read().decode())")
        return self.lab.exec(self.ns, sys.executable, "-c", code).stdout

    def wait_spread(self, host: str, port: int, names: set[str], what: str) -> None:
        """Wait until a burst of connections reaches exactly `names`."""
        last = {}

        def ok():
            last.update(self.get(host, port, 30))
            return set(last["answers"]) == names and not last["errors"]
        try:
            wait_until(ok, 20, 0.3, what)
        except AssertionError:
            raise AssertionError(f"{what}: last {last}\n{open(self.log).read()[-4000:]}") from None


@pytest.fixture(scope="module")
def node(lab, api, tmp_path_factory):
    n = Node(lab, api, tmp_path_factory.mktemp("node"), "n")
    n.start_proxy("iptables")
    return n


def test_iptables_clusterip_and_nodeport(node, api):
    svc = api.service("web", PORTS)
    cip, nport = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    api.endpoints("web", node.pod_ips, EP_PORTS)
    names = [f"pod{i}" for i in range(PODS)]
    node.wait_spread(cip, 80, set(names), "ClusterIP reaching all pods")

    for host, port in ((cip, 80), ("192.168.77.1", nport)):
        got = node.get(host, port, 300)
        assert not got["errors"], got["errors"]
        assert sum(got["answers"].values()) == 300
        assert set(got["answers"]) == set(names)
        assert chi2(got["answers"], names) < CHI2_DF2_P001, got["answers"]
        # the client is outside --cluster-cidr: masqueraded to the node's bridge address
        assert set(got["peers"]) == {"10.244.0.1"}, got["peers"]

    # rules: kube-proxy's chains, and a ClusterIP that is only a rule
    nat = node.lab.exec(node.ns, "iptables-save", "-t", "nat").stdout
    assert f"-d {cip}/32 -p tcp -m comment" in nat or f"-d {cip}/32" in nat
    assert nat.count("-j KUBE-SEP-") >= PODS and "KUBE-NODEPORTS" in nat
    assert node.lab.exec(node.client, sys.executable, NETTOOLS, "ping", cip, "1",
                         check=False).returncode == 1
    assert node.http("/healthz", 10256).startswith("200 ")
    assert node.http("/proxyMode", 10249) == "200 iptables"

    # an endpoint goes away: no more traffic to it
    api.endpoints("web", node.pod_ips[:2], EP_PORTS)
    node.wait_spread(cip, 80, set(names[:2]), "pod2 removed")
    for host, port in ((cip, 80), ("192.168.77.1", nport)):
        got = node.get(host, port, 150)
        assert not got["errors"] and set(got["answers"]) == set(names[:2]), got

    # the Service is deleted: refused or unreachable, never answered
    api.delete("services", "web")
    api.delete("endpoints", "web")

    def gone():
        got = node.get(cip, 80, 3, timeout=0.5)
        return not got["answers"] and got
    wait_until(gone, 20, 0.3, "ClusterIP to stop answering")
    got = node.get("192.168.77.1", nport, 5, timeout=0.5)
    assert not got["answers"] and sum(got["errors"].values()) == 5, got
    nat = node.lab.exec(node.ns, "iptables-save", "-t", "nat").stdout
    assert cip not in nat


def test_service_without_endpoints_is_rejected(node, api):
    svc = api.service("empty", PORTS, type_="ClusterIP")
    cip = svc["spec"]["clusterIP"]

    def refused():
        got = node.get(cip, 80, 1, timeout=0.5)
        return got["errors"].get("refused") == 1
    wait_until(refused, 20, 0.3, "REJECT of a Service without endpoints")
    api.delete("services", "empty")


def test_ipvs_mode_falls_back_to_iptables(lab, api, tmp_path_factory):
    """This kernel has no IPVS: --proxy-mode=ipvs logs why and runs iptables mode."""
    n = Node(lab, api, tmp_path_factory.mktemp("fallback"), "f", pods=1)
    n.start_proxy("ipvs", "--ipvs-scheduler=wrr")
    assert n.logged("Can't use the IPVS proxier")
    assert n.logged("falling back to iptables mode")
    assert n.logged("Using iptables Proxier")
    assert not n.logged("Using ipvs Proxier")
    assert n.http("/proxyMode", 10249) == "200 iptables"
    svc = api.service("fb", PORTS)
    api.endpoints("fb", n.pod_ips, EP_PORTS)
    cip = svc["spec"]["clusterIP"]
    n.wait_spread(cip, 80, {"pod0"}, "fallback proxy serving the ClusterIP")
    assert "KUBE-SVC-" in lab.exec(n.ns, "iptables-save", "-t", "nat").stdout
    api.delete("services", "fb")
    api.delete("endpoints", "fb")


def test_userspace_mode_forwards_real_tcp(lab, api, tmp_path_factory):
    """--proxy-mode=userspace: listeners on the ClusterIP (bound locally, so it
    answers ping) and the NodePort; wrr with endpoint weights 1:2:3 gives exact
    shares; weight 0 quiesces; a removed Service stops answering."""
    n = Node(lab, api, tmp_path_factory.mktemp("userspace"), "u")
    n.start_proxy("userspace", "--ipvs-scheduler=wrr")
    assert n.logged("Using userspace Proxier")
    svc = api.service("us", PORTS)
    cip, nport = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    weights = {"proxy.kcore.io/weights": ",".join(f"{ip}={i + 1}"
                                                  for i, ip in enumerate(n.pod_ips))}
    api.endpoints("us", n.pod_ips, EP_PORTS, annotations=weights)
    names = [f"pod{i}" for i in range(PODS)]
    n.wait_spread(cip, 80, set(names), "userspace ClusterIP reaching all pods")
    for host, port in ((cip, 80), ("192.168.77.1", nport)):
        got = n.get(host, port, 300)
        assert not got["errors"], got["errors"]
        assert got["answers"] == {"pod0": 50, "pod1": 100, "pod2": 150}, got["answers"]
        assert set(got["peers"]) == {"10.244.0.1"}   # the proxy's own connection
    assert lab.exec(n.client, sys.executable, NETTOOLS, "ping", cip, "2",
                    check=False).returncode == 0
    assert n.http("/proxyMode", 10249) == "200 userspace"
    metrics = n.http("/metrics", 10249)
    assert 'kcore_proxy_mode{mode="userspace"} 1.0' in metrics

    quiesced = {"proxy.kcore.io/weights": f"{n.pod_ips[0]}=1,{n.pod_ips[1]}=1,{n.pod_ips[2]}=0"}
    api.endpoints("us", n.pod_ips, EP_PORTS, annotations=quiesced)
    n.wait_spread(cip, 80, set(names[:2]), "pod2 quiesced")
    got = n.get(cip, 80, 100)
    assert got["answers"] == {"pod0": 50, "pod1": 50}, got

    api.delete("services", "us")
    api.delete("endpoints", "us")

    def gone():
        got = n.get(cip, 80, 2, timeout=0.5)
        return not got["answers"] and got
    wait_until(gone, 20, 0.3, "userspace ClusterIP to stop answering")
    got = n.get("192.168.77.1", nport, 2, timeout=0.5)
    assert got["errors"].get("refused") == 2, got


def test_endpoints_from_the_controller_manager(node, api, lab, tmp_path_factory):
    """The whole chain: Pods (their status written here, as a kubelet would) ->
    `kcore controller-manager`'s endpoints controller -> Endpoints -> the proxy."""
    log = str(tmp_path_factory.mktemp("cm") / "controller-manager.log")
    cm = lab.spawn(None, [sys.executable, "-m", "kcore.cli.main", "controller-manager",
                          f"--master={api.url}", "--controllers=endpoint",
                          "--leader-elect=false", "--port=0"], log)

    def pod_status(name: str, ip: str, ready: bool) -> None:
        path = f"/api/v1/namespaces/default/pods/{name}"
        pod = api.call("GET", path)
        pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "conditions": [{"type": "Ready", "status": str(ready)}]}
        api.call("PUT", path + "/status", pod)

    for i, ip in enumerate(node.pod_ips):
        api.call("POST", "/api/v1/namespaces/default/pods", {
            "metadata": {"name": f"ctl-{i}", "labels": {"app": "ctl"}},
            "spec": {"nodeName": node.ns, "containers": [{
                "name": "srv", "image": "nettools", "ports": [{"containerPort": 8080}]}]}})
        pod_status(f"ctl-{i}", ip, True)
    svc = api.service("ctl", PORTS, type_="ClusterIP", selector={"app": "ctl"})
    cip = svc["spec"]["clusterIP"]
    names = {f"pod{i}" for i in range(PODS)}
    try:
        node.wait_spread(cip, 80, names, "endpoints from the controller")
        pod_status("ctl-1", node.pod_ips[1], False)      # not ready: out of the rotation
        node.wait_spread(cip, 80, names - {"pod1"}, "a not-ready pod removed")
        got = node.get(cip, 80, 60)
        assert set(got["answers"]) == names - {"pod1"} and not got["errors"], got
    finally:
        lab.stop(cm)
        api.delete("services", "ctl")
        for i in range(PODS):
            api.delete("pods", f"ctl-{i}")
