"""HTTP: the Kubernetes REST API on aiohttp (one process, one event loop).

Middlewares, outermost first: `observe` (Status bodies for every error,
metrics), `auth` (the authn/authz slot, see auth.py). One catch-all route
resolves the path into a RequestInfo and dispatches to discovery, health,
OpenAPI or the resource handlers, which speak to the registries.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

import orjson
import yaml
from aiohttp import web

from kcore import __version__
from kcore.api import errors as E
from kcore.api import schema
from kcore.apiserver import discovery, reviews, tables
from kcore.apiserver.auth import (
    CURRENT,
    AlwaysAllow,
    InsecureAuthenticator,
    RequestInfo,
    forbidden_message,
)
from kcore.apiserver.patch import PatchError, apply_patch, strategic_merge
from kcore.apiserver.registry import Registry

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

log = logging.getLogger("kcore.apiserver.http")

JSON = "application/json"
SERVER_KEY = web.AppKey("server", object)
AUTHN_KEY = web.AppKey("authenticator", object)
AUTHZ_KEY = web.AppKey("authorizer", object)
HANDLERS_KEY = web.AppKey("handlers", object)

VERSION = {"major": "1", "minor": "32", "emulationMajor": "1", "emulationMinor": "32",
           "minCompatibilityMajor": "1", "minCompatibilityMinor": "31",
           "gitVersion": "v1.32.4", "gitCommit": "kcore", "gitTreeState": "clean",
           "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.6", "compiler": "gc",
           "platform": "linux/amd64", "kcoreVersion": __version__}

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


def dumps(obj) -> bytes:
    return orjson.dumps(obj)


def json_response(body, status: int = 200, headers: dict | None = None) -> web.Response:
    if not isinstance(body, (bytes, bytearray)):
        body = orjson.dumps(body)
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


def status_response(err: E.ApiError) -> web.Response:
    return json_response(err.status(), err.code, err.headers or None)


# --------------------------------------------------------------------- request info --
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
         "DELETE": "delete", "HEAD": "get", "OPTIONS": "options"}


def _truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("true", "1", "t", "yes")


def request_info(request: web.Request) -> RequestInfo:
    path = request.path
    parts = [p for p in path.split("/") if p]
    verb = VERBS.get(request.method, request.method.lower())
    if not parts or parts[0] not in ("api", "apis") or len(parts) < (
            3 if parts[0] == "api" else 4):
        return RequestInfo(path=path, verb=request.method.lower())   # kube: the method
    info = RequestInfo(path=path, verb=verb)
    if parts[0] == "api":
        rest = parts[2:]
        info.api_prefix, info.version = "api", parts[1]
    else:
        rest = parts[3:]
        info.api_prefix, info.group, info.version = "apis", parts[1], parts[2]
    info.is_resource = True
    watch_prefix = False
    if rest[0] == "watch":
        watch_prefix = True
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        if rest[2] in ("status", "finalize") and len(rest) == 3:
            info.resource, info.name, info.subresource = "namespaces", rest[1], rest[2]
        else:
            info.namespace = rest[1]
            rest = rest[2:]
            info.resource = rest[0]
            if len(rest) > 1:
                info.name = rest[1]
            if len(rest) > 2:
                info.subresource = "/".join(rest[2:])
    elif rest:
        info.resource = rest[0]
        if len(rest) > 1:
            info.name = rest[1]
            if rest[0] == "namespaces":
                info.namespace = rest[1]
        if len(rest) > 2:
            info.subresource = "/".join(rest[2:])
    q = request.query
    if watch_prefix or (verb == "get" and _truthy(q.get("watch"))):
        info.verb = "watch"
    elif verb == "get" and not info.name:
        info.verb = "list"
    elif verb == "delete" and not info.name:
        info.verb = "deletecollection"
    return info


# ---------------------------------------------------------------------- middlewares --
@web.middleware
async def observe(request: web.Request, handler):
    t0 = time.perf_counter()
    info = request.get("info")          # the fast path resolved it choosing the route
    if info is None:
        info = request["info"] = request_info(request)
    try:
        resp = await handler(request)
    except E.ApiError as e:
        resp = status_response(e)
    except web.HTTPRequestEntityTooLarge:
        resp = status_response(E.too_large())
    except web.HTTPException as e:
        resp = status_response(E.ApiError(e.status, e.reason.replace(" ", ""), e.text or
                                          e.reason))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as e:
        log.exception("%s %s", request.method, request.path_qs)
        resp = status_response(E.internal(str(e) or type(e).__name__))
    server = request.app[SERVER_KEY]
    verb = info.verb.upper() if info.is_resource else request.method
    if info.verb == "watch":
        verb = "WATCH"
    elif info.verb == "list":
        verb = "LIST"
    server.metrics.observe(verb, info.group, info.version, info.resource, info.subresource,
                           resp.status, time.perf_counter() - t0)
    return resp


@web.middleware
async def auth(request: web.Request, handler):
    user = await request.app[AUTHN_KEY].authenticate(request)
    if user is None:
        raise E.ApiError(401, "Unauthorized", "Unauthorized")
    request["user"] = user
    info = request["info"]
    authorizer = request.app[AUTHZ_KEY]
    ok, reason = await authorizer.authorize(user, info)
    if not ok:
        raise E.ApiError(403, "Forbidden", forbidden_message(user, info, reason),
                         {"name": info.name, "group": info.group, "kind": info.resource}
                         if info.is_resource else {})
    token = CURRENT.set((user, authorizer))
    try:
        return await handler(request)
    finally:
        CURRENT.reset(token)


def make_app(server: APIServer, authenticator=None, authorizer=None) -> web.Application:
    """The API as an aiohttp Application; the secure port passes its own
    authenticator and authorizer."""
    app = web.Application(client_max_size=server.config.max_body_bytes,
                          middlewares=[observe, auth])
    app[SERVER_KEY] = server
    app[AUTHN_KEY] = authenticator or InsecureAuthenticator()
    app[AUTHZ_KEY] = authorizer or AlwaysAllow()
    h = Handlers(server)
    app[HANDLERS_KEY] = h
    app.router.add_route("*", "/{tail:.*}", h.dispatch)
    return app


def direct_handler(app: web.Application):
    """The application's middlewares and catch-all route as one coroutine function
    of a request (what fastpath.FastFront calls, with the same behaviour)."""
    dispatch = app[HANDLERS_KEY].dispatch

    async def inner(request):
        return await auth(request, dispatch)

    async def handle(request):
        return await observe(request, inner)
    return handle


# ------------------------------------------------------------------------- handlers --
def _not_found_path() -> E.ApiError:
    return E.ApiError(404, "NotFound", "the server could not find the requested resource", {})


class Handlers:
    def __init__(self, server: APIServer):
        self.s = server
        self._kinds = [r.kind for r in server.registries.values()] + server.review_kinds
        self._by_gv: dict[str, list] = {}
        for k in self._kinds:
            self._by_gv.setdefault(k.api_version, []).append(k)
        self._resource_lists = {gv: dumps(discovery.resource_list(gv, ks))
                                for gv, ks in self._by_gv.items()}

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        info: RequestInfo = request["info"]
        if info.is_resource:
            return await self.resource(request, info)
        parts = [p for p in request.path.split("/") if p]
        if request.method not in ("GET", "HEAD"):
            if parts and parts[0] in ("api", "apis"):
                raise E.method_not_allowed()
            raise _not_found_path()
        if not parts:
            return json_response(discovery.root_paths(self._kinds))
        head = parts[0]
        if head == "api":
            if len(parts) == 1:
                return json_response(discovery.api_versions(
                    f"{self.s.config.advertise_address}:{self.s.config.secure_port}"))
            if parts[1] in self._resource_lists:
                return json_response(self._resource_lists[parts[1]])
            raise _not_found_path()
        if head == "apis":
            if len(parts) == 1:
                return json_response(discovery.api_group_list(self._kinds))
            groups = discovery.groups(self._kinds)
            if len(parts) == 2 and parts[1] in groups:
                return json_response(discovery.api_group(parts[1], groups[parts[1]]))
            gv = "/".join(parts[1:3])
            if len(parts) == 3 and gv in self._resource_lists:
                return json_response(self._resource_lists[gv])
            raise _not_found_path()
        if head == "version" and len(parts) == 1:
            return json_response(VERSION)
        if head in ("healthz", "livez", "readyz"):
            return await self.health(request, head, parts[1:])
        if head == "metrics" and len(parts) == 1:
            return web.Response(body=self.s.metrics.render(self.s),
                                content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type": "version=0.0.4"})
        if head == "openapi":
            return self.openapi(parts[1:])
        raise _not_found_path()

    # -- health, openapi --------------------------------------------------------------
    async def health(self, request, kind: str, rest: list[str]) -> web.Response:
        checks = ["ping", "etcd"]
        if kind == "readyz":
            checks.append("informer-sync")
        if rest:
            if rest[0] not in checks:
                raise _not_found_path()
            checks = [rest[0]]
        results = []
        for c in checks:
            ok = True
            if c == "etcd":
                try:
                    await asyncio.wait_for(self.s.storage.health(), 2.0)
                except Exception as e:
                    log.warning("%s/etcd: %s", kind, e)
                    ok = False
            elif c == "informer-sync":
                ok = all(r.cache.ready.is_set() for r in self.s.registries.values())
            results.append((c, ok))
        good = all(ok for _, ok in results)
        if rest:
            body = "ok" if good else f"internal server error: {rest[0]} check failed"
        elif "verbose" in request.query or not good:
            lines = [f"[+]{c} ok" if ok else f"[-]{c} failed: reason withheld"
                     for c, ok in results]
            lines.append(f"{kind} check passed" if good else f"{kind} check failed")
            body = "\n".join(lines) + "\n"
        else:
            body = "ok"
        return web.Response(text=body, status=200 if good else 500,
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    def openapi(self, rest: list[str]) -> web.Response:
        if rest == ["v3"]:
            return json_response(self.s.openapi.index())
        if rest[:1] == ["v3"]:
            doc = self.s.openapi.docs.get("/".join(rest[1:]))
            if doc is not None:
                return json_response(doc, headers={"Cache-Control": "public, immutable"})
        raise _not_found_path()

    # -- resources --------------------------------------------------------------------
    async def resource(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        reg = self.s.registry(info.group, info.version, info.resource)
        if reg is None:
            if info.group == "metrics.k8s.io" and info.version == "v1beta1":
                return await self.s.resource_metrics.serve(request, info)
            if info.resource == "bindings" and not info.group and info.namespace and \
                    info.verb == "create" and not info.name:
                return await self.binding(request, info, self.s.registry("", "v1", "pods"))
            review = reviews.HANDLERS.get((info.group, info.version, info.resource))
            if review is not None and not info.name and not info.subresource:
                return await self.review(request, info, review)
            raise _not_found_path()
        k = reg.kind
        if info.subresource == "token" and k.plural == "serviceaccounts" and not k.group:
            if info.verb != "create":
                raise E.method_not_allowed()
            body, _ = await self._body(request)
            out = await reviews.token_request(self.s, request.get("user"), body,
                                              info.namespace, info.name)
            return json_response(out, 201)
        if info.subresource:
            if info.subresource not in k.subresources:
                raise _not_found_path()
            return await self.subresource(request, info, reg)
        if k.namespaced is False and info.namespace and info.resource != "namespaces":
            raise _not_found_path()
        verb = info.verb
        ns = info.namespace if k.namespaced else ""
        if verb == "get":
            return self.respond(request, reg, await reg.get(ns, info.name))
        if verb == "list":
            return await self.list(request, reg, info)
        if verb == "watch":
            return await self.watch(request, reg, info)
        if verb == "create":
            if info.name:
                raise E.method_not_allowed()
            return await self.create(request, reg, info)
        if verb == "update":
            return await self.update(request, reg, info)
        if verb == "patch":
            return await self.patch(request, reg, info)
        if verb == "delete":
            return await self.delete(request, reg, info)
        if verb == "deletecollection":
            return await self.delete_collection(request, reg, info)
        raise E.method_not_allowed()

    async def review(self, request, info: RequestInfo, handler) -> web.Response:
        """The create-only reviews (reviews.py): decoded body in, answer out, no storage."""
        if info.verb != "create":
            raise E.method_not_allowed()
        namespaced = info.resource == "localsubjectaccessreviews"
        if namespaced != bool(info.namespace):
            raise _not_found_path()
        body, _ = await self._body(request)
        return json_response(await handler(self.s, request.get("user"), body, info.namespace),
                             201)

    def respond(self, request, reg: Registry, obj: dict, status: int = 200,
                warnings: list[str] | None = None) -> web.Response:
        headers = _warning_headers(warnings)
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            t = tables.table(reg.kind.plural, [obj], obj["metadata"].get("resourceVersion", ""),
                             request.query.get("includeObject", "Metadata"))
            return json_response(t, status, headers)
        if accept.startswith("application/yaml"):
            return web.Response(body=yaml.safe_dump(obj, sort_keys=False).encode(),
                                status=status,
                                content_type="application/yaml", headers=headers)
        return json_response(obj, status, headers)

    # -- list and watch ---------------------------------------------------------------
    def _selectors(self, request, reg: Registry):
        q = request.query
        return reg.predicate(q.get("labelSelector", ""), q.get("fieldSelector", ""))

    async def list(self, request, reg: Registry, info: RequestInfo) -> web.Response:
        q = request.query
        pred = self._selectors(request, reg)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise E.bad_request(f"invalid limit: {q.get('limit')}") from None
        res = await reg.list(info.namespace or None, pred, max(limit, 0), q.get("continue", ""),
                             q.get("resourceVersion", ""))
        rv = str(res.rv)
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            return json_response(tables.table(reg.kind.plural, res.items, rv,
                                              q.get("includeObject", "Metadata"),
                                              cont=res.cont))
        md: dict = {"resourceVersion": rv}
        if res.cont:
            md["continue"] = res.cont
        k = reg.kind
        body = b"".join([b'{"kind":"', k.list_kind.encode(), b'","apiVersion":"',
                         k.api_version.encode(), b'","metadata":', dumps(md), b',"items":[',
                         b",".join(e.json() for e in res.entries) if res.entries is not None
                         else b",".join(_item_json(o) for o in res.items), b"]}"])
        if accept.startswith("application/yaml"):
            return web.Response(body=yaml.safe_dump(orjson.loads(body),
                                                    sort_keys=False).encode(),
                                content_type="application/yaml")
        return json_response(body)

    async def watch(self, request, reg: Registry, info: RequestInfo) -> web.StreamResponse:
        q = request.query
        pred = self._selectors(request, reg)
        rv = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents")
        initial = None if send_initial is None else _truthy(send_initial)
        try:
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else \
                self.s.config.min_request_timeout * (1 + random.random())
        except ValueError:
            raise E.bad_request("invalid timeoutSeconds") from None
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        as_table = "as=Table" in request.headers.get("Accept", "")
        include = q.get("includeObject", "Metadata")
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON,
                                                       "Cache-Control": "no-cache"})
        try:
            watcher, backlog = await reg.watch(info.namespace or None, pred, rv, initial)
        except E.ApiError as e:
            if e.code != 410:
                raise
            await resp.prepare(request)
            await resp.write(dumps({"type": "ERROR", "object": e.status()}) + b"\n")
            return resp
        k = reg.kind
        first_table = [True]

        def encode(batch) -> bytes:
            out: list = []
            if not as_table:
                for ev in batch:
                    ev.parts(out)
                return b"".join(out)
            for ev in batch:
                t = tables.table(k.plural, [ev.entry.obj], str(ev.rev), include,
                                 columns=first_table[0])
                first_table[0] = False
                out.append(dumps({"type": ev.type, "object": t}) + b"\n")
            return b"".join(out)

        def bookmark(rev: int, end: bool = False) -> bytes:
            md: dict = {"resourceVersion": str(rev)}
            if end:
                md["annotations"] = {"k8s.io/initial-events-end": "true"}
            return dumps({"type": "BOOKMARK", "object": {"kind": k.kind,
                                                         "apiVersion": k.api_version,
                                                         "metadata": md}}) + b"\n"
        task = asyncio.current_task()
        self.s.streams[task] = request
        try:
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            data = encode(backlog)
            if initial and bookmarks and send_initial is not None:
                data += bookmark(reg.cache.rev, True)
            await resp.write(data)
            deadline = time.monotonic() + timeout
            interval = self.s.config.bookmark_interval
            next_bm = time.monotonic() + interval
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(next_bm - now, 0.0))
                batch = await watcher.next_batch(wait)
                if batch is None:
                    break
                if batch:
                    await resp.write(encode(batch))
                elif bookmarks and time.monotonic() >= next_bm:
                    await resp.write(bookmark(reg.cache.rev))
                    next_bm = time.monotonic() + interval
            if watcher.overflow:
                log.info("watch of %s: client too slow, closed", k.plural)
        except (ConnectionResetError, ConnectionError):
            pass
        except BaseException:
            self.s.streams.pop(task, None)
            raise
        finally:
            watcher.close()
        try:
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError, RuntimeError):
            pass
        finally:
            self.s.streams.pop(task, None)
        return resp

    # -- bodies -----------------------------------------------------------------------
    async def _body(self, request) -> tuple[object, str]:
        raw = await request.read()
        ctype = (request.headers.get("Content-Type") or JSON).split(";")[0].strip().lower()
        if ctype == "application/vnd.kubernetes.protobuf":
            from kcore.apiserver import protobuf
            try:
                return protobuf.decode(raw), JSON
            except (protobuf.ProtobufError, UnicodeDecodeError) as e:
                raise E.ApiError(415, "UnsupportedMediaType", str(e)) from None
        if not raw.strip():
            raise E.bad_request("Object 'Kind' is missing in ''")
        if ctype in ("application/yaml", "application/apply-patch+yaml", "text/yaml",
                     "application/x-yaml"):
            try:
                return yaml.load(raw, Loader=_YAML_LOADER), ctype
            except yaml.YAMLError as e:
                raise E.bad_request(f"error converting YAML to JSON: {_one_line(e)}") from None
        try:
            return orjson.loads(raw), ctype
        except orjson.JSONDecodeError as e:
            raise E.bad_request(f"couldn't get version/kind; json parse error: {e}") from None

    def _decode(self, reg: Registry, obj, request, strict_default: str = "Warn"
                ) -> tuple[dict, list[str]]:
        """Type-check and prune against the schema; honour fieldValidation."""
        k = reg.kind
        if not isinstance(obj, dict):
            raise E.bad_request(f"{k.kind} in version \"{k.version}\" cannot be handled as a "
                                f"{k.kind}: json: cannot unmarshal {_jtype(obj)} into Go value "
                                f"of type struct")
        av, kd = obj.get("apiVersion"), obj.get("kind")
        if av is not None and av != k.api_version:
            raise E.bad_request(f"the API version in the data ({av}) does not match the "
                                f"expected API version ({k.api_version})")
        if kd is not None and kd != k.kind:
            raise E.bad_request(f"the kind in the data ({kd}) does not match the expected "
                                f"kind ({k.kind})" if av is not None else
                                f"Object 'Kind' is missing in '{_short(obj)}'")
        mode = request.query.get("fieldValidation", strict_default)
        if mode not in ("Strict", "Warn", "Ignore", ""):
            raise E.bad_request(f'fieldValidation parameter unsupported: {mode}. Must be one '
                                f'of "Ignore", "Warn", or "Strict"')
        unknown: list[str] = []
        try:
            schema.decode(obj, k.schema, unknown)
        except schema.DecodeError as e:
            raise E.bad_request(f'{k.kind} in version "{k.version}" cannot be handled as a '
                                f'{k.kind}: {e}') from None
        if unknown and mode == "Strict":
            raise E.bad_request(f'{k.kind} in version "{k.version}" cannot be handled as a '
                                f'{k.kind}: strict decoding error: '
                                + ", ".join(f'unknown field "{u}"' for u in unknown))
        warnings = [f'unknown field "{u}"' for u in unknown] if mode in ("Warn", "") else []
        return obj, warnings

    def _dry_run(self, request) -> bool:
        vals = request.query.getall("dryRun", [])
        for v in vals:
            if v != "All":
                raise E.bad_request(f'Invalid dry run value: unsupported dry run value "{v}", '
                                    f'supported values are "All"')
        return bool(vals)

    # -- writes -----------------------------------------------------------------------
    async def create(self, request, reg: Registry, info: RequestInfo) -> web.Response:
        body, _ = await self._body(request)
        obj, warnings = self._decode(reg, body, request)
        if reg.kind.namespaced and not info.namespace:
            raise E.method_not_allowed()
        out = await reg.create(obj, info.namespace, request.get("user"),
                               self._dry_run(request), share=True)
        return self.respond(request, reg, out, 201, warnings)

    async def update(self, request, reg: Registry, info: RequestInfo,
                     subresource: str = "") -> web.Response:
        body, _ = await self._body(request)
        obj, warnings = self._decode(reg, body, request)
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if md.get("name") and md["name"] != info.name:
            raise E.bad_request(f"the name of the object ({md['name']}) does not match the "
                                f"name on the URL ({info.name})")
        ns = info.namespace if reg.kind.namespaced else ""
        if reg.kind.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise E.bad_request("the namespace of the provided object does not match the "
                                "namespace sent on the request")
        rv = md.get("resourceVersion") or None
        if rv is not None:
            try:
                int(rv)
            except ValueError:
                raise E.invalid_object(reg.kind.kind, info.name, [E.invalid(
                    "metadata.resourceVersion", rv, "must be a valid resourceVersion")],
                    reg.kind.group) from None
        dry = self._dry_run(request)
        user = request.get("user")
        create = None
        if reg.kind.plural in ("endpoints", "events", "leases") and not subresource:
            def create():
                o = dict(obj)
                o.setdefault("metadata", {})["name"] = info.name
                return reg.create(o, ns, user, dry, share=True)
        out, created = await reg.update(ns, info.name, lambda cur: obj, subresource=subresource,
                                        user=user, dry_run=dry, precondition_rv=rv,
                                        create=create, share=True)
        return self.respond(request, reg, out, 201 if created else 200, warnings)

    async def patch(self, request, reg: Registry, info: RequestInfo,
                    subresource: str = "") -> web.Response:
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in PATCH_TYPES:
            raise E.unsupported_media_type(ctype)
        patch_body, _ = await self._body(request)
        k = reg.kind
        ns = info.namespace if k.namespaced else ""
        dry = self._dry_run(request)
        user = request.get("user")
        warnings: list[str] = []
        precondition = None
        if isinstance(patch_body, dict) and isinstance(patch_body.get("metadata"), dict):
            precondition = patch_body["metadata"].get("resourceVersion") or None
            if ctype == "application/apply-patch+yaml":
                precondition = None
        if ctype == "application/apply-patch+yaml":
            applied, warnings = self._decode(reg, _dc(patch_body), request, "Strict")
            pname = (applied.get("metadata") or {}).get("name")
            if pname and pname != info.name:
                raise E.bad_request(f"the name of the object ({pname}) does not match the name "
                                    f"on the URL ({info.name})")
            if not request.query.get("fieldManager"):
                raise E.bad_request("PATCH, application/apply-patch+yaml requests must "
                                    "specify a fieldManager")

            def fn(cur):
                merged = server_side_apply(cur, applied, k.schema)
                return merged

            async def create():
                o = _dc(applied)
                o.setdefault("metadata", {})["name"] = info.name
                return await reg.create(o, ns, user, dry, share=True)
            out, created = await reg.update(ns, info.name, fn, subresource=subresource,
                                            user=user, dry_run=dry,
                                            create=None if subresource else create,
                                            share=True)
            return self.respond(request, reg, out, 201 if created else 200, warnings)

        def fn(cur):
            try:
                patched = apply_patch(ctype, cur, patch_body, k.schema)
            except PatchError as e:
                raise E.ApiError(422, "Invalid", str(e)) from None
            obj, w = self._decode(reg, patched, request)
            warnings[:] = w
            return obj
        out, _ = await reg.update(ns, info.name, fn, subresource=subresource, user=user,
                                  dry_run=dry, precondition_rv=precondition, share=True)
        return self.respond(request, reg, out, 200, warnings)

    async def _delete_options(self, request) -> dict:
        opts: dict = {}
        raw = await request.read()
        if raw.strip():
            try:
                opts = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:
                    opts = yaml.safe_load(raw)
                except yaml.YAMLError as e:
                    raise E.bad_request(f"invalid DeleteOptions: {_one_line(e)}") from None
            if not isinstance(opts, dict):
                raise E.bad_request("invalid DeleteOptions")
        q = request.query
        if q.get("gracePeriodSeconds") is not None:
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise E.bad_request("invalid gracePeriodSeconds") from None
        if q.get("propagationPolicy"):
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") is not None:
            opts["orphanDependents"] = _truthy(q["orphanDependents"])
        pol = opts.get("propagationPolicy")
        if pol is not None and pol not in ("Orphan", "Foreground", "Background"):
            raise E.invalid_object("DeleteOptions", "", [E.unsupported(
                "propagationPolicy", pol, ["Foreground", "Background", "Orphan", "nil"])])
        g = opts.get("gracePeriodSeconds")
        if g is not None and (not isinstance(g, int) or isinstance(g, bool)):
            raise E.bad_request("invalid gracePeriodSeconds")
        return opts

    async def delete(self, request, reg: Registry, info: RequestInfo) -> web.Response:
        opts = await self._delete_options(request)
        ns = info.namespace if reg.kind.namespaced else ""
        obj, _ = await reg.delete(ns, info.name, opts, request.get("user"),
                                  self._dry_run(request))
        return self.respond(request, reg, obj, 200)

    async def delete_collection(self, request, reg: Registry, info: RequestInfo
                                ) -> web.Response:
        opts = await self._delete_options(request)
        pred = self._selectors(request, reg)
        ns = (info.namespace or None) if reg.kind.namespaced else None
        items = await reg.delete_collection(ns, pred, opts, request.get("user"),
                                            self._dry_run(request))
        k = reg.kind
        return json_response({"kind": k.list_kind, "apiVersion": k.api_version,
                              "metadata": {"resourceVersion": str(reg.cache.rev)},
                              "items": items})

    # -- subresources -----------------------------------------------------------------
    async def subresource(self, request, info: RequestInfo, reg: Registry):
        sub, verb = info.subresource, info.verb
        k = reg.kind
        ns = info.namespace if k.namespaced else ""
        if sub in ("status", "approval"):
            if verb == "get":
                return self.respond(request, reg, await reg.get(ns, info.name))
            if verb == "update":
                return await self.update(request, reg, info, sub)
            if verb == "patch":
                return await self.patch(request, reg, info, sub)
        elif sub == "finalize" and verb == "update":
            return await self.update(request, reg, info, "finalize")
        elif sub == "scale":
            return await self.scale(request, info, reg)
        elif sub == "binding" and verb == "create":
            return await self.binding(request, info, reg)
        elif sub == "log" and verb == "get":
            return await self.pod_log(request, info, reg)
        raise E.method_not_allowed()

    async def binding(self, request, info: RequestInfo, reg: Registry) -> web.Response:
        body, _ = await self._body(request)
        if not isinstance(body, dict):
            raise E.bad_request("invalid Binding")
        if body.get("kind") not in (None, "Binding"):
            raise E.bad_request(f"the kind in the data ({body.get('kind')}) does not match the "
                                f"expected kind (Binding)")
        unknown: list[str] = []
        try:
            schema.decode(body, "io.k8s.api.core.v1.Binding", unknown)
        except schema.DecodeError as e:
            raise E.bad_request(f'Binding in version "v1" cannot be handled as a Binding: {e}'
                                ) from None
        from kcore.api.core import validate_binding
        name = (body.get("metadata") or {}).get("name") or info.name
        if not info.name:           # POST .../bindings: the pod is named by the body
            info.name = name
        if name != info.name:
            raise E.bad_request(f"the name of the object ({name}) does not match the name on "
                                f"the URL ({info.name})")
        errs = validate_binding(body)
        if errs:
            raise E.invalid_object("Binding", name, errs)
        target = body["target"]["name"]
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        dry = self._dry_run(request)

        def bind(pod: dict) -> dict:
            md = pod["metadata"]
            if md.get("deletionTimestamp"):
                raise E.conflict("pods/binding", info.name, f"pod {info.name} is being "
                                 f"deleted, cannot be assigned to a host")
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise E.conflict("pods/binding", info.name, f"pod {info.name} is already "
                                 f"assigned to node \"{spec['nodeName']}\"")
            spec["nodeName"] = target
            if annotations:
                md.setdefault("annotations", {}).update(annotations)
            st = pod.setdefault("status", {})
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": _now()})
            st["conditions"] = conds
            return pod
        await reg.update(info.namespace, info.name, bind, subresource="binding",
                         user=request.get("user"), dry_run=dry, validate=False,
                         copy=_bind_copy, share=True)
        return json_response(E.success_status(code=201), 201)

    def _to_scale(self, reg: Registry, obj: dict) -> dict:
        from kcore.api.kinds import get_path
        from kcore.api.labels import format_selector, from_label_selector, from_map
        k = reg.kind
        spec_path, st_path = k.scale
        md = obj.get("metadata") or {}
        sel = (obj.get("spec") or {}).get("selector")
        if k.group == "apps":
            sel_s = format_selector(from_label_selector(sel) or []) if sel else ""
        else:
            sel_s = format_selector(from_map(sel)) if sel else ""
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k2: md[k2] for k2 in ("name", "namespace", "uid",
                                                   "resourceVersion", "creationTimestamp")
                             if k2 in md},
                "spec": {"replicas": int(get_path(obj, spec_path, 0) or 0)},
                "status": {"replicas": int(get_path(obj, st_path, 0) or 0),
                           "selector": sel_s}}

    async def scale(self, request, info: RequestInfo, reg: Registry) -> web.Response:
        ns = info.namespace
        verb = info.verb
        if verb == "get":
            return json_response(self._to_scale(reg, await reg.get(ns, info.name)))
        if verb not in ("update", "patch"):
            raise E.method_not_allowed()
        body, ctype = await self._body(request)
        if verb == "patch" and ctype not in PATCH_TYPES:
            raise E.unsupported_media_type(ctype)
        precondition = None
        if verb == "update":
            if not isinstance(body, dict):
                raise E.bad_request("invalid Scale")
            unknown: list[str] = []
            try:
                schema.decode(body, "io.k8s.api.autoscaling.v1.Scale", unknown)
            except schema.DecodeError as e:
                raise E.bad_request(f'Scale in version "v1" cannot be handled as a Scale: {e}'
                                    ) from None
            precondition = (body.get("metadata") or {}).get("resourceVersion") or None

        def fn(obj: dict) -> dict:
            sc = self._to_scale(reg, obj)
            if verb == "update":
                new = body
            else:
                try:
                    if ctype == "application/apply-patch+yaml":
                        new = server_side_apply(sc, body, "io.k8s.api.autoscaling.v1.Scale")
                    else:
                        new = apply_patch(ctype, sc, body, "io.k8s.api.autoscaling.v1.Scale")
                except PatchError as e:
                    raise E.ApiError(422, "Invalid", str(e)) from None
            replicas = (new.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise E.invalid_object("Scale", info.name, [E.invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")],
                    "autoscaling")
            obj.setdefault("spec", {})["replicas"] = replicas
            return obj
        out, _ = await reg.update(ns, info.name, fn, user=request.get("user"),
                                  dry_run=self._dry_run(request), precondition_rv=precondition)
        return json_response(self._to_scale(reg, out))

    async def pod_log(self, request, info: RequestInfo, reg: Registry) -> web.StreamResponse:
        from kcore.apiserver.podlogs import proxy_log
        pod = await reg.get(info.namespace, info.name)
        return await proxy_log(self.s, request, pod)


# -------------------------------------------------------------- server-side apply --
def server_side_apply(live: dict, applied: dict, defname: str) -> dict:
    """Create-or-merge: the applied configuration merged into the live object with
    strategic-merge semantics (no managed-fields ownership: fields it omits stay)."""
    return strategic_merge(live, applied, defname)


# ---------------------------------------------------------------------------- misc --
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    pass


_YAML_LOADER = _Loader


def _dc(obj):
    return orjson.loads(orjson.dumps(obj))


def _bind_copy(pod: dict) -> dict:
    """The working copy of a pod for a binding: what bind() changes is copied
    (metadata and its annotations, spec, status); containers, volumes and the rest
    stay shared with the cached object, which nothing mutates."""
    out = dict(pod)
    md = out["metadata"] = dict(pod.get("metadata") or {})
    if isinstance(md.get("annotations"), dict):
        md["annotations"] = dict(md["annotations"])
    out["spec"] = dict(pod.get("spec") or {})
    if "status" in pod:
        out["status"] = dict(pod["status"] or {})
    return out


def _item_json(o) -> bytes:
    return orjson.dumps(o)


def _warning_headers(warnings: list[str] | None) -> dict | None:
    if not warnings:
        return None
    from multidict import CIMultiDict
    h = CIMultiDict()
    for w in warnings:
        safe = w.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        h.add("Warning", '299 - "' + safe + '"')
    return h


def _jtype(v) -> str:
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "null"


def _short(obj) -> str:
    s = orjson.dumps(obj).decode()
    return s if len(s) < 200 else s[:200] + "..."


def _one_line(e) -> str:
    return " ".join(str(e).split())


def _now() -> str:
    from kcore.api.meta import rfc3339
    return rfc3339()
