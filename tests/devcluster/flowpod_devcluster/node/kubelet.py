"""The test node's top level: wires registration, the pod watch, pod workers and the log
endpoint together, and stops every container when the node itself is stopped.

Used by __main__.py. Keeps one PodWorker per pod uid until the API reports the pod deleted.
"""

from __future__ import annotations

import logging
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc

from flowpod_devcluster.node import contexts, podworkers, registering, serving, syncing

__all__ = ["Kubelet"]

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE = 3.0


class Kubelet:
    def __init__(self, ctx: contexts.NodeContext, *, capacity: registering.Capacity,
                 tls: ssl.SSLContext) -> None:
        self.ctx = ctx
        self._capacity = capacity
        self._log_server = serving.LogServer(self.locate_log, tls, host=ctx.node_ip,
                                             clock=ctx.clock)
        self._workers: dict[str, podworkers.PodWorker] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self) -> None:
        """Register and serve until cancelled; then stop every container."""
        if self.ctx.pods_dir.exists():
            shutil.rmtree(self.ctx.pods_dir)  # a node starts fresh; restart-safety is not a goal
        self.ctx.pods_dir.mkdir(parents=True)
        port = await self._log_server.bind()
        registration = registering.NodeRegistration(
            self.ctx.api, node_name=self.ctx.node_name, node_ip=self.ctx.node_ip,
            kubelet_port=port, capacity=self._capacity, clock=self.ctx.clock)
        await registration.register()
        log.info("node %s registered; containerLogs on %s:%d", self.ctx.node_name,
                 self.ctx.node_ip, port)
        sync = syncing.PodSync(self.ctx.api, self.ctx.node_name, on_pod=self._on_pod,
                               on_deleted=self._on_deleted, known=self._known_pods)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(registration.run)
                tg.start_soon(self._log_server.serve)
                tg.start_soon(sync.run)
        finally:
            # Cancelled workers SIGKILL their processes on the way out; the subtree goes last.
            self.ctx.memory_cgroups.close()

    async def stop(self) -> None:
        """Graceful node stop: SIGTERM every container, SIGKILL after a short grace, return."""
        workers = [w for w in self._workers.values() if not w.done]
        for worker in workers:
            worker.shutdown(_SHUTDOWN_GRACE)
        with anyio.move_on_after(_SHUTDOWN_GRACE + 2):
            while any(not w.done for w in workers):
                await anyio.sleep(0.05)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _known_pods(self) -> list[dict]:
        return [w.pod for w in self._workers.values()]

    def _on_pod(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        worker = self._workers.get(uid)
        assert self._tg is not None
        if worker is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                # Finished before this node knew it: nothing to run, at most to remove.
                if pod["metadata"].get("deletionTimestamp"):
                    self._tg.start_soon(podworkers.delete_pod, self.ctx.api, pod)
                return
            worker = podworkers.PodWorker(self.ctx, pod)
            self._workers[uid] = worker
            self._tg.start_soon(self._run_worker, worker)
        if not worker.done:
            worker.observe(pod)

    async def _run_worker(self, worker: podworkers.PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            log.exception("pod %s/%s: worker failed", worker.namespace, worker.name)

    def _on_deleted(self, pod: dict) -> None:
        worker = self._workers.pop(pod["metadata"]["uid"], None)
        if worker is not None and not worker.done:
            worker.vanish()

    def locate_log(self, namespace: str, name: str, container: str,
                   previous: bool) -> tuple[Path, Callable[[], bool]]:
        candidates = [w for w in self._workers.values()
                      if w.namespace == namespace and w.name == name]
        if not candidates:
            raise KeyError(f'pod "{name}" not found in namespace "{namespace}" on node '
                           f"{self.ctx.node_name}")
        # Several workers share a name only while an old pod is still going away.
        current = [w for w in candidates if not w.pod["metadata"].get("deletionTimestamp")]
        return (current or candidates)[-1].log_target(container, previous=previous)
