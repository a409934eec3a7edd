"""What a flow run gets from outside: injectable dependencies and where results go.

Role: `RunDeps` (clock, sleeps, result storage, the earlier run whose results a retry
reuses, flush interval: what tests replace) and
`Stores` (the result store and task cache built from them, shared by a flow run and its
subflows). Callers: flowpod._runtime.contexts and the engines; users reach RunDeps as
flowpod.engine.RunDeps.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

from flowpod.caching import TaskCache
from flowpod.contract import ENV_RESULT_DIR, ENV_RESULT_STORAGE
from flowpod.results import ResultStore

__all__ = ["RunDeps", "Stores", "default_result_dir"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_result_dir() -> Path | str:
    """Where results and cache entries go unless a run says otherwise: the fsspec URL in
    $FLOWPOD_RESULT_STORAGE (a pod gets it from spec.resultStorage), else the directory in
    $FLOWPOD_RESULT_DIR, else ~/.flowpod/results."""
    return (os.environ.get(ENV_RESULT_STORAGE)
            or Path(os.environ.get(ENV_RESULT_DIR) or Path.home() / ".flowpod" / "results"))


@dataclass(frozen=True, slots=True)
class RunDeps:
    """Things a flow run gets from outside, so tests can replace them.

    clock: aware-UTC "now" (state timestamps, cache expiry, pause deadlines).
    sleep / asleep: how retry delays and pause polls wait, in blocking and async code.
    result_dir: root of persisted results and the task cache: a local path or an fsspec
        URL (`file:///mnt/results`, `s3://bucket/prefix`).
    reuse_results_from: the id of an earlier flow run whose persisted task results this
        run reuses, by task-run key, before running a task (`flowpod retry
        --from-failure`); None: only this run's own.
    flush_interval: seconds between task-run summary flushes to the reporter.
    """

    clock: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] | None = None  # None: anyio.sleep
    result_dir: Path | str = field(default_factory=default_result_dir)
    reuse_results_from: str | None = None
    flush_interval: float = 2.0


@dataclass(frozen=True, slots=True)
class Stores:
    """Where a flow run keeps task results and cache entries."""

    results: ResultStore
    cache: TaskCache

    @classmethod
    def from_deps(cls, deps: RunDeps) -> "Stores":
        results = ResultStore(deps.result_dir)
        return cls(results, TaskCache(results, deps.clock))
