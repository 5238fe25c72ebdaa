"""Kubernetes resource quantities ("100m", "128Mi", "1e3", "2"): exact values.

Values are Fractions; `format_quantity` renders a canonical string in the
suffix family of the input the way kube's Quantity.String does for the common
cases (binary suffixes stay binary, fractions of a unit become milli).
"""
from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
        "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|"
                 r"[eE][+-]?[0-9]+)?$")


class QuantityError(ValueError):
    pass


def parse_quantity(v) -> Fraction:
    if isinstance(v, bool):
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    if isinstance(v, int):
        return Fraction(v)
    if isinstance(v, float):
        return Fraction(str(v))
    if not isinstance(v, str):
        raise QuantityError("quantity must be a string or number")
    return _parse_str(v)


@lru_cache(maxsize=4096)
def _parse_str(v: str) -> Fraction:
    """The same few strings ("100m", "128Mi") are parsed for every pod; Fractions
    are immutable, so a parsed value can be shared."""
    m = _RE.match(v.strip())
    if not m:
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    num = Fraction(m.group(1))
    suf = m.group(2) or ""
    if suf in _BIN:
        return num * _BIN[suf]
    if suf in _DEC:
        return num * _DEC[suf]
    return num * Fraction(10) ** int(suf[1:])


def is_binary(v) -> bool:
    return isinstance(v, str) and any(v.endswith(s) for s in _BIN)


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """Canonical text: binary suffixes for binary-format inputs when exact,
    else the largest decimal suffix that keeps an integer (milli for fractions)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if binary and v.denominator == 1:
        n = int(v)
        for suf in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if n % _BIN[suf] == 0:
                return f"{sign}{n // _BIN[suf]}{suf}"
        return f"{sign}{n}"
    for suf in ("E", "P", "T", "G", "M", "k", "", "m", "u", "n"):
        q = v / _DEC[suf]
        if q.denominator == 1 and (suf in ("", "m", "u", "n") or q >= 1):
            if suf in ("E", "P", "T", "G", "M", "k") and int(q) % 1000 == 0:
                continue
            return f"{sign}{int(q)}{suf}"
    # finer than nano: round up to nano as kube does
    q = -(-v.numerator * 10**9 // v.denominator)
    return f"{sign}{q}n"


def add_quantities(a: str | None, b, binary_hint: bool = False) -> str:
    total = (parse_quantity(a) if a not in (None, "") else Fraction(0)) + (
        b if isinstance(b, Fraction) else parse_quantity(b))
    return format_quantity(total, binary_hint or is_binary(a) or is_binary(b))
