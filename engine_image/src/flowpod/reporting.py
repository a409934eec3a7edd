"""Reporters: where a flow run's states and task-run summaries go.

Role: defines the `Reporter` protocol the flow engine (flowpod._runtime.flow_engine) writes
through, the task-run summary it flushes, and two implementations:

- `InMemoryReporter`: local runs (`my_flow()` uses one per call) and tests;
- `JsonJournalReporter`: the same, plus a JSON-lines journal file that external
  tools can also append `resume` / `cancel` control lines to.

A paused run's state carries a `PauseRequest` (its key, the JSON schema of the input it
waits for, its deadline) as `data`; a reporter may publish it. Two optional methods serve
the wait: `resume_input(key)` (the input given with the resume of that pause) and
`wait_for_change(seconds)` (return early when the run's record may have changed, e.g. on a
watch event); without the latter the engine polls `read_state`.

The Kubernetes reporter (flowpod.engine._kubereporter) implements the same protocol
against the FlowRun status subresource. Every reporter decides with the one rule,
flowpod.states.accept; the summary's wire form and bounds are flowpod.contract's.
Callers: flowpod._runtime, flowpod.engine, tests.

The protocol is async because real backends do network IO; in-memory ones simply
never suspend. Backend refusals are signalled by raising `flowpod.errors.Abort`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from flowpod import contract, states
from flowpod.errors import Abort

__all__ = [
    "Reporter",
    "CancellationCheck",
    "PauseRequest",
    "TaskRunSummary",
    "FailedTaskRun",
    "SubflowRun",
    "InMemoryReporter",
    "JsonJournalReporter",
    "append_journal_control",
]

# Answers "did someone ask to cancel this run?"; may be sync or async.
CancellationCheck = Callable[[], "bool | Awaitable[bool]"]


@dataclass(frozen=True, slots=True)
class PauseRequest:
    """What a paused run waits for: resume of pause `key`, with input valid against
    `input_schema` (a JSON schema; None when no input is expected), before `timeout_at`."""

    key: str
    input_schema: dict[str, Any] | None
    timeout_at: datetime
    suspended: bool = False

    def to_wire(self) -> dict[str, Any]:
        """status.pause (flowpod.contract.pause_wire)."""
        return contract.pause_wire(self.key, self.input_schema, self.timeout_at,
                                   suspended=self.suspended)


@dataclass(frozen=True, slots=True)
class FailedTaskRun:
    """One failed (or crashed, timed-out, not-ready) task run, for the summary."""

    name: str
    key: str
    state: states.State

    def to_wire(self) -> dict[str, str]:
        return contract.listed_run(self.name, self.state.name, self.state.message)


@dataclass(frozen=True, slots=True)
class SubflowRun:
    """A child flow run, recorded in its parent's summary instead of its own object."""

    name: str
    id: str
    state: states.State

    def to_wire(self) -> dict[str, str]:
        return contract.listed_run(self.name, self.state.name, self.state.message)


@dataclass(frozen=True, slots=True)
class TaskRunSummary:
    """Cumulative task-run picture of one flow run (each flush replaces the last).

    `counts` maps a state type value ("COMPLETED", "FAILED", ...) to how many task
    runs ended in it. `failed` lists the first contract.MAX_LISTED_RUNS failed (or crashed)
    task runs; `failed_total` counts all of them.
    """

    total: int
    counts: dict[str, int]
    failed: tuple[FailedTaskRun, ...] = ()
    failed_total: int = 0
    subflows: tuple[SubflowRun, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The status.taskRuns form (flowpod.contract.task_runs_wire), bounded lists included."""
        return contract.task_runs_wire(
            total=self.total, counts=self.counts, failed=(f.to_wire() for f in self.failed),
            failed_total=self.failed_total, subflows=(s.to_wire() for s in self.subflows))


@runtime_checkable
class Reporter(Protocol):
    """What the flow engine needs from a backend, for ONE flow run."""

    async def propose_state(self, state: states.State) -> states.State:
        """Record `state`; return the state the backend accepted.

        Raise `Abort(message, state=current)` when the backend refuses it (run already
        terminal, being cancelled, or the transition is not in the table).
        """
        ...

    async def flush_task_runs(self, summary: TaskRunSummary) -> None:
        """Store the latest cumulative task-run summary (called in batches)."""
        ...

    async def read_state(self) -> states.State | None:
        """The backend's current state (used while paused, to notice a resume or cancel)."""
        ...


class InMemoryReporter:
    """A reporter that keeps everything in memory; thread-safe.

    `resume()` and `request_cancellation()` play the part of a user acting on the run
    from outside (the CLI or another thread).
    """

    def __init__(self, initial: states.State | None = None) -> None:
        self._lock = threading.Lock()
        self.history: list[states.State] = [initial or states.Pending()]
        self.summaries: list[TaskRunSummary] = []
        self._cancel_requested = False
        self.resume_inputs: dict[str, Any] = {}  # pause key -> the input given on resume

    @property
    def state(self) -> states.State:
        return self.history[-1]

    async def propose_state(self, state: states.State) -> states.State:
        with self._lock:
            current = self.history[-1]
            decision = states.accept(current, state, cancel_requested=self._cancel_requested)
            if decision.verdict is states.Verdict.REFUSE:
                raise Abort(decision.reason, state=current)
            if decision.verdict is states.Verdict.ALREADY_THERE:
                return current
            self._accept(state)
        return state

    async def flush_task_runs(self, summary: TaskRunSummary) -> None:
        with self._lock:
            self.summaries.append(summary)
            self._record("task_runs", summary.to_wire())

    async def read_state(self) -> states.State | None:
        return self.history[-1]

    def is_cancellation_requested(self) -> bool:
        return self._cancel_requested or self.history[-1].is_cancelling()

    def resume(self, message: str = "resumed", *, run_input: Any = None,
               with_input: bool = False) -> None:
        """Resume a paused run (Paused -> Running), giving `run_input` to the pause when
        `with_input` (or `run_input` is not None)."""
        with self._lock:
            paused = self.history[-1]
            if not paused.is_paused():
                raise RuntimeError(f"Only a paused run can be resumed; it is {paused!r}")
            if (with_input or run_input is not None) and isinstance(paused.data, PauseRequest):
                self.resume_inputs[paused.data.key] = run_input
            self._accept(states.Running(message))

    async def resume_input(self, key: str) -> tuple[bool, Any]:
        """(True, input) when pause `key` was resumed with input, else (False, None)."""
        with self._lock:
            if key in self.resume_inputs:
                return True, self.resume_inputs[key]
        return False, None

    def request_cancellation(self, message: str = "cancellation requested") -> None:
        """Ask for cancellation, as a user would (non-terminal run -> Cancelling)."""
        with self._lock:
            self._cancel_requested = True
            current = self.history[-1]
            if states.is_transition_allowed(current.type, states.StateType.CANCELLING):
                self._accept(states.Cancelling(message))

    def _accept(self, state: states.State) -> None:
        self.history.append(state)
        self._record("state", state.to_wire())

    def _record(self, event: str, payload: dict[str, Any]) -> None:
        """Hook for subclasses that persist events; called with the lock held."""


class JsonJournalReporter(InMemoryReporter):
    """An in-memory reporter that also appends every event to a JSON-lines file.

    Lines look like {"event": "state", "state": {...}} or {"event": "task_runs", ...}.
    Other processes may append {"event": "resume"} or {"event": "cancel"} (see
    `append_journal_control`); they are applied when the engine next reads the state.
    """

    def __init__(self, path: str | Path, initial: states.State | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read_offset = self.path.stat().st_size if self.path.exists() else 0
        super().__init__(initial)
        with self._lock:
            self._record("state", self.history[-1].to_wire())

    async def read_state(self) -> states.State | None:
        self._apply_controls()
        return self.history[-1]

    def is_cancellation_requested(self) -> bool:
        self._apply_controls()
        return super().is_cancellation_requested()

    def _apply_controls(self) -> None:
        for action in self._new_controls():
            if action == "resume" and self.history[-1].is_paused():
                self.resume("resumed through the journal")
            elif action == "cancel":
                self.request_cancellation("cancellation requested through the journal")

    def _new_controls(self) -> list[str]:
        with self._lock, self.path.open("rb") as journal:
            journal.seek(self._read_offset)
            lines = journal.read().splitlines()
            self._read_offset = journal.tell()
        events = (json.loads(line) for line in lines if line.strip())
        return [e["event"] for e in events if e.get("event") in ("resume", "cancel")]

    def _record(self, event: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"event": event, event if event == "state" else "summary": payload})
        with self.path.open("ab") as journal:
            start = journal.tell()
            journal.write(line.encode() + b"\n")
            end = journal.tell()
        # Our own lines are not controls: skip past them, unless another process
        # appended a control line we have not read yet.
        if self._read_offset == start:
            self._read_offset = end


def append_journal_control(path: str | Path, action: str) -> None:
    """Append a control line ("resume" or "cancel") to a journal, from any process."""
    if action not in ("resume", "cancel"):
        raise ValueError(f"action must be 'resume' or 'cancel', got {action!r}")
    with Path(path).open("a", encoding="utf-8") as journal:
        journal.write(json.dumps({"event": action}) + "\n")
