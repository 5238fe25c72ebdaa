"""Deployments: roll a pod template out through ReplicaSets.

Each distinct pod template gets a ReplicaSet named `<deployment>-<hash>`, the
hash (also the `pod-template-hash` label and selector term) computed from
the template and `status.collisionCount`. ReplicaSets carry the revision
(`deployment.kubernetes.io/revision`, the deployment copies the newest),
`desired-replicas` and `max-replicas`; re-using an old template moves its
ReplicaSet to the newest revision and records the old one in
`revision-history`. That is all `kubectl rollout history/undo` read.

- RollingUpdate: scale the new ReplicaSet up while the total stays within
  replicas + maxSurge, scale old ones down while available pods stay at least
  replicas − maxUnavailable (unhealthy old pods go first), proportionally
  spread a resize across ReplicaSets mid-rollout.
- Recreate: scale every old ReplicaSet to 0, wait until their pods are gone,
  then scale the new one up.
- Status: replicas, updated/ready/available/unavailable, observedGeneration
  and the Available/Progressing conditions `kubectl rollout status` waits on
  (NewReplicaSetAvailable when complete, ProgressDeadlineExceeded after
  progressDeadlineSeconds without progress). Old ReplicaSets beyond
  revisionHistoryLimit are deleted once scaled to zero.
"""
from __future__ import annotations

import logging
import math
import time

import orjson

from kcore.api import labels as L
from kcore.api.meta import parse_time, rfc3339
from kcore.client import errors as E
from kcore.client.events import NORMAL, WARNING
from kcore.client.resources import DEPLOYMENTS, PODS, REPLICA_SETS
from kcore.client.store import CONTROLLER_UID_INDEX, deep_copy, meta_namespace_key
from kcore.controllers import ownerrefs
from kcore.controllers.controller import Controller
from kcore.controllers.pods import created

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
              DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"}
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_INT32 = 2**31 - 1

# Progressing reasons (what kubectl prints and checks)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"


# ------------------------------------------------------------------ pure functions --
def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _semantic(v):
    """Zero values dropped, as Go's omitempty does: a template decoded from protobuf
    (`stdin: false`, `generation: 0`) equals the same template sent as JSON."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            x = _semantic(x)
            if x is None or x is False or x == "" or x == {} or x == [] or \
                    (x == 0 and not isinstance(x, bool)):
                continue
            out[k] = x
        return out
    if isinstance(v, list):
        return [_semantic(x) for x in v]
    return v


def _without_hash(template: dict) -> dict:
    t = deep_copy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return _semantic(t)


def template_hash(template: dict, collision_count: int | None = None) -> str:
    """The pod-template-hash of a template: FNV-32a of its canonical JSON (zero values
    dropped; and the collision count), written with kube's vowel-free alphabet."""
    data = orjson.dumps(_without_hash(template), option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += int(collision_count).to_bytes(4, "little")
    return "".join(SAFE_ALPHABET[int(ch) % len(SAFE_ALPHABET)] for ch in str(fnv32a(data)))


def equal_ignore_hash(a: dict, b: dict) -> bool:
    return _without_hash(a) == _without_hash(b)


def scaled_value(v, total: int, round_up: bool) -> int:
    """intstr: an int, or "25%" of total rounded up or down."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if s.endswith("%"):
        pct = int(s[:-1] or 0)
        x = pct * total / 100.0
        return math.ceil(x) if round_up else math.floor(x)
    return int(s)


def replicas_of(obj: dict | None) -> int:
    if obj is None:
        return 0
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def status_of(obj: dict | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def is_rolling(d: dict) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") \
        == "RollingUpdate"


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas_of(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: dict) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: dict) -> int:
    desired = replicas_of(d)
    if not is_rolling(d) or desired == 0:
        return 0
    return min(resolve_fenceposts(d)[1], desired)


def revision_of(obj: dict | None) -> int:
    if obj is None:
        return 0
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def new_rs_replicas(d: dict, all_rss: list[dict], new_rs: dict | None) -> int:
    """How big the new ReplicaSet may be now."""
    desired = replicas_of(d)
    if not is_rolling(d):
        return desired
    current = sum(replicas_of(rs) for rs in all_rss)
    total_max = desired + max_surge(d)
    cur_new = replicas_of(new_rs)
    if current >= total_max:
        return cur_new
    return cur_new + min(total_max - current, desired - cur_new)


def deployment_complete(d: dict, st: dict) -> bool:
    desired = replicas_of(d)
    return (int(st.get("updatedReplicas") or 0) == desired and
            int(st.get("replicas") or 0) == desired and
            int(st.get("availableReplicas") or 0) == desired and
            int(st.get("observedGeneration") or 0) >= int(d["metadata"].get("generation", 1)))


def deployment_progressing(d: dict, new: dict) -> bool:
    old = d.get("status") or {}

    def old_replicas(s):
        return int(s.get("replicas") or 0) - int(s.get("updatedReplicas") or 0)
    return (int(new.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0) or
            old_replicas(new) < old_replicas(old) or
            int(new.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0) or
            int(new.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0))


def get_condition(st: dict, ctype: str) -> dict | None:
    for c in st.get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def set_condition(st: dict, cond: dict) -> None:
    """kube's SetDeploymentCondition: same status and reason → leave it."""
    cur = get_condition(st, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and \
            cur.get("reason") == cond.get("reason"):
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime", cond["lastTransitionTime"])
    st["conditions"] = [c for c in st.get("conditions") or [] if c.get("type") != cond["type"]]
    st["conditions"].append(cond)


def remove_condition(st: dict, ctype: str) -> None:
    if st.get("conditions"):
        st["conditions"] = [c for c in st["conditions"] if c.get("type") != ctype]


def new_condition(ctype: str, status: str, reason: str, message: str,
                  now: float | None = None) -> dict:
    t = rfc3339(now)
    return {"type": ctype, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
            "reason": reason, "message": message}


def has_progress_deadline(d: dict) -> bool:
    p = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return p is not None and int(p) != MAX_INT32


def timed_out(d: dict, st: dict, now: float) -> bool:
    if not has_progress_deadline(d):
        return False
    c = get_condition(st, "Progressing")
    if c is None:
        return False
    if c.get("reason") == NEW_RS_AVAILABLE:
        return False
    if c.get("reason") == TIMED_OUT:
        return True
    try:
        since = parse_time(c.get("lastUpdateTime") or "")
    except ValueError:
        return False
    return now > since + int(d["spec"]["progressDeadlineSeconds"])


def rs_fraction(rs: dict, d: dict) -> int:
    desired = replicas_of(d)
    if desired == 0:
        return -replicas_of(rs)
    deployment_replicas = desired + max_surge(d)
    ann = ((rs.get("metadata") or {}).get("annotations") or {}).get(MAX_REPLICAS)
    try:
        annotated = int(ann) if ann is not None else status_of(d, "replicas")
    except ValueError:
        annotated = status_of(d, "replicas")
    if annotated <= 0:
        annotated = max(status_of(d, "replicas"), 1)
    return math.floor(replicas_of(rs) * deployment_replicas / annotated + 0.5) \
        - replicas_of(rs)


# --------------------------------------------------------------------- controller --
class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"

    def __init__(self, ctx, workers: int | None = None):
        super().__init__(ctx, workers or ctx.options.concurrent_deployment_syncs)
        self.deployments = self.informer(DEPLOYMENTS)
        self.rss = self.informer(REPLICA_SETS)
        self.pods = self.informer(PODS)
        self.deployments.add_event_handler(self.enqueue, lambda o, n: self.enqueue(n),
                                           self.enqueue)
        self.rss.add_event_handler(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pods.add_event_handler(on_delete=self._pod_deleted)

    # -- handlers -----------------------------------------------------------------------
    def _owner_of(self, obj: dict) -> dict | None:
        ref = ownerrefs.controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.store.get(obj["metadata"].get("namespace"), ref.get("name", ""))
        if d is None or d["metadata"].get("uid") != ref.get("uid"):
            return None
        return d

    def _matching(self, rs: dict) -> list[dict]:
        labels = rs["metadata"].get("labels") or {}
        out = []
        for d in self.deployments.store.list(rs["metadata"].get("namespace", "")):
            try:
                sel = L.from_label_selector((d.get("spec") or {}).get("selector"))
            except L.SelectorError:
                continue
            if sel and L.matches(sel, labels):
                out.append(d)
        return out

    def _rs_added(self, rs: dict) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)
        elif ownerrefs.controller_ref(rs) is None:
            for d in self._matching(rs):
                self.enqueue(d)

    def _rs_updated(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        od, nd = self._owner_of(old), self._owner_of(new)
        if od is not None and (nd is None or od["metadata"]["uid"] != nd["metadata"]["uid"]):
            self.enqueue(od)
        if nd is not None:
            self.enqueue(nd)
        elif ownerrefs.controller_ref(new) is None:
            for d in self._matching(new):
                self.enqueue(d)

    def _rs_deleted(self, rs: dict) -> None:
        d = self._owner_of(rs)
        if d is not None:
            self.enqueue(d)

    def _pod_deleted(self, pod: dict) -> None:
        ref = ownerrefs.controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rss.store.get(pod["metadata"].get("namespace"), ref.get("name", ""))
        if rs is None:
            return
        d = self._owner_of(rs)
        # Recreate waits for old pods to be gone
        if d is not None and not is_rolling(d) and \
                not [p for p in self._pods_of([rs]) if p is not pod]:
            self.enqueue(d)

    # -- sync ---------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        cached = self.deployments.store.get(ns, name)
        if cached is None:
            return
        d = deep_copy(cached)
        spec = d.get("spec") or {}
        try:
            sel = L.from_label_selector(spec.get("selector"))
        except L.SelectorError:
            sel = None
        if not sel:
            self.recorder.event(d, WARNING, "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector "
                                "is required.")
            if status_of(d, "observedGeneration") < d["metadata"].get("generation", 1):
                st = deep_copy(d.get("status") or {})
                st["observedGeneration"] = d["metadata"].get("generation", 1)
                await self._write_status(d, st)
            return
        rss = await self._claim_replicasets(d, sel)
        if d["metadata"].get("deletionTimestamp"):
            await self._sync_status_only(d, rss)
            return
        await self._check_paused(d)
        if spec.get("paused"):
            await self._sync_scale(d, rss)
            return
        if self._is_scaling_event(d, rss):
            await self._sync_scale(d, rss)
            return
        if is_rolling(d):
            await self._rollout_rolling(d, rss)
        else:
            await self._rollout_recreate(d, rss)

    async def _claim_replicasets(self, d: dict, sel) -> list[dict]:
        md = d["metadata"]
        uid = md["uid"]
        deleting = bool(md.get("deletionTimestamp"))
        cands = {meta_namespace_key(r): r for r in self.rss.store.list(md["namespace"])}
        out = []
        for rs in cands.values():
            ref = ownerrefs.controller_ref(rs)
            matches = L.matches(sel, rs["metadata"].get("labels"))
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    out.append(rs)
                elif not deleting:
                    try:
                        await ownerrefs.release(self.client, REPLICA_SETS, rs, uid)
                    except (E.NotFound, E.Invalid, E.Conflict):
                        pass
                continue
            if deleting or not matches or rs["metadata"].get("deletionTimestamp"):
                continue
            try:
                out.append(await ownerrefs.adopt(self.client, REPLICA_SETS, rs, d))
            except (E.NotFound, E.Invalid, E.Conflict):
                continue
        return out

    def _pods_of(self, rss: list[dict]) -> list[dict]:
        out = []
        for rs in rss:
            out.extend(self.pods.store.by_index(CONTROLLER_UID_INDEX, rs["metadata"]["uid"]))
        return out

    async def _check_paused(self, d: dict) -> None:
        if not has_progress_deadline(d):
            return
        st = deep_copy(d.get("status") or {})
        cond = get_condition(st, "Progressing")
        paused = bool((d.get("spec") or {}).get("paused"))
        if paused and (cond is None or cond.get("reason") != PAUSED):
            set_condition(st, new_condition("Progressing", "Unknown", PAUSED,
                                            "Deployment is paused"))
        elif not paused and cond is not None and cond.get("reason") == PAUSED:
            set_condition(st, new_condition("Progressing", "Unknown", RESUMED,
                                            "Deployment is resumed"))
        else:
            return
        await self._write_status(d, st)

    # -- ReplicaSets: new, old, revisions ---------------------------------------------
    def _split(self, d: dict, rss: list[dict]) -> tuple[dict | None, list[dict]]:
        tmpl = (d.get("spec") or {}).get("template") or {}
        new = None
        for rs in sorted(rss, key=lambda r: (created(r), r["metadata"]["name"])):
            if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, tmpl):
                new = rs
                break
        old = [r for r in rss if r is not new]
        return new, old

    def _rs_annotations(self, d: dict, rs: dict, revision: int, exists: bool) -> bool:
        """Copy the deployment's annotations onto rs and set revision, desired and max
        replicas; returns whether anything changed."""
        md = rs.setdefault("metadata", {})
        ann = md.setdefault("annotations", {})
        before = dict(ann)
        for k, v in ((d["metadata"].get("annotations")) or {}).items():
            if k not in NOT_COPIED:
                ann[k] = v
        old_rev = ann.get(REVISION)
        try:
            old_n = int(old_rev) if old_rev else 0
        except ValueError:
            old_n = 0
        if old_n < revision:
            ann[REVISION] = str(revision)
            if old_rev and exists:
                hist = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
                hist.append(old_rev)
                ann[REVISION_HISTORY] = ",".join(hist)
        ann[DESIRED_REPLICAS] = str(replicas_of(d))
        ann[MAX_REPLICAS] = str(replicas_of(d) + max_surge(d))
        return ann != before

    async def _get_all(self, d: dict, rss: list[dict], create: bool
                       ) -> tuple[dict | None, list[dict]]:
        new, old = self._split(d, rss)
        max_old = max((revision_of(r) for r in old), default=0)
        revision = max_old + 1
        if new is not None:
            rs = deep_copy(new)
            changed = self._rs_annotations(d, rs, revision, True)
            mrs = (d.get("spec") or {}).get("minReadySeconds", 0) or 0
            if ((rs.get("spec") or {}).get("minReadySeconds", 0) or 0) != mrs:
                rs["spec"]["minReadySeconds"] = mrs
                changed = True
            if changed:
                new = await self.client.update(REPLICA_SETS, rs)
            await self._set_revision(d, revision_of(new))
            st = d.get("status") or {}
            if has_progress_deadline(d) and get_condition(st, "Progressing") is None:
                st2 = deep_copy(st)
                set_condition(st2, new_condition("Progressing", "True", FOUND_NEW_RS,
                                                 f'Found new replica set "{new["metadata"]["name"]}"'))
                await self._write_status(d, st2)
            return new, old
        if not create:
            return None, old
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        tmpl = deep_copy((d.get("spec") or {}).get("template") or {})
        h = template_hash(tmpl, collisions)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        sel = deep_copy((d.get("spec") or {}).get("selector") or {})
        sel.setdefault("matchLabels", {})[HASH_LABEL] = h
        md = d["metadata"]
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{md['name']}-{h}", "namespace": md["namespace"],
                           "labels": dict((tmpl.get("metadata") or {}).get("labels") or {}),
                           "ownerReferences": [ownerrefs.owner_ref_for(d)]},
              "spec": {"replicas": 0, "minReadySeconds":
                       (d.get("spec") or {}).get("minReadySeconds", 0) or 0,
                       "selector": sel, "template": tmpl}}
        self._rs_annotations(d, rs, revision, False)
        rs["spec"]["replicas"] = new_rs_replicas(d, old, None)
        try:
            new = await self.client.create(REPLICA_SETS, rs)
        except E.AlreadyExists:
            existing = await self.client.get(REPLICA_SETS, rs["metadata"]["name"],
                                             md["namespace"])
            ref = ownerrefs.controller_ref(existing)
            if ref is not None and ref.get("uid") == md["uid"] and equal_ignore_hash(
                    (existing.get("spec") or {}).get("template") or {},
                    (d.get("spec") or {}).get("template") or {}):
                return existing, old
            st = deep_copy(d.get("status") or {})
            st["collisionCount"] = collisions + 1
            await self._write_status(d, st)
            raise E.Conflict(f"hash collision for ReplicaSet {rs['metadata']['name']}; "
                             f"collisionCount now {collisions + 1}") from None
        except E.ApiError as e:
            if has_progress_deadline(d):
                st = deep_copy(d.get("status") or {})
                set_condition(st, new_condition("Progressing", "False", "ReplicaSetCreateError",
                                                f'Failed to create new replica set '
                                                f'"{rs["metadata"]["name"]}": {e.message}'))
                await self._write_status(d, st)
            self.recorder.event(d, WARNING, "FailedCreate",
                                f"Failed to create new replica set "
                                f"\"{rs['metadata']['name']}\": {e.message}")
            raise
        n = replicas_of(new)
        if n > 0:
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled up replica set {new['metadata']['name']} from 0 to {n}")
        await self._set_revision(d, revision)
        if has_progress_deadline(d):
            st = deep_copy(d.get("status") or {})
            set_condition(st, new_condition("Progressing", "True", NEW_RS_CREATED,
                                            f'Created new replica set "{new["metadata"]["name"]}"'))
            await self._write_status(d, st)
        return new, old

    async def _set_revision(self, d: dict, revision: int) -> None:
        ann = d["metadata"].setdefault("annotations", {})
        if ann.get(REVISION) == str(revision):
            return
        ann[REVISION] = str(revision)
        updated = await self.client.update(DEPLOYMENTS, d)
        d["metadata"] = updated["metadata"]

    async def _scale_rs(self, d: dict, rs: dict, n: int) -> dict:
        size_changed = replicas_of(rs) != n
        new = deep_copy(rs)
        ann = new["metadata"].setdefault("annotations", {})
        before = dict(ann)
        ann[DESIRED_REPLICAS] = str(replicas_of(d))
        ann[MAX_REPLICAS] = str(replicas_of(d) + max_surge(d))
        if not size_changed and ann == before:
            return rs
        new["spec"]["replicas"] = n
        out = await self.client.update(REPLICA_SETS, new)
        if size_changed:
            verb = "up" if n > replicas_of(rs) else "down"
            self.recorder.event(d, NORMAL, "ScalingReplicaSet",
                                f"Scaled {verb} replica set {rs['metadata']['name']} from "
                                f"{replicas_of(rs)} to {n}")
        return out

    # -- scaling (resize or paused) -------------------------------------------------------
    def _is_scaling_event(self, d: dict, rss: list[dict]) -> bool:
        new, old = self._split(d, rss)
        for rs in [r for r in old + ([new] if new else []) if replicas_of(r) > 0]:
            desired = ((rs["metadata"].get("annotations")) or {}).get(DESIRED_REPLICAS)
            if desired is not None and desired != str(replicas_of(d)):
                return True
        return False

    async def _sync_scale(self, d: dict, rss: list[dict]) -> None:
        new, old = await self._get_all(d, rss, create=False)
        await self._scale(d, new, old)
        new, old = self._split(d, [r for r in self.rss.store.list(d["metadata"]["namespace"])
                                   if (ownerrefs.controller_ref(r) or {}).get("uid")
                                   == d["metadata"]["uid"]])
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old)
        await self._sync_status(d, old + ([new] if new else []), new)

    async def _scale(self, d: dict, new: dict | None, old: list[dict]) -> None:
        desired = replicas_of(d)
        all_rss = old + ([new] if new else [])
        active = [r for r in all_rss if replicas_of(r) > 0]
        if len(active) <= 1:
            target = active[0] if active else (new or (max(old, key=created) if old else None))
            if target is not None and replicas_of(target) != desired:
                await self._scale_rs(d, target, desired)
            return
        if new is not None and replicas_of(new) == desired and status_of(
                new, "availableReplicas") == desired and ((new["metadata"].get(
                    "annotations") or {}).get(DESIRED_REPLICAS) == str(desired)):
            for rs in old:
                if replicas_of(rs):
                    await self._scale_rs(d, rs, 0)
            return
        if not is_rolling(d):
            return
        current = sum(replicas_of(r) for r in active)
        allowed = desired + max_surge(d) if desired > 0 else 0
        to_add = allowed - current
        if to_add > 0:
            ordered = sorted(active, key=lambda r: (-replicas_of(r), -created(r)))
        else:
            ordered = sorted(active, key=lambda r: (-replicas_of(r), created(r)))
        sizes: dict[str, int] = {}
        added = 0
        for rs in ordered:
            prop = 0
            if replicas_of(rs) and to_add and to_add != added:
                frac = rs_fraction(rs, d)
                allowed_left = to_add - added
                prop = min(frac, allowed_left) if to_add > 0 else max(frac, allowed_left)
            sizes[rs["metadata"]["name"]] = replicas_of(rs) + prop
            added += prop
        for i, rs in enumerate(ordered):
            n = sizes[rs["metadata"]["name"]]
            if i == 0 and to_add != 0:
                n = max(n + to_add - added, 0)
            await self._scale_rs(d, rs, n)

    # -- rollouts -----------------------------------------------------------------------
    async def _rollout_rolling(self, d: dict, rss: list[dict]) -> None:
        new, old = await self._get_all(d, rss, create=True)
        all_rss = old + [new]
        if await self._reconcile_new(d, all_rss, new):
            await self._after_step(d)
            return
        if await self._reconcile_old(d, all_rss, [r for r in old if replicas_of(r) > 0], new):
            await self._after_step(d)
            return
        st = self._calculate_status(d, all_rss, new)
        if deployment_complete(d, st):
            await self._cleanup(d, old)
        await self._sync_status(d, all_rss, new)

    async def _after_step(self, d: dict) -> None:
        """A scale happened: write status from the freshest ReplicaSets we know."""
        rss = [r for r in self.rss.store.list(d["metadata"]["namespace"])
               if (ownerrefs.controller_ref(r) or {}).get("uid") == d["metadata"]["uid"]]
        new, old = self._split(d, rss)
        await self._sync_status(d, old + ([new] if new else []), new)

    async def _reconcile_new(self, d: dict, all_rss: list[dict], new: dict) -> bool:
        desired = replicas_of(d)
        cur = replicas_of(new)
        if cur == desired:
            return False
        if cur > desired:
            await self._scale_rs(d, new, desired)
            return True
        n = new_rs_replicas(d, all_rss, new)
        if n == cur:
            return False
        await self._scale_rs(d, new, n)
        return True

    async def _reconcile_old(self, d: dict, all_rss: list[dict], old: list[dict],
                             new: dict) -> bool:
        old_count = sum(replicas_of(r) for r in old)
        if old_count == 0:
            return False
        all_count = sum(replicas_of(r) for r in all_rss)
        min_available = replicas_of(d) - max_unavailable(d)
        new_unavailable = replicas_of(new) - status_of(new, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = 0
        remaining = []
        for rs in sorted(old, key=lambda r: (created(r), r["metadata"]["name"])):
            if cleaned >= max_scaled_down:
                remaining.append(rs)
                continue
            n, avail = replicas_of(rs), status_of(rs, "availableReplicas")
            if n == 0 or n == avail:
                remaining.append(rs)
                continue
            down = min(max_scaled_down - cleaned, n - avail)
            remaining.append(await self._scale_rs(d, rs, n - down))
            cleaned += down
        all_now = remaining + [new]
        available = sum(status_of(r, "availableReplicas") for r in all_now)
        scaled = 0
        if available > min_available:
            total = available - min_available
            for rs in sorted(remaining, key=lambda r: (created(r), r["metadata"]["name"])):
                if scaled >= total:
                    break
                n = replicas_of(rs)
                if n == 0:
                    continue
                down = min(n, total - scaled)
                await self._scale_rs(d, rs, n - down)
                scaled += down
        return cleaned + scaled > 0

    async def _rollout_recreate(self, d: dict, rss: list[dict]) -> None:
        new, old = await self._get_all(d, rss, create=False)
        all_rss = old + ([new] if new else [])
        scaled = False
        for rs in old:
            if replicas_of(rs) > 0:
                await self._scale_rs(d, rs, 0)
                scaled = True
        if scaled:
            await self._after_step(d)
            return
        if any(status_of(r, "replicas") > 0 for r in old) or \
                any((p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                    for p in self._pods_of(old)):
            await self._sync_status(d, all_rss, new)
            return
        if new is None:
            new, old = await self._get_all(d, rss, create=True)
            all_rss = old + [new]
        if replicas_of(new) != replicas_of(d):
            await self._scale_rs(d, new, replicas_of(d))
            await self._after_step(d)
            return
        st = self._calculate_status(d, all_rss, new)
        if deployment_complete(d, st):
            await self._cleanup(d, old)
        await self._sync_status(d, all_rss, new)

    async def _cleanup(self, d: dict, old: list[dict]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [r for r in old if not r["metadata"].get("deletionTimestamp")]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return
        cleanable.sort(key=lambda r: (revision_of(r), created(r)))
        for rs in cleanable[:diff]:
            if status_of(rs, "replicas") or replicas_of(rs) or \
                    rs["metadata"].get("generation", 1) > status_of(rs, "observedGeneration"):
                continue
            md = rs["metadata"]
            try:
                await self.client.delete(REPLICA_SETS, md["name"], md["namespace"],
                                         preconditions={"uid": md["uid"]})
            except E.NotFound:
                pass

    # -- status -------------------------------------------------------------------------
    def _calculate_status(self, d: dict, all_rss: list[dict], new: dict | None) -> dict:
        st = deep_copy(d.get("status") or {})
        available = sum(status_of(r, "availableReplicas") for r in all_rss)
        total = sum(replicas_of(r) for r in all_rss)
        st["observedGeneration"] = d["metadata"].get("generation", 1)
        st["replicas"] = sum(status_of(r, "replicas") for r in all_rss)
        st["updatedReplicas"] = status_of(new, "replicas")
        st["readyReplicas"] = sum(status_of(r, "readyReplicas") for r in all_rss)
        st["availableReplicas"] = available
        st["unavailableReplicas"] = max(total - available, 0)
        if available >= replicas_of(d) - max_unavailable(d):
            set_condition(st, new_condition("Available", "True", "MinimumReplicasAvailable",
                                            "Deployment has minimum availability."))
        else:
            set_condition(st, new_condition("Available", "False", "MinimumReplicasUnavailable",
                                            "Deployment does not have minimum availability."))
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                  "unavailableReplicas"):
            if not st[k]:
                st.pop(k)
        return st

    async def _sync_status_only(self, d: dict, rss: list[dict]) -> None:
        new, old = self._split(d, rss)
        await self._sync_status(d, old + ([new] if new else []), new)

    async def _sync_status(self, d: dict, all_rss: list[dict], new: dict | None) -> None:
        """syncRolloutStatus: counts, Available, Progressing (and its deadline)."""
        now = time.time()
        st = self._calculate_status(d, all_rss, new)
        if not has_progress_deadline(d):
            remove_condition(st, "Progressing")
        cur = get_condition(st, "Progressing")
        complete = (int(st.get("replicas") or 0) == int(st.get("updatedReplicas") or 0) and
                    cur is not None and cur.get("reason") == NEW_RS_AVAILABLE)
        paused = bool((d.get("spec") or {}).get("paused"))
        if has_progress_deadline(d) and not complete and not paused:
            name = (new or {}).get("metadata", {}).get("name")
            cond = None
            if deployment_complete(d, st):
                msg = f'ReplicaSet "{name}" has successfully progressed.' if name else \
                    f'Deployment "{d["metadata"]["name"]}" has successfully progressed.'
                cond = new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now)
            elif deployment_progressing(d, st):
                msg = f'ReplicaSet "{name}" is progressing.' if name else \
                    f'Deployment "{d["metadata"]["name"]}" is progressing.'
                cond = new_condition("Progressing", "True", RS_UPDATED, msg, now)
                if cur is not None and cur.get("status") == "True":
                    cond["lastTransitionTime"] = cur.get("lastTransitionTime",
                                                         cond["lastTransitionTime"])
                remove_condition(st, "Progressing")
            elif timed_out(d, st, now):
                msg = f'ReplicaSet "{name}" has timed out progressing.' if name else \
                    f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
                cond = new_condition("Progressing", "False", TIMED_OUT, msg, now)
            if cond is not None:
                set_condition(st, cond)
        failures = [c for r in all_rss for c in (r.get("status") or {}).get("conditions") or []
                    if c.get("type") == "ReplicaFailure" and c.get("status") == "True"]
        if failures:
            f = failures[0]
            set_condition(st, new_condition("ReplicaFailure", "True", f.get("reason", ""),
                                            f.get("message", ""), now))
        else:
            remove_condition(st, "ReplicaFailure")
        if st == (d.get("status") or {}):
            self._requeue_stuck(d, st, now)
            return
        await self._write_status(d, st)
        self._requeue_stuck(d, st, now)

    def _requeue_stuck(self, d: dict, st: dict, now: float) -> None:
        cur = get_condition(st, "Progressing")
        if cur is None or not has_progress_deadline(d) or \
                cur.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT, PAUSED):
            return
        if deployment_complete(d, st):
            return
        try:
            since = parse_time(cur.get("lastUpdateTime") or "")
        except ValueError:
            return
        after = since + int(d["spec"]["progressDeadlineSeconds"]) - now
        self.queue.add_after(meta_namespace_key(d), max(after, 0.0) + 1.0)

    async def _write_status(self, d: dict, st: dict) -> None:
        obj = deep_copy(d)
        obj["status"] = st
        try:
            out = await self.client.update_status(DEPLOYMENTS, obj)
        except E.NotFound:
            return
        d["metadata"] = out["metadata"]
        d["status"] = out.get("status") or {}
