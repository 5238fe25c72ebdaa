"""The controller manager on the secure port: a kubeconfig with the cluster CA and a
client certificate (from `kcore certs`), RBAC authorization, each controller as its
own kube-system service account (--use-service-account-credentials, tokens from
TokenRequest), and service-account token Secrets signed with the SA key that the
API server then accepts."""
from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from .cm_harness import Cluster, free_port, wait_until


@pytest.fixture(scope="module")
def secure():
    c = Cluster()
    try:
        pki = os.path.join(c.root, "pki")
        subprocess.run([sys.executable, "-m", "kcore.cli.main", "certs", f"--dir={pki}",
                        "--apiserver-hosts=127.0.0.1,localhost"], check=True,
                       capture_output=True, timeout=60)
        c.secure_port = free_port()
        c.pki = pki
        c.start_apiserver(f"--secure-port={c.secure_port}", "--bind-address=127.0.0.1",
                          f"--tls-cert-file={pki}/apiserver.crt",
                          f"--tls-private-key-file={pki}/apiserver.key",
                          f"--client-ca-file={pki}/ca.crt", "--authorization-mode=Node,RBAC",
                          f"--service-account-key-file={pki}/sa.pub")
        # start_apiserver added --secure-port=-1 first; the later flag wins.
        # The controllers' accounts get their rights from a binding (kube ships
        # system:controller:* roles for them); the manager's own certificate identity
        # keeps the default system:kube-controller-manager role only.
        c.kubectl("create", "clusterrolebinding", "controllers", "--clusterrole=cluster-admin",
                  "--group=system:serviceaccounts:kube-system")
        kc = os.path.join(c.root, "cm.kubeconfig")
        with open(kc, "w") as fh:
            fh.write(f"""apiVersion: v1
kind: Config
clusters:
- name: k
  cluster: {{server: "https://127.0.0.1:{c.secure_port}", certificate-authority: pki/ca.crt}}
users:
- name: cm
  user: {{client-certificate: pki/kube-controller-manager.crt,
          client-key: pki/kube-controller-manager.key}}
contexts:
- name: c
  context: {{cluster: k, user: cm}}
current-context: c
""")
        c.start_cm(f"--kubeconfig={kc}", "--leader-elect=true",
                   "--use-service-account-credentials=true",
                   f"--service-account-private-key-file={pki}/sa.key",
                   f"--root-ca-file={pki}/ca.crt", "--controllers=*,-nodeipam",
                   master=False)
        yield c
    finally:
        c.stop()


def test_controller_manager_over_tls_with_rbac_and_signed_tokens(secure):
    c = secure
    # leader election and the controllers work through the secure port
    wait_until(lambda: c.kubectl("get", "lease", "kube-controller-manager", "-n",
                                 "kube-system", check=False).returncode == 0, 15,
               what="leader lease")
    accounts = {i["metadata"]["name"] for i in c.kjson("get", "sa", "-n", "kube-system")[
        "items"]}
    assert {"deployment-controller", "replicaset-controller", "node-controller",
            "generic-garbage-collector", "namespace-controller"} <= accounts
    c.kubectl("create", "deployment", "web", "--image=x", "--replicas=2")
    wait_until(lambda: len(c.kjson("get", "pods", "-l", "app=web")["items"]) == 2, 20,
               what="pods created by the deployment and ReplicaSet controllers")
    # the token controller signs a token the API server authenticates
    name = wait_until(lambda: (c.kjson("get", "sa", "default").get("secrets") or [{}])[0]
                      .get("name"), 15, what="token secret")
    sec = wait_until(lambda: (lambda s: s if "token" in (s.get("data") or {}) else None)(
        c.kjson("get", "secret", name)), 10, what="token data")
    token = base64.b64decode(sec["data"]["token"]).decode()
    with open(os.path.join(c.pki, "ca.crt"), "rb") as fh:
        assert base64.b64decode(sec["data"]["ca.crt"]) == fh.read()
    ctx = ssl.create_default_context(cafile=os.path.join(c.pki, "ca.crt"))
    req = urllib.request.Request(
        f"https://127.0.0.1:{c.secure_port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1",
                         "kind": "SelfSubjectReview"}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            who = json.loads(r.read())["status"]["userInfo"]["username"]
    except urllib.error.HTTPError as e:
        if e.code == 404:         # no SelfSubjectReview: a 403 still proves authentication
            req = urllib.request.Request(
                f"https://127.0.0.1:{c.secure_port}/api/v1/namespaces/default/secrets",
                headers={"Authorization": f"Bearer {token}"})
            with pytest.raises(urllib.error.HTTPError) as ei:
                urllib.request.urlopen(req, context=ctx, timeout=10)
            assert ei.value.code == 403
            who = json.loads(ei.value.read())["message"]
        else:
            raise
    assert "system:serviceaccount:default:default" in who
    assert "Forbidden" not in c.cms[0].log() and "forbidden" not in c.cms[0].log()
