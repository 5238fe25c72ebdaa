"""metrics.k8s.io/v1beta1 served by the API server itself (no aggregation layer):
NodeMetrics (`nodes`) and PodMetrics (`pods`, namespaced), list and get, with
label and field selectors applied to the Nodes and Pods they describe.

Each request asks the kubelets concerned for /stats/summary (the endpoint of
the node, kubelet_endpoint.py; `?node=` names the node for hollow nodes that
share one endpoint) and turns what they report into metrics (usage.py). Nodes
and pods whose kubelet does not answer, or that report no usage, are left out,
as metrics-server leaves out what it could not scrape.
"""
from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
from aiohttp import web

from kcore.api import errors as E
from kcore.api.metrics import GROUP
from kcore.apiserver.kubelet_endpoint import kubelet_address, kubelet_url
from kcore.apiserver.usage import CpuRates, metrics_list, node_metrics, pod_metrics

log = logging.getLogger("kcore.apiserver.metrics")

FETCH_TIMEOUT = 5.0
PARALLEL = 32


def _json(body) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


class ResourceMetrics:
    def __init__(self, server, clock=time.time):
        self.s = server
        self.clock = clock
        self.rates = CpuRates()

    async def serve(self, request: web.Request, info) -> web.Response:
        if info.resource not in ("nodes", "pods") or info.subresource:
            raise E.ApiError(404, "NotFound", "the server could not find the requested "
                             "resource", {})
        if info.verb not in ("get", "list"):
            raise E.method_not_allowed()
        if info.resource == "nodes":
            if info.namespace:
                raise E.ApiError(404, "NotFound", "the server could not find the requested "
                                 "resource", {})
            return await self._nodes(request, info.name)
        return await self._pods(request, info.namespace or None, info.name)

    # -- nodes ---------------------------------------------------------------------------
    async def _nodes(self, request, name: str | None) -> web.Response:
        reg = self.s.registry("", "v1", "nodes")
        if name:
            ent = await reg.current(reg.key("", name))
            nodes = [ent.obj] if ent is not None else []
        else:
            q = request.query
            pred = reg.predicate(q.get("labelSelector", ""), q.get("fieldSelector", ""))
            nodes = (await reg.list(None, pred)).items
        summaries = await self._summaries([n["metadata"]["name"] for n in nodes])
        now = self.clock()
        items = []
        for n in nodes:
            summ = summaries.get(n["metadata"]["name"])
            m = node_metrics(n, summ.get("node") or {}, self.rates, now) if summ else None
            if m is not None:
                items.append(m)
        self.rates.prune(now)
        if name:
            if not items:
                raise E.not_found("nodemetrics", name, GROUP)
            return _json(items[0])
        return _json(metrics_list("NodeMetrics", items))

    # -- pods ----------------------------------------------------------------------------
    async def _pods(self, request, ns: str | None, name: str | None) -> web.Response:
        reg = self.s.registry("", "v1", "pods")
        if name:
            ent = await reg.current(reg.key(ns or "", name))
            pods = [ent.obj] if ent is not None else []
        else:
            q = request.query
            pred = reg.predicate(q.get("labelSelector", ""), q.get("fieldSelector", ""))
            pods = (await reg.list(ns, pred)).items
        pods = [p for p in pods if (p.get("spec") or {}).get("nodeName")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        summaries = await self._summaries(sorted({p["spec"]["nodeName"] for p in pods}))
        by_uid: dict[str, dict] = {}
        for summ in summaries.values():
            for sp in summ.get("pods") or []:
                uid = (sp.get("podRef") or {}).get("uid")
                if uid:
                    by_uid[uid] = sp
        now = self.clock()
        items = []
        for p in pods:
            sp = by_uid.get(p["metadata"].get("uid", ""))
            m = pod_metrics(p, sp, self.rates, now) if sp else None
            if m is not None:
                items.append(m)
        self.rates.prune(now)
        if name:
            if not items:
                raise E.not_found("podmetrics", name, GROUP)
            return _json(items[0])
        return _json(metrics_list("PodMetrics", items))

    # -- kubelets ------------------------------------------------------------------------
    async def _summaries(self, node_names: list[str]) -> dict[str, dict]:
        """node name → its kubelet's summary, for the kubelets that answered."""
        reg = self.s.registry("", "v1", "nodes")
        targets = []
        for n in node_names:
            ent = await reg.current(reg.key("", n))
            addr = kubelet_address(ent.obj if ent is not None else None)
            if addr is not None:
                targets.append((n, addr))
        if not targets:
            return {}
        sem = asyncio.Semaphore(PARALLEL)
        out: dict[str, dict] = {}
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)

        async def one(session, node: str, addr) -> None:
            async with sem:
                try:
                    async with session.get(kubelet_url(addr, "/stats/summary"),
                                           params={"node": node}) as r:
                        if r.status == 200:
                            body = orjson.loads(await r.read())
                            if isinstance(body, dict):
                                out[node] = body
                        else:
                            log.debug("summary of %s: HTTP %d", node, r.status)
                except (TimeoutError, aiohttp.ClientError, ValueError) as e:
                    log.debug("summary of %s: %s", node, e)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(one(session, n, a) for n, a in targets))
        return out
