"""bench/scheduler/run.py still runs: tiny sizes, JSON (and PNG when matplotlib is there)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[3] / "bench" / "scheduler" / "run.py"


def test_bench_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("sched_bench_run", RUN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    try:
        rc = mod.main(["--sizes", "50,120", "--homogeneous", "600", "--distinct", "80",
                       "--reference-seconds", "0.2", "--batch", "64", "--out", str(out), "--repeat", "1",
                       "--no-gc-freeze"])
    finally:
        import gc
        gc.unfreeze()
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [r["nodes"] for r in doc["results"]] == [50, 120]
    for r in doc["results"]:
        assert r["reference_agrees"]
        assert r["homogeneous"]["placed"] == r["homogeneous"]["pods"] == min(600, 100 * r["nodes"])
        assert r["distinct"]["placed"] == 80
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib not installed: no PNG")
    assert out.with_suffix(".png").stat().st_size > 10_000
