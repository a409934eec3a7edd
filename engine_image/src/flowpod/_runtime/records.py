"""In-process records of task runs and subflows, aggregated for the reporter.

Role: the flow engine keeps one `RunRecord` per flow run; every task call
(flowpod._runtime.task_calls) registers a `TaskRunRecord` in it and the task engine
(flowpod._runtime.task_engine) finishes it there. The RunRecord keeps running counts, so
a summary (flowpod.reporting.TaskRunSummary) is cheap to build when the flow engine's
flusher asks for one. Callers: the task and flow engines, task_calls, futures.

Records are touched from the flow's event-loop thread and from worker threads,
so every mutation that is not a single atomic list append holds the lock.
"""

from __future__ import annotations

import threading
from typing import Any

from flowpod import contract, states
from flowpod.reporting import FailedTaskRun, SubflowRun, TaskRunSummary

__all__ = ["TaskRunRecord", "RunRecord"]

_ALLOWED = states.ALLOWED_TRANSITIONS
_FAILED_TYPES = frozenset({states.StateType.FAILED, states.StateType.CRASHED})


class TaskRunRecord:
    """One task run: identity, state history, and whether user code saw its failure."""

    __slots__ = ("name", "key", "tags", "states", "handled", "run_count", "parameters")

    def __init__(self, name: str, key: str, tags: frozenset[str], first: states.State) -> None:
        self.name = name
        self.key = key
        self.tags = tags
        self.states = [first]
        # Failures the flow's code observed (an exception it got, a state it asked for)
        # do not fail a flow that returns None; see RunRecord.unhandled_failures.
        self.handled = False
        self.run_count = 0
        self.parameters: dict[str, Any] | None = None

    @property
    def state(self) -> states.State:
        return self.states[-1]

    def set_state(self, state: states.State) -> states.State:
        current = self.states[-1]
        if state.type not in _ALLOWED[current.type]:
            raise RuntimeError(f"Task run {self.name!r}: {current!r} -> {state!r} is not allowed")
        self.states.append(state)
        return state

    def __repr__(self) -> str:
        return f"TaskRunRecord({self.name!r}, key={self.key!r}, state={self.states[-1]!r})"


class RunRecord:
    """Task runs and subflows of one flow run (kept across its in-process retries)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.task_runs: list[TaskRunRecord] = []
        self.subflows: list[SubflowRun] = []
        self.counts: dict[str, int] = {}
        self._failed: list[TaskRunRecord] = []
        self._failed_total = 0
        # Completed states by task-run key, so a retry of the flow skips finished work.
        self.completed_by_key: dict[str, states.State] = {}
        self.attempt_start = 0
        self.version = 0  # bumped on every change; the flusher compares it

    def add(self, record: TaskRunRecord) -> None:
        with self._lock:
            self.task_runs.append(record)
            self.version += 1

    def add_many(self, records: list[TaskRunRecord]) -> None:
        """Register the runs of one submit or map call under one lock."""
        with self._lock:
            self.task_runs.extend(records)
            self.version += 1

    def finish(self, record: TaskRunRecord) -> None:
        state = record.states[-1]
        with self._lock:
            type_name = state.type.value
            self.counts[type_name] = self.counts.get(type_name, 0) + 1
            if state.type in _FAILED_TYPES:
                self._failed_total += 1
                if len(self._failed) < contract.MAX_LISTED_RUNS:  # the status lists no more
                    self._failed.append(record)
            elif state.type is states.StateType.COMPLETED:
                self.completed_by_key[record.key] = state
            self.version += 1

    def add_subflow(self, name: str, run_id: str, state: states.State) -> None:
        with self._lock:
            self.subflows.append(SubflowRun(name, run_id, state))
            self.version += 1

    def start_attempt(self) -> None:
        """Mark where a new attempt of the flow begins (failures before it are history)."""
        with self._lock:
            self.attempt_start = len(self.task_runs)

    def summary(self) -> TaskRunSummary:
        with self._lock:
            failed = tuple(FailedTaskRun(r.name, r.key, r.states[-1]) for r in self._failed)
            return TaskRunSummary(
                total=len(self.task_runs),
                counts=dict(self.counts),
                failed=failed,
                failed_total=self._failed_total,
                subflows=tuple(self.subflows),
            )

    def unhandled_failures(self) -> list[TaskRunRecord]:
        """Failed/crashed task runs of the current attempt that user code never saw."""
        with self._lock:
            current = self.task_runs[self.attempt_start:]
        return [r for r in current if r.states[-1].type in _FAILED_TYPES and not r.handled]
