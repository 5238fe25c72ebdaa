"""kcore: a Kubernetes-style control plane in Python with compiled hot paths."""

__version__ = "0.1.0"
