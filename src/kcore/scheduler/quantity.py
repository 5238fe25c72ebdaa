"""Kubernetes resource quantities as the scheduler reads them: exact integers.

A quantity is ``<signed number><suffix>`` where the suffix is binary SI
(``Ki Mi Gi Ti Pi Ei``), decimal SI (``n u m "" k M G T P E``) or a decimal
exponent (``e3``, ``E-2``). Values are exact (``Fraction``) until converted;
the conversion rounds *up* like kube's ``Quantity.Value()`` and
``Quantity.MilliValue()``: cpu is counted in millicores, everything else in
whole units. Sums are taken on exact values and rounded once, as kube adds
``Quantity`` objects before converting.
"""
from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["NANO", "QuantityError", "nano_value", "parse_nano", "parse_quantity",
           "resource_value", "to_int", "to_milli"]

NANO = 10**9

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_SYNTAX = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                     r"(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE]?)")
_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity; the message is kube's."""


_cache: dict[object, Fraction] = {}


def parse_quantity(value: str | float) -> Fraction:
    """The exact value of a quantity given as text (or as a JSON number)."""
    try:
        return _cache[value]
    except (KeyError, TypeError):
        pass
    if isinstance(value, bool):
        raise QuantityError(_MESSAGE)
    if isinstance(value, int):
        result = Fraction(value)
    else:
        text = repr(value) if isinstance(value, float) else value
        if not isinstance(text, str):
            raise QuantityError(_MESSAGE)
        m = _SYNTAX.fullmatch(text)
        if m is None:
            raise QuantityError(_MESSAGE)
        number, suffix = Fraction(m.group(1)), m.group(2)
        if suffix in _BINARY:
            result = number * _BINARY[suffix]
        elif suffix in _DECIMAL:
            result = number * _DECIMAL[suffix]
        else:
            result = number * Fraction(10) ** int(suffix[1:])
    if len(_cache) < 65536:
        _cache[value] = result
    return result


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def to_int(q: Fraction) -> int:
    """kube's ``Quantity.Value()``: whole units, rounded up."""
    return _ceil(q)


def to_milli(q: Fraction) -> int:
    """kube's ``Quantity.MilliValue()``: thousandths, rounded up."""
    return _ceil(q * 1000)


def resource_value(resource: str, q: Fraction) -> int:
    """The integer the scheduler counts for ``resource``: millicores for cpu, units otherwise."""
    return to_milli(q) if resource == "cpu" else to_int(q)


_nano_cache: dict[object, int | Fraction] = {}
_FAST_SCALE = {"": NANO, "n": 1, "u": 10**3, "m": 10**6, "k": 10**12, "M": 10**15, "G": 10**18,
               "T": 10**21, "P": 10**24, "Ki": 2**10 * NANO, "Mi": 2**20 * NANO,
               "Gi": 2**30 * NANO, "Ti": 2**40 * NANO, "Pi": 2**50 * NANO, "Ei": 2**60 * NANO}


def parse_nano(value: str | float) -> int | Fraction:
    """A quantity in billionths of a unit: an ``int`` when exact (every
    suffix down to ``n``), else a ``Fraction``. Integer arithmetic on these is
    what makes parsing pods cheap; the result is still exact."""
    try:
        return _nano_cache[value]
    except (KeyError, TypeError):
        pass
    result: int | Fraction | None = None
    if type(value) is str:
        if value[-1:] == "i":
            num, suffix = value[:-2], value[-2:]
        elif value[-1:].isalpha():
            num, suffix = value[:-1], value[-1:]
        else:
            num, suffix = value, ""
        scale = _FAST_SCALE.get(suffix)
        if scale is not None and num.isascii() and num.isdigit():
            result = int(num) * scale
    if result is None:
        q = parse_quantity(value) * NANO
        result = q.numerator if q.denominator == 1 else q
    if len(_nano_cache) < 65536:
        _nano_cache[value] = result
    return result


def nano_value(resource: str, nanos: int | Fraction) -> int:
    """``resource_value`` for an amount in billionths: millicores for cpu, units otherwise."""
    d = 10**6 if resource == "cpu" else NANO
    return -((-nanos) // d)
