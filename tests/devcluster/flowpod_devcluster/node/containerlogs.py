"""Container log files in the kubelet's CRI format, written while a container runs and read
back for the containerLogs endpoint.

Used by launching (pump a process's stdout/stderr into a file) and serving (read with tail,
since, timestamps, limitBytes, follow). One line per record:
`<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>`, where P marks a partial line (a line
longer than the buffer, or output that ended without a newline) continued by the next record.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio.abc

__all__ = ["Entry", "LogWriter", "format_timestamp", "pump", "read_entries", "render"]

_MAX_LINE = 16 * 1024


def format_timestamp(when: datetime.datetime) -> str:
    when = when.astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass(frozen=True)
class Entry:
    timestamp: str
    stream: str
    partial: bool
    content: bytes


class LogWriter:
    """Appends records to one container run's log file."""

    def __init__(self, path: Path, clock: Callable[[], datetime.datetime]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._file = open(path, "ab", buffering=0)  # unbuffered: followers see lines at once

    def write(self, stream: str, content: bytes, *, partial: bool) -> None:
        tag = b"P" if partial else b"F"
        stamp = format_timestamp(self._clock()).encode()
        self._file.write(b"%s %s %s %s\n" % (stamp, stream.encode(), tag, content))

    def note(self, message: str) -> None:
        """A line from the node itself (e.g. why a container could not start)."""
        self.write("stderr", message.encode(), partial=False)

    def close(self) -> None:
        self._file.close()


async def pump(source: anyio.abc.ByteReceiveStream, writer: LogWriter, stream: str) -> None:
    """Copy ``source`` into ``writer`` line by line until end of file."""
    buffer = b""
    while True:
        try:
            chunk = await source.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            break
        buffer += chunk
        while True:
            line, newline, rest = buffer.partition(b"\n")
            if newline:
                writer.write(stream, line, partial=False)
                buffer = rest
            elif len(buffer) >= _MAX_LINE:
                writer.write(stream, buffer[:_MAX_LINE], partial=True)
                buffer = buffer[_MAX_LINE:]
            else:
                break
    if buffer:
        writer.write(stream, buffer, partial=True)


def _parse(line: bytes) -> Entry | None:
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return Entry(timestamp=parts[0].decode(), stream=parts[1].decode(),
                 partial=parts[2] == b"P", content=content)


def read_entries(path: Path, offset: int = 0) -> tuple[list[Entry], int]:
    """Complete records from ``offset`` on, and the offset after the last complete one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    entries = [e for line in data[:end].splitlines() if (e := _parse(line)) is not None]
    return entries, offset + end


def render(entry: Entry, *, timestamps: bool) -> bytes:
    """What the log endpoint sends for one record."""
    body = entry.content if entry.partial else entry.content + b"\n"
    return (entry.timestamp.encode() + b" " + body) if timestamps else body
