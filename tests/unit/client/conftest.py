from __future__ import annotations

import pytest

from .client_harness import APIServerProcess


@pytest.fixture(scope="module")
def apiserver():
    srv = APIServerProcess()
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
