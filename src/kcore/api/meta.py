"""Object metadata helpers: timestamps, UIDs, generateName, human durations."""
from __future__ import annotations

import datetime as _dt
import random
import time
import uuid

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


_last_second: tuple[int, str] = (-1 << 62, "")   # the last whole second formatted


def rfc3339(ts: float | None = None) -> str:
    """Seconds-precision UTC time as Kubernetes writes metav1.Time."""
    global _last_second
    sec = int(time.time()) if ts is None else int(ts // 1)
    cached = _last_second
    if cached[0] == sec:
        return cached[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
    _last_second = (sec, text)
    return text


def rfc3339_micro(ts: float | None = None) -> str:
    t = time.time() if ts is None else ts
    d = _dt.datetime.fromtimestamp(t, _dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> float:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    return _dt.datetime.fromisoformat(s).timestamp()


def parse_time_or_none(s) -> float | None:
    """parse_time for optional fields: None for empty or malformed values."""
    if not s:
        return None
    try:
        return parse_time(s)
    except (ValueError, AttributeError):
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(base: str, rng: random.Random | None = None) -> str:
    """kube's SimpleNameGenerator: base (cut to 58 chars) + 5 random characters."""
    r = rng or random
    return base[:58] + "".join(r.choice(_NAME_CHARS) for _ in range(5))


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < 0:
        return "<invalid>" if s < -1 else "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        y = h // (24 * 365)
        d = (h // 24) % 365
        return f"{y}y{d}d" if d else f"{y}y"
    return f"{h // (24 * 365)}y"


def age(obj: dict, now: float | None = None) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        return human_duration((time.time() if now is None else now) - parse_time(ts))
    except ValueError:
        return "<unknown>"
