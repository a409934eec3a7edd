"""Commands that change existing FlowRuns: `flowpod resume` and `flowpod delete`.

Role: resume moves a Paused run back to Running, the transition the in-pod engine waits for
(flowpod._runtime.pausing polls its FlowRun's state until it is Running again): one status
write built by the shared builder (flowpod.flowruns.status_patch) with a resourceVersion
precondition, re-read and re-decided after a 409. delete removes runs by name or every run of
a Deployment (the flowpod.io/deployment label). Each function takes the session, the injected
Deps and plain arguments and returns the exit code; user errors are CliErrors. Caller:
flowpod_operator.cli._commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowpod import contract, flowruns, states
from flowpod_operator._decisions.manifests import label_value
from flowpod_kube.errors import KubeError
from flowpod_operator.cli import _errors

if TYPE_CHECKING:
    from flowpod_operator.cli._actions import Deps
    from flowpod_operator.cli._client import Kube

__all__ = ["resume_run", "delete_runs", "RESUMED_MESSAGE"]

RESUMED_MESSAGE = "Resumed with `flowpod resume`"
_CONFLICT_ROUNDS = 5  # re-reads after a concurrent write before giving up


async def resume_run(kube: Kube, deps: Deps, ns: str, run: str) -> int:
    """PAUSED (name Paused) -> RUNNING, so the paused flow in its pod carries on."""
    for _ in range(_CONFLICT_ROUNDS):
        current = await kube.get_flowrun(ns, run)
        _check_resumable(current, ns, run)
        now = deps.clock()
        resumed = states.Running(RESUMED_MESSAGE, timestamp=now)
        # The one acceptance rule every writer asks (e.g. a requested cancellation wins).
        decision = states.accept(flowruns.current_state(current), resumed,
                                 cancel_requested=bool(current["spec"].get("cancel")))
        if decision.verdict is not states.Verdict.WRITE:
            raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}' cannot be resumed: "
                                   f"{decision.reason}", f"see it with `flowpod get {run} "
                                   f"-n {ns}`")
        meta = current["metadata"]
        patch = flowruns.status_patch(current.get("status"), resumed,
                                      generation=int(meta.get("generation") or 1), now=now)
        try:
            await kube.patch_flowrun_status(
                ns, run, flowruns.patch_body(meta["resourceVersion"], patch))
        except KubeError as error:
            if error.status == 409:
                continue  # written meanwhile (the engine, the operator): decide again
            raise
        deps.out.print(f"flowrun.{contract.GROUP}/{run} resumed", markup=False)
        return 0
    raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}' kept changing while being "
                           f"resumed", f"check its state with `flowpod get {run} -n {ns}` and "
                           f"try again")


def _check_resumable(current: dict, ns: str, run: str) -> None:
    state = flowruns.current_state(current)
    where = f"FlowRun '{run}' in namespace '{ns}'"
    if state is None or state.type is not states.StateType.PAUSED:
        shown = state.name if state is not None else "no state yet"
        raise _errors.CliError(f"{where} is not Paused ({shown}); only a Paused run can be "
                               f"resumed", f"see it with `flowpod get {run} -n {ns}`")
    if state.name == states.names.SUSPENDED:
        # A suspended run's process has ended: resuming means starting a new attempt that
        # skips to the suspend point, which the operator does not do yet.
        raise _errors.CliError(f"{where} is Suspended; resuming suspended runs is not "
                               f"supported yet", f"cancel it with `flowpod cancel {run} -n "
                               f"{ns}` and start a new run")


async def delete_runs(kube: Kube, deps: Deps, ns: str, names: list[str],
                      deployment: str | None) -> int:
    """Delete the named runs, or every run of ``deployment``; a missing name is reported and
    the others are still deleted (exit 1 then), as kubectl does."""
    if bool(names) == bool(deployment):
        raise _errors.CliError("name the runs to delete, or give --deployment NAME (not both)",
                               "e.g. `flowpod delete hello-20300101000000-ab12` or "
                               "`flowpod delete --deployment hello`")
    if deployment:
        selector = f"{contract.LABEL_DEPLOYMENT}={label_value(deployment)}"
        listed = await kube.list_flowruns(ns, label_selector=selector)
        names = sorted(item["metadata"]["name"] for item in listed.get("items", []))
        if not names:
            deps.err.print(f"No FlowRuns of Deployment '{deployment}' in namespace '{ns}'.",
                           markup=False)
            return 0
    code = 0
    for name in names:
        try:
            await kube.delete_flowrun(ns, name)
        except KubeError as error:
            if error.status != 404:
                raise
            deps.err.print(f"error: {error.problem}", markup=False)
            code = 1
            continue
        deps.out.print(f"flowrun.{contract.GROUP}/{name} deleted", markup=False)
    return code
