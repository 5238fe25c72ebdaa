"""bench/proxy/dispatcher.py runs end to end (tiny sizes) and writes its JSON."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

from kcore.proxy.dispatcher import NATIVE_AVAILABLE

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench", "proxy",
                     "dispatcher.py")


@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="kcore._native.ipvs not built")
def test_bench_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_dispatcher", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    assert mod.main(["--sched", "rr,mh", "--conns", "2000", "--big-conns", "0", "--batch",
                     "4000", "--ref-batch", "300", "--rounds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["scheduler"] for r in result["rows"]] == ["rr", "mh"]
    for r in result["rows"]:
        assert r["lookups_per_s"] > r["ref_lookups_per_s"] > 0
        assert r["decisions_per_s"] > 0 and r["decision_ratio"] > 1
