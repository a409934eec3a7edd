"""Start one container's process the way a runtime would, and wait for it to end.

Used by containerrunning. The process runs in its own session and process group (signals go
to the whole group), inside its memory cgroup (joined by the wrapper *before* exec, so every
byte it allocates is charged), with the pod's volumes bind-mounted in a private mount
namespace made by `unshare --mount` (so /var/run/secrets/... exists only for it). unshare and
the wrapper both exec in place, so the PID we hold is the container's own main process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import anyio

from flowpod_devcluster.node import cgroups, containerlogs, volumes

__all__ = ["LaunchSpec", "ProcessHandle", "run", "wrapper_argv"]

_BASH = "/bin/bash"
# Variables bash itself would add to the environment of what it execs.
_SHELL_NOISE = ("OLDPWD", "SHLVL")


@dataclass(frozen=True)
class LaunchSpec:
    argv: Sequence[str]
    env: Mapping[str, str]
    working_dir: str
    mounts: Sequence[volumes.Mount] = ()
    cgroup: cgroups.Cgroup | None = None
    # Host paths that are the image's own files (its venv, interpreter, WORKDIR). A volume
    # mounted over one of their parents (an emptyDir at /tmp with the checkout under /tmp)
    # must not hide them: in a real container they live in the image, not under the volume.
    image_paths: Sequence[str] = ()


@dataclass
class ProcessHandle:
    """A running container's main process; signals go to its whole process group."""

    pid: int
    exited: bool = field(default=False)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


# Where a container's mount sources are parked before any volume is mounted: a private tmpfs
# inside the container's own mount namespace, at the first of these paths no volume covers.
_STAGE_CANDIDATES = ("/run/flowpod-stage", "/var/lib/flowpod-stage", "/mnt/flowpod-stage")


def _covers(outer: str, inner: str) -> bool:
    outer = outer.rstrip("/") or "/"
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _mount_plan(spec: LaunchSpec) -> list[volumes.Mount]:
    """The volume mounts plus, for every image path a volume would hide, a bind of that path
    back onto itself; parents before children so nothing mounted later is hidden."""
    plan = list(spec.mounts)
    for path in dict.fromkeys(spec.image_paths):
        if any(_covers(m.target, path) and m.target.rstrip("/") != path.rstrip("/")
               for m in spec.mounts):
            plan.append(volumes.Mount(source=Path(path), target=path, read_only=False))
    return sorted(plan, key=lambda m: len(PurePosixPath(m.target).parts))


def _stage_dir(plan: Sequence[volumes.Mount]) -> str:
    for candidate in _STAGE_CANDIDATES:
        if not any(_covers(m.target, candidate) or _covers(candidate, m.target) for m in plan):
            return candidate
    raise ValueError("every staging directory for volume sources is covered by a volumeMount")


def _mount_script(spec: LaunchSpec) -> list[str]:
    """Bind every source into a staging tmpfs *before* any volume is mounted (a volume at
    /tmp would otherwise hide a source under /tmp), mount from there, then detach the stage;
    the binds made from it stay."""
    plan = _mount_plan(spec)
    stage = _stage_dir(plan)
    lines = [f"mkdir -p {stage}", f"mount -t tmpfs -o size=1m,mode=700 flowpod-stage {stage}"]
    staged = []
    for index, mount in enumerate(plan):
        parked = f"{stage}/{index}"
        lines.append(f"mkdir {parked}" if mount.source.is_dir() else f": > {parked}")
        lines.append(f"mount --bind {shlex.quote(str(mount.source))} {parked}")
        staged.append(volumes.Mount(source=mount.source, target=mount.target,
                                    read_only=mount.read_only, staged=parked))
    for mount in staged:
        lines += _mount_lines(mount)
    return lines + [f"umount -l {stage}"]


def _mount_lines(mount: volumes.Mount) -> list[str]:
    source = shlex.quote(mount.staged or str(mount.source))
    target = shlex.quote(mount.target)
    if mount.source.is_dir():
        lines = [f"mkdir -p {target}"]
    else:
        lines = [f"mkdir -p {shlex.quote(os.path.dirname(mount.target) or '/')}",
                 f"[ -e {target} ] || : > {target}"]
    lines.append(f"mount --bind {source} {target}")
    if mount.read_only:
        lines.append(f"mount -o remount,bind,ro {target}")
    return lines


def wrapper_argv(spec: LaunchSpec) -> list[str]:
    """The argv that sets the container up and then execs ``spec.argv`` in place.

    bash (in POSIX mode: no startup files) rather than dash, because dash silently drops
    environment variables whose names are not shell identifiers, which Kubernetes allows."""
    lines = ["set -e"]
    if spec.cgroup is not None:
        lines.append(f"echo $$ > {shlex.quote(str(spec.cgroup.procs_file))}")
    if spec.mounts:
        lines += _mount_script(spec)
    workdir = shlex.quote(spec.working_dir)
    lines += [f"mkdir -p {workdir}", f"cd {workdir}"]
    noise = [name for name in _SHELL_NOISE if name not in spec.env]
    if noise:
        lines.append("unset " + " ".join(noise))
    lines.append('exec "$@"')
    argv = [_BASH, "--posix", "-c", "\n".join(lines), "flowpod-container", *spec.argv]
    if spec.mounts:
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        argv = [unshare, "--mount", "--propagation", "private", "--", *argv]
    return argv


async def _pump(stream, writer: containerlogs.LogWriter, name: str, done: anyio.Event) -> None:
    try:
        await containerlogs.pump(stream, writer, name)
    finally:
        done.set()


def _end(handle: ProcessHandle, cgroup: cgroups.Cgroup | None) -> None:
    # A container ends with its main process: like a PID namespace going away, whatever it
    # left behind (same process group, or anywhere in its cgroup) is killed with it.
    handle.exited = True
    handle.signal_group(signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


async def run(spec: LaunchSpec, writer: containerlogs.LogWriter,
              on_started: Callable[[ProcessHandle], None]) -> int:
    """Run the container to its end; returns the raw return code (-N for signal N)."""
    process = await anyio.open_process(
        wrapper_argv(spec), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=dict(spec.env), cwd="/", start_new_session=True)
    handle = ProcessHandle(process.pid)
    done = [anyio.Event(), anyio.Event()]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, process.stdout, writer, "stdout", done[0])
            tg.start_soon(_pump, process.stderr, writer, "stderr", done[1])
            on_started(handle)
            code = await process.wait()
            _end(handle, spec.cgroup)
            with anyio.move_on_after(2):
                for event in done:
                    await event.wait()
            tg.cancel_scope.cancel()
        return code
    finally:
        if not handle.exited:
            _end(handle, spec.cgroup)
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await process.wait()
        with anyio.CancelScope(shield=True):
            await process.aclose()
