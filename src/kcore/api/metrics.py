"""metrics.k8s.io/v1beta1: NodeMetrics and PodMetrics (the resource metrics API).

Read-only and never stored: kcore.apiserver.metrics_api builds them from the
kubelets' /stats/summary on each request. Listed in METRICS_KINDS (discovery,
OpenAPI) rather than registered with a storage registry.
"""
from __future__ import annotations

from kcore.api.kinds import Kind
from kcore.api.schema import define

MX = "io.k8s.metrics.pkg.apis.metrics.v1beta1"
OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
GROUP = "metrics.k8s.io"
VERSION = "v1beta1"

define(MX, "NodeMetrics", "NodeMetrics sets resource usage metrics of a node.", {
    "apiVersion": "s", "kind": "s", "metadata": OM,
    "timestamp": ("t!", "The following fields define time interval from which metrics were "
                  "collected from the interval [Timestamp-Window, Timestamp]."),
    "window": "s!",
    "usage": ("{q}!", "The memory usage is the memory working set.")},
    gvk=(GROUP, VERSION, "NodeMetrics"))
define(MX, "ContainerMetrics", "ContainerMetrics sets resource usage metrics of a container.", {
    "name": ("s!", "Container name corresponding to the one from pod.spec.containers."),
    "usage": ("{q}!", "The memory usage is the memory working set.")})
define(MX, "PodMetrics", "PodMetrics sets resource usage metrics of a pod.", {
    "apiVersion": "s", "kind": "s", "metadata": OM, "timestamp": "t!", "window": "s!",
    "containers": ("[ContainerMetrics]!", "Metrics for all containers are collected within "
                   "the same time window.")},
    gvk=(GROUP, VERSION, "PodMetrics"))

METRICS_KINDS = [
    Kind(GROUP, VERSION, "NodeMetrics", "nodes", "", False, "", f"{MX}.NodeMetrics",
         verbs=("get", "list")),
    Kind(GROUP, VERSION, "PodMetrics", "pods", "", True, "", f"{MX}.PodMetrics",
         verbs=("get", "list")),
]
