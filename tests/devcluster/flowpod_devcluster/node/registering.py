"""The Node object and its heartbeats: register with capacity and a Ready condition, keep the
status fresh, and renew the node's Lease in kube-node-lease every 10 s (without it the node
lifecycle controller marks the node Unknown and taints it after ~40 s).

Used by kubelet.py. Writes go through the node's own identity, so the Node authorizer and the
NodeRestriction admission plugin check them exactly as they check a real kubelet.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from flowpod_devcluster.node import kubeapi

__all__ = ["Capacity", "NodeRegistration", "detect_capacity"]

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.36.3"
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
STATUS_EVERY = 60.0
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


@dataclass(frozen=True)
class Capacity:
    cpu: str
    memory: str
    pods: str
    ephemeral_storage: str

    def to_api(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": self.pods,
                "ephemeral-storage": self.ephemeral_storage}


def detect_capacity(state_dir: Path, *, cpu: str | None, pods: int) -> Capacity:
    """Memory and disk as the machine has them; cpu as given (the node does not enforce it)."""
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    disk_kib = shutil.disk_usage(state_dir).total // 1024
    return Capacity(cpu=cpu or str(os.cpu_count() or 1), memory=f"{mem_kib}Ki", pods=str(pods),
                    ephemeral_storage=f"{disk_kib}Ki")


def _micro(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class NodeRegistration:
    def __init__(self, api: kubeapi.Api, *, node_name: str, node_ip: str, kubelet_port: int,
                 capacity: Capacity, clock: Callable[[], datetime.datetime]) -> None:
        self._api, self._name, self._ip = api, node_name, node_ip
        self._port, self._capacity, self._clock = kubelet_port, capacity, clock
        self._node: dict = {}
        self._ready_since = clock()

    @property
    def _path(self) -> str:
        return f"/api/v1/nodes/{self._name}"

    def _object(self) -> dict:
        labels = {"kubernetes.io/hostname": self._name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": _arch(), "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": _arch()}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self._name, "labels": labels}, "spec": {}}

    def _status(self) -> dict:
        now, since = _seconds(self._clock()), _seconds(self._ready_since)

        def cond(kind: str, status: str, reason: str, message: str) -> dict:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": since}
        uname = platform.uname()
        return {
            "capacity": self._capacity.to_api(), "allocatable": self._capacity.to_api(),
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": self._ip},
                          {"type": "Hostname", "address": self._name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"), "systemUUID": _read(
                    "/sys/class/dmi/id/product_uuid"), "bootID": _read(
                    "/proc/sys/kernel/random/boot_id"), "kernelVersion": uname.release,
                "osImage": "flowpod test node (processes)", "operatingSystem": "linux",
                "architecture": _arch(), "containerRuntimeVersion": "flowpod://0.1",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": ""},
        }

    async def register(self) -> None:
        """Create the Node (or adopt an existing one) and publish its status once."""
        while True:
            try:
                self._node = await self._api.post("/api/v1/nodes", self._object())
                break
            except kubeapi.ApiError as exc:
                if exc.status == 409:
                    self._node = await self._api.get(self._path)
                    break
                log.warning("registering node %s: %s; retrying", self._name, exc)
                await anyio.sleep(1.0)
        await self.publish_status()
        await self._renew_lease()

    async def publish_status(self) -> None:
        for _ in range(10):
            body = {"metadata": {"resourceVersion": self._node["metadata"]["resourceVersion"]},
                    "status": self._status()}
            try:
                self._node = await self._api.merge_patch(self._path + "/status", body)
                return
            except kubeapi.ApiError as exc:
                if exc.status != 409:
                    raise
                self._node = await self._api.get(self._path)

    async def _renew_lease(self) -> None:
        spec = {"holderIdentity": self._name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _micro(self._clock())}
        try:
            await self._api.merge_patch(f"{_LEASES}/{self._name}", {"spec": spec})
        except kubeapi.ApiError as exc:
            if exc.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self._name,
                     "uid": self._node["metadata"]["uid"]}
            await self._api.post(_LEASES, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec,
                "metadata": {"name": self._name, "namespace": "kube-node-lease",
                             "ownerReferences": [owner]}})

    async def run(self) -> None:
        """Renew the Lease every 10 s and refresh the status every minute, forever."""
        last_status = anyio.current_time()
        while True:
            await anyio.sleep(RENEW_EVERY)
            try:
                await self._renew_lease()
                if anyio.current_time() - last_status >= STATUS_EVERY:
                    await self.publish_status()
                    last_status = anyio.current_time()
            except kubeapi.ApiError as exc:
                log.warning("node heartbeat: %s", exc)


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
