"""The Numba kernels against the per-node Python definitions on awkward numbers.

Random allocatable and requested values (any integer up to 2**45, so the
float-division shortcut is in play) over thousands of nodes: the vectorised
full scan, the per-row kernel and the plugins' per-node Python must give
the same total for every node."""
from __future__ import annotations

import random

import numpy as np
import pytest

from kcore.scheduler import Scheduler, load_config
from kcore.scheduler.core import kernels

from .conftest import FULL, make_node, make_pod

CONFIGS = [None, {"profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
    "scoringStrategy": {"type": "MostAllocated", "resources": [
        {"name": "cpu", "weight": 7}, {"name": "memory", "weight": 2}]}}}]}]}]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", range(6 if FULL else 2))
def test_full_scan_equals_rows_equals_plugins(config, seed):
    rnd = random.Random(seed)
    s = Scheduler(load_config(config), seed=seed)
    n = 3000
    for i in range(n):
        top = rnd.choice([10**3, 10**6, 2**30, 2**45])
        s.add_node(make_node(f"n{i:05d}", cpu=f"{rnd.randint(0, 64000)}m",
                             memory=str(rnd.randint(0, top)), pods=str(rnd.randint(1, 200))))
    for i in range(n // 2):               # existing pods with odd requests, some missing
        req = {}
        if rnd.random() < 0.8:
            req["cpu"] = f"{rnd.randint(0, 9000)}m"
        if rnd.random() < 0.8:
            req["memory"] = str(rnd.randint(0, 2**33))
        s.add_pod(make_pod(f"e{i}", node=f"n{rnd.randrange(n):05d}",
                           containers=[{"name": "c", "resources": {"requests": req}}]))
    s.schedule_many([])
    k, t = kernels(), s.table
    prof = s.config.profiles[0]
    for j in range(8):
        pod = make_pod(f"p{j}", f"{rnd.randint(1, 5000)}m", str(rnd.randint(1, 2**34)))
        shape = s._shape_of(pod["spec"])
        sv = s._static(shape)
        pv = s._pv(shape, sv)
        assert pv[k.PV_FLAGS] & k.F_EXACT
        out = np.zeros(t.n, np.int64)
        k.score_all(t.cols, t.n, sv.st, pv, np.zeros(0, np.int64), out, s._fbuf, s._ibuf)
        rows = np.array([k.row_total(t.cols, sv.st, pv, i, 0, 0) for i in range(t.n)])
        assert (out == rows).all()
        for i in rnd.sample(range(t.n), 200):
            ni = t.node_info(i)
            feasible = all(f.filter(shape.info, ni) is None for f in prof.filters)
            want = -1
            if feasible:
                want = 300        # TaintToleration: no taints anywhere -> 100 x 3
                for plugin, w in prof.scores:
                    if plugin.name in ("NodeResourcesFit", "NodeResourcesBalancedAllocation"):
                        want += w * plugin.score(shape.info, ni)
            assert out[i] == want, (i, ni)
