"""What the proxy programs, read off Service and Endpoints objects (plain dicts).

    state = build(services, endpoints)        # the informers' cached objects
    state.services                            # ServicePorts, one per port
    state.endpoints["default/web:http"]       # ready Endpoints of that port
    state.weight("default/web:http", ep)      # 1 unless the Endpoints says otherwise

The rules are kube-proxy's: a Service without a ClusterIP (headless) or of
type ExternalName is not proxied; a port's endpoints are the ready addresses
(`subsets[].addresses`, never `notReadyAddresses`) of the Endpoints port with
the same name and protocol; sessionAffinity ClientIP turns into an affinity
timeout (default 10800 s).

kcore extension: the annotation `proxy.kcore.io/weights` on an Endpoints
object ("10.244.1.5=3,10.244.2.7=1") gives IPVS weights per endpoint IP (the
userspace dispatcher honours them too; iptables mode spreads evenly). Weight 0
quiesces an endpoint: no new connections, existing ones kept.

Pure and stdlib-only, so the test VM's plain Python can import it.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kcore.proxy.iptables_rules import Endpoint, ServicePort

WEIGHTS_ANNOTATION = "proxy.kcore.io/weights"
DEFAULT_AFFINITY_SECONDS = 10800
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class ProxyState:
    """Everything a proxier needs for one sync: service ports, their ready
    endpoints (keyed by ServicePort.port_name_string) and endpoint weights."""
    services: tuple[ServicePort, ...] = ()
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    weights: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def weight(self, port_name: str, ep: Endpoint) -> int:
        return self.weights.get(port_name, {}).get(ep.ip, 1)


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def service_ports(svc: dict) -> list[ServicePort]:
    """The proxied ports of one Service (empty when it is not proxied)."""
    meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    cip = spec.get("clusterIP") or ""
    if cip in ("", "None") or not _valid_ip(cip):
        return []
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    external = tuple(ip for ip in spec.get("externalIPs") or () if _valid_ip(ip))
    out = []
    for p in spec.get("ports") or ():
        proto = (p.get("protocol") or "TCP").upper()
        port = p.get("port")
        if proto not in PROTOCOLS or not isinstance(port, int) or not 0 < port < 65536:
            continue
        node_port = p.get("nodePort") or 0
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            node_port = 0
        out.append(ServicePort(namespace=meta.get("namespace") or "default",
                               name=meta.get("name") or "", cluster_ip=cip, port=port,
                               protocol=proto, port_name=p.get("name") or "",
                               node_port=int(node_port), external_ips=external,
                               affinity_seconds=affinity))
    return out


def parse_weights(text: str) -> dict[str, int]:
    """`ip=weight,ip=weight` -> {ip: weight}; malformed entries are ignored."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        ip, sep, w = part.strip().partition("=")
        if sep and _valid_ip(ip.strip()) and w.strip().isdigit():
            out[ip.strip()] = min(int(w), 0x7FFFFFFF)
    return out


def endpoint_ports(ep: dict) -> dict[str, list[tuple[str, Endpoint]]]:
    """Ready endpoints of one Endpoints object: {port name: [(protocol, Endpoint)]}."""
    out: dict[str, list[tuple[str, Endpoint]]] = {}
    for subset in ep.get("subsets") or ():
        addrs = [a.get("ip") for a in subset.get("addresses") or () if _valid_ip(a.get("ip") or "")]
        for p in subset.get("ports") or ():
            port = p.get("port")
            if not isinstance(port, int) or not 0 < port < 65536:
                continue
            proto = (p.get("protocol") or "TCP").upper()
            lst = out.setdefault(p.get("name") or "", [])
            lst.extend((proto, Endpoint(ip, port)) for ip in addrs)
    return out


def build(services: Iterable[dict], endpoints: Iterable[dict]) -> ProxyState:
    """The proxy's view of the cluster from Service and Endpoints objects."""
    by_key: dict[tuple[str, str], dict] = {}
    for ep in endpoints:
        meta = ep.get("metadata") or {}
        by_key[(meta.get("namespace") or "default", meta.get("name") or "")] = ep
    ports: list[ServicePort] = []
    eps: dict[str, tuple[Endpoint, ...]] = {}
    weights: dict[str, dict[str, int]] = {}
    for svc in services:
        sps = service_ports(svc)
        if not sps:
            continue
        ports.extend(sps)
        ep = by_key.get((sps[0].namespace, sps[0].name))
        if ep is None:
            continue
        have = endpoint_ports(ep)
        w = parse_weights(((ep.get("metadata") or {}).get("annotations") or {})
                          .get(WEIGHTS_ANNOTATION, ""))
        for sp in sps:
            ready = tuple(dict.fromkeys(e for proto, e in have.get(sp.port_name, ())
                                        if proto == sp.protocol))
            if ready:
                eps[sp.port_name_string] = ready
                if w:
                    weights[sp.port_name_string] = w
    ports.sort(key=lambda s: (s.port_name_string, s.protocol))
    return ProxyState(tuple(ports), eps, weights)
