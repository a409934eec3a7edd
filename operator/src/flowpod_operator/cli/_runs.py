"""Commands that change existing FlowRuns: `flowpod resume` and `flowpod delete`.

Role: resume sets spec.resume (the key of the run's current pause, status.pause.key, and
the input) with one JSON Patch, then watches the FlowRun for the operator's answer: it
validates the input against the pause's schema and either resumes the run (status.resumed:
a Paused run goes Running in its pod, a Suspended one gets a new attempt) or refuses it
(status.pause.refused, whose message is printed). delete removes runs by name or every run of
a Deployment (the flowpod.io/deployment label). Each function takes the session, the injected
Deps and plain arguments and returns the exit code; user errors are CliErrors. Caller:
flowpod_operator.cli._commands.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import anyio

from flowpod import contract, flowruns, states
from flowpod_operator._decisions.manifests import label_value
from flowpod_kube.errors import KubeError
from flowpod_operator.cli import _errors, _watching, _wirejson

if TYPE_CHECKING:
    from flowpod_operator.cli._actions import Deps
    from flowpod_operator.cli._client import Kube

__all__ = ["resume_run", "parse_input", "delete_runs", "RESUME_ANSWER_SECONDS"]

# How long `flowpod resume` waits for the operator to accept or refuse the resume.
RESUME_ANSWER_SECONDS = 30.0


async def resume_run(kube: Kube, deps: Deps, ns: str, run: str, run_input: Any = None, *,
                     timeout: float = RESUME_ANSWER_SECONDS) -> int:
    """Set spec.resume {key of the current pause, input} on a Paused or Suspended run and
    wait for the operator's answer: 0 once it resumed the run, a CliError with the
    operator's message when it refused the input."""
    current = await kube.get_flowrun(ns, run)
    key = _check_resumable(current, ns, run)
    resume = {"key": key, "input": run_input}
    ops = [{"op": "add", "path": f"/spec/{contract.SPEC_RESUME}", "value": resume}]
    written = await kube.patch_flowrun_json(ns, run, ops)
    generation = int(written["metadata"].get("generation") or 0)
    # The same spec.resume again changes nothing: its answer is already there.
    verdict = _verdict(written, generation, ns, run)
    updates = _watching.run_updates(kube, ns, run, written["metadata"]["resourceVersion"])
    async with aclosing(updates):
        with anyio.move_on_after(timeout):
            while verdict is None:
                verdict = _verdict(await anext(updates), generation, ns, run)
    if verdict is not None:
        deps.out.print(f"flowrun.{contract.GROUP}/{run} resumed ({verdict})", markup=False)
        return 0
    raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}': no operator answered the "
                           f"resume within {timeout:.0f} s", "check that the flowpod operator "
                           "runs and watches this namespace; spec.resume stays set and is "
                           "answered when it does")


def parse_input(input_json: str | None, fields: list[str] | None) -> Any:
    """The resume input from --input JSON or -i KEY=VALUE fields (not both); None without."""
    if input_json is not None and fields:
        raise _errors.CliError("give the input either as --input JSON or as -i KEY=VALUE "
                               "fields, not both", "e.g. --input '{\"approved\": true}' or "
                               "-i approved=true")
    if input_json is not None:
        try:
            return json.loads(input_json, parse_constant=_no_constant)
        except ValueError as exc:
            raise _errors.CliError(f"--input is not JSON: {exc}", "quote it for the shell, "
                                   "e.g. --input '{\"approved\": true}' or --input "
                                   "'\"yes\"'") from None
    if not fields:
        return None
    return _wirejson.parse_pairs(fields, "input field",
                                 "write e.g. -i approved=true -i approver=ada")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _verdict(flowrun: dict, generation: int, ns: str, run: str) -> str | None:
    """The state name once the operator accepted spec.resume of `generation`, None while it
    has not answered; a CliError when it refused it or the run ended meanwhile."""
    status = flowrun.get("status") or {}
    if (status.get(contract.STATUS_RESUMED) or {}).get("generation") == generation:
        state = flowruns.current_state(flowrun)
        return state.name if state is not None else "resumed"
    refused = (contract.pause_of(flowrun) or {}).get("refused") or {}
    if refused.get("generation") == generation:
        raise _errors.CliError(str(refused.get("message")), "resume again with input that "
                               "matches status.pause.inputSchema (see `kubectl get flowrun "
                               f"{run} -n {ns} -o jsonpath='{{.status.pause.inputSchema}}'`)")
    state = flowruns.current_state(flowrun)
    if state is not None and state.is_final():
        raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}' ended {state.name} before "
                               f"it was resumed: {state.message}",
                               f"see it with `flowpod get {run} -n {ns}`")
    return None


def _check_resumable(current: dict, ns: str, run: str) -> str:
    """The key of the run's current pause; a CliError when it is not paused."""
    state = flowruns.current_state(current)
    where = f"FlowRun '{run}' in namespace '{ns}'"
    if state is None or state.type is not states.StateType.PAUSED:
        shown = state.name if state is not None else "no state yet"
        raise _errors.CliError(f"{where} is not Paused or Suspended ({shown}); only a paused "
                               f"run can be resumed", f"see it with `flowpod get {run} -n {ns}`")
    pause = contract.pause_of(current)
    if pause is None or not pause.get("key"):
        raise _errors.CliError(f"{where} is {state.name} but has published no pause "
                               f"(status.pause); its engine predates resume with input",
                               f"cancel it with `flowpod cancel {run} -n {ns}`")
    return str(pause["key"])


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
