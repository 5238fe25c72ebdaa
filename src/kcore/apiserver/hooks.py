"""Per-kind storage hooks: what kube's REST storages add to the generic store.

Services get ClusterIPs and NodePorts allocated (and released), keep their
allocated values across updates that omit them; ResourceQuotas get their
status (hard and used) computed when created or when their spec changes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kcore.api import errors as E
from kcore.apiserver.allocators import AllocationError

if TYPE_CHECKING:
    from kcore.apiserver.registry import Extras, Registry


class Hooks:
    async def before_create(self, reg: Registry, obj: dict, extras: Extras) -> None:
        pass

    def prepare_update(self, reg: Registry, new: dict, old: dict) -> None:
        pass

    async def before_update(self, reg: Registry, new: dict, old: dict, extras: Extras
                            ) -> None:
        pass

    def after_delete(self, reg: Registry, obj: dict) -> None:
        pass


def _node_ports(spec: dict) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer") and spec.get(
        "allocateLoadBalancerNodePorts", True) is not False or spec.get("type") == "NodePort"


class ServiceHooks(Hooks):
    def __init__(self, ips, ports):
        self.ips, self.ports = ips, ports

    def rebuild(self, services: list[dict]) -> None:
        for s in services:
            spec = s.get("spec") or {}
            ip = spec.get("clusterIP")
            if ip and ip != "None" and self.ips.contains(ip):
                self.ips.used.add(ip)
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    self.ports.used.add(p["nodePort"])

    def _name(self, obj):
        return (obj.get("metadata") or {}).get("name", "")

    async def before_create(self, reg, obj, extras) -> None:
        spec = obj.setdefault("spec", {})
        t = spec.get("type", "ClusterIP")
        name = self._name(obj)
        if t == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return
        ip = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
        try:
            if ip == "None":
                spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            elif ip:
                self.ips.allocate(ip)
                extras.rollbacks.append(lambda ip=ip: self.ips.release(ip))
            else:
                ip = self.ips.allocate_next()
                extras.rollbacks.append(lambda ip=ip: self.ips.release(ip))
        except AllocationError as e:
            raise E.invalid_object("Service", name, [E.invalid("spec.clusterIPs", [ip], str(e))])
        if ip != "None":
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if _node_ports(spec):
            self._alloc_ports(spec, {}, name, extras)

    def _alloc_ports(self, spec: dict, old_ports: dict, name: str, extras) -> None:
        for i, p in enumerate(spec.get("ports") or []):
            np_ = p.get("nodePort")
            if np_ and old_ports.get(np_):
                continue
            try:
                if np_:
                    self.ports.allocate(np_)
                else:
                    np_ = p["nodePort"] = self.ports.allocate_next()
            except AllocationError as e:
                extras.rollback()
                raise E.invalid_object("Service", name, [
                    E.invalid(f"spec.ports[{i}].nodePort", np_, str(e))]) from None
            extras.rollbacks.append(lambda n=np_: self.ports.release(n))

    def prepare_update(self, reg, new, old) -> None:
        ns, os_ = new.setdefault("spec", {}), old.get("spec") or {}
        if not isinstance(ns, dict):
            return
        if os_.get("type") != "ExternalName" and ns.get("type", "ClusterIP") != "ExternalName":
            if not ns.get("clusterIP") and os_.get("clusterIP"):
                ns["clusterIP"] = os_["clusterIP"]
            if not ns.get("clusterIPs") and os_.get("clusterIPs"):
                ns["clusterIPs"] = list(os_["clusterIPs"])
            for f in ("ipFamilies", "ipFamilyPolicy"):
                if f not in ns and f in os_:
                    ns[f] = os_[f]
        if _node_ports(ns) and _node_ports(os_):
            old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                           for p in os_.get("ports") or []}
            for p in ns.get("ports") or []:
                if isinstance(p, dict) and not p.get("nodePort"):
                    o = old_by_port.get((p.get("port"), p.get("protocol", "TCP")))
                    if o:
                        p["nodePort"] = o

    async def before_update(self, reg, new, old, extras) -> None:
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        name = self._name(new)
        old_np = {p.get("nodePort"): True for p in os_.get("ports") or [] if p.get("nodePort")}
        if _node_ports(ns):
            self._alloc_ports(ns, old_np, name, extras)
        else:
            for p in ns.get("ports") or []:
                p.pop("nodePort", None)
        new_np = {p.get("nodePort") for p in ns.get("ports") or [] if p.get("nodePort")}
        for n in old_np:
            if n not in new_np:
                extras.commits.append(lambda n=n: self.ports.release(n))
        if os_.get("type") != "ExternalName" and ns.get("type") == "ExternalName":
            ip = os_.get("clusterIP")
            extras.commits.append(lambda: self.ips.release(ip))
        elif os_.get("type") == "ExternalName" and ns.get("type", "ClusterIP") != "ExternalName":
            await self.before_create(reg, new, extras)

    def after_delete(self, reg, obj) -> None:
        spec = obj.get("spec") or {}
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            self.ips.release(ip)
        for p in spec.get("ports") or []:
            self.ports.release(p.get("nodePort"))


class QuotaHooks(Hooks):
    """Fill a ResourceQuota's status when it is created or its spec changes, so that
    admission can enforce it before a quota controller runs."""

    def __init__(self, quota):
        self.quota = quota

    async def before_create(self, reg, obj, extras) -> None:
        await self._fill(obj)

    def prepare_update(self, reg, new, old) -> None:
        pass

    async def before_update(self, reg, new, old, extras) -> None:
        if (new.get("spec") or {}) != (old.get("spec") or {}):
            await self._fill(new)

    async def _fill(self, obj: dict) -> None:
        hard = dict(((obj.get("spec") or {}).get("hard")) or {})
        ns = (obj.get("metadata") or {}).get("namespace", "")
        used = await self.quota.usage(ns, list(hard), obj)
        obj["status"] = {"hard": hard, "used": used}
