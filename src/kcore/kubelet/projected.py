"""Projected volumes, the pure part: what a pod's `projected` volumes hold and
when their bound tokens need renewing.

A projected volume's sources are `serviceAccountToken` (a TokenRequest bound
to the pod), `configMap`, `secret` and `downwardAPI` (fieldRef items). The
kubelet fetches what the sources name (volumes.py) and `render` turns that
into the files, path → bytes. This is what kube's `kube-api-access-*` volume
(added by the ServiceAccount admission plugin) is made of.
"""
from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass

from kcore.kubelet.envvars import field_value

MAX_TOKEN_AGE = 24 * 3600


class VolumeError(Exception):
    """A volume that cannot be set up (kube's FailedMount); the message says why."""


@dataclass(frozen=True)
class MountSpec:
    volume: str
    path: str                  # in the container
    read_only: bool


def projected_volumes(pod: dict) -> dict[str, dict]:
    """name → the `projected` spec of each projected volume of the pod."""
    return {v["name"]: v["projected"] for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, dict) and isinstance(v.get("projected"), dict) and v.get("name")}


def container_mounts(container: dict, volumes: dict[str, dict]) -> list[MountSpec]:
    """The container's mounts of the given volumes (others are not supported here)."""
    return [MountSpec(m["name"], m["mountPath"], bool(m.get("readOnly")))
            for m in container.get("volumeMounts") or []
            if m.get("name") in volumes and m.get("mountPath")]


def token_request(pod: dict, src: dict) -> dict:
    """The TokenRequest for a serviceAccountToken source, bound to the pod."""
    md = pod["metadata"]
    spec: dict = {"expirationSeconds": int(src.get("expirationSeconds") or 3600),
                  "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": md["name"],
                                     "uid": md.get("uid", "")}}
    spec["audiences"] = [src["audience"]] if src.get("audience") else []
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def refresh_at(issued: float, expires: float) -> float:
    """When a token is renewed: at 80 % of its life, or after 24 h (kube's token manager)."""
    return issued + min(0.8 * max(expires - issued, 0.0), MAX_TOKEN_AGE)


def clean_path(path: str) -> str:
    p = posixpath.normpath(path or "")
    if not path or p.startswith("..") or posixpath.isabs(p):
        raise VolumeError(f"invalid path {path!r}")
    return p


def _items(data: dict[str, bytes], items, what: str, optional: bool) -> dict[str, bytes]:
    if not items:
        return {clean_path(k): v for k, v in data.items()}
    out = {}
    for it in items:
        key = it.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"configmap references non-existent config key: {key}"
                              if what == "configmap" else
                              f"references non-existent secret key: {key}")
        out[clean_path(it.get("path") or key)] = data[key]
    return out


def object_data(kind: str, obj: dict) -> dict[str, bytes]:
    """A ConfigMap's data/binaryData or a Secret's data, as bytes."""
    if kind == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def render(projected: dict, pod: dict, tokens: dict[str, str],
           objects: dict[tuple[str, str], dict | None], pod_ip: str = "",
           host_ip: str = "") -> dict[str, bytes]:
    """The volume's files. tokens: source path → token; objects: (kind, name) → the
    ConfigMap/Secret (None: not found)."""
    files: dict[str, bytes] = {}
    for src in projected.get("sources") or []:
        if "serviceAccountToken" in src:
            path = clean_path(src["serviceAccountToken"].get("path", ""))
            files[path] = tokens[path].encode()
        for kind, key in (("configmaps", "configMap"), ("secrets", "secret")):
            ref = src.get(key)
            if ref is None:
                continue
            obj = objects.get((kind, ref.get("name", "")))
            optional = bool(ref.get("optional"))
            if obj is None:
                if optional:
                    continue
                raise VolumeError(f'{kind[:-1]} "{ref.get("name", "")}" not found')
            files.update(_items(object_data(kind, obj), ref.get("items"), kind[:-1], optional))
        if "downwardAPI" in src:
            for it in src["downwardAPI"].get("items") or []:
                fr = it.get("fieldRef")
                if fr:
                    files[clean_path(it.get("path", ""))] = field_value(
                        pod, fr.get("fieldPath", ""), pod_ip, host_ip).encode()
    return files
