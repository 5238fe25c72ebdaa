"""Kubernetes quantities and pod requests as the scheduler counts them."""
from __future__ import annotations

from fractions import Fraction

import pytest

from kcore.scheduler.podinfo import pod_counts
from kcore.scheduler.quantity import (
    QuantityError,
    parse_nano,
    parse_quantity,
    resource_value,
    to_milli,
)


@pytest.mark.parametrize("text,value", [
    ("100m", Fraction(1, 10)), ("2", 2), ("1e3", 1000), ("1E3", 1000), ("1E", 10**18),
    ("1Gi", 2**30), ("500Mi", 500 * 2**20), ("1.5Gi", 3 * 2**29), ("2k", 2000),
    ("0.5", Fraction(1, 2)), (".5", Fraction(1, 2)), ("+3", 3), ("1e-3", Fraction(1, 1000)),
    ("10n", Fraction(1, 10**8)), ("7u", Fraction(7, 10**6)), (3, 3), (0.25, Fraction(1, 4)),
])
def test_parse(text, value):
    assert parse_quantity(text) == value
    assert parse_nano(text) == value * 10**9


@pytest.mark.parametrize("bad", ["", "1.2.3", "abc", "1e", "1Ki2", "1 Gi", "Mi", True, None])
def test_invalid(bad):
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_conversion_rounds_up():
    assert resource_value("cpu", parse_quantity("0.1m")) == 1
    assert resource_value("cpu", parse_quantity("1")) == 1000
    assert resource_value("memory", parse_quantity("0.5")) == 1
    assert to_milli(parse_quantity("1.0005")) == 1001


def test_pod_requests_sum_max_sidecar_overhead():
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "250m", "memory": "0.5"}}},
                       {"resources": {"requests": {"cpu": "250m", "memory": "0.5"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "2"}}},
                           {"restartPolicy": "Always",
                            "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                           {"resources": {"requests": {"cpu": "1"}}}],
        "overhead": {"cpu": "10m"},
    }
    reqs, nz_cpu, nz_mem = pod_counts(spec)
    # containers 500m + sidecar 100m = 600m; init max(2000m, 1000m + 100m) = 2000m; + 10m
    assert reqs["cpu"] == 2010
    # memory: 0.5 + 0.5 (summed exactly, then rounded) + sidecar 1Gi
    assert reqs["memory"] == 1 + 2**30
    # non-zero: init containers that do not mention memory count 200Mi, so the
    # last init container (200Mi + the 1Gi sidecar) beats the regular containers
    assert nz_mem == 2**30 + 200 * 2**20
    assert nz_cpu == 2010


def test_non_zero_defaults_only_for_missing():
    reqs, nz_cpu, nz_mem = pod_counts({"containers": [{}, {"resources": {"requests": {
        "cpu": "0", "memory": "0"}}}]})
    assert reqs == {"cpu": 0, "memory": 0}
    assert (nz_cpu, nz_mem) == (100, 200 * 2**20)
