"""OpenAPI v3 documents for the served group-versions, built from the kinds' schemas.

`/openapi/v3` lists one document per group-version; each holds the paths
(operations tagged with `x-kubernetes-group-version-kind` and the
`fieldValidation` parameter kubectl looks for) and the component schemas that
`kubectl explain` and `kubectl apply` read.
"""
from __future__ import annotations

import hashlib

import orjson

from kcore.api import schema
from kcore.api.kinds import Kind

META = "io.k8s.apimachinery.pkg.apis.meta.v1"


def _param(name: str, where: str = "query", desc: str = "", required: bool = False,
           type_: str = "string") -> dict:
    p = {"name": name, "in": where, "description": desc, "schema": {"type": type_,
                                                                    "uniqueItems": True}}
    if required:
        p["required"] = True
    return p


Q_FIELD_VALIDATION = _param("fieldValidation", desc="fieldValidation instructs the server on "
                            "how to handle objects in the request (POST/PUT/PATCH) containing "
                            "unknown or duplicate fields. Valid values are: Ignore, Warn, "
                            "Strict.")
Q_DRY_RUN = _param("dryRun", desc="When present, indicates that modifications should not be "
                   "persisted.")
Q_FIELD_MANAGER = _param("fieldManager", desc="fieldManager is a name associated with the actor "
                         "or entity that is making these changes.")
Q_PRETTY = _param("pretty", desc="If 'true', then the output is pretty printed.")
LIST_PARAMS = [_param(n) for n in ("labelSelector", "fieldSelector", "continue",
                                   "resourceVersion", "resourceVersionMatch")] + [
    _param("limit", type_="integer"), _param("timeoutSeconds", type_="integer"),
    _param("watch", type_="boolean"), _param("allowWatchBookmarks", type_="boolean"),
    _param("sendInitialEvents", type_="boolean")]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(name: str) -> dict:
    return {"application/json": {"schema": _ref(name)},
            "application/yaml": {"schema": _ref(name)}}


def _op(action: str, k: Kind, op_id: str, schema_name: str, params: list[dict],
        body: str | None = None, patch: bool = False, code: str = "200",
        gvk: tuple[str, str, str] | None = None) -> dict:
    g, v, kind = gvk or (k.group, k.version, k.kind)
    o = {"tags": [f"{(k.group or 'core').split('.')[0]}_{k.version}"], "operationId": op_id,
         "parameters": params,
         "responses": {code: {"description": "OK", "content": _content(schema_name)},
                       "401": {"description": "Unauthorized"}},
         "x-kubernetes-action": action,
         "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": kind}}
    if body:
        if patch:
            o["requestBody"] = {"content": {
                t: {"schema": {"$ref": f"#/components/schemas/{META}.Patch"}}
                for t in ("application/apply-patch+yaml", "application/json-patch+json",
                          "application/merge-patch+json",
                          "application/strategic-merge-patch+json")}, "required": True}
        else:
            o["requestBody"] = {"content": {"*/*": {"schema": _ref(body)}}, "required": True}
    return o


def _list_schema(k: Kind) -> tuple[str, dict]:
    name = f"{k.schema}List"
    return name, {
        "type": "object", "required": ["items"],
        "description": f"{k.kind}List is a list of {k.kind} objects.",
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "items": {"type": "array", "items": {"allOf": [_ref(k.schema)]}},
            "metadata": {"allOf": [_ref(f"{META}.ListMeta")]}},
        "x-kubernetes-group-version-kind": [{"group": k.group, "version": k.version,
                                             "kind": k.list_kind}]}


def _camel(k: Kind) -> str:
    return k.kind


def document(gv: str, kinds: list[Kind]) -> dict:
    base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
    ver = gv.replace("/", "").replace(".k8s.io", "").replace(".", "")
    ver = "".join(p.capitalize() for p in gv.replace(".k8s.io", "").replace("/", ".").split(
        ".")) if gv != "v1" else "CoreV1"
    paths: dict[str, dict] = {}
    roots = [f"{META}.Status", f"{META}.DeleteOptions", f"{META}.WatchEvent",
             f"{META}.APIResourceList"]
    extra_schemas: dict[str, dict] = {
        f"{META}.Patch": {"type": "object", "description": "Patch is provided to give a "
                          "concrete name and type to the Kubernetes PATCH request body."}}
    mut = [Q_PRETTY, Q_DRY_RUN, Q_FIELD_MANAGER, Q_FIELD_VALIDATION]
    for k in kinds:
        roots.append(k.schema)
        K = _camel(k)
        nsd = "Namespaced" if k.namespaced else ""
        name_p = _param("name", "path", f"name of the {K}", True)
        ns_p = [_param("namespace", "path", "object name and auth scope", True)] \
            if k.namespaced else []
        coll = f"{base}/namespaces/{{namespace}}/{k.plural}" if k.namespaced \
            else f"{base}/{k.plural}"
        item = f"{coll}/{{name}}"
        if tuple(k.verbs) == ("create",):     # reviews: create-only, never stored
            paths[coll] = {"post": _op("post", k, f"create{ver}{nsd}{K}", k.schema,
                                       [*ns_p, *mut], body=k.schema, code="201")}
            continue
        ln, ls = _list_schema(k)
        extra_schemas[ln] = ls
        if "create" not in k.verbs:          # read-only (metrics.k8s.io): get and list
            paths[coll] = {"get": _op("list", k, f"list{ver}{nsd}{K}", ln,
                                      [*ns_p, Q_PRETTY, *LIST_PARAMS])}
            paths[item] = {"get": _op("get", k, f"read{ver}{nsd}{K}", k.schema,
                                      [name_p, *ns_p, Q_PRETTY])}
            if k.namespaced:
                paths[f"{base}/{k.plural}"] = {
                    "get": _op("list", k, f"list{ver}{K}ForAllNamespaces", ln,
                               [Q_PRETTY, *LIST_PARAMS])}
            continue
        paths[coll] = {
            "get": _op("list", k, f"list{ver}{nsd}{K}", ln, [*ns_p, Q_PRETTY, *LIST_PARAMS]),
            "post": _op("post", k, f"create{ver}{nsd}{K}", k.schema, [*ns_p, *mut],
                        body=k.schema, code="201"),
            "delete": _op("deletecollection", k, f"deleteCollection{ver}{nsd}{K}",
                          f"{META}.Status", [*ns_p, *LIST_PARAMS, Q_DRY_RUN],
                          body=f"{META}.DeleteOptions")}
        paths[item] = {
            "get": _op("get", k, f"read{ver}{nsd}{K}", k.schema, [name_p, *ns_p, Q_PRETTY]),
            "put": _op("put", k, f"replace{ver}{nsd}{K}", k.schema, [name_p, *ns_p, *mut],
                       body=k.schema),
            "patch": _op("patch", k, f"patch{ver}{nsd}{K}", k.schema,
                         [name_p, *ns_p, *mut, _param("force", type_="boolean")], body="x",
                         patch=True),
            "delete": _op("delete", k, f"delete{ver}{nsd}{K}", k.schema,
                          [name_p, *ns_p, Q_DRY_RUN, _param("gracePeriodSeconds",
                                                            type_="integer"),
                           _param("propagationPolicy")], body=f"{META}.DeleteOptions")}
        if k.namespaced:
            paths[f"{base}/{k.plural}"] = {
                "get": _op("list", k, f"list{ver}{K}ForAllNamespaces", ln,
                           [Q_PRETTY, *LIST_PARAMS])}
        subs = list(k.subresources)
        if k.plural == "serviceaccounts" and not k.group:
            subs.append("token")
        for sub in subs:
            sp = f"{item}/{sub}"
            if sub in ("status", "approval"):
                S = sub.capitalize()
                paths[sp] = {
                    "get": _op("get", k, f"read{ver}{nsd}{K}{S}", k.schema,
                               [name_p, *ns_p, Q_PRETTY]),
                    "put": _op("put", k, f"replace{ver}{nsd}{K}{S}", k.schema,
                               [name_p, *ns_p, *mut], body=k.schema),
                    "patch": _op("patch", k, f"patch{ver}{nsd}{K}{S}", k.schema,
                                 [name_p, *ns_p, *mut], body="x", patch=True)}
            elif sub == "scale":
                sc = "io.k8s.api.autoscaling.v1.Scale"
                roots.append(sc)
                g = ("autoscaling", "v1", "Scale")
                paths[sp] = {
                    "get": _op("get", k, f"read{ver}{nsd}{K}Scale", sc, [name_p, *ns_p],
                               gvk=g),
                    "put": _op("put", k, f"replace{ver}{nsd}{K}Scale", sc,
                               [name_p, *ns_p, *mut], body=sc, gvk=g),
                    "patch": _op("patch", k, f"patch{ver}{nsd}{K}Scale", sc,
                                 [name_p, *ns_p, *mut], body="x", patch=True, gvk=g)}
            elif sub == "binding":
                b = "io.k8s.api.core.v1.Binding"
                roots.append(b)
                paths[sp] = {"post": _op("post", k, f"create{ver}{nsd}{K}Binding", b,
                                         [name_p, *ns_p, *mut], body=b, code="201",
                                         gvk=("", "v1", "Binding"))}
            elif sub == "log":
                paths[sp] = {"get": {
                    "operationId": f"read{ver}{nsd}{K}Log", "tags": ["core_v1"],
                    "parameters": [name_p, *ns_p, _param("container"),
                                   _param("follow", type_="boolean"),
                                   _param("tailLines", type_="integer")],
                    "responses": {"200": {"description": "OK", "content": {
                        "text/plain": {"schema": {"type": "string"}}}}},
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1",
                                                        "kind": "Pod"}}}
            elif sub == "token":
                tr = "io.k8s.api.authentication.v1.TokenRequest"
                roots.append(tr)
                paths[sp] = {"post": _op("post", k, f"create{ver}{nsd}{K}Token", tr,
                                         [name_p, *ns_p, *mut], body=tr, code="201",
                                         gvk=("authentication.k8s.io", "v1", "TokenRequest"))}
            elif sub == "finalize":
                paths[sp] = {"put": _op("put", k, f"replace{ver}{nsd}{K}Finalize", k.schema,
                                        [name_p, *mut], body=k.schema)}
    comps = schema.openapi_components(roots)
    comps.update(extra_schemas)
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.4"},
            "paths": paths, "components": {"schemas": comps}}


class OpenAPI:
    """Documents built once per process (the kinds do not change at run time)."""

    def __init__(self, kinds: list[Kind]):
        by_gv: dict[str, list[Kind]] = {}
        for k in kinds:
            by_gv.setdefault(k.api_version, []).append(k)
        self.docs: dict[str, bytes] = {}
        self.hashes: dict[str, str] = {}
        for gv, ks in by_gv.items():
            body = orjson.dumps(document(gv, ks))
            path = "api/v1" if gv == "v1" else f"apis/{gv}"
            self.docs[path] = body
            self.hashes[path] = hashlib.sha512(body).hexdigest()[:64].upper()

    def index(self) -> dict:
        return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"}
                          for p, h in sorted(self.hashes.items())}}
