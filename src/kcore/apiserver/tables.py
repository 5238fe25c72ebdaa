"""Server-side printing (meta.k8s.io/v1 Table) with the columns kubectl users know.

One printer per resource returns (column definitions, cells per object);
`priority: 1` columns appear only with `kubectl get -o wide`. Cell logic
follows kube's printers (pkg/printers/internalversion), e.g. a pod's STATUS.
"""
from __future__ import annotations

import time

from kcore.api.meta import age as _age
from kcore.api.meta import human_duration, parse_time


def col(name: str, type_: str = "string", desc: str = "", priority: int = 0, fmt: str = ""
        ) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": desc,
            "priority": priority}


NAME = col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = col("Age", desc="CreationTimestamp is a timestamp representing the server time when "
          "this object was created.")


def _md(o: dict) -> dict:
    return o.get("metadata") or {}


def _since(ts: str | None, now: float) -> str:
    if not ts:
        return "<unknown>"
    try:
        return human_duration(now - parse_time(ts))
    except ValueError:
        return "<unknown>"


# ---------------------------------------------------------------------------- pods --
POD_COLS = [NAME, col("Ready", desc="The aggregate readiness state of this pod for accepting "
                      "traffic."),
            col("Status", desc="The aggregate status of the containers in this pod."),
            col("Restarts", desc="The number of times the containers in this pod have been "
                "restarted and when the last container in this pod has restarted."),
            AGE, col("IP", desc="IP address allocated to the pod.", priority=1),
            col("Node", desc="Name of the node where the pod is scheduled.", priority=1),
            col("Nominated Node", desc="Name of the node where the pod is nominated.",
                priority=1),
            col("Readiness Gates", desc="Pod readiness gates.", priority=1)]


def pod_row(p: dict, now: float) -> list:
    st = p.get("status") or {}
    spec = p.get("spec") or {}
    md = _md(p)
    restarts = 0
    last_restart = 0.0
    total = len(spec.get("containers") or [])
    ready = 0
    reason = st.get("reason") or st.get("phase") or ""
    for c in st.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    initializing = False
    init_specs = spec.get("initContainers") or []
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        term = state.get("terminated")
        wait = state.get("waiting")
        sidecar = i < len(init_specs) and init_specs[i].get("restartPolicy") == "Always"
        if term and term.get("exitCode") == 0:
            continue
        if sidecar and cs.get("started"):
            continue
        if term:
            reason = "Init:" + (term.get("reason") or (f"Signal:{term['signal']}"
                                                        if term.get("signal")
                                                        else f"ExitCode:{term.get('exitCode')}"))
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing:
        restarts = 0
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if lt:
                try:
                    last_restart = max(last_restart, parse_time(lt))
                except ValueError:
                    pass
            state = cs.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated"):
                t = state["terminated"]
                reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal")
                                             else f"ExitCode:{t.get('exitCode')}")
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in st.get("conditions") or [])
            reason = "Running" if pod_ready else "NotReady"
    if md.get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    restarts_s = str(restarts)
    if last_restart:
        restarts_s = f"{restarts} ({human_duration(now - last_restart)} ago)"
    gates = spec.get("readinessGates") or []
    gates_s = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_s = f"{ok}/{len(gates)}"
    return [md.get("name", ""), f"{ready}/{total}", reason, restarts_s,
            _since(md.get("creationTimestamp"), now),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>", gates_s]


# ---------------------------------------------------------------------------- nodes --
NODE_COLS = [NAME, col("Status", desc="The status of the node"),
             col("Roles", desc="The roles of the node"), AGE,
             col("Version", desc="Kubelet Version reported by the node."),
             col("Internal-IP", desc="List of internal IPs.", priority=1),
             col("External-IP", desc="List of external IPs.", priority=1),
             col("OS-Image", desc="OS Image reported by the node.", priority=1),
             col("Kernel-Version", desc="Kernel Version reported by the node.", priority=1),
             col("Container-Runtime", desc="Container Runtime Version reported by the node.",
                 priority=1)]


def node_row(n: dict, now: float) -> list:
    md, st, spec = _md(n), n.get("status") or {}, n.get("spec") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = []
    r = conds.get("Ready")
    status.append("Ready" if r == "True" else "NotReady" if r is not None else "Unknown")
    if spec.get("unschedulable"):
        status.append("SchedulingDisabled")
    roles = set()
    for k, v in (md.get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            roles.add(k.split("/", 1)[1])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    addrs = st.get("addresses") or []

    def addr(t):
        return ",".join(a.get("address", "") for a in addrs if a.get("type") == t) or "<none>"
    info = st.get("nodeInfo") or {}
    return [md.get("name", ""), ",".join(status), ",".join(sorted(roles)) or "<none>",
            _since(md.get("creationTimestamp"), now), info.get("kubeletVersion", ""),
            addr("InternalIP"), addr("ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


# ------------------------------------------------------------------------- services --
SVC_COLS = [NAME, col("Type", desc="The type of the service."),
            col("Cluster-IP", desc="The IP address of the service."),
            col("External-IP", desc="The external IP address of the service."),
            col("Port(s)", desc="The ports of the service."), AGE,
            col("Selector", desc="The label selector of the service.", priority=1)]


def svc_row(s: dict, now: float) -> list:
    md, spec = _md(s), s.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    ext = ",".join(spec.get("externalIPs") or [])
    if t == "LoadBalancer":
        ing = ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ing if i]
        ext = ",".join([*(spec.get("externalIPs") or []), *ips]) or "<pending>"
    elif t == "ExternalName":
        ext = spec.get("externalName", "")
    ports = []
    for p in spec.get("ports") or []:
        if p.get("nodePort"):
            ports.append(f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}")
        else:
            ports.append(f"{p.get('port')}/{p.get('protocol', 'TCP')}")
    sel = spec.get("selector") or {}
    return [md.get("name", ""), t, spec.get("clusterIP") or "<none>", ext or "<none>",
            ",".join(ports) or "<none>", _since(md.get("creationTimestamp"), now),
            ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"]


# ------------------------------------------------------------------------ workloads --
def _containers(tmpl: dict) -> tuple[str, str]:
    cs = ((tmpl or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


WL_WIDE = [col("Containers", desc="Names of each container in the template.", priority=1),
           col("Images", desc="Images referenced by each container in the template.",
               priority=1),
           col("Selector", desc="Label selector for pods.", priority=1)]
RC_COLS = [NAME, col("Desired", "integer", "Number of desired pods."),
           col("Current", "integer", "Number of actual replicas."),
           col("Ready", "integer", "The number of ready replicas."), AGE, *WL_WIDE]


def _sel_str(sel) -> str:
    if not sel:
        return "<none>"
    if "matchLabels" in sel or "matchExpressions" in sel:
        from kcore.api.labels import format_selector, from_label_selector
        try:
            return format_selector(from_label_selector(sel) or []) or "<none>"
        except ValueError:
            return "<error>"
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))


def rc_row(o: dict, now: float) -> list:
    md, spec, st = _md(o), o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [md.get("name", ""), int(spec.get("replicas") or 0), int(st.get("replicas") or 0),
            int(st.get("readyReplicas") or 0), _since(md.get("creationTimestamp"), now),
            names, images, _sel_str(spec.get("selector"))]


DEPLOY_COLS = [NAME, col("Ready", desc="Number of the pod with ready state"),
               col("Up-to-date", "integer", "Total number of non-terminated pods targeted by "
                   "this deployment that have the desired template spec."),
               col("Available", "integer", "Total number of available pods (ready for at "
                   "least minReadySeconds) targeted by this deployment."), AGE, *WL_WIDE]


def deploy_row(o: dict, now: float) -> list:
    md, spec, st = _md(o), o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [md.get("name", ""),
            f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas') or 0)}",
            int(st.get("updatedReplicas") or 0), int(st.get("availableReplicas") or 0),
            _since(md.get("creationTimestamp"), now), names, images,
            _sel_str(spec.get("selector"))]


# ---------------------------------------------------------------------- the others --
NS_COLS = [NAME, col("Status", desc="The status of the namespace"), AGE]


def ns_row(o, now):
    return [_md(o).get("name", ""), (o.get("status") or {}).get("phase", ""),
            _since(_md(o).get("creationTimestamp"), now)]


EP_COLS = [NAME, col("Endpoints", desc="Endpoints of the service"), AGE]


def ep_row(o, now):
    items = []
    for s in o.get("subsets") or []:
        ports = s.get("ports") or []
        for a in s.get("addresses") or []:
            if ports:
                items.extend(f"{a.get('ip')}:{p.get('port')}" for p in ports)
            else:
                items.append(a.get("ip", ""))
    txt = ",".join(items[:3]) if items else "<none>"
    if len(items) > 3:
        txt += f" + {len(items) - 3} more..."
    return [_md(o).get("name", ""), txt, _since(_md(o).get("creationTimestamp"), now)]


EVENT_COLS = [col("Last Seen", desc="Time when last this event was observed."),
              col("Type", desc="Type of this event (Normal, Warning), new types could be added "
                  "in the future."),
              col("Reason", desc="This should be a short, machine understandable string that "
                  "gives the reason for this event being generated."),
              col("Object", desc="The object that this event is about."),
              col("Subobject", desc="The subobject that this event is about.", priority=1),
              col("Source", desc="The component reporting this event.", priority=1),
              col("Message", desc="A human-readable description of the status of this "
                  "operation."),
              col("First Seen", desc="The time at which the event was first recorded.",
                  priority=1),
              col("Count", "integer", "The number of times this event has occurred.",
                  priority=1),
              col("Name", fmt="name", desc="Name of the event.", priority=1)]


def event_row(o, now):
    io = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or (o.get("series") or {}).get(
        "lastObservedTime")
    first = o.get("firstTimestamp") or o.get("eventTime")
    src = o.get("source") or {}
    source = src.get("component") or o.get("reportingComponent") or ""
    if src.get("host"):
        source += f", {src['host']}"
    count = o.get("count") or (o.get("series") or {}).get("count") or 1
    return [_since(last, now) if last else "<unknown>", o.get("type", ""), o.get("reason", ""),
            f"{(io.get('kind') or '').lower()}/{io.get('name', '')}",
            io.get("fieldPath", ""), source, (o.get("message") or "").strip(),
            _since(first, now) if first else "<unknown>", int(count),
            _md(o).get("name", "")]


SECRET_COLS = [NAME, col("Type", desc="The type of the secret"),
               col("Data", "integer", "The number of data items"), AGE]


def secret_row(o, now):
    return [_md(o).get("name", ""), o.get("type", ""), len(o.get("data") or {}),
            _since(_md(o).get("creationTimestamp"), now)]


CM_COLS = [NAME, col("Data", "integer", "The number of data items"), AGE]


def cm_row(o, now):
    return [_md(o).get("name", ""), len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _since(_md(o).get("creationTimestamp"), now)]


SA_COLS = [NAME, col("Secrets", "integer", "Secrets is a list of the secrets in the same "
                     "namespace."), AGE]


def sa_row(o, now):
    return [_md(o).get("name", ""), len(o.get("secrets") or []),
            _since(_md(o).get("creationTimestamp"), now)]


QUOTA_COLS = [NAME, AGE, col("Request", desc="Request represents a minimum amount of cpu/memory "
                             "that a container may consume."),
              col("Limit", desc="Limits control the maximum amount of cpu/memory that a "
                  "container may use independent of contention on the node.")]


def quota_row(o, now):
    st = o.get("status") or {}
    hard, used = st.get("hard") or {}, st.get("used") or {}
    req, lim = [], []
    for k in sorted(hard):
        s = f"{k}: {used.get(k, '0')}/{hard[k]}"
        (lim if k.startswith("limits.") else req).append(s)
    return [_md(o).get("name", ""), _since(_md(o).get("creationTimestamp"), now),
            ", ".join(req), ", ".join(lim)]


LR_COLS = [NAME, col("Created At", "date", "CreationTimestamp is a timestamp representing the "
                     "server time when this object was created.")]


def lr_row(o, now):
    return [_md(o).get("name", ""), _md(o).get("creationTimestamp", "")]


LEASE_COLS = [NAME, col("Holder", desc="The holder of the lease."), AGE]


def lease_row(o, now):
    return [_md(o).get("name", ""), (o.get("spec") or {}).get("holderIdentity") or "",
            _since(_md(o).get("creationTimestamp"), now)]


HPA_COLS = [NAME, col("Reference", desc="Reference to the target object"),
            col("Targets", desc="Target utilization"),
            col("MinPods", "string", "Lower limit for the number of pods."),
            col("MaxPods", "integer", "Upper limit for the number of pods."),
            col("Replicas", "integer", "Current number of replicas."), AGE]


def hpa_row(o, now):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    cur = st.get("currentCPUUtilizationPercentage")
    tgt = spec.get("targetCPUUtilizationPercentage")
    targets = f"cpu: {cur if cur is not None else '<unknown>'}%/{tgt}%" if tgt else "<none>"
    return [_md(o).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}", targets,
            str(spec.get("minReplicas", 1)), int(spec.get("maxReplicas") or 0),
            int(st.get("currentReplicas") or 0), _since(_md(o).get("creationTimestamp"), now)]


CSR_COLS = [NAME, AGE,
            col("SignerName", desc="The name of the signer the request is for."),
            col("Requestor", desc="Name of the user who created the request."),
            col("RequestedDuration", desc="The requested duration of the certificate."),
            col("Condition", desc="The conditions of the request: Approved, Denied, Failed, "
                "Issued or Pending.")]


def csr_row(o, now):
    from kcore.certificates.request import display_condition
    spec = o.get("spec") or {}
    exp = spec.get("expirationSeconds")
    return [_md(o).get("name", ""), _since(_md(o).get("creationTimestamp"), now),
            spec.get("signerName", ""), spec.get("username", ""),
            human_duration(exp) if isinstance(exp, int) else "<none>", display_condition(o)]


DEFAULT_COLS = [NAME, col("Created At", "date", "CreationTimestamp is a timestamp representing "
                          "the server time when this object was created.")]


def default_row(o, now):
    return [_md(o).get("name", ""), _md(o).get("creationTimestamp", "")]


PRINTERS = {
    "pods": (POD_COLS, pod_row), "nodes": (NODE_COLS, node_row),
    "services": (SVC_COLS, svc_row), "replicationcontrollers": (RC_COLS, rc_row),
    "deployments": (DEPLOY_COLS, deploy_row), "replicasets": (RC_COLS, rc_row),
    "namespaces": (NS_COLS, ns_row), "endpoints": (EP_COLS, ep_row),
    "events": (EVENT_COLS, event_row), "secrets": (SECRET_COLS, secret_row),
    "configmaps": (CM_COLS, cm_row), "serviceaccounts": (SA_COLS, sa_row),
    "resourcequotas": (QUOTA_COLS, quota_row), "limitranges": (LR_COLS, lr_row),
    "leases": (LEASE_COLS, lease_row), "horizontalpodautoscalers": (HPA_COLS, hpa_row),
    "certificatesigningrequests": (CSR_COLS, csr_row),
}


def partial_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


def table(resource: str, objs: list[dict], rv: str = "", include_object: str = "Metadata",
          columns: bool = True, cont: str = "", now: float | None = None) -> dict:
    cols, row = PRINTERS.get(resource, (DEFAULT_COLS, default_row))
    t = time.time() if now is None else now
    rows = []
    for o in objs:
        r: dict = {"cells": row(o, t)}
        if include_object == "Object":
            r["object"] = o
        elif include_object != "None":
            r["object"] = partial_metadata(o)
        rows.append(r)
    md: dict = {"resourceVersion": rv} if rv else {}
    if cont:
        md["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md,
            "columnDefinitions": cols if columns else None, "rows": rows}


age = _age
