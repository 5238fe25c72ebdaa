"""What every controller is given: the client, the shared informers, event
recorders, the REST mapper, and the controller manager's options."""
from __future__ import annotations

import socket
from dataclasses import dataclass

from kcore.client.events import EventRecorder
from kcore.client.informer import SharedInformerFactory
from kcore.client.resources import RESTMapper


@dataclass
class Options:
    """kube-controller-manager's settings (durations in seconds)."""
    concurrent_rc_syncs: int = 5
    concurrent_replicaset_syncs: int = 5
    concurrent_deployment_syncs: int = 5
    concurrent_endpoint_syncs: int = 5
    concurrent_namespace_syncs: int = 10
    concurrent_serviceaccount_token_syncs: int = 5
    concurrent_resource_quota_syncs: int = 5
    concurrent_gc_syncs: int = 20
    # node lifecycle
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    pod_eviction_timeout: float = 300.0
    node_eviction_rate: float = 0.1
    secondary_node_eviction_rate: float = 0.01
    large_cluster_size_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55
    # ipam
    allocate_node_cidrs: bool = False
    cluster_cidr: str = ""
    node_cidr_mask_size: int = 24
    service_cluster_ip_range: str = ""
    # quota, namespaces, service accounts, gc
    resource_quota_sync_period: float = 300.0
    namespace_sync_period: float = 300.0
    service_account_private_key_file: str = ""
    root_ca_file: str = ""
    root_ca_bundle: str = ""           # the kubeconfig's CA (when no --root-ca-file)
    enable_garbage_collector: bool = True
    terminated_pod_gc_threshold: int = 12500
    min_resync_period: float = 0.0     # informer resync (0: none)
    # horizontal pod autoscaler
    concurrent_horizontal_pod_autoscaler_syncs: int = 5
    horizontal_pod_autoscaler_sync_period: float = 15.0
    horizontal_pod_autoscaler_downscale_stabilization: float = 300.0
    horizontal_pod_autoscaler_tolerance: float = 0.1
    horizontal_pod_autoscaler_cpu_initialization_period: float = 300.0
    horizontal_pod_autoscaler_initial_readiness_delay: float = 30.0
    # certificates: the CA that signs approved CSRs (csrsigning runs only with both)
    cluster_signing_cert_file: str = ""
    cluster_signing_key_file: str = ""
    cluster_signing_duration: float = 365 * 24 * 3600.0


class ControllerContext:
    def __init__(self, client, options: Options | None = None,
                 informers: SharedInformerFactory | None = None, host: str = ""):
        self.client = client
        self.options = options or Options()
        self.informers = informers or SharedInformerFactory(
            client, resync_period=self.options.min_resync_period)
        self.mapper = RESTMapper()
        self.host = host or socket.gethostname()
        self.clients: dict[str, object] = {}       # controller name → its own client
        self._recorders: dict[str, EventRecorder] = {}

    def client_for(self, controller: str):
        """The client a controller writes with: its service account's with
        --use-service-account-credentials, else the manager's."""
        return self.clients.get(controller, self.client)

    def recorder(self, component: str, client=None) -> EventRecorder:
        r = self._recorders.get(component)
        if r is None:
            r = self._recorders[component] = EventRecorder(client or self.client, component,
                                                           self.host)
        return r

    async def close(self) -> None:
        for r in self._recorders.values():
            await r.stop()
        await self.informers.shutdown()
