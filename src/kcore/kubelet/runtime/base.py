"""The runtime seam: what the kubelet asks of a container runtime.

A runtime makes pod sandboxes (the pod's network identity) and runs
containers in them. A started container is a `Container` handle whose `done`
future resolves with its `Exit`. The kubelet owns every policy (restarts,
back-off, probes, status); a runtime only starts, stops and reports."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    @property
    def dirname(self) -> str:
        return f"{self.namespace}_{self.name}_{self.uid}"

    @classmethod
    def of(cls, pod: dict) -> PodRef:
        md = pod["metadata"]
        return cls(md.get("namespace", "default"), md["name"], md.get("uid", ""))


@dataclass(frozen=True)
class Sandbox:
    pod: PodRef
    ip: str
    netns: str = ""              # network namespace name ("" = host network)


@dataclass(frozen=True)
class Mount:
    """A host directory the container sees at `path`."""
    host_path: str
    path: str
    read_only: bool = True


@dataclass(frozen=True)
class Exit:
    code: int
    finished_at: float
    signal: int = 0
    reason: str = ""             # Completed | Error | OOMKilled | StartError
    message: str = ""


@dataclass
class Container:
    """One run of one container (a restart is a new Container)."""
    id: str                      # "<runtime>://<hex>"
    name: str
    image: str
    image_id: str
    attempt: int
    started_at: float
    log_path: str
    pid: int = 0
    done: asyncio.Future = field(default=None)      # resolves to Exit
    env: dict = field(default_factory=dict)
    cwd: str = ""
    netns: str = ""
    mount_ns: bool = False       # started in its own mount namespace (exec joins it)


class StartError(Exception):
    """The container could not be started (RunContainerError / StartError)."""

    def __init__(self, message: str, code: int = 128):
        super().__init__(message)
        self.message, self.code = message, code


class Runtime(Protocol):
    name: str

    async def setup_sandbox(self, pod: dict) -> Sandbox: ...

    async def teardown_sandbox(self, ref: PodRef) -> None: ...

    async def start_container(self, pod: dict, container: dict, sandbox: Sandbox,
                              attempt: int, env: dict[str, str],
                              mounts: tuple[Mount, ...] = ()) -> Container: ...

    async def stop_container(self, c: Container, grace: float) -> Exit: ...

    async def exec(self, c: Container, cmd: list[str], timeout: float
                   ) -> tuple[int | None, str]: ...

    def log_dir(self, ref: PodRef, container: str) -> str: ...

    async def close(self) -> None: ...


def container_log_path(root: str, ref: PodRef, container: str, attempt: int) -> str:
    """<root>/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log, as kube lays out
    /var/log/pods."""
    return os.path.join(root, "pods", ref.dirname, container, f"{attempt}.log")


def exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"
