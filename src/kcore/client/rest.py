"""The async API client: one aiohttp session, JSON via orjson, Status → exceptions.

    async with Client(build_config(master="http://127.0.0.1:8080")) as c:
        pod = await c.get(PODS, "web-1", "default")
        pods = await c.list(PODS, "default", label_selector="app=web")   # a PodList dict
        await c.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 3}}, "default")
        async for ev in c.watch(PODS, "default", resource_version=pods["metadata"]
                                ["resourceVersion"]):
            ev.type, ev.object          # ADDED / MODIFIED / DELETED / BOOKMARK

Objects stay plain dicts (the API's JSON). Every error answer raises the
named exception of `kcore.client.errors` (NotFound, Conflict, AlreadyExists,
Forbidden, Gone, Invalid, ...); a broken connection raises TransportError.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Self

import aiohttp
import orjson

from kcore.client import errors as E
from kcore.client.config import ClientConfig, build_config
from kcore.client.flowcontrol import TokenBucket
from kcore.client.resources import NAMESPACES, PODS, Resource

log = logging.getLogger(__name__)

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class WatchEvent:
    type: str          # ADDED | MODIFIED | DELETED | BOOKMARK
    object: dict

    @property
    def resource_version(self) -> str:
        return (self.object.get("metadata") or {}).get("resourceVersion", "")


def _ns_of(obj: dict, namespace: str | None) -> str | None:
    return namespace if namespace is not None else (obj.get("metadata") or {}).get("namespace")


def _name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


class Client:
    """One connection pool to one API server. Use from one event loop; close() it
    (or `async with`). `config` is a ClientConfig or a server URL."""

    def __init__(self, config: ClientConfig | str | None = None, *,
                 session: aiohttp.ClientSession | None = None):
        if config is None:
            config = build_config()
        elif isinstance(config, str):
            config = ClientConfig(server=config.rstrip("/"))
        self.config = config
        self._session = session
        self._own_session = session is None
        self._headers = config.headers()
        self._limiter = TokenBucket(config.qps, config.burst or int(config.qps) or 1) \
            if config.qps > 0 else None

    @property
    def server(self) -> str:
        return self.config.server

    def set_token(self, token: str) -> None:
        """Use a new bearer token from the next request on (rotated credentials)."""
        self.config.token, self.config.token_file = token, ""
        self._headers = self.config.headers()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ctx = self.config.ssl_context()
            conn = aiohttp.TCPConnector(limit=0, ssl=ctx if ctx is not None else False,
                                        keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=conn, json_serialize=lambda o: orjson.dumps(o).decode(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- raw requests ---------------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: object = None, content_type: str = "application/json",
                      timeout: float | None = None) -> tuple[int, bytes]:
        """One HTTP exchange; returns (status, body bytes) for 2xx, raises otherwise.
        429s are retried after the server's Retry-After (three times); idempotent
        reads once more on a dropped keep-alive connection."""
        data = None
        headers = self._headers
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else orjson.dumps(body)
            headers = {**headers, "Content-Type": content_type}
        q = {k: _qv(v) for k, v in (params or {}).items() if v is not None and v != ""}
        url = self.config.server + path
        to = aiohttp.ClientTimeout(total=timeout or self.config.timeout, sock_connect=10)
        attempts = 0
        while True:
            attempts += 1
            if self._limiter is not None:
                await self._limiter.wait()
            try:
                async with self.session().request(method, url, params=q, data=data,
                                                  headers=headers, timeout=to) as resp:
                    raw = await resp.read()
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                if method in ("GET", "HEAD") and attempts < 3 and isinstance(
                        e, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                    await asyncio.sleep(0.05 * attempts)
                    continue
                raise E.TransportError(f"{method} {url}: {type(e).__name__}: {e}") from e
            if 200 <= status < 300:
                return status, raw
            try:
                decoded = orjson.loads(raw) if raw else ""
            except orjson.JSONDecodeError:
                decoded = raw.decode(errors="replace")
            ra = None
            try:
                ra = float(retry_after) if retry_after else None
            except ValueError:
                pass
            err = E.error_from_status(status, decoded, ra)
            if isinstance(err, E.TooManyRequests) and attempts < 4:
                await asyncio.sleep(min(err.retry_after or 1.0, 10.0))
                continue
            raise err

    async def request_json(self, method: str, path: str, *, params: dict | None = None,
                           body: object = None, content_type: str = "application/json",
                           timeout: float | None = None) -> dict:
        _, raw = await self.request(method, path, params=params, body=body,
                                    content_type=content_type, timeout=timeout)
        return orjson.loads(raw) if raw else {}

    # -- verbs ----------------------------------------------------------------------------
    async def get(self, res: Resource, name: str, namespace: str | None = None, *,
                  subresource: str | None = None) -> dict:
        return await self.request_json("GET", res.path(namespace, name, subresource))

    async def list(self, res: Resource, namespace: str | None = None, *,
                   label_selector: str = "", field_selector: str = "", limit: int = 0,
                   continue_: str = "", resource_version: str = "") -> dict:
        """One page of the list: the List object (items, metadata.resourceVersion,
        metadata.continue)."""
        return await self.request_json("GET", res.path(namespace), params={
            "labelSelector": label_selector, "fieldSelector": field_selector,
            "limit": limit or None, "continue": continue_,
            "resourceVersion": resource_version})

    async def list_all(self, res: Resource, namespace: str | None = None, *,
                       label_selector: str = "", field_selector: str = "",
                       page_size: int = 500) -> tuple[list[dict], str]:
        """Every item, paging with limit/continue. Returns (items, list resourceVersion)."""
        items: list[dict] = []
        cont = ""
        while True:
            page = await self.list(res, namespace, label_selector=label_selector,
                                   field_selector=field_selector, limit=page_size,
                                   continue_=cont)
            items.extend(page.get("items") or [])
            md = page.get("metadata") or {}
            cont = md.get("continue") or ""
            if not cont:
                return items, md.get("resourceVersion", "")

    async def create(self, res: Resource, obj: dict, namespace: str | None = None, *,
                     dry_run: bool = False, field_manager: str = "") -> dict:
        return await self.request_json(
            "POST", res.path(_ns_of(obj, namespace)), body=obj,
            params={"dryRun": "All" if dry_run else None, "fieldManager": field_manager})

    async def update(self, res: Resource, obj: dict, namespace: str | None = None, *,
                     subresource: str | None = None, dry_run: bool = False) -> dict:
        """PUT the whole object; its metadata.resourceVersion (if any) is the
        precondition, so a stale object raises Conflict."""
        return await self.request_json(
            "PUT", res.path(_ns_of(obj, namespace), _name_of(obj), subresource), body=obj,
            params={"dryRun": "All" if dry_run else None})

    async def update_status(self, res: Resource, obj: dict, namespace: str | None = None
                            ) -> dict:
        return await self.update(res, obj, namespace, subresource="status")

    async def patch(self, res: Resource, name: str, patch: object,
                    namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None, field_manager: str = "",
                    force: bool | None = None, dry_run: bool = False) -> dict:
        """patch_type: merge | strategic | json | apply (server-side apply needs
        field_manager)."""
        ctype = PATCH_TYPES.get(patch_type, patch_type)
        return await self.request_json(
            "PATCH", res.path(namespace, name, subresource), body=patch, content_type=ctype,
            params={"fieldManager": field_manager, "force": force,
                    "dryRun": "All" if dry_run else None})

    async def delete(self, res: Resource, name: str, namespace: str | None = None, *,
                     grace_period_seconds: int | None = None,
                     propagation_policy: str | None = None,
                     preconditions: dict | None = None, dry_run: bool = False) -> dict:
        """DELETE with DeleteOptions; returns what the server answers (the object, or a
        Status). preconditions: {"uid": ..., "resourceVersion": ...}."""
        opts: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if preconditions:
            opts["preconditions"] = preconditions
        if dry_run:
            opts["dryRun"] = ["All"]
        return await self.request_json("DELETE", res.path(namespace, name), body=opts)

    async def delete_collection(self, res: Resource, namespace: str | None = None, *,
                                label_selector: str = "", field_selector: str = "",
                                propagation_policy: str | None = None,
                                grace_period_seconds: int | None = None) -> dict:
        opts: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        return await self.request_json("DELETE", res.path(namespace), body=opts, params={
            "labelSelector": label_selector, "fieldSelector": field_selector})

    async def watch(self, res: Resource, namespace: str | None = None, *,
                    resource_version: str = "", label_selector: str = "",
                    field_selector: str = "", timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True, send_initial_events: bool | None = None
                    ) -> AsyncIterator[WatchEvent]:
        """Stream events until the server ends the watch (timeoutSeconds) or the
        connection breaks (TransportError). An ERROR event raises its Status as an
        exception: Gone (410) means "list again"."""
        if timeout_seconds is None:
            timeout_seconds = random.randint(300, 600)
        params = {"watch": "1", "resourceVersion": resource_version,
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None,
                  "sendInitialEvents": None if send_initial_events is None else
                  ("true" if send_initial_events else "false")}
        q = {k: _qv(v) for k, v in params.items() if v is not None and v != ""}
        url = self.config.server + res.path(namespace)
        to = aiohttp.ClientTimeout(total=None, sock_connect=10,
                                   sock_read=float(timeout_seconds) + 90.0)
        if self._limiter is not None:
            await self._limiter.wait()
        try:
            async with self.session().get(url, params=q, headers=self._headers,
                                          timeout=to) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    try:
                        decoded = orjson.loads(raw) if raw else ""
                    except orjson.JSONDecodeError:
                        decoded = raw.decode(errors="replace")
                    raise E.error_from_status(resp.status, decoded)
                buf = b""
                async for chunk in resp.content.iter_any():
                    # whole lines of this read at once (slicing the rest off after each
                    # line copied the buffer once per event)
                    lines = (buf + chunk).split(b"\n") if buf else chunk.split(b"\n")
                    buf = lines.pop()
                    for line in lines:
                        if not line.strip():
                            continue
                        ev = orjson.loads(line)
                        t, obj = ev.get("type", ""), ev.get("object") or {}
                        if t == "ERROR":
                            raise E.error_from_status(int(obj.get("code") or 500), obj)
                        yield WatchEvent(t, obj)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise E.TransportError(f"watch {url}: {type(e).__name__}: {e}") from e

    # -- subresources and conveniences ----------------------------------------------------
    async def bind(self, namespace: str, pod_name: str, node_name: str,
                   uid: str | None = None) -> dict:
        """POST pods/<name>/binding (what the scheduler does)."""
        body: dict = {"apiVersion": "v1", "kind": "Binding",
                      "metadata": {"name": pod_name, "namespace": namespace},
                      "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        if uid:
            body["metadata"]["uid"] = uid
        return await self.request_json("POST", PODS.path(namespace, pod_name, "binding"),
                                       body=body)

    async def get_scale(self, res: Resource, name: str, namespace: str) -> dict:
        return await self.get(res, name, namespace, subresource="scale")

    async def scale(self, res: Resource, name: str, namespace: str, replicas: int) -> dict:
        return await self.patch(res, name, {"spec": {"replicas": replicas}}, namespace,
                                subresource="scale")

    async def evict(self, namespace: str, name: str, delete_options: dict | None = None
                    ) -> dict:
        """POST pods/<name>/eviction (policy/v1 Eviction). A server without the
        subresource answers NotFound/MethodNotAllowed; callers may then delete."""
        body: dict = {"apiVersion": "policy/v1", "kind": "Eviction",
                      "metadata": {"name": name, "namespace": namespace}}
        if delete_options:
            body["deleteOptions"] = delete_options
        return await self.request_json("POST", PODS.path(namespace, name, "eviction"),
                                       body=body)

    async def finalize_namespace(self, ns: dict) -> dict:
        """PUT namespaces/<name>/finalize with the object's spec.finalizers."""
        return await self.request_json("PUT", NAMESPACES.path(None, _name_of(ns), "finalize"),
                                       body=ns)

    def resource(self, res: Resource, namespace: str | None = None) -> ResourceClient:
        return ResourceClient(self, res, namespace)


class ResourceClient:
    """A client bound to one resource (and namespace): `c.resource(PODS, "ns").get("x")`."""

    def __init__(self, client: Client, res: Resource, namespace: str | None):
        self.client, self.res, self.namespace = client, res, namespace

    async def get(self, name: str, **kw) -> dict:
        return await self.client.get(self.res, name, self.namespace, **kw)

    async def list(self, **kw) -> dict:
        return await self.client.list(self.res, self.namespace, **kw)

    async def create(self, obj: dict, **kw) -> dict:
        return await self.client.create(self.res, obj, self.namespace, **kw)

    async def update(self, obj: dict, **kw) -> dict:
        return await self.client.update(self.res, obj, self.namespace, **kw)

    async def update_status(self, obj: dict) -> dict:
        return await self.client.update_status(self.res, obj, self.namespace)

    async def patch(self, name: str, patch: object, **kw) -> dict:
        return await self.client.patch(self.res, name, patch, self.namespace, **kw)

    async def delete(self, name: str, **kw) -> dict:
        return await self.client.delete(self.res, name, self.namespace, **kw)

    def watch(self, **kw) -> AsyncIterator[WatchEvent]:
        return self.client.watch(self.res, self.namespace, **kw)


def _qv(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


