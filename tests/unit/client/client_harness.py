"""A real `kcore apiserver` (embedded store) on a free 127.0.0.1 port, for the client
tests; its temp dir is removed and its process stopped by PID afterwards."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class APIServerProcess:
    def __init__(self, *extra: str):
        self.root = tempfile.mkdtemp(prefix="kcore-client-test-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.root, "apiserver.log")

    def start(self) -> APIServerProcess:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kcore.cli.main", "apiserver",
                 f"--insecure-port={self.port}", "--secure-port=-1",
                 f"--data-dir={os.path.join(self.root, 'd')}",
                 *self.extra], stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"apiserver not ready:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(3)     # open watches can hold a graceful stop: do not wait long
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
