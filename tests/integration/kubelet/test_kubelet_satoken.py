"""Service-account tokens inside pods, end to end: an API server with RBAC on its
secure port (--service-account-key-file), a controller manager signing token
Secrets and publishing kube-root-ca.crt (--service-account-private-key-file,
--root-ca-file), a process-runtime kubelet that mounts the pod's bound token,
CA and namespace at /var/run/secrets/kubernetes.io/serviceaccount (a mount
namespace per container; needs root). The pod's own code first gets 403, then,
after a RoleBinding, 200 — with urllib and with the official client's
load_incluster_config()."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .kubelet_harness import KUBECTL, Cluster, pod_phase, wait_for

pytestmark = [pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# what the pod runs: every second, list pods with the mounted token (urllib), and
# once that is allowed, through the official client's in-cluster config
POD_SCRIPT = r"""
import os, ssl, sys, time, urllib.error, urllib.request
d = "/var/run/secrets/kubernetes.io/serviceaccount"
url = "https://%s:%s/api/v1/namespaces/default/pods" % (
    os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
ctx = ssl.create_default_context(cafile=d + "/ca.crt")
while True:
    tok = open(d + "/token").read()
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + tok})
    try:
        code = urllib.request.urlopen(req, context=ctx, timeout=5).status
    except urllib.error.HTTPError as e:
        code = e.code
    print("urllib", code, "ns=" + open(d + "/namespace").read(), flush=True)
    if code == 200:
        from kubernetes import client, config
        config.load_incluster_config()
        pods = client.CoreV1Api().list_namespaced_pod("default")
        print("client", ",".join(sorted(p.metadata.name for p in pods.items)), flush=True)
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(controllers=True, scheduler=False)
    try:
        pki = os.path.join(c.root, "pki")
        subprocess.run([sys.executable, "-m", "kcore.cli.main", "certs", f"--dir={pki}",
                        "--apiserver-hosts=127.0.0.1,localhost"], check=True,
                       capture_output=True, timeout=60)
        from .kubelet_harness import free_port
        c.secure_port = free_port()
        c.pki = pki
        c.apiserver_flags = [
            f"--secure-port={c.secure_port}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt", "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key"]
        c.cm_flags = [f"--service-account-private-key-file={pki}/sa.key",
                      f"--root-ca-file={pki}/ca.crt",
                      "--controllers=serviceaccount,serviceaccount-token,"
                      "root-ca-cert-publisher"]
        c.start()
        c.kubelet("sa-node", "--node-status-update-frequency=2s")
        yield c
    finally:
        c.stop()       # (also removes the mount point the kubelet made on the host)


def _logs(c: Cluster, name: str) -> str:
    return c.kubectl("logs", name, check=False).stdout


def test_pod_uses_its_service_account_token(cluster):
    c = cluster
    with open(os.path.join(c.pki, "ca.crt")) as fh:
        ca = fh.read()
    wait_for(lambda: c.http("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0]
             == 200, 20, what="default service account")
    wait_for(lambda: (c.http("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
                      [1].get("data") or {}).get("ca.crt") == ca, 20,
             what="kube-root-ca.crt")

    # automount off: no volume
    code, off = c.http("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-token"},
        "spec": {"automountServiceAccountToken": False, "nodeName": "nowhere",
                 "containers": [{"name": "c", "image": "python"}]}})
    assert code == 201, off
    assert not off["spec"].get("volumes")

    code, pod = c.http("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
        "spec": {"nodeName": "sa-node", "containers": [{
            "name": "main", "image": "python",
            "command": [sys.executable, "-c", POD_SCRIPT]}]}})
    assert code == 201, pod
    vols = pod["spec"]["volumes"]
    assert len(vols) == 1 and vols[0]["name"].startswith("kube-api-access-"), vols
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"name": vols[0]["name"], "readOnly": True, "mountPath": SA_DIR}]

    wait_for(lambda: pod_phase(c.pod("reader")) == "Running", 30,
             what=f"reader Running\n{c.dump()}")
    wait_for(lambda: "urllib 403 ns=default" in _logs(c, "reader"), 30,
             what=f"403 from the pod\n{_logs(c, 'reader')}\n{c.dump()}")

    c.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods")
    c.kubectl("create", "rolebinding", "reader", "--role=pod-reader",
              "--serviceaccount=default:default")
    wait_for(lambda: "urllib 200 ns=default" in _logs(c, "reader"), 30,
             what=f"200 from the pod\n{_logs(c, 'reader')}")
    wait_for(lambda: "client no-token,reader" in _logs(c, "reader"), 30,
             what=f"the official client in the pod\n{_logs(c, 'reader')}")

    # the files live in the kubelet's pod directory; the host's mount point stays empty
    uid = pod["metadata"]["uid"]
    vdir = os.path.join(c.kubelets[0].root, "pods", f"default_reader_{uid}", "volumes",
                        "kubernetes.io~projected", vols[0]["name"])
    assert sorted(n for n in os.listdir(vdir) if not n.startswith("..")) == [
        "ca.crt", "namespace", "token"]
    with open(os.path.join(vdir, "ca.crt")) as fh:
        assert fh.read() == ca
    assert os.listdir(SA_DIR) == []

    # the token is bound to the pod: TokenReview says so
    with open(os.path.join(vdir, "token")) as fh:
        token = fh.read()
    code, review = c.http("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}})
    assert code == 201, review
    st = review["status"]
    assert st["authenticated"], st
    assert st["user"]["username"] == "system:serviceaccount:default:default"
    assert st["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    print(json.dumps(st["user"]))
