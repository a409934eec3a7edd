"""The flowpod state machine: state types and names, the one transition table, the one
acceptance rule, and State.

Role: the single source of truth for run states. The engine (flowpod._runtime), the
reporters (flowpod.reporting, flowpod.engine._kubereporter), the operator (flowpod_operator,
including the CRD's CEL rule generator) and the CLI all import this module; nothing else
may define state types, state names or transitions. `accept` decides what a backend does
with a proposed state; every reporter asks it. See ARCHITECTURE.md, "Who writes which state".

Kept dependency-free (stdlib and flowpod.contract only) and cheap to construct, because the
engine creates several states per task run and per-task overhead is measured in µs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Callable, Mapping

from flowpod import contract

__all__ = [
    "StateType",
    "names",
    "TERMINAL_TYPES",
    "ALLOWED_TRANSITIONS",
    "SUBSTATE_TYPES",
    "is_transition_allowed",
    "Verdict",
    "Decision",
    "accept",
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


class names:  # noqa: N801 -- a namespace of constants, read as `states.names.LATE`
    """Every state name flowpod writes (State.name, `status.state.name` on the wire), so code
    that tells sub-states apart compares these constants, never string literals."""

    __slots__ = ()
    SCHEDULED = "Scheduled"
    LATE = "Late"
    AWAITING_RETRY = "AwaitingRetry"
    AWAITING_CONCURRENCY_SLOT = "AwaitingConcurrencySlot"
    PENDING = "Pending"
    NOT_READY = "NotReady"
    RUNNING = "Running"
    RETRYING = "Retrying"
    COMPLETED = "Completed"
    CACHED = "Cached"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CRASHED = "Crashed"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    PAUSED = "Paused"
    SUSPENDED = "Suspended"


_S = StateType
_N = names
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
    _N.LATE: _S.SCHEDULED,
    _N.AWAITING_RETRY: _S.SCHEDULED,
    _N.AWAITING_CONCURRENCY_SLOT: _S.SCHEDULED,
    _N.RETRYING: _S.RUNNING,
    _N.CACHED: _S.COMPLETED,
    _N.TIMED_OUT: _S.FAILED,
    _N.SUSPENDED: _S.PAUSED,
    _N.NOT_READY: _S.PENDING,
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
        """{type, name, message, timestamp (RFC 3339)}, losslessly (journals, printed states);
        flowpod.flowruns.state_to_wire bounds it for a FlowRun's status."""
        assert self.timestamp is not None  # set in __post_init__
        return {
            "type": self.type.value,
            "name": self.name,
            "message": self.message,
            "timestamp": contract.format_time_exact(self.timestamp),
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
            timestamp = contract.parse_time(stamp) if stamp else None
        except ValueError:
            raise ValueError(f"state.timestamp must be RFC 3339, got {stamp!r}") from None
        return cls(state_type, wire.get("name") or "", wire.get("message") or "", timestamp)


class Verdict(enum.Enum):
    """What a backend does with a proposed state (see `accept`)."""

    WRITE = "write"  # record the proposed state
    ALREADY_THERE = "already there"  # the backend already holds it: record nothing
    REFUSE = "refuse"  # refuse it: the reporter raises flowpod.errors.Abort(reason)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one proposal, with the reason to give when it is refused."""

    verdict: Verdict
    reason: str = ""


_WRITE = Decision(Verdict.WRITE)


def accept(current: State | None, proposed: State, *,
           cancel_requested: bool = False) -> Decision:
    """Whether a backend holding `current` (None: no state yet) records `proposed`.

    The one acceptance rule; every reporter (in memory, journal, the FlowRun status) asks it,
    and the API server's CEL rule, generated from ALLOWED_TRANSITIONS, backs it up. In order:

    1. the very same state on the wire is ALREADY_THERE: an earlier attempt of this write
       landed although its reply was lost;
    2. a final state refuses everything;
    3. a Cancelling run: another Cancelling is ALREADY_THERE (the operator wrote it first;
       the engine goes on to Cancelled), anything but Cancelled is refused;
    4. when cancellation was requested (spec.cancel, or the in-memory request) but nobody
       wrote Cancelling yet, only Cancelling or a final state is accepted: starting or
       continuing work now would only race the cancellation;
    5. otherwise the transition table decides.
    """
    if current is not None and _same_on_the_wire(current, proposed):
        return Decision(Verdict.ALREADY_THERE, f"{proposed.name} is already written")
    if current is not None and current.is_final():
        return Decision(Verdict.REFUSE,
                        f"The run already ended {current.name}; refusing {proposed.name}")
    if current is not None and current.is_cancelling():
        if proposed.is_cancelling():
            return Decision(Verdict.ALREADY_THERE, "The run is already being cancelled")
        if not proposed.is_cancelled():
            return Decision(Verdict.REFUSE,
                            f"The run is being cancelled; refusing {proposed.name}")
    if cancel_requested and not (proposed.is_final() or proposed.is_cancelling()):
        return Decision(Verdict.REFUSE, f"Cancellation was requested (spec.cancel); "
                                        f"refusing {proposed.name}")
    if current is not None and proposed.type not in ALLOWED_TRANSITIONS[current.type]:
        return Decision(Verdict.REFUSE, f"Transition {current.type.value} -> "
                                        f"{proposed.type.value} is not allowed")
    return _WRITE


def _same_on_the_wire(a: State, b: State) -> bool:
    """Equal as a FlowRun status holds them (millisecond timestamps, bounded messages)."""
    if a.type is not b.type or a.name != b.name:
        return False
    return (contract.truncate_message(a.message) == contract.truncate_message(b.message)
            and _milliseconds(a) == _milliseconds(b))


def _milliseconds(state: State) -> str:
    stamp = state.timestamp
    assert stamp is not None  # set in __post_init__
    return contract.format_time(stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc))



def _factory(state_type: StateType, name: str, doc: str) -> Callable[..., State]:
    def make(message: str = "", *, timestamp: datetime | None = None, data: Any = None,
             scheduled_time: datetime | None = None,
             pause_timeout: datetime | None = None) -> State:
        return State(state_type, name, message, timestamp, data, scheduled_time, pause_timeout)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = doc
    return make


Scheduled = _factory(_S.SCHEDULED, _N.SCHEDULED, "A run waiting for its scheduled time.")
Late = _factory(_S.SCHEDULED, _N.LATE, "A scheduled run whose start time has passed.")
AwaitingRetry = _factory(_S.SCHEDULED, _N.AWAITING_RETRY, "A failed run that will be retried.")
AwaitingConcurrencySlot = _factory(
    _S.SCHEDULED, _N.AWAITING_CONCURRENCY_SLOT, "A run waiting for a concurrency slot."
)
Pending = _factory(_S.PENDING, _N.PENDING, "A run about to start.")
NotReady = _factory(_S.PENDING, _N.NOT_READY, "A run whose upstream dependencies did not complete.")
Running = _factory(_S.RUNNING, _N.RUNNING, "A run in progress.")
Retrying = _factory(_S.RUNNING, _N.RETRYING, "A run in progress again after a failure.")
Completed = _factory(_S.COMPLETED, _N.COMPLETED, "A run that finished successfully.")
Cached = _factory(_S.COMPLETED, _N.CACHED, "A run completed by reusing a cached result.")
Failed = _factory(_S.FAILED, _N.FAILED, "A run whose user code raised or returned failure.")
TimedOut = _factory(_S.FAILED, _N.TIMED_OUT, "A run that exceeded its timeout.")
Crashed = _factory(_S.CRASHED, _N.CRASHED, "A run stopped by something outside user code.")
Cancelling = _factory(_S.CANCELLING, _N.CANCELLING, "A run being cancelled.")
Cancelled = _factory(_S.CANCELLED, _N.CANCELLED, "A run that was cancelled.")
Paused = _factory(_S.PAUSED, _N.PAUSED, "A run paused in-process, waiting to be resumed.")
Suspended = _factory(_S.PAUSED, _N.SUSPENDED, "A run paused with its process ended.")
