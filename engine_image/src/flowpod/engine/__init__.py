"""flowpod.engine: run one flow run to a final state -- what a flow-run pod runs.

Role: `run_flow_run` runs a Flow with given parameters, writing states and task-run
summaries through a reporter (flowpod.reporting), asking `is_cancellation_requested`
when SIGTERM arrives, and returns the final State (Suspended when the run suspended
itself); `run_hooks_after_kill` runs only a flow's on_crashed or on_cancellation hooks,
for a run whose process was killed (the hooks mode of a hook Job, _hooks_mode).
`load_flow_from_entrypoint` resolves `path/to/file.py:fn` or
`package.module:fn`. `python -m flowpod.engine` (the Job's command,
flowpod.contract.ENGINE_COMMAND) runs one flow run: in a FlowRun's pod through
flowpod.engine._in_pod, which reports to the FlowRun's status with the Kubernetes
reporter (_kubereporter, over the service-account HTTP client _kubeapi); elsewhere
locally (see __main__). Callers: flowpod.engine.__main__, the CLI, tests. See
ARCHITECTURE.md, "Two images" and "One FlowRun, end to end".
"""

from __future__ import annotations

from typing import Any, Mapping

from flowpod import states
from flowpod._runtime.deps import RunDeps
from flowpod.engine._entrypoints import load_flow_from_entrypoint
from flowpod.reporting import CancellationCheck, Reporter

__all__ = ["run_flow_run", "run_hooks_after_kill", "load_flow_from_entrypoint",
           "parameter_model", "RunDeps"]


async def run_flow_run(flow: Any, parameters: Mapping[str, Any] | None = None,
                       reporter: Reporter | None = None,
                       is_cancellation_requested: CancellationCheck | None = None, *,
                       flow_run_id: str | None = None, deps: RunDeps | None = None,
                       tag_limits: Mapping[str, int] | None = None,
                       handle_sigterm: bool = True,
                       flow_run_name: str | None = None) -> states.State:
    """Run `flow` once, on the running anyio event loop, and return its final State.

    flow: a flowpod.Flow (see load_flow_from_entrypoint).
    parameters: raw values (e.g. from JSON); validated against the flow's signature,
        a violation ends the run Failed.
    reporter: where states and task-run summaries go (default: a new InMemoryReporter).
    is_cancellation_requested: asked after SIGTERM; sync or async, returns bool. True:
        the run goes Cancelling -> Cancelled (on_cancellation hooks); False: Crashed
        (on_crashed hooks). Default: the reporter's own `is_cancellation_requested`
        method if it has one, else "no".
    flow_run_id: the run's stable id; task results persisted under it are reused by a
        re-run with the same id (default: a random id).
    deps: clock, sleeps, result_dir, flush_interval (see RunDeps).
    tag_limits: per-tag task concurrency limits, merged over the flow's own.
    handle_sigterm: install the SIGTERM handler (main thread only).
    flow_run_name: the run's name in its log lines, hooks and subflow records, even when
        the flow has a flow_run_name template (in a pod, the FlowRun's name; default: the
        template rendered, else `<flow name>-<first 8 of flow_run_id>`).

    The returned state's `data` is the result (Completed) or the error; after SIGTERM
    it is a flowpod.errors.TerminationSignal (exit code 143). Never raises for user
    errors; a reporter's own network errors propagate.
    """
    from flowpod._runtime.flow_engine import run_flow

    return await run_flow(flow, parameters or {}, reporter=reporter,
                          cancel_check=is_cancellation_requested, deps=deps,
                          run_id=flow_run_id, tag_limits=tag_limits,
                          handle_sigterm=handle_sigterm, run_name=flow_run_name)


async def run_hooks_after_kill(flow: Any, parameters: Mapping[str, Any], option: str,
                               state: states.State, *, flow_run_id: str,
                               flow_run_name: str | None = None) -> list[str]:
    """Run only `flow`'s `option` hooks (on_crashed, on_cancellation) for a run whose
    process was killed before it could: what a hook Job does. The hooks get (flow,
    flow_run, state) as in a run; returns the messages of the hooks that raised."""
    from flowpod._runtime.flow_engine import run_hooks_alone

    return await run_hooks_alone(flow, parameters, option, state, run_id=flow_run_id,
                                 run_name=flow_run_name)


def parameter_model(flow: Any) -> Any:
    """The pydantic model `flow`'s parameters are validated with in the pod: one field per
    named parameter, aliased to its name. `flowpod deploy` writes its JSON schema into the
    Deployment and checks `-p` values with it, so what deploys is what runs."""
    return flow.parameters.model()
