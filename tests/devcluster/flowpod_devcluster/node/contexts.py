"""What every pod worker on this node shares: the API client, the image map, the memory
cgroups, the node's addresses and where pod files go. Built once by kubelet.py and passed
explicitly to podworkers and containerrunning (no globals).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowpod_devcluster.node import cgroups, environment, images, kubeapi

__all__ = ["NodeContext", "utc_now"]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class NodeContext:
    api: kubeapi.Api
    image_map: images.ImageMap
    memory_cgroups: cgroups.MemoryCgroups
    node_name: str
    node_ip: str
    api_host: str
    api_port: int
    pods_dir: Path
    allocatable_cpu: str
    allocatable_memory: str
    clock: Callable[[], datetime.datetime] = utc_now

    def facts(self) -> environment.PodFacts:
        return environment.PodFacts(node_ip=self.node_ip, pod_ip=self.node_ip,
                                    allocatable_cpu=self.allocatable_cpu,
                                    allocatable_memory=self.allocatable_memory)

    def service_env(self) -> dict[str, str]:
        """The `kubernetes` Service's variables, which every container gets."""
        port = str(self.api_port)
        return {"KUBERNETES_SERVICE_HOST": self.api_host, "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port,
                "KUBERNETES_PORT": f"tcp://{self.api_host}:{port}"}
