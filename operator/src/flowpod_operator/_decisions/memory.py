"""More memory for the attempt after an OOMKilled one (a Deployment's spec.retryPolicy).

Role: pure functions of the previous attempt's Job and the run's settings. `plan` says which
resources the flow container of the next attempt gets: with spec.retryPolicy, an attempt
after an OOMKilled one gets its memory limit and request multiplied by memoryMultiplier, up
to maxMemory, and any later attempt keeps what the previous one had (a resumed Suspended run
must not fall back to the memory that was OOMKilled); without it, the podTemplate's. It also
says when an OOMKilled attempt is not worth retrying: its limit already at the cap, where the
same memory would fail the same way. `record` and `history` build status.memory, the memory
of each attempt. Quantities are parsed and formatted with Kubernetes' own Python code
(flowpod_operator.crds.quantities), and raised exactly (whole bytes, in the largest unit that is
exact). Caller: flowpod_operator._decisions.deciding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Mapping

from flowpod import contract

from flowpod_operator.crds.quantities import format_quantity, parse_quantity

from flowpod_operator._decisions import observations as obs

__all__ = ["Plan", "OOM_KILLED", "plan", "container_resources", "record", "history"]

OOM_KILLED = "OOMKilled"
# The units a raised quantity is written in: the largest that keeps it exact, binary first
# (memory is usually given in Mi/Gi), then decimal, else plain bytes.
_UNITS = [(suffix, Decimal(base) ** power)
          for base, suffixes in ((1024, ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")),
                                 (1000, ("k", "M", "G", "T", "P", "E")))
          for power, suffix in sorted(enumerate(suffixes, 1), reverse=True)]


@dataclass(frozen=True)
class Plan:
    """The flow container's resources for the next attempt (None: the podTemplate's), the
    raised limit (`note`, "memory limit 200Mi (was 100Mi, ...)" for the messages; empty when
    nothing was raised), and whether an OOMKilled attempt was already at the cap (`at_cap`:
    it is not retried, and `note` says why)."""

    resources: Mapping[str, Any] | None = None
    note: str = ""
    at_cap: bool = False


def container_resources(job: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The resources of the flow container of `job` (None: no Job, or none set)."""
    pod = (((job or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        if container.get("name") == contract.CONTAINER_NAME:
            return container.get("resources") or None
    return None


def _memory(resources: Mapping[str, Any] | None, kind: str) -> Any:
    return ((resources or {}).get(kind) or {}).get("memory")


def _format(amount: Decimal) -> str:
    whole = amount.to_integral_value(rounding=ROUND_CEILING)  # no fraction of a byte
    for suffix, size in _UNITS:
        if whole >= size and whole % size == 0:
            return format_quantity(whole, suffix, quantize=Decimal(1))
    return format_quantity(whole, "", quantize=Decimal(1))


def _number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def plan(previous_job: Mapping[str, Any] | None, settings: obs.RunSettings, *,
         oom_killed: bool) -> Plan:
    """The resources of the attempt after the one whose Job is `previous_job` (None: there
    is none) ended, OOMKilled or not."""
    multiplier, cap_text = settings.memory_multiplier, settings.max_memory
    if multiplier is None or cap_text is None or previous_job is None:
        return Plan()
    base = container_resources(previous_job)
    limit_text = _memory(base, "limits")
    if not oom_killed or limit_text is None:
        return Plan(base)  # nothing to raise: the next attempt keeps what this one had
    try:
        limit, cap = parse_quantity(limit_text), parse_quantity(cap_text)
    except ValueError:  # the API server checked both; only a hand-edited Job gets here
        return Plan(base)
    if limit >= cap:
        where = "at" if limit == cap else "over"
        return Plan(base, f"not retried: its memory limit {limit_text} is already {where} the "
                          f"cap, spec.retryPolicy.maxMemory {cap_text}; raise the cap or use "
                          f"less memory", at_cap=True)
    raised = min(limit * Decimal(repr(multiplier)), cap)
    resources = copy.deepcopy(dict(base or {}))
    resources["limits"]["memory"] = new_limit = _format(raised)
    request_text = _memory(base, "requests")
    if request_text is not None:
        request = min(parse_quantity(request_text) * Decimal(repr(multiplier)), raised)
        resources["requests"]["memory"] = _format(request)
    return Plan(resources, f"memory limit {new_limit} (was {limit_text}, {OOM_KILLED}; "
                           f"spec.retryPolicy.memoryMultiplier {_number(multiplier)}, "
                           f"cap {cap_text})")


def record(job: Mapping[str, Any], attempt: int) -> dict[str, Any] | None:
    """status.memory's entry for `attempt` made with `job` (None: it sets no memory)."""
    resources = container_resources(job)
    entry = {"attempt": attempt, "limit": _memory(resources, "limits"),
             "request": _memory(resources, "requests")}
    if entry["limit"] is None and entry["request"] is None:
        return None
    return {k: str(v) if k != "attempt" else v for k, v in entry.items() if v is not None}


def history(status: Mapping[str, Any], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """status.memory with `entry` in place of any earlier one for the same attempt."""
    kept = [dict(e) for e in status.get("memory") or () if e.get("attempt") != entry["attempt"]]
    return sorted([*kept, dict(entry)], key=lambda e: e.get("attempt") or 0)
