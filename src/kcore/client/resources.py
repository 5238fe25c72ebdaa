"""Which resource a call is about: group, version, plural, kind, scope.

`Resource` is the client's GroupVersionResource with its Kind and scope, enough
to build URLs (`/api/v1/namespaces/ns/pods/name/status`) and to name objects.
The well-known ones are constants (`PODS`, `NODES`, `DEPLOYMENTS`, ...);
`RESTMapper` resolves the rest (an ownerReference's apiVersion+kind, a
namespace controller walking every namespaced resource) from the server's
discovery documents.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kcore.client.rest import Client


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = field(default=(), compare=False)
    subresources: tuple[str, ...] = field(default=(), compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """kube's "plural.group" form ("deployments.apps", "pods")."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """URL path; a namespaced resource without namespace lists across namespaces."""
        p = self.base()
        if self.namespaced and namespace:
            p += f"/namespaces/{namespace}"
        p += f"/{self.plural}"
        if name:
            p += f"/{name}"
            if subresource:
                p += f"/{subresource}"
        return p

    def __str__(self) -> str:
        return self.group_resource


def _core(plural: str, kind: str, namespaced: bool = True) -> Resource:
    return Resource("", "v1", plural, kind, namespaced)


NAMESPACES = _core("namespaces", "Namespace", False)
NODES = _core("nodes", "Node", False)
PODS = _core("pods", "Pod")
SERVICES = _core("services", "Service")
ENDPOINTS = _core("endpoints", "Endpoints")
REPLICATION_CONTROLLERS = _core("replicationcontrollers", "ReplicationController")
SERVICE_ACCOUNTS = _core("serviceaccounts", "ServiceAccount")
SECRETS = _core("secrets", "Secret")
CONFIG_MAPS = _core("configmaps", "ConfigMap")
RESOURCE_QUOTAS = _core("resourcequotas", "ResourceQuota")
LIMIT_RANGES = _core("limitranges", "LimitRange")
EVENTS = _core("events", "Event")
PERSISTENT_VOLUME_CLAIMS = _core("persistentvolumeclaims", "PersistentVolumeClaim")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
REPLICA_SETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
HORIZONTAL_POD_AUTOSCALERS = Resource("autoscaling", "v1", "horizontalpodautoscalers",
                                      "HorizontalPodAutoscaler")
CERTIFICATE_SIGNING_REQUESTS = Resource("certificates.k8s.io", "v1",
                                        "certificatesigningrequests",
                                        "CertificateSigningRequest", False)

WELL_KNOWN = [NAMESPACES, NODES, PODS, SERVICES, ENDPOINTS, REPLICATION_CONTROLLERS,
              SERVICE_ACCOUNTS, SECRETS, CONFIG_MAPS, RESOURCE_QUOTAS, LIMIT_RANGES, EVENTS,
              DEPLOYMENTS, REPLICA_SETS, LEASES, HORIZONTAL_POD_AUTOSCALERS]


class RESTMapper:
    """apiVersion+kind ↔ Resource, filled from discovery (`await mapper.refresh(client)`)
    and seeded with the well-known resources so it works before the first refresh."""

    def __init__(self, resources: list[Resource] | None = None):
        self._by_kind: dict[tuple[str, str], Resource] = {}
        self._all: list[Resource] = []
        for r in resources if resources is not None else WELL_KNOWN:
            self._add(r)

    def _add(self, r: Resource) -> None:
        self._by_kind[(r.api_version, r.kind)] = r
        if r not in self._all:
            self._all.append(r)

    def for_kind(self, api_version: str, kind: str) -> Resource | None:
        r = self._by_kind.get((api_version, kind))
        if r is None:   # another version of the same group and kind
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            for (_av, k), cand in self._by_kind.items():
                if k == kind and cand.group == group:
                    return cand
        return r

    def all(self) -> list[Resource]:
        return list(self._all)

    async def refresh(self, client: Client) -> list[Resource]:
        """Read /api/v1 and every /apis/<group>/<preferred version>; subresources are
        recorded on their parent. Returns the resources found."""
        found: list[Resource] = []
        docs = [await client.request_json("GET", "/api/v1")]
        groups = await client.request_json("GET", "/apis")
        for g in groups.get("groups") or []:
            pv = (g.get("preferredVersion") or {}).get("groupVersion") or \
                ((g.get("versions") or [{}])[0]).get("groupVersion")
            if pv:
                docs.append(await client.request_json("GET", f"/apis/{pv}"))
        for doc in docs:
            gv = doc.get("groupVersion", "v1")
            group, _, version = gv.rpartition("/")
            subs: dict[str, list[str]] = {}
            mains = []
            for r in doc.get("resources") or []:
                name = r.get("name", "")
                if "/" in name:
                    parent, _, sub = name.partition("/")
                    subs.setdefault(parent, []).append(sub)
                else:
                    mains.append(r)
            for r in mains:
                res = Resource(group, version, r["name"], r.get("kind", ""),
                               bool(r.get("namespaced")), tuple(r.get("verbs") or ()),
                               tuple(subs.get(r["name"], ())))
                found.append(res)
        self._by_kind.clear()
        self._all = []
        for r in found:
            self._add(r)
        return found
