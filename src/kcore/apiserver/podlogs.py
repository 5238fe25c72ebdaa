"""pods/log: proxied to the kubelet of the pod's node.

The kubelet endpoint comes from the Node (kubelet_endpoint.py); the kubelet serves
GET /containerLogs/<ns>/<pod>/<container> (plain HTTP in kcore). Without a
kubelet to ask, the answer is a Status, not an empty log.
"""
from __future__ import annotations

import aiohttp
from aiohttp import web

from kcore.api import errors as E
from kcore.apiserver.kubelet_endpoint import kubelet_address, kubelet_url


def _container(pod: dict, name: str | None) -> str:
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in (spec.get("containers") or [])]
    inits = [c.get("name") for c in (spec.get("initContainers") or [])]
    pname = pod["metadata"]["name"]
    if name:
        if name not in names and name not in inits:
            raise E.bad_request(f"container {name} is not valid for pod {pname}")
        return name
    if len(names) == 1:
        return names[0]
    raise E.bad_request(f"a container name must be specified for pod {pname}, choose one of: "
                        f"[{' '.join(names)}]" + (f" or one of the init containers: "
                                                  f"[{' '.join(inits)}]" if inits else ""))


async def proxy_log(server, request: web.Request, pod: dict) -> web.StreamResponse:
    q = request.query
    md = pod["metadata"]
    container = _container(pod, q.get("container"))
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise E.bad_request(f'container "{container}" in pod "{md["name"]}" is waiting to '
                            f'start: ContainerCreating')
    nodes = server.registry("", "v1", "nodes")
    ent = await nodes.current(nodes.key("", node_name))
    node = ent.obj if ent is not None else None
    addr = kubelet_address(node)
    if addr is None:
        raise E.ApiError(404, "NotFound", f'the kubelet of node "{node_name}" is not reachable '
                         f'(no kubelet endpoint): no logs for pod "{md["name"]}"',
                         {"name": md["name"], "kind": "pods"})
    params = {k: v for k, v in q.items() if k in ("follow", "previous", "sinceSeconds",
                                                 "sinceTime", "timestamps", "tailLines",
                                                 "limitBytes")}
    url = kubelet_url(addr, f"/containerLogs/{md['namespace']}/{md['name']}/{container}")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url, params=params, timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=5)) as r:
                if r.status != 200:
                    text = await r.text()
                    raise E.ApiError(r.status, "InternalError" if r.status >= 500 else
                                     "BadRequest", text.strip() or f"kubelet answered "
                                     f"{r.status}")
                await resp.prepare(request)
                async for chunk in r.content.iter_any():
                    await resp.write(chunk)
    except aiohttp.ClientError as e:
        if resp.prepared:
            return resp
        raise E.ApiError(502, "ServiceUnavailable",
                         f"error dialing backend: {e}") from None
    await resp.write_eof()
    return resp
