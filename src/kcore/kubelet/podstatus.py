"""Pod status as the kubelet reports it: a pure function of the kubelet's view
of each container (`CStatus`), the pod spec, the previous status and `now`.

Phase follows kube's getPhase; conditions are PodReadyToStartContainers,
Initialized, ContainersReady, Ready (and PodScheduled kept); a condition's
lastTransitionTime moves only when its status flips; containerStatuses are
sorted by name as the kubelet sorts them, init containers in spec order."""
from __future__ import annotations

from dataclasses import dataclass

from kcore.kubelet.images import normalize
from kcore.kubelet.timeutil import rfc3339

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


@dataclass
class CStatus:
    """One container as the kubelet sees it now."""
    name: str
    image: str
    state: str = "waiting"           # waiting | running | terminated
    reason: str = "ContainerCreating"  # waiting reason, or terminated reason
    message: str = ""
    container_id: str = ""
    image_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int = 0
    signal: int = 0
    last_termination: dict | None = None   # lastState.terminated
    restart_count: int = 0
    ready: bool = False
    started: bool = False

    def to_api(self) -> dict:
        if self.state == "running":
            state: dict = {"running": {"startedAt": rfc3339(self.started_at)}}
        elif self.state == "terminated":
            t: dict = {"exitCode": self.exit_code, "reason": self.reason,
                       "startedAt": rfc3339(self.started_at) if self.started_at else None,
                       "finishedAt": rfc3339(self.finished_at)}
            if self.signal:
                t["signal"] = self.signal
            if self.message:
                t["message"] = self.message
            if self.container_id:
                t["containerID"] = self.container_id
            state = {"terminated": t}
        else:
            w = {"reason": self.reason}
            if self.message:
                w["message"] = self.message
            state = {"waiting": w}
        out = {"name": self.name, "state": state,
               "lastState": {"terminated": self.last_termination}
               if self.last_termination else {},
               "ready": self.ready, "restartCount": self.restart_count,
               "image": normalize(self.image) if self.image else "",
               "imageID": self.image_id, "started": self.started}
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def phase(init: list[CStatus], containers: list[CStatus], restart_policy: str,
          init_done: bool) -> str:
    """kube's getPhase."""
    if not init_done:
        if restart_policy == "Never" and any(c.state == "terminated" and c.exit_code != 0
                                             for c in init):
            return FAILED
        return PENDING
    waiting = running = stopped = succeeded = 0
    for c in containers:
        if c.state == "running":
            running += 1
        elif c.state == "terminated":
            stopped += 1
            if c.exit_code == 0:
                succeeded += 1
        elif c.last_termination is not None:
            stopped += 1
            if c.last_termination.get("exitCode") == 0:
                succeeded += 1
        else:
            waiting += 1
    if waiting > 0:
        return PENDING
    if running > 0:
        return RUNNING
    if stopped > 0:
        if restart_policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if restart_policy == "OnFailure":
            return RUNNING
        return FAILED
    return PENDING


def qos_class(spec: dict) -> str:
    reqs, lims, any_set = {}, {}, False
    guaranteed = True
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        r = (c.get("resources") or {})
        rq, lm = dict(r.get("requests") or {}), dict(r.get("limits") or {})
        for k in ("cpu", "memory"):
            if rq.get(k) or lm.get(k):
                any_set = True
            req = rq.get(k, lm.get(k))
            if not lm.get(k) or str(req) != str(lm.get(k)):
                guaranteed = False
        reqs.update(rq)
        lims.update(lm)
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _cond(prev: dict[str, dict], now: float, type_: str, ok: bool, reason: str = "",
          message: str = "") -> dict:
    status = "True" if ok else "False"
    p = prev.get(type_)
    trans = p.get("lastTransitionTime") if p and p.get("status") == status and \
        p.get("lastTransitionTime") else rfc3339(now)
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": trans}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def pod_status(pod: dict, init: list[CStatus], containers: list[CStatus], *, init_done: bool,
               sandbox_ready: bool, host_ip: str, pod_ip: str, start_time: float | None,
               now: float, terminal_override: str = "") -> dict:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    prev = {c.get("type"): c for c in old.get("conditions") or []}
    policy = spec.get("restartPolicy") or "Always"
    ph = terminal_override or phase(init, containers, policy, init_done)
    names = [c.name for c in containers if not c.ready]
    conds = [c for c in old.get("conditions") or [] if c.get("type") not in OWN_CONDITIONS]
    if "PodScheduled" not in prev:
        conds.insert(0, _cond(prev, now, "PodScheduled", True))
    conds.append(_cond(prev, now, "PodReadyToStartContainers", sandbox_ready))
    if init_done:
        conds.append(_cond(prev, now, "Initialized", True))
    else:
        pending = [c.name for c in init if not (c.state == "terminated" and c.exit_code == 0)]
        conds.append(_cond(prev, now, "Initialized", False, "ContainersNotInitialized",
                           f"containers with incomplete status: [{' '.join(pending)}]"))
    if ph == SUCCEEDED:
        reason, msg, ready = "PodCompleted", "", False
    elif names:
        reason, msg, ready = ("ContainersNotReady",
                              f"containers with unready status: [{' '.join(names)}]", False)
    else:
        reason, msg, ready = "", "", True
    conds.append(_cond(prev, now, "ContainersReady", ready, reason, msg))
    conds.append(_cond(prev, now, "Ready", ready, reason, msg))
    st: dict = {"phase": ph, "conditions": conds, "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}] if host_ip else [],
                "qosClass": qos_class(spec)}
    if pod_ip:
        st["podIP"] = pod_ip
        st["podIPs"] = [{"ip": pod_ip}]
    if start_time is not None:
        st["startTime"] = rfc3339(start_time)
    if init:
        st["initContainerStatuses"] = [c.to_api() for c in init]
    st["containerStatuses"] = [c.to_api() for c in sorted(containers, key=lambda c: c.name)]
    return st
