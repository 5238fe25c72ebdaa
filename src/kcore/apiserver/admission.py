"""Admission: plugins that mutate or reject a write before it is stored.

`Chain.mutate` runs the mutating plugins in order (ServiceAccount,
DefaultTolerationSeconds, LimitRanger defaults); `Chain.validate` runs the
validating ones (NamespaceLifecycle, LimitRanger limits, ResourceQuota,
CertificateApproval/CertificateSigning in csradmission.py), which
may add guarded writes to the object's transaction: ResourceQuota charges its
usage in the same txn, guarded on the quota's revision, so concurrent creates
never overspend. Plugin names follow kube's `--enable-admission-plugins`.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from typing import TYPE_CHECKING

from kcore.api import errors as E
from kcore.api.quantity import QuantityError, format_quantity, is_binary, parse_quantity
from kcore.apiserver.registry import Attributes, Extras
from kcore.apiserver.storage import Cond, Put
from kcore.apiserver.stored import encode_value

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = ["NamespaceLifecycle", "LimitRanger", "ServiceAccount",
                   "DefaultTolerationSeconds", "ResourceQuota", "CertificateApproval",
                   "CertificateSigning"]
KNOWN = set(DEFAULT_PLUGINS) | {"AlwaysAdmit", "NamespaceExists", "NamespaceAutoProvision",
                                "AlwaysDeny", "SecurityContextDeny", "DenyEscalatingExec",
                                "Priority", "DefaultStorageClass", "PersistentVolumeLabel",
                                "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook",
                                "NodeRestriction", "TaintNodesByCondition",
                                "StorageObjectInUseProtection", "PodSecurity",
                                "CertificateApproval", "CertificateSigning",
                                "CertificateSubjectRestriction", "DefaultIngressClass",
                                "RuntimeClass", "ValidatingAdmissionPolicy",
                                "ClusterTrustBundleAttest", "PersistentVolumeClaimResize"}
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
MIRROR_ANN = "kubernetes.io/config.mirror"
SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def automount(spec: dict, sa: dict) -> bool:
    """The pod's automountServiceAccountToken, else the account's, else true."""
    for v in (spec.get("automountServiceAccountToken"), sa.get("automountServiceAccountToken")):
        if isinstance(v, bool):
            return v
    return True


def api_access_volume(name: str) -> dict:
    """kube's `kube-api-access-*` projected volume: a bound token, the cluster CA, the
    namespace."""
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def add_api_access_volume(spec: dict, suffix: str) -> bool:
    """Add the volume and a read-only mount at SA_MOUNT_PATH to every (init) container
    that has nothing mounted there; False when every container already has one."""
    containers = [c for key in ("initContainers", "containers")
                  for c in spec.get(key) or [] if isinstance(c, dict)]
    need = [c for c in containers
            if not any(m.get("mountPath") == SA_MOUNT_PATH for m in c.get("volumeMounts") or [])]
    if not need:
        return False
    name = f"kube-api-access-{suffix}"
    spec.setdefault("volumes", []).append(api_access_volume(name))
    for c in need:
        c.setdefault("volumeMounts", []).append(
            {"name": name, "readOnly": True, "mountPath": SA_MOUNT_PATH})
    return True


def _suffix() -> str:
    import random
    return "".join(random.choice(_SUFFIX_CHARS) for _ in range(5))


class Chain:
    def __init__(self, server: APIServer, plugins: list[str]):
        self.server = server
        self.plugins = [p for p in plugins if p]
        unknown = [p for p in self.plugins if p not in KNOWN]
        if unknown:
            raise ValueError(f"unknown admission plugin(s): {', '.join(unknown)}")
        self.enabled = set(self.plugins)
        self.quota = QuotaEvaluator(server)

    async def mutate(self, a: Attributes) -> None:
        if "AlwaysDeny" in self.enabled:
            raise E.forbidden_error(a.kind.plural, a.name, "admission control is denying all "
                                    "modifications", a.kind.group)
        if a.kind.plural != "pods" or a.op != "CREATE" or a.obj is None:
            return
        if "ServiceAccount" in self.enabled:
            await self._service_account(a)
        if "DefaultTolerationSeconds" in self.enabled:
            _default_tolerations(a.obj)
        if "LimitRanger" in self.enabled:
            await self._limit_defaults(a)

    async def validate(self, a: Attributes, extras: Extras) -> None:
        if "NamespaceLifecycle" in self.enabled or "NamespaceExists" in self.enabled:
            await self._namespace_lifecycle(a)
        if "LimitRanger" in self.enabled and a.kind.plural == "pods" and a.op == "CREATE":
            await self._limit_check(a)
        if "ResourceQuota" in self.enabled and a.kind.namespaced and not a.subresource \
                and a.op in ("CREATE", "DELETE"):
            await self.quota.admit(a, extras)
        if a.kind.plural == "certificatesigningrequests":
            from kcore.apiserver import csradmission
            await csradmission.admit(a.op, a.subresource, a.name, a.obj, a.old, self.enabled)

    # -- NamespaceLifecycle ----------------------------------------------------------
    async def _namespace_lifecycle(self, a: Attributes) -> None:
        k = a.kind
        if k.plural == "namespaces" and a.op == "DELETE" and a.name in IMMORTAL_NAMESPACES:
            raise E.forbidden_error("namespaces", a.name, "this namespace may not be deleted")
        if not k.namespaced or a.op != "CREATE":
            return
        ns_reg = self.server.registry("", "v1", "namespaces")
        ent = await ns_reg.current(ns_reg.key("", a.namespace))
        if ent is None:
            if "NamespaceAutoProvision" in self.enabled:
                await ns_reg.create({"metadata": {"name": a.namespace}}, "")
                return
            raise E.not_found("namespaces", a.namespace)
        st = (ent.obj.get("status") or {}).get("phase")
        if st == "Terminating" or (ent.obj.get("metadata") or {}).get("deletionTimestamp"):
            if k.plural == "events":
                return
            raise E.forbidden_error(k.plural, a.name, f"unable to create new content in "
                                    f"namespace {a.namespace} because it is being terminated",
                                    k.group)

    # -- ServiceAccount ---------------------------------------------------------------
    async def _service_account(self, a: Attributes) -> None:
        spec = a.obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if MIRROR_ANN in ((a.obj.get("metadata") or {}).get("annotations") or {}):
            return
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa
        spec["serviceAccount"] = sa
        reg = self.server.registry("", "v1", "serviceaccounts")
        ent = await reg.current(reg.key(a.namespace, sa))
        if ent is None:
            if sa == "default":
                return   # kcore: pods may precede the default account (no controller manager)
            raise E.forbidden_error("pods", a.name, f"error looking up service account "
                                    f"{a.namespace}/{sa}: serviceaccount \"{sa}\" not found")
        if automount(spec, ent.obj):
            add_api_access_volume(spec, _suffix())

    # -- LimitRanger ------------------------------------------------------------------
    async def _limit_ranges(self, ns: str) -> list[dict]:
        reg = self.server.registry("", "v1", "limitranges")
        await reg.fresh()
        if not reg.cache.objects:       # the usual case (twice per pod): nothing to list
            return []
        return (await reg.list(ns)).items

    async def _limit_defaults(self, a: Attributes) -> None:
        lrs = await self._limit_ranges(a.namespace)
        if not lrs:
            return
        notes = []
        for lr in lrs:
            for item in ((lr.get("spec") or {}).get("limits")) or []:
                if item.get("type") != "Container":
                    continue
                for c in (a.obj.get("spec") or {}).get("containers") or []:
                    res = c.setdefault("resources", {})
                    for part, src in (("limits", "default"), ("requests", "defaultRequest")):
                        for r, v in (item.get(src) or {}).items():
                            cur = res.setdefault(part, {})
                            if r not in cur:
                                cur[r] = v
                                notes.append(f"{r} {part[:-1]} for container {c.get('name')}")
        if notes:
            md = a.obj.setdefault("metadata", {})
            md.setdefault("annotations", {})["kubernetes.io/limit-ranger"] = (
                "LimitRanger plugin set: " + "; ".join(notes))
            from kcore.api.core import qos_class
            a.obj.setdefault("status", {})["qosClass"] = qos_class(a.obj.get("spec") or {})

    async def _limit_check(self, a: Attributes) -> None:
        lrs = await self._limit_ranges(a.namespace)
        errs = []
        for lr in lrs:
            for item in ((lr.get("spec") or {}).get("limits")) or []:
                if item.get("type") != "Container":
                    continue
                for c in (a.obj.get("spec") or {}).get("containers") or []:
                    res = c.get("resources") or {}
                    lim, req = res.get("limits") or {}, res.get("requests") or {}
                    for r, mx in (item.get("max") or {}).items():
                        if r not in lim:
                            errs.append(f"maximum {r} usage per Container is {mx}.  No limit "
                                        f"is specified")
                        elif _q(lim[r]) > _q(mx):
                            errs.append(f"maximum {r} usage per Container is {mx}, but limit "
                                        f"is {lim[r]}")
                    for r, mn in (item.get("min") or {}).items():
                        if r not in req:
                            errs.append(f"minimum {r} usage per Container is {mn}.  No request "
                                        f"is specified")
                        elif _q(req[r]) < _q(mn):
                            errs.append(f"minimum {r} usage per Container is {mn}, but request "
                                        f"is {req[r]}")
        if errs:
            msg = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
            raise E.forbidden_error("pods", a.name, msg)


def _q(v) -> Fraction:
    try:
        return parse_quantity(v)
    except QuantityError:
        return Fraction(0)


def _default_tolerations(pod: dict) -> None:
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    tols = spec.get("tolerations")
    if tols is None:
        tols = []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if any(isinstance(t, dict) and (t.get("key") == key or (not t.get("key") and
               t.get("operator") == "Exists")) and t.get("effect") in (None, "", "NoExecute")
               for t in tols):
            continue
        tols.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 300})
    spec["tolerations"] = tols


# ------------------------------------------------------------------ ResourceQuota --
def _group_suffix(kind) -> str:
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


def usage_of(kind, obj: dict) -> dict[str, Fraction]:
    """What one object counts against quota (kube's evaluators, common resources)."""
    u: dict[str, Fraction] = {f"count/{_group_suffix(kind)}": Fraction(1)}
    if kind.plural in ("pods", "services", "replicationcontrollers", "resourcequotas",
                       "secrets", "configmaps", "persistentvolumeclaims"):
        u[kind.plural] = Fraction(1)
    if kind.plural == "pods":
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return {}
        reqs: dict[str, Fraction] = {}
        lims: dict[str, Fraction] = {}
        for c in (obj.get("spec") or {}).get("containers") or []:
            res = c.get("resources") or {}
            for r, v in (res.get("requests") or {}).items():
                reqs[r] = reqs.get(r, Fraction(0)) + _q(v)
            for r, v in (res.get("limits") or {}).items():
                lims[r] = lims.get(r, Fraction(0)) + _q(v)
        for r, v in reqs.items():
            u[f"requests.{r}"] = v
            if r in ("cpu", "memory", "ephemeral-storage"):
                u[r] = v
        for r, v in lims.items():
            u[f"limits.{r}"] = v
    elif kind.plural == "services":
        spec = obj.get("spec") or {}
        t = spec.get("type")
        if t in ("NodePort", "LoadBalancer"):
            u["services.nodeports"] = Fraction(sum(1 for p in spec.get("ports") or []
                                                   if p.get("nodePort")))
        if t == "LoadBalancer":
            u["services.loadbalancers"] = Fraction(1)
    return u


def _pod_in_scope(scope: str, pod: dict) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    best = all(not ((c.get("resources") or {}).get("requests") or
                    (c.get("resources") or {}).get("limits"))
               for c in spec.get("containers") or [])
    if scope == "BestEffort":
        return best
    if scope == "NotBestEffort":
        return not best
    return True


class QuotaEvaluator:
    def __init__(self, server: APIServer):
        self.server = server

    def _reg(self):
        return self.server.registry("", "v1", "resourcequotas")

    async def usage(self, ns: str, resources: list[str], quota: dict | None = None
                    ) -> dict[str, str]:
        """Current usage in ns of the named resources, computed from the caches."""
        out: dict[str, Fraction] = {r: Fraction(0) for r in resources}
        scopes = ((quota or {}).get("spec") or {}).get("scopes") or []
        for reg in self.server.registries.values():
            k = reg.kind
            if not k.namespaced:
                continue
            counted = [r for r in resources if r == f"count/{_group_suffix(k)}" or
                       r == k.plural or (k.plural == "pods" and (
                           r.startswith("requests.") or r.startswith("limits.") or
                           r in ("cpu", "memory", "ephemeral-storage"))) or
                       (k.plural == "services" and r.startswith("services."))]
            if not counted:
                continue
            for obj in (await reg.list(ns)).items:
                if k.plural == "pods" and not all(_pod_in_scope(s, obj) for s in scopes):
                    continue
                for r, v in usage_of(k, obj).items():
                    if r in out:
                        out[r] += v
        return {r: format_quantity(v, binary=is_binary(((quota or {}).get("spec") or {}).get(
            "hard", {}).get(r))) for r, v in out.items()}

    async def admit(self, a: Attributes, extras: Extras) -> None:
        k = a.kind
        if k.plural == "resourcequotas" and a.op == "CREATE":
            pass
        reg = self._reg()
        if not reg.cache.ready.is_set() and not reg.cache.objects:
            await reg.fresh()
        prefix = reg._ns_prefix(a.namespace)
        await reg.fresh()
        quotas = reg.cache.list(prefix)
        if not quotas:
            return
        obj = a.obj if a.op == "CREATE" else a.old
        delta = usage_of(k, obj or {})
        if not delta:
            return
        sign = 1 if a.op == "CREATE" else -1
        for ent in quotas:
            q = ent.obj
            scopes = (q.get("spec") or {}).get("scopes") or []
            if k.plural == "pods" and not all(_pod_in_scope(s, obj) for s in scopes):
                continue
            if scopes and k.plural != "pods":
                continue
            st = q.get("status") or {}
            hard = st.get("hard") or (q.get("spec") or {}).get("hard") or {}
            used = dict(st.get("used") or {})
            relevant = [r for r in hard if r in delta]
            if sign > 0:
                missing = [r for r in hard if k.plural == "pods" and (
                    r.startswith("requests.") or r.startswith("limits.") or
                    r in ("cpu", "memory")) and r not in delta]
                if missing:
                    raise E.forbidden_error(k.plural, a.name, f"failed quota: "
                                            f"{q['metadata']['name']}: must specify "
                                            f"{','.join(sorted(missing))}", k.group)
            if not relevant:
                continue
            if sign > 0:
                over = [r for r in relevant if _q(used.get(r, "0")) + delta[r] > _q(hard[r])]
                if over:
                    over.sort()
                    raise E.forbidden_error(
                        k.plural, a.name,
                        f"exceeded quota: {q['metadata']['name']}, requested: "
                        + ",".join(f"{r}={format_quantity(delta[r], is_binary(hard[r]))}"
                                   for r in over)
                        + ", used: " + ",".join(f"{r}={used.get(r, '0')}" for r in over)
                        + ", limited: " + ",".join(f"{r}={hard[r]}" for r in over), k.group)
            new = reg.copy_for_write(q)
            nu = new.setdefault("status", {}).setdefault("used", {})
            new["status"].setdefault("hard", dict(hard))
            for r in relevant:
                val = _q(used.get(r, "0")) + sign * delta[r]
                if val < 0:
                    val = Fraction(0)
                nu[r] = format_quantity(val, is_binary(hard[r]) or is_binary(used.get(r)))
            if a.dry_run:
                continue
            extras.conds.append(Cond(ent.key, ent.rev))
            extras.ops.append(Put(ent.key, encode_value(new)))
            extras.touched.append((reg, ent.key))
