"""The in-pod engine's result storage: which store a run uses, checked before user code runs.

Role: `prepare` turns the result storage URL of the Job's env
(flowpod.contract.ENV_RESULT_STORAGE, set by the operator from spec.resultStorage) and the
FlowRun's spec.reuseResultsFrom into the RunDeps of the run, or into the message that ends
the run Failed at once: a store that is missing or not writable (probed with
flowpod.results.ResultStore.check_usable), an earlier run's results asked for without a
store, or a flow that persists its results with nowhere durable to put them. Each message
names the field to fix. `keeper` stores a flow result too large for the status and
returns its URL (status.result.reference). Caller: flowpod.engine._in_pod.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import anyio

from flowpod._runtime.deps import RunDeps
from flowpod.results import ResultStorageError, ResultStore

__all__ = ["prepare", "keeper", "field_name"]


def field_name(flowrun: Mapping[str, Any]) -> str:
    """The spec.resultStorage a person edits for this run: the FlowRun's own, or its
    Deployment's."""
    spec = flowrun.get("spec") or {}
    meta = flowrun.get("metadata") or {}
    if spec.get("resultStorage") or not spec.get("deploymentName"):
        return f"spec.resultStorage of FlowRun '{meta.get('name')}'"
    return f"spec.resultStorage of Deployment '{spec['deploymentName']}'"


def _reused_run(flowrun: Mapping[str, Any]) -> tuple[str, str] | None:
    source = (flowrun.get("spec") or {}).get("reuseResultsFrom") or {}
    uid = source.get("flowRunUid")
    return (str(source.get("flowRunName") or uid), str(uid)) if uid else None


async def prepare(url: str | None, flowrun: Mapping[str, Any], flow: Any) -> RunDeps | str:
    """The run's RunDeps for the result storage `url` (from contract.ENV_RESULT_STORAGE),
    or the Failed message when its storage cannot work."""
    reused = _reused_run(flowrun)
    field = field_name(flowrun)
    if not url:
        if reused is not None:
            return (f"spec.reuseResultsFrom asks for the results of FlowRun '{reused[0]}', "
                    f"but this run has no result storage; set {field} to where that run "
                    f"kept them")
        if getattr(flow, "persist_result", False):
            return (f"Flow '{flow.name}' persists its results (persist_result=True), but the "
                    f"run has no result storage, so they would be lost with the pod; set "
                    f"{field} to an fsspec URL such as file:///mnt/results on a mounted "
                    f"volume")
        return RunDeps()
    store = ResultStore(url)
    try:
        await anyio.to_thread.run_sync(store.check_usable)
    except ResultStorageError as exc:
        return (f"The result storage {url!r} cannot be used: {exc}; fix {field} (for "
                f"file://, mount a writable volume at that path through "
                f"spec.podTemplate.volumes and volumeMounts)")
    return RunDeps(result_dir=url, reuse_results_from=reused[1] if reused else None)


def keeper(url: str | None, run_id: str) -> Callable[[Any], str] | None:
    """Stores a flow's result under the run in the storage at `url` and returns the value's
    URL; None without a storage (a file inside the pod would die with it)."""
    if not url:
        return None
    store = ResultStore(url)

    def keep(value: Any) -> str:
        path = store.path_for("runs", run_id, "flow-result.pickle")
        store.write(path, value)
        return store.url_for(path)

    return keep
