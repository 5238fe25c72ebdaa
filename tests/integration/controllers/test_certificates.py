"""Certificate signing end to end: an API server on its secure port (RBAC, client
certificates, bootstrap tokens) and a controller manager running only the CSR
signer (the cluster CA from `kcore certs`) and approver.

A user's CSR is approved with real `kubectl certificate approve`, signed, and the
issued certificate then authenticates to the API server as that user; a kubelet
started with nothing but a bootstrap-token kubeconfig gets its client
certificate approved automatically and registers its Node with it."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from cryptography import x509

from kcore.certificates.request import make_request, new_key
from kcore.pki import KeyPair

from .cm_harness import KUBECTL, Cluster, Proc, free_port, wait_until

TOKEN_ID, TOKEN_SECRET = "abcdef", "0123456789abcdef"


@pytest.fixture(scope="module")
def signing():
    c = Cluster()
    try:
        pki = os.path.join(c.root, "pki")
        subprocess.run([sys.executable, "-m", "kcore.cli.main", "certs", f"--dir={pki}",
                        "--apiserver-hosts=127.0.0.1,localhost"], check=True,
                       capture_output=True, timeout=60)
        c.pki = pki
        c.secure_port = free_port()
        c.start_apiserver(f"--secure-port={c.secure_port}", "--bind-address=127.0.0.1",
                          f"--tls-cert-file={pki}/apiserver.crt",
                          f"--tls-private-key-file={pki}/apiserver.key",
                          f"--client-ca-file={pki}/ca.crt", "--authorization-mode=RBAC",
                          "--enable-bootstrap-token-auth")
        c.start_cm("--leader-elect=false", "--controllers=csrsigning,csrapproving",
                   f"--cluster-signing-cert-file={pki}/ca.crt",
                   f"--cluster-signing-key-file={pki}/ca.key",
                   "--cluster-signing-duration=48h")
        yield c
    finally:
        c.stop()


def _secure_kubectl(c: Cluster, *args: str, cert: str, key: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KUBECTL, f"--server=https://127.0.0.1:{c.secure_port}",
         f"--certificate-authority={c.pki}/ca.crt", f"--client-certificate={cert}",
         f"--client-key={key}", f"--cache-dir={c.cache_dir}-secure", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": c.root, "KUBECONFIG": "/dev/null"})


def test_kubectl_approved_csr_is_signed_and_authenticates(signing):
    c = signing
    key = new_key()
    req = make_request(key, "alice", ("devs",))
    c.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "alice"},
        "spec": {"request": base64.b64encode(req).decode(), "expirationSeconds": 3600,
                 "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["digital signature", "client auth"]}}))
    table = c.kubectl("get", "csr", "alice").stdout
    assert table.split("\n")[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR",
                                            "REQUESTEDDURATION", "CONDITION"]
    assert "system:unsecured" in table and "60m" in table and "Pending" in table
    # not approved: not signed
    assert not (c.kjson("get", "csr", "alice").get("status") or {}).get("certificate")

    out = c.kubectl("certificate", "approve", "alice").stdout
    assert "approved" in out
    cert_b64 = wait_until(lambda: (c.kjson("get", "csr", "alice").get("status") or {})
                          .get("certificate"), 20, what="issued certificate")
    assert "Approved,Issued" in c.kubectl("get", "csr", "alice").stdout
    pem = base64.b64decode(cert_b64)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == "CN=alice,O=devs"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(minutes=60) < life <= dt.timedelta(minutes=66)   # 5 min backdated

    cert_path, key_path = os.path.join(c.root, "alice.crt"), os.path.join(c.root, "alice.key")
    KeyPair(cert, key).write(cert_path, key_path)
    p = _secure_kubectl(c, "auth", "whoami", "-o", "json", cert=cert_path, key=key_path)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)["status"]["userInfo"]
    assert info["username"] == "alice" and "devs" in info["groups"]

    # alice may update approvals but is not an approver for the signer (admission)
    c.kubectl("create", "clusterrole", "csr-editor", "--verb=get,list,watch,update",
              "--resource=certificatesigningrequests,certificatesigningrequests/approval")
    c.kubectl("create", "clusterrolebinding", "alice-csr", "--clusterrole=csr-editor",
              "--user=alice")
    c.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "carol"},
        "spec": {"request": base64.b64encode(make_request(new_key(), "carol")).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"]}}))
    p = _secure_kubectl(c, "certificate", "approve", "carol", cert=cert_path, key=key_path)
    assert p.returncode != 0
    assert 'not permitted to approve requests with signerName ' \
        '"kubernetes.io/kube-apiserver-client"' in p.stderr, p.stderr
    assert "Pending" in c.kubectl("get", "csr", "carol").stdout

    # a denied request is never signed
    req2 = make_request(new_key(), "mallory", ("system:masters",))
    c.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "mallory"},
        "spec": {"request": base64.b64encode(req2).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client",
                 "usages": ["client auth"]}}))
    assert "denied" in c.kubectl("certificate", "deny", "mallory").stdout
    assert "Denied" in c.kubectl("get", "csr", "mallory").stdout
    # an invalid request is refused by the API server
    bad = c.kubectl("create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "bad"},
        "spec": {"request": base64.b64encode(b"not a csr").decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}}))
    assert bad.returncode != 0 and "spec.request" in bad.stderr
    assert not (c.kjson("get", "csr", "mallory").get("status") or {}).get("certificate")


def test_kubelet_tls_bootstrap_registers_node(signing):
    c = signing
    c.kubectl("create", "secret", "generic", f"bootstrap-token-{TOKEN_ID}", "-n", "kube-system",
              "--type=bootstrap.kubernetes.io/token", f"--from-literal=token-id={TOKEN_ID}",
              f"--from-literal=token-secret={TOKEN_SECRET}",
              "--from-literal=usage-bootstrap-authentication=true")
    # what kubeadm binds: bootstrappers may create CSRs and have them auto-approved;
    # nodes get the system:node role (kcore has no Node authorizer)
    c.kubectl("create", "clusterrolebinding", "kubelet-bootstrap",
              "--clusterrole=system:node-bootstrapper", "--group=system:bootstrappers")
    c.kubectl("create", "clusterrolebinding", "node-autoapprove-bootstrap",
              "--clusterrole=system:certificates.k8s.io:certificatesigningrequests:nodeclient",
              "--group=system:bootstrappers")
    c.kubectl("create", "clusterrolebinding", "nodes", "--clusterrole=system:node",
              "--group=system:nodes")
    bk = os.path.join(c.root, "bootstrap.kubeconfig")
    with open(bk, "w") as fh:
        fh.write(f"""apiVersion: v1
kind: Config
clusters:
- name: k
  cluster: {{server: "https://127.0.0.1:{c.secure_port}", certificate-authority: pki/ca.crt}}
users:
- name: boot
  user: {{token: "{TOKEN_ID}.{TOKEN_SECRET}"}}
contexts:
- name: c
  context: {{cluster: k, user: boot}}
current-context: c
""")
    kc = os.path.join(c.root, "kubelet", "kubelet.kubeconfig")
    root = os.path.join(c.root, "kubelet")
    kubelet = Proc("kubelet", [
        sys.executable, "-m", "kcore.cli.main", "kubelet", f"--bootstrap-kubeconfig={bk}",
        f"--kubeconfig={kc}", "--node-name=boot-node", f"--root-dir={root}",
        f"--port={free_port()}", "--address=127.0.0.1", "--node-ip=127.0.0.1",
        "--runtime=fake", "--node-status-update-frequency=1s"], c.root).start()
    try:
        def ready():
            assert kubelet.alive(), kubelet.log()
            p = c.kubectl("get", "node", "boot-node", "-o", "json", check=False)
            if p.returncode:
                return False
            conds = json.loads(p.stdout).get("status", {}).get("conditions") or []
            return any(x["type"] == "Ready" and x["status"] == "True" for x in conds)
        wait_until(ready, 40, step=0.3, what="bootstrapped node Ready")
        csrs = [i for i in c.kjson("get", "csr")["items"]
                if i["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"]
        assert len(csrs) == 1
        csr = csrs[0]
        assert csr["spec"]["username"] == f"system:bootstrap:{TOKEN_ID}"
        assert "system:bootstrappers" in csr["spec"]["groups"]
        assert [x["reason"] for x in csr["status"]["conditions"]] == ["AutoApproved"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
        assert cert.subject.rfc4514_string() == "CN=system:node:boot-node,O=system:nodes"
        assert os.path.exists(kc)
        assert os.stat(os.path.join(root, "pki", "kubelet-client-current.pem")).st_mode \
            & 0o077 == 0
        assert "forbidden" not in kubelet.log().lower(), kubelet.log()
    finally:
        kubelet.stop()
        if os.environ.get("KCORE_TEST_KEEP_LOGS"):
            print(kubelet.log())
