"""A pod's projected volumes on disk: fetched, written, renewed.

`PodVolumes.sync()` writes every projected volume of the pod under
`<root>/pods/<ns>_<pod>_<uid>/volumes/kubernetes.io~projected/<volume>/`
(atomically, atomicwriter.py) and rewrites it when one of its bound tokens
reaches 80 % of its life; it returns the seconds until the next renewal. The
tokens come from TokenRequest (`POST .../serviceaccounts/<sa>/token`, bound to
the pod), ConfigMaps and Secrets from the API server. A failure is a
`VolumeError` (kube's FailedMount): the containers wait and it is retried.
"""
from __future__ import annotations

import datetime as dt
import logging
import os

from kcore.client.errors import ApiError, NotFound, TransportError
from kcore.client.resources import SERVICE_ACCOUNTS
from kcore.kubelet import projected as P
from kcore.kubelet.atomicwriter import write_files
from kcore.kubelet.runtime.base import Mount

log = logging.getLogger("kcore.kubelet.volumes")

PLUGIN_DIR = "kubernetes.io~projected"


def volume_dir(pod_dir: str, name: str) -> str:
    return os.path.join(pod_dir, "volumes", PLUGIN_DIR, name)


def _expiry(status: dict, now: float, seconds: int) -> float:
    ts = status.get("expirationTimestamp") or ""
    try:
        return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC).timestamp()
    except ValueError:
        return now + seconds


class PodVolumes:
    def __init__(self, client, pod: dict, pod_dir: str, lookup, clock):
        self.client, self.pod, self.pod_dir = client, pod, pod_dir
        self.lookup, self.clock = lookup, clock
        self.volumes = P.projected_volumes(pod)
        self.renew_at: dict[str, float] = {}        # volume → when to rewrite it

    async def sync(self, pod_ip: str = "", host_ip: str = "") -> float:
        """Write what is missing or due; seconds until the next renewal."""
        now = self.clock()
        for name, spec in self.volumes.items():
            if name in self.renew_at and now < self.renew_at[name]:
                continue
            self.renew_at[name] = await self._write(name, spec, now, pod_ip, host_ip)
        return max(min(self.renew_at.values(), default=now + 3600) - now, 0.0)

    async def _write(self, name: str, spec: dict, now: float, pod_ip: str,
                     host_ip: str) -> float:
        tokens: dict[str, str] = {}
        renew = float("inf")
        objects: dict[tuple[str, str], dict | None] = {}
        for src in spec.get("sources") or []:
            if "serviceAccountToken" in src:
                s = src["serviceAccountToken"]
                tok, exp = await self._token(s, now)
                tokens[P.clean_path(s.get("path", ""))] = tok
                renew = min(renew, P.refresh_at(now, exp))
            for kind, key in (("configmaps", "configMap"), ("secrets", "secret")):
                if key in src:
                    ref = src[key].get("name", "")
                    try:
                        objects[(kind, ref)] = await self.lookup(kind, self.pod_ns, ref)
                    except (ApiError, TransportError) as e:
                        raise P.VolumeError(f"{kind[:-1]} {ref}: {e}") from None
        files = P.render(spec, self.pod, tokens, objects, pod_ip, host_ip)
        mode = spec.get("defaultMode")
        write_files(volume_dir(self.pod_dir, name), files,
                    mode if isinstance(mode, int) else 0o644)
        return renew if renew != float("inf") else now + 60.0

    @property
    def pod_ns(self) -> str:
        return self.pod["metadata"].get("namespace", "default")

    async def _token(self, src: dict, now: float) -> tuple[str, float]:
        spec = self.pod.get("spec") or {}
        sa = spec.get("serviceAccountName") or "default"
        body = P.token_request(self.pod, src)
        try:
            out = await self.client.request_json(
                "POST", SERVICE_ACCOUNTS.path(self.pod_ns, sa, "token"), body=body)
        except NotFound as e:
            raise P.VolumeError(f'failed to fetch token: serviceaccounts "{sa}" not found '
                                f'({e})') from None
        except (ApiError, TransportError) as e:
            raise P.VolumeError(f"failed to fetch token: {e}") from None
        st = out.get("status") or {}
        if not st.get("token"):
            raise P.VolumeError("failed to fetch token: empty TokenRequest status")
        return st["token"], _expiry(st, now, body["spec"]["expirationSeconds"])

    def mounts(self, container: dict) -> list[Mount]:
        """The container's mounts of volumes written here."""
        return [Mount(volume_dir(self.pod_dir, m.volume), m.path, m.read_only)
                for m in P.container_mounts(container, self.volumes)
                if m.volume in self.renew_at]
