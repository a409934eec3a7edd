"""Result storage: task return values pickled into a local directory.

Role: `ResultStore` persists values under a root directory (default
~/.flowpod/results, or $FLOWPOD_RESULT_DIR, or RunDeps.result_dir). The task
engine (flowpod._runtime.task_engine) writes a task run's result there when
`persist_result` is on, keyed by flow-run id and deterministic task-run key, so a
re-run of the same flow run can skip the task; flowpod.caching stores cache
entries through it. Callers: flowpod._runtime.task_engine, flowpod.caching,
flowpod._runtime.pausing (suspend markers).
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(text: str) -> str:
    """A file-name-safe version of a key (keys contain task names, which are free text)."""
    return _UNSAFE.sub("_", text)[:200] or "_"


class ResultStore:
    """Pickled values by relative path under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, *parts: str) -> Path:
        return self.root.joinpath(*(safe_name(p) for p in parts))

    def write(self, path: Path, value: Any) -> None:
        """Write atomically: a reader never sees half a file (rename is atomic)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def read(self, path: Path) -> tuple[bool, Any]:
        """(True, value) when stored, (False, None) when not."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False, None
        return True, pickle.loads(data)
