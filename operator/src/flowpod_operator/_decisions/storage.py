"""A run's result storage: which URL it uses and whether fsspec knows its protocol.

Role: pure functions over a FlowRun and its Deployment. `result_storage` is the URL the run
keeps persisted results in (the FlowRun's spec.resultStorage, else its Deployment's), which
the Job passes to the engine (flowpod.contract.ENV_RESULT_STORAGE); `storage_problem` is the
message that ends the run Failed before any pod when fsspec does not know the URL's protocol
(the CRD's CEL rule already checked its shape). Whether the storage is writable only the pod
can tell: the engine probes it when the run starts. Callers:
flowpod_operator._decisions.manifests (the env), validating (start_problems), the CLI
(`flowpod retry --from-failure` needs the old run's storage).
"""

from __future__ import annotations

from typing import Any, Mapping

from fsspec.registry import available_protocols

__all__ = ["result_storage", "storage_problem"]


def result_storage(flowrun: Mapping[str, Any],
                   deployment: Mapping[str, Any] | None) -> str | None:
    """The run's result storage URL, or None when neither spec sets one."""
    own = (flowrun.get("spec") or {}).get("resultStorage")
    return own or ((deployment or {}).get("spec") or {}).get("resultStorage") or None


def _field(flowrun: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> str:
    if (flowrun.get("spec") or {}).get("resultStorage") or deployment is None:
        return f"spec.resultStorage of FlowRun '{(flowrun.get('metadata') or {}).get('name')}'"
    return f"spec.resultStorage of Deployment '{(deployment.get('metadata') or {}).get('name')}'"


def storage_problem(flowrun: Mapping[str, Any],
                    deployment: Mapping[str, Any] | None) -> str | None:
    """Why the run's result storage cannot work, or None (also when there is none)."""
    url = result_storage(flowrun, deployment)
    if url is None:
        return None
    protocol = url.split("://", 1)[0].lower() if "://" in url else ""
    if protocol in available_protocols():
        return None
    return (f"{_field(flowrun, deployment)} is {url!r}, whose protocol {protocol!r} fsspec "
            f"does not know; use file:///path (a mounted volume), s3://bucket/prefix, "
            f"gs://bucket/prefix or another fsspec protocol")
