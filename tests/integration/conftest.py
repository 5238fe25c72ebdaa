"""Fixtures for the store's integration tests (processes: store_harness)."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from store_harness import FRONTENDS, Member


@pytest.fixture
def tmpdir_path():
    d = tempfile.mkdtemp(prefix="kcore-test-")
    yield d
    if not os.environ.get("KCORE_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=FRONTENDS)
def member(tmpdir_path, request):
    """A running `kcore etcd`, once per gRPC front end (native HTTP/2 and grpc.aio)."""
    m = Member(os.path.join(tmpdir_path, "data"), extra=[f"--frontend={request.param}"])
    m.start()
    yield m
    m.stop()
