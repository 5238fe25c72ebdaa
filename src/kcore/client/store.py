"""The informer's cache: objects by key, with secondary indexes.

Keys are kube's `namespace/name` (`name` for cluster-scoped objects). An
index function maps an object to the index values it is filed under; the
indexer keeps, per index, value → set of keys, updated on every add, update
and delete, so `by_index("node", "n1")` is a dict lookup, not a scan.
Objects handed out are the cached ones: treat them as read-only and copy
(`deep_copy`) before changing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson

IndexFunc = Callable[[dict], Iterable[str]]

NAMESPACE_INDEX = "namespace"
NODE_NAME_INDEX = "node"
OWNER_UID_INDEX = "owner"
CONTROLLER_UID_INDEX = "controller"


def deep_copy(obj):
    """A fast deep copy of a JSON value."""
    return orjson.loads(orjson.dumps(obj))


def meta_namespace_key(obj: dict) -> str:
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name', '')}" if ns else md.get("name", "")


def split_key(key: str) -> tuple[str, str]:
    """'ns/name' → ('ns', 'name'); 'name' → ('', 'name')."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def index_by_namespace(obj: dict) -> list[str]:
    return [(obj.get("metadata") or {}).get("namespace") or ""]


def index_by_node_name(obj: dict) -> list[str]:
    n = (obj.get("spec") or {}).get("nodeName")
    return [n] if n else []


def index_by_owner_uid(obj: dict) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or []
            if r.get("uid")]


def index_by_controller_uid(obj: dict) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or []
            if r.get("controller") and r.get("uid")]


STANDARD_INDEXERS: dict[str, IndexFunc] = {
    NAMESPACE_INDEX: index_by_namespace,
    NODE_NAME_INDEX: index_by_node_name,
    OWNER_UID_INDEX: index_by_owner_uid,
    CONTROLLER_UID_INDEX: index_by_controller_uid,
}


class Indexer:
    """A thread-free store with indexes (client-go's cache.Indexer)."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None,
                 key_func: Callable[[dict], str] = meta_namespace_key):
        self.key_func = key_func
        self.items: dict[str, dict] = {}
        self.indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: index_by_namespace}
        self.indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        self.add_indexers(indexers or {})

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        """Add indexes (existing objects are filed at once)."""
        for name, fn in indexers.items():
            if name in self.indexers:
                if self.indexers[name] is not fn:
                    if fn is STANDARD_INDEXERS.get(name) or \
                            self.indexers[name] is STANDARD_INDEXERS.get(name):
                        continue
                    raise ValueError(f"indexer {name!r} conflicts with an existing one")
                continue
            self.indexers[name] = fn
            idx: dict[str, set[str]] = {}
            for key, obj in self.items.items():
                for v in fn(obj):
                    idx.setdefault(v, set()).add(key)
            self.indices[name] = idx

    # -- writes (the reflector's) --------------------------------------------------------
    def _unindex(self, key: str, obj: dict) -> None:
        for name, fn in self.indexers.items():
            idx = self.indices[name]
            for v in fn(obj):
                s = idx.get(v)
                if s is not None:
                    s.discard(key)
                    if not s:
                        del idx[v]

    def _index(self, key: str, obj: dict) -> None:
        for name, fn in self.indexers.items():
            idx = self.indices[name]
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)

    def add(self, obj: dict) -> dict | None:
        """Insert or replace; returns the previous object, if any."""
        key = self.key_func(obj)
        old = self.items.get(key)
        if old is not None:
            self._unindex(key, old)
        self.items[key] = obj
        self._index(key, obj)
        return old

    update = add

    def delete(self, obj: dict) -> dict | None:
        key = self.key_func(obj)
        old = self.items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objs: Iterable[dict]) -> None:
        self.items = {}
        self.indices = {n: {} for n in self.indexers}
        for o in objs:
            self.add(o)

    # -- reads ---------------------------------------------------------------------------
    def get_by_key(self, key: str) -> dict | None:
        return self.items.get(key)

    def get(self, namespace: str | None, name: str) -> dict | None:
        return self.items.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.items.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def list_keys(self) -> list[str]:
        return list(self.items)

    def index_keys(self, index: str, value: str) -> list[str]:
        return list(self.indices[index].get(value, ()))

    def by_index(self, index: str, value: str) -> list[dict]:
        if index not in self.indices:
            raise KeyError(f"no index {index!r}")
        items = self.items
        return [items[k] for k in self.indices[index].get(value, ()) if k in items]

    def index_values(self, index: str) -> list[str]:
        return list(self.indices[index])

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, key: str) -> bool:
        return key in self.items
