"""Start long-lived processes detached from the caller, record them, and stop exactly those.

Called by plane.py (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the test
node) and by `python -m flowpod_devcluster down`. A record holds the PID *and* the process
start time read from /proc, so tear-down never signals an unrelated process that reused a
recorded PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ProcessRecord", "spawn", "stop_all", "is_alive", "read_records"]


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    log: str


# The Popen objects of processes started by this interpreter. Dropping one while its process
# runs (as the plane's are meant to) makes Popen.__del__ warn "subprocess N is still running",
# an error under pytest's filterwarnings=error; holding them until _reap() avoids that.
_children: dict[int, subprocess.Popen] = {}


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) comes after the parenthesised command, which may contain spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_alive(record: ProcessRecord) -> bool:
    return _start_ticks(record.pid) == record.start_ticks and not _is_zombie(record.pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _records_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def read_records(state_dir: Path) -> list[ProcessRecord]:
    path = _records_file(state_dir)
    if not path.exists():
        return []
    return [ProcessRecord(**item) for item in json.loads(path.read_text())]


def _append_record(state_dir: Path, record: ProcessRecord) -> None:
    records = read_records(state_dir) + [record]
    _records_file(state_dir).write_text(json.dumps([asdict(r) for r in records], indent=2))


def spawn(state_dir: Path, name: str, argv: list[str], *, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> ProcessRecord:
    """Start ``argv`` in its own session, logging to ``state_dir/logs/name.log``, and record it."""
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=cwd,
        )
    _children[proc.pid] = proc
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        raise RuntimeError(f"{name} exited at once; see {log_path}")
    record = ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log_path))
    _append_record(state_dir, record)
    return record


def _signal(record: ProcessRecord, sig: int) -> None:
    if is_alive(record):
        try:
            os.kill(record.pid, sig)
        except ProcessLookupError:
            pass


def _terminate(record: ProcessRecord, grace: float) -> None:
    """SIGTERM, then SIGKILL once `grace` seconds have passed; reaped either way."""
    _signal(record, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while is_alive(record) and time.monotonic() < deadline:
        _reap(record.pid)
        time.sleep(0.05)
    _signal(record, signal.SIGKILL)
    _reap(record.pid)


def stop_all(state_dir: Path, *, grace: float = 10.0) -> list[str]:
    """Stop every recorded process, newest first and one at a time: SIGTERM, then SIGKILL after
    ``grace``. One at a time because kube-apiserver's graceful shutdown stalls for its whole
    grace period when etcd vanishes underneath it."""
    records = list(reversed(read_records(state_dir)))
    for record in records:
        _terminate(record, grace)
    _records_file(state_dir).unlink(missing_ok=True)
    return [r.name for r in records]


def stop(state_dir: Path, names: set[str], *, grace: float = 10.0) -> None:
    """Stop the recorded processes called ``names`` (newest first), and forget them."""
    records = read_records(state_dir)
    if not any(record.name in names for record in records):
        return  # nothing to stop: a state directory that may not even exist yet stays as is
    for record in reversed(records):
        if record.name not in names:
            continue
        _terminate(record, grace)
    kept = [r for r in records if r.name not in names]
    _records_file(state_dir).write_text(json.dumps([asdict(r) for r in kept], indent=2))


def _reap(pid: int) -> None:
    # Only our own children can be reaped; for processes started by an earlier `up` this is a
    # harmless ChildProcessError.
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
