"""core/v1 kinds: defaulting, validation and registration (schemas in core_schema)."""
from __future__ import annotations

import ipaddress

from kcore.api import core_schema  # noqa: F401  (defines the schemas)
from kcore.api import errors as E
from kcore.api import labels as L
from kcore.api import validation as V
from kcore.api.errors import FieldError
from kcore.api.kinds import Kind, get_path, register
from kcore.api.quantity import QuantityError, parse_quantity

C = "io.k8s.api.core.v1"


# ---------------------------------------------------------------------- defaulting --
def default_container(c: dict) -> None:
    img = c.get("image") or ""
    if "imagePullPolicy" not in c and img:
        tag = img.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.setdefault("resources", {})
    if isinstance(res, dict) and res.get("limits") and isinstance(res["limits"], dict):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            pr.setdefault("timeoutSeconds", 1)
            pr.setdefault("periodSeconds", 10)
            pr.setdefault("successThreshold", 1)
            pr.setdefault("failureThreshold", 3)
            hg = pr.get("httpGet")
            if isinstance(hg, dict):
                hg.setdefault("path", "/")
                hg.setdefault("scheme", "HTTP")


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            default_container(c)
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        if not any(k != "name" for k in v):
            v["emptyDir"] = {}
        for src in ("secret", "configMap"):
            if isinstance(v.get(src), dict):
                v[src].setdefault("defaultMode", 420)
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")


def qos_class(spec: dict) -> str:
    reqs, lims, any_set = {}, {}, False
    guaranteed = True
    for c in spec.get("containers") or []:
        r = (c.get("resources") or {})
        rq, lm = r.get("requests") or {}, r.get("limits") or {}
        if rq or lm:
            any_set = True
        for res in ("cpu", "memory"):
            if res not in lm or res not in rq or _q(rq[res]) != _q(lm[res]):
                guaranteed = False
        reqs.update(rq)
        lims.update(lm)
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _q(v):
    try:
        return parse_quantity(v)
    except QuantityError:
        return None


def default_pod(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        default_pod_spec(spec)
        if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
            spec["serviceAccount"] = spec["serviceAccountName"]
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    st = obj.setdefault("status", {})
    if isinstance(st, dict):
        st.setdefault("phase", "Pending")
        if isinstance(spec, dict):
            st.setdefault("qosClass", qos_class(spec))


def default_template(tmpl: dict) -> None:
    if isinstance(tmpl, dict):
        spec = tmpl.setdefault("spec", {})
        if isinstance(spec, dict):
            default_pod_spec(spec)
        md = tmpl.setdefault("metadata", {})
        if isinstance(md, dict):
            md.setdefault("creationTimestamp", None)


def default_rc(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    tmpl = spec.get("template")
    tl = ((tmpl or {}).get("metadata") or {}).get("labels") if isinstance(tmpl, dict) else None
    if tl and not spec.get("selector"):
        spec["selector"] = dict(tl)
    md = obj.setdefault("metadata", {})
    if tl and not md.get("labels"):
        md["labels"] = dict(tl)
    spec.setdefault("replicas", 1)
    if isinstance(tmpl, dict):
        default_template(tmpl)
    obj.setdefault("status", {}).setdefault("replicas", 0)


def default_service(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    if spec["type"] == "ExternalName":
        return
    spec.setdefault("sessionAffinity", "None")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "targetPort" not in p and "port" in p:
                p["targetPort"] = p["port"]
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    spec.setdefault("internalTrafficPolicy", "Cluster")
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def default_endpoints(obj: dict) -> None:
    for s in obj.get("subsets") or []:
        for p in (s.get("ports") or []) if isinstance(s, dict) else []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")


def default_namespace(obj: dict) -> None:
    md = obj.setdefault("metadata", {})
    name = md.get("name")
    if name:
        md.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("finalizers", ["kubernetes"])
    st = obj.setdefault("status", {})
    if isinstance(st, dict):
        st.setdefault("phase", "Active")


def default_secret(obj: dict) -> None:
    obj.setdefault("type", "Opaque")
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        import base64
        data = obj.setdefault("data", {})
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def default_node(obj: dict) -> None:
    st = obj.setdefault("status", {})
    if isinstance(st, dict):
        st.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
        if st.get("capacity") and not st.get("allocatable"):
            st["allocatable"] = dict(st["capacity"])


def default_limitrange(obj: dict) -> None:
    for item in get_path(obj, "spec.limits") or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        for k, v in (item.get("max") or {}).items():
            item.setdefault("default", {}).setdefault(k, v)
        for k, v in (item.get("default") or {}).items():
            item.setdefault("defaultRequest", {}).setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            item.setdefault("defaultRequest", {}).setdefault(k, v)


def default_event(obj: dict) -> None:
    io = obj.get("involvedObject")
    md = obj.get("metadata") or {}
    if isinstance(io, dict) and not io.get("namespace") and md.get("namespace"):
        pass


# ---------------------------------------------------------------------- validation --
RESTART = ["Always", "OnFailure", "Never"]
DNS_POLICY = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
PULL = ["Always", "IfNotPresent", "Never"]


def _resources(res, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(res, dict):
        return errs
    vals = {}
    for part in ("limits", "requests"):
        for k, v in (res.get(part) or {}).items():
            try:
                q = parse_quantity(v)
            except QuantityError as e:
                errs.append(E.invalid(f"{path}.{part}[{k}]", v, str(e)))
                continue
            if q < 0:
                errs.append(E.invalid(f"{path}.{part}[{k}]", v,
                                      "must be greater than or equal to 0"))
            vals[(part, k)] = q
    for (part, k), q in vals.items():
        if part == "requests" and ("limits", k) in vals and q > vals[("limits", k)]:
            errs.append(E.invalid(f"{path}.requests", res["requests"][k],
                                  f"must be less than or equal to {k} limit of "
                                  f"{res['limits'][k]}"))
    return errs


def validate_containers(cs, path: str, volumes: set[str], required: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    if not cs:
        if required:
            errs.append(E.required(path, ""))
        return errs
    seen: set[str] = set()
    for i, c in enumerate(cs):
        p = f"{path}[{i}]"
        if not isinstance(c, dict):
            errs.append(E.invalid(p, c, "must be an object"))
            continue
        name = c.get("name") or ""
        if not name:
            errs.append(E.required(f"{p}.name", ""))
        else:
            for m in V.dns1123_label(name):
                errs.append(E.invalid(f"{p}.name", name, m))
            if name in seen:
                errs.append(E.duplicate(f"{p}.name", name))
            seen.add(name)
        if not c.get("image"):
            errs.append(E.required(f"{p}.image", ""))
        if c.get("imagePullPolicy") and c["imagePullPolicy"] not in PULL:
            errs.append(E.unsupported(f"{p}.imagePullPolicy", c["imagePullPolicy"], PULL))
        pnames: set[str] = set()
        for j, port in enumerate(c.get("ports") or []):
            pp = f"{p}.ports[{j}]"
            errs += V.port_number(port.get("containerPort"), f"{pp}.containerPort")
            if port.get("hostPort") not in (None, 0):
                errs += V.port_number(port.get("hostPort"), f"{pp}.hostPort")
            if port.get("protocol") and port["protocol"] not in PROTOCOLS:
                errs.append(E.unsupported(f"{pp}.protocol", port["protocol"], PROTOCOLS))
            if port.get("name"):
                if port["name"] in pnames:
                    errs.append(E.duplicate(f"{pp}.name", port["name"]))
                pnames.add(port["name"])
        for j, ev in enumerate(c.get("env") or []):
            if not ev.get("name"):
                errs.append(E.required(f"{p}.env[{j}].name", ""))
        for j, vm in enumerate(c.get("volumeMounts") or []):
            vp = f"{p}.volumeMounts[{j}]"
            if not vm.get("name"):
                errs.append(E.required(f"{vp}.name", ""))
            elif vm["name"] not in volumes:
                errs.append(E.not_found_field(f"{vp}.name", vm["name"]))
            if not vm.get("mountPath"):
                errs.append(E.required(f"{vp}.mountPath", ""))
        errs += _resources(c.get("resources"), f"{p}.resources")
    return errs


def validate_pod_spec(spec, path: str, restart_only: list[str] | None = None
                      ) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [E.required(path, "")]
    vols: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        n = v.get("name") or ""
        if not n:
            errs.append(E.required(f"{path}.volumes[{i}].name", ""))
            continue
        for m in V.dns1123_label(n):
            errs.append(E.invalid(f"{path}.volumes[{i}].name", n, m))
        if n in vols:
            errs.append(E.duplicate(f"{path}.volumes[{i}].name", n))
        vols.add(n)
    errs += validate_containers(spec.get("containers"), f"{path}.containers", vols, True)
    errs += validate_containers(spec.get("initContainers"), f"{path}.initContainers", vols,
                                False)
    rp = spec.get("restartPolicy")
    allowed = restart_only or RESTART
    if rp is not None and rp not in allowed:
        errs.append(E.unsupported(f"{path}.restartPolicy", rp, allowed))
    dp = spec.get("dnsPolicy")
    if dp is not None and dp not in DNS_POLICY:
        errs.append(E.unsupported(f"{path}.dnsPolicy", dp, DNS_POLICY))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or ads <= 0):
        errs.append(E.invalid(f"{path}.activeDeadlineSeconds", ads,
                              "must be between 1 and 2147483647, inclusive"))
    errs += V.non_negative(spec.get("terminationGracePeriodSeconds"),
                           f"{path}.terminationGracePeriodSeconds")
    for i, t in enumerate(spec.get("tolerations") or []):
        op = t.get("operator")
        if op not in (None, "", "Equal", "Exists"):
            errs.append(E.unsupported(f"{path}.tolerations[{i}].operator", op,
                                      ["Equal", "Exists"]))
        eff = t.get("effect")
        if eff not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(E.unsupported(f"{path}.tolerations[{i}].effect", eff,
                                      ["NoExecute", "NoSchedule", "PreferNoSchedule"]))
    for k in (spec.get("nodeSelector") or {}):
        for m in V.qualified_name(k):
            errs.append(E.invalid(f"{path}.nodeSelector", k, m))
    if spec.get("nodeName"):
        for m in V.dns1123_subdomain(spec["nodeName"]):
            errs.append(E.invalid(f"{path}.nodeName", spec["nodeName"], m))
    if spec.get("serviceAccountName"):
        for m in V.dns1123_subdomain(spec["serviceAccountName"]):
            errs.append(E.invalid(f"{path}.serviceAccountName", spec["serviceAccountName"], m))
    return errs


POD_UPDATE_MSG = ("pod updates may not change fields other than `spec.containers[*].image`,"
                  "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                  "`spec.tolerations` (only additions to existing tolerations),"
                  "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                  "previously negative)")


def _mutable_view(spec: dict) -> dict:
    s = dict(spec)
    s.pop("activeDeadlineSeconds", None)
    s.pop("tolerations", None)
    s.pop("terminationGracePeriodSeconds", None)
    for f in ("containers", "initContainers"):
        if isinstance(s.get(f), list):
            s[f] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                    for c in s[f]]
    return s


def validate_pod(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    errs += validate_pod_spec(obj.get("spec"), "spec")
    if old is not None and not errs:
        ns, os_ = obj.get("spec") or {}, old.get("spec") or {}
        if _mutable_view(ns) != _mutable_view(os_):
            errs.append(E.forbidden("spec", POD_UPDATE_MSG))
        old_tol = os_.get("tolerations") or []
        new_tol = ns.get("tolerations") or []
        if any(t not in new_tol for t in old_tol):
            errs.append(E.forbidden("spec.tolerations", "existing toleration can not be "
                                    "modified except its tolerationSeconds"))
    return errs


def validate_pod_status(obj: dict, old: dict | None) -> list[FieldError]:
    errs = []
    st = obj.get("status") or {}
    ph = st.get("phase")
    phases = ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
    if ph is not None and ph not in phases:
        errs.append(E.unsupported("status.phase", ph, phases))
    if old is not None:
        oph = (old.get("status") or {}).get("phase")
        if oph in ("Succeeded", "Failed") and ph != oph:
            errs.append(E.forbidden("status.phase", f"cannot transition from terminal phase "
                                    f"{oph} to {ph}"))
    return errs


def validate_template(tmpl, path: str, selector_reqs, restart_only=None) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(tmpl, dict):
        return [E.required(path, "")]
    md = tmpl.get("metadata") or {}
    tl = md.get("labels") or {}
    errs += V.labels(tl, f"{path}.metadata.labels")
    if selector_reqs is not None and not L.matches(selector_reqs, tl):
        errs.append(E.invalid(f"{path}.metadata.labels", _gomap(tl),
                              "`selector` does not match template `labels`"))
    errs += validate_pod_spec(tmpl.get("spec"), f"{path}.spec", restart_only)
    return errs


class _GoMap(str):
    pass


def _gomap(m: dict):
    return _GoMap("map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(
        m.items())) + "}")


def validate_rc(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    spec = obj.get("spec") or {}
    sel = spec.get("selector") or {}
    if not sel:
        errs.append(E.required("spec.selector", ""))
    else:
        errs += V.labels(sel, "spec.selector")
    errs += V.non_negative(spec.get("replicas"), "spec.replicas")
    errs += V.non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    if spec.get("template") is None:
        errs.append(E.required("spec.template", ""))
    else:
        errs += validate_template(spec["template"], "spec.template",
                                  L.from_map(sel) if sel else None, ["Always"])
    return errs


def validate_replicas_status(obj: dict, old: dict | None) -> list[FieldError]:
    errs = []
    for k, v in (obj.get("status") or {}).items():
        if k.endswith("eplicas"):
            errs += V.non_negative(v, f"status.{k}")
    return errs


SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def validate_service(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "dns1035", old)
    spec = obj.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    if t not in SERVICE_TYPES:
        errs.append(E.unsupported("spec.type", t, SERVICE_TYPES))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if t == "ExternalName":
        if not spec.get("externalName"):
            errs.append(E.required("spec.externalName", ""))
    elif not ports and not headless:
        errs.append(E.required("spec.ports", ""))
    names: set[str] = set()
    seen: set[tuple] = set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        if len(ports) > 1 and not p.get("name"):
            errs.append(E.required(f"{pp}.name", ""))
        if p.get("name"):
            for m in V.dns1123_label(p["name"]):
                errs.append(E.invalid(f"{pp}.name", p["name"], m))
            if p["name"] in names:
                errs.append(E.duplicate(f"{pp}.name", p["name"]))
            names.add(p["name"])
        errs += V.port_number(p.get("port"), f"{pp}.port")
        if p.get("protocol") and p["protocol"] not in PROTOCOLS:
            errs.append(E.unsupported(f"{pp}.protocol", p["protocol"], PROTOCOLS))
        key = (p.get("port"), p.get("protocol", "TCP"))
        if key in seen:
            errs.append(E.duplicate(f"{pp}", f"{key[0]}/{key[1]}"))
        seen.add(key)
        tp = p.get("targetPort")
        if isinstance(tp, int):
            errs += V.port_number(tp, f"{pp}.targetPort")
        if p.get("nodePort") and t == "ClusterIP":
            errs.append(E.forbidden(f"{pp}.nodePort", "may not be used when `type` is "
                                    "'ClusterIP'"))
    for k in (spec.get("selector") or {}):
        for m in V.qualified_name(k):
            errs.append(E.invalid("spec.selector", k, m))
    sa = spec.get("sessionAffinity")
    if sa not in (None, "None", "ClientIP"):
        errs.append(E.unsupported("spec.sessionAffinity", sa, ["ClientIP", "None"]))
    for ip in spec.get("externalIPs") or []:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errs.append(E.invalid("spec.externalIPs", ip, "must be a valid IP address"))
    if old is not None:
        oc = (old.get("spec") or {}).get("clusterIP")
        nc = spec.get("clusterIP")
        if oc and oc != nc and t != "ExternalName" and \
                (old.get("spec") or {}).get("type") != "ExternalName":
            errs.append(E.invalid("spec.clusterIPs[0]", spec.get("clusterIPs") or [nc],
                                  "may not change once set"))
    return errs


def validate_endpoints(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    for i, s in enumerate(obj.get("subsets") or []):
        for part in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(s.get(part) or []):
                ip = a.get("ip")
                if not ip:
                    errs.append(E.required(f"subsets[{i}].{part}[{j}].ip", ""))
                    continue
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    errs.append(E.invalid(f"subsets[{i}].{part}[{j}].ip", ip,
                                          "must be a valid IP address"))
        for j, p in enumerate(s.get("ports") or []):
            errs += V.port_number(p.get("port"), f"subsets[{i}].ports[{j}].port")
    return errs


def validate_namespace(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, False, "label", old)
    for i, f in enumerate(((obj.get("spec") or {}).get("finalizers")) or []):
        for m in V.qualified_name(f):
            errs.append(E.invalid(f"spec.finalizers[{i}]", f, m))
    return errs


TAINT_EFFECTS = ["NoExecute", "NoSchedule", "PreferNoSchedule"]


def validate_node(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, False, "subdomain", old)
    for i, t in enumerate((obj.get("spec") or {}).get("taints") or []):
        if not t.get("key"):
            errs.append(E.required(f"spec.taints[{i}].key", ""))
        if t.get("effect") not in TAINT_EFFECTS:
            errs.append(E.unsupported(f"spec.taints[{i}].effect", t.get("effect", ""),
                                      TAINT_EFFECTS))
    return errs


def validate_node_status(obj: dict, old: dict | None) -> list[FieldError]:
    errs = []
    st = obj.get("status") or {}
    for part in ("capacity", "allocatable"):
        for k, v in (st.get(part) or {}).items():
            try:
                parse_quantity(v)
            except QuantityError as e:
                errs.append(E.invalid(f"status.{part}[{k}]", v, str(e)))
    return errs


def _data_keys(m, path: str) -> list[FieldError]:
    import re
    errs = []
    for k in (m or {}):
        if not re.match(r"^[-._a-zA-Z0-9]+$", k) or len(k) > 253:
            errs.append(E.invalid(path, k, "a valid config key must consist of alphanumeric "
                                  "characters, '-', '_' or '.' (e.g. 'key.name',  or "
                                  "'KEY_NAME',  or 'key-name', regex used for validation is "
                                  "'[-._a-zA-Z0-9]+')"))
    return errs


def _immutable_data(obj: dict, old: dict | None, fields: tuple[str, ...]) -> list[FieldError]:
    if old is None or not old.get("immutable"):
        return []
    errs = []
    for f in fields:
        if obj.get(f) != old.get(f):
            errs.append(E.forbidden(f, "field is immutable when `immutable` is set"))
    if not obj.get("immutable"):
        errs.append(E.forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs


def validate_secret(obj: dict, old: dict | None) -> list[FieldError]:
    import base64
    import binascii
    errs = V.object_meta(obj, True, "subdomain", old)
    errs += _data_keys(obj.get("data"), "data")
    total = 0
    for k, v in (obj.get("data") or {}).items():
        try:
            total += len(base64.b64decode(v, validate=True))
        except (binascii.Error, ValueError):
            errs.append(E.invalid(f"data[{k}]", "<secret contents redacted>",
                                  "illegal base64 data"))
    if total > 1024 * 1024:
        errs.append(E.too_long("data", 1024 * 1024))
    if old is not None and obj.get("type") != old.get("type"):
        errs.append(E.invalid("type", obj.get("type"), "field is immutable"))
    return errs + _immutable_data(obj, old, ("data",))


def validate_configmap(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    errs += _data_keys(obj.get("data"), "data")
    errs += _data_keys(obj.get("binaryData"), "binaryData")
    size = sum(len(k) + len(v or "") for k, v in (obj.get("data") or {}).items())
    if size > 1024 * 1024:
        errs.append(E.too_long("", 1024 * 1024))
    return errs + _immutable_data(obj, old, ("data", "binaryData"))


def validate_quota(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    for part in ("spec.hard", "status.hard", "status.used"):
        for k, v in (get_path(obj, part) or {}).items():
            try:
                q = parse_quantity(v)
            except QuantityError as e:
                errs.append(E.invalid(f"{part}[{k}]", v, str(e)))
                continue
            if q < 0:
                errs.append(E.invalid(f"{part}[{k}]", v, "must be greater than or equal to 0"))
    return errs


def validate_quota_status(obj: dict, old: dict | None) -> list[FieldError]:
    return validate_quota(obj, old)


LIMIT_TYPES = ["Container", "PersistentVolumeClaim", "Pod"]


def validate_limitrange(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    limits = get_path(obj, "spec.limits")
    if limits is None:
        errs.append(E.required("spec.limits", ""))
    for i, item in enumerate(limits or []):
        if item.get("type") not in LIMIT_TYPES:
            errs.append(E.unsupported(f"spec.limits[{i}].type", item.get("type", ""),
                                      LIMIT_TYPES))
        for part in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            for k, v in (item.get(part) or {}).items():
                try:
                    parse_quantity(v)
                except QuantityError as e:
                    errs.append(E.invalid(f"spec.limits[{i}].{part}[{k}]", v, str(e)))
    return errs


def validate_event(obj: dict, old: dict | None) -> list[FieldError]:
    errs = V.object_meta(obj, True, "subdomain", old)
    io = obj.get("involvedObject")
    if not isinstance(io, dict):
        errs.append(E.required("involvedObject", ""))
        return errs
    ns = (obj.get("metadata") or {}).get("namespace")
    if io.get("namespace") and ns and io["namespace"] != ns:
        errs.append(E.invalid("involvedObject.namespace", io["namespace"],
                              "does not match event.namespace"))
    t = obj.get("type")
    if t not in (None, "", "Normal", "Warning"):
        errs.append(E.unsupported("type", t, ["Normal", "Warning"]))
    return errs


def validate_sa(obj: dict, old: dict | None) -> list[FieldError]:
    return V.object_meta(obj, True, "subdomain", old)


def validate_binding(obj: dict) -> list[FieldError]:
    t = obj.get("target") or {}
    errs = []
    if not t.get("name"):
        errs.append(E.required("target.name", ""))
    if t.get("kind") not in (None, "", "Node", "Minion"):
        errs.append(E.invalid("to.kind", t.get("kind"), "must be empty or 'Node'"))
    return errs


# ----------------------------------------------------------------- field selectors --
def _meta_fields(extra: dict | None = None) -> dict:
    d = {"metadata.name": lambda o: o["metadata"].get("name", ""),
         "metadata.namespace": lambda o: o["metadata"].get("namespace", "")}
    d.update(extra or {})
    return d


def _g(path: str):
    return lambda o: _str(get_path(o, path, ""))


def _str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


POD_FIELDS = _meta_fields({
    "spec.nodeName": _g("spec.nodeName"), "spec.restartPolicy": _g("spec.restartPolicy"),
    "spec.schedulerName": _g("spec.schedulerName"),
    "spec.serviceAccountName": _g("spec.serviceAccountName"),
    "spec.hostNetwork": lambda o: _str(bool(get_path(o, "spec.hostNetwork", False))),
    "status.phase": _g("status.phase"), "status.podIP": _g("status.podIP"),
    "status.nominatedNodeName": _g("status.nominatedNodeName")})
EVENT_FIELDS = _meta_fields({
    "involvedObject.kind": _g("involvedObject.kind"),
    "involvedObject.namespace": _g("involvedObject.namespace"),
    "involvedObject.name": _g("involvedObject.name"),
    "involvedObject.uid": _g("involvedObject.uid"),
    "involvedObject.apiVersion": _g("involvedObject.apiVersion"),
    "involvedObject.resourceVersion": _g("involvedObject.resourceVersion"),
    "involvedObject.fieldPath": _g("involvedObject.fieldPath"),
    "reason": _g("reason"), "reportingComponent": _g("reportingComponent"),
    "source": _g("source.component"), "type": _g("type")})

register(Kind("", "v1", "Namespace", "namespaces", "namespace", False, "namespaces",
              f"{C}.Namespace", ("ns",), (), subresources=("status", "finalize"),
              default=default_namespace, validate=validate_namespace, has_status=True,
              name_validator="label",
              field_labels=_meta_fields({"status.phase": _g("status.phase")}),
              verbs=("create", "delete", "get", "list", "patch", "update", "watch")))
register(Kind("", "v1", "Pod", "pods", "pod", True, "pods", f"{C}.Pod", ("po",), ("all",),
              subresources=("status", "binding", "log"), default=default_pod,
              validate=validate_pod, validate_status=validate_pod_status, has_status=True,
              field_labels=POD_FIELDS))
register(Kind("", "v1", "Node", "nodes", "node", False, "minions", f"{C}.Node", ("no",), (),
              subresources=("status",), default=default_node, validate=validate_node,
              validate_status=validate_node_status, has_status=True,
              field_labels=_meta_fields({
                  "spec.unschedulable": lambda o: _str(bool(get_path(o, "spec.unschedulable",
                                                                     False)))})))
register(Kind("", "v1", "Service", "services", "service", True, "services/specs",
              f"{C}.Service", ("svc",), ("all",), subresources=("status",),
              default=default_service, validate=validate_service, has_status=True,
              name_validator="dns1035", field_labels=_meta_fields(),
              verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update",
                     "watch")))
register(Kind("", "v1", "Endpoints", "endpoints", "endpoints", True, "services/endpoints",
              f"{C}.Endpoints", ("ep",), (), default=default_endpoints,
              validate=validate_endpoints, field_labels=_meta_fields()))
register(Kind("", "v1", "ReplicationController", "replicationcontrollers",
              "replicationcontroller", True, "controllers", f"{C}.ReplicationController",
              ("rc",), ("all",), subresources=("status", "scale"), default=default_rc,
              validate=validate_rc, validate_status=validate_replicas_status, has_status=True,
              generation=True, scale=("spec.replicas", "status.replicas"),
              field_labels=_meta_fields({"status.replicas": _g("status.replicas")})))
register(Kind("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True,
              "serviceaccounts", f"{C}.ServiceAccount", ("sa",), (), validate=validate_sa,
              field_labels=_meta_fields()))
register(Kind("", "v1", "Secret", "secrets", "secret", True, "secrets", f"{C}.Secret", (), (),
              default=default_secret, validate=validate_secret,
              field_labels=_meta_fields({"type": _g("type")})))
register(Kind("", "v1", "ConfigMap", "configmaps", "configmap", True, "configmaps",
              f"{C}.ConfigMap", ("cm",), (), validate=validate_configmap,
              field_labels=_meta_fields()))
register(Kind("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", True,
              "resourcequotas", f"{C}.ResourceQuota", ("quota",), (), subresources=("status",),
              validate=validate_quota, validate_status=validate_quota_status, has_status=True,
              field_labels=_meta_fields()))
register(Kind("", "v1", "Event", "events", "event", True, "events", f"{C}.Event", ("ev",), (),
              default=default_event, validate=validate_event, field_labels=EVENT_FIELDS))
register(Kind("", "v1", "LimitRange", "limitranges", "limitrange", True, "limitranges",
              f"{C}.LimitRange", ("limits",), (), default=default_limitrange,
              validate=validate_limitrange, field_labels=_meta_fields()))
