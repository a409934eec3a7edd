"""One run of one container: image, configuration, cgroup, process, and how it ended.

Used by podworkers, which decides about restarts and pod phase. Every way a container can fail
to start is reported as the kubelet would: ErrImagePull/ImagePullBackOff for an image outside
the image map, CreateContainerConfigError for env it cannot build yet (retried),
CreateContainerError when a memory limit cannot be enforced, StartError (exit 128) when the
executable does not exist. A run that started ends as Terminated with Completed, Error,
OOMKilled (the kernel killed it in its cgroup) or DeadlineExceeded.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flowpod_devcluster.node import (cgroups, containerlogs, contexts, environment, images,
                                     launching, quantities, statuses, volumes)

__all__ = ["PodHooks", "Sandbox", "run_once", "memory_limit"]

_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CONFIG_RETRY = 1.0
_PULL_BACKOFF = (10.0, 300.0)


class PodHooks(Protocol):
    """What a container run needs from its pod worker."""

    stop_reason: str | None

    def changed(self) -> None: ...

    async def wait_stop(self, seconds: float | None) -> bool: ...

    def started(self, handle: launching.ProcessHandle) -> None: ...

    def finished(self, handle: launching.ProcessHandle) -> None: ...


@dataclass(frozen=True)
class Sandbox:
    """The pod-level things every container of the pod shares."""

    dir: Path
    volumes: dict[str, Path]


@dataclass(frozen=True)
class _Prepared:
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    mounts: list[volumes.Mount]
    image_paths: list[str]


def memory_limit(spec: dict) -> int | None:
    raw = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    if raw is None:
        return None
    return quantities.to_bytes(raw, field=f"containers[{spec['name']}].resources.limits.memory")


async def _unpullable(ctx: contexts.NodeContext, spec: dict, rt: statuses.ContainerRuntime,
                      hooks: PodHooks) -> None:
    image = spec.get("image", "")
    why = (f'failed to pull and unpack image "{image}": not in the flowpod test node\'s image '
           f"map (known: {', '.join(ctx.image_map.patterns)})")
    backoff = _PULL_BACKOFF[0]
    while True:
        rt.set_waiting("ErrImagePull", why)
        hooks.changed()
        if await hooks.wait_stop(1.0):
            return
        rt.set_waiting("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull')
        hooks.changed()
        if await hooks.wait_stop(backoff):
            return
        backoff = min(backoff * 2, _PULL_BACKOFF[1])


def _argv(spec: dict, image: images.Image, env: dict[str, str]) -> list[str]:
    # Kubernetes: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD.
    command = spec.get("command") or list(image.command)
    if spec.get("command"):
        args = spec.get("args") or []
    else:
        args = spec.get("args") if spec.get("args") is not None else list(image.args)
    return [environment.expand(a, env) for a in [*command, *args]]


async def _prepare(ctx: contexts.NodeContext, pod: dict, spec: dict, image: images.Image,
                   sandbox: Sandbox) -> _Prepared:
    k8s_env = await environment.build(ctx.api, pod, spec, ctx.facts(), ctx.service_env())
    home = sandbox.dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{image.bin_dir}:{_BASE_PATH}", "HOME": str(home),
           "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
           "VIRTUAL_ENV": str(image.venv), **image.env, **k8s_env}
    argv = _argv(spec, image, k8s_env)
    if not argv:
        raise environment.ConfigError(f'image "{image.reference}" has no ENTRYPOINT/CMD in the '
                                      "image map and the container sets no command")
    working_dir = spec.get("workingDir") or image.working_dir or str(sandbox.dir / "workdir")
    return _Prepared(argv=argv, env=env, working_dir=working_dir,
                     mounts=volumes.mounts_for(spec, sandbox.volumes),
                     image_paths=_image_paths(image))


def _image_paths(image: images.Image) -> list[str]:
    """The host paths that stand for the image's filesystem: its venv, the interpreter the
    venv points at, and its WORKDIR."""
    paths = [str(image.venv), sys.base_prefix, os.path.realpath(sys.base_prefix)]
    if image.working_dir:
        paths.append(image.working_dir)
    return paths


async def _prepared_or_stop(ctx, pod, spec, image, sandbox, rt, hooks) -> _Prepared | None:
    while True:
        try:
            return await _prepare(ctx, pod, spec, image, sandbox)
        except (environment.ConfigError, ValueError) as exc:
            rt.set_waiting("CreateContainerConfigError", str(exc))
            hooks.changed()
            if await hooks.wait_stop(_CONFIG_RETRY):
                return None


def _missing_executable(prepared: _Prepared) -> str | None:
    name = prepared.argv[0]
    if any(name == m.target or name.startswith(m.target.rstrip("/") + "/")
           for m in prepared.mounts):
        return None  # only visible inside the container's mount namespace
    if "/" in name:
        path = name if os.path.isabs(name) else os.path.join(prepared.working_dir, name)
        found = os.path.isfile(path) and os.access(path, os.X_OK)
    else:
        found = shutil.which(name, path=prepared.env.get("PATH", "")) is not None
    return None if found else (f'exec: "{name}": executable file not found in $PATH: '
                               "unknown (flowpod test node)")


def _classify(code: int, oom_kills: int, stop_reason: str | None) -> tuple[int, int | None, str]:
    signal = -code if code < 0 else None
    exit_code = 128 + signal if signal else code
    if oom_kills > 0:
        return exit_code, signal, "OOMKilled"
    if stop_reason == "deadline":
        return exit_code, signal, "DeadlineExceeded"
    return exit_code, signal, ("Completed" if exit_code == 0 else "Error")


async def run_once(ctx: contexts.NodeContext, pod: dict, spec: dict,
                   rt: statuses.ContainerRuntime, sandbox: Sandbox,
                   hooks: PodHooks) -> statuses.Terminated | None:
    """Run ``spec`` once. None means it never started and the pod is being stopped."""
    if hooks.stop_reason is not None:
        return None
    image = ctx.image_map.resolve(spec.get("image", ""))
    if image is None:
        await _unpullable(ctx, spec, rt, hooks)
        return None
    rt.image_id = image.image_id
    prepared = await _prepared_or_stop(ctx, pod, spec, image, sandbox, rt, hooks)
    if prepared is None:
        return None
    try:
        limit = memory_limit(spec)
    except ValueError as exc:
        limit, problem = None, str(exc)
    else:
        problem = None
        if limit is not None and not ctx.memory_cgroups.available:
            problem = f"cannot enforce resources.limits.memory: {ctx.memory_cgroups.problem}"
    if problem is not None:
        rt.set_waiting("CreateContainerError", problem)
        hooks.changed()
        await hooks.wait_stop(None)
        return None
    if hooks.stop_reason is not None:
        return None
    return await _run_process(ctx, pod, spec, rt, sandbox, hooks, prepared, limit)


async def _run_process(ctx, pod, spec, rt, sandbox, hooks, prepared: _Prepared,
                       limit: int | None) -> statuses.Terminated:
    container_id = "flowpod://" + secrets.token_hex(32)
    writer = containerlogs.LogWriter(sandbox.dir / spec["name"] / f"{rt.restart_count}.log",
                                     ctx.clock)
    started_at = ctx.clock()
    missing = _missing_executable(prepared)
    if missing is not None:
        writer.note(missing)
        writer.close()
        return statuses.Terminated(exit_code=128, reason="StartError", message=missing,
                                   started_at=started_at, finished_at=ctx.clock(),
                                   container_id=container_id)
    cgroup: cgroups.Cgroup | None = None
    if ctx.memory_cgroups.available:
        cgroup = ctx.memory_cgroups.create(f"{pod['metadata']['uid']}-{spec['name']}-"
                                    f"{rt.restart_count}", limit)
    handles: list[launching.ProcessHandle] = []

    def on_started(handle: launching.ProcessHandle) -> None:
        handles.append(handle)
        rt.set_running(container_id, started_at)
        hooks.started(handle)
        hooks.changed()

    launch = launching.LaunchSpec(argv=prepared.argv, env=prepared.env, cgroup=cgroup,
                                  working_dir=prepared.working_dir, mounts=prepared.mounts,
                                  image_paths=prepared.image_paths)
    try:
        code = await launching.run(launch, writer, on_started)
    finally:
        for handle in handles:
            hooks.finished(handle)
        writer.close()
        oom_kills = cgroup.oom_kills() if cgroup is not None else 0
        if cgroup is not None:
            cgroup.remove()
    exit_code, signal, reason = _classify(code, oom_kills, hooks.stop_reason)
    return statuses.Terminated(exit_code=exit_code, signal=signal, reason=reason,
                               started_at=started_at, finished_at=ctx.clock(),
                               container_id=container_id)
