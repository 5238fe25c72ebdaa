from __future__ import annotations

import pytest

from kcore.proxy.dispatcher import NATIVE_AVAILABLE, Dispatcher

ENGINES = ["ref"] + (["native"] if NATIVE_AVAILABLE else [])


@pytest.fixture(params=ENGINES)
def make(request):
    """A Dispatcher factory on each engine (the reference, and the native one when built)."""
    native = request.param == "native"

    def factory(**kw) -> Dispatcher:
        kw.setdefault("seed", 12345)
        return Dispatcher(native=native, **kw)

    factory.engine = request.param
    return factory
