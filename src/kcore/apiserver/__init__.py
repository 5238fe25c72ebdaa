"""kcore's API server: the Kubernetes REST API over the store.

Public names: `APIServer`, `Config` (server.py, config.py); the storage
interface in `kcore.apiserver.storage`; the auth seam in `kcore.apiserver.auth`.
"""
from kcore.apiserver.config import Config  # noqa: F401
from kcore.apiserver.server import APIServer  # noqa: F401
