"""The end-to-end benchmark at a tiny size: it runs, binds every pod, writes its JSON
and PNG, and leaves no process behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

BENCH = Path(__file__).resolve().parents[3] / "bench" / "scheduler" / "e2e.py"


@pytest.mark.parametrize("mode", [[], ["--precreate"]])
def test_e2e_bench_small(mode):
    with tempfile.TemporaryDirectory(prefix="kcore-e2e-bench-") as d:
        out = os.path.join(d, "r.json")
        p = subprocess.run([sys.executable, str(BENCH), "--nodes", "40", "--pods", "150",
                            "--out", out, "--data-root", d, *mode],
                           capture_output=True, text=True, timeout=170)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        res = json.loads(Path(out).read_text())
        assert res["bound"] == 150 and res["create_errors"] == 0
        assert res["scheduler_metrics"]["attempts_scheduled"] == 150
        assert res["pods_per_second"] > 0 and res["cpu_seconds"]["apiserver"] > 0
        if not mode:
            assert 0 < res["latency_ms"]["p50"] <= res["latency_ms"]["p99"]
        else:
            assert res["drain"]["pods_per_second"] > 0
        assert "anchors" in res and "kube-scheduler" in p.stdout
        # nothing of the run is left in the data root
        assert sorted(os.listdir(d)) == sorted(f for f in os.listdir(d)
                                               if f.startswith("r."))
