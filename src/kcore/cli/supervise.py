"""Components of a one-machine cluster as background processes: start, watch,
report, stop.

Each component runs in its own session (so it and its children are one
process group), logs to `<data-dir>/logs/<name>.log`, and is recorded in
`<data-dir>/run/state.json` with its PID and how to check its health. `kcore
status` and `kcore down` work from that file alone; a component whose PID is
gone (or belongs to another program) counts as stopped.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass, field


@dataclass
class Component:
    name: str
    argv: list[str]
    address: str = ""
    health: str = ""                 # URL that answers 200 when healthy ("" = alive is enough)
    pid: int = 0
    started: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    def __init__(self, data_dir: str):
        self.data_dir = os.path.abspath(data_dir)
        self.run_dir = os.path.join(self.data_dir, "run")
        self.log_dir = os.path.join(self.data_dir, "logs")
        self.state_path = os.path.join(self.run_dir, "state.json")
        self.components: dict[str, Component] = {}
        self.load()

    # ---------------------------------------------------------------- state -----
    def load(self) -> None:
        try:
            with open(self.state_path) as fh:
                raw = json.load(fh)
        except (FileNotFoundError, json.JSONDecodeError):
            return
        self.components = {c["name"]: Component(**c) for c in raw.get("components", [])}

    def save(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"components": [asdict(c) for c in self.components.values()]}, fh,
                      indent=1)
        os.replace(tmp, self.state_path)

    # ---------------------------------------------------------------- processes -
    def alive(self, c: Component) -> bool:
        if c.pid <= 0:
            return False
        try:
            with open(f"/proc/{c.pid}/cmdline", "rb") as fh:
                cmd = fh.read().split(b"\0")
        except OSError:
            return False
        if not any(cmd):
            # an exec in progress shows an empty command line for a moment
            return time.time() - c.started < 10 and _running(c.pid)
        # the PID is ours only if it still runs our command (PIDs are reused)
        return _same_command(cmd, c.argv)

    def healthy(self, c: Component, timeout: float = 1.0) -> bool:
        if not self.alive(c):
            return False
        if not c.health:
            return True
        try:
            with urllib.request.urlopen(c.health, timeout=timeout) as r:  # noqa: S310
                return r.status == 200
        except OSError:
            return False

    def start(self, c: Component) -> Component:
        """Start c unless a live process already runs it."""
        old = self.components.get(c.name)
        if old is not None and self.alive(old):
            return old
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(os.path.join(self.log_dir, f"{c.name}.log"), "ab")
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                  f"{' '.join(c.argv)}\n".encode())
        log.flush()
        p = subprocess.Popen(c.argv, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, **c.env})
        log.close()
        c.pid, c.started = p.pid, time.time()
        self.components[c.name] = c
        self.save()
        return c

    def wait_healthy(self, names: list[str], timeout: float = 60.0) -> list[str]:
        """Wait until the named components are healthy; returns those that are not."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if not self.healthy(self.components[n])]
            if pending:
                if any(not self.alive(self.components[n]) for n in pending):
                    break
                time.sleep(0.2)
        return [n for n in pending if not self.healthy(self.components[n])]

    def stop(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM every component (newest first), SIGKILL what is left after timeout."""
        order = sorted(self.components.values(), key=lambda c: -c.started)
        for c in order:
            if self.alive(c):
                try:
                    os.killpg(c.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        killed = []
        for c in order:
            while self.alive(c) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive(c):
                try:
                    os.killpg(c.pid, signal.SIGKILL)
                    killed.append(c.name)
                except ProcessLookupError:
                    pass
        for c in order:
            c.pid = 0
        self.save()
        return killed

    def log_tail(self, name: str, n: int = 20) -> str:
        try:
            with open(os.path.join(self.log_dir, f"{name}.log"), "rb") as fh:
                return b"\n".join(fh.read()[-20000:].splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def rows(self) -> list[tuple[str, str, str, str]]:
        out = []
        for c in self.components.values():
            alive = self.alive(c)
            ok = self.healthy(c) if alive else False
            out.append((c.name, str(c.pid) if alive else "-", c.address,
                        "yes" if ok else ("starting" if alive else "stopped")))
        return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _same_command(cmdline: list[bytes], argv: list[str]) -> bool:
    """Does /proc/<pid>/cmdline run argv (ignoring how the interpreter was named)?"""
    want = [a.encode() for a in argv][1:]     # argv[0] (the interpreter) may be spelled otherwise
    got = [a for a in cmdline if a]
    return len(got) > len(want) and got[-len(want):] == want


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="kcore")
    for col in ("component", "PID", "address", "healthy"):
        t.add_column(col)
    for r in rows:
        style = "green" if r[3] == "yes" else ("yellow" if r[3] == "starting" else "red")
        t.add_row(*r[:3], f"[{style}]{r[3]}[/]")
    Console().print(t)
