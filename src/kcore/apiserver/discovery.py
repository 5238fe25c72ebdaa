"""Legacy discovery documents (/api, /apis, /api/v1, /apis/<g>/<v>).

Served as plain application/json: kubectl asks for aggregated discovery first
and falls back to these lists when the answer is not the aggregated type.
"""
from __future__ import annotations

from collections import OrderedDict

from kcore.api.kinds import Kind

SUB_VERBS = {"status": ["get", "patch", "update"], "approval": ["get", "patch", "update"],
             "scale": ["get", "patch", "update"],
             "binding": ["create"], "log": ["get"], "finalize": ["update"]}


def _sub_kind(k: Kind, sub: str) -> tuple[str, str, str]:
    """(group, version, kind) of a subresource's body."""
    if sub == "scale":
        return "autoscaling", "v1", "Scale"
    if sub == "binding":
        return "", "", "Binding"
    if sub == "log":
        return "", "", "Pod"
    return "", "", k.kind


def resource_list(gv: str, kinds: list[Kind]) -> dict:
    res = []
    for k in sorted(kinds, key=lambda k: k.plural):
        r = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
             "kind": k.kind, "verbs": list(k.verbs)}
        if k.short_names:
            r["shortNames"] = list(k.short_names)
        if k.categories:
            r["categories"] = list(k.categories)
        res.append(r)
        for sub in k.subresources:
            g, v, kind = _sub_kind(k, sub)
            sr = {"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                  "kind": kind, "verbs": SUB_VERBS[sub]}
            if g or v:
                sr["group"], sr["version"] = g, v
            res.append(sr)
    if gv == "v1":
        res.append({"name": "bindings", "singularName": "binding", "namespaced": True,
                    "kind": "Binding", "verbs": ["create"]})
        res.append({"name": "serviceaccounts/token", "singularName": "", "namespaced": True,
                    "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                    "verbs": ["create"]})
        res.sort(key=lambda r: r["name"])
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": res}


def groups(kinds: list[Kind]) -> OrderedDict[str, list[str]]:
    out: OrderedDict[str, list[str]] = OrderedDict()
    for k in kinds:
        if k.group:
            vs = out.setdefault(k.group, [])
            if k.version not in vs:
                vs.append(k.version)
    return out


def api_group(name: str, versions: list[str]) -> dict:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs,
            "preferredVersion": vs[0]}


def api_group_list(kinds: list[Kind]) -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [api_group(g, vs) for g, vs in groups(kinds).items()]}


def api_versions(address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": address}]}


def root_paths(kinds: list[Kind]) -> dict:
    paths = ["/api", "/api/v1", "/apis", "/healthz", "/healthz/etcd", "/healthz/ping",
             "/livez", "/livez/etcd", "/livez/ping", "/metrics", "/openapi/v3", "/readyz",
             "/readyz/etcd", "/readyz/ping", "/version"]
    for g, vs in groups(kinds).items():
        paths.append(f"/apis/{g}")
        paths += [f"/apis/{g}/{v}" for v in vs]
    return {"paths": sorted(paths)}
