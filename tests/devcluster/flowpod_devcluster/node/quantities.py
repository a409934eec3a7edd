"""Kubernetes resource quantities ("64Mi", "500m", "1e6") as exact Decimals.

Used by containerrunning (memory limits) and environment (resourceFieldRef values).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["parse", "to_bytes", "scaled"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_PATTERN = re.compile(r"^([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE]?)$")


def parse(value: str | int | float, *, field: str = "quantity") -> Decimal:
    """The numeric value of a quantity; a malformed one names ``field`` in the error."""
    text = str(value).strip()
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"{field}: {text!r} is not a Kubernetes quantity (e.g. 64Mi, 500m, 1G)")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"{field}: {text!r} is not a Kubernetes quantity") from exc
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return base * (Decimal(10) ** int(suffix[1:]))
    return base * _DECIMAL[suffix]


def to_bytes(value: str | int | float, *, field: str = "quantity") -> int:
    """Whole bytes, rounded up as the kubelet does for memory limits."""
    return int(math.ceil(parse(value, field=field)))


def scaled(value: Decimal, divisor: str | None) -> str:
    """``value / divisor`` rounded up to an integer, as resourceFieldRef reports it."""
    div = parse(divisor or "1", field="resourceFieldRef.divisor")
    if div <= 0:
        raise ValueError("resourceFieldRef.divisor must be positive")
    return str(int(math.ceil(value / div)))
