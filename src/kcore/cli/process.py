"""What every kcore server process does the same way: logging, GC tuning,
systemd readiness notification."""
from __future__ import annotations

import gc
import logging
import os
import socket
import sys

log = logging.getLogger("kcore")


def setup_logging(level: str = "info") -> None:
    lvl = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}.get(level.lower(), logging.INFO)
    logging.basicConfig(level=lvl, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def tune_gc() -> None:
    """Servers keep large, long-lived indexes and churn short-lived messages:
    freeze what start-up built and collect the young generation far less often
    (measured: p99 put latency at 256 clients halves)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 100, 1_000)


def sd_notify(state: str) -> None:
    """systemd Type=notify readiness, without a dependency."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("sd_notify: %s", e)
