"""The columnar node table: every node's allocatable, what its pods request,
its labels and taints as codes and bitsets, kept up to date incrementally.

This is the scheduler cache of kube-scheduler in columns. Pods are charged to
their node when bound (``add_pod``) or, between Reserve and the bind's
outcome, when *assumed* (``assume`` then ``confirm``/``forget``).

Layout (``cols``: int64, one row per quantity, one column per node):

====================  ===========================================
``POD_CAP``           allocatable pods
``POD_CNT``           pods charged to the node
``NZ_CPU, NZ_MEM``    non-zero cpu/memory requested (scoring)
``ZERO``              always 0 (pads kernel terms)
``alloc_row(r)``      allocatable of resource ``r`` (cpu in millicores)
``req_row(r)``        requested of resource ``r``
====================  ===========================================

Resources get an index the first time a node or a pod mentions them and keep
it. Node rows are kept in node-name order (the canonical order tie-breaking
uses): adding or removing nodes marks the order dirty and ``prepare()``
re-sorts before the next scheduling cycle, bumping ``layout_version``. Label,
taint and unschedulable changes bump ``static_version``. Every change to a
row's counters is appended to a change log (``log``) so cached per-shape
scores can replay exactly the rows that moved.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .nodeinfo import NodeSpec, node_spec
from .podinfo import HostPort, PodInfo, Taint

__all__ = [
    "NZ_CPU",
    "NZ_MEM",
    "POD_CAP",
    "POD_CNT",
    "NodeTable",
    "PodRecord",
    "Usage",
    "alloc_row",
    "req_row",
]

POD_CAP, POD_CNT, NZ_CPU, NZ_MEM, ZERO = 0, 1, 2, 3, 4
_FIXED = 5
HARD_EFFECTS = ("NoSchedule", "NoExecute")


def alloc_row(r: int) -> int:
    return _FIXED + 2 * r


def req_row(r: int) -> int:
    return _FIXED + 2 * r + 1


@dataclass(frozen=True, slots=True, eq=False)
class Usage:
    """What one pod charges its node: (cols row, amount) pairs and host ports."""
    pairs: np.ndarray            # int64 [k, 2]
    host_ports: tuple[HostPort, ...]


@dataclass(slots=True)
class PodRecord:
    node: str
    usage: Usage
    assumed: bool


class NodeTable:
    #: change-log entries kept before old ones are dropped: max(LOG_KEEP, LOG_PER_NODE * n)
    LOG_KEEP = 65536
    LOG_PER_NODE = 8

    def __init__(self, capacity: int = 64) -> None:
        self.cap = max(8, capacity)
        self.n = 0
        self.names: list[str | None] = []
        self.specs: list[NodeSpec | None] = []
        self.row_of: dict[str, int] = {}
        self.resources: list[str] = []
        self.res_index: dict[str, int] = {}
        self.cols = np.zeros((_FIXED, self.cap), np.int64)
        for r in ("cpu", "memory", "ephemeral-storage"):
            self.resource(r)
        self.unschedulable = np.zeros(self.cap, np.bool_)
        self.valid = np.zeros(self.cap, np.bool_)
        self.taints: list[Taint] = []
        self.taint_index: dict[Taint, int] = {}
        self.taint_bits = np.zeros((self.cap, 1), np.uint64)
        self.taint_lists: list[tuple[int, ...]] = []       # per row, taint codes in node order
        self.labels: dict[str, np.ndarray] = {}              # key -> int32 code per row (-1 absent)
        self.label_vocab: dict[str, dict[str, int]] = {}
        self.label_values: dict[str, list[str]] = {}
        self._numeric: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self.pods: dict[str, PodRecord] = {}
        self.by_node: dict[str, dict[str, Usage]] = {}
        self.ports: dict[tuple[str, int], dict[str, dict[str, int]]] = {}
        self.layout_version = 0
        self.static_version = 0
        self.log = np.zeros(4096, np.int64)
        self.log_len = 0
        self.log_base = 0
        self.max_alloc = 0
        self._order_dirty = False

    # ---- resources and capacity ----------------------------------------------------

    def resource(self, name: str) -> int:
        """The index of a resource, registering it (two new rows in ``cols``) if new."""
        r = self.res_index.get(name)
        if r is None:
            r = len(self.resources)
            self.resources.append(name)
            self.res_index[name] = r
            self.cols = np.concatenate([self.cols, np.zeros((2, self.cap), np.int64)])
        return r

    def _grow(self, need: int) -> None:
        if need <= self.cap:
            return
        cap = self.cap
        while cap < need:
            cap *= 2
        cols = np.zeros((self.cols.shape[0], cap), np.int64)
        cols[:, :self.cap] = self.cols
        self.cols = cols
        for attr in ("unschedulable", "valid"):
            a = np.zeros(cap, np.bool_)
            a[:self.cap] = getattr(self, attr)
            setattr(self, attr, a)
        tb = np.zeros((cap, self.taint_bits.shape[1]), np.uint64)
        tb[:self.cap] = self.taint_bits
        self.taint_bits = tb
        for k, codes in self.labels.items():
            a = np.full(cap, -1, np.int32)
            a[:self.cap] = codes
            self.labels[k] = a
        self.cap = cap

    # ---- change log ------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Absolute position of the end of the change log."""
        return self.log_base + self.log_len

    def _log(self, row: int) -> None:
        if self.log_len == len(self.log):
            self.ensure_log(1)
        self.log[self.log_len] = row
        self.log_len += 1

    def ensure_log(self, extra: int) -> None:
        """Room for ``extra`` more entries. A long log is dropped first: readers
        synced to its end lose nothing, older readers rebuild (``seq`` stays
        absolute, so they can tell)."""
        if self.log_len > max(self.LOG_KEEP, self.LOG_PER_NODE * self.n):
            self.log_base += self.log_len
            self.log_len = 0
        if self.log_len + extra <= len(self.log):
            return
        size = len(self.log)
        while size < self.log_len + extra:
            size *= 2
        log = np.zeros(size, np.int64)
        log[:self.log_len] = self.log[:self.log_len]
        self.log = log

    # ---- nodes -----------------------------------------------------------------------

    def upsert_node(self, node: dict | NodeSpec) -> None:
        spec = node if isinstance(node, NodeSpec) else node_spec(node)
        row = self.row_of.get(spec.name)
        if row is None:
            self._add_node(spec)
            return
        old = self.specs[row]
        if old == spec:
            return
        self.specs[row] = spec
        if (old.labels, old.taints, old.unschedulable) != (spec.labels, spec.taints,
                                                            spec.unschedulable):
            self._clear_labels(row, old)
            self._set_static(row, spec)
            self.static_version += 1
        if (old.allocatable, old.pods) != (spec.allocatable, spec.pods):
            self._set_alloc(row, spec)
            self._log(row)

    def remove_node(self, name: str) -> None:
        row = self.row_of.pop(name, None)
        if row is None:
            return
        self.valid[row] = False
        self.names[row] = None
        self.specs[row] = None
        self._order_dirty = True
        self.layout_version += 1

    def _add_node(self, spec: NodeSpec) -> None:
        row = self.n
        self._grow(row + 1)
        self.n += 1
        self.names.append(spec.name)
        self.specs.append(spec)
        self.taint_lists.append(())
        self.row_of[spec.name] = row
        self.valid[row] = True
        self.cols[:, row] = 0
        for codes in self.labels.values():
            codes[row] = -1
        self.taint_bits[row] = 0
        self._set_alloc(row, spec)
        self._set_static(row, spec)
        for usage in self.by_node.get(spec.name, {}).values():
            self._charge(row, usage, 1)
        if row > 0 and self.names[row - 1] is not None and self.names[row - 1] > spec.name:
            self._order_dirty = True
        self.layout_version += 1

    def _set_alloc(self, row: int, spec: NodeSpec) -> None:
        for r in range(len(self.resources)):
            self.cols[alloc_row(r), row] = 0
        for name, v in spec.allocatable:
            r = self.resource(name)
            self.cols[alloc_row(r), row] = v
            self.max_alloc = max(self.max_alloc, v)
        self.cols[POD_CAP, row] = spec.pods

    def _clear_labels(self, row: int, old: NodeSpec) -> None:
        for k, _v in old.labels:
            self.labels[k][row] = -1

    def _set_static(self, row: int, spec: NodeSpec) -> None:
        self.unschedulable[row] = spec.unschedulable
        for k, v in spec.labels:
            codes = self.labels.get(k)
            if codes is None:
                codes = self.labels[k] = np.full(self.cap, -1, np.int32)
                self.label_vocab[k] = {}
                self.label_values[k] = []
            vocab = self.label_vocab[k]
            c = vocab.get(v)
            if c is None:
                c = vocab[v] = len(self.label_values[k])
                self.label_values[k].append(v)
            codes[row] = c
        codes_list = []
        for t in spec.taints:
            b = self.taint_index.get(t)
            if b is None:
                b = self.taint_index[t] = len(self.taints)
                self.taints.append(t)
                words = (len(self.taints) + 63) // 64
                if words > self.taint_bits.shape[1]:
                    tb = np.zeros((self.cap, words), np.uint64)
                    tb[:, :self.taint_bits.shape[1]] = self.taint_bits
                    self.taint_bits = tb
            codes_list.append(b)
        self.taint_bits[row] = 0
        for b in codes_list:
            self.taint_bits[row, b >> 6] |= np.uint64(1 << (b & 63))
        self.taint_lists[row] = tuple(codes_list)

    def prepare(self) -> None:
        """Put rows in node-name order and drop removed nodes (before a cycle)."""
        if not self._order_dirty:
            return
        rows = [r for r in range(self.n) if self.valid[r]]
        rows.sort(key=lambda r: self.names[r])
        perm = np.array(rows, dtype=np.int64)
        m = len(rows)
        self.cols[:, :m] = self.cols[:, perm]
        self.cols[:, m:] = 0
        for attr in ("unschedulable",):
            a = getattr(self, attr)
            a[:m] = a[perm]
            a[m:] = False
        self.valid[:m] = True
        self.valid[m:] = False
        self.taint_bits[:m] = self.taint_bits[perm]
        self.taint_bits[m:] = 0
        for codes in self.labels.values():
            codes[:m] = codes[perm]
            codes[m:] = -1
        self.names = [self.names[r] for r in rows]
        self.specs = [self.specs[r] for r in rows]
        self.taint_lists = [self.taint_lists[r] for r in rows]
        self.row_of = {name: i for i, name in enumerate(self.names)}
        self.n = m
        self._order_dirty = False
        self.layout_version += 1
        self.static_version += 1

    # ---- pods ------------------------------------------------------------------------

    def usage_for(self, pod: PodInfo) -> Usage:
        """The per-node charge of a pod (compiled against this table's resources)."""
        flat = [POD_CNT, 1, NZ_CPU, pod.nonzero_cpu, NZ_MEM, pod.nonzero_memory]
        index = self.res_index
        for name, v in pod.requests:
            r = index.get(name)
            flat += (req_row(self.resource(name) if r is None else r), v)
        return Usage(np.array(flat, dtype=np.int64).reshape(-1, 2), pod.host_ports)

    def _charge(self, row: int, usage: Usage, sign: int) -> None:
        p = usage.pairs
        self.cols[p[:, 0], row] += sign * p[:, 1]
        self._log(row)

    def _ports(self, node: str, usage: Usage, sign: int) -> None:
        for hp in usage.host_ports:
            users = self.ports.setdefault((hp.protocol, hp.port), {})
            ips = users.setdefault(node, {})
            c = ips.get(hp.ip, 0) + sign
            if c > 0:
                ips[hp.ip] = c
            else:
                ips.pop(hp.ip, None)
                if not ips:
                    users.pop(node, None)

    def add_pod(self, key: str, node: str, usage: Usage, assumed: bool = False) -> None:
        """Charge ``node`` for a pod (replacing any earlier record of the same pod)."""
        old = self.pods.get(key)
        if old is not None:
            if old.node == node and old.usage is usage:
                old.assumed = assumed and old.assumed
                return
            self.remove_pod(key)
        self.pods[key] = PodRecord(node, usage, assumed)
        self.by_node.setdefault(node, {})[key] = usage
        row = self.row_of.get(node)
        if row is not None:
            self._charge(row, usage, 1)
        if usage.host_ports:
            self._ports(node, usage, 1)

    def remove_pod(self, key: str) -> PodRecord | None:
        rec = self.pods.pop(key, None)
        if rec is None:
            return None
        on = self.by_node.get(rec.node)
        if on is not None:
            on.pop(key, None)
            if not on:
                del self.by_node[rec.node]
        row = self.row_of.get(rec.node)
        if row is not None:
            self._charge(row, rec.usage, -1)
        if rec.usage.host_ports:
            self._ports(rec.node, rec.usage, -1)
        return rec

    def record_assumed_one(self, key: str, node: str, usage: Usage) -> None:
        """``record_assumed`` for one pod."""
        self.pods[key] = PodRecord(node, usage, True)
        on = self.by_node.get(node)
        if on is None:
            on = self.by_node[node] = {}
        on[key] = usage
        if usage.host_ports:
            self._ports(node, usage, 1)

    def record_assumed(self, keys: Iterable[str], nodes: Iterable[str], usage: Usage) -> None:
        """Bookkeeping for pods a kernel already charged (columns and log are done)."""
        pods, by_node = self.pods, self.by_node
        for key, node in zip(keys, nodes):
            pods[key] = PodRecord(node, usage, True)
            on = by_node.get(node)
            if on is None:
                on = by_node[node] = {}
            on[key] = usage
            if usage.host_ports:
                self._ports(node, usage, 1)

    # ---- queries the plugins use -----------------------------------------------------

    def label_code(self, key: str, value: str) -> int | None:
        vocab = self.label_vocab.get(key)
        return None if vocab is None else vocab.get(value)

    def label_numeric(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(value, parsed) per row for Gt/Lt: label values read as Go's ParseInt."""
        from .podinfo import parse_int64
        codes = self.labels.get(key)
        n = self.n
        if codes is None:
            return np.zeros(n, np.int64), np.zeros(n, np.bool_)
        values = self.label_values[key]
        cached = self._numeric.get(key)
        if cached is None or cached[0] != len(values):
            nums = np.zeros(len(values) + 1, np.int64)
            ok = np.zeros(len(values) + 1, np.bool_)
            for i, v in enumerate(values):
                p = parse_int64(v)
                if p is not None:
                    nums[i], ok[i] = p, True
            cached = (len(values), nums, ok)
            self._numeric[key] = cached
        c = codes[:n]
        idx = np.where(c >= 0, c, len(values))
        return cached[1][idx], cached[2][idx]

    def port_conflict_rows(self, host_ports: tuple[HostPort, ...]) -> list[int]:
        rows: set[int] = set()
        for hp in host_ports:
            users = self.ports.get((hp.protocol, hp.port))
            if not users:
                continue
            for node, ips in users.items():
                if hp.ip == "0.0.0.0" or hp.ip in ips or "0.0.0.0" in ips:
                    r = self.row_of.get(node)
                    if r is not None:
                        rows.add(r)
        return sorted(rows)

    def taint_words(self, codes: Iterable[int]) -> np.ndarray:
        w = np.zeros(self.taint_bits.shape[1], np.uint64)
        for b in codes:
            w[b >> 6] |= np.uint64(1 << (b & 63))
        return w

    def node_info(self, row: int):
        """A per-node ``NodeInfo`` view of a row (what the reference plugins read)."""
        from .framework import NodeInfo
        spec = self.specs[row]
        c = self.cols[:, row]
        requested = {}
        for r, name in enumerate(self.resources):
            v = int(c[req_row(r)])
            if v:
                requested[name] = v
        used: dict[tuple[str, str, int], int] = {}
        for (proto, port), users in self.ports.items():
            for ip, cnt in users.get(spec.name, {}).items():
                used[(ip, proto, port)] = cnt
        return NodeInfo(spec, requested, int(c[NZ_CPU]), int(c[NZ_MEM]), int(c[POD_CNT]), used)
