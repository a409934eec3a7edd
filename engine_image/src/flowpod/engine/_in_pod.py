"""The in-pod main: `python -m flowpod.engine` with FLOWPOD_FLOW_RUN_NAME set.

Role: runs the one flow run a FlowRun describes, inside the pod of the Job the operator
created (its env: flowpod.contract.ENV_*). It reads the FlowRun through the in-cluster
API (flowpod.engine._kubereporter over _kubeapi), leaves at once without importing
user code when the run already ended or is being cancelled, reads the parameters (the
FlowRun's over its Deployment's defaults), loads the entrypoint (failure ends the run
Failed with the cause), checks the result storage (flowpod.engine._storage: a missing or
unwritable spec.resultStorage ends the run Failed naming the field), and hands the flow
to flowpod.engine.run_flow_run with the Kubernetes reporter, which then writes Running,
the task-run summary, the final state and the result (with the last lines of output,
flowpod.engine._logtail, when the run failed). SIGTERM is the engine's: Cancelled when
cancellation was requested, otherwise Crashed. With flowpod.contract.ENV_HOOKS set (a hook
Job) it runs only the final hooks of a killed run instead (flowpod.engine._hooks_mode).
Caller: flowpod.engine.__main__ (dispatches here when the env is set).

Exit codes: 0 once a final (or paused) state is on the FlowRun, whatever it is; 143 after
SIGTERM; 1 when the FlowRun could not be read or written (the operator then marks the run
Crashed from the pod's exit).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import anyio
import httpx

from flowpod import contract, flowruns, states
from flowpod.engine._kubeapi import Connection, FlowRunClient, KubeApiError, NotFound
from flowpod.contract import SERVICE_ACCOUNT_DIR
from flowpod.engine import _storage
from flowpod.engine._kubereporter import KubeReporter
from flowpod.engine._logtail import LogTail
from flowpod.errors import Abort, EntrypointError, TerminationSignal

__all__ = ["PodSettings", "main", "read_parameters", "run_in_pod",
           "entrypoint_failure_message"]

_log = logging.getLogger("flowpod.kube")


@dataclass(frozen=True)
class PodSettings:
    """What the Job's env says about the run (see flowpod.contract.ENV_*)."""

    name: str
    namespace: str
    entrypoint: str
    result_storage: str | None = None  # an fsspec URL, from the Deployment or FlowRun

    @classmethod
    def from_env(cls, env: Mapping[str, str],
                 sa_dir: Path = SERVICE_ACCOUNT_DIR) -> "PodSettings":
        namespace = env.get(contract.ENV_FLOW_RUN_NAMESPACE)
        if not namespace and (sa_dir / "namespace").is_file():
            namespace = (sa_dir / "namespace").read_text().strip()
        missing = [key for key, value in ((contract.ENV_FLOW_RUN_NAME,
                                           env.get(contract.ENV_FLOW_RUN_NAME)),
                                          (contract.ENV_FLOW_RUN_NAMESPACE, namespace),
                                          (contract.ENV_ENTRYPOINT,
                                           env.get(contract.ENV_ENTRYPOINT)))
                   if not value]
        if missing:
            raise ValueError(f"{', '.join(missing)} must be set in the flow container's env "
                             f"(the operator's Job sets them)")
        return cls(env[contract.ENV_FLOW_RUN_NAME], str(namespace),
                   env[contract.ENV_ENTRYPOINT], env.get(contract.ENV_RESULT_STORAGE) or None)


async def read_parameters(client: FlowRunClient, flowrun: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameters as the operator validated them: its Deployment's defaults
    overlaid with spec.parameters (contract.resolve_parameters). Read from the API, not the
    env, because they may be larger than one environment variable can hold (128 KiB).
    ValueError says why they cannot be had."""
    spec = flowrun.get("spec") or {}
    given = spec.get("parameters")
    if given is not None and not isinstance(given, dict):
        raise ValueError(f"spec.parameters must be a JSON object like {{\"x\": 1}}, got "
                         f"{type(given).__name__}")
    name = spec.get("deploymentName")
    deployment = None
    if name:
        try:
            deployment = await client.get_deployment(name)
        except NotFound:
            raise ValueError(f"Deployment '{name}' not found in namespace '{client.namespace}'"
                             f"; create it, or fix spec.deploymentName") from None
        except KubeApiError as exc:
            raise ValueError(f"Could not read the default parameters of Deployment "
                             f"'{name}': {exc.message}") from None
    return contract.resolve_parameters(flowrun, deployment)


def entrypoint_failure_message(entrypoint: str, error: BaseException) -> str:
    """The Failed message of an unloadable entrypoint, with the loader's cause."""
    cause = str(error)
    # The loader's own messages start by naming the entrypoint; say it once.
    for prefix in (f"Entrypoint {entrypoint!r}: ", f"Entrypoint {entrypoint!r} "):
        if cause.startswith(prefix):
            cause = cause[len(prefix):]
            break
    return f"Flow could not be retrieved from entrypoint '{entrypoint}': {cause}"


def _stop_reason(flowrun: Mapping[str, Any]) -> str | None:
    """Why user code must not run at all (the FlowRun would refuse Running), or None."""
    spec_cancel = bool((flowrun.get("spec") or {}).get("cancel"))
    decision = states.accept(flowruns.current_state(flowrun), states.Running(),
                             cancel_requested=spec_cancel)
    return decision.reason if decision.verdict is states.Verdict.REFUSE else None


def _rendered_name(flow: Any, parameters: Mapping[str, Any], run_id: str,
                   flowrun_name: str) -> str | None:
    """The run's display name for status.flowRunName: its flow_run_name template rendered,
    else the FlowRun's name. The run itself (its log lines, hooks) is always named after the
    FlowRun, as `kubectl get flowruns` shows it."""
    # The engine renders the same name from the same inputs; a template that cannot be
    # rendered outside the run (or bad parameters, which end the run Failed) gives none.
    try:
        name = flow.render_run_name(flow.validate_parameters(parameters), run_id,
                                    flowrun_name)
    except Exception:
        return None
    if name != flowrun_name:
        _log.info("flow run %s: its flow_run_name template renders %r (status.flowRunName)",
                  flowrun_name, name)
    return name


async def run_in_pod(settings: PodSettings, reporter: KubeReporter, *,
                     handle_sigterm: bool = True) -> int:
    """Run the FlowRun's flow to a final state through `reporter`; return the exit code."""
    from flowpod import engine

    flowrun = await reporter.refresh()
    reason = _stop_reason(flowrun)
    if reason is not None:
        _log.warning("FlowRun %s/%s: not running the flow: %s", settings.namespace,
                     settings.name, reason)
        return 0
    try:
        parameters = await read_parameters(reporter.client, flowrun)
        flow = engine.load_flow_from_entrypoint(settings.entrypoint)
    except (ValueError, EntrypointError) as exc:
        message = (entrypoint_failure_message(settings.entrypoint, exc)
                   if isinstance(exc, EntrypointError) else str(exc))
        return await _fail_early(reporter, message, exc)
    deps = await _storage.prepare(settings.result_storage, flowrun, flow)
    if isinstance(deps, str):
        return await _fail_early(reporter, deps, None)
    # The FlowRun's uid is the run id: stable across infrastructure retries, so a new
    # attempt reuses the task results the previous one persisted.
    run_id = str(flowrun["metadata"].get("uid") or settings.name)
    reporter.keep_result = _storage.keeper(settings.result_storage, run_id)
    # One name for one run: the FlowRun's, as in `kubectl get fr`; a flow_run_name template
    # only renders the display name that status.flowRunName records.
    name = _rendered_name(flow, parameters, run_id, settings.name)
    if name:
        reporter.set_status_fields(flowRunName=name)
    # Recorded with Running, so the operator knows, without importing user code, which
    # hooks a hook Job must run if this process is killed before it can run them.
    declared = [option for option in contract.HOOKS_AFTER_KILL.values()
                if flow.hooks.get(option)]
    if declared:
        reporter.set_status_fields(hooks={"declared": declared})
    state = await engine.run_flow_run(flow, parameters, reporter, flow_run_id=run_id,
                                      handle_sigterm=handle_sigterm, deps=deps,
                                      flow_run_name=settings.name)
    _log.info("flow run finished %s%s", state.name, f": {state.message}" if state.message else "")
    if isinstance(state.data, TerminationSignal):
        return int(state.data.code)  # type: ignore[arg-type]
    return 0


async def _fail_early(reporter: KubeReporter, message: str,
                      error: BaseException | None) -> int:
    """End the run Failed before its flow starts (exit 0: the state is on the FlowRun)."""
    _log.error("%s", message)
    try:
        await reporter.propose_state(states.Failed(message, data=error))
    except Abort as refused:
        _log.warning("the FlowRun refused Failed: %s", refused)
    return 0


def _reporter_from_env(settings: PodSettings, env: Mapping[str, str],
                       transport: httpx.AsyncBaseTransport | None,
                       tail: LogTail | None = None) -> KubeReporter:
    client = FlowRunClient(Connection.in_cluster(env), settings.namespace, settings.name,
                           transport=transport, log=_log.warning)
    return KubeReporter(client, log_tail=tail.lines if tail is not None else None)


async def _main_async(settings: PodSettings, env: Mapping[str, str],
                      transport: httpx.AsyncBaseTransport | None, tail: LogTail) -> int:
    reporter = _reporter_from_env(settings, env, transport, tail)
    try:
        option = env.get(contract.ENV_HOOKS)
        if option:  # a hook Job: run the hooks of a killed run, nothing else
            from flowpod.engine._hooks_mode import run_hooks_in_pod

            return await run_hooks_in_pod(settings.name, settings.entrypoint, option,
                                          reporter)
        return await run_in_pod(settings, reporter)
    finally:
        await reporter.aclose()


def main(env: Mapping[str, str] | None = None,
         transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Entry point used by flowpod.engine.__main__ when FLOWPOD_FLOW_RUN_NAME is set."""
    from flowpod._runtime.contexts import ensure_console_logging

    env = os.environ if env is None else env
    # Installed before the console handler is made, so that handler writes through the tee.
    with LogTail().installed() as tail:
        ensure_console_logging()
        try:
            settings = PodSettings.from_env(env)
            return anyio.run(_main_async, settings, env, transport, tail)
        except (ValueError, RuntimeError, KubeApiError, httpx.HTTPError) as exc:
            print(f"flowpod engine: {exc}", file=sys.stderr)
            return 1
