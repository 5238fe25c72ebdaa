"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection.

Candidates race to write themselves as `spec.holderIdentity`; every write is an
update guarded by the resourceVersion read, so exactly one wins a round. The
holder renews `renewTime` every `retry_period`; if it cannot renew within
`renew_deadline` it stops leading (its `on_started_leading` task is
cancelled, `on_stopped_leading` runs). The others take over once the record
has not changed for `lease_duration` *as measured on their own clock* from
when they last saw it change (clock skew between hosts does not matter), and
count the take-over in `leaseTransitions`. A clean shutdown releases the
lease (empty holder, duration 1 s) so a successor need not wait.

    elector = LeaderElector(client, LeaderElectionConfig(
        lock_namespace="kube-system", lock_name="kube-controller-manager",
        identity=f"{socket.gethostname()}_{uuid.uuid4()}"),
        on_started_leading=run_controllers, on_stopped_leading=exit_now)
    await elector.run()      # returns when leadership is lost (or on cancel, released)

Constraints (checked): lease_duration > renew_deadline > retry_period · 1.2.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kcore.client import errors as E
from kcore.client.resources import LEASES

log = logging.getLogger(__name__)

JITTER_FACTOR = 1.2


def micro_time(ts: float | None = None) -> str:
    """metav1.MicroTime as the API writes it."""
    t = time.time() if ts is None else ts
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElectionConfig:
    lock_namespace: str = "kube-system"
    lock_name: str = "kube-controller-manager"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True

    def validate(self) -> None:
        if not self.identity:
            raise ValueError("leader election: identity must not be empty")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("leader election: leaseDuration must be greater than "
                             "renewDeadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError("leader election: renewDeadline must be greater than "
                             "retryPeriod*JitterFactor")
        if self.retry_period <= 0:
            raise ValueError("leader election: retryPeriod must be greater than zero")


class LeaderElector:
    def __init__(self, client, config: LeaderElectionConfig,
                 on_started_leading: Callable[[], Awaitable[None]],
                 on_stopped_leading: Callable[[], None] | None = None,
                 on_new_leader: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        config.validate()
        self.client, self.config = client, config
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.clock, self.wall = clock, wall
        self.observed_record: dict = {}
        self.observed_time = 0.0
        self.observed_rv = ""
        self._reported_leader = ""
        self._leading = False
        self.transitions_seen = 0

    # -- state ----------------------------------------------------------------------------
    def is_leader(self) -> bool:
        return self._leading and self.observed_record.get("holderIdentity") == \
            self.config.identity

    def get_leader(self) -> str:
        return self.observed_record.get("holderIdentity") or ""

    def _observe(self, spec: dict, rv: str) -> None:
        if spec != self.observed_record:
            self.observed_record = dict(spec)
            self.observed_time = self.clock()
        self.observed_rv = rv
        holder = spec.get("holderIdentity") or ""
        if holder != self._reported_leader:
            self._reported_leader = holder
            if self.on_new_leader is not None and holder:
                try:
                    self.on_new_leader(holder)
                except Exception:
                    log.exception("on_new_leader failed")

    # -- one attempt ----------------------------------------------------------------------
    async def try_acquire_or_renew(self) -> bool:
        """One optimistic attempt to become (or stay) the holder."""
        c = self.config
        now = micro_time(self.wall())
        ns, name = c.lock_namespace, c.lock_name
        try:
            lease = await self.client.get(LEASES, name, ns)
        except E.NotFound:
            spec = {"holderIdentity": c.identity,
                    "leaseDurationSeconds": max(round(c.lease_duration), 1),
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
            try:
                created = await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": ns}, "spec": spec}, ns)
            except E.ApiError as e:
                log.info("error initially creating leader election record: %s", e)
                return False
            self._observe(created.get("spec") or spec,
                          created["metadata"].get("resourceVersion", ""))
            return True
        except E.ApiError as e:
            log.warning("error retrieving resource lock %s/%s: %s", ns, name, e)
            return False
        spec = lease.get("spec") or {}
        rv = lease["metadata"].get("resourceVersion", "")
        self._observe(spec, rv)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or c.lease_duration)
        if holder and holder != c.identity and \
                self.observed_time + duration > self.clock():
            return False       # held by another and not expired
        new = {"holderIdentity": c.identity,
               "leaseDurationSeconds": max(round(c.lease_duration), 1),
               "renewTime": now,
               "acquireTime": spec.get("acquireTime") or now,
               "leaseTransitions": int(spec.get("leaseTransitions") or 0)}
        if holder != c.identity:
            new["acquireTime"] = now
            new["leaseTransitions"] += 1
        lease["spec"] = {**spec, **new}
        try:
            updated = await self.client.update(LEASES, lease, ns)
        except E.ApiError as e:
            log.info("failed to update lease %s/%s: %s", ns, name, e)
            return False
        self._observe(updated.get("spec") or lease["spec"],
                      updated["metadata"].get("resourceVersion", ""))
        return True

    async def release(self) -> bool:
        """Give the lease up (only if we still hold it)."""
        c = self.config
        if self.observed_record.get("holderIdentity") != c.identity:
            return False
        now = micro_time(self.wall())
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": c.lock_name, "namespace": c.lock_namespace,
                              "resourceVersion": self.observed_rv},
                 "spec": {"holderIdentity": "", "leaseDurationSeconds": 1,
                          "acquireTime": now, "renewTime": now,
                          "leaseTransitions": int(self.observed_record.get(
                              "leaseTransitions") or 0)}}
        try:
            updated = await self.client.update(LEASES, lease, c.lock_namespace)
        except E.ApiError as e:
            log.warning("failed to release lease %s/%s: %s", c.lock_namespace, c.lock_name, e)
            return False
        self._observe(updated.get("spec") or lease["spec"],
                      updated["metadata"].get("resourceVersion", ""))
        return True

    # -- loops ----------------------------------------------------------------------------
    def _jittered(self, d: float) -> float:
        return d * (1 + random.random() * (JITTER_FACTOR - 1))

    async def _acquire(self) -> None:
        c = self.config
        log.info("attempting to acquire leader lease %s/%s...", c.lock_namespace, c.lock_name)
        while True:
            if await self.try_acquire_or_renew():
                log.info("successfully acquired lease %s/%s", c.lock_namespace, c.lock_name)
                return
            await asyncio.sleep(self._jittered(c.retry_period))

    async def _renew_once(self) -> bool:
        """Retry every retry_period until renewed or renew_deadline passes."""
        c = self.config
        deadline = self.clock() + c.renew_deadline
        while True:
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(),
                                            max(deadline - self.clock(), 0.01))
            except TimeoutError:
                ok = False
            if ok:
                return True
            if self.clock() + c.retry_period > deadline:
                return False
            await asyncio.sleep(c.retry_period)

    async def run(self) -> None:
        """Acquire, lead, renew; return when leadership is lost. Cancelling run()
        stops leading and (release_on_cancel) releases the lease."""
        c = self.config
        lead: asyncio.Task | None = None
        lost = False
        try:
            await self._acquire()
            self._leading = True
            lead = asyncio.get_running_loop().create_task(self._lead())
            while True:
                await asyncio.sleep(c.retry_period)
                if not await self._renew_once():
                    log.error("failed to renew lease %s/%s: timed out waiting for the "
                              "condition", c.lock_namespace, c.lock_name)
                    lost = True
                    return
        finally:
            was_leading = self._leading
            self._leading = False
            if lead is not None:
                lead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lead
            if was_leading and not lost and c.release_on_cancel:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(self.release())
            if was_leading and self.on_stopped_leading is not None:
                try:
                    self.on_stopped_leading()
                except Exception:
                    log.exception("on_stopped_leading failed")

    async def _lead(self) -> None:
        try:
            await self.on_started_leading()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("on_started_leading failed")
