"""`kcore up` / `kcore status` / `kcore down`: the whole cluster on this machine,
driven with real kubectl over the admin kubeconfig and etcdctl on the store;
a second `up` on the same data dir resumes with its objects."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from store_harness import ETCDCTL, free_port, wait_until

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")


def kcore(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kcore.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout)


# a pod that asks the API server, with its service-account token, to list pods; it
# prints the HTTP status each time and whether the official client's in-cluster
# config loads
SA_PROBE = """
import json, os, ssl, time, urllib.error, urllib.request
d = '/var/run/secrets/kubernetes.io/serviceaccount'
while True:
    try:
        tok = open(d + '/token').read()
        ctx = ssl.create_default_context(cafile=d + '/ca.crt')
        url = 'https://%s:%s/api/v1/namespaces/default/pods' % (
            os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'])
        req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + tok})
        try:
            code = urllib.request.urlopen(req, context=ctx, timeout=5).status
        except urllib.error.HTTPError as e:
            code = e.code
        print('status', code, flush=True)
    except Exception as e:
        print('error', type(e).__name__, e, flush=True)
    time.sleep(1)
"""


def issue9_acceptance(kubectl, tmp: str) -> None:
    """The seed's controller-manager flags at work in `kcore up`: kubectl top,
    kubectl autoscale / get hpa, a CSR approved with kubectl and signed by the
    cluster CA, and a pod's service-account token that RBAC refuses until a
    RoleBinding allows it."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    top = wait_until(lambda: (lambda r: r.returncode == 0 and "up-node" in r.stdout and r.stdout)(
        kubectl("top", "nodes")), 60, "kubectl top nodes")
    assert "CPU(cores)" in top
    r = kubectl("autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=3")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: (lambda o: "web" in o and "Deployment/web" in o)(
        kubectl("get", "hpa").stdout), 30, "kubectl get hpa")

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "jane")])).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM)
    manifest = os.path.join(tmp, "csr.yaml")
    with open(manifest, "w") as fh:
        fh.write("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\n"
                 "metadata: {name: jane}\nspec:\n"
                 f"  request: {base64.b64encode(pem).decode()}\n"
                 "  signerName: kubernetes.io/kube-apiserver-client\n"
                 "  usages: [client auth]\n")
    assert kubectl("apply", "-f", manifest).returncode == 0
    r = kubectl("certificate", "approve", "jane")
    assert r.returncode == 0, r.stderr
    cert = wait_until(lambda: kubectl("get", "csr", "jane", "-o",
                                    "jsonpath={.status.certificate}").stdout.strip(), 30,
                    "the CSR signed")
    issued = x509.load_pem_x509_certificate(base64.b64decode(cert))
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "jane"

    # on the real kubelet (the hollow nodes run no processes and report no usage)
    r = kubectl("run", "sa-probe", "--image=python", "--restart=Never",
                '--overrides={"spec": {"nodeName": "up-node"}}', "--",
                sys.executable, "-c", SA_PROBE)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: (lambda r: r.returncode == 0 and "sa-probe" in r.stdout)(
        kubectl("top", "pods")), 60, "kubectl top pods")
    if os.geteuid() != 0:
        return      # the token volume is bind-mounted at its path in a mount namespace
    wait_until(lambda: "status 403" in kubectl("logs", "sa-probe").stdout, 60,
             "the pod's token refused by RBAC")
    assert kubectl("create", "role", "pod-reader", "--verb=get,list",
                   "--resource=pods").returncode == 0
    assert kubectl("create", "rolebinding", "pod-reader", "--role=pod-reader",
                   "--serviceaccount=default:default").returncode == 0
    wait_until(lambda: "status 200" in kubectl("logs", "sa-probe").stdout, 30,
             "the pod's token allowed after a RoleBinding")
    kubectl("delete", "pod", "sa-probe", "--grace-period=1")


def test_up_status_down_resume(tmpdir_path):
    d = os.path.join(tmpdir_path, "cluster")
    ports = {k: free_port() for k in ("insecure", "secure", "etcd", "cm", "sched", "kubelet")}
    up_args = ["up", f"--data-dir={d}", f"--insecure-port={ports['insecure']}",
               f"--secure-port={ports['secure']}", "--bind-address=127.0.0.1",
               f"--etcd-port={ports['etcd']}", f"--controller-manager-port={ports['cm']}",
               f"--scheduler-port={ports['sched']}", f"--kubelet-port={ports['kubelet']}",
               "--proxy-mode=none", "--node-name=up-node", "--hollow-nodes=3"]
    env = {**os.environ, "KUBECONFIG": os.path.join(d, "admin.kubeconfig"), "HOME": tmpdir_path}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, f"--cache-dir={tmpdir_path}/kc", *args],
                              capture_output=True, text=True, timeout=60, env=env)
    try:
        p = kcore(*up_args)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"export KUBECONFIG={d}/admin.kubeconfig" in p.stdout
        for name in ("apiserver", "controller-manager", "scheduler", "kubelet", "hollow-nodes"):
            assert name in p.stdout
        assert kcore("status", f"--data-dir={d}").returncode == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kubectl("get", "nodes").stdout
            if out.count(" Ready ") >= 4:
                break
            time.sleep(1)
        assert "up-node" in out and out.count(" Ready ") >= 4, out
        r = kubectl("create", "deployment", "web", "--image=python", "--replicas=2", "--",
                    sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(300)")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kubectl("get", "deployment", "web").stdout
            if " 2/2 " in out:
                break
            time.sleep(1)
        assert " 2/2 " in out, out + kubectl("get", "pods", "-o", "wide").stdout
        issue9_acceptance(kubectl, tmpdir_path)
        if ETCDCTL:
            e = subprocess.run([ETCDCTL, f"--endpoints=127.0.0.1:{ports['etcd']}", "get",
                                "/registry/deployments/default/web", "--keys-only"],
                               capture_output=True, text=True, timeout=20,
                               env={**os.environ, "ETCDCTL_API": "3"})
            assert "/registry/deployments/default/web" in e.stdout
        # down: every component stops, nothing is left running
        p = kcore("down", f"--data-dir={d}")
        assert p.returncode == 0
        assert kcore("status", f"--data-dir={d}").returncode != 0
        assert subprocess.run(["pgrep", "-f", d], capture_output=True).returncode != 0
        # up again on the same data dir: the cluster resumes with its objects
        p = kcore(*up_args)
        assert p.returncode == 0, p.stdout + p.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kubectl("get", "deployment", "web").stdout
            if " 2/2 " in out:
                break
            time.sleep(1)
        assert " 2/2 " in out, out
    finally:
        kcore("down", f"--data-dir={d}", "--timeout=15s")
