"""The secure port with real clients: the auth matrix under RBAC and under ABAC.

One `kcore apiserver` per authorization mode, HTTPS on a free 127.0.0.1 port
with a client CA, a static token file and a basic-auth file. Six identities —
anonymous, a bad token, a good token (alice), basic auth (carol), a client
certificate (dave, O=dev-team) and a ServiceAccount token (auth/robot) — each
try a request they are allowed and one they are not, with real kubectl and
with the official Python client; `kubectl auth can-i` answers for each; 401
and 403 bodies are Kubernetes Status objects with kube's wording.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from kcore import pki

from .apiserver_harness import _stop, _tail, free_port, wait_http

KUBECTL = shutil.which("kubectl")

NS = "auth"
ABAC_V1 = "abac.authorization.kubernetes.io/v1beta1"


def _policy(**spec) -> str:
    return json.dumps({"apiVersion": ABAC_V1, "kind": "Policy", "spec": spec})


ABAC_POLICIES = [
    _policy(user="alice", namespace=NS, resource="pods", apiGroup="*", readonly=True),
    _policy(user="carol", namespace=NS, resource="configmaps", apiGroup="*", readonly=True),
    _policy(group="dev-team", namespace=NS, resource="services", apiGroup="*", readonly=True),
    _policy(user=f"system:serviceaccount:{NS}:robot", namespace=NS, resource="serviceaccounts",
            apiGroup="*", readonly=True),
    _policy(group="system:authenticated", nonResourcePath="*", readonly=True),
    _policy(group="system:authenticated", namespace="*", apiGroup="authorization.k8s.io",
            resource="selfsubjectaccessreviews"),
    _policy(group="system:authenticated", namespace="*", apiGroup="authentication.k8s.io",
            resource="selfsubjectreviews"),
    _policy(user="*", nonResourcePath="/healthz", readonly=True),
]

# identity -> (allowed (verb, resource), denied (verb, resource)) in namespace NS
MATRIX = {
    "alice": (("list", "pods"), ("create", "pods")),
    "carol": (("list", "configmaps"), ("delete", "configmaps")),
    "dave": (("list", "services"), ("list", "secrets")),
    "robot": (("list", "serviceaccounts"), ("list", "pods")),
}


class Secure:
    def __init__(self, mode: str, root: str):
        self.mode, self.root = mode, root
        self.port, self.sport = free_port(), free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.https = f"https://127.0.0.1:{self.sport}"
        self.ca = pki.make_ca("test-client-ca")
        self.files: dict[str, str] = {}

    def _write(self, name: str, data: bytes | str) -> str:
        p = os.path.join(self.root, name)
        with open(p, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        self.files[name] = p
        return p

    def start(self) -> Secure:
        self._write("ca.crt", self.ca.cert_pem())
        for cn, orgs in (("dave", ("dev-team",)), ("admin", ("system:masters",))):
            kp = pki.make_cert(self.ca, cn, orgs=orgs, client=True)
            self._write(f"{cn}.crt", kp.cert_pem())
            self._write(f"{cn}.key", kp.key_pem())
        self._write("tokens.csv", 'alice-token,alice,1001,"dev,qa"\n')
        self._write("basic.csv", 'carol-pw,carol,1003,"ops"\n')
        args = [sys.executable, "-m", "kcore.cli.main", "apiserver",
                f"--insecure-port={self.port}", f"--secure-port={self.sport}",
                "--bind-address=127.0.0.1", f"--data-dir={self.root}/data",
                f"--client-ca-file={self.files['ca.crt']}",
                f"--token-auth-file={self.files['tokens.csv']}",
                f"--basic-auth-file={self.files['basic.csv']}",
                f"--authorization-mode={self.mode}"]
        if self.mode == "ABAC":
            args.append("--authorization-policy-file=" +
                        self._write("policy.jsonl", "\n".join(ABAC_POLICIES) + "\n"))
        self.log_path = os.path.join(self.root, "apiserver.log")
        with open(self.log_path, "wb") as fh:
            self.proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)
        wait_http(self.http + "/readyz", self.proc, self.log_path)
        # the serving certificate is self-signed: trust the file the server wrote
        self.serving_ca = os.path.join(self.root, "data", "pki", "apiserver.crt")
        return self

    def stop(self) -> None:
        _stop(self.proc)

    # -- clients ---------------------------------------------------------------------
    def kubectl(self, ident: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if KUBECTL is None:
            pytest.skip("kubectl not installed")
        cfg = os.path.join(self.root, f"{ident}.kubeconfig")
        if not os.path.exists(cfg):
            with open(cfg, "w") as fh:
                fh.write(self._kubeconfig(ident))
        cmd = [KUBECTL, f"--kubeconfig={cfg}", f"--cache-dir={self.root}/cache-{ident}", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL, env={**os.environ, "HOME": self.root})
        if check and p.returncode != 0:
            raise AssertionError(f"{ident}: kubectl {' '.join(args)} failed:\n{p.stdout}\n"
                                 f"{p.stderr}\n--- log ---\n{_tail(self.log_path)[-1500:]}")
        return p

    def _kubeconfig(self, ident: str) -> str:
        # kubectl has no anonymous mode (without credentials it prompts for a user
        # name): a blank bearer token is "no credentials" to the server, as to kube's
        user = {"anonymous": {"token": " "}, "bad": {"token": "not-a-token"},
                "alice": {"token": "alice-token"},
                "carol": {"username": "carol", "password": "carol-pw"},
                "dave": {"client-certificate": self.files["dave.crt"],
                         "client-key": self.files["dave.key"]},
                "admin": {"client-certificate": self.files["admin.crt"],
                          "client-key": self.files["admin.key"]},
                "robot": {"token": self.robot_token}}[ident]
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": self.https,
                                                   "certificate-authority": self.serving_ca}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]})

    def pyclient(self, ident: str):
        from kubernetes import client
        c = client.Configuration()
        c.host = self.https
        c.ssl_ca_cert = self.serving_ca
        if ident == "alice":
            c.api_key = {"authorization": "Bearer alice-token"}
        elif ident == "bad":
            c.api_key = {"authorization": "Bearer not-a-token"}
        elif ident == "robot":
            c.api_key = {"authorization": f"Bearer {self.robot_token}"}
        elif ident == "carol":
            basic = base64.b64encode(b"carol:carol-pw").decode()
            c.api_key = {"authorization": f"Basic {basic}"}
        elif ident in ("dave", "admin"):
            c.cert_file, c.key_file = self.files[f"{ident}.crt"], self.files[f"{ident}.key"]
        return client.ApiClient(c)

    def setup_objects(self) -> None:
        """Namespace, ServiceAccount (+ a token from TokenRequest) and, under RBAC, the
        roles and bindings, created by the admin with kubectl over the secure port."""
        a = lambda *x: self.kubectl("admin", *x)  # noqa: E731
        self.robot_token = ""
        a("create", "namespace", NS)
        a("-n", NS, "create", "serviceaccount", "robot")
        self.robot_token = a("-n", NS, "create", "token", "robot").stdout.strip()
        a("-n", NS, "create", "configmap", "cm", "--from-literal=a=b")
        if self.mode != "RBAC":
            return
        a("-n", NS, "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods")
        a("-n", NS, "create", "rolebinding", "alice-pods", "--role=pod-reader", "--user=alice")
        a("-n", NS, "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps")
        a("-n", NS, "create", "rolebinding", "carol-cm", "--role=cm-reader", "--user=carol")
        a("-n", NS, "create", "role", "svc-reader", "--verb=list", "--resource=services")
        a("-n", NS, "create", "rolebinding", "devs-svc", "--role=svc-reader",
          "--group=dev-team")
        a("create", "clusterrole", "sa-reader", "--verb=get,list", "--resource=serviceaccounts")
        a("-n", NS, "create", "rolebinding", "robot-sa", "--clusterrole=sa-reader",
          f"--serviceaccount={NS}:robot")


@pytest.fixture(scope="module", params=["RBAC", "ABAC"])
def secure(request):
    root = tempfile.mkdtemp(prefix="kcore-secure-")
    s = Secure(request.param, root)
    try:
        s.start()
        s.setup_objects()
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def _status(text: str) -> dict:
    body = json.loads(text)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    return body


# ----------------------------------------------------------------------------- kubectl --
@pytest.mark.parametrize("ident", sorted(MATRIX))
def test_kubectl_allowed_and_denied(secure, ident):
    (ok_verb, ok_res), (no_verb, no_res) = MATRIX[ident]
    kverb = {"list": "get"}.get(ok_verb, ok_verb)
    p = secure.kubectl(ident, "-n", NS, kverb, ok_res)
    assert p.returncode == 0
    if no_verb == "list":
        p = secure.kubectl(ident, "-n", NS, "get", no_res, check=False)
    elif no_verb == "create":
        p = secure.kubectl(ident, "-n", NS, "run", "x", "--image=busybox",
                           "--restart=Never", check=False)
    else:
        p = secure.kubectl(ident, "-n", NS, no_verb, no_res.rstrip("s"), "cm", check=False)
    assert p.returncode != 0
    user = {"dave": "dave", "robot": f"system:serviceaccount:{NS}:robot"}.get(ident, ident)
    assert (f'Error from server (Forbidden): {no_res} ' in p.stderr and
            f'is forbidden: User "{user}" cannot {no_verb} resource "{no_res}" in API group '
            f'"" in the namespace "{NS}"' in p.stderr), p.stderr


@pytest.mark.parametrize("ident", sorted(MATRIX))
def test_kubectl_auth_can_i(secure, ident):
    (ok_verb, ok_res), (no_verb, no_res) = MATRIX[ident]
    yes = secure.kubectl(ident, "-n", NS, "auth", "can-i", ok_verb, ok_res)
    assert yes.stdout.strip() == "yes"
    no = secure.kubectl(ident, "-n", NS, "auth", "can-i", no_verb, no_res, check=False)
    assert no.returncode == 1, no.stdout + no.stderr
    # kubectl appends the authorizer's reason: ABAC's "No policy matched.", RBAC's none
    assert no.stdout.strip() == ("no - No policy matched." if secure.mode == "ABAC" else "no")


def test_kubectl_anonymous_and_bad_token(secure):
    p = secure.kubectl("anonymous", "get", "--raw", f"/api/v1/namespaces/{NS}/pods",
                       check=False)
    assert p.returncode != 0
    assert ('Error from server (Forbidden): pods is forbidden: User "system:anonymous" cannot '
            f'list resource "pods" in API group "" in the namespace "{NS}"') in p.stderr, p.stderr
    p = secure.kubectl("anonymous", "get", "--raw", "/api", check=False)
    assert 'forbidden: User "system:anonymous" cannot get path "/api"' in p.stderr
    p = secure.kubectl("anonymous", "-n", NS, "auth", "can-i", "list", "pods", check=False)
    assert p.returncode != 0
    assert secure.kubectl("anonymous", "get", "--raw", "/healthz").stdout.strip() == "ok"
    p = secure.kubectl("bad", "-n", NS, "get", "pods", check=False)
    assert p.returncode != 0 and "error: You must be logged in to the server" in p.stderr, \
        p.stderr
    p = secure.kubectl("bad", "get", "--raw", "/healthz", check=False)
    assert p.returncode != 0 and "Unauthorized" in p.stderr, p.stderr


def test_kubectl_whoami_and_admin(secure):
    out = secure.kubectl("dave", "auth", "whoami", "-o", "json").stdout
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "dave"
    assert info["groups"] == ["dev-team", "system:authenticated"]
    robot = json.loads(secure.kubectl("robot", "auth", "whoami", "-o", "json").stdout)
    assert robot["status"]["userInfo"]["groups"] == [
        "system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    assert secure.kubectl("admin", "auth", "can-i", "delete", "nodes").stdout.strip() == "yes"


def test_rbac_kubectl_objects_and_escalation(secure):
    if secure.mode != "RBAC":
        pytest.skip("RBAC only")
    out = secure.kubectl("admin", "-n", NS, "get", "rolebindings", "-o", "wide").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("devs-svc"))
    assert "Role/svc-reader" in line and "dev-team" in line
    roles = secure.kubectl("admin", "get", "clusterroles").stdout
    for name in ("cluster-admin", "admin", "edit", "view", "system:discovery",
                 "system:basic-user"):
        assert f"\n{name} " in roles
    lst = secure.kubectl("alice", "-n", NS, "auth", "can-i", "--list").stdout
    assert any(ln.startswith("pods ") and "[get list watch]" in ln for ln in lst.splitlines())
    # alice may not grant herself more than she holds
    secure.kubectl("admin", "-n", NS, "create", "rolebinding", "alice-admin",
                   "--clusterrole=admin", "--user=alice")
    p = secure.kubectl("alice", "-n", NS, "create", "rolebinding", "esc",
                       "--clusterrole=cluster-admin", "--user=alice", check=False)
    assert p.returncode != 0
    assert ('rolebindings.rbac.authorization.k8s.io "esc" is forbidden: user "alice" '
            '(groups=["dev" "qa" "system:authenticated"]) is attempting to grant RBAC '
            'permissions not currently held') in p.stderr, p.stderr
    secure.kubectl("alice", "-n", NS, "create", "rolebinding", "ok", "--clusterrole=view",
                   "--user=carol")
    secure.kubectl("admin", "-n", NS, "delete", "rolebinding", "alice-admin", "ok")
    assert secure.kubectl("alice", "-n", NS, "auth", "can-i", "delete", "pods",
                          check=False).stdout.strip() == "no"


# ------------------------------------------------------------------------ python client --
@pytest.mark.parametrize("ident", sorted(MATRIX))
def test_pyclient_allowed_and_denied(secure, ident):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    (_, ok_res), (no_verb, no_res) = MATRIX[ident]
    with secure.pyclient(ident) as api_client:
        core = client.CoreV1Api(api_client)
        lister = {"pods": core.list_namespaced_pod, "configmaps": core.list_namespaced_config_map,
                  "services": core.list_namespaced_service,
                  "serviceaccounts": core.list_namespaced_service_account}[ok_res]
        assert lister(NS).items is not None
        with pytest.raises(ApiException) as ei:
            if no_verb == "create":
                core.create_namespaced_pod(NS, {"metadata": {"name": "p"}, "spec": {
                    "containers": [{"name": "c", "image": "i"}]}})
            elif no_verb == "delete":
                core.delete_namespaced_config_map("cm", NS)
            elif no_res == "secrets":
                core.list_namespaced_secret(NS)
            else:
                core.list_namespaced_pod(NS)
        assert ei.value.status == 403
        body = _status(ei.value.body)
        assert body["reason"] == "Forbidden" and body["code"] == 403
        assert body["details"]["kind"] == no_res


def test_pyclient_anonymous_bad_token_and_reviews(secure):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    for ident, code, reason in (("anonymous", 403, "Forbidden"), ("bad", 401, "Unauthorized")):
        with secure.pyclient(ident) as api_client:
            with pytest.raises(ApiException) as ei:
                client.CoreV1Api(api_client).list_namespaced_pod(NS)
            assert ei.value.status == code
            body = _status(ei.value.body)
            assert body["reason"] == reason and body["status"] == "Failure"
    with secure.pyclient("admin") as api_client:
        authz = client.AuthorizationV1Api(api_client)
        sar = authz.create_subject_access_review({"spec": {
            "user": "alice", "resourceAttributes": {"namespace": NS, "verb": "get",
                                                    "resource": "pods"}}})
        assert sar.status.allowed is True
        sar = authz.create_subject_access_review({"spec": {
            "user": "alice", "resourceAttributes": {"namespace": NS, "verb": "delete",
                                                    "resource": "pods"}}})
        assert sar.status.allowed is False
        tr = client.AuthenticationV1Api(api_client).create_token_review(
            {"spec": {"token": "alice-token"}})
        assert tr.status.authenticated and tr.status.user.username == "alice"


def test_service_account_tokens_revocation(secure):
    """A legacy token secret signed with the server's key works until the secret goes;
    a TokenRequest token stops working when its ServiceAccount is deleted."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    key = pki.load_private_key(os.path.join(secure.root, "data", "pki", "sa.key"))
    with secure.pyclient("admin") as api_client:
        core = client.CoreV1Api(api_client)
        sa = core.create_namespaced_service_account(NS, {"metadata": {"name": "tmp"}})
        legacy = pki.legacy_service_account_token(key, NS, "tmp", sa.metadata.uid, "tmp-token")
        core.create_namespaced_secret(NS, {
            "metadata": {"name": "tmp-token"}, "type": "Opaque",
            "data": {"token": base64.b64encode(legacy.encode()).decode()}})
        bound = core.create_namespaced_service_account_token(
            "tmp", NS, {"spec": {"audiences": [], "expirationSeconds": 600}}).status.token

    def whoami(token: str) -> int | str:
        c = client.Configuration()
        c.host, c.ssl_ca_cert = secure.https, secure.serving_ca
        c.api_key = {"authorization": f"Bearer {token}"}
        with client.ApiClient(c) as ac:
            try:
                r = client.AuthenticationV1Api(ac).create_self_subject_review({})
                return r.status.user_info.username
            except ApiException as e:
                return e.status
    me = f"system:serviceaccount:{NS}:tmp"
    assert whoami(legacy) == me and whoami(bound) == me
    with secure.pyclient("admin") as api_client:
        client.CoreV1Api(api_client).delete_namespaced_secret("tmp-token", NS)
    assert whoami(legacy) == 401 and whoami(bound) == me
    with secure.pyclient("admin") as api_client:
        client.CoreV1Api(api_client).delete_namespaced_service_account("tmp", NS)
    assert whoami(bound) == 401


def test_insecure_port_stays_open(secure):
    import urllib.request
    with urllib.request.urlopen(f"{secure.http}/api/v1/namespaces/{NS}/secrets") as r:
        assert r.status == 200


