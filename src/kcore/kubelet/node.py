"""The Node and its Lease as the kubelet writes them: pure functions of the
kubelet's settings, the host facts and the clock (passed in).

`node_object` is what registration POSTs; `node_status` what the status loop
PATCHes (conditions keep their lastTransitionTime while their status holds);
`lease_object` the heartbeat in kube-node-lease."""
from __future__ import annotations

from dataclasses import dataclass, field

from kcore import __version__ as KCORE_VERSION
from kcore.kubelet.hostinfo import HostInfo
from kcore.kubelet.timeutil import rfc3339, rfc3339_micro

KUBELET_VERSION = "v1.32.4"
RUNTIME_VERSION = f"kcore://{KCORE_VERSION}"
NODE_LEASE_NS = "kube-node-lease"
DEFAULT_MAX_PODS = 110


@dataclass
class NodeSpecConfig:
    """What makes this node this node: name, addresses, labels, taints, sizes."""
    name: str
    node_ip: str
    hostname: str
    port: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=dict)
    pod_cidr: str = ""
    provider_id: str = ""


def capacity_from_host(h: HostInfo, cpu: str = "", memory: str = "", pods: int = 0,
                       ephemeral_storage: str = "") -> dict[str, str]:
    """Host figures unless overridden (quantities as strings, as the API keeps them)."""
    return {
        "cpu": cpu or str(h.cpus),
        "memory": memory or f"{h.memory_bytes // 1024}Ki",
        "pods": str(pods or DEFAULT_MAX_PODS),
        "ephemeral-storage": ephemeral_storage or f"{h.disk_bytes // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }


def default_labels(name: str, h: HostInfo, extra: dict[str, str] | None = None
                   ) -> dict[str, str]:
    labels = {
        "beta.kubernetes.io/arch": h.architecture,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": h.architecture,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    labels.update(extra or {})
    return labels


def parse_labels(items: list[str]) -> dict[str, str]:
    """--node-labels k=v,k2=v2."""
    out = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise ValueError(f"invalid label {it!r}: want key=value")
        out[k.strip()] = v.strip()
    return out


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_taints(items: list[str]) -> list[dict]:
    """--register-with-taints key=value:Effect (or key:Effect)."""
    out = []
    for it in items:
        kv, colon, effect = it.rpartition(":")
        if not colon or effect not in TAINT_EFFECTS:
            raise ValueError(f"invalid taint {it!r}: want key[=value]:{'|'.join(TAINT_EFFECTS)}")
        k, _, v = kv.partition("=")
        t = {"key": k, "effect": effect}
        if v:
            t["value"] = v
        out.append(t)
    return out


def node_info(h: HostInfo) -> dict:
    """status.nodeInfo: every field filled (the Python client rejects a missing one)."""
    return {
        "architecture": h.architecture,
        "bootID": h.boot_id,
        "containerRuntimeVersion": RUNTIME_VERSION,
        "kernelVersion": h.kernel_version,
        "kubeProxyVersion": KUBELET_VERSION,
        "kubeletVersion": KUBELET_VERSION,
        "machineID": h.machine_id,
        "operatingSystem": "linux",
        "osImage": h.os_image,
        "systemUUID": h.system_uuid,
    }


CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available",
     "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
     "KubeletHasDiskPressure", "kubelet has disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available",
     "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
)


@dataclass(frozen=True)
class Pressure:
    memory: bool = False
    disk: bool = False
    pid: bool = False


def conditions(now: float, pressure: Pressure, ready: bool = True,
               previous: list[dict] | None = None, not_ready_message: str = "") -> list[dict]:
    """The four node conditions; lastTransitionTime moves only when a status flips."""
    prev = {c.get("type"): c for c in previous or []}
    hb = rfc3339(now)
    out = []

    def cond(type_: str, status: str, reason: str, message: str) -> dict:
        p = prev.get(type_)
        trans = p.get("lastTransitionTime") if p and p.get("status") == status else hb
        return {"type": type_, "status": status, "lastHeartbeatTime": hb,
                "lastTransitionTime": trans or hb, "reason": reason, "message": message}

    for (type_, ok_r, ok_m, bad_r, bad_m), bad in zip(
            CONDITIONS, (pressure.memory, pressure.disk, pressure.pid)):
        out.append(cond(type_, "True" if bad else "False", bad_r if bad else ok_r,
                        bad_m if bad else ok_m))
    if ready:
        out.append(cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    else:
        out.append(cond("Ready", "False", "KubeletNotReady", not_ready_message or
                        "container runtime is down"))
    return out


def addresses(cfg: NodeSpecConfig) -> list[dict]:
    return [{"type": "InternalIP", "address": cfg.node_ip},
            {"type": "Hostname", "address": cfg.hostname}]


def node_status(cfg: NodeSpecConfig, h: HostInfo, now: float, pressure: Pressure,
                previous_conditions: list[dict] | None = None, images: list[dict] | None = None,
                ready: bool = True) -> dict:
    st = {
        "capacity": dict(cfg.capacity),
        "allocatable": dict(cfg.capacity),
        "conditions": conditions(now, pressure, ready, previous_conditions),
        "addresses": addresses(cfg),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.port}},
        "nodeInfo": node_info(h),
    }
    if images is not None:
        st["images"] = images
    return st


def node_object(cfg: NodeSpecConfig, h: HostInfo, now: float,
                pressure: Pressure = Pressure()) -> dict:
    spec: dict = {}
    if cfg.taints:
        spec["taints"] = [dict(t) for t in cfg.taints]
    if cfg.pod_cidr:
        spec["podCIDR"] = cfg.pod_cidr
        spec["podCIDRs"] = [cfg.pod_cidr]
    if cfg.provider_id:
        spec["providerID"] = cfg.provider_id
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.name, "labels": dict(cfg.labels),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach":
                                     "true"}},
        "spec": spec,
        "status": node_status(cfg, h, now, pressure),
    }


def lease_object(node_name: str, node_uid: str, now: float, duration: int = 40) -> dict:
    """The node's heartbeat Lease, owned by its Node (so it goes when the Node goes)."""
    md: dict = {"name": node_name, "namespace": NODE_LEASE_NS}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                  "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration,
                     "renewTime": rfc3339_micro(now)}}
