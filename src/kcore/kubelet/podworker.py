"""One pod's life on this node: one asyncio task per pod.

The worker loops: sync (sandbox, image pulls, init containers in order, then
the containers, restarts by restartPolicy with crash back-off), post the
status when it changed, then sleep until something happens (a container
exits, a probe flips, the pod object changes, a back-off expires). A pod
marked for deletion is stopped gracefully (SIGTERM, its grace period,
SIGKILL), its final status posted, and the object deleted with grace 0 —
the kubelet's half of a graceful delete."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

from kcore.client import NotFound
from kcore.client.errors import ApiError, Conflict, TransportError
from kcore.client.resources import PODS
from kcore.kubelet import images
from kcore.kubelet.envvars import EnvError, container_env
from kcore.kubelet.podstatus import FAILED, SUCCEEDED, CStatus, pod_status
from kcore.kubelet.probes import FAILURE, ProbeCounter, ProbeSpec, run_probe
from kcore.kubelet.projected import VolumeError
from kcore.kubelet.runtime.base import Container, Exit, PodRef, Sandbox, StartError
from kcore.kubelet.volumes import PodVolumes

log = logging.getLogger("kcore.kubelet.pods")


@dataclass
class Rec:
    """The kubelet's bookkeeping for one container of the pod."""
    spec: dict
    init: bool = False
    handle: Container | None = None
    restart_count: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    last_exit: Exit | None = None
    last_started: float | None = None
    last_id: str = ""
    last_image_id: str = ""
    prev_termination: dict | None = None
    image_id: str = ""
    pull_failed_at: float | None = None
    ready: bool = False
    started: bool = False          # startup probe passed (or none)
    probe_tasks: list = field(default_factory=list)
    liveness_kill: bool = False

    @property
    def name(self) -> str:
        return self.spec["name"]

    def termination(self) -> dict | None:
        e = self.last_exit
        if e is None:
            return None
        t = {"exitCode": e.code, "reason": e.reason or ("Completed" if e.code == 0 else "Error"),
             "startedAt": _t(self.last_started), "finishedAt": _t(e.finished_at)}
        if e.signal:
            t["signal"] = e.signal
        if e.message:
            t["message"] = e.message
        if self.last_id:
            t["containerID"] = self.last_id
        return t


def _t(ts):
    from kcore.kubelet.timeutil import rfc3339
    return rfc3339(ts) if ts else None


def should_restart(policy: str, code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and code != 0)


class PodWorker:
    def __init__(self, kubelet, pod: dict):
        self.kl = kubelet
        self.pod = pod
        self.ref = PodRef.of(pod)
        spec = pod.get("spec") or {}
        prev = {c.get("name"): c for c in (pod.get("status") or {}).get(
            "containerStatuses") or []}
        self.init_recs = [Rec(c, init=True) for c in spec.get("initContainers") or []]
        self.recs = [Rec(c) for c in spec.get("containers") or []]
        for r in self.recs:       # a restarted kubelet keeps counting restarts
            r.restart_count = int((prev.get(r.name) or {}).get("restartCount") or 0)
        for r in self.init_recs:
            r.waiting_reason = "PodInitializing"
        self.sandbox: Sandbox | None = None
        self.sandbox_error = ""
        self.volumes: PodVolumes | None = None
        self.volume_error = ""
        self.start_time: float | None = None
        self.terminal = ""
        self.removed = False
        self.finished = False
        self.last_posted: dict | None = None
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(),
                                                           name=f"pod {self.ref.name}")

    # -- inputs ---------------------------------------------------------------------------
    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def remove(self) -> None:
        """The pod object is gone from the API server."""
        self.removed = True
        self.wake.set()

    @property
    def key(self) -> str:
        return f"{self.ref.namespace}/{self.ref.name}"

    def all_recs(self) -> list[Rec]:
        return self.init_recs + self.recs

    def find(self, name: str) -> Rec | None:
        return next((r for r in self.all_recs() if r.name == name), None)

    # -- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                self.wake.clear()
                if self.removed:
                    await self._stop_all(min(self._grace(), 2.0))
                    await self._teardown()
                    break
                if (self.pod.get("metadata") or {}).get("deletionTimestamp"):
                    await self._terminate()
                    break
                delay = 10.0
                try:
                    delay = await self._sync()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sync of pod %s failed", self.key)
                    delay = 1.0
                if not await self._post_status():
                    delay = min(delay, 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(delay, 0.05))
        except asyncio.CancelledError:
            pass
        finally:
            self.finished = True
            self.kl.pod_worker_done(self)

    def _grace(self) -> float:
        md, spec = self.pod.get("metadata") or {}, self.pod.get("spec") or {}
        g = md.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return float(g if g is not None else 30)

    # -- sync -----------------------------------------------------------------------------
    async def _sync(self) -> float:
        """Make the pod's containers what its spec and restartPolicy want. Returns the
        time until the next necessary look (a back-off ending)."""
        now = self.kl.clock()
        if self.terminal:
            return 60.0
        if self.start_time is None:
            self.start_time = now
        if self.sandbox is None:
            try:
                self.sandbox = await self.kl.runtime.setup_sandbox(self.pod)
                self.sandbox_error = ""
            except Exception as e:  # noqa: BLE001 - the sandbox's own error is the message
                self.sandbox_error = str(e)
                self.kl.event(self.pod, "Warning", "FailedCreatePodSandBox",
                              f"Failed to create pod sandbox: {e}")
                return 5.0
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        next_look = 30.0
        wait = await self._sync_volumes()
        if wait is None:
            return 2.0
        next_look = min(next_look, wait)
        for r in self.init_recs:
            if r.last_exit is not None and r.handle is None and r.last_exit.code == 0:
                continue
            if r.handle is not None:
                return next_look          # wait for it to finish
            if r.last_exit is not None:
                if policy == "Never":
                    self.terminal = FAILED
                    return next_look
                wait = self._backoff_left(r, now)
                if wait > 0:
                    return wait
            await self._start(r, now, restart=r.last_exit is not None)
            return next_look
        for r in self.recs:
            if r.handle is not None:
                continue
            if r.last_exit is None and r.restart_count == 0 and not r.last_id:
                wait = self._pull_wait(r, now)
                if wait > 0:
                    next_look = min(next_look, wait)
                    continue
                await self._start(r, now, restart=False)
                continue
            if r.last_exit is None:     # a restarted kubelet: start again
                await self._start(r, now, restart=False)
                continue
            if not should_restart(policy, r.last_exit.code):
                continue
            wait = self._backoff_left(r, now)
            if wait > 0:
                next_look = min(next_look, wait)
                continue
            await self._start(r, now, restart=True)
        if policy != "Always" and all(r.handle is None and r.last_exit is not None
                                      and not should_restart(policy, r.last_exit.code)
                                      for r in self.recs):
            self.terminal = SUCCEEDED if all(r.last_exit.code == 0 for r in self.recs) \
                else FAILED
        return next_look

    async def _sync_volumes(self) -> float | None:
        """Write or renew the projected volumes (service-account tokens); seconds until
        the next renewal, None while a volume was never written (containers wait)."""
        if self.volumes is None:
            pod_dir = os.path.join(self.kl.config.root_dir, "pods", self.ref.dirname)
            self.volumes = PodVolumes(self.kl.client, self.pod, pod_dir, self.kl.lookup,
                                      self.kl.clock)
        if not self.volumes.volumes:
            return 30.0
        try:
            left = await self.volumes.sync(self.sandbox.ip, self.kl.node_ip)
            self.volume_error = ""
            return max(left, 0.05)
        except VolumeError as e:
            if str(e) != self.volume_error:
                self.kl.event(self.pod, "Warning", "FailedMount",
                              f"MountVolume.SetUp failed: {e}")
            self.volume_error = str(e)
            log.warning("pod %s: volumes: %s", self.key, e)
            if len(self.volumes.renew_at) < len(self.volumes.volumes):
                return None
            return 5.0

    def _backoff_key(self, r: Rec) -> tuple:
        return (self.ref.uid, r.name)

    def _backoff_left(self, r: Rec, now: float) -> float:
        """Seconds of crash back-off left; sets the CrashLoopBackOff waiting state."""
        bo = self.kl.crash_backoff
        key = self._backoff_key(r)
        since = r.last_exit.finished_at
        if bo.in_backoff_since(key, since, now):
            delay = bo.delay(key)
            if r.waiting_reason != "CrashLoopBackOff":
                self.kl.event(self.pod, "Warning", "BackOff",
                              f"Back-off restarting failed container {r.name} in pod "
                              f"{self.ref.name}_{self.ref.namespace}({self.ref.uid})")
            r.waiting_reason = "CrashLoopBackOff"
            r.waiting_message = (f"back-off {_dur(delay)} restarting failed container="
                                 f"{r.name} pod={self.ref.name}_{self.ref.namespace}"
                                 f"({self.ref.uid})")
            return since + delay - now
        if r.last_started and since - r.last_started > bo.reset_after:
            bo.reset(key)
        return 0.0

    def _pull_wait(self, r: Rec, now: float) -> float:
        """The simulated image pull; >0: seconds until the next try (ImagePullBackOff)."""
        image = r.spec.get("image", "")
        key = ("pull", self.ref.uid, r.name)
        bo = self.kl.image_backoff
        if r.pull_failed_at is not None and bo.in_backoff_since(key, r.pull_failed_at, now):
            if r.waiting_reason != "ImagePullBackOff":
                self.kl.event(self.pod, "Normal", "BackOff", f'Back-off pulling image "{image}"',
                              field_path=self._field_path(r))
                self.kl.event(self.pod, "Warning", "Failed", "Error: ImagePullBackOff",
                              field_path=self._field_path(r))
            r.waiting_reason = "ImagePullBackOff"
            r.waiting_message = f'Back-off pulling image "{image}"'
            return r.pull_failed_at + bo.delay(key) - now
        fp = self._field_path(r)
        first = image not in self.kl.pulled_images
        if first:
            self.kl.event(self.pod, "Normal", "Pulling", f'Pulling image "{image}"',
                          field_path=fp)
        try:
            r.image_id = images.pull(image, self.kl.config.image_registries)
        except images.PullError as e:
            bo.next(key, now)
            r.pull_failed_at = now
            r.waiting_reason, r.waiting_message = "ErrImagePull", e.message
            self.kl.event(self.pod, "Warning", "Failed",
                          f'Failed to pull image "{image}": {e.message}', field_path=fp)
            self.kl.event(self.pod, "Warning", "Failed", "Error: ErrImagePull", field_path=fp)
            return bo.delay(key)
        bo.reset(key)
        r.pull_failed_at = None
        if first:
            self.kl.pulled_images.add(image)
            self.kl.event(self.pod, "Normal", "Pulled", f'Successfully pulled image "{image}" '
                          f'in 0s (0s including waiting). Image size: 0 bytes.', field_path=fp)
        else:
            self.kl.event(self.pod, "Normal", "Pulled",
                          f'Container image "{image}" already present on machine',
                          field_path=fp)
        return 0.0

    def _field_path(self, r: Rec) -> str:
        group = "initContainers" if r.init else "containers"
        return f"spec.{group}{{{r.name}}}"

    async def _start(self, r: Rec, now: float, restart: bool) -> None:
        if r.init and not r.image_id:
            if self._pull_wait(r, now) > 0:
                return
        if restart:
            self.kl.crash_backoff.next(self._backoff_key(r), now)
            r.prev_termination = r.termination()
            r.restart_count += 1
        fp = self._field_path(r)
        sb = self.sandbox
        try:
            env = await container_env(self.pod, r.spec, pod_ip=sb.ip, host_ip=self.kl.node_ip,
                                      lookup=self.kl.lookup,
                                      node_capacity=self.kl.node_cfg.capacity)
            env = {**await self.kl.api_service_env(), **env}
        except EnvError as e:
            r.waiting_reason, r.waiting_message = "CreateContainerConfigError", str(e)
            self.kl.event(self.pod, "Warning", "Failed", f"Error: {e}", field_path=fp)
            if restart:
                r.restart_count -= 1
            return
        try:
            mounts = tuple(self.volumes.mounts(r.spec)) if self.volumes else ()
            c = await self.kl.runtime.start_container(self.pod, r.spec, sb, r.restart_count,
                                                      env, mounts)
        except StartError as e:
            r.last_started = now
            r.last_exit = Exit(e.code, now, 0, "StartError", e.message)
            r.last_id = ""
            r.waiting_reason, r.waiting_message = "RunContainerError", e.message
            self.kl.event(self.pod, "Warning", "Failed", f"Error: {e.message}", field_path=fp)
            self.wake.set()
            return
        r.handle = c
        r.last_id, r.last_image_id = c.id, c.image_id
        r.last_started = c.started_at
        r.liveness_kill = False
        r.ready = False
        r.started = "startupProbe" not in r.spec
        self.kl.event(self.pod, "Normal", "Created", f"Created container: {r.name}",
                      field_path=fp)
        self.kl.event(self.pod, "Normal", "Started", f"Started container {r.name}",
                      field_path=fp)
        c.done.add_done_callback(lambda f, r=r, c=c: self._exited(r, c))
        if not r.init:
            self._start_probes(r, c)

    def _exited(self, r: Rec, c: Container) -> None:
        if r.handle is not c:
            return
        for t in r.probe_tasks:
            t.cancel()
        r.probe_tasks = []
        r.handle = None
        r.ready = False
        exc = c.done.exception() if not c.done.cancelled() else None
        r.last_exit = c.done.result() if exc is None and not c.done.cancelled() else \
            Exit(137, self.kl.clock(), 9, "Error")
        r.waiting_reason, r.waiting_message = "", ""
        log.info("pod %s container %s exited with %s", self.key, r.name, r.last_exit.code)
        self.wake.set()

    # -- probes ---------------------------------------------------------------------------
    def _start_probes(self, r: Rec, c: Container) -> None:
        loop = asyncio.get_running_loop()
        for kind, key in (("startup", "startupProbe"), ("liveness", "livenessProbe"),
                          ("readiness", "readinessProbe")):
            if r.spec.get(key):
                spec = ProbeSpec.from_api(kind, r.spec[key])
                r.probe_tasks.append(loop.create_task(self._probe_loop(r, c, spec)))
        if not r.spec.get("readinessProbe"):
            r.ready = r.started

    async def _probe_loop(self, r: Rec, c: Container, spec: ProbeSpec) -> None:
        counter = ProbeCounter.for_spec(spec)
        await asyncio.sleep(spec.initial_delay)
        while r.handle is c:
            if spec.kind != "startup" and not r.started:
                await asyncio.sleep(0.2)
                continue
            if spec.kind == "startup" and r.started:
                return
            ip = self.sandbox.ip if self.sandbox else self.kl.node_ip
            ok, msg = await run_probe(spec.handler, pod_ip=ip,
                                      container_ports=r.spec.get("ports") or [],
                                      timeout=spec.timeout,
                                      exec_fn=lambda cmd, to: self.kl.runtime.exec(c, cmd, to))
            if r.handle is not c:
                return
            if not ok:
                kind = spec.kind.capitalize()
                self.kl.event(self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {msg}",
                              field_path=self._field_path(r))
            changed = counter.observe(ok)
            if spec.kind == "readiness":
                if changed:
                    r.ready = counter.result != FAILURE
                    self.wake.set()
            elif spec.kind == "startup":
                if counter.result != FAILURE and ok:
                    r.started = True
                    if not r.spec.get("readinessProbe"):
                        r.ready = True
                    self.wake.set()
                    return
                if changed:
                    await self._probe_kill(r, c, spec, "startup")
                    return
            elif changed and counter.result == FAILURE:
                await self._probe_kill(r, c, spec, "liveness")
                return
            await asyncio.sleep(spec.period)

    async def _probe_kill(self, r: Rec, c: Container, spec: ProbeSpec, kind: str) -> None:
        self.kl.event(self.pod, "Normal", "Killing",
                      f"Container {r.name} failed {kind} probe, will be restarted",
                      field_path=self._field_path(r))
        r.liveness_kill = True
        grace = spec.termination_grace if spec.termination_grace is not None else \
            (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        await self.kl.runtime.stop_container(c, float(grace))

    # -- stopping -------------------------------------------------------------------------
    async def _stop_all(self, grace: float) -> None:
        running = [r for r in self.all_recs() if r.handle is not None]
        for r in running:
            self.kl.event(self.pod, "Normal", "Killing", f"Stopping container {r.name}",
                          field_path=self._field_path(r))
        await asyncio.gather(*(self.kl.runtime.stop_container(r.handle, grace)
                               for r in running), return_exceptions=True)
        for r in running:       # the done callbacks may not have run yet
            if r.handle is not None and r.handle.done.done():
                self._exited(r, r.handle)

    async def _teardown(self) -> None:
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                await self.kl.runtime.teardown_sandbox(self.ref)
            self.sandbox = None

    async def _terminate(self) -> None:
        """Graceful delete: stop, report, delete with grace 0."""
        log.info("stopping pod %s (grace %ss)", self.key, self._grace())
        await self._stop_all(self._grace())
        await self._teardown()
        policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
        if not self.terminal:
            codes = [r.last_exit.code for r in self.recs if r.last_exit is not None]
            self.terminal = SUCCEEDED if codes and all(c == 0 for c in codes) and \
                policy != "Always" else FAILED
        await self._post_status(final=True)
        for _ in range(5):
            try:
                await self.kl.client.delete(PODS, self.ref.name, self.ref.namespace,
                                            grace_period_seconds=0,
                                            preconditions={"uid": self.ref.uid})
                return
            except (NotFound, Conflict):
                return
            except (ApiError, TransportError) as e:
                log.warning("deleting pod %s: %s", self.key, e)
                await asyncio.sleep(1.0)

    # -- status ---------------------------------------------------------------------------
    def cstatus(self, r: Rec) -> CStatus:
        cs = CStatus(r.name, r.spec.get("image", ""), restart_count=r.restart_count,
                     image_id=r.image_id or r.last_image_id,
                     last_termination=r.prev_termination)
        if r.handle is not None:
            cs.state, cs.started_at = "running", r.handle.started_at
            cs.container_id = r.handle.id
            cs.ready, cs.started = r.ready and r.started, r.started
        elif r.last_exit is not None and not r.waiting_reason:
            e = r.last_exit
            cs.state, cs.reason, cs.exit_code, cs.signal = "terminated", e.reason or (
                "Completed" if e.code == 0 else "Error"), e.code, e.signal
            cs.message = e.message
            cs.started_at, cs.finished_at = r.last_started, e.finished_at
            cs.container_id = r.last_id
        else:
            cs.state, cs.reason, cs.message = "waiting", r.waiting_reason or \
                "ContainerCreating", r.waiting_message
            if r.last_exit is not None and r.waiting_reason in ("CrashLoopBackOff",
                                                                 "RunContainerError"):
                cs.last_termination = r.termination()
                cs.container_id = r.last_id
        return cs

    def status(self) -> dict:
        init_done = all(r.last_exit is not None and r.last_exit.code == 0 and r.handle is None
                        for r in self.init_recs)
        if not init_done:
            for r in self.recs:
                if r.handle is None and r.last_exit is None:
                    r.waiting_reason = "PodInitializing"
        elif any(r.waiting_reason == "PodInitializing" for r in self.recs):
            for r in self.recs:
                if r.waiting_reason == "PodInitializing":
                    r.waiting_reason = "ContainerCreating"
        st = pod_status(self.pod, [self.cstatus(r) for r in self.init_recs],
                        [self.cstatus(r) for r in self.recs], init_done=init_done,
                        sandbox_ready=self.sandbox is not None, host_ip=self.kl.node_ip,
                        pod_ip=self.sandbox.ip if self.sandbox else "",
                        start_time=self.start_time, now=self.kl.clock(),
                        terminal_override=self.terminal)
        if self.terminal and st["phase"] in (SUCCEEDED, FAILED):
            for c in st["containerStatuses"]:
                c["ready"] = False
        return st

    async def _post_status(self, final: bool = False) -> bool:
        st = self.status()
        if final:
            st.pop("podIP", None)
            st.pop("podIPs", None)
        if st == self.last_posted:
            return True
        try:
            await self.kl.client.patch(PODS, self.ref.name, {"status": st}, self.ref.namespace,
                                       subresource="status")
            self.last_posted = st
            return True
        except NotFound:
            self.removed = True
            return True
        except (ApiError, TransportError) as e:
            log.warning("status of pod %s: %s", self.key, e)
            return False


def _dur(seconds: float) -> str:
    """Go's duration text for back-off messages: 10s, 1m20s, 5m0s."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60}s"


def now() -> float:
    return time.time()
