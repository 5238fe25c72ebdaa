"""A container's environment: `env` (values, $(VAR) references, fieldRef,
resourceFieldRef, configMapKeyRef, secretKeyRef) and `envFrom`, over a small
base (PATH, HOME, HOSTNAME). ConfigMaps and Secrets are read through the
caller's `lookup(kind, ns, name) -> dict | None`."""
from __future__ import annotations

import base64
import math
import os
import re


class EnvError(Exception):
    """CreateContainerConfigError: the message is what kube shows."""


_FIELD_RE = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _field(pod: dict, path: str, pod_ip: str, host_ip: str) -> str:
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    m = _FIELD_RE.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    return {
        "metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip, "status.hostIPs": host_ip, "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }.get(path, "")


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
           "T": 1e12, "m": 1e-3}


def _qty(v: str) -> float:
    s = str(v)
    for suf, mul in sorted(_SUFFIX.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(suf):
            return float(s[:-len(suf)]) * mul
    return float(s)


def _resource(container: dict, ref: dict, node_capacity: dict) -> str:
    res = ref.get("resource", "")
    kind, _, name = res.partition(".")
    r = (container.get("resources") or {})
    v = (r.get(kind) or {}).get(name)
    if v is None:
        v = node_capacity.get(name, "0") if kind == "limits" else "0"
    div = _qty(ref.get("divisor") or "1")
    return str(int(math.ceil(_qty(v) / div)))


def _expand(value: str, env: dict[str, str]) -> str:
    def rep(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", rep, value)


def _data(kind: str, obj: dict) -> dict[str, str]:
    if kind == "secrets":
        return {k: base64.b64decode(v).decode(errors="replace")
                for k, v in (obj.get("data") or {}).items()} | dict(obj.get("stringData") or {})
    return dict(obj.get("data") or {})


async def container_env(pod: dict, container: dict, *, pod_ip: str, host_ip: str,
                        lookup, node_capacity: dict | None = None) -> dict[str, str]:
    md = pod.get("metadata") or {}
    ns = md.get("namespace", "default")
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"), "HOSTNAME": md.get("name", "")}
    for src in container.get("envFrom") or []:
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            obj = await lookup(kind, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{kind[:-1]} "{ref.get("name", "")}" not found')
            prefix = src.get("prefix", "")
            for k, v in _data(kind, obj).items():
                env[prefix + k] = v
    for e in container.get("env") or []:
        name = e.get("name", "")
        if "value" in e or not e.get("valueFrom"):
            env[name] = _expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = _field(pod, vf["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in vf:
            env[name] = _resource(container, vf["resourceFieldRef"], node_capacity or {})
        else:
            for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                ref = vf.get(key)
                if not ref:
                    continue
                obj = await lookup(kind, ns, ref.get("name", ""))
                data = _data(kind, obj) if obj is not None else None
                if data is None or ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    if data is None:
                        raise EnvError(f'{kind[:-1]} "{ref.get("name", "")}" not found')
                    raise EnvError(f"couldn't find key {ref.get('key')} in "
                                   f"{'Secret' if kind == 'secrets' else 'ConfigMap'} "
                                   f"{ns}/{ref.get('name', '')}")
                env[name] = data[ref["key"]]
    return env


def field_value(pod: dict, path: str, pod_ip: str = "", host_ip: str = "") -> str:
    """A fieldRef's value (env vars and downwardAPI volume items)."""
    return _field(pod, path, pod_ip, host_ip)
