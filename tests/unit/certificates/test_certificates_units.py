"""The pure parts of certificate signing: request parsing and validation, the
/approval and /status merges, the auto-approver's decisions, signing, bootstrap
tokens, the kubectl columns and the kubelet's bootstrap files."""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kcore import pki
from kcore.api import kinds as K
from kcore.api.certificates import (
    approval_update,
    set_requestor,
    status_update,
    validate_csr,
    validate_csr_status,
)
from kcore.apiserver.auth import User
from kcore.apiserver.bootstraptoken import parse_token, token_user
from kcore.apiserver.tables import table
from kcore.certificates.approver import decide
from kcore.certificates.request import (
    KUBE_APISERVER_CLIENT,
    KUBELET_CLIENT,
    KUBELET_SERVING,
    RequestError,
    display_condition,
    make_request,
    new_key,
    parse_request,
)
from kcore.certificates.signer import CA, SigningError, sign, validity

K.load()
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def csr(cn="system:node:n1", orgs=("system:nodes",), hosts=(), signer=KUBELET_CLIENT,
        usages=("digital signature", "client auth"), user="system:bootstrap:abcdef",
        groups=("system:bootstrappers", "system:authenticated"), conditions=(), **spec):
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "c1"},
            "spec": {"request": b64(make_request(new_key(), cn, orgs, hosts)),
                     "signerName": signer, "usages": list(usages), "username": user,
                     "groups": list(groups), **spec},
            "status": {"conditions": list(conditions)} if conditions else {}}


APPROVED = {"type": "Approved", "status": "True", "reason": "R", "message": "m"}
DENIED = {"type": "Denied", "status": "True", "reason": "R", "message": "m"}


# ------------------------------------------------------------------ parsing --
def test_parse_request_reads_subject_and_sans():
    r = parse_request(b64(make_request(new_key(), "alice", ("a", "b"),
                                       ("example.com", "10.0.0.1"))))
    assert (r.common_name, r.organizations) == ("alice", ("a", "b"))
    assert r.dns_names == ("example.com",) and r.ip_addresses == ("10.0.0.1",)


@pytest.mark.parametrize("value", ["%%%", b64(b"hello"),
                                   b64(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                       b"-----END CERTIFICATE REQUEST-----\n")])
def test_parse_request_refuses_garbage(value):
    with pytest.raises(RequestError):
        parse_request(value)


# --------------------------------------------------------------- validation --
def _fields(errs):
    return {e.field for e in errs}


def test_valid_csr_passes():
    assert validate_csr(csr(), None) == []


def test_validation_like_kube():
    o = csr(expirationSeconds=60)
    o["spec"]["signerName"] = "not-a-signer"
    o["spec"]["usages"] = ["client auth", "teleport"]
    o["spec"]["request"] = b64(b"junk")
    assert _fields(validate_csr(o, None)) == {"spec.signerName", "spec.usages[1]",
                                              "spec.expirationSeconds", "spec.request"}
    o = csr()
    del o["spec"]["signerName"]
    o["spec"]["usages"] = []
    assert _fields(validate_csr(o, None)) == {"spec.signerName", "spec.usages"}


def test_spec_is_immutable_and_approved_denied_exclusive():
    old = csr()
    new = csr()
    assert "spec" in _fields(validate_csr(new, old))
    both = csr(conditions=(APPROVED, DENIED))
    assert "status.conditions" in _fields(validate_csr(both, None))
    false = csr(conditions=({**APPROVED, "status": "False"},))
    assert "status.conditions[0].status" in _fields(validate_csr(false, None))
    legacy = csr(signer="kubernetes.io/legacy-unknown")
    assert "spec.signerName" in _fields(validate_csr(legacy, None))


def test_decisions_cannot_be_taken_back():
    denied = csr(conditions=(DENIED,))
    flipped = approval_update(csr(conditions=(APPROVED,)), denied)
    assert "status.conditions" in _fields(validate_csr_status(flipped, denied))
    kept = approval_update(denied, denied)
    assert validate_csr_status(kept, denied) == []


def test_certificate_only_on_approved_requests():
    pem = b64(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    for conds, ok in (((), False), ((APPROVED,), True),
                      ((APPROVED, {"type": "Failed", "status": "True"}), False)):
        o = csr(conditions=conds)
        o["status"]["certificate"] = pem
        assert (validate_csr_status(o, None) == []) is ok, conds


def test_requestor_comes_from_the_authenticated_user():
    o = csr(user="forged", groups=("system:masters",))
    set_requestor(o, User("bob", ("dev", "system:authenticated"), "u-1"))
    assert (o["spec"]["username"], o["spec"]["groups"], o["spec"]["uid"]) == \
        ("bob", ["dev", "system:authenticated"], "u-1")
    assert "extra" not in o["spec"]


def test_approval_changes_only_conditions_and_status_not_approval():
    old = csr()
    new = csr(conditions=(APPROVED,))
    new["status"]["certificate"] = "Zm9v"
    out = approval_update(new, old)
    assert out["spec"] == old["spec"] and out["status"] == {"conditions": [APPROVED]}
    # /status cannot approve, but keeps an existing approval and sets the certificate
    assert status_update(csr(conditions=(APPROVED,)), old)["status"] == {}
    approved = approval_update(new, old)
    approved["status"]["conditions"] = [APPROVED]
    pem = b64(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    st = status_update({"status": {"certificate": pem}}, approved)["status"]
    assert st == {"certificate": pem, "conditions": [APPROVED]}
    assert validate_csr_status({"status": {"certificate": pem, "conditions": [APPROVED]}},
                               {"status": {
        "certificate": b64(b"-----BEGIN CERTIFICATE-----\nBB==\n-----END CERTIFICATE-----\n")
    }}) != []


# ----------------------------------------------------------------- approver --
def test_approver_approves_bootstrapper_and_self_renewal():
    assert decide(csr()).approve and decide(csr()).recognizer == "nodeclient"
    own = csr(user="system:node:n1", groups=("system:nodes",))
    assert decide(own).recognizer == "selfnodeclient"


@pytest.mark.parametrize("kw", [
    {"orgs": ("system:nodes", "system:masters")},
    {"cn": "alice"},
    {"hosts": ("n1.example",)},
    {"usages": ("digital signature", "client auth", "server auth")},
    {"signer": KUBE_APISERVER_CLIENT},
    {"user": "alice", "groups": ("system:authenticated",)},
    {"conditions": (DENIED,)},
    {"conditions": (APPROVED,)},
])
def test_approver_leaves_other_requests_alone(kw):
    assert not decide(csr(**kw)).approve


# ------------------------------------------------------------------- signer --
@pytest.fixture(scope="module")
def ca():
    kp = pki.make_ca("test-ca", days=30)
    return CA.from_pem(kp.cert_pem(), kp.key_pem())


def test_sign_kubelet_client(ca):
    pem = sign(ca, csr(conditions=(APPROVED,), expirationSeconds=3600), NOW, 86400)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert cert.issuer == ca.cert.subject
    assert cert.not_valid_after_utc - NOW == dt.timedelta(hours=1)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_validity_caps():
    ca_end = NOW + dt.timedelta(days=2)
    assert validity(NOW, None, 86400, ca_end)[1] == NOW + dt.timedelta(days=1)
    assert validity(NOW, 10, 86400, ca_end)[1] == NOW + dt.timedelta(seconds=600)
    assert validity(NOW, 10 ** 9, 86400, ca_end)[1] == NOW + dt.timedelta(days=1)
    assert validity(NOW, None, 10 ** 9, ca_end)[1] == ca_end
    assert validity(NOW, None, 1, ca_end)[0] == NOW - dt.timedelta(minutes=5)


def test_sign_serving_needs_sans_and_server_usage(ca):
    ok = csr(hosts=("n1.example", "10.0.0.5"), signer=KUBELET_SERVING,
             usages=("digital signature", "server auth"))
    cert = x509.load_pem_x509_certificate(sign(ca, ok, NOW, 86400))
    assert pki.cert_names(cert) == {"n1.example", "10.0.0.5"}
    with pytest.raises(SigningError):
        sign(ca, csr(signer=KUBELET_SERVING, usages=("server auth",)), NOW, 86400)
    with pytest.raises(SigningError):
        sign(ca, csr(cn="alice", orgs=(), signer=KUBE_APISERVER_CLIENT,
                     usages=("server auth",)), NOW, 86400)
    with pytest.raises(SigningError):
        sign(ca, csr(signer="example.com/other"), NOW, 86400)


# ---------------------------------------------------------- bootstrap tokens --
def secret(**data):
    base = {"token-id": "abcdef", "token-secret": "0123456789abcdef",
            "usage-bootstrap-authentication": "true"}
    base.update(data)
    return {"type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": {k: b64(v.encode()) for k, v in base.items() if v is not None}}


def test_parse_token():
    assert parse_token("abcdef.0123456789abcdef") == ("abcdef", "0123456789abcdef")
    for bad in ("abcdef.0123", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef", ""):
        assert parse_token(bad) is None


def test_bootstrap_token_user():
    u = token_user(secret(**{"auth-extra-groups": "system:bootstrappers:kubeadm,evil"}),
                   "abcdef", "0123456789abcdef", 0)
    assert u.name == "system:bootstrap:abcdef"
    assert u.groups == ("system:bootstrappers", "system:bootstrappers:kubeadm",
                        "system:authenticated")


@pytest.mark.parametrize("s,secret_value", [
    (secret(), "ffffffffffffffff"),
    (secret(**{"usage-bootstrap-authentication": None}), "0123456789abcdef"),
    (secret(expiration="2020-01-01T00:00:00Z"), "0123456789abcdef"),
    ({**secret(), "type": "Opaque"}, "0123456789abcdef"),
    (None, "0123456789abcdef"),
])
def test_bootstrap_token_refused(s, secret_value):
    assert token_user(s, "abcdef", secret_value, 1.7e9) is None


# ------------------------------------------------------------ kubectl table --
def test_csr_table_row():
    o = csr(conditions=(APPROVED,), expirationSeconds=3600)
    o["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    o["status"]["certificate"] = "Zm9v"
    t = table("certificatesigningrequests", [o], now=NOW.timestamp() + 120)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    assert t["rows"][0]["cells"] == ["c1", "2m", KUBELET_CLIENT, "system:bootstrap:abcdef",
                                     "60m", "Approved,Issued"]
    assert display_condition(csr()) == "Pending"
    assert display_condition(csr(conditions=(DENIED,))) == "Denied"


# ------------------------------------------------------ controllers, kubelet --
def test_csrsigning_needs_the_ca_files():
    from kcore.controllers.context import Options
    from kcore.controllers.manager import select_controllers
    assert "csrsigning" not in select_controllers(["*"], Options())
    assert "csrapproving" in select_controllers(["*"], Options())
    opts = Options(cluster_signing_cert_file="ca.crt", cluster_signing_key_file="ca.key")
    assert "csrsigning" in select_controllers(["*"], opts)


def test_kubelet_bootstrap_files(tmp_path):
    from kcore.api.validation import dns1123_subdomain
    from kcore.client.config import load_kubeconfig
    from kcore.kubelet.bootstrap import csr_name, csr_object, kubeconfig_text
    req = make_request(new_key(), "system:node:n1", ("system:nodes",))
    name = csr_name(req)
    assert dns1123_subdomain(name) == [] and csr_name(req) == name
    obj = csr_object(name, req, ["digital signature", "client auth"])
    obj["spec"]["username"] = "system:bootstrap:abcdef"
    obj["spec"]["groups"] = ["system:bootstrappers"]
    assert validate_csr(obj, None) == [] and decide(obj).approve
    path = tmp_path / "kubelet.kubeconfig"
    path.write_text(kubeconfig_text("https://127.0.0.1:6443", b"CA PEM", "/p/cur.pem"))
    cfg = load_kubeconfig(str(path))
    assert (cfg.server, cfg.ca_data, cfg.cert_file, cfg.key_file) == (
        "https://127.0.0.1:6443", b"CA PEM", "/p/cur.pem", "/p/cur.pem")


def test_expired_kubeconfig_is_bootstrapped_again(tmp_path):
    from kcore.kubelet.bootstrap import kubeconfig_text, kubeconfig_usable
    ca = pki.make_ca("c", days=30)
    leaf = pki.make_cert(ca, "system:node:n1", orgs=("system:nodes",), client=True, days=2)
    cur = tmp_path / "cur.pem"
    cur.write_bytes(leaf.cert_pem() + leaf.key_pem())
    kc = tmp_path / "kubelet.kubeconfig"
    kc.write_text(kubeconfig_text("https://127.0.0.1:6443", ca.cert_pem(), str(cur)))
    now = leaf.cert.not_valid_before_utc.timestamp() + 600
    assert kubeconfig_usable(str(kc), now)
    assert not kubeconfig_usable(str(kc), now + 3 * 86400)
    assert not kubeconfig_usable(str(tmp_path / "missing"))
    cur.write_bytes(b"garbage")
    assert not kubeconfig_usable(str(kc), now)


# ------------------------------------------------------------------ admission --
def test_approval_and_signing_need_the_signer_verb():
    import asyncio

    from kcore.api.errors import ApiError
    from kcore.apiserver.auth import CURRENT
    from kcore.apiserver.csradmission import admit, needed_verb, signer_checks

    assert [i.name for i in signer_checks("example.com/foo", "approve")] == [
        "example.com/foo", "example.com/*"]
    old = csr()
    assert needed_verb("approval", old, old) == "approve"
    assert needed_verb("status", old, old) == ""
    assert needed_verb("status", {"status": {"certificate": "Zm9v"}}, old) == "sign"
    assert needed_verb("", old, old) == ""

    class Only:
        def __init__(self, verb, name):
            self.verb, self.name = verb, name

        async def authorize(self, user, info):
            return (info.verb, info.name, info.resource) == (self.verb, self.name,
                                                             "signers"), ""

    plugins = {"CertificateApproval", "CertificateSigning"}

    async def run(authorizer, sub="approval", plugins=plugins):
        tok = CURRENT.set((User("u"), authorizer))
        try:
            await admit("UPDATE", sub, "c1", old, old, plugins)
        finally:
            CURRENT.reset(tok)
    asyncio.run(run(Only("approve", KUBELET_CLIENT)))
    asyncio.run(run(Only("approve", "kubernetes.io/*")))
    with pytest.raises(ApiError) as ei:
        asyncio.run(run(Only("sign", KUBELET_CLIENT)))
    assert ei.value.code == 403 and "not permitted to approve" in str(ei.value.status())
    asyncio.run(run(Only("sign", KUBELET_CLIENT), plugins=set()))


def test_kubelet_request_retries_until_issued():
    import asyncio

    from kcore.client import errors as CE
    from kcore.kubelet.bootstrap import BootstrapError, request_certificate

    class FakeAPI:
        """Down for the first create; the CSR is issued on the second get."""
        def __init__(self, outcome):
            self.creates, self.gets, self.outcome, self.obj = 0, 0, outcome, None

        async def create(self, res, obj):
            self.creates += 1
            if self.creates == 1:
                raise CE.TransportError("connection refused")
            self.obj = obj

        async def get(self, res, name):
            self.gets += 1
            o = dict(self.obj)
            if self.gets >= 2:
                o["status"] = self.outcome
            return o

    api = FakeAPI({"certificate": b64(b"CERT")})
    cert, key = asyncio.run(request_certificate(api, "n1", timeout=30, poll=0.01))
    assert cert == b"CERT" and b"PRIVATE KEY" in key and api.creates == 2
    assert decide({**api.obj, "spec": {**api.obj["spec"], "username": "system:node:n1"}}
                  ).recognizer == "selfnodeclient"
    with pytest.raises(BootstrapError, match="Denied"):
        asyncio.run(request_certificate(FakeAPI({"conditions": [DENIED]}), "n1", timeout=30,
                                        poll=0.01))
