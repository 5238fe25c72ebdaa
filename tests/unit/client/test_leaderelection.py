"""Leader election against a real `kcore apiserver`: one leader at a time, take-over
after the lease expires, immediate hand-over on release, optimistic races, loss
of leadership when the lease is taken away."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from kcore.client import LEASES, Client, LeaderElectionConfig, LeaderElector


def run(coro, timeout: float = 60):
    """Run a scenario; if it hangs, print every task's stack (what it waits on)
    before failing, so a hang in CI says where it is."""
    async def guarded():
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.print_stack()
            task.cancel()
            raise AssertionError(f"scenario still running after {timeout} s (stacks above)")
        return task.result()
    return asyncio.run(guarded())


def cfg(name: str, ident: str, **kw) -> LeaderElectionConfig:
    base = dict(lock_namespace="kube-system", lock_name=name, identity=ident,
                lease_duration=2.0, renew_deadline=1.5, retry_period=0.25)
    base.update(kw)
    return LeaderElectionConfig(**base)


class Tracker:
    """Who leads, when; asserts that two never lead at once."""

    def __init__(self):
        self.leading: set[str] = set()
        self.overlaps = 0
        self.log: list[tuple[float, str, str]] = []

    def elector(self, client, c: LeaderElectionConfig) -> LeaderElector:
        ident = c.identity

        async def started():
            self.leading.add(ident)
            if len(self.leading) > 1:
                self.overlaps += 1
            self.log.append((time.monotonic(), ident, "start"))
            await asyncio.Event().wait()

        def stopped():
            self.leading.discard(ident)
            self.log.append((time.monotonic(), ident, "stop"))
        return LeaderElector(client, c, started, stopped)


async def wait_for(pred, timeout: float, step: float = 0.02) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)
    return time.monotonic() - t0


def test_config_is_validated():
    with pytest.raises(ValueError):
        LeaderElectionConfig(identity="a", lease_duration=10, renew_deadline=10).validate()
    with pytest.raises(ValueError):
        LeaderElectionConfig(identity="a", renew_deadline=2, retry_period=2).validate()
    with pytest.raises(ValueError):
        LeaderElectionConfig(identity="").validate()
    LeaderElectionConfig(identity="a").validate()     # kube's 15 s / 10 s / 2 s


def test_one_leader_then_release_hands_over_at_once(apiserver):
    async def main():
        name = f"le-{uuid.uuid4().hex[:6]}"
        t = Tracker()
        async with Client(apiserver.url) as c1, Client(apiserver.url) as c2:
            a = t.elector(c1, cfg(name, "a"))
            ta = asyncio.create_task(a.run())
            await wait_for(lambda: "a" in t.leading, 5)
            b = t.elector(c2, cfg(name, "b"))
            tb = asyncio.create_task(b.run())
            await asyncio.sleep(3.0)          # longer than the lease: a keeps renewing
            assert t.leading == {"a"} and b.get_leader() == "a"
            lease = await c1.get(LEASES, name, "kube-system")
            assert lease["spec"]["holderIdentity"] == "a"
            assert lease["spec"]["leaseTransitions"] == 0
            assert lease["spec"]["leaseDurationSeconds"] == 2
            ta.cancel()                       # clean shutdown: release
            await asyncio.gather(ta, return_exceptions=True)
            released_at = time.monotonic()
            await wait_for(lambda: "b" in t.leading, 3)
            took = time.monotonic() - released_at
            assert took < 1.0, took           # no need to wait out the lease
            lease = await c1.get(LEASES, name, "kube-system")
            assert lease["spec"]["holderIdentity"] == "b"
            assert lease["spec"]["leaseTransitions"] == 1
            tb.cancel()
            await asyncio.gather(tb, return_exceptions=True)
            lease = await c1.get(LEASES, name, "kube-system")
            assert lease["spec"].get("holderIdentity", "") == ""
        assert t.overlaps == 0
    run(main())


def test_crashed_leader_is_replaced_after_lease_duration(apiserver):
    async def main():
        name = f"le-{uuid.uuid4().hex[:6]}"
        t = Tracker()
        async with Client(apiserver.url) as c1, Client(apiserver.url) as c2:
            a = t.elector(c1, cfg(name, "a", release_on_cancel=False))
            ta = asyncio.create_task(a.run())
            await wait_for(lambda: "a" in t.leading, 5)
            b = t.elector(c2, cfg(name, "b"))
            tb = asyncio.create_task(b.run())
            await asyncio.sleep(1.0)
            ta.cancel()                       # a "crash": no release
            await asyncio.gather(ta, return_exceptions=True)
            t.leading.discard("a")
            crashed = time.monotonic()
            await wait_for(lambda: "b" in t.leading, 6)
            took = time.monotonic() - crashed
            # b waits for the record to stay unchanged for the lease duration (2 s),
            # measured from the last change it saw (≤ one retry period before the crash)
            assert 1.5 <= took <= 2.0 + 2 * 0.25 * 1.2 + 0.5, took
            lease = await c2.get(LEASES, name, "kube-system")
            assert lease["spec"]["holderIdentity"] == "b"
            assert lease["spec"]["leaseTransitions"] == 1
            tb.cancel()
            await asyncio.gather(tb, return_exceptions=True)
    run(main())


def test_racing_candidates_exactly_one_wins(apiserver):
    async def main():
        name = f"le-{uuid.uuid4().hex[:6]}"
        async with Client(apiserver.url) as c:
            electors = [LeaderElector(c, cfg(name, f"c{i}"), lambda: asyncio.sleep(0))
                        for i in range(8)]
            results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
            assert sum(results) == 1
            winner = electors[results.index(True)].config.identity
            lease = await c.get(LEASES, name, "kube-system")
            assert lease["spec"]["holderIdentity"] == winner
            # the holder renews; the others still fail while the lease is fresh
            results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
            assert [e.config.identity for e, r in zip(electors, results) if r] == [winner]
    run(main())


def test_leader_that_cannot_renew_stops_leading(apiserver):
    async def main():
        name = f"le-{uuid.uuid4().hex[:6]}"
        t = Tracker()
        async with Client(apiserver.url) as c:
            a = t.elector(c, cfg(name, "a"))
            ta = asyncio.create_task(a.run())
            await wait_for(lambda: "a" in t.leading, 5)
            # someone rewrites the lease with a long duration: a can no longer renew
            lease = await c.get(LEASES, name, "kube-system")
            lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=60)
            await c.update(LEASES, lease)
            lost_after = await wait_for(lambda: "a" not in t.leading, 5)
            assert lost_after <= 1.5 + 0.25 * 2 + 0.5
            await asyncio.wait_for(ta, 2)     # run() returns on lost leadership
            assert t.log[-1][1:] == ("a", "stop")
            lease = await c.get(LEASES, name, "kube-system")
            assert lease["spec"]["holderIdentity"] == "intruder"   # not released
    run(main())
