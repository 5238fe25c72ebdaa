"""kube-proxy's iptables mode as a pure function: Services, their endpoints and
the node's settings in, `iptables-restore` text out (for `--noflush`).

    text = render(services, endpoints, NodeConfig(cluster_cidr="10.244.0.0/16"))
    for table, chain, args in jump_rules():   # ensured once by the applier
        ...

The layout is kube-proxy's (iptables mode, as the seed's kube-proxy writes it):

* nat KUBE-SERVICES: per service port with endpoints, "<ns>/<svc>:<port> cluster IP"
  rules matching proto, ClusterIP/32 and port -- first to KUBE-MARK-MASQ for
  traffic from outside --cluster-cidr (or for everything with masquerade_all),
  then to the service chain; the same for external IPs; last, traffic to a
  local address goes to KUBE-NODEPORTS.
* KUBE-SVC-<16>: one rule per endpoint, `-m statistic --mode random
  --probability` 1/n, 1/(n-1), ... 1/2, the last unconditional (ClientIP
  affinity first checks `-m recent --rcheck --seconds N --reap` per endpoint).
* KUBE-SEP-<16>: masquerade hairpin traffic (`-s <endpoint>/32 -j KUBE-MARK-MASQ`),
  then DNAT to the endpoint.
* KUBE-NODEPORTS: mark for masquerade, then the service chain, per nodePort.
* KUBE-MARK-MASQ sets the masquerade bit; KUBE-POSTROUTING masquerades marked
  packets (clearing the bit first so it is not applied twice).
* filter: services without endpoints REJECT (KUBE-SERVICES for the ClusterIP,
  KUBE-EXTERNAL-SERVICES for external IPs and nodePorts); KUBE-FORWARD accepts
  marked traffic and pod conntrack.
* chain names: "KUBE-SVC-" + first 16 chars of base32(sha256(port name +
  protocol)), "KUBE-SEP-" the same over port name + protocol + "ip:port"; the
  port name is "<ns>/<svc>" or "<ns>/<svc>:<port name>", the protocol lower case.
* chains of services that are gone are flushed and deleted when the caller
  passes the existing chain names (from iptables-save).

Output is deterministic (services and endpoints sorted), so an applier can skip
iptables-restore when the text did not change. IPv4 only; not covered:
externalTrafficPolicy=Local (KUBE-XLB), load-balancer ingress (KUBE-FW).
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
OWNED_PREFIXES = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-FW-", "KUBE-XLB-")
LARGE_CLUSTER_ENDPOINTS = 1000  # above this many endpoint chains, rules lose their comments


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service (a Service with three ports is three of these)."""
    namespace: str
    name: str
    cluster_ip: str
    port: int
    protocol: str = "TCP"
    port_name: str = ""
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    affinity_seconds: int = 0  # sessionAffinity ClientIP timeout; 0 = None

    @property
    def port_name_string(self) -> str:
        """kube-proxy's ServicePortName.String(): ns/name or ns/name:portname."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class NodeConfig:
    cluster_cidr: str = ""  # --cluster-cidr: masquerade traffic to ClusterIPs from outside it
    masquerade_all: bool = False  # --masquerade-all
    masquerade_bit: int = 14  # --iptables-masquerade-bit
    node_port_addresses: tuple[str, ...] = ()  # --nodeport-addresses; () = every local address
    random_fully: bool = False  # iptables supports MASQUERADE --random-fully

    @property
    def mark(self) -> str:
        bit = 1 << self.masquerade_bit
        return f"{bit:#x}/{bit:#x}"


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_chain(port_name: str, protocol: str) -> str:
    """kube-proxy's servicePortChainName."""
    return "KUBE-SVC-" + _hash16(port_name + protocol.lower())


def endpoint_chain(port_name: str, protocol: str, endpoint: str) -> str:
    """kube-proxy's servicePortEndpointChainName ("ip:port" endpoint)."""
    return "KUBE-SEP-" + _hash16(port_name + protocol.lower() + endpoint)


def probability(n: int) -> str:
    """The statistic match for the first of n remaining endpoints: 1/n, %0.10f."""
    return f"{1.0 / n:.10f}"


def jump_rules() -> list[tuple[str, str, list[str]]]:
    """(table, built-in chain, rule) the applier ensures once, at the top of the
    built-in chain (`iptables -C` / `-I`): how packets reach the KUBE-* chains,
    from PREROUTING and OUTPUT, so that pods and the node itself are served."""
    new = ["-m", "conntrack", "--ctstate", "NEW"]
    portals = ["-m", "comment", "--comment", "kubernetes service portals"]
    return [
        ("filter", "INPUT", new + ["-m", "comment", "--comment",
                                   "kubernetes externally-visible service portals",
                                   "-j", KUBE_EXTERNAL_SERVICES]),
        ("filter", "FORWARD", new + portals + ["-j", KUBE_SERVICES]),
        ("filter", "OUTPUT", new + portals + ["-j", KUBE_SERVICES]),
        ("filter", "FORWARD", ["-m", "comment", "--comment", "kubernetes forwarding rules",
                               "-j", KUBE_FORWARD]),
        ("nat", "OUTPUT", portals + ["-j", KUBE_SERVICES]),
        ("nat", "PREROUTING", portals + ["-j", KUBE_SERVICES]),
        ("nat", "POSTROUTING", ["-m", "comment", "--comment", "kubernetes postrouting rules",
                                "-j", KUBE_POSTROUTING]),
    ]


def _q(text: str) -> str:
    """A --comment value as iptables-save writes it (quoted when it has spaces)."""
    return f'"{text}"' if " " in text else text


def _cidr(ip: str) -> str:
    return f"{ipaddress.IPv4Address(ip)}/32"


def render(services: Iterable[ServicePort], endpoints: Mapping[str, Sequence[Endpoint]],
           node: NodeConfig = NodeConfig(), existing_chains: Iterable[str] = ()) -> str:
    """The whole iptables-restore input (filter and nat tables, KUBE-* chains).

    endpoints maps a port name string (ServicePort.port_name_string) to its ready
    endpoints. existing_chains: nat chain names present now; KUBE-SVC/SEP/FW/XLB
    ones that are no longer wanted are flushed and deleted.
    """
    svcs = sorted(services, key=lambda s: (s.port_name_string, s.protocol.lower()))
    eps = {s: sorted(set(endpoints.get(s.port_name_string, ())),
                     key=lambda e: (ipaddress.IPv4Address(e.ip), e.port)) for s in svcs}
    comments = sum(len(v) for v in eps.values()) <= LARGE_CLUSTER_ENDPOINTS
    mark = node.mark

    filter_chains = [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD]
    filter_rules: list[str] = []
    nat_chains = [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]
    masq = ["-A", KUBE_POSTROUTING, "-m", "comment", "--comment",
            _q("kubernetes service traffic requiring SNAT"), "-j", "MASQUERADE"]
    nat_rules = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {1 << node.masquerade_bit:#x}",
        " ".join(masq + (["--random-fully"] if node.random_fully else [])),
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {1 << node.masquerade_bit:#x}",
    ]
    active: set[str] = set()

    def comment(name: str) -> str:
        return f" -m comment --comment {_q(name)}" if comments else ""

    for s in svcs:
        proto = s.protocol.lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"unsupported protocol {s.protocol!r}")
        name = s.port_name_string
        match = f"-m {proto} -p {proto}"
        svc_chain = service_chain(name, proto)
        ready = eps[s]
        if not ready:
            filter_rules.append(
                f"-A {KUBE_SERVICES} -m comment --comment {_q(name + ' has no endpoints')} "
                f"{match} -d {_cidr(s.cluster_ip)} --dport {s.port} -j REJECT")
            for ext in s.external_ips:
                filter_rules.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "
                    f"{_q(name + ' has no endpoints')} {match} -d {_cidr(ext)} "
                    f"--dport {s.port} -j REJECT")
            if s.node_port:
                filter_rules.append(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment "
                    f"{_q(name + ' has no endpoints')} -m addrtype --dst-type LOCAL {match} "
                    f"--dport {s.node_port} -j REJECT")
            continue

        nat_chains.append(svc_chain)
        active.add(svc_chain)
        head = (f"-A {KUBE_SERVICES} -m comment --comment {_q(name + ' cluster IP')} {match} "
                f"-d {_cidr(s.cluster_ip)} --dport {s.port}")
        if node.masquerade_all:
            nat_rules.append(f"{head} -j {KUBE_MARK_MASQ}")
        elif node.cluster_cidr:
            nat_rules.append(f"{head} ! -s {node.cluster_cidr} -j {KUBE_MARK_MASQ}")
        nat_rules.append(f"{head} -j {svc_chain}")
        for ext in s.external_ips:
            head = (f"-A {KUBE_SERVICES} -m comment --comment {_q(name + ' external IP')} "
                    f"{match} -d {_cidr(ext)} --dport {s.port}")
            nat_rules.append(f"{head} -j {KUBE_MARK_MASQ}")
            nat_rules.append(f"{head} -m physdev ! --physdev-is-in -m addrtype ! --src-type "
                             f"LOCAL -j {svc_chain}")
            nat_rules.append(f"{head} -m addrtype --dst-type LOCAL -j {svc_chain}")
        if s.node_port:
            head = (f"-A {KUBE_NODEPORTS} -m comment --comment {_q(name)} {match} "
                    f"--dport {s.node_port}")
            nat_rules.append(f"{head} -j {KUBE_MARK_MASQ}")
            nat_rules.append(f"{head} -j {svc_chain}")

        sep_chains = [endpoint_chain(name, proto, str(e)) for e in ready]
        nat_chains.extend(sep_chains)
        active.update(sep_chains)
        if s.affinity_seconds:
            for sep in sep_chains:
                nat_rules.append(f"-A {svc_chain}{comment(name)} -m recent --name {sep} "
                                 f"--rcheck --seconds {s.affinity_seconds} --reap -j {sep}")
        n = len(sep_chains)
        for i, (e, sep) in enumerate(zip(ready, sep_chains)):
            stat = (f" -m statistic --mode random --probability {probability(n - i)}"
                    if i < n - 1 else "")
            nat_rules.append(f"-A {svc_chain}{comment(name)}{stat} -j {sep}")
            nat_rules.append(f"-A {sep}{comment(name)} -s {_cidr(e.ip)} -j {KUBE_MARK_MASQ}")
            recent = f" -m recent --name {sep} --set" if s.affinity_seconds else ""
            nat_rules.append(f"-A {sep}{comment(name)}{recent} {match} -j DNAT "
                             f"--to-destination {e}")

    stale = sorted(c for c in set(existing_chains)
                   if c.startswith(OWNED_PREFIXES) and c not in active)
    nat_chains.extend(stale)
    nat_rules.extend(f"-X {c}" for c in stale)

    nodeports = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
    if not node.node_port_addresses or any(ipaddress.ip_network(a, strict=False).prefixlen == 0
                                           for a in node.node_port_addresses):
        nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {_q(nodeports)} "
                         f"-m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}")
    else:
        for a in node.node_port_addresses:
            nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {_q(nodeports)} -d {a} "
                             f"-j {KUBE_NODEPORTS}")

    filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
    filter_rules.append(f"-A {KUBE_FORWARD} -m comment --comment "
                        f"{_q('kubernetes forwarding rules')} -m mark --mark {mark} -j ACCEPT")
    if node.cluster_cidr:
        filter_rules.append(
            f"-A {KUBE_FORWARD} -s {node.cluster_cidr} -m comment --comment "
            f"{_q('kubernetes forwarding conntrack pod source rule')} -m conntrack "
            f"--ctstate RELATED,ESTABLISHED -j ACCEPT")
        filter_rules.append(
            f"-A {KUBE_FORWARD} -m comment --comment "
            f"{_q('kubernetes forwarding conntrack pod destination rule')} -d {node.cluster_cidr} "
            f"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    lines = ["*filter"]
    lines += [f":{c} - [0:0]" for c in filter_chains]
    lines += filter_rules
    lines += ["COMMIT", "*nat"]
    lines += [f":{c} - [0:0]" for c in nat_chains]
    lines += nat_rules
    lines += ["COMMIT"]
    return "\n".join(lines) + "\n"


def render_ipvs(node: NodeConfig = NodeConfig()) -> str:
    """The few iptables rules IPVS mode needs (iptables-restore --noflush text):
    masquerade of what IPVS does not SNAT itself. IPVS's own conntrack entries
    (net.ipv4.vs.conntrack=1) let nat POSTROUTING see the first packet of each
    IPVS connection; `-m ipvs --vdir ORIGINAL --vmethod MASQ` matches exactly
    those, so one rule covers every ClusterIP and NodePort without a per-service
    list (kube-proxy keeps ipsets for the same purpose). Traffic from inside
    --cluster-cidr keeps its source unless masquerade_all; without a cluster
    CIDR everything IPVS forwards is masqueraded. Not covered: hairpin (a pod
    reaching itself through its own Service)."""
    mark = node.mark
    bit = f"{1 << node.masquerade_bit:#x}"
    src = "" if node.masquerade_all or not node.cluster_cidr else f" ! -s {node.cluster_cidr}"
    rand = " --random-fully" if node.random_fully else ""
    nat = [
        "*nat",
        f":{KUBE_POSTROUTING} - [0:0]",
        f":{KUBE_MARK_MASQ} - [0:0]",
        f"-A {KUBE_POSTROUTING} -m comment --comment {_q('kubernetes ipvs service traffic requiring SNAT')}"
        f"{src} -m ipvs --vdir ORIGINAL --vmethod MASQ -j MASQUERADE{rand}",
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {bit}",
        f"-A {KUBE_POSTROUTING} -m comment --comment "
        f"{_q('kubernetes service traffic requiring SNAT')} -j MASQUERADE{rand}",
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {bit}",
        "COMMIT",
    ]
    flt = [
        "*filter",
        f":{KUBE_FORWARD} - [0:0]",
        f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
        f"-A {KUBE_FORWARD} -m comment --comment {_q('kubernetes forwarding rules')} "
        f"-m mark --mark {mark} -j ACCEPT",
    ]
    if node.cluster_cidr:
        flt += [f"-A {KUBE_FORWARD} -s {node.cluster_cidr} -m comment --comment "
                f"{_q('kubernetes forwarding conntrack pod source rule')} -m conntrack "
                f"--ctstate RELATED,ESTABLISHED -j ACCEPT",
                f"-A {KUBE_FORWARD} -m comment --comment "
                f"{_q('kubernetes forwarding conntrack pod destination rule')} "
                f"-d {node.cluster_cidr} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    flt.append("COMMIT")
    return "\n".join(flt + nat) + "\n"


def ipvs_jump_rules() -> list[tuple[str, str, list[str]]]:
    """jump_rules() for IPVS mode: only postrouting (masquerade) and forwarding."""
    return [
        ("filter", "FORWARD", ["-m", "comment", "--comment", "kubernetes forwarding rules",
                               "-j", KUBE_FORWARD]),
        ("nat", "POSTROUTING", ["-m", "comment", "--comment", "kubernetes postrouting rules",
                                "-j", KUBE_POSTROUTING]),
    ]
