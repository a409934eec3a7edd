"""One pod's life on the node, from binding to removal, as the kubelet lives it.

Created by kubelet.py for every pod bound to this node; fed the latest pod object by the watch
(`observe`) and told when the object is gone (`vanish`) or the node stops (`shutdown`). It
prepares volumes, runs init containers in order and then all containers together (restarting
them per restartPolicy with CrashLoopBackOff), enforces activeDeadlineSeconds and graceful
deletion (SIGTERM, grace, SIGKILL, then delete with grace 0 and a uid precondition), and
publishes status by merge patch with a resourceVersion precondition.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import anyio

from flowpod_devcluster.node import (containerrunning, contexts, environment, kubeapi,
                                     launching, statuses, volumes)

__all__ = ["PodWorker", "delete_pod"]

log = logging.getLogger(__name__)

_MIN_GRACE = 2  # seconds; the kubelet never gives a container less to react to SIGTERM
_BACKOFF = (10.0, 300.0)


def _restarts(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


class PodWorker:
    def __init__(self, ctx: contexts.NodeContext, pod: dict) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        self.ctx, self.pod = ctx, pod
        self.uid, self.namespace, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.dir = ctx.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"
        self.rt = statuses.PodRuntime(
            init_containers=[statuses.ContainerRuntime(c["name"], c.get("image", ""))
                             for c in spec.get("initContainers") or []],
            containers=[statuses.ContainerRuntime(c["name"], c.get("image", ""))
                        for c in spec.get("containers") or []])
        self.stop_reason: str | None = None
        self.done = False
        self._stop_requested = anyio.Event()
        self._stop_deadline = 0.0
        self._handles: dict[int, launching.ProcessHandle] = {}
        self._dirty, self._published_event = anyio.Event(), anyio.Event()
        self._version = self._published = 0
        self._deletion_seen = anyio.Event()
        self._live_done = anyio.Event()
        self._gone = False

    # -- told by the kubelet ------------------------------------------------------------------

    def observe(self, pod: dict) -> None:
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self._gone:
            grace = int(meta.get("deletionGracePeriodSeconds") or 0)
            self.request_stop("deleted", max(grace, _MIN_GRACE))
            self._deletion_seen.set()

    def vanish(self) -> None:
        """The API object is gone (e.g. force-deleted): kill at once, report nothing."""
        self._gone = True
        self.request_stop("vanished", 0)
        self._deletion_seen.set()

    def shutdown(self, grace: float) -> None:
        self._gone = True
        self.request_stop("shutdown", grace)
        self._deletion_seen.set()

    def request_stop(self, reason: str, grace: float) -> None:
        deadline = anyio.current_time() + grace
        if self.stop_reason is None:
            self.stop_reason, self._stop_deadline = reason, deadline
            self._stop_requested.set()
        elif deadline < self._stop_deadline:  # a shorter grace wins, as on a real node
            self._stop_deadline = deadline

    def log_target(self, container: str, *, previous: bool) -> tuple[Path, Callable[[], bool]]:
        """The log file of ``container`` (current or previous run) and whether it may grow."""
        crt = next((c for c in self.rt.init_containers + self.rt.containers
                    if c.name == container), None)
        if crt is None:
            raise LookupError(f"container {container} is not valid for pod {self.name}")
        # Run N logs to N.log. While a container backs off before a restart, its last run is
        # both what `kubectl logs` and what `kubectl logs --previous` show.
        has_current = crt.running_since is not None or crt.terminated is not None
        current = crt.restart_count if has_current else crt.restart_count - 1
        index = crt.restart_count - 1 if previous else current
        if index < 0:
            if previous:
                raise LookupError(f'previous terminated container "{container}" in pod '
                                  f'"{self.name}" not found')
            raise LookupError(f'container "{container}" in pod "{self.name}" is waiting to '
                              f"start: {crt.waiting_reason or 'ContainerCreating'}")
        run = crt.container_id

        def live() -> bool:
            return not previous and crt.running_since is not None and crt.container_id == run
        return self.dir / container / f"{index}.log", live

    # -- hooks for containerrunning -----------------------------------------------------------

    def changed(self) -> None:
        self._version += 1
        self._dirty.set()

    async def wait_stop(self, seconds: float | None) -> bool:
        with anyio.move_on_after(seconds):
            await self._stop_requested.wait()
        return self._stop_requested.is_set()

    def started(self, handle: launching.ProcessHandle) -> None:
        self._handles[handle.pid] = handle

    def finished(self, handle: launching.ProcessHandle) -> None:
        self._handles.pop(handle.pid, None)

    # -- the life -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._publish_loop)
                tg.start_soon(self._enforce_stop)
                tg.start_soon(self._watch_deadline)
                await self._live()
                self._live_done.set()
                await self._settle()
                tg.cancel_scope.cancel()
        finally:
            self.done = True
            shutil.rmtree(self.dir / "volumes", ignore_errors=True)  # holds tokens and secrets

    @property
    def _policy(self) -> str:
        return self.pod["spec"].get("restartPolicy") or "Always"

    async def _live(self) -> None:
        self.rt.start_time = self.ctx.clock()
        self.changed()
        if self.stop_reason is not None:
            return  # deleted before it ever started
        sandbox = await self._sandbox()
        if sandbox is None:
            return
        self.rt.sandbox_ready = True
        self.changed()
        specs = self.pod["spec"]
        if self.rt.init_containers:
            for crt in self.rt.containers:
                crt.set_waiting("PodInitializing")
            self.changed()
        for spec, crt in zip(specs.get("initContainers") or [], self.rt.init_containers):
            if not await self._run_init(spec, crt, sandbox):
                return
        self.rt.initialized = True
        self.changed()
        async with anyio.create_task_group() as tg:
            for spec, crt in zip(specs.get("containers") or [], self.rt.containers):
                tg.start_soon(self._run_container, spec, crt, sandbox)

    async def _sandbox(self) -> containerrunning.Sandbox | None:
        while True:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                found = await volumes.prepare(self.ctx.api, self.pod, self.dir / "volumes",
                                              self.ctx.facts())
                return containerrunning.Sandbox(dir=self.dir, volumes=found)
            except (environment.ConfigError, KeyError, ValueError, OSError) as exc:
                # Like the kubelet's FailedMount: report, retry, never give the pod up.
                for crt in self.rt.init_containers + self.rt.containers:
                    crt.set_waiting("ContainerCreating", f"MountVolume.SetUp failed: {exc}")
                self.changed()
                if await self.wait_stop(1.0):
                    return None

    async def _run_init(self, spec: dict, crt: statuses.ContainerRuntime,
                        sandbox: containerrunning.Sandbox) -> bool:
        backoff = _BACKOFF[0]
        while True:
            result = await containerrunning.run_once(self.ctx, self.pod, spec, crt, sandbox, self)
            if result is None:
                return False
            crt.set_terminated(result)
            self.changed()
            if result.exit_code == 0:
                return True
            if self.stop_reason is not None:
                return False
            if self._policy == "Never":
                self.rt.final_phase = "Failed"
                return False
            if not await self._back_off(crt, backoff):
                return False
            backoff = min(backoff * 2, _BACKOFF[1])

    async def _run_container(self, spec: dict, crt: statuses.ContainerRuntime,
                             sandbox: containerrunning.Sandbox) -> None:
        backoff = _BACKOFF[0]
        while True:
            result = await containerrunning.run_once(self.ctx, self.pod, spec, crt, sandbox, self)
            if result is None:
                return
            crt.set_terminated(result)
            self.changed()
            if self.stop_reason is not None or not _restarts(self._policy, result.exit_code):
                return
            if not await self._back_off(crt, backoff):
                return
            backoff = min(backoff * 2, _BACKOFF[1])

    async def _back_off(self, crt: statuses.ContainerRuntime, seconds: float) -> bool:
        crt.prepare_restart("CrashLoopBackOff", f"back-off {seconds:.0f}s restarting failed "
                            f"container={crt.name} pod={self.name}_{self.namespace}({self.uid})")
        self.changed()
        return not await self.wait_stop(seconds)

    async def _enforce_stop(self) -> None:
        await self._stop_requested.wait()
        warned: set[int] = set()
        while not self._live_done.is_set():
            overdue = anyio.current_time() >= self._stop_deadline
            for pid, handle in list(self._handles.items()):
                if overdue:
                    handle.signal_group(signal.SIGKILL)
                elif pid not in warned:
                    handle.signal_group(signal.SIGTERM)
                    warned.add(pid)
            await anyio.sleep(0.05)

    async def _watch_deadline(self) -> None:
        while not self._live_done.is_set():
            seconds = self.pod["spec"].get("activeDeadlineSeconds")
            start = self.rt.start_time
            if seconds is not None and start is not None:
                left = (start + datetime.timedelta(seconds=int(seconds)) - self.ctx.clock())
                if left.total_seconds() <= 0:
                    break
                await anyio.sleep(min(left.total_seconds(), 1.0))
            else:
                await anyio.sleep(1.0)
        else:
            return
        self.rt.final_phase, self.rt.reason = "Failed", "DeadlineExceeded"
        self.rt.message = statuses.DEADLINE_MESSAGE
        self.changed()
        grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        self.request_stop("deadline", max(int(grace), _MIN_GRACE))

    def _deletion_phase(self) -> str:
        succeeded = self.rt.initialized and all(
            c.terminated is not None and c.terminated.exit_code == 0 for c in self.rt.containers)
        return "Succeeded" if succeeded else "Failed"

    async def _settle(self) -> None:
        if self._gone:
            return
        if self.stop_reason == "deleted" and self.rt.final_phase is None:
            self.rt.final_phase = self._deletion_phase()
        self.changed()
        await self._flush()
        await self._deletion_seen.wait()
        if not self._gone:
            await self._delete_now()

    # -- talking to the API -------------------------------------------------------------------

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            version = self._version
            await self._patch_status()
            self._published = version
            event, self._published_event = self._published_event, anyio.Event()
            event.set()

    async def _flush(self) -> None:
        while self._published < self._version and not self._gone:
            await self._published_event.wait()

    async def _patch_status(self) -> None:
        for attempt in range(20):
            if self._gone:
                return
            status = statuses.pod_status(
                self.rt, restart_policy=self._policy, node_ip=self.ctx.node_ip,
                existing_conditions=(self.pod.get("status") or {}).get("conditions") or [],
                now=self.ctx.clock())
            body = {"metadata": {"resourceVersion": self.pod["metadata"]["resourceVersion"]},
                    "status": status}
            try:
                self.observe(await self.ctx.api.merge_patch(self._path + "/status", body))
                return
            except kubeapi.ApiError as exc:
                if exc.status == 404:
                    self._gone = True
                    return
                if exc.status == 409:
                    await self._refresh()
                    continue
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc)
            await anyio.sleep(min(0.1 * 2 ** attempt, 2.0))

    async def _refresh(self) -> None:
        try:
            fresh = await self.ctx.api.get(self._path)
        except kubeapi.ApiError as exc:
            if exc.status == 404:
                self._gone = True
            return
        if fresh["metadata"]["uid"] == self.uid:
            self.observe(fresh)
        else:
            self._gone = True

    async def _delete_now(self) -> None:
        await delete_pod(self.ctx.api, self.pod)


async def delete_pod(api: kubeapi.Api, pod: dict) -> None:
    """Remove a pod whose containers are all gone: grace 0, and only this very pod (uid)."""
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]}}
    for attempt in range(20):
        try:
            await api.delete(path, body)
            return
        except kubeapi.ApiError as exc:
            if exc.status in (404, 409):  # gone already, or a new pod with the same name
                return
            log.warning("delete %s/%s: %s", meta["namespace"], meta["name"], exc)
        await anyio.sleep(min(0.1 * 2 ** attempt, 2.0))
