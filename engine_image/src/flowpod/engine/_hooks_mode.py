"""The hooks mode of the in-pod engine: a hook Job runs a killed run's final hooks.

Role: when a flow-run pod was killed before its engine could run the flow's on_crashed or
on_cancellation hooks (OOM, SIGKILL, eviction, a lost node, a deadline, a deleted pod), the
operator writes the final state and starts a hook Job: the same image and command, with
flowpod.contract.ENV_HOOKS naming the hook option. This module is what that pod runs: it
re-reads the FlowRun, checks that the operator's hook Job holds the claim and that the
hooks have not run yet, loads the flow, runs exactly those hooks with the final state
(flowpod.engine.run_hooks_after_kill) and records the outcome in status.hooks (ran, or
failed and why). It never writes a state: the run's final state is frozen. Caller:
flowpod.engine._in_pod.

Exit codes: 0 once the outcome is recorded (whatever it is) or when there is nothing to
do; 1 when the FlowRun could not be read or written (the operator then records the
outcome from the Job).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from flowpod import contract, flowruns
from flowpod._runtime.hooks import outcome_record
from flowpod.engine._in_pod import entrypoint_failure_message, read_parameters
from flowpod.engine._kubereporter import KubeReporter
from flowpod.errors import EntrypointError

__all__ = ["run_hooks_in_pod", "nothing_to_do"]

_log = logging.getLogger("flowpod.kube")


def nothing_to_do(flowrun: Mapping[str, Any], option: str) -> str | None:
    """Why this hook Job must not run the hooks (None: run them)."""
    state = flowruns.current_state(flowrun)
    hooks = (flowrun.get("status") or {}).get("hooks") or {}
    if state is None or contract.hook_for_state_type(state.type.value) != option:
        return f"the run's state is {state.name if state else 'unset'}, not one {option} is for"
    if hooks.get("runner") != contract.HOOKS_RUNNER_JOB:
        return f"the {option} hooks are not the hook Job's (runner: {hooks.get('runner')})"
    if hooks.get("outcome") in contract.HOOKS_DONE:
        return f"the {option} hooks already ran ({hooks.get('outcome')})"
    if hooks.get("outcome") == contract.HOOKS_RUNNING:
        # Another pod started them (its Job was deleted and made again): never twice.
        return f"the {option} hooks were started already"
    return None


async def run_hooks_in_pod(name: str, entrypoint: str, option: str,
                           reporter: KubeReporter) -> int:
    """Run FlowRun `name`'s `option` hooks once and record the outcome; the exit code."""
    from flowpod import engine

    flowrun = await reporter.refresh()
    reason = nothing_to_do(flowrun, option)
    if reason is not None:
        _log.warning("FlowRun %s: not running hooks: %s", name, reason)
        return 0
    state = flowruns.current_state(flowrun)
    assert state is not None  # nothing_to_do checked it
    await reporter.record_hooks({"outcome": contract.HOOKS_RUNNING,
                                 "message": f"running the {option} hooks"})
    try:
        parameters = await read_parameters(reporter.client, flowrun)
        flow = engine.load_flow_from_entrypoint(entrypoint)
    except (ValueError, EntrypointError) as exc:
        message = (entrypoint_failure_message(entrypoint, exc)
                   if isinstance(exc, EntrypointError) else str(exc))
        await reporter.record_hooks({"outcome": contract.HOOKS_FAILED,
                                     "message": contract.truncate_message(message)})
        return 0
    run_id = str(flowrun["metadata"].get("uid") or name)
    run_name = (flowrun.get("status") or {}).get("flowRunName") or name
    failures = await engine.run_hooks_after_kill(flow, parameters, option, state,
                                                 flow_run_id=run_id, flow_run_name=run_name)
    record = outcome_record(option, len(flow.hooks[option]), failures)
    await reporter.record_hooks(record)
    _log.info("%s hooks of %s: %s (%s)", option, name, record["outcome"], record["message"])
    return 0


