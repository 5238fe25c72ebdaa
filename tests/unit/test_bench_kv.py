"""The KV benchmark's pure parts: histogram, client split, result merge, cluster plan."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "kv"))

from histogram import Histogram, bucket_bounds, bucket_of, merge_all
from loadgen import LoadSpec, default_procs, split_clients, summarize
from procstat import descendants, top_consumers, tree_cpu_s
from run import compare, schedule
from servers import member_argv, plan_members


def exact_quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(0, -(-int(q * len(ordered) * 1000) // 1000) - 1)]


def test_every_value_falls_in_its_bucket_and_buckets_are_narrow():
    for us in list(range(5000)) + [10**6, 3 * 10**7, 2**40 + 12345]:
        lo, hi = bucket_bounds(bucket_of(us))
        assert lo <= us < hi
        assert hi - lo <= max(1, lo / 64)


def test_buckets_tile_the_line_without_gaps():
    for b in range(2000):
        assert bucket_bounds(b)[1] == bucket_bounds(b + 1)[0]


def test_percentiles_are_within_two_percent_of_exact():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.2)) for _ in range(20000)]
    h = Histogram()
    h.record_many(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = exact_quantile(values, q)
        assert abs(h.quantile_us(q) - exact) <= max(1, exact * 0.02), q
    assert h.quantile_us(1.0) == max(values)
    assert h.quantile_us(0.0) >= min(values)
    assert h.count == len(values) and h.max_us == max(values) and h.min_us == min(values)


def test_merging_per_process_histograms_equals_one_histogram_of_all():
    rng = random.Random(3)
    parts = [[rng.randrange(100, 90000) for _ in range(3000)] for _ in range(4)]
    merged = merge_all(_hist(p) for p in parts)
    whole = _hist([v for p in parts for v in p])
    assert merged == whole
    assert Histogram.from_json(merged.to_json()) == merged


def test_empty_histogram_has_no_percentiles():
    assert Histogram().quantile_us(0.99) is None
    assert merge_all([Histogram(), Histogram()]).count == 0


def test_clients_split_evenly_and_processes_follow_cores():
    assert split_clients(10, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert sum(map(len, split_clients(256, 7))) == 256
    assert default_procs(1, 8) == 1
    assert default_procs(16, 2) == 2
    assert default_procs(256, 2) == 2
    assert default_procs(64, 16) == 8


def test_summary_adds_processes_up():
    spec = LoadSpec(endpoints=("a:1",), clients=4, duration_s=2.0)
    parts = [
        {"histogram": _hist([1000] * 100).to_json(), "errors": {"UNAVAILABLE": 2},
         "calls": 102, "timeline": [50, 50, 0], "cpu_s": 0.05},
        {"histogram": _hist([3000] * 100).to_json(), "errors": {"UNAVAILABLE": 1},
         "calls": 101, "timeline": [40, 60], "cpu_s": 0.03},
    ]
    r = summarize(spec, 2, parts, 2.0, {"server_cpu_s": 0.5})
    assert r.puts == 200 and r.puts_per_s == 100.0
    assert r.errors == {"UNAVAILABLE": 3}
    assert r.timeline == [90, 110, 0]
    assert r.p50_ms == pytest.approx(1.0, rel=0.02) and r.p99_ms == pytest.approx(3.0, rel=0.02)
    assert r.gen_cpu_s == 0.08 and r.gen_cpu_ms_per_call == pytest.approx(80 / 203, rel=1e-3)


def test_three_member_plan_gives_each_member_the_whole_static_cluster():
    members = plan_members(3, [24001, 24002, 24003, 24004, 24005, 24006], "/d", "etcd")
    argv = member_argv(["/usr/bin/etcd"], members[1], members)
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags["--name"] == "etcd1"
    assert flags["--listen-client-urls"] == "http://127.0.0.1:24003"
    assert flags["--initial-advertise-peer-urls"] == "http://127.0.0.1:24004"
    assert flags["--initial-cluster"] == ("etcd0=http://127.0.0.1:24002,"
                                          "etcd1=http://127.0.0.1:24004,"
                                          "etcd2=http://127.0.0.1:24006")
    assert flags["--data-dir"] == "/d/etcd1.data"


def test_comparison_reports_kcore_over_etcd_and_leaves_missing_levels_empty():
    runs = {"etcd": {"levels": [{"clients": 1, "puts_per_s": 800.0},
                                {"clients": 16, "puts_per_s": 2000.0}]},
            "kcore": {"status": "skipped", "levels": [{"clients": 1, "puts_per_s": 1000.0}]}}
    rows = compare(runs, [1, 16])
    assert rows[0]["ratio"] == 1.25
    assert rows[1]["ratio"] is None and rows[1]["kcore"] == {}


def _hist(values: list[int]) -> Histogram:
    h = Histogram()
    h.record_many(values)
    return h


def test_with_repeats_each_side_is_its_median_run_and_the_ratio_the_median_pair():
    runs = {"etcd": {"levels": [{"clients": 1, "rep": r, "puts_per_s": v}
                                for r, v in enumerate((900.0, 500.0, 700.0))]},
            "kcore": {"levels": [{"clients": 1, "rep": r, "puts_per_s": v}
                                 for r, v in enumerate((900.0, 600.0, 350.0))]}}
    row = compare(runs, [1])[0]
    assert row["etcd"]["puts_per_s"] == 700.0 and row["kcore"]["puts_per_s"] == 600.0
    assert row["ratios"] == [0.5, 1.0, 1.2] and row["ratio"] == 1.0


def test_interleaved_schedule_alternates_who_goes_first_and_sequential_groups_by_server():
    inter = schedule(["etcd", "kcore"], [1, 16], 2, "interleaved")
    assert inter == [("etcd", 0, 1), ("kcore", 0, 1), ("etcd", 0, 16), ("kcore", 0, 16),
                     ("kcore", 1, 1), ("etcd", 1, 1), ("kcore", 1, 16), ("etcd", 1, 16)]
    seq = schedule(["etcd", "kcore"], [1, 16], 1, "sequential")
    assert seq == [("etcd", 0, 1), ("etcd", 0, 16), ("kcore", 0, 1), ("kcore", 0, 16)]


def test_other_cpu_names_the_busiest_processes_outside_the_run():
    before = {1: (0, 5.0, "init", 0.0), 10: (1, 1.0, "etcd", 0.0),
              11: (10, 0.5, "etcd-child", 0.0), 20: (1, 2.0, "pip", 0.0),
              30: (1, 0.0, "python", 0.0)}
    after = {1: (0, 5.0, "init", 40.0), 10: (1, 3.0, "etcd", 0.0),   # init reaped a long job
             11: (10, 1.0, "etcd-child", 0.0), 20: (1, 4.5, "pip", 0.0),
             30: (1, 0.7, "python", 0.0), 40: (1, 0.2, "make", 0.0)}
    assert sorted(descendants(10, after)) == [10, 11]
    assert tree_cpu_s([10], after) == 4.0
    top = top_consumers(before, after, exclude=set(descendants(10, after)), n=2)
    assert top == [{"pid": 20, "comm": "pip", "cpu_s": 2.5},
                   {"pid": 30, "comm": "python", "cpu_s": 0.7}]
