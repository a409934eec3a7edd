"""Memory cgroups (cgroup v1) for containers: limits, OOM-kill detection and clean-up.

Used by containerrunning: every container run gets its own child cgroup under the node's
subtree, so `resources.limits.memory` is enforced by the kernel, an OOM kill can be told apart
from any other SIGKILL, and processes a container left behind are found and killed (as a
container's PID namespace would on a real node). The node's subtree lives beneath the cgroup
the node itself runs in (from /proc/self/cgroup) and is removed at shutdown.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cgroup", "MemoryCgroups", "discover"]

_UNLIMITED = "-1"


@dataclass(frozen=True)
class Cgroup:
    """One container run's memory cgroup."""

    path: Path

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup.

        memory.oom_control has an oom_kill counter on kernels >= 4.13; on older ones a hit of
        the limit (failcnt) is the best evidence there is."""
        try:
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
            return int((self.path / "memory.failcnt").read_text())
        except OSError:
            return 0

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.procs_file.read_text().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, *, timeout: float = 2.0) -> None:
        """Kill whatever is left inside, then remove the cgroup (it must be empty first)."""
        deadline = time.monotonic() + timeout
        while True:
            self.kill_all()
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)


class MemoryCgroups:
    """The node's subtree of the memory hierarchy, or the reason there is none."""

    def __init__(self, root: Path | None, problem: str | None) -> None:
        self.root = root
        self.problem = problem

    @property
    def available(self) -> bool:
        return self.root is not None

    def create(self, name: str, limit_bytes: int | None) -> Cgroup:
        if self.root is None:
            raise RuntimeError(self.problem)
        cgroup = Cgroup(self.root / name)
        cgroup.path.mkdir(exist_ok=True)
        (cgroup.path / "memory.limit_in_bytes").write_text(
            str(limit_bytes) if limit_bytes is not None else _UNLIMITED)
        return cgroup

    def close(self) -> None:
        if self.root is None:
            return
        for child in self.root.iterdir():
            if child.is_dir():
                Cgroup(child).remove()
        Cgroup(self.root).remove()


def _own_memory_cgroup() -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return None


def _memory_mount(cgroup_path: str) -> Path | None:
    # mountinfo: id parent major:minor root mountpoint options - fstype source superoptions
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(extra) < 3 or extra[0] != "cgroup" or "memory" not in extra[2].split(","):
            continue
        root, mountpoint = fields[3], fields[4]
        relative = os.path.relpath(cgroup_path, root) if root != "/" else cgroup_path.lstrip("/")
        if relative.startswith(".."):
            continue
        return Path(mountpoint) / relative
    return None


def discover(node_name: str) -> MemoryCgroups:
    """Make the node's subtree, or explain why memory limits cannot be enforced here."""
    own = _own_memory_cgroup()
    if own is None:
        return MemoryCgroups(None, "no cgroup v1 memory controller in /proc/self/cgroup "
                             "(cgroup v2-only machines are not supported by the test node)")
    parent = _memory_mount(own)
    if parent is None or not parent.is_dir():
        return MemoryCgroups(None, f"the cgroup v1 memory hierarchy for {own} is not mounted")
    root = parent / f"flowpod-{node_name}-{os.getpid()}"
    try:
        root.mkdir(exist_ok=True)
        (root / "memory.limit_in_bytes").write_text(_UNLIMITED)
    except OSError as exc:
        return MemoryCgroups(None, f"cannot create a memory cgroup under {parent}: {exc} "
                             "(the node must run as root with cgroup v1 writable)")
    return MemoryCgroups(root, None)
