"""What the API server needs to know about a kind, in one record.

A `Kind` names the resource (group, version, plural, short names), where it is
stored (`key_prefix` under the etcd prefix), its schema, and the pure
functions the generic registry calls: defaulting, validation on create and
update, the status/spec split, field-selector fields and the Table printer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kcore.api.errors import FieldError

Obj = dict
Validator = Callable[[Obj, "Obj | None"], list[FieldError]]


def _noop_default(obj: Obj) -> None:
    pass


def _no_errors(obj: Obj, old: Obj | None) -> list[FieldError]:
    return []


@dataclass
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    key_prefix: str                      # "pods", "services/specs", "minions"
    schema: str                          # definition name, e.g. io.k8s.api.core.v1.Pod
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch",
                              "update", "watch")
    subresources: tuple[str, ...] = ()   # "status", "scale", "binding", "log", "finalize"
    default: Callable[[Obj], None] = _noop_default
    validate: Validator = _no_errors            # create (old None) and update
    validate_status: Validator = _no_errors
    has_status: bool = False             # main-resource writes keep the old status
    generation: bool = False             # metadata.generation bumps on spec change
    name_validator: str = "subdomain"    # subdomain | label | dns1035 | path
    field_labels: dict[str, Callable[[Obj], str]] = field(default_factory=dict)
    table: Callable | None = None        # (objs, wide) -> (columns, rows)
    scale: tuple[str, str] | None = None  # (spec path of replicas, status path) for /scale
    allow_unconditional_update: bool = True
    # create: (obj, authenticated user) -> None, e.g. a CSR records its requestor
    on_create: Callable[[Obj, object], None] | None = None
    # subresource writes with their own merge: name -> (new, old) -> object to store
    subresource_updates: dict[str, Callable[[Obj, Obj], Obj]] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


REGISTRY: dict[tuple[str, str, str], Kind] = {}   # (group, version, plural) -> Kind


def register(k: Kind) -> Kind:
    REGISTRY[(k.group, k.version, k.plural)] = k
    return k


def all_kinds() -> list[Kind]:
    load()
    return list(REGISTRY.values())


_loaded = False


def load() -> None:
    """Import the group modules (they register their kinds) and resolve schemas."""
    global _loaded
    if _loaded:
        return
    from kcore.api import (  # noqa: F401  # noqa: F401
        apps,
        authentication,
        authorization,
        autoscaling,
        certificates,
        coordination,
        core,
        meta_schema,
        metrics,
        rbac,
        schema,
    )

    schema.finalize()
    _loaded = True


def lookup(group: str, version: str, plural: str) -> Kind | None:
    load()
    return REGISTRY.get((group, version, plural))


def get_path(obj: Obj, path: str, default=None):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return default
        cur = cur.get(p)
        if cur is None:
            return default
    return cur


def set_path(obj: Obj, path: str, value) -> None:
    parts = path.split(".")
    cur = obj
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
