"""The API server's storage interface and its implementation over kcore.store.client.

`Storage` is all the API server knows of the store: byte values under keys,
revisions, conditional transactions and prefix watches. `StoreStorage` runs it
over `kcore.store.client.Client`, so the embedded store (in-process) and any
etcd v3 endpoint (real etcd, `kcore etcd`) are served by one code path.
"""
from kcore.apiserver.storage.interface import (  # noqa: F401
    KV,
    Cond,
    Delete,
    Put,
    Storage,
    StorageCompacted,
    TxnResult,
    WatchEvent,
)
from kcore.apiserver.storage.store import StoreStorage  # noqa: F401
