"""Strict JSON for everything the CLI sends to the API server or prints as JSON.

Role: Python's json module writes NaN, Infinity and -Infinity by default, which are not JSON;
the API server answers such a body with a parse error that names neither the field nor the
fix. `check` serializes with allow_nan=False first and raises a CliError naming the field, so
no invalid body ever leaves the CLI. `parse_value` reads a `-p` value strictly (a bare
NaN/Infinity is taken as a string, as any other non-JSON text is). Callers:
flowpod_operator.cli._client (every body sent), ._actions (-o json, --dry-run) and ._flows.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flowpod_operator.cli._errors import CliError

__all__ = ["check", "dumps", "parse_value", "parse_pairs"]

_NON_JSON_CONSTANTS = ("NaN", "Infinity", "-Infinity")


def _non_finite_path(value: Any, path: str) -> str | None:
    """The dotted path of the first NaN/Infinity float inside ``value``, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for where, inner in items:
        found = _non_finite_path(inner, where)
        if found is not None:
            return found
    return None


def check(body: Any, what: str) -> None:
    """Raise a CliError naming the field when ``body`` (about to be sent as ``what``) holds a
    float that JSON cannot carry."""
    where = _non_finite_path(body, "")
    if where is not None:
        raise CliError(f"{what} holds a value JSON cannot carry (NaN or Infinity) at {where}",
                       "use a finite number, null, or a string such as \"NaN\"")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """json.dumps that refuses NaN/Infinity (after `check` has named the field)."""
    check(obj, "the output")
    return json.dumps(obj, indent=indent, allow_nan=False)


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(key: str, raw: str) -> Any:
    """A `-p KEY=VALUE` value: JSON when it parses strictly, else the text itself. NaN and
    Infinity are not JSON: bare, they are strings like any other text; inside a JSON value
    (`[1, NaN]`) they are refused, because a silent string would hide the mistake."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        if raw.strip() in _NON_JSON_CONSTANTS or str(exc) not in _NON_JSON_CONSTANTS:
            return raw
        raise CliError(f"parameter '{key}': {exc} is not JSON (got {raw!r})",
                       f"JSON has no NaN or Infinity: use null, a finite number or the "
                       f"string \"{exc}\" (quoted) inside the value") from None


def parse_pairs(pairs: list[str] | None, what: str, example: str) -> dict[str, Any]:
    """KEY=VALUE options (`-p`, `-i`) as a dict, each value read by `parse_value`; a pair
    without `=` is refused naming `what` and showing `example`."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} '{pair}' is not KEY=VALUE", example)
        out[key] = parse_value(key, raw)
    return out
