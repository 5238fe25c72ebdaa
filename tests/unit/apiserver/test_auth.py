"""Authentication and authorization as pure functions: credential files, JWTs and
service-account tokens, ABAC policies, RBAC matching/aggregation/escalation, the chain."""
from __future__ import annotations

import asyncio
import os
import tempfile

import pytest

from kcore import pki
from kcore.api import kinds
from kcore.apiserver import authz, rbac
from kcore.apiserver.auth import (
    ALLOW,
    NO_OPINION,
    AlwaysAllow,
    AlwaysDeny,
    RequestInfo,
    User,
    forbidden_message,
)
from kcore.apiserver.authn import (
    AuthFileError,
    RequestAuthenticator,
    load_basic_file,
    load_token_file,
)
from kcore.apiserver.serviceaccount import InvalidToken, ServiceAccountTokens

kinds.load()


def run(coro):
    return asyncio.run(coro)


def res(verb, resource, ns="", group="", name="", sub="") -> RequestInfo:
    return RequestInfo(path="/x", verb=verb, is_resource=True, group=group, namespace=ns,
                       resource=resource, name=name, subresource=sub)


def path(verb, p) -> RequestInfo:
    return RequestInfo(path=p, verb=verb)


ALICE = User("alice", ("dev", "system:authenticated"))
BOB = User("bob", ("system:authenticated",))
ANON = User("system:anonymous", ("system:unauthenticated",))


# ------------------------------------------------------------------- credential files --
def _file(text: str) -> str:
    fd, p = tempfile.mkstemp()
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return p


def test_token_and_basic_files():
    p = _file('tok1,alice,1001,"dev,qa"\n\ntok2, bob ,1002\n')
    try:
        toks = load_token_file(p)
    finally:
        os.unlink(p)
    assert toks["tok1"] == User("alice", ("dev", "qa"), "1001")
    assert toks["tok2"].name == "bob" and toks["tok2"].groups == ()
    p = _file("only,two\n")
    try:
        with pytest.raises(AuthFileError, match="at least 3 columns"):
            load_token_file(p)
    finally:
        os.unlink(p)
    p = _file('pw,carol,7,"ops"\n')
    try:
        assert load_basic_file(p)["carol"][0] == "pw"
    finally:
        os.unlink(p)


class _Req:
    def __init__(self, auth=""):
        self.headers = {"Authorization": auth} if auth else {}
        self.method, self.path, self.transport = "GET", "/", None


def test_request_authenticator_union_and_anonymous():
    import base64
    a = RequestAuthenticator(tokens={"t": User("alice", ("dev",))},
                             basic={"carol": ("pw", User("carol", ()))}, anonymous=True)
    u = run(a.authenticate(_Req("Bearer t")))
    assert u.name == "alice" and u.groups == ("dev", "system:authenticated")
    assert run(a.authenticate(_Req("Bearer nope"))) is None          # bad token: never anonymous
    assert run(a.authenticate(_Req())).name == "system:anonymous"
    basic = base64.b64encode(b"carol:pw").decode()
    assert run(a.authenticate(_Req("Basic " + basic))).name == "carol"
    wrong = base64.b64encode(b"carol:no").decode()
    assert run(a.authenticate(_Req("Basic " + wrong))) is None
    a.anonymous = False
    assert run(a.authenticate(_Req())) is None


# --------------------------------------------------------------- JWTs and SA tokens --
def test_jwt_roundtrip_and_tamper():
    k = pki.make_signing_key()
    t = pki.jwt_sign({"sub": "x"}, k)
    assert pki.jwt_verify(t, [k.public_key()]) == {"sub": "x"}
    h, p, s = t.split(".")
    other = pki.make_signing_key()
    with pytest.raises(pki.JWTError):
        pki.jwt_verify(t, [other.public_key()])
    with pytest.raises(pki.JWTError):
        pki.jwt_verify(f"{h}.{p}x.{s}", [k.public_key()])
    with pytest.raises(pki.JWTError):
        pki.jwt_verify("garbage", [k.public_key()])


def test_service_account_tokens_without_lookup():
    k = pki.make_signing_key()
    sat = ServiceAccountTokens(None, [k.public_key()], k, ["https://kcore"], ["https://kcore"],
                               lookup=False, clock=lambda: 1000.0)
    legacy = pki.legacy_service_account_token(k, "ns1", "robot", "uid-1", "robot-token")
    u = run(sat.authenticate(legacy))
    assert u.name == "system:serviceaccount:ns1:robot" and u.uid == "uid-1"
    assert u.groups == ("system:serviceaccounts", "system:serviceaccounts:ns1",
                        "system:authenticated")
    sa = {"metadata": {"name": "robot", "namespace": "ns1", "uid": "uid-1"}}
    tok, exp = sat.issue(sa, [], 3600)
    assert exp == 4600.0
    assert run(sat.authenticate(tok)).name == "system:serviceaccount:ns1:robot"
    sat.clock = lambda: 1000.0 + 3600 + 61
    with pytest.raises(InvalidToken, match="expired"):
        run(sat.authenticate(tok))
    sat.clock = lambda: 1000.0
    tok2, _ = sat.issue(sa, ["someone-else"], 3600)
    with pytest.raises(InvalidToken, match="audiences"):
        run(sat.authenticate(tok2))
    forged = pki.legacy_service_account_token(pki.make_signing_key(), "ns1", "robot", "u", "s")
    with pytest.raises(InvalidToken):
        run(sat.authenticate(forged))
    assert run(sat.authenticate("not-a-jwt")) is None        # someone else's token


# -------------------------------------------------------------------------------- ABAC --
def test_abac_v1beta1_semantics():
    lines = [
        '{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":'
        '{"user":"alice","namespace":"default","resource":"pods","apiGroup":"*",'
        '"readonly":true}}',
        '{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":'
        '{"group":"system:authenticated","nonResourcePath":"/apis/*","readonly":true}}',
        '{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":'
        '{"user":"*","nonResourcePath":"/version","readonly":true}}',
        '{"apiVersion":"abac.authorization.kubernetes.io/v1beta1","kind":"Policy","spec":'
        '{"user":"bob","namespace":"*","resource":"*","apiGroup":"apps"}}']
    ab = authz.ABAC([authz.parse_policy_line(x) for x in lines])
    d = lambda u, i: run(ab.decide(u, i))[0]  # noqa: E731
    assert d(ALICE, res("list", "pods", "default")) == ALLOW
    assert d(ALICE, res("create", "pods", "default")) == NO_OPINION      # readonly
    assert d(ALICE, res("list", "pods", "other")) == NO_OPINION
    assert d(ALICE, path("get", "/apis/apps")) == ALLOW
    assert d(ANON, path("get", "/apis/apps")) == NO_OPINION
    assert d(ANON, path("get", "/version")) == ALLOW                    # user "*"
    assert d(BOB, res("delete", "deployments", "x", "apps")) == ALLOW
    assert d(BOB, res("delete", "pods", "x")) == NO_OPINION             # wrong apiGroup
    assert run(ab.decide(BOB, res("delete", "pods", "x")))[1] == "No policy matched."
    rules = run(ab.rules_for(ALICE, "default"))
    assert {"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["pods"]} \
        in rules.resource


def test_abac_v0_conversion_and_errors():
    p = authz.parse_policy_line('{"user":"*","readonly":true}')
    assert (p.user, p.group, p.namespace, p.resource, p.non_resource_path) == \
        ("", "system:authenticated", "*", "*", "*")
    assert authz.parse_policy_line('{"user":"a","resource":"pods"}').non_resource_path == ""
    with pytest.raises(authz.PolicyError):
        authz.parse_policy_line('{"apiVersion":"v2","kind":"Policy","spec":{}}')
    with pytest.raises(authz.PolicyError):
        authz.parse_policy_line("not json")


# -------------------------------------------------------------------------------- RBAC --
def _role(name, rules, ns="", labels=None, agg=None):
    o = {"metadata": {"name": name, "labels": labels or {}}, "rules": rules}
    if ns:
        o["metadata"]["namespace"] = ns
    if agg:
        o["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": agg}]}
    return o


def _binding(name, kind, role, subjects, ns=""):
    o = {"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                 "kind": kind, "name": role},
         "subjects": [dict(zip(("kind", "name", "namespace"), s)) for s in subjects]}
    if ns:
        o["metadata"]["namespace"] = ns
    return o


def test_rbac_matching_and_scopes():
    ix = rbac.Index.build(
        [_role("reader", [rbac.rule(["get", "list"], [""], ["pods", "pods/log"])], "team")],
        [_role("scaler", [rbac.rule(["*"], ["apps"], ["*/scale"]),
                          rbac.rule(["get"], [""], ["configmaps"], ["one"])]),
         _role("disc", [rbac.url_rule(["get"], ["/apis/*", "/version"])])],
        [_binding("rb", "Role", "reader", [("User", "alice")], "team"),
         _binding("rb2", "ClusterRole", "scaler", [("ServiceAccount", "robot")], "team")],
        [_binding("crb", "ClusterRole", "disc", [("Group", "system:authenticated")])])
    ok = lambda u, i: ix.decide(u, i)[0]  # noqa: E731
    assert ok(ALICE, res("list", "pods", "team"))
    assert ok(ALICE, res("get", "pods", "team", sub="log", name="p"))
    assert not ok(ALICE, res("list", "pods", "default"))
    assert not ok(ALICE, res("delete", "pods", "team", name="p"))
    assert not ok(ALICE, res("get", "pods", "team", sub="exec", name="p"))
    assert ok(ALICE, path("get", "/apis/apps/v1")) and ok(ALICE, path("get", "/version"))
    assert not ok(ALICE, path("get", "/metrics"))
    robot = User("system:serviceaccount:team:robot", ("system:serviceaccounts",))
    assert ok(robot, res("update", "deployments", "team", "apps", "d", "scale"))
    assert not ok(robot, res("update", "deployments", "team", "apps", "d"))
    assert ok(robot, res("get", "configmaps", "team", name="one"))
    assert not ok(robot, res("get", "configmaps", "team", name="two"))
    assert not ok(robot, res("list", "configmaps", "team"))
    assert "RoleBinding \"rb/team\"" in ix.decide(ALICE, res("list", "pods", "team"))[1]


def test_rbac_aggregation_and_defaults():
    roles = rbac.default_cluster_roles()
    by = {o["metadata"]["name"]: o for o in roles}
    view = by["view"]["rules"]
    assert any("pods" in r.get("resources", []) and r["verbs"] == ["get", "list", "watch"]
               for r in view)
    admin_res = {x for r in by["admin"]["rules"] for x in r.get("resources", [])}
    assert {"rolebindings", "pods", "secrets", "deployments"} <= admin_res
    ix = rbac.Index.build([], roles, [], [
        *rbac.default_cluster_role_bindings(),
        _binding("e", "ClusterRole", "edit", [("User", "alice")])])
    ok = lambda u, i: ix.decide(u, i)[0]  # noqa: E731
    assert ok(User("root", ("system:masters",)), res("delete", "nodes", name="n"))
    assert ok(ALICE, res("create", "deployments", "x", "apps"))
    assert not ok(ALICE, res("create", "roles", "x", rbac.GROUP))         # edit: no RBAC
    assert ok(BOB, res("create", "selfsubjectaccessreviews", group="authorization.k8s.io"))
    assert ok(ANON, path("get", "/healthz")) and not ok(ANON, path("get", "/api"))
    # a new aggregate-to-view role joins view (and so edit and admin) at once
    extra = _role("crons", [rbac.rule(["get"], ["example.com"], ["widgets"])],
                  labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"})
    ix2 = rbac.Index.build([], roles + [extra], [], [
        _binding("a", "ClusterRole", "admin", [("User", "alice")])])
    assert ix2.decide(ALICE, res("get", "widgets", "x", "example.com"))[0]


def test_rbac_escalation_cover():
    owner = [rbac.rule(["get", "list"], [""], ["pods"]), rbac.rule(["*"], ["apps"], ["*/scale"]),
             rbac.url_rule(["get"], ["/healthz/*"])]
    assert rbac.uncovered(owner, [rbac.rule(["get"], [""], ["pods"])]) == []
    assert rbac.uncovered(owner, [rbac.rule(["update"], ["apps"], ["deployments/scale"])]) == []
    miss = rbac.uncovered(owner, [rbac.rule(["get", "delete"], [""], ["pods"])])
    assert miss == [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]
    assert rbac.uncovered(owner, [rbac.rule(["*"], [""], ["pods"])])       # '*' needs '*'
    assert rbac.uncovered(owner, [rbac.url_rule(["get"], ["/healthz/etcd"])]) == []
    assert rbac.compact(miss[0]) == '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'


def test_rbac_validation_messages():
    from kcore.api import rbac as api
    b = _binding("b", "Pod", "x", [("Robot", "r")], "ns")
    b["roleRef"]["apiGroup"] = "wrong"
    msgs = [str(e) for e in api.validate_role_binding(b, None)]
    assert any(m.startswith("roleRef.apiGroup: Unsupported value") for m in msgs)
    assert any(m.startswith("roleRef.kind: Unsupported value") for m in msgs)
    assert any(m.startswith("subjects[0].kind: Unsupported value") for m in msgs)
    good = _binding("b", "ClusterRole", "view", [("User", "u")], "ns")
    api.default_binding(good)
    assert api.validate_role_binding(good, None) == []
    changed = _binding("b", "ClusterRole", "edit", [("User", "u")], "ns")
    api.default_binding(changed)
    assert "cannot change roleRef" in str(api.validate_role_binding(changed, good))
    r = _role("system:x", [{"apiGroups": [""], "resources": ["pods"]}])
    assert "rules[0].verbs: Required value" in str(api.validate_cluster_role(r, None)[0])


# ------------------------------------------------------------------------------- chain --
def test_chain_order_and_privileged_group():
    deny_then_allow = authz.Chain([AlwaysDeny(), AlwaysAllow()])
    assert run(deny_then_allow.authorize(ALICE, res("get", "pods", "x")))[0]   # NoOpinion first
    deny = authz.Chain([AlwaysDeny()])
    ok, reason = run(deny.authorize(ALICE, res("get", "pods", "x")))
    assert not ok and reason == "Everything is forbidden."
    assert run(deny.authorize(User("root", ("system:masters",)), res("get", "pods", "x")))[0]
    with pytest.raises(authz.ModeError):
        authz.build_chain(["Webhook"])
    with pytest.raises(authz.ModeError):
        authz.build_chain(["ABAC"])


def test_forbidden_messages():
    assert forbidden_message(User("x"), res("list", "pods", "default")) == (
        'pods is forbidden: User "x" cannot list resource "pods" in API group "" in the '
        'namespace "default"')
    assert forbidden_message(User("x"), res("get", "nodes", name="n1")) == (
        'nodes "n1" is forbidden: User "x" cannot get resource "nodes" in API group "" at '
        'the cluster scope')
    assert forbidden_message(ANON, path("get", "/api")) == (
        'forbidden: User "system:anonymous" cannot get path "/api"')
