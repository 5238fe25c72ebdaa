"""Start and stop a store cluster under test: real etcd or `kcore etcd`.

Both get the same etcd flags and a fresh data directory per member, with no
durability-weakening flags (etcd fsyncs its WAL by default; `kcore etcd` is
expected to do the same). Every process is started in its own session so it
and anything it forks can be stopped by its process-group id; nothing else
is ever signalled. Temp directories are removed on exit, also on failure.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Self

PORT_RANGE = (24000, 24999)
HOST = "127.0.0.1"


@dataclass(frozen=True)
class MemberSpec:
    name: str
    client_port: int
    peer_port: int
    data_dir: str

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.client_port}"


def plan_members(size: int, ports: list[int], root: str, prefix: str = "m") -> list[MemberSpec]:
    """``size`` members on loopback; ``ports`` holds 2 * size ports (client, peer, ...)."""
    if len(ports) < 2 * size:
        raise ValueError(f"need {2 * size} ports, got {len(ports)}")
    return [MemberSpec(f"{prefix}{i}", ports[2 * i], ports[2 * i + 1],
                       os.path.join(root, f"{prefix}{i}.data")) for i in range(size)]


def member_argv(command: list[str], member: MemberSpec, members: list[MemberSpec],
                extra: list[str] = ()) -> list[str]:
    """The etcd command line for one member of a static loopback cluster."""
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    return [*command,
            "--name", member.name,
            "--data-dir", member.data_dir,
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", cluster,
            *extra]


def free_ports(n: int, lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1],
               rng_seed: int | None = None) -> list[int]:
    """``n`` ports in [lo, hi] that can be bound on loopback right now."""
    import random

    candidates = list(range(lo, hi + 1))
    random.Random(rng_seed if rng_seed is not None else os.getpid() ^ time.time_ns()).shuffle(
        candidates)
    out = []
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        out.append(port)
        if len(out) == n:
            return out
    raise RuntimeError(f"fewer than {n} free ports in {lo}-{hi}")


# ---- cluster ---------------------------------------------------------------------

class ClusterFailed(RuntimeError):
    """The cluster did not come up: a one-line reason, and the member's log tail."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.log_tail = reason, log_tail


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@dataclass
class Cluster:
    """A running static cluster of one kind (etcd or kcore), owned by this process."""

    kind: str
    command: list[str]
    size: int = 1
    extra_args: list[str] = field(default_factory=list)
    root: str | None = None                  # parent of the temp dir
    members: list[MemberSpec] = field(default_factory=list)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    tmp: str | None = None

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def start(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix=f"bench-kv-{self.kind}-", dir=self.root)
        self.members = plan_members(self.size, free_ports(2 * self.size), self.tmp, self.kind)
        for m in self.members:
            argv = member_argv(self.command, m, self.members, self.extra_args)
            with open(os.path.join(self.tmp, f"{m.name}.log"), "wb") as log:
                self.procs[m.name] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, cwd=self.tmp)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), "rb") as f:
                text = f.read()[-8192:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def wait_healthy(self, timeout_s: float = 30.0) -> dict:
        """Wait until every member serves a linearizable Range; return their status."""
        from health import probe_member

        deadline = time.monotonic() + timeout_s
        pending = {m.name: m for m in self.members}
        status: dict[str, dict] = {}
        last_err: dict[str, str] = {}
        while pending:
            dead = self.exited()
            if dead:
                name, rc = next(iter(dead.items()))
                tail = self.log_tail(name)
                raise ClusterFailed(f"{self.kind} member {name} exited with code {rc}: "
                                    f"{last_line(tail)}", tail)
            for name, m in list(pending.items()):
                ok, info = probe_member(m.endpoint, timeout_s=2.0)
                if ok:
                    status[name] = info
                    del pending[name]
                else:
                    last_err[name] = info.get("error", "")
            if pending and time.monotonic() > deadline:
                name = next(iter(pending))
                raise ClusterFailed(
                    f"{self.kind} member {name} not healthy after {timeout_s:.0f}s "
                    f"({last_err.get(name, '')})", self.log_tail(name))
            if pending:
                time.sleep(0.2)
        return status

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM each member's process group, SIGKILL after ``grace_s``; remove the temp dir."""
        try:
            for p in self.procs.values():
                if p.poll() is None:
                    _signal_group(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for p in self.procs.values():
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(p.pid, signal.SIGKILL)
                    p.wait(5)
            for p in self.procs.values():      # stragglers its children left in the group
                _signal_group(p.pid, signal.SIGKILL)
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    """Signal the process group we created for one member (its leader's pid)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
