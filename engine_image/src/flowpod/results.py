"""Result storage: task return values pickled under an fsspec URL root.

Role: `ResultStore` persists values under a root that is an fsspec URL
(`file:///mnt/results`, `s3://bucket/prefix`, `gs://...`) or a local path (default
~/.flowpod/results, or $FLOWPOD_RESULT_STORAGE / $FLOWPOD_RESULT_DIR, or
RunDeps.result_dir). Remote protocols work through fsspec's own backends (s3fs, gcsfs)
when they are installed in the image. The task engine (flowpod._runtime.task_engine)
writes a task run's result there when `persist_result` is on, keyed by flow-run id and
deterministic task-run key, so a re-run of the same flow run (or a retry reading an
earlier run's results) can skip the task; flowpod.caching stores cache entries through
it; the in-pod engine stores a flow result too large for the FlowRun's status there and
references it (`url_for`). `check_usable` is the start-of-run probe. Callers:
flowpod._runtime.task_engine, flowpod.caching, flowpod._runtime.pausing (suspend
markers), flowpod.engine._in_pod.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "ResultStorageError", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Protocols whose files can be renamed atomically; object stores write a whole object in
# one request instead (a reader never sees half of it), and have no directories to make.
_RENAMING = frozenset({"file", "local"})


def safe_name(text: str) -> str:
    """A file-name-safe version of a key (keys contain task names, which are free text)."""
    return _UNSAFE.sub("_", text)[:200] or "_"


class ResultStorageError(RuntimeError):
    """The result storage cannot be used (unknown protocol, missing backend, not writable)."""


class ResultStore:
    """Pickled values by relative path under `root` (an fsspec URL or a local path)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self._fs: Any = None  # resolved on first use: fsspec costs ~70 ms to import
        self._base = ""
        self._renaming = True

    def _resolve(self) -> Any:
        if self._fs is None:
            from fsspec.core import url_to_fs

            try:
                fs, base = url_to_fs(self.root)
            except (ImportError, ValueError) as exc:  # unknown protocol, backend missing
                raise ResultStorageError(f"result storage {self.root!r} cannot be opened: "
                                         f"{exc}") from exc
            protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
            self._base, self._renaming = base.rstrip("/"), bool(protocols & _RENAMING)
            self._fs = fs
        return self._fs

    def path_for(self, *parts: str) -> str:
        """The storage path of a value (pass it to read/write; url_for makes it a URL)."""
        self._resolve()
        return "/".join([self._base, *(safe_name(p) for p in parts)])

    def url_for(self, path: str) -> str:
        """The full URL of `path`, for a person or another process to find the value."""
        return self._resolve().unstrip_protocol(path)

    def write(self, path: str, value: Any) -> None:
        """Write atomically: a reader never sees half a file (local: temp file + rename)."""
        fs = self._resolve()
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if self._renaming:
            _write_local(path, data)
        else:
            fs.pipe_file(path, data)

    def read(self, path: str) -> tuple[bool, Any]:
        """(True, value) when stored, (False, None) when not."""
        fs = self._resolve()
        try:
            # Local files are read directly: fsspec's file objects cost ~30 µs more per
            # read, paid by every task that looks for an earlier result.
            data = Path(path).read_bytes() if self._renaming else fs.cat_file(path)
        except FileNotFoundError:
            return False, None
        return True, pickle.loads(data)

    def check_usable(self, *, must_exist: bool = True) -> None:
        """Raise ResultStorageError unless a value can be written and read back here.

        A local root must already exist (`must_exist`): a missing directory usually means a
        volume that is not mounted, and creating it would keep results inside the pod,
        where they die with it.
        """
        fs = self._resolve()
        if self._renaming and must_exist and not fs.isdir(self._base):
            raise ResultStorageError(f"directory {self._base} does not exist (is the volume "
                                     f"mounted there?)")
        probe = self.path_for(f".flowpod-probe-{uuid.uuid4().hex}")
        try:
            self.write(probe, True)
            found, _ = self.read(probe)
            fs.rm_file(probe)
        except (OSError, ValueError) as exc:
            raise ResultStorageError(f"cannot write to {self.root}: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if not found:
            raise ResultStorageError(f"a value written to {self.root} could not be read back")


def _write_local(path: str, data: bytes) -> None:
    """The local backend's atomic write, with os calls: fsspec's LocalFileSystem would do the
    same through its path handling and file objects, at twice the cost per task."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
