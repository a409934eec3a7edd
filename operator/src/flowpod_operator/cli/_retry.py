"""`flowpod retry RUN`: a new FlowRun with the spec of a finished one.

Role: a final state is never left, so retrying a run means creating a new one, named
`<run>-retry-<n>` and labelled and annotated as a retry of the old one
(flowpod.contract.LABEL_RETRY_OF / ANNOTATION_RETRY_OF). With --from-failure it also names
the old run in spec.reuseResultsFrom (and pins spec.resultStorage to the storage that run
used), so the engine reuses the results the old run's tasks persisted, by their
deterministic task-run keys, and runs only what did not complete. `retry_manifest` is the
pure part. Caller: flowpod_operator.cli._commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from flowpod import contract, flowruns
from flowpod_kube.errors import KubeError
from flowpod_operator._decisions.manifests import label_value
from flowpod_operator._decisions.storage import result_storage
from flowpod_operator.cli import _actions, _errors
from flowpod_operator.cli._naming import MAX_RUN_NAME

if TYPE_CHECKING:
    from flowpod_operator.cli._actions import Deps
    from flowpod_operator.cli._client import Kube

__all__ = ["retry_run", "retry_manifest", "retry_name"]

# What a retry does not take over: it is cancelled on its own, starts now, and reads
# earlier results only when asked (--from-failure).
_NOT_COPIED = ("cancel", "scheduledTime", "reuseResultsFrom")
_MAX_NAME_TRIES = 50


def retry_name(run: str, number: int) -> str:
    """`<run>-retry-<number>`, the run's name cut so the whole fits MAX_RUN_NAME."""
    tail = f"-retry-{number}"
    return f"{run[: MAX_RUN_NAME - len(tail)].rstrip('-.')}{tail}"


def retry_manifest(old: Mapping[str, Any], deployment: Mapping[str, Any] | None, name: str,
                   *, from_failure: bool) -> dict[str, Any]:
    """The new FlowRun retrying `old` (a CliError when --from-failure cannot work)."""
    meta = old["metadata"]
    spec = {k: v for k, v in (old.get("spec") or {}).items() if k not in _NOT_COPIED}
    if from_failure:
        storage = result_storage(old, deployment)
        if storage is None:
            raise _errors.CliError(
                f"FlowRun '{meta['name']}' kept no task results to reuse: it had no result "
                f"storage (spec.resultStorage, on the run or its Deployment)",
                f"rerun every task with `flowpod retry {meta['name']}`, and set "
                f"spec.resultStorage on the Deployment so later runs can be retried from "
                f"their failure")
        spec["resultStorage"] = storage  # where the old run's results are, whatever changes
        spec["reuseResultsFrom"] = {"flowRunName": meta["name"], "flowRunUid": meta["uid"]}
    labels = {contract.LABEL_RETRY_OF: label_value(meta["name"])}
    deployment_label = (meta.get("labels") or {}).get(contract.LABEL_DEPLOYMENT)
    if deployment_label:
        labels[contract.LABEL_DEPLOYMENT] = deployment_label
    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": {"name": name, "labels": labels,
                         "annotations": {contract.ANNOTATION_RETRY_OF: meta["name"]}},
            "spec": spec}


async def retry_run(kube: Kube, deps: Deps, ns: str, run: str, *, from_failure: bool,
                    watch: bool, logs: bool) -> int:
    """Create the retry of the finished run `run`; with `watch`, follow it to its end."""
    old = await kube.get_flowrun(ns, run)
    state = flowruns.current_state(old)
    if state is None or not state.is_final():
        shown = state.name if state is not None else "no state yet"
        raise _errors.CliError(
            f"FlowRun '{run}' in namespace '{ns}' has not ended ({shown}); only a finished "
            f"run can be retried", f"wait for it with `flowpod watch {run} -n {ns}`, or "
                                   f"cancel it with `flowpod cancel {run} -n {ns}`")
    name = (old.get("spec") or {}).get("deploymentName")
    deployment = await kube.get_deployment(ns, name) if name else None
    created = await _create(kube, ns, old, deployment, run, from_failure)
    new = created["metadata"]["name"]
    how = " from its failure (reusing its completed tasks)" if from_failure else ""
    deps.out.print(f"flowrun.{contract.GROUP}/{new} created, retrying {run}{how}",
                   markup=False)
    if not watch:
        return 0
    return await _actions.follow_and_summarise(kube, deps, ns, new, logs=logs, first=created)


async def _create(kube: Kube, ns: str, old: Mapping[str, Any],
                  deployment: Mapping[str, Any] | None, run: str,
                  from_failure: bool) -> dict[str, Any]:
    """POST the retry under the first free `<run>-retry-<n>`."""
    for number in range(1, _MAX_NAME_TRIES + 1):
        body = retry_manifest(old, deployment, retry_name(run, number),
                              from_failure=from_failure)
        try:
            return await kube.create_flowrun(ns, body)
        except KubeError as error:
            if error.status != 409:
                raise
    raise _errors.CliError(f"FlowRun '{run}' already has {_MAX_NAME_TRIES} retries in "
                           f"namespace '{ns}'", f"delete old ones with `flowpod delete "
                           f"{retry_name(run, 1)} ...`")
