"""The process runtime: each container is a local process group.

argv is `command + args` (kube's override of an image's ENTRYPOINT/CMD; with
neither, the container runs `sleep infinity`, standing in for the image's own
entrypoint). stdout and stderr go straight to the container's log file (so a
container outlives a kubelet crash without a broken pipe). The working
directory is `workingDir` when it exists, else a per-container directory.
A pid file beside the log lets a restarted kubelet reap what a crashed one
left running. With a network namespace the process runs under
`ip netns exec`."""
from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import secrets
import signal
import time

from kcore.kubelet.images import image_id
from kcore.kubelet.runtime import mounts as M
from kcore.kubelet.runtime.base import (
    Container,
    Exit,
    Mount,
    PodRef,
    Sandbox,
    StartError,
    container_log_path,
    exit_reason,
)

log = logging.getLogger("kcore.kubelet.runtime")


def _starttime(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def reap_leftovers(root_dir: str) -> int:
    """Kill the process groups recorded in pid files under root_dir (a previous
    kubelet's containers); returns how many were still alive."""
    n = 0
    for path in glob.glob(os.path.join(root_dir, "pods", "*", "*", "pid")):
        try:
            with open(path) as fh:
                pid, pgid, start = fh.read().split()
            if _starttime(int(pid)) == start:
                os.killpg(int(pgid), signal.SIGKILL)
                n += 1
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            os.unlink(path)
    return n


class ProcessRuntime:
    name = "process"

    def __init__(self, root_dir: str, network=None, mount_namespaces: bool | None = None):
        """network: None (host network: the pod IP is the node IP) or a
        `NetnsNetwork`. mount_namespaces: volumes bound at their mount paths in a mount
        namespace per container (default: when root), else under $KCORE_POD_ROOT."""
        self.root = root_dir
        self.network = network
        self.mount_ns = M.can_use_mount_namespaces() if mount_namespaces is None \
            else mount_namespaces
        self.node_ip = "127.0.0.1"
        self.containers: dict[str, Container] = {}

    # -- sandboxes ------------------------------------------------------------------------
    async def setup_sandbox(self, pod: dict) -> Sandbox:
        ref = PodRef.of(pod)
        if self.network is None or (pod.get("spec") or {}).get("hostNetwork"):
            return Sandbox(ref, self.node_ip)
        ip, ns = await self.network.setup(ref)
        return Sandbox(ref, ip, ns)

    async def teardown_sandbox(self, ref: PodRef) -> None:
        if self.network is not None:
            await self.network.teardown(ref)

    # -- containers -----------------------------------------------------------------------
    def log_dir(self, ref: PodRef, container: str) -> str:
        return os.path.dirname(container_log_path(self.root, ref, container, 0))

    async def start_container(self, pod: dict, container: dict, sandbox: Sandbox,
                              attempt: int, env: dict[str, str],
                              mounts: tuple[Mount, ...] = ()) -> Container:
        ref = sandbox.pod
        name = container["name"]
        cdir = self.log_dir(ref, name)
        os.makedirs(cdir, exist_ok=True)
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not argv:
            argv = ["sleep", "infinity"]
        argv = [_expand(a, env) for a in argv]
        cwd = container.get("workingDir") or ""
        if cwd and not os.path.isdir(cwd):
            raise StartError(f"failed to create containerd task: failed to create shim task: "
                             f"OCI runtime create failed: runc create failed: unable to start "
                             f"container process: chdir to cwd (\"{cwd}\") set in config.json "
                             f"failed: no such file or directory")
        if not cwd:
            cwd = os.path.join(cdir, "rootfs")
            os.makedirs(cwd, exist_ok=True)
        mount_ns = bool(mounts) and self.mount_ns
        if mount_ns:
            for m in mounts:
                try:
                    os.makedirs(m.path, exist_ok=True)      # the mount point
                except OSError as e:
                    raise StartError(f"failed to create the mount point {m.path}: "
                                     f"{e.strerror}") from None
            argv = M.wrap_argv(argv, mounts)
        elif mounts:
            pod_root = os.path.join(self.root, "pods", ref.dirname, "root")
            M.link_pod_root(pod_root, mounts)
            env = {**env, M.POD_ROOT_ENV: pod_root}
        if sandbox.netns:
            argv = ["ip", "netns", "exec", sandbox.netns, *argv]
        path = container_log_path(self.root, ref, name, attempt)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd, cwd=cwd,
                env=env, start_new_session=True)
        except FileNotFoundError:
            raise StartError(f'failed to create containerd task: failed to create shim task: '
                             f'OCI runtime create failed: runc create failed: unable to start '
                             f'container process: exec: "{argv[0]}": executable file not '
                             f'found in $PATH') from None
        except OSError as e:
            raise StartError(f"failed to start container {name!r}: {e}") from None
        finally:
            os.close(fd)
        with contextlib.suppress(OSError), open(os.path.join(cdir, "pid"), "w") as fh:
            fh.write(f"{proc.pid} {proc.pid} {_starttime(proc.pid)}\n")
        loop = asyncio.get_running_loop()
        c = Container(f"kcore://{secrets.token_hex(32)}", name, container.get("image", ""),
                      image_id(container.get("image", "")), attempt, time.time(), path,
                      proc.pid, loop.create_future(), env, cwd, sandbox.netns, mount_ns)
        self.containers[c.id] = c
        loop.create_task(self._watch(c, proc, cdir))
        return c

    async def _watch(self, c: Container, proc, cdir: str) -> None:
        code = await proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(c.pid, signal.SIGKILL)      # what the cgroup would take with it
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(cdir, "pid"))
        sig = -code if code < 0 else 0
        code = 128 + sig if sig else code
        self.containers.pop(c.id, None)
        if not c.done.done():
            c.done.set_result(Exit(code, time.time(), sig, exit_reason(code)))

    async def stop_container(self, c: Container, grace: float) -> Exit:
        """SIGTERM to the group, SIGKILL after `grace` seconds."""
        if not c.done.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(c.done), max(grace, 0) + 0.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.pid, signal.SIGKILL)
        return await c.done

    async def exec(self, c: Container, cmd: list[str], timeout: float
                   ) -> tuple[int | None, str]:
        argv = M.exec_argv(c.pid, cmd) if c.mount_ns else list(cmd)
        if c.netns:
            argv = ["ip", "netns", "exec", c.netns, *argv]
        try:
            p = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=c.env, cwd=c.cwd or None,
                start_new_session=True)
        except OSError as e:
            return 126, str(e)
        try:
            out, _ = await asyncio.wait_for(p.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            await p.wait()
            return None, ""
        return p.returncode, out.decode(errors="replace").strip()[:1024]

    async def close(self) -> None:
        """Stop what is still running (a clean kubelet stop leaves no processes)."""
        await asyncio.gather(*(self.stop_container(c, 2.0)
                               for c in list(self.containers.values())),
                             return_exceptions=True)
        if self.network is not None:
            await self.network.close()


def _expand(arg: str, env: dict[str, str]) -> str:
    """kube's $(VAR) expansion in command and args; $$ escapes."""
    if "$" not in arg:
        return arg
    out, i = [], 0
    while i < len(arg):
        ch = arg[i]
        if ch == "$" and i + 1 < len(arg):
            nxt = arg[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = arg.find(")", i + 2)
                if end > 0:
                    name = arg[i + 2:end]
                    if name in env:
                        out.append(env[name])
                        i = end + 1
                        continue
        out.append(ch)
        i += 1
    return "".join(out)
