"""The flowpod state machine: state types, the one transition table, and State.

Role: the single source of truth for run states. The engine (flowpod._*_engine),
the reporters (flowpod.reporting, flowpod._kube_reporting), the operator
(flowpod_operator, including the CRD CEL rule generator) and the CLI all import
this module; nothing else may define state types or transitions.

Kept dependency-free (stdlib only) and cheap to construct, because the engine
creates several states per task run and per-task overhead is measured in µs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Callable, Mapping

__all__ = [
    "StateType",
    "TERMINAL_TYPES",
    "ALLOWED_TRANSITIONS",
    "SUBSTATE_TYPES",
    "is_transition_allowed",
    "State",
    "Scheduled",
    "Late",
    "AwaitingRetry",
    "AwaitingConcurrencySlot",
    "Pending",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelling",
    "Cancelled",
    "Paused",
    "Suspended",
    "NotReady",
]


class StateType(str, enum.Enum):
    """The coarse type of a state; the value is the upper-case name (wire form)."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"


_S = StateType
TERMINAL_TYPES: frozenset[StateType] = frozenset(
    {_S.COMPLETED, _S.FAILED, _S.CRASHED, _S.CANCELLED})

# THE transition table. Everything else (engine checks, the CRD's CEL rule) is derived
# from it, so edit only here. Rules it encodes:
#  - terminal types have no way out (an infrastructure retry is written as
#    AwaitingRetry *instead of* Crashed, never Crashed then back);
#  - CANCELLING may only finish as CANCELLED (a crash while cancelling is still a cancel);
#  - PAUSED is entered only from RUNNING (a paused run may be re-paused, e.g. Paused -> Suspended);
#  - other non-terminal types may repeat (Scheduled -> Late, Running -> Retrying).
# Re-writing a state with an unchanged type is a transition too: CANCELLING -> CANCELLING
# is refused, so a writer that only updates other status fields must leave state alone
# (and a CEL rule should compare state only when it changed).
ALLOWED_TRANSITIONS: Mapping[StateType, frozenset[StateType]] = MappingProxyType({
    _S.SCHEDULED: frozenset({_S.SCHEDULED, _S.PENDING, _S.RUNNING, _S.COMPLETED, _S.FAILED,
                             _S.CRASHED, _S.CANCELLING, _S.CANCELLED}),
    _S.PENDING: frozenset({_S.SCHEDULED, _S.PENDING, _S.RUNNING, _S.COMPLETED, _S.FAILED,
                           _S.CRASHED, _S.CANCELLING, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SCHEDULED, _S.PENDING, _S.RUNNING, _S.COMPLETED, _S.FAILED,
                           _S.CRASHED, _S.CANCELLING, _S.CANCELLED, _S.PAUSED}),
    _S.PAUSED: frozenset({_S.SCHEDULED, _S.PENDING, _S.RUNNING, _S.COMPLETED, _S.FAILED,
                          _S.CRASHED, _S.CANCELLING, _S.CANCELLED, _S.PAUSED}),
    _S.CANCELLING: frozenset({_S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CRASHED: frozenset(),
    _S.CANCELLED: frozenset(),
})

# Named sub-states and the type each one belongs to.
SUBSTATE_TYPES: Mapping[str, StateType] = MappingProxyType({
    "Late": _S.SCHEDULED,
    "AwaitingRetry": _S.SCHEDULED,
    "AwaitingConcurrencySlot": _S.SCHEDULED,
    "Retrying": _S.RUNNING,
    "Cached": _S.COMPLETED,
    "TimedOut": _S.FAILED,
    "Suspended": _S.PAUSED,
    "NotReady": _S.PENDING,
})


def is_transition_allowed(old: StateType | None, new: StateType) -> bool:
    """True when a run in `old` (None = no state yet) may move to `new`."""
    if old is None:
        return True
    return new in ALLOWED_TRANSITIONS[old]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True, eq=False)
class State:
    """One state of a flow or task run.

    `data` holds the result (Completed) or the exception (Failed/Crashed); it never
    goes on the wire. `scheduled_time` is set for SCHEDULED states (when to run) and
    `pause_timeout` for PAUSED ones (when the pause expires).
    """

    type: StateType
    name: str = ""
    message: str = ""
    timestamp: datetime | None = None
    data: Any = None
    scheduled_time: datetime | None = None
    pause_timeout: datetime | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.type.value.title()
        if self.timestamp is None:
            self.timestamp = _utcnow()

    def __repr__(self) -> str:
        text = f"{self.name}({self.type.value}"
        return text + (f", message={self.message!r})" if self.message else ")")

    def is_final(self) -> bool:
        return self.type in TERMINAL_TYPES

    def is_scheduled(self) -> bool:
        return self.type is _S.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is _S.PENDING

    def is_running(self) -> bool:
        return self.type is _S.RUNNING

    def is_completed(self) -> bool:
        return self.type is _S.COMPLETED

    def is_failed(self) -> bool:
        return self.type is _S.FAILED

    def is_crashed(self) -> bool:
        return self.type is _S.CRASHED

    def is_cancelling(self) -> bool:
        return self.type is _S.CANCELLING

    def is_cancelled(self) -> bool:
        return self.type is _S.CANCELLED

    def is_paused(self) -> bool:
        return self.type is _S.PAUSED

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a non-completed state raise (or return) its error."""
        if self.type is _S.COMPLETED:
            return self.data
        error = self.data if isinstance(self.data, BaseException) else None
        if error is None:
            error = RuntimeError(f"Run ended {self.name}: {self.message or 'no message'}")
        if raise_on_failure:
            raise error
        return error

    def to_wire(self) -> dict[str, str]:
        """The FlowRun status form: {type, name, message, timestamp (RFC 3339)}."""
        assert self.timestamp is not None  # set in __post_init__
        return {
            "type": self.type.value,
            "name": self.name,
            "message": self.message,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> "State":
        """Parse the status form; a bad field raises ValueError naming it."""
        try:
            state_type = StateType(wire["type"])
        except (KeyError, ValueError):
            raise ValueError(
                f"state.type must be one of {[t.value for t in StateType]}, "
                f"got {wire.get('type')!r}"
            ) from None
        stamp = wire.get("timestamp")
        try:
            timestamp = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
        except (AttributeError, ValueError):
            raise ValueError(f"state.timestamp must be RFC 3339, got {stamp!r}") from None
        return cls(state_type, wire.get("name") or "", wire.get("message") or "", timestamp)


def _factory(state_type: StateType, name: str, doc: str) -> Callable[..., State]:
    def make(message: str = "", *, timestamp: datetime | None = None, data: Any = None,
             scheduled_time: datetime | None = None,
             pause_timeout: datetime | None = None) -> State:
        return State(state_type, name, message, timestamp, data, scheduled_time, pause_timeout)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = doc
    return make


Scheduled = _factory(_S.SCHEDULED, "Scheduled", "A run waiting for its scheduled time.")
Late = _factory(_S.SCHEDULED, "Late", "A scheduled run whose start time has passed.")
AwaitingRetry = _factory(_S.SCHEDULED, "AwaitingRetry", "A failed run that will be retried.")
AwaitingConcurrencySlot = _factory(
    _S.SCHEDULED, "AwaitingConcurrencySlot", "A run waiting for a concurrency slot."
)
Pending = _factory(_S.PENDING, "Pending", "A run about to start.")
NotReady = _factory(_S.PENDING, "NotReady", "A run whose upstream dependencies did not complete.")
Running = _factory(_S.RUNNING, "Running", "A run in progress.")
Retrying = _factory(_S.RUNNING, "Retrying", "A run in progress again after a failure.")
Completed = _factory(_S.COMPLETED, "Completed", "A run that finished successfully.")
Cached = _factory(_S.COMPLETED, "Cached", "A run completed by reusing a cached result.")
Failed = _factory(_S.FAILED, "Failed", "A run whose user code raised or returned failure.")
TimedOut = _factory(_S.FAILED, "TimedOut", "A run that exceeded its timeout.")
Crashed = _factory(_S.CRASHED, "Crashed", "A run stopped by something outside user code.")
Cancelling = _factory(_S.CANCELLING, "Cancelling", "A run being cancelled.")
Cancelled = _factory(_S.CANCELLED, "Cancelled", "A run that was cancelled.")
Paused = _factory(_S.PAUSED, "Paused", "A run paused in-process, waiting to be resumed.")
Suspended = _factory(_S.PAUSED, "Suspended", "A run paused with its process ended.")
