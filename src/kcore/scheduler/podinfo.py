"""What the scheduler reads from a pod: requests, host ports, selectors, tolerations.

``pod_info(pod)`` turns a plain Kubernetes pod dict into an immutable
``PodInfo``; every plugin (vectorised or reference) works from it, so both
paths agree on the meaning of a pod by construction. Request arithmetic follows
kube's ``resourcehelper.PodRequests``: containers add up, init containers take
the max (restartable "sidecar" init containers add up and stay), pod overhead
is added, and a pod-level ``spec.resources.requests`` overrides cpu/memory.
The *non-zero* variant used for LeastAllocated scoring counts a container
that does not mention cpu (memory) as asking for 100m (200 MiB).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .quantity import NANO, parse_nano

__all__ = [
    "DEFAULT_MEMORY_REQUEST",
    "DEFAULT_MILLI_CPU_REQUEST",
    "HostPort",
    "NodeSelector",
    "PodInfo",
    "Requirement",
    "SelectorTerm",
    "Taint",
    "Toleration",
    "counted_resource",
    "is_scalar_resource",
    "pod_counts",
    "pod_info",
    "pod_key",
    "pod_requests",
    "shape_key",
]

DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
_NON_MISSING = {"cpu": DEFAULT_MILLI_CPU_REQUEST * 10**6, "memory": DEFAULT_MEMORY_REQUEST * NANO}


def is_scalar_resource(name: str) -> bool:
    """Extended, prefixed-native, hugepages and attachable-volume resources (kube's scalars)."""
    return "/" in name or name.startswith(("hugepages-", "attachable-volumes-"))


def counted_resource(name: str) -> bool:
    """Resources the fit check and the node table count (``pods`` is counted separately)."""
    return name in ("cpu", "memory", "ephemeral-storage") or is_scalar_resource(name)


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: Taint) -> bool:
        """kube's ``Toleration.ToleratesTaint``."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator in ("", "Equal"):
            return self.value == taint.value
        return self.operator == "Exists"


def tolerates_any(tolerations: tuple[Toleration, ...], taint: Taint) -> bool:
    for t in tolerations:
        if t.tolerates(taint):
            return True
    return False


@dataclass(frozen=True, slots=True)
class HostPort:
    ip: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``NodeSelectorRequirement`` (or a field requirement when ``field``)."""
    key: str
    operator: str
    values: tuple[str, ...]
    field: bool = False

    def valid(self) -> bool:
        """Structural validity as kube's selector parser checks it; an invalid
        requirement makes its term match nothing."""
        op, n = self.operator, len(self.values)
        if self.field:
            return op in ("In", "NotIn") and n == 1
        if op in ("In", "NotIn"):
            return n >= 1
        if op in ("Exists", "DoesNotExist"):
            return n == 0
        if op in ("Gt", "Lt"):
            return n == 1 and parse_int64(self.values[0]) is not None
        return False


@dataclass(frozen=True, slots=True)
class SelectorTerm:
    """A ``NodeSelectorTerm``: all requirements must hold; an empty term matches nothing."""
    requirements: tuple[Requirement, ...]

    def valid(self) -> bool:
        return bool(self.requirements) and all(r.valid() for r in self.requirements)


@dataclass(frozen=True, slots=True)
class NodeSelector:
    """``requiredDuringSchedulingIgnoredDuringExecution``: any term may match."""
    terms: tuple[SelectorTerm, ...]


def parse_int64(text: str) -> int | None:
    """Go's ``strconv.ParseInt(s, 10, 64)``: optional sign, decimal digits, int64 range."""
    if not text:
        return None
    body = text[1:] if text[0] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        return None
    v = int(text)
    if -(2**63) <= v < 2**63:
        return v
    return None


@dataclass(frozen=True, slots=True)
class PodInfo:
    """The scheduling-relevant content of a pod spec (shared by all pods of one shape)."""
    requests: tuple[tuple[str, int], ...]   # counted resources, sorted by name; zero omitted
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: tuple[HostPort, ...]
    node_name: str
    node_selector: tuple[tuple[str, str], ...]
    required: NodeSelector | None
    preferred: tuple[tuple[int, SelectorTerm], ...]
    tolerations: tuple[Toleration, ...]
    scheduler_name: str
    preemption_policy: str

    def request(self, resource: str) -> int:
        for name, v in self.requests:
            if name == resource:
                return v
        return 0


def pod_key(pod: dict) -> str:
    """The identity the scheduler cache uses: ``metadata.uid``, else ``namespace/name``."""
    meta = pod.get("metadata") or {}
    uid = meta.get("uid")
    if uid:
        return uid
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def _freeze(obj):
    if isinstance(obj, dict):
        return tuple((k, _freeze(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return tuple(_freeze(v) for v in obj)
    return obj


_SHAPE_FIELDS = frozenset(("initContainers", "overhead", "nodeSelector", "affinity",
                           "tolerations", "nodeName", "schedulerName", "preemptionPolicy",
                           "resources"))


def shape_key(spec: dict) -> tuple:
    """A cheap hashable key: pods with equal keys have equal ``PodInfo``.

    Built from the raw spec fields the scheduler reads, without parsing; two
    specs that mean the same but are written differently get different keys,
    which only costs a cache miss.
    """
    parts: list = []
    for c in spec.get("containers") or ():
        res = c.get("resources")
        req = res.get("requests") if res else None
        parts.append(tuple(req.items()) if req else ())
        ports = c.get("ports")
        if ports:
            parts.append(_freeze(ports))
    for f, v in spec.items():
        if v and f in _SHAPE_FIELDS:
            parts.append((f, _freeze(v)))
    return tuple(parts)


_Amount = int | Fraction     # billionths of a unit (see quantity.parse_nano)


def _container_requests(c: dict, non_missing: bool) -> dict[str, _Amount]:
    raw = ((c.get("resources") or {}).get("requests")) or {}
    out = {k: parse_nano(v) for k, v in raw.items() if counted_resource(k)}
    if non_missing:
        for k, v in _NON_MISSING.items():
            if k not in raw:
                out[k] = out.get(k, 0) + v
    return out


def _add(acc: dict, other: dict) -> None:
    for k, v in other.items():
        acc[k] = acc.get(k, 0) + v


def _max(acc: dict, other: dict) -> None:
    for k, v in other.items():
        if k not in acc or v > acc[k]:
            acc[k] = v


def pod_requests(spec: dict, non_missing: bool = False) -> dict[str, int]:
    """kube's ``PodRequests``: exact sums, converted once (cpu in millicores)."""
    reqs: dict[str, _Amount] = {}
    for c in spec.get("containers") or ():
        _add(reqs, _container_requests(c, non_missing))
    init = spec.get("initContainers")
    if init:
        sidecars: dict[str, _Amount] = {}
        init_max: dict[str, _Amount] = {}
        for c in init:
            creq = _container_requests(c, non_missing)
            if c.get("restartPolicy") == "Always":
                _add(reqs, creq)
                _add(sidecars, creq)
                creq = dict(sidecars)
            else:
                tmp = dict(creq)
                _add(tmp, sidecars)
                creq = tmp
            _max(init_max, creq)
        _max(reqs, init_max)
    res = spec.get("resources")
    if res:
        for k, v in (res.get("requests") or {}).items():
            if k in ("cpu", "memory") or k.startswith("hugepages-"):
                reqs[k] = parse_nano(v)
    overhead = spec.get("overhead")
    if overhead:
        _add(reqs, {k: parse_nano(v) for k, v in overhead.items() if counted_resource(k)})
    return {k: -((-v) // (10**6 if k == "cpu" else NANO)) for k, v in reqs.items()}


def pod_counts(spec: dict) -> tuple[dict[str, int], int, int]:
    """(requests, non-zero cpu, non-zero memory) of a pod spec, as the node table counts them."""
    if spec.get("initContainers") or spec.get("resources"):
        reqs = pod_requests(spec)
        nz = pod_requests(spec, non_missing=True)
        return reqs, nz.get("cpu", 0), nz.get("memory", 0)
    # common case, one pass: containers add up (+ overhead)
    acc: dict[str, _Amount] = {}
    nz_cpu = nz_mem = 0
    for c in spec.get("containers") or ():
        raw = ((c.get("resources") or {}).get("requests")) or {}
        for k, v in raw.items():
            if counted_resource(k):
                acc[k] = acc.get(k, 0) + parse_nano(v)
        nz_cpu += parse_nano(raw["cpu"]) if "cpu" in raw else _NON_MISSING["cpu"]
        nz_mem += parse_nano(raw["memory"]) if "memory" in raw else _NON_MISSING["memory"]
    overhead = spec.get("overhead")
    if overhead:
        for k, v in overhead.items():
            if counted_resource(k):
                q = parse_nano(v)
                acc[k] = acc.get(k, 0) + q
                if k == "cpu":
                    nz_cpu += q
                elif k == "memory":
                    nz_mem += q
    reqs = {k: -((-v) // (10**6 if k == "cpu" else NANO)) for k, v in acc.items()}
    return reqs, -((-nz_cpu) // 10**6), -((-nz_mem) // NANO)


def _requirements(exprs, field: bool) -> tuple[Requirement, ...]:
    out = []
    for e in exprs or ():
        out.append(Requirement(str(e.get("key", "")), str(e.get("operator", "")),
                               tuple(str(v) for v in (e.get("values") or ())), field))
    return tuple(out)


def _term(t: dict) -> SelectorTerm:
    t = t or {}
    return SelectorTerm(_requirements(t.get("matchExpressions"), False)
                        + _requirements(t.get("matchFields"), True))


def _host_ports(spec: dict) -> tuple[HostPort, ...]:
    out = []
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            port = int(p.get("hostPort") or 0)
            if port <= 0:
                continue
            out.append(HostPort(p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", port))
    return tuple(out)


def pod_info(spec: dict) -> PodInfo:
    """Parse a pod spec (``pod["spec"]``) once; pods of one shape share the result."""
    reqs, nz_cpu, nz_mem = pod_counts(spec)
    node_aff = ((spec.get("affinity") or {}).get("nodeAffinity")) or {}
    req = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    required = None
    if req is not None:
        required = NodeSelector(tuple(_term(t) for t in (req.get("nodeSelectorTerms") or ())))
    preferred = []
    for p in node_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
        w = int(p.get("weight") or 0)
        if w == 0:
            continue
        preferred.append((w, _term(p.get("preference"))))
    tolerations = tuple(
        Toleration(str(t.get("key") or ""), str(t.get("operator") or ""),
                   str(t.get("value") or ""), str(t.get("effect") or ""))
        for t in spec.get("tolerations") or ())
    return PodInfo(
        requests=tuple(sorted((k, v) for k, v in reqs.items() if v)),
        nonzero_cpu=nz_cpu, nonzero_memory=nz_mem,
        host_ports=_host_ports(spec),
        node_name=spec.get("nodeName") or "",
        node_selector=tuple(sorted((str(k), str(v)) for k, v in
                                   (spec.get("nodeSelector") or {}).items())),
        required=required, preferred=tuple(preferred), tolerations=tolerations,
        scheduler_name=spec.get("schedulerName") or "default-scheduler",
        preemption_policy=spec.get("preemptionPolicy") or "PreemptLowerPriority",
    )
