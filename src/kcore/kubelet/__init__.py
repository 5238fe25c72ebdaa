"""The kcore kubelet: node registration, heartbeats, node status, pods run through a
runtime (real processes or fake), the kubelet HTTP API, and hollow nodes.
See docs/kubelet.md."""
from kcore.kubelet.agent import Kubelet, KubeletConfig

__all__ = ["Kubelet", "KubeletConfig"]
