"""RBAC: rules of Roles/ClusterRoles granted through (Cluster)RoleBindings.

- `Index` (pure): built from the four kinds' objects; answers "which rules
  does this user have in this namespace" and "is this request allowed", with
  kube's matching (`*` wildcards, `resource/subresource`, `*/subresource`,
  resourceNames, nonResourceURLs with a trailing `*`) and ClusterRole
  aggregation (aggregationRule selectors, computed when the index is built).
- `RBACAuthorizer`: an Index over the registries' watch caches, rebuilt when
  any of them moved; a member of the authorizer chain.
- `EscalationHooks`: kube's escalation prevention on writes of the four kinds:
  a user may only write a role whose rules they hold (or with `escalate`), and
  only bind a role whose rules they hold (or with `bind`).
- `CLUSTER_ROLES` / `CLUSTER_ROLE_BINDINGS`: the default policy kube bootstraps
  (cluster-admin for system:masters, admin/edit/view, discovery, basic-user...).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kcore.api import errors as E
from kcore.api import labels as L
from kcore.api.rbac import GROUP
from kcore.apiserver import tables
from kcore.apiserver.auth import (
    ALLOW,
    AUTHENTICATED,
    CURRENT,
    MASTERS,
    NO_OPINION,
    UNAUTHENTICATED,
    DecidingAuthorizer,
    RequestInfo,
    Rules,
    User,
)
from kcore.apiserver.hooks import Hooks
from kcore.apiserver.serviceaccount import username as sa_username

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

log = logging.getLogger(__name__)

PLURALS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")


# -------------------------------------------------------------------- rule matching --
def verb_matches(rule: dict, verb: str) -> bool:
    vs = rule.get("verbs") or ()
    return "*" in vs or verb in vs


def group_matches(rule: dict, group: str) -> bool:
    gs = rule.get("apiGroups") or ()
    return "*" in gs or group in gs


def resource_matches(rule: dict, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or ():
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def name_matches(rule: dict, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def url_matches(rule: dict, path: str) -> bool:
    for u in rule.get("nonResourceURLs") or ():
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: dict, info: RequestInfo) -> bool:
    if not verb_matches(rule, info.verb):
        return False
    if info.is_resource:
        return (group_matches(rule, info.group)
                and resource_matches(rule, info.resource, info.subresource)
                and name_matches(rule, info.name))
    return url_matches(rule, info.path)


def _atoms(rule: dict):
    """A rule broken into single (verb, group, resource, name) / (verb, url) grants."""
    verbs = rule.get("verbs") or []
    urls = rule.get("nonResourceURLs") or []
    for v in verbs:
        for u in urls:
            yield {"verbs": [v], "nonResourceURLs": [u]}
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                names = rule.get("resourceNames") or [None]
                for n in names:
                    a = {"verbs": [v], "apiGroups": [g], "resources": [r]}
                    if n is not None:
                        a["resourceNames"] = [n]
                    yield a


def _covers_atom(owner: dict, atom: dict) -> bool:
    """kube's ruleCovers for one broken-down grant: wildcards only on the owner's side."""
    if not verb_matches(owner, atom["verbs"][0]):
        return False
    if "nonResourceURLs" in atom:
        if owner.get("resourceNames"):
            return False
        return url_matches(owner, atom["nonResourceURLs"][0])
    if not group_matches(owner, atom["apiGroups"][0]):
        return False
    res = atom["resources"][0]
    have = owner.get("resources") or ()
    if "*" not in have and res not in have:
        if "/" not in res or "*/" + res.split("/", 1)[1] not in have:
            return False
    owner_names = owner.get("resourceNames") or []
    if not owner_names:
        return True
    names = atom.get("resourceNames")
    return bool(names) and names[0] in owner_names


def uncovered(owner_rules: list[dict], requested: list[dict]) -> list[dict]:
    """The grants in `requested` that no rule of `owner_rules` covers."""
    out = []
    for rule in requested:
        for atom in _atoms(rule):
            if not any(_covers_atom(o, atom) for o in owner_rules):
                out.append(atom)
    return out


def compact(rule: dict) -> str:
    """kube's PolicyRule compact form, as escalation errors print it."""
    parts = []
    for key, label in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                       ("resourceNames", "ResourceNames"), ("nonResourceURLs",
                                                             "NonResourceURLs"),
                       ("verbs", "Verbs")):
        if rule.get(key):
            parts.append(f"{label}:[" + " ".join(f'"{v}"' for v in rule[key]) + "]")
    return "{" + ", ".join(parts) + "}"


# ---------------------------------------------------------------------------- index --
@dataclass
class Grant:
    rule: dict
    source: str          # 'ClusterRoleBinding "x" of ClusterRole "y"'


def _subject_keys(subject: dict, binding_ns: str) -> str | None:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return "u:" + name
    if kind == "Group":
        return "g:" + name
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return ("u:" + sa_username(ns, name)) if ns and name else None
    return None


def _user_keys(user: User) -> list[str]:
    return ["u:" + user.name] + ["g:" + g for g in user.groups]


@dataclass
class Index:
    cluster_rules: dict[str, list[dict]] = field(default_factory=dict)   # name -> rules
    role_rules: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    cluster_bindings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    ns_bindings: dict[str, dict[str, list[tuple[str, str, str]]]] = field(default_factory=dict)

    @classmethod
    def build(cls, roles: list[dict], cluster_roles: list[dict], role_bindings: list[dict],
              cluster_role_bindings: list[dict]) -> Index:
        ix = cls()
        by_name = {(o.get("metadata") or {}).get("name", ""): o for o in cluster_roles}
        for name in by_name:
            ix.cluster_rules[name] = _aggregated(name, by_name, set())
        for o in roles:
            md = o.get("metadata") or {}
            ix.role_rules[(md.get("namespace", ""), md.get("name", ""))] = \
                [r for r in o.get("rules") or [] if isinstance(r, dict)]
        for o in cluster_role_bindings:
            md, ref = o.get("metadata") or {}, o.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole":
                continue
            for s in o.get("subjects") or []:
                k = _subject_keys(s, "") if isinstance(s, dict) else None
                if k:
                    ix.cluster_bindings.setdefault(k, []).append((md.get("name", ""),
                                                                  ref.get("name", "")))
        for o in role_bindings:
            md, ref = o.get("metadata") or {}, o.get("roleRef") or {}
            ns = md.get("namespace", "")
            if ref.get("kind") not in ("Role", "ClusterRole"):
                continue
            for s in o.get("subjects") or []:
                k = _subject_keys(s, ns) if isinstance(s, dict) else None
                if k:
                    ix.ns_bindings.setdefault(ns, {}).setdefault(k, []).append(
                        (md.get("name", ""), ref["kind"], ref.get("name", "")))
        return ix

    def grants(self, user: User, namespace: str):
        """Every rule the user holds in `namespace` ("" : cluster-wide only)."""
        keys = _user_keys(user)
        for k in keys:
            for bname, role in self.cluster_bindings.get(k, ()):
                src = f'ClusterRoleBinding "{bname}" of ClusterRole "{role}" to {_who(k)}'
                for r in self.cluster_rules.get(role, ()):
                    yield Grant(r, src)
        if not namespace:
            return
        nsb = self.ns_bindings.get(namespace)
        if not nsb:
            return
        for k in keys:
            for bname, kind, role in nsb.get(k, ()):
                rules = (self.role_rules.get((namespace, role), ()) if kind == "Role"
                         else self.cluster_rules.get(role, ()))
                src = (f'RoleBinding "{bname}/{namespace}" of {kind} "{role}" to {_who(k)}')
                for r in rules:
                    yield Grant(r, src)

    def decide(self, user: User, info: RequestInfo) -> tuple[bool, str]:
        for g in self.grants(user, info.namespace if info.is_resource else ""):
            if rule_allows(g.rule, info):
                return True, f"RBAC: allowed by {g.source}"
        return False, ""

    def rules(self, user: User, namespace: str) -> list[dict]:
        return [g.rule for g in self.grants(user, namespace)]


def _who(key: str) -> str:
    return ("User" if key.startswith("u:") else "Group") + f' "{key[2:]}"'


def _aggregated(name: str, by_name: dict[str, dict], seen: set[str]) -> list[dict]:
    o = by_name.get(name)
    if o is None:
        return []
    agg = o.get("aggregationRule")
    own = [r for r in o.get("rules") or [] if isinstance(r, dict)]
    if not isinstance(agg, dict):
        return own
    seen = seen | {name}
    out: list[dict] = []
    for sel in agg.get("clusterRoleSelectors") or []:
        try:
            reqs = L.from_label_selector(sel)
        except L.SelectorError:
            continue
        for other, oo in sorted(by_name.items()):
            if other in seen or not L.matches(reqs, (oo.get("metadata") or {}).get("labels")):
                continue
            for r in _aggregated(other, by_name, seen):
                if r not in out:
                    out.append(r)
    return out or own


# ----------------------------------------------------------------------- authorizer --
class RBACAuthorizer(DecidingAuthorizer):
    def __init__(self, server: APIServer):
        self.server = server
        self._revs: tuple = ()
        self._index = Index()

    def _regs(self):
        return [self.server.registry(GROUP, "v1", p) for p in PLURALS]

    async def index(self) -> Index:
        regs = self._regs()
        for r in regs:
            await r.fresh()
        revs = tuple(r.cache.rev for r in regs)
        if revs != self._revs:
            objs = [[e.obj for e in r.cache.list()] for r in regs]
            self._index = Index.build(*objs)
            self._revs = revs
        return self._index

    async def decide(self, user: User, info: RequestInfo) -> tuple[str, str]:
        ok, reason = (await self.index()).decide(user, info)
        return (ALLOW, reason) if ok else (NO_OPINION, "")

    async def rules_for(self, user: User, namespace: str) -> Rules:
        res, non = [], []
        for r in (await self.index()).rules(user, namespace):
            if r.get("nonResourceURLs"):
                non.append({"verbs": list(r.get("verbs") or []),
                            "nonResourceURLs": list(r["nonResourceURLs"])})
            else:
                rr = {"verbs": list(r.get("verbs") or []),
                      "apiGroups": list(r.get("apiGroups") or []),
                      "resources": list(r.get("resources") or [])}
                if r.get("resourceNames"):
                    rr["resourceNames"] = list(r["resourceNames"])
                res.append(rr)
        return Rules(tuple(res), tuple(non))


# ----------------------------------------------------------- escalation prevention --
class EscalationHooks(Hooks):
    """Writes of roles and bindings by a user who does not hold what they grant
    are Forbidden, unless the chain allows `escalate` (roles) or `bind` (bindings)."""

    def __init__(self, rbac: RBACAuthorizer):
        self.rbac = rbac

    async def before_create(self, reg, obj: dict, extras) -> None:
        await self._check(reg, obj, None)

    async def before_update(self, reg, new: dict, old: dict, extras) -> None:
        await self._check(reg, new, old)

    async def _check(self, reg, obj: dict, old: dict | None) -> None:
        cur = CURRENT.get()
        if cur is None:
            return
        user, chain = cur
        if MASTERS in user.groups:
            return
        plural = reg.kind.plural
        md = obj.get("metadata") or {}
        ns = md.get("namespace", "") if reg.kind.namespaced else ""
        name = md.get("name", "")
        if plural in ("roles", "clusterroles"):
            rules = [r for r in obj.get("rules") or [] if isinstance(r, dict)]
            if old is not None and rules == (old.get("rules") or []):
                return
            if await _allowed(chain, user, "escalate", plural, ns, name):
                return
        else:
            ref = obj.get("roleRef") or {}
            rplural = "roles" if ref.get("kind") == "Role" else "clusterroles"
            if await _allowed(chain, user, "bind", rplural, ns, ref.get("name", "")):
                return
            ix = await self.rbac.index()
            rules = (ix.role_rules.get((ns, ref.get("name", "")), []) if rplural == "roles"
                     else ix.cluster_rules.get(ref.get("name", ""), []))
        owner = (await self.rbac.index()).rules(user, ns)
        missing = uncovered(owner, rules)
        if missing:
            groups = " ".join(f'"{g}"' for g in user.groups)
            raise E.forbidden_error(plural, name, f'user "{user.name}" (groups=[{groups}]) is '
                                    f"attempting to grant RBAC permissions not currently held:\n"
                                    + "\n".join(compact(r) for r in missing), GROUP)


async def _allowed(chain, user: User, verb: str, plural: str, ns: str, name: str) -> bool:
    info = RequestInfo(path="", verb=verb, is_resource=True, api_prefix="apis", group=GROUP,
                       version="v1", namespace=ns, resource=plural, name=name)
    ok, _ = await chain.authorize(user, info)
    return ok


# ------------------------------------------------------------------- default policy --
READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
READ_WRITE = READ + WRITE


def rule(verbs: list[str], groups: list[str], resources: list[str],
         names: list[str] | None = None) -> dict:
    r = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        r["resourceNames"] = list(names)
    return r


def url_rule(verbs: list[str], urls: list[str]) -> dict:
    return {"verbs": list(verbs), "nonResourceURLs": list(urls)}


def _agg(label: str) -> dict:
    return {"clusterRoleSelectors": [{"matchLabels": {
        f"rbac.authorization.k8s.io/aggregate-to-{label}": "true"}}]}


_AGG_ADMIN = {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}
_AGG_EDIT = {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}
_AGG_VIEW = {"rbac.authorization.k8s.io/aggregate-to-view": "true"}

CORE, APPS, AUTHN, AUTHZ = "", "apps", "authentication.k8s.io", "authorization.k8s.io"
COORD = "coordination.k8s.io"
CERTS = "certificates.k8s.io"
EVENTS_RULE = rule(["create", "update", "patch"], [CORE, "events.k8s.io"], ["events"])

# name -> (labels, rules, aggregationRule)
CLUSTER_ROLES: dict[str, tuple[dict, list[dict], dict | None]] = {
    "cluster-admin": ({}, [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])], None),
    "system:discovery": ({}, [url_rule(["get"], [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
        "/readyz", "/version", "/version/"])], None),
    "system:monitoring": ({}, [url_rule(["get"], [
        "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/readyz",
        "/readyz/*"])], None),
    "system:basic-user": ({}, [
        rule(["create"], [AUTHZ], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
        rule(["create"], [AUTHN], ["selfsubjectreviews"])], None),
    "system:public-info-viewer": ({}, [url_rule(["get"], [
        "/healthz", "/livez", "/readyz", "/version", "/version/"])], None),
    "admin": ({}, [], _agg("admin")),
    "edit": (dict(_AGG_ADMIN), [], _agg("edit")),
    "view": (dict(_AGG_EDIT), [], _agg("view")),
    "system:aggregate-to-admin": (dict(_AGG_ADMIN), [
        rule(["create"], [AUTHZ], ["localsubjectaccessreviews"]),
        rule(READ_WRITE, [GROUP], ["rolebindings", "roles"])], None),
    "system:aggregate-to-edit": (dict(_AGG_EDIT), [
        rule(READ, [CORE], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy",
                            "secrets", "services/proxy"]),
        rule(["impersonate"], [CORE], ["serviceaccounts"]),
        rule(WRITE, [CORE], ["pods", "pods/attach", "pods/exec", "pods/portforward",
                             "pods/proxy"]),
        rule(["create"], [CORE], ["pods/eviction"]),
        rule(WRITE, [CORE], ["configmaps", "events", "persistentvolumeclaims",
                             "replicationcontrollers", "replicationcontrollers/scale", "secrets",
                             "serviceaccounts", "services", "services/proxy"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        rule(WRITE, [APPS], ["daemonsets", "deployments", "deployments/rollback",
                             "deployments/scale", "replicasets", "replicasets/scale",
                             "statefulsets", "statefulsets/scale"]),
        rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
        rule(WRITE, [COORD], ["leases"])], None),
    "system:aggregate-to-view": (dict(_AGG_VIEW), [
        rule(READ, [CORE], ["configmaps", "endpoints", "persistentvolumeclaims",
                            "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                            "replicationcontrollers/scale", "serviceaccounts", "services",
                            "services/status"]),
        rule(READ, [CORE], ["bindings", "events", "limitranges", "namespaces/status",
                            "pods/log", "pods/status", "replicationcontrollers/status",
                            "resourcequotas", "resourcequotas/status"]),
        rule(READ, [CORE], ["namespaces"]),
        rule(READ, [APPS], ["controllerrevisions", "daemonsets", "daemonsets/status",
                            "deployments", "deployments/scale", "deployments/status",
                            "replicasets", "replicasets/scale", "replicasets/status",
                            "statefulsets", "statefulsets/scale", "statefulsets/status"]),
        rule(READ, ["autoscaling"], ["horizontalpodautoscalers",
                                     "horizontalpodautoscalers/status"]),
        rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        rule(READ, [COORD], ["leases"])], None),
    "system:aggregated-metrics-reader": ({**_AGG_VIEW, **_AGG_EDIT, **_AGG_ADMIN}, [
        rule(["get", "list", "watch"], ["metrics.k8s.io"], ["nodes", "pods"])], None),
    "system:auth-delegator": ({}, [rule(["create"], [AUTHN], ["tokenreviews"]),
                                   rule(["create"], [AUTHZ], ["subjectaccessreviews"])], None),
    "system:node": ({}, [
        rule(["create"], [AUTHN], ["tokenreviews"]),
        rule(["create"], [AUTHZ], ["localsubjectaccessreviews", "subjectaccessreviews"]),
        rule(READ, [CORE], ["services"]),
        rule(["create", "get", "list", "watch"], [CORE], ["nodes"]),
        rule(["patch", "update"], [CORE], ["nodes/status"]),
        rule(["patch", "update"], [CORE], ["nodes"]),
        rule(["create", "patch", "update"], [CORE, "events.k8s.io"], ["events"]),
        rule(READ, [CORE], ["pods"]),
        rule(["create", "delete"], [CORE], ["pods"]),
        rule(["patch", "update"], [CORE], ["pods/status"]),
        rule(READ, [CORE], ["configmaps", "secrets"]),
        rule(["get"], [CORE], ["endpoints", "persistentvolumeclaims", "persistentvolumes"]),
        rule(["create", "delete", "get", "patch", "update"], [COORD], ["leases"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        rule(["create", "get", "list", "watch"], [CERTS], ["certificatesigningrequests"])],
        None),
    "system:node-bootstrapper": ({}, [
        rule(["create", "get", "list", "watch"], [CERTS], ["certificatesigningrequests"])],
        None),
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": ({}, [
        rule(["create"], [CERTS], ["certificatesigningrequests/nodeclient"])], None),
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": ({}, [
        rule(["create"], [CERTS], ["certificatesigningrequests/selfnodeclient"])], None),
    "system:node-proxier": ({}, [
        rule(["list", "watch"], [CORE], ["endpoints", "services"]),
        rule(READ, [CORE], ["nodes"]), EVENTS_RULE,
        rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"])], None),
    "system:kube-scheduler": ({}, [
        EVENTS_RULE,
        rule(["create"], [COORD], ["leases"]),
        rule(["get", "update"], [COORD], ["leases"], ["kube-scheduler"]),
        rule(READ, [CORE], ["nodes"]),
        rule(["delete", "get", "list", "watch"], [CORE], ["pods"]),
        rule(["create"], [CORE], ["bindings", "pods/binding"]),
        rule(["patch", "update"], [CORE], ["pods/status"]),
        rule(READ, [CORE], ["replicationcontrollers", "services"]),
        rule(READ, [APPS, "extensions"], ["replicasets"]),
        rule(READ, [APPS], ["statefulsets"]),
        rule(READ, [CORE], ["persistentvolumeclaims", "persistentvolumes"]),
        rule(["create"], [AUTHN], ["tokenreviews"]),
        rule(["create"], [AUTHZ], ["subjectaccessreviews"]),
        rule(READ, [CORE], ["namespaces"])], None),
    "system:kube-controller-manager": ({}, [
        EVENTS_RULE,
        rule(["create"], [COORD], ["leases"]),
        rule(["get", "update"], [COORD], ["leases"], ["kube-controller-manager"]),
        rule(["create"], [CORE], ["secrets", "serviceaccounts"]),
        rule(["delete"], [CORE], ["secrets"]),
        rule(["get"], [CORE], ["configmaps", "namespaces", "secrets", "serviceaccounts"]),
        rule(["update"], [CORE], ["secrets", "serviceaccounts"]),
        rule(["create"], [AUTHN], ["tokenreviews"]),
        rule(["create"], [AUTHZ], ["subjectaccessreviews"]),
        rule(["list", "watch"], ["*"], ["*"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        # kcore: csrapproving and csrsigning may run as the manager itself
        rule(["update"], [CERTS], ["certificatesigningrequests/approval",
                                   "certificatesigningrequests/status"]),
        rule(["approve"], [CERTS], ["signers"], ["kubernetes.io/kube-apiserver-client-kubelet"]),
        rule(["sign"], [CERTS], ["signers"], ["kubernetes.io/kube-apiserver-client",
                                              "kubernetes.io/kube-apiserver-client-kubelet",
                                              "kubernetes.io/kubelet-serving"])], None),
}

# name -> (role, subjects as (kind, name))
CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "cluster-admin": ("cluster-admin", [("Group", MASTERS)]),
    "system:monitoring": ("system:monitoring", [("Group", "system:monitoring")]),
    "system:discovery": ("system:discovery", [("Group", AUTHENTICATED)]),
    "system:basic-user": ("system:basic-user", [("Group", AUTHENTICATED)]),
    "system:public-info-viewer": ("system:public-info-viewer",
                                  [("Group", AUTHENTICATED), ("Group", UNAUTHENTICATED)]),
    "system:node-proxier": ("system:node-proxier", [("User", "system:kube-proxy")]),
    "system:kube-scheduler": ("system:kube-scheduler", [("User", "system:kube-scheduler")]),
    "system:kube-controller-manager": ("system:kube-controller-manager",
                                       [("User", "system:kube-controller-manager")]),
}

_META = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def default_cluster_roles() -> list[dict]:
    """The ClusterRoles as stored, aggregated rules filled in (what kube's
    aggregation controller would write)."""
    objs = []
    for name, (labels, rules, agg) in CLUSTER_ROLES.items():
        o = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
             "metadata": {"name": name, "labels": {**_META["labels"], **labels},
                          "annotations": dict(_META["annotations"])},
             "rules": [dict(r) for r in rules]}
        if agg is not None:
            o["aggregationRule"] = agg
        objs.append(o)
    ix = Index.build([], objs, [], [])
    for o in objs:
        if "aggregationRule" in o:
            o["rules"] = ix.cluster_rules[o["metadata"]["name"]]
    return objs


def default_cluster_role_bindings() -> list[dict]:
    return [{"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": name, "labels": dict(_META["labels"]),
                          "annotations": dict(_META["annotations"])},
             "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
             "subjects": [{"kind": k, "apiGroup": GROUP, "name": n} for k, n in subjects]}
            for name, (role, subjects) in CLUSTER_ROLE_BINDINGS.items()]


async def bootstrap(server: APIServer) -> None:
    """Create the default policy objects that are missing (never overwrites)."""
    crs = server.registry(GROUP, "v1", "clusterroles")
    crbs = server.registry(GROUP, "v1", "clusterrolebindings")
    for reg, objs in ((crs, default_cluster_roles()), (crbs, default_cluster_role_bindings())):
        for o in objs:
            try:
                await reg.create(o, "")
            except E.ApiError as e:
                if e.code != 409:
                    raise


# ------------------------------------------------------------------------- printers --
def _binding_row(o: dict, now: float) -> list:
    md = o.get("metadata") or {}
    ref = o.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in o.get("subjects") or []:
        k = s.get("kind")
        if k == "User":
            users.append(s.get("name", ""))
        elif k == "Group":
            groups.append(s.get("name", ""))
        elif k == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return [md.get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            tables._since(md.get("creationTimestamp"), now), ", ".join(users),
            ", ".join(groups), ", ".join(sas)]


BINDING_COLS = [tables.NAME, tables.col("Role", desc="RoleRef is the reference to the role."),
                tables.AGE, tables.col("Users", desc="Users in the binding", priority=1),
                tables.col("Groups", desc="Groups in the binding", priority=1),
                tables.col("ServiceAccounts", desc="ServiceAccounts in the binding",
                           priority=1)]
tables.PRINTERS.setdefault("rolebindings", (BINDING_COLS, _binding_row))
tables.PRINTERS.setdefault("clusterrolebindings", (BINDING_COLS, _binding_row))


# ------------------------------------------------------ protobuf bodies (kubectl create) --
def _register_protobuf() -> None:
    from kcore.apiserver import protobuf as pb
    pb.MESSAGES.update({
        "PolicyRule": {1: ("verbs", "rs"), 2: ("apiGroups", "rs"), 3: ("resources", "rs"),
                       4: ("resourceNames", "rs"), 5: ("nonResourceURLs", "rs")},
        "AggregationRule": {1: ("clusterRoleSelectors", "rm:LabelSelector")},
        "Role": {1: ("metadata", "m:ObjectMeta"), 2: ("rules", "rm:PolicyRule")},
        "ClusterRole": {1: ("metadata", "m:ObjectMeta"), 2: ("rules", "rm:PolicyRule"),
                        3: ("aggregationRule", "m:AggregationRule")},
        "Subject": {1: ("kind", "s"), 2: ("apiGroup", "s"), 3: ("name", "s"),
                    4: ("namespace", "s")},
        "RoleRef": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
        "RoleBinding": {1: ("metadata", "m:ObjectMeta"), 2: ("subjects", "rm:Subject"),
                        3: ("roleRef", "m:RoleRef")},
        "ClusterRoleBinding": {1: ("metadata", "m:ObjectMeta"), 2: ("subjects", "rm:Subject"),
                               3: ("roleRef", "m:RoleRef")},
    })
    pb.TOP.update({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})


_register_protobuf()
