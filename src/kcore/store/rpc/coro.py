"""Running a handler coroutine without a Task until it first suspends.

Front ends call handlers for thousands of requests a second; most reads
finish without suspending, so they are driven inline with `coro.send(None)`
and only a handler that suspends gets a Task, built with `resume`."""
from __future__ import annotations

import types


@types.coroutine
def resume(coro, pending):
    """Continue a coroutine that was started outside a Task and suspended on
    `pending` (what it yielded): hand `pending` to the Task, then delegate."""
    while True:
        try:
            yield pending
        except BaseException as exc:  # noqa: BLE001 - forwarded into the handler
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        return (yield from coro)
