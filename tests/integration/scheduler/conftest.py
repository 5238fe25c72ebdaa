"""Fixtures: a real API server (embedded store, temp dir, free port) per module."""
from __future__ import annotations

import shutil
import tempfile

import pytest

from .scheduler_harness import Cluster


@pytest.fixture(scope="module")
def cluster():
    root = tempfile.mkdtemp(prefix="kcore-sched-it-")
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)
