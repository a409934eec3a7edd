"""Which operator shard owns a FlowRun, a Deployment, or a run's Job or Pod.

Role: with `--shards N --shard I`, N operators split the work by a stable hash (the first 8
bytes of sha256, never Python's per-process `hash()`) of `namespace/name`, where name is the
run's Deployment -- so one shard holds all runs of a Deployment and its schedule, and
concurrency limits stay exact -- or, for a run without a Deployment, the run itself. Jobs
and Pods are told apart by the labels the operator gives them (contract.LABEL_DEPLOYMENT,
else contract.LABEL_FLOW_RUN), which hold the same names as label values; the hash is taken
over label values on both sides, so long names agree. Pure. Callers:
flowpod_operator._runtime.intake (what to ignore), running (flags).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from flowpod import contract

__all__ = ["Shard", "shard_of"]


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard, 0..shards-1, of `name` (a Deployment's or a run's) in `namespace`."""
    key = f"{namespace}/{contract.label_value(name)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % shards


@dataclass(frozen=True)
class Shard:
    """This operator's part: shard `index` of `count` (the default, 0 of 1, owns all)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("--shards must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"--shard must be from 0 to {self.count - 1} (--shards "
                             f"{self.count}), got {self.index}")

    def owns(self, namespace: str, name: str) -> bool:
        return self.count == 1 or shard_of(namespace, name, self.count) == self.index

    def owns_flowrun(self, body: Mapping[str, Any]) -> bool:
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        return self.owns(meta.get("namespace") or "",
                         spec.get("deploymentName") or meta.get("name") or "")

    def owns_deployment(self, body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        return self.owns(meta.get("namespace") or "", meta.get("name") or "")

    def owns_child(self, body: Mapping[str, Any]) -> bool:
        """A Job or Pod of a run, by the labels the operator gave it."""
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        name = labels.get(contract.LABEL_DEPLOYMENT) or labels.get(contract.LABEL_FLOW_RUN)
        return self.owns(meta.get("namespace") or "", name or "")
