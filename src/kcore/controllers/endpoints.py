"""Endpoints: for every Service with a selector, the addresses of its pods.

A pod counts when it has an IP, is not finished and is not being deleted; it
goes to `addresses` when Ready (or the service publishes not-ready
addresses) and to `notReadyAddresses` otherwise. Each service port resolves
its targetPort per pod (a number, or a container port name, which a pod
without that port simply does not serve); pods serving the same port set
share a subset, as kube's RepackSubsets arranges. Services without a selector
are left alone (their Endpoints are the user's); a deleted Service's
Endpoints are deleted.
"""
from __future__ import annotations

import logging

from kcore.api import labels as L
from kcore.client import errors as E
from kcore.client.resources import ENDPOINTS, PODS, SERVICES
from kcore.client.store import deep_copy
from kcore.controllers.controller import Controller
from kcore.controllers.pods import is_ready, is_terminal

log = logging.getLogger(__name__)

HEADLESS_LABEL = "service.kubernetes.io/headless"


def resolve_port(pod: dict, sp: dict) -> int | None:
    tp = sp.get("targetPort")
    if tp is None or tp == "" or tp == 0:
        return int(sp.get("port") or 0) or None
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    proto = sp.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == tp and (cp.get("protocol") or "TCP") == proto:
                return int(cp.get("containerPort"))
    return None


def endpoint_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    """The Endpoints subsets of a service over the given (selected) pods."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("name", ""))):
        st = pod.get("status") or {}
        ip = st.get("podIP")
        if not ip or is_terminal(pod) or pod["metadata"].get("deletionTimestamp"):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            n = resolve_port(pod, sp)
            if n is None:
                continue
            ep = {"port": n, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                ep["name"] = sp["name"]
            if sp.get("appProtocol"):
                ep["appProtocol"] = sp["appProtocol"]
            ports.append(ep)
        if spec.get("ports") and not ports:
            continue
        md = pod["metadata"]
        addr: dict = {"ip": ip}
        pspec = pod.get("spec") or {}
        if pspec.get("hostname") and pspec.get("subdomain") == svc["metadata"]["name"]:
            addr["hostname"] = pspec["hostname"]
        if pspec.get("nodeName"):
            addr["nodeName"] = pspec["nodeName"]
        addr["targetRef"] = {"kind": "Pod", "namespace": md.get("namespace", ""),
                             "name": md.get("name", ""), "uid": md.get("uid", "")}
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        g = groups.setdefault(key, {"ports": ports, "ready": [], "notReady": []})
        (g["ready"] if publish or is_ready(pod) else g["notReady"]).append(addr)
    subsets = []
    for key in sorted(groups):
        g = groups[key]
        ss: dict = {}
        if g["ready"]:
            ss["addresses"] = sorted(g["ready"], key=lambda a: a["ip"])
        if g["notReady"]:
            ss["notReadyAddresses"] = sorted(g["notReady"], key=lambda a: a["ip"])
        if g["ports"]:
            ss["ports"] = sorted(g["ports"], key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(ss)
    return subsets


class EndpointsController(Controller):
    name = "endpoint"
    component = "endpoint-controller"

    def __init__(self, ctx, workers: int | None = None):
        super().__init__(ctx, workers or ctx.options.concurrent_endpoint_syncs)
        self.services = self.informer(SERVICES)
        self.pods = self.informer(PODS)
        self.endpoints = self.informer(ENDPOINTS)
        self.services.add_event_handler(self.enqueue, lambda o, n: self.enqueue(n),
                                        self.enqueue)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_added)
        self.endpoints.add_event_handler(on_delete=self._endpoints_deleted)

    def _services_for(self, pod: dict) -> list[dict]:
        md = pod.get("metadata") or {}
        out = []
        for svc in self.services.store.list(md.get("namespace", "")):
            sel = (svc.get("spec") or {}).get("selector")
            if sel and L.matches(L.from_map(sel), md.get("labels")):
                out.append(svc)
        return out

    def _pod_added(self, pod: dict) -> None:
        for svc in self._services_for(pod):
            self.enqueue(svc)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        seen = set()
        for p in (new, old) if old["metadata"].get("labels") != new["metadata"].get(
                "labels") else (new,):
            for svc in self._services_for(p):
                k = svc["metadata"]["name"]
                if k not in seen:
                    seen.add(k)
                    self.enqueue(svc)

    def _endpoints_deleted(self, ep: dict) -> None:
        md = ep["metadata"]
        if self.services.store.get(md.get("namespace"), md.get("name", "")) is not None:
            self.enqueue(ep)

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.store.get(ns, name)
        if svc is None:
            if self.endpoints.store.get(ns, name) is not None:
                try:
                    await self.client.delete(ENDPOINTS, name, ns)
                except E.NotFound:
                    pass
            return
        sel = (svc.get("spec") or {}).get("selector")
        if not sel:
            return
        pods = [p for p in self.pods.store.list(ns)
                if L.matches(L.from_map(sel), p["metadata"].get("labels"))]
        subsets = endpoint_subsets(svc, pods)
        labels = dict(svc["metadata"].get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        cur = self.endpoints.store.get(ns, name)
        if cur is not None and (cur.get("subsets") or []) == subsets and \
                (cur["metadata"].get("labels") or {}) == labels:
            return
        if cur is None:
            ep = {"apiVersion": "v1", "kind": "Endpoints",
                  "metadata": {"name": name, "namespace": ns, "labels": labels},
                  "subsets": subsets}
            try:
                await self.client.create(ENDPOINTS, ep)
                return
            except E.AlreadyExists:
                cur = await self.client.get(ENDPOINTS, name, ns)
            except E.Forbidden as e:
                if "being terminated" in e.message:
                    return
                raise
        ep = deep_copy(cur)
        ep["metadata"]["labels"] = labels
        ep["subsets"] = subsets
        await self.client.update(ENDPOINTS, ep)
