"""The fake runtime: containers are "running" at once and forever, no processes.
Sandboxes get IPs from the node's pod CIDR (hollow nodes and scheduling tests)."""
from __future__ import annotations

import asyncio
import itertools
import os
import time

from kcore.kubelet.podips import PodIPAllocator
from kcore.kubelet.runtime.base import Container, Exit, PodRef, Sandbox, container_log_path


class FakeRuntime:
    name = "fake"

    def __init__(self, root_dir: str, ips: PodIPAllocator):
        self.root = root_dir
        self.ips = ips
        self._ids = itertools.count(1)

    async def setup_sandbox(self, pod: dict) -> Sandbox:
        ref = PodRef.of(pod)
        return Sandbox(ref, self.ips.allocate(ref.uid))

    async def teardown_sandbox(self, ref: PodRef) -> None:
        self.ips.release(ref.uid)

    async def start_container(self, pod, container, sandbox, attempt, env, mounts=()
                              ) -> Container:
        from kcore.kubelet.images import image_id
        ref = sandbox.pod
        fut = asyncio.get_running_loop().create_future()
        return Container(f"fake://{next(self._ids):012x}", container["name"],
                         container.get("image", ""), image_id(container.get("image", "")),
                         attempt, time.time(), container_log_path(self.root, ref,
                                                                  container["name"], attempt),
                         done=fut)

    async def stop_container(self, c: Container, grace: float) -> Exit:
        if not c.done.done():
            c.done.set_result(Exit(137 if grace <= 0 else 143, time.time(), 0, "Error"))
        return c.done.result()

    async def exec(self, c, cmd, timeout):
        return 0, ""

    def log_dir(self, ref: PodRef, container: str) -> str:
        return os.path.dirname(container_log_path(self.root, ref, container, 0))

    async def close(self) -> None:
        pass
