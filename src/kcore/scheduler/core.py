"""The scheduler's pure core: informer events in, placement decisions out.

No clock, no sockets, no threads. A driver feeds it the cluster as it sees
it through informers and asks for decisions::

    s = Scheduler(load_config(path), seed=42)
    s.add_node(node); s.update_node(node); s.delete_node(node)       # node informer
    s.add_pod(pod); s.update_pod(old, new); s.delete_pod(pod)        # pod informer
    for d in s.schedule_many(pending_pods):                          # one cycle per pod
        if d.node: post binding_for(pod, d.node); on failure s.forget(pod)
        else:      record FailedScheduling with d.message; retry later

A successful decision *assumes* the pod on its node (Reserve): the node is
charged at once, so the next pod sees it. When the pod informer later reports
the pod bound (``add_pod``/``update_pod`` with ``spec.nodeName``), the
assumption is confirmed; ``forget`` drops it if the bind failed.

How it is fast, and why it stays exact
--------------------------------------
Pods are grouped by *shape* (everything in the spec the plugins read). For a
shape the scheduler compiles, once, a packed request vector and per-node
static arrays (label/taint/name filters and preference scores), cached until
nodes change. Scoring is a Numba kernel over the columnar node table.

A shape that recurs keeps its score for every node and a max segment tree
(max and count of the max per subtree). Choosing a node is then O(log n), and
after a placement only the chosen row is re-scored: a node's score depends on
its own columns, on the pod, and on the normalisation maxima of NodeAffinity
and TaintToleration over the feasible nodes, which are tracked (value and
multiplicity) so that any change to them triggers a full rescore. Rows other
shapes' placements or informer events moved are replayed from the table's
change log before the shape is used again. Ties are broken by one seeded draw
``j`` among the ``k`` best and the j-th of them in node-name order (see
``tiebreak``): the tree finds the j-th best row directly, the full scan counts
to it; both give the reference scheduler's answer.

Shapes with host ports and profiles that sample nodes (percentageOfNodesToScore
< 100) take the exhaustive path every time.
"""
from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .config import Profile, SchedulerConfig, load_config
from .decision import Decision
from .diagnosis import NO_NODES, diagnose, fit_error_message
from .explain import Explanation, NodeScore, PluginScore
from .framework import num_feasible_nodes_to_find
from .nodetable import _FIXED, NZ_CPU, NZ_MEM, NodeTable, Usage
from .podinfo import PodInfo, pod_info, pod_key, shape_key
from .tiebreak import MASK64

__all__ = ["Scheduler", "kernels", "warmup"]

_kernels = None


def kernels():
    """The Numba kernels, imported (and compiled or loaded from cache) on first use."""
    global _kernels
    if _kernels is None:
        _kernels = importlib.import_module("kcore._native.sched_kernels")
    return _kernels


def warmup() -> None:
    """Compile (or load) every kernel now rather than in the first cycle."""
    s = Scheduler(seed=1)
    s.add_node({"metadata": {"name": "n1"},
                "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})
    s.add_node({"metadata": {"name": "n2"},
                "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}})
    pod = {"metadata": {"name": "w"}, "spec": {"containers": [{"name": "c"}]}}
    s.schedule_many([dict(pod, metadata={"name": f"w{i}"}) for i in range(3)])
    s.add_pod({"metadata": {"name": "b"}, "spec": {"nodeName": "n1", "containers": []}})
    s.schedule_many([dict(pod, metadata={"name": f"x{i}"}) for i in range(2)])


_EMPTY = np.zeros(0, np.int64)
_NO_USAGE = np.zeros((0, 2), np.int64)


@dataclass(eq=False)
class _Static:
    """Per-node arrays of one (profile, static shape) for one node-table version."""
    st: np.ndarray          # int64 [4, n]
    flags: int
    layout: int
    version: int


@dataclass(eq=False)
class _State:
    """A recurring shape's cached scores and max tree."""
    score: np.ndarray
    mx: np.ndarray
    ct: np.ndarray
    size: int
    norm: np.ndarray
    static: _Static | None = None
    synced: int = -1


@dataclass(frozen=True)
class _Plan:
    """What a profile means for the kernels, worked out once."""
    fit: object
    fit_filter: bool
    w_fit: int
    bal: object
    w_bal: int
    w_norm: int
    w_rnorm: int
    w_plain: int
    strategy: int
    flags: int
    ports: bool
    static_filters: tuple
    static_scores: tuple
    _recipes: dict = field(default_factory=dict, compare=False)

    def recipe(self, table: NodeTable) -> _Recipe:
        """Rows of the configured scored resources in ``table`` (resolved once)."""
        r = self._recipes.get(id(table))
        if r is None:
            r = self._recipes[id(table)] = _Recipe.of(self, table)
        return r

    @classmethod
    def of(cls, prof: Profile, k) -> _Plan:
        fit_filter = any(f.name == "NodeResourcesFit" for f in prof.filters)
        w = {"forward": 0, "reverse": 0, "none": 0}
        static_scores = []
        slots = {"forward": (k.ST_NORM, k.F_NORM), "reverse": (k.ST_RNORM, k.F_RNORM),
                 "none": (k.ST_PLAIN, k.F_PLAIN)}
        for p, weight in prof.scores:
            norm = getattr(p, "normalization", None)
            if norm in w:
                if w[norm]:
                    raise ValueError(f"two score plugins normalised {norm!r}")
                w[norm] = weight
                static_scores.append((p, *slots[norm]))
        fit = prof.plugin("NodeResourcesFit")
        return cls(
            fit=fit, fit_filter=fit_filter, w_fit=prof.weight("NodeResourcesFit"),
            bal=prof.plugin("NodeResourcesBalancedAllocation"),
            w_bal=prof.weight("NodeResourcesBalancedAllocation"),
            w_norm=w["forward"], w_rnorm=w["reverse"], w_plain=w["none"],
            strategy=1 if (fit is not None and fit.strategy == "MostAllocated") else 0,
            flags=k.F_PODS if fit_filter else 0,
            ports=any(f.name == "NodePorts" for f in prof.filters),
            static_filters=tuple(f for f in prof.filters if hasattr(f, "static_mask")),
            static_scores=tuple(static_scores))


_NZ_CPU, _NZ_MEM = "\0nz-cpu", "\0nz-memory"
_FIXED_KINDS = (_NZ_CPU, _NZ_MEM, "cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True)
class _Recipe:
    """Per (profile, table): (alloc row, requested row, what the pod adds, weight)
    for each scored resource of NodeResourcesFit, and (alloc row, requested
    row, resource) for BalancedAllocation — kube's calculateResourceAllocatableRequest
    resolved against the table. Resources that are neither cpu, memory,
    ephemeral-storage nor scalar are never scored and are left out."""
    score: tuple
    balanced: tuple

    @classmethod
    def of(cls, plan: _Plan, table: NodeTable) -> _Recipe:
        from .podinfo import is_scalar_resource
        score, balanced = [], []
        if plan.fit is not None:
            for name, w in plan.fit.resources:
                if name not in ("cpu", "memory", "ephemeral-storage") and \
                        not is_scalar_resource(name):
                    continue
                r = table.resource(name)
                if name == "cpu":
                    score.append((_FIXED + 2 * r, NZ_CPU, _NZ_CPU, w))
                elif name == "memory":
                    score.append((_FIXED + 2 * r, NZ_MEM, _NZ_MEM, w))
                else:
                    score.append((_FIXED + 2 * r, _FIXED + 2 * r + 1, name, w))
        if plan.bal is not None:
            for name, _w in plan.bal.resources:
                if name not in ("cpu", "memory", "ephemeral-storage") and \
                        not is_scalar_resource(name):
                    continue
                r = table.resource(name)
                balanced.append((_FIXED + 2 * r, _FIXED + 2 * r + 1, name))
        return cls(tuple(score), tuple(balanced))


class _Shape:
    __slots__ = ("failure", "info", "ports", "profile", "pv", "seen", "state", "static_key",
                 "usage")

    def __init__(self, info: PodInfo, profile: Profile | None) -> None:
        self.info = info
        self.profile = profile
        self.static_key = (info.node_name, info.node_selector, info.required, info.preferred,
                           info.tolerations)
        self.usage: Usage | None = None
        self.pv: np.ndarray | None = None
        self.ports = False
        self.seen = 0
        self.state: _State | None = None
        self.failure: tuple | None = None


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


class Scheduler:
    """The fast scheduler core (see the module docstring for the contract).

    ``cache_after``: a shape gets cached scores once it has been seen this many
    times (1 = at once). ``max_cached``: how many shapes keep cached scores
    (least recently used are dropped). ``replay_fraction``: above this share of
    rows changed since a shape was last used, rescore it fully instead of
    replaying. ``cache=False`` always scores exhaustively. None of these
    change any decision.
    """

    #: parsed shapes kept (cleared when full; cached scores are kept separately)
    MAX_SHAPES = 16384

    def __init__(self, config: SchedulerConfig | dict | str | None = None, *, seed: int = 0,
                 cache: bool = True, cache_after: int = 2, max_cached: int = 64,
                 replay_fraction: float = 0.125) -> None:
        self.config = config if isinstance(config, SchedulerConfig) else load_config(config)
        self.table = NodeTable()
        self.seed = np.uint64(seed & MASK64)
        self.draws = 0
        self.next_start = 0
        self.cache = cache
        self.cache_after = max(1, cache_after)
        self.max_cached = max(1, max_cached)
        self.replay_fraction = replay_fraction
        self._profiles = {p.scheduler_name: p for p in self.config.profiles}
        self._plans: dict[str, _Plan] = {}
        self._shapes: dict[tuple, _Shape] = {}
        self._statics: dict[tuple, _Static] = {}
        self._cached: OrderedDict[int, _Shape] = OrderedDict()
        self._cap = 0
        self._rows = np.zeros(1024, np.int64)
        self._alloc_scratch(64)

    # ---- informer events -----------------------------------------------------------

    def add_node(self, node: dict) -> None:
        self.table.upsert_node(node)

    def update_node(self, old: dict | None, new: dict | None = None) -> None:
        """``update_node(new)`` or informer-style ``update_node(old, new)``."""
        self.table.upsert_node(new if new is not None else old)

    def delete_node(self, node: dict | str) -> None:
        self.table.remove_node(node if isinstance(node, str) else node["metadata"]["name"])

    def add_pod(self, pod: dict) -> None:
        """A pod the informer reports. Bound, non-terminal pods are charged to
        their node (confirming an assumed pod); others are ignored."""
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        key = pod_key(pod)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.table.remove_pod(key)
            return
        if not node:
            rec = self.table.pods.get(key)
            if rec is not None and not rec.assumed:
                self.table.remove_pod(key)
            return
        # Usage does not depend on nodeName: key the shape without it, so a bound pod
        # shares its pending shape (and Usage — confirming an assumption is then a
        # flag flip) instead of creating one shape per node.
        shape = self._shape_of({k: v for k, v in spec.items() if k != "nodeName"})
        self.table.add_pod(key, node, self._usage(shape), assumed=False)

    def update_pod(self, old: dict | None, new: dict) -> None:
        self.add_pod(new)

    def delete_pod(self, pod: dict | str) -> None:
        self.table.remove_pod(pod if isinstance(pod, str) else pod_key(pod))

    def forget(self, pod: dict | str) -> None:
        """Drop an assumed pod whose binding failed (kube's ForgetPod)."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        rec = self.table.pods.get(key)
        if rec is not None and rec.assumed:
            self.table.remove_pod(key)

    def responsible_for(self, pod: dict) -> bool:
        name = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
        return name in self._profiles

    # ---- scheduling ------------------------------------------------------------------

    def schedule(self, pod: dict) -> Decision:
        return self.schedule_many([pod])[0]

    def schedule_many(self, pods: list[dict]) -> list[Decision]:
        """One scheduling cycle per pod, in order; each sees the previous ones' placements.

        A pod the cache already holds (assumed or bound) is un-charged right
        before its own cycle, exactly as if the pods were scheduled one by one."""
        t = self.table
        t.prepare()
        if t.cap > self._cap:
            self._alloc_scratch(t.cap)
        keys = [pod_key(p) for p in pods]
        known = t.pods
        if len(set(keys)) == len(keys) and known.keys().isdisjoint(keys):
            return self._schedule_batch(pods, keys)
        out: list[Decision] = []
        i = 0
        while i < len(pods):
            seg: set[str] = set()
            j = i
            while j < len(pods) and keys[j] not in known and keys[j] not in seg:
                seg.add(keys[j])
                j += 1
            if j == i:
                t.remove_pod(keys[i])         # a pod being scheduled is charged nowhere
                j = i + 1
            out += self._schedule_batch(pods[i:j], keys[i:j])
            i = j
        return out

    def _schedule_batch(self, pods: list[dict], keys: list[str]) -> list[Decision]:
        shapes = [self._shape_of(p.get("spec") or {}) for p in pods]
        out: list[Decision] = []
        i, total = 0, len(pods)
        while i < total:
            shape = shapes[i]
            j = i + 1
            while j < total and shapes[j] is shape:
                j += 1
            self._run(shape, keys, i, j, out)
            i = j
        return out

    def explain(self, pod: dict, top: int = 5) -> Explanation:
        """Filter verdicts for every node and per-plugin scores of the ``top``
        nodes, as the next cycle would see them (nothing changes, no draw is
        made; every node is considered even when the profile samples)."""
        k, t = kernels(), self.table
        t.prepare()
        if t.cap > self._cap:
            self._alloc_scratch(t.cap)
        key = pod_key(pod)
        shape = self._shape_of(pod.get("spec") or {})
        prof, info, n = shape.profile, shape.info, t.n
        if prof is None or n == 0:
            msg = NO_NODES if prof is not None else \
                f"no profile for schedulerName {info.scheduler_name!r}"
            return Explanation(key, n, 0, None, 0, {}, message=msg)
        sv = self._static(shape)
        pv = self._pv(shape, sv)
        blocked = _EMPTY
        if shape.ports:
            rows = t.port_conflict_rows(info.host_ports)
            blocked = np.array(rows, dtype=np.int64) if rows else _EMPTY
        best, tied, nm, _nmc, rm, _rmc = k.score_all(t.cols, n, sv.st, pv, blocked, self._out,
                                                     self._fbuf, self._ibuf)
        scores = self._out[:n].copy()
        d = diagnose(prof, info, t, with_rows=True)
        verdicts = {t.names[r]: (prof.filters[f].name, d.row_reasons.get(r, ()))
                    for r, f in enumerate(d.first_failing.tolist()) if f >= 0}
        feasible = np.flatnonzero(scores >= 0)
        message = None
        if len(feasible) == 0:
            message = fit_error_message(prof, info, t)
        order = feasible[np.lexsort((feasible, -scores[feasible]))][:top]
        tops = []
        for r in order.tolist():
            ni = t.node_info(r)
            parts = []
            for plugin, w in prof.scores:
                skipped = getattr(plugin, "skipped", None)
                if skipped is not None and skipped(info):
                    parts.append(PluginScore(plugin.name, 0, 0, w))
                    continue
                raw = plugin.score(info, ni)
                norm = getattr(plugin, "normalization", "none")
                if norm == "forward":
                    sc = 100 * raw // nm if nm > 0 else 0
                elif norm == "reverse":
                    sc = 100 - 100 * raw // rm if rm > 0 else 100
                else:
                    sc = raw
                parts.append(PluginScore(plugin.name, raw, sc, w))
            tops.append(NodeScore(t.names[r], int(scores[r]), tuple(parts)))
        return Explanation(key, n, len(feasible), int(best) if best >= 0 else None,
                           int(tied), dict(d.counts), verdicts, tuple(tops), message)

    # ---- internals -------------------------------------------------------------------

    def _alloc_scratch(self, cap: int) -> None:
        self._cap = cap
        self._out = np.zeros(cap, np.int64)
        self._fbuf = np.zeros((2, cap), np.float64)
        self._ibuf = np.zeros((2, cap), np.int64)

    def _shape_of(self, spec: dict) -> _Shape:
        key = shape_key(spec)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= self.MAX_SHAPES:
                self._shapes.clear()          # one-off shapes: parse again if they return
            info = pod_info(spec)
            shape = _Shape(info, self._profiles.get(info.scheduler_name))
            self._shapes[key] = shape
        return shape

    def _usage(self, shape: _Shape) -> Usage:
        if shape.usage is None:
            shape.usage = self.table.usage_for(shape.info)
        return shape.usage

    def _compile(self, shape: _Shape) -> np.ndarray:
        """The packed request vector of a shape (see ``sched_kernels``).

        The terms are what ``NodeResourcesFit.fit_terms``/``score_terms`` and
        ``BalancedAllocation.terms`` return (a test checks it); the plan's
        recipe only resolves the configured resources' rows once."""
        plan, info, t = self._plan(shape.profile), shape.info, self.table
        self._usage(shape)
        recipe = plan.recipe(t)
        fit_terms: list[int] = []
        nfit = 0
        if plan.fit_filter:
            index = t.res_index
            ignored = plan.fit._ignored
            for name, v in info.requests:
                if "/" in name and ignored(name):
                    continue
                r = index.get(name)
                if r is None:
                    r = t.resource(name)
                fit_terms += (_FIXED + 2 * r, _FIXED + 2 * r + 1, v)
                nfit += 1
        reqs = dict(info.requests) if info.requests else {}
        sc_terms: list[int] = []
        nsc = 0
        if plan.w_fit:
            for ar, rr, kind, w in recipe.score:
                v = info.nonzero_cpu if kind == _NZ_CPU else (
                    info.nonzero_memory if kind == _NZ_MEM else reqs.get(kind, 0))
                if v == 0 and kind not in _FIXED_KINDS:
                    continue
                sc_terms += (ar, rr, v, w)
                nsc += 1
        bal_terms: list[int] = []
        nbal = 0
        if plan.w_bal and any(reqs.get(name, 0) for name, _w in plan.bal.resources):
            for ar, rr, name in recipe.balanced:
                v = reqs.get(name, 0)
                if v == 0 and name not in _FIXED_KINDS:
                    continue
                bal_terms += (ar, rr, v)
                nbal += 1
        pv = [plan.strategy, plan.w_fit if nsc else 0, plan.w_bal if nbal else 0,
              plan.w_norm, plan.w_rnorm, plan.w_plain, plan.flags, nfit, nsc, nbal]
        pv += fit_terms
        pv += sc_terms
        pv += bal_terms
        shape.ports = plan.ports and bool(info.host_ports)
        shape.pv = np.array(pv, dtype=np.int64)
        return shape.pv

    def _plan(self, prof: Profile) -> _Plan:
        plan = self._plans.get(prof.scheduler_name)
        if plan is None:
            plan = self._plans[prof.scheduler_name] = _Plan.of(prof, kernels())
        return plan

    def _static(self, shape: _Shape) -> _Static:
        t = self.table
        key = (shape.profile.scheduler_name, shape.static_key)
        sv = self._statics.get(key)
        if sv is not None and sv.layout == t.layout_version and sv.version == t.static_version:
            return sv
        k = kernels()
        plan, info, n = self._plan(shape.profile), shape.info, t.n
        st = np.zeros((4, max(n, 1)), np.int64)
        ok = np.ones(n, np.bool_)
        for f in plan.static_filters:
            m = f.static_mask(info, t)
            if m is not None:
                ok &= m
        st[k.ST_OK, :n] = ok
        flags = 0
        for p, slot, bit in plan.static_scores:
            raw = p.static_raw(info, t)
            if raw is not None:
                st[slot, :n] = raw
                flags |= bit
        if len(self._statics) > 1024:
            self._statics.clear()
        sv = _Static(st, flags, t.layout_version, t.static_version)
        self._statics[key] = sv
        return sv

    def _pv(self, shape: _Shape, sv: _Static) -> np.ndarray:
        k = kernels()
        pv = shape.pv if shape.pv is not None else self._compile(shape)
        flags = pv[k.PV_FLAGS] & k.F_PODS
        flags |= sv.flags
        if self.table.max_alloc < k.EXACT_LIMIT:
            flags |= k.F_EXACT
        pv[k.PV_FLAGS] = flags
        return pv

    def _fit_error(self, shape: _Shape) -> str:
        """kube's FailedScheduling message; kept per shape until the table changes."""
        t = self.table
        stamp = (t.seq, t.layout_version, t.static_version)
        if shape.failure is not None and shape.failure[0] == stamp:
            return shape.failure[1]
        message = fit_error_message(shape.profile, shape.info, t)
        shape.failure = (stamp, message)
        return message

    def _fail(self, shape: _Shape, keys: list[str], i: int, j: int, out: list,
              message: str | None = None) -> None:
        if message is None:
            message = self._fit_error(shape)
        out.extend(Decision(key, None, message) for key in keys[i:j])

    def _run(self, shape: _Shape, keys: list[str], i: int, j: int, out: list) -> None:
        t = self.table
        prof = shape.profile
        if prof is None:
            self._fail(shape, keys, i, j, out,
                       f"no profile for schedulerName {shape.info.scheduler_name!r}")
            return
        if t.n == 0:
            self._fail(shape, keys, i, j, out, NO_NODES)
            return
        sv = self._static(shape)
        pv = self._pv(shape, sv)
        want = num_feasible_nodes_to_find(prof.percentage_of_nodes_to_score, t.n)
        exhaustive = not self.cache or shape.ports or want < t.n
        if not exhaustive and shape.state is None:
            shape.seen += 1
            if shape.seen < self.cache_after and j - i == 1:
                exhaustive = True
        if exhaustive:
            for p in range(i, j):
                self._pick(shape, sv, pv, keys[p], out, want)
            return
        self._run_cached(shape, sv, pv, keys, i, j, out)

    def _pick(self, shape: _Shape, sv: _Static, pv: np.ndarray, key: str, out: list,
              want: int) -> None:
        """The exhaustive path: score every row (or kube's sample), pick, reserve."""
        k, t = kernels(), self.table
        n = t.n
        st = sv.st
        blocked = _EMPTY
        if shape.ports:
            rows = t.port_conflict_rows(shape.info.host_ports)
            if rows:
                blocked = np.array(rows, dtype=np.int64)
        if want < n:
            st = self._sample(shape, sv, pv, blocked, want)
        t.ensure_log(1)
        usage = self._usage(shape)
        row, self.draws, t.log_len, _best, _cnt = k.pick_one(
            t.cols, n, st, pv, blocked, self._out, self._fbuf, self._ibuf, self.seed,
            self.draws, usage.pairs, t.log, t.log_len)
        if row < 0:
            out.append(Decision(key, None, self._fit_error(shape)))
            return
        node = t.names[row]
        t.record_assumed_one(key, node, usage)
        out.append(Decision(key, node, None))

    def _sample(self, shape: _Shape, sv: _Static, pv: np.ndarray, blocked: np.ndarray,
                want: int) -> np.ndarray:
        """kube's percentageOfNodesToScore: the first ``want`` feasible nodes from
        a rotating start; returns static arrays restricted to them."""
        k, t = kernels(), self.table
        n = t.n
        k.score_all(t.cols, n, sv.st, pv, blocked, self._out, self._fbuf, self._ibuf)
        feasible = self._out[:n] >= 0
        order = (np.arange(n) + self.next_start) % n
        hits = np.flatnonzero(feasible[order])
        if len(hits) >= want:
            chosen = order[hits[:want]]
            examined = int(hits[want - 1]) + 1
        else:
            chosen = order[hits]
            examined = n
        self.next_start = (self.next_start + examined) % n
        st = sv.st.copy()
        keep = np.zeros(n, np.bool_)
        keep[chosen] = True
        st[k.ST_OK, :n] &= keep
        return st

    def _rebuild(self, state: _State, sv: _Static, pv: np.ndarray) -> None:
        k, t = kernels(), self.table
        n = t.n
        size = _next_pow2(max(n, 1))
        if len(state.score) < n:
            state.score = np.zeros(self._cap, np.int64)
        if state.size != size:
            state.size = size
            state.mx = np.zeros(2 * size, np.int64)
            state.ct = np.zeros(2 * size, np.int64)
        k.build_state(t.cols, n, sv.st, pv, state.score, self._fbuf, self._ibuf, state.mx,
                      state.ct, size, state.norm)
        state.static = sv
        state.synced = t.seq

    def _sync(self, state: _State, sv: _Static, pv: np.ndarray) -> None:
        t = self.table
        if state.static is not sv or state.synced < t.log_base:
            self._rebuild(state, sv, pv)
            return
        start = state.synced - t.log_base
        end = t.log_len
        if end > start:
            if end - start > self.replay_fraction * t.n:
                self._rebuild(state, sv, pv)
                return
            k = kernels()
            if k.replay(t.cols, t.n, sv.st, pv, state.score, state.mx, state.ct, state.size,
                        state.norm, t.log, start, end):
                self._rebuild(state, sv, pv)
                return
        state.synced = t.seq

    def _run_cached(self, shape: _Shape, sv: _Static, pv: np.ndarray, keys: list[str],
                    i: int, j: int, out: list) -> None:
        k, t = kernels(), self.table
        state = shape.state
        if state is None:
            state = shape.state = _State(np.zeros(self._cap, np.int64), _EMPTY, _EMPTY, 0,
                                         np.zeros(4, np.int64))
            self._rebuild(state, sv, pv)
            self._cached[id(shape)] = shape
            while len(self._cached) > self.max_cached:
                _, old = self._cached.popitem(last=False)
                old.state = None
                old.seen = 0
        else:
            self._cached.move_to_end(id(shape))
            self._sync(state, sv, pv)
        usage = self._usage(shape)
        names = t.names
        while i < j:
            m = j - i
            t.ensure_log(m)
            if len(self._rows) < m:
                self._rows = np.zeros(_next_pow2(m), np.int64)
            placed, self.draws, t.log_len, status = k.assign(
                t.cols, t.n, sv.st, pv, state.score, state.mx, state.ct, state.size, state.norm,
                m, self.seed, self.draws, usage.pairs, t.log, t.log_len, self._rows)
            state.synced = t.seq
            if placed:
                nodes = [names[r] for r in self._rows[:placed].tolist()]
                placed_keys = keys[i:i + placed]
                t.record_assumed(placed_keys, nodes, usage)
                out.extend(map(Decision, placed_keys, nodes))
                i += placed
            if status == 1:
                self._fail(shape, keys, i, j, out)
                return
            if status == 2:
                self._rebuild(state, sv, pv)
