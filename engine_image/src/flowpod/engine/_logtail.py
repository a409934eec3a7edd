"""The last lines the flow-run process wrote, kept in memory for the FlowRun's status.

Role: a pod's log is deleted with the pod, so a run that ends Failed, Crashed or Cancelled
keeps its last lines in `status.logTail`, written with the final state
(flowpod.flowruns.status_patch). `LogTail.installed()` puts a tee on sys.stdout and
sys.stderr: everything still goes to the container's log, and each complete line is also
kept in a ring of contract.MAX_LOG_TAIL_LINES. That one tee sees the engine's and the
flow's log records (the console handler writes to stderr) and whatever user code prints,
hooks included. Output written straight to file descriptors 1 and 2 (subprocesses, C
extensions) bypasses it: only the pod's log has that. Caller: flowpod.engine._in_pod.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

from flowpod import contract

__all__ = ["LogTail"]


class LogTail:
    """A bounded ring of the newest output lines of this process."""

    def __init__(self, max_lines: int = contract.MAX_LOG_TAIL_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._partial: dict[str, str] = {}
        # Tasks run in worker threads: their lines must not tear each other's partial line.
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator["LogTail"]:
        """Tee sys.stdout and sys.stderr into this ring while the block runs."""
        saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(sys.stdout, self, "stdout")
        sys.stderr = _Tee(sys.stderr, self, "stderr")
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = saved

    def feed(self, stream: str, text: str) -> None:
        with self._lock:
            if text[-1:] == "\n" and not self._partial.get(stream) and text.count("\n") == 1:
                self._lines.append(text[:-1])  # one whole line: a log record's usual write
                return
            pending = self._partial.get(stream, "") + text
            *complete, rest = pending.split("\n")
            self._lines.extend(complete)
            # An unterminated line is kept aside, bounded: a progress bar redrawn with \r
            # forever must not grow without limit.
            self._partial[stream] = rest[-contract.MAX_LOG_LINE_LENGTH:]

    def lines(self) -> list[str]:
        """The newest lines, oldest first, with any unterminated last line of each stream."""
        with self._lock:
            lines = [*self._lines, *(rest for rest in self._partial.values() if rest)]
        return lines[-(self._lines.maxlen or len(lines)):]


class _Tee:
    """A text stream that writes through to `inner` and feeds complete lines to the ring."""

    def __init__(self, inner: TextIO, tail: LogTail, name: str) -> None:
        self._inner = inner
        self._tail = tail
        self._name = name

    def write(self, text: str) -> int:
        written = self._inner.write(text)
        self._tail.feed(self._name, text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # flush, fileno, isatty, encoding, buffer ...: the real stream's.
        return getattr(self._inner, name)
