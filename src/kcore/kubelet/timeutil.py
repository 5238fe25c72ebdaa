"""Kubernetes time formats (metav1.Time, MicroTime) without importing the API package."""
from __future__ import annotations

import datetime as _dt
import time


def rfc3339(ts: float | None = None) -> str:
    """metav1.Time: seconds precision, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def rfc3339_micro(ts: float | None = None) -> str:
    """metav1.MicroTime (leases)."""
    d = _dt.datetime.fromtimestamp(time.time() if ts is None else ts, _dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_nano(ts: float) -> str:
    """What `kubectl logs --timestamps` prints (nanosecond digits)."""
    d = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_time(s: str) -> float:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    return _dt.datetime.fromisoformat(s).timestamp()
