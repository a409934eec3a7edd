"""Task-result caching: `cache_key_fn`, `cache_expiration`, `refresh_cache`.

Role: `TaskCache` looks up and stores task results by cache key, with an expiry
checked against the run's injectable clock; `task_input_hash` is a ready-made
`cache_key_fn` (same task + same inputs -> same key). Callers:
flowpod._runtime.task_engine (lookup before running, store after completing); users pass
`task_input_hash` to `@task(cache_key_fn=...)`.
"""

from __future__ import annotations

import hashlib
import pickle
from datetime import datetime, timedelta
from typing import Any, Callable

from flowpod.results import ResultStore

__all__ = ["TaskCache", "task_input_hash"]


class TaskCache:
    """Cache entries (expires_at, value) stored through a ResultStore."""

    def __init__(self, store: ResultStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def _path(self, cache_key: str):
        digest = hashlib.sha256(cache_key.encode()).hexdigest()
        return self._store.path_for("cache", digest)

    def get(self, cache_key: str) -> tuple[bool, Any]:
        """(True, value) for a live entry; (False, None) when missing or expired."""
        found, entry = self._store.read(self._path(cache_key))
        if not found:
            return False, None
        expires_at, value = entry
        if expires_at is not None and self._clock() >= expires_at:
            return False, None
        return True, value

    def put(self, cache_key: str, value: Any, expiration: timedelta | None) -> datetime | None:
        """Store value; returns when it expires (None: never)."""
        expires_at = None if expiration is None else self._clock() + expiration
        self._store.write(self._path(cache_key), (expires_at, value))
        return expires_at


def task_input_hash(context: Any, parameters: dict[str, Any]) -> str | None:
    """A cache key from the task's identity and its inputs; None when inputs won't pickle."""
    try:
        payload = pickle.dumps(sorted(parameters.items()), protocol=4)
    except Exception:  # unpicklable inputs: do not cache rather than guess
        return None
    task_key = getattr(context.task, "task_key", "")
    return hashlib.sha256(task_key.encode() + b"\0" + payload).hexdigest()
