"""Where a node's kubelet listens, from its Node object.

The address is the node's InternalIP (else Hostname, else ExternalIP); the
port is status.daemonEndpoints.kubeletEndpoint.Port. kcore kubelets serve
plain HTTP. Used by pods/log (podlogs.py) and the metrics API (metrics_api.py).
"""
from __future__ import annotations


def kubelet_address(node: dict | None) -> tuple[str, int] | None:
    """(host, port) of node's kubelet; None when the node does not say."""
    st = (node or {}).get("status") or {}
    port = (((st.get("daemonEndpoints") or {}).get("kubeletEndpoint")) or {}).get("Port") or 0
    host = next((a.get("address") for t in ("InternalIP", "Hostname", "ExternalIP")
                 for a in st.get("addresses") or [] if a.get("type") == t), None)
    if node is None or not port or not host:
        return None
    return host, int(port)


def kubelet_url(addr: tuple[str, int], path: str) -> str:
    host, port = addr
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"
