"""Go's duration syntax ('40s', '1m30s', '100ms'), as operators type it in flags."""
from __future__ import annotations

import re


class DurationError(ValueError):
    """A value that cannot be parsed; the message is what the user sees."""


_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3,
    "s": 1.0, "m": 60.0, "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, returning seconds: '40s', '1m30s', '100ms', '-1.5h', '0'."""
    s = text.strip()
    if not s:
        raise DurationError(f'invalid duration "{text}"')
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            if re.fullmatch(r"\d+(\.\d*)?", s[pos:]):
                raise DurationError(f'missing unit in duration "{text}"')
            raise DurationError(f'invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total
