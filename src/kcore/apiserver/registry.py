"""Generic REST storage per kind, over the Storage interface and a watch cache.

Writes go straight to the store as guarded transactions (create: the key is
absent; update/delete: its mod revision is the one read), so the store decides
every race. Reads (get, list, watch) come from the watch cache, after waiting
until the cache has applied this API server's last write of the kind, so a
client always reads its own writes. resourceVersion is the store's
mod_revision; stored values are the objects' JSON without it.
"""
from __future__ import annotations

import base64
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from kcore.api import errors as E
from kcore.api import labels as L
from kcore.api.kinds import Kind
from kcore.api.meta import generate_name, new_uid, rfc3339
from kcore.apiserver.storage import KV, Cond, Delete, Put, StorageCompacted
from kcore.apiserver.stored import decode_value, encode_value
from kcore.apiserver.watchcache import Entry, TooOld, WatchCache

if TYPE_CHECKING:
    from kcore.apiserver.server import APIServer

log = logging.getLogger(__name__)

CREATE_ON_UPDATE = {"endpoints", "events", "leases"}
MAX_RETRIES = 16


@dataclass
class Extras:
    """What admission and kind hooks add to a write's transaction."""
    conds: list[Cond] = field(default_factory=list)
    ops: list = field(default_factory=list)
    touched: list[tuple[Registry, bytes]] = field(default_factory=list)
    rollbacks: list[Callable[[], None]] = field(default_factory=list)
    commits: list[Callable[[], None]] = field(default_factory=list)

    def rollback(self) -> None:
        for fn in self.rollbacks:
            fn()

    def commit(self) -> None:
        for fn in self.commits:
            fn()

    def note(self, res, ok: bool) -> None:
        """Tell the registries of guarded keys which revision to wait for before
        reading them again (the write's on success, the key's current on failure)."""
        for reg, key in self.touched:
            if ok:
                reg.note_write(res.revision)
            else:
                cur = res.current.get(key)
                if cur is not None:
                    reg.note_write(cur.mod_revision)


@dataclass
class Attributes:
    """A request as admission sees it."""
    op: str                     # CREATE | UPDATE | DELETE
    kind: Kind
    namespace: str
    name: str
    obj: dict | None
    old: dict | None
    subresource: str = ""
    user: object = None
    dry_run: bool = False


@dataclass
class ListResult:
    items: list[dict]
    rv: int
    cont: str = ""
    remaining: int | None = None
    entries: list | None = None     # cache entries of items (their JSON is cached)


def encode_continue(rv: int, start: bytes) -> str:
    tok = {"v": "meta.k8s.io/v1", "rv": rv, "start": start.decode("utf-8", "replace")}
    return base64.urlsafe_b64encode(orjson.dumps(tok)).decode().rstrip("=")


def decode_continue(text: str) -> tuple[int, bytes]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        tok = orjson.loads(raw)
        return int(tok["rv"]), tok["start"].encode()
    except Exception:  # noqa: BLE001 - any garbage token is the client's error
        raise E.bad_request("invalid continue token") from None


CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list.")


def canonical_order(obj: dict) -> None:
    """apiVersion, kind, metadata first, as kube serializes objects."""
    if next(iter(obj), None) == "apiVersion":
        return
    items = list(obj.items())
    obj.clear()
    for k in ("apiVersion", "kind", "metadata"):
        for kk, v in items:
            if kk == k:
                obj[k] = v
    for kk, v in items:
        if kk not in ("apiVersion", "kind", "metadata"):
            obj[kk] = v


def _dc(obj):
    """Fast deep copy of a JSON value."""
    return orjson.loads(orjson.dumps(obj))


class Registry:
    def __init__(self, server: APIServer, kind: Kind):
        self.server = server
        self.kind = kind
        self.storage = server.storage
        self.prefix = f"{server.config.etcd_prefix.rstrip('/')}/{kind.key_prefix}/".encode()
        self.cache = WatchCache(self.storage, self.prefix, decode_value,
                                capacity=server.config.watch_cache_size, name=kind.plural)
        self.last_write = 0
        self.hooks = server.hooks.get(kind.plural)

    # -- keys and reads -----------------------------------------------------------------
    def key(self, ns: str, name: str) -> bytes:
        if self.kind.namespaced:
            return self.prefix + f"{ns}/{name}".encode()
        return self.prefix + name.encode()

    def not_found(self, name: str) -> E.ApiError:
        return E.not_found(self.kind.plural, name, self.kind.group)

    def note_write(self, rev: int) -> None:
        self.last_write = max(self.last_write, rev)

    async def fresh(self) -> None:
        c = self.cache
        if not c.ready.is_set() or c.rev < self.last_write:
            if not await c.wait_for(self.last_write, 5.0):
                raise E.timeout(f"Too large resource version: {self.last_write}, current: "
                                f"{c.rev}", 1)

    async def current(self, key: bytes) -> Entry | None:
        await self.fresh()
        return self.cache.get(key)

    async def get(self, ns: str, name: str) -> dict:
        ent = await self.current(self.key(ns, name))
        if ent is None:
            raise self.not_found(name)
        return ent.obj

    # -- list ---------------------------------------------------------------------------
    def predicate(self, label_selector: str = "", field_selector: str = ""
                  ) -> Callable[[dict], bool] | None:
        try:
            lreqs = L.parse_label_selector(label_selector)
        except L.SelectorError as e:
            raise E.bad_request(f"unable to parse requirement: {e}" if "unable" not in str(e)
                                else str(e)) from None
        try:
            freqs = L.parse_field_selector(field_selector)
        except L.SelectorError as e:
            raise E.bad_request(str(e)) from None
        getters = []
        for r in freqs:
            g = self.kind.field_labels.get(r.key)
            if g is None:
                raise E.bad_request(f'field label not supported: {r.key}')
            getters.append((g, r.op, r.values[0]))
        if not lreqs and not getters:
            return None

        def pred(obj: dict) -> bool:
            if lreqs and not L.matches(lreqs, (obj.get("metadata") or {}).get("labels")):
                return False
            for g, op, v in getters:
                if (g(obj) == v) != (op == "="):
                    return False
            return True
        return pred

    def _ns_prefix(self, ns: str | None) -> bytes | None:
        if ns and self.kind.namespaced:
            return self.prefix + ns.encode() + b"/"
        return None

    async def list(self, ns: str | None, pred=None, limit: int = 0, cont: str = "",
                   rv: str = "") -> ListResult:
        await self.fresh()
        kp = self._ns_prefix(ns)
        if cont:
            tok_rv, start = decode_continue(cont)
            if tok_rv != self.cache.rev:
                return await self._list_from_store(kp or self.prefix, pred, limit, tok_rv, start)
            entries = self.cache.list(kp, start)
        else:
            entries = self.cache.list(kp)
        rev = self.cache.rev
        items: list[dict] = []
        picked: list[Entry] = []
        next_key = b""
        for ent in entries:
            if pred is not None and not pred(ent.obj):
                continue
            if limit and len(items) >= limit:
                next_key = ent.key
                break
            items.append(ent.obj)
            picked.append(ent)
        res = ListResult(items, rev, entries=picked)
        if next_key:
            res.cont = encode_continue(rev, next_key)
        return res

    async def _list_from_store(self, prefix: bytes, pred, limit: int, rev: int, start: bytes
                               ) -> ListResult:
        items: list[dict] = []
        while True:
            try:
                kvs, _, more = await self.storage.list(prefix, revision=rev, start=start,
                                                       limit=max(limit, 1) + 1 if limit else 0)
            except StorageCompacted:
                raise E.gone(CONTINUE_TOO_OLD) from None
            for kv in kvs:
                obj = decode_value(kv.value, kv.mod_revision)
                if pred is not None and not pred(obj):
                    continue
                if limit and len(items) >= limit:
                    return ListResult(items, rev, encode_continue(rev, kv.key))
                items.append(obj)
            if not more or not kvs:
                return ListResult(items, rev)
            start = kvs[-1].key + b"\0"

    # -- watch --------------------------------------------------------------------------
    async def watch(self, ns: str | None, pred, rv: str, send_initial: bool | None = None):
        await self.fresh()
        initial = rv in ("", "0") if send_initial is None else send_initial
        from_rev = 0
        if not initial or rv not in ("", "0"):
            try:
                from_rev = int(rv) if rv else 0
            except ValueError:
                raise E.bad_request(f'invalid resource version "{rv}"') from None
            if from_rev > self.cache.rev and not await self.cache.wait_for(from_rev, 3.0):
                raise E.timeout(f"Too large resource version: {from_rev}, current: "
                                f"{self.cache.rev}", 1)
        try:
            return self.cache.watch(from_rev, ns if self.kind.namespaced else None, pred,
                                    initial)
        except TooOld as e:
            raise E.gone(str(e)) from None

    # -- writes -------------------------------------------------------------------------
    def _reset_meta_for_create(self, obj: dict, ns: str) -> dict:
        k = self.kind
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        if k.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise E.bad_request("the namespace of the provided object does not match the "
                                    "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = generate_name(md["generateName"])
        md["uid"] = new_uid()
        md["creationTimestamp"] = rfc3339()
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink", "managedFields"):
            md.pop(f, None)
        if k.generation:
            md["generation"] = 1
        else:
            md.pop("generation", None)
        obj["apiVersion"] = k.api_version
        obj["kind"] = k.kind
        canonical_order(obj)
        return md

    async def create(self, obj: dict, ns: str, user=None, dry_run: bool = False,
                     share: bool = False) -> dict:
        """Create obj. `share`: the caller only reads the returned object (it becomes
        the cache's entry, see WatchCache.adopt)."""
        k = self.kind
        md = self._reset_meta_for_create(obj, ns)
        if k.has_status and k.kind not in ("Node", "ResourceQuota"):
            obj["status"] = {}
        k.default(obj)
        if k.on_create is not None:
            k.on_create(obj, user)
        name = md.get("name", "")
        attrs = Attributes("CREATE", k, ns, name, obj, None, user=user, dry_run=dry_run)
        await self.server.admission.mutate(attrs)
        errs = k.validate(obj, None)
        if errs:
            raise E.invalid_object(k.kind, name, errs, k.group)
        key = self.key(ns, name)
        for _ in range(MAX_RETRIES):
            extras = Extras()
            if self.hooks is not None:
                await self.hooks.before_create(self, obj, extras)
            try:
                await self.server.admission.validate(attrs, extras)
            except BaseException:
                extras.rollback()
                raise
            if dry_run:
                extras.rollback()
                return obj
            lease = await self.server.lease_for(k)
            value = encode_value(obj)
            if share:
                self.cache.adopt(key, value, obj)
            try:
                res = await self.storage.txn(
                    [Cond(key, 0), *extras.conds],
                    [Put(key, value, lease), *extras.ops])
            except BaseException:
                self.cache.withdraw(key, value)
                extras.rollback()
                raise
            if res.succeeded:
                self.note_write(res.revision)
                extras.note(res, True)
                extras.commit()
                md["resourceVersion"] = str(res.revision)
                return obj
            self.cache.withdraw(key, value)
            extras.rollback()
            if res.current.get(key) is not None:
                raise E.already_exists(k.plural, name, k.group)
            extras.note(res, False)     # a guarded object (quota) moved: read it anew
        raise E.conflict(k.plural, name, E.MODIFIED, k.group)

    def _prepare_update(self, new: dict, old: dict, subresource: str) -> dict:
        k = self.kind
        if subresource in k.subresource_updates:
            return k.subresource_updates[subresource](new, old)
        if subresource == "status":
            out = _dc(old)
            if "status" in new:
                out["status"] = new["status"]
            else:
                out.pop("status", None)
            return out
        if subresource == "binding":
            return new
        if subresource == "finalize":
            out = _dc(old)
            out.setdefault("spec", {})["finalizers"] = list(
                ((new.get("spec") or {}).get("finalizers")) or [])
            return out
        md = new.get("metadata")
        if not isinstance(md, dict):
            md = new["metadata"] = {}
        om = old.get("metadata") or {}
        for f in ("uid", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            if f in om:
                if f in ("uid",) and md.get(f) and md[f] != om[f]:
                    continue     # validation reports it
                md[f] = om[f]
            else:
                md.pop(f, None)
        md.pop("managedFields", None)
        md.pop("selfLink", None)
        if k.namespaced:
            md.setdefault("namespace", om.get("namespace"))
        else:
            md.pop("namespace", None)
        new["apiVersion"], new["kind"] = k.api_version, k.kind
        canonical_order(new)
        if k.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if k.plural == "namespaces":
            new.setdefault("spec", {})["finalizers"] = list(
                ((old.get("spec") or {}).get("finalizers")) or [])
        return new

    def _bump_generation(self, new: dict, old: dict) -> None:
        if not self.kind.generation:
            return
        og = (old.get("metadata") or {}).get("generation", 1)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = og + 1
        else:
            new["metadata"]["generation"] = og

    async def update(self, ns: str, name: str, fn: Callable[[dict], dict | Awaitable[dict]],
                     *, subresource: str = "", user=None, dry_run: bool = False,
                     precondition_rv: str | None = None, create: Callable | None = None,
                     validate: bool = True, copy: Callable[[dict], dict] | None = None,
                     share: bool = False) -> tuple[dict, bool]:
        """Read-modify-write with retries on races: fn(copy of current) → desired object.
        `copy` makes that copy (default: a deep one); a caller whose fn changes only a
        few members may copy just those, the rest staying shared with the cache.
        `share`: the caller only reads the returned object (see WatchCache.adopt).
        precondition_rv (from the client's body) turns a race into 409 Conflict.
        With `create`, a missing object is created by create() (PUT/apply semantics).
        Returns (object, created)."""
        k = self.kind
        key = self.key(ns, name)
        ent = await self.current(key)
        for _ in range(MAX_RETRIES):
            if ent is None:
                if create is not None:
                    return await create(), True
                raise self.not_found(name)
            old = ent.obj
            if precondition_rv and precondition_rv != str(ent.rev):
                raise E.conflict(k.plural, name, E.MODIFIED, k.group)
            desired = fn(_dc(old) if copy is None else copy(old))
            if hasattr(desired, "__await__"):
                desired = await desired
            new = self._prepare_update(desired, old, subresource)
            if self.hooks is not None and not subresource:
                self.hooks.prepare_update(self, new, old)
            md = new["metadata"]
            if md.get("name", name) != name:
                raise E.bad_request(f"the name of the object ({md.get('name')}) does not match "
                                    f"the name on the URL ({name})")
            self._bump_generation(new, old)
            if not subresource:
                k.default(new)
            attrs = Attributes("UPDATE", k, ns, name, new, old, subresource, user, dry_run)
            if not subresource:
                await self.server.admission.mutate(attrs)
            if validate:
                if subresource in ("status", "approval"):
                    errs = k.validate_status(new, old)
                else:
                    errs = k.validate(new, old)
                if errs:
                    raise E.invalid_object(k.kind, name, errs, k.group)
            md["resourceVersion"] = str(ent.rev)
            if new == old:
                return old, False
            extras = Extras()
            if self.hooks is not None:
                await self.hooks.before_update(self, new, old, extras)
            try:
                await self.server.admission.validate(attrs, extras)
            except BaseException:
                extras.rollback()
                raise
            if dry_run:
                extras.rollback()
                return new, False
            finishing = (md.get("deletionTimestamp") and not md.get("finalizers")
                         and self._finalizers_done(new))
            value = None if finishing else encode_value(new)
            op = Delete(key) if value is None else Put(key, value,
                                                       await self.server.lease_for(k))
            if share and value is not None:
                self.cache.adopt(key, value, new)
            try:
                res = await self.storage.txn([Cond(key, ent.rev), *extras.conds],
                                             [op, *extras.ops])
            except BaseException:
                self.cache.withdraw(key, value)
                extras.rollback()
                raise
            if res.succeeded:
                self.note_write(res.revision)
                extras.note(res, True)
                extras.commit()
                if finishing and self.hooks is not None:
                    self.hooks.after_delete(self, new)
                md["resourceVersion"] = str(res.revision)
                return new, False
            self.cache.withdraw(key, value)
            extras.rollback()
            extras.note(res, False)
            cur = res.current.get(key)
            ent = None if cur is None else Entry(key, decode_value(cur.value, cur.mod_revision),
                                                 cur.mod_revision)
        raise E.conflict(k.plural, name, E.MODIFIED, k.group)

    def _finalizers_done(self, obj: dict) -> bool:
        if self.kind.plural == "namespaces":
            return not ((obj.get("spec") or {}).get("finalizers"))
        if self.kind.plural == "pods":
            return False   # a terminating pod is removed by the kubelet (grace 0 delete)
        return True

    async def delete(self, ns: str, name: str, opts: dict, user=None, dry_run: bool = False
                     ) -> tuple[dict, bool]:
        """Delete (or start a graceful/finalizer-guarded deletion). Returns (object,
        removed_now)."""
        k = self.kind
        key = self.key(ns, name)
        ent = await self.current(key)
        for _ in range(MAX_RETRIES):
            if ent is None:
                raise self.not_found(name)
            obj = ent.obj
            md = obj.get("metadata") or {}
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise E.conflict(k.plural, name, f"Precondition failed: UID in precondition: "
                                 f"{pre['uid']}, UID in object meta: {md.get('uid')}", k.group)
            if pre.get("resourceVersion") and pre["resourceVersion"] != md.get(
                    "resourceVersion"):
                raise E.conflict(k.plural, name, f"Precondition failed: ResourceVersion in "
                                 f"precondition: {pre['resourceVersion']}, ResourceVersion in "
                                 f"object meta: {md.get('resourceVersion')}", k.group)
            graceful = self._graceful(obj, opts)
            if isinstance(graceful, _Unchanged):
                return dict(graceful), False
            if graceful is not None:
                # admission sees a graceful delete too (the immortal namespaces); what
                # it would add to the txn (quota release) waits for the final delete
                await self.server.admission.validate(Attributes(
                    "DELETE", k, ns, name, None, obj, user=user, dry_run=True), Extras())
                if dry_run:
                    return graceful, False
                res = await self.storage.txn([Cond(key, ent.rev)],
                                             [Put(key, encode_value(graceful))])
                if res.succeeded:
                    self.note_write(res.revision)
                    graceful["metadata"]["resourceVersion"] = str(res.revision)
                    return graceful, False
            else:
                attrs = Attributes("DELETE", k, ns, name, None, obj, user=user, dry_run=dry_run)
                extras = Extras()
                await self.server.admission.validate(attrs, extras)
                if dry_run:
                    return obj, True
                res = await self.storage.txn([Cond(key, ent.rev), *extras.conds],
                                             [Delete(key), *extras.ops])
                if res.succeeded:
                    self.note_write(res.revision)
                    extras.note(res, True)
                    if self.hooks is not None:
                        self.hooks.after_delete(self, obj)
                    return obj, True
                extras.note(res, False)
            cur = res.current.get(key)
            ent = None if cur is None else Entry(key, decode_value(cur.value, cur.mod_revision),
                                                 cur.mod_revision)
        raise E.conflict(k.plural, name, E.MODIFIED, k.group)

    def _graceful(self, obj: dict, opts: dict) -> dict | None:
        """The object marked for deletion, or None when it goes at once."""
        md = obj.get("metadata") or {}
        finalizers = list(md.get("finalizers") or [])
        policy = opts.get("propagationPolicy")
        if policy is None and opts.get("orphanDependents") is not None:
            policy = "Orphan" if opts["orphanDependents"] else "Background"
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy in ("Orphan", "Foreground") and not self._has_dependents_support():
            finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")
                          or f in (md.get("finalizers") or [])]
        grace = 0
        if self.kind.plural == "pods":
            spec, st = obj.get("spec") or {}, obj.get("status") or {}
            g = opts.get("gracePeriodSeconds")
            grace = int(spec.get("terminationGracePeriodSeconds", 30) if g is None else g)
            if not spec.get("nodeName") or st.get("phase") in ("Succeeded", "Failed"):
                grace = 0
            if grace < 0:
                grace = 1
            cur = md.get("deletionGracePeriodSeconds")
            if md.get("deletionTimestamp") and cur is not None and grace >= cur and \
                    grace > 0:
                return _unchanged(obj)
        elif self.kind.plural == "namespaces":
            if (obj.get("spec") or {}).get("finalizers") or finalizers:
                new = _dc(obj)
                nm = new["metadata"]
                nm.setdefault("deletionTimestamp", rfc3339())
                nm["deletionGracePeriodSeconds"] = 0
                if finalizers:
                    nm["finalizers"] = finalizers
                new.setdefault("status", {})["phase"] = "Terminating"
                return new
            return None
        if grace > 0 or finalizers:
            new = _dc(obj)
            nm = new["metadata"]
            if finalizers:
                nm["finalizers"] = finalizers
            if grace > 0:
                nm["deletionTimestamp"] = rfc3339(time.time() + grace)
                nm["deletionGracePeriodSeconds"] = grace
            else:
                nm.setdefault("deletionTimestamp", rfc3339())
                nm.setdefault("deletionGracePeriodSeconds", 0)
            if new == obj:
                return _unchanged(obj)
            return new
        return None

    def _has_dependents_support(self) -> bool:
        """Orphan/foreground finalizers need a garbage collector to be removed."""
        return self.server.config.gc_finalizers

    async def delete_collection(self, ns: str | None, pred, opts: dict, user=None,
                                dry_run: bool = False) -> list[dict]:
        res = await self.list(ns, pred)
        out = []
        for obj in res.items:
            md = obj.get("metadata") or {}
            try:
                o, _ = await self.delete(md.get("namespace", ""), md.get("name", ""), opts,
                                         user, dry_run)
                out.append(o)
            except E.ApiError as e:
                if e.code != 404:
                    raise
        return out

    def copy_for_write(self, obj: dict) -> dict:
        return _dc(obj)

    async def raw_get(self, ns: str, name: str) -> KV | None:
        kv, _ = await self.storage.get(self.key(ns, name))
        return kv


class _Unchanged(dict):
    pass


def _unchanged(obj: dict) -> dict:
    """A marker for 'already being deleted the same way': no write is needed."""
    u = _Unchanged(obj)
    return u


copy_obj = _dc
deepcopy = copy.deepcopy
