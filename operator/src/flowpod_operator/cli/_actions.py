"""What each `flowpod` command does, as async functions over one API session.

Role: the async core of the run commands (run, watch, cancel, logs, get) and `Deps`, kept
apart from the Typer wiring in flowpod_operator.cli._commands so each stays short and
testable; deploy is in ._deploying, output helpers in ._output. Each function takes the
session (`Kube`), the injected `Deps` (consoles, clock) and plain arguments, and returns the
process exit code; user errors are raised as CliError. Caller: ._commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from rich.console import Console
from rich.text import Text

from flowpod import contract, flowruns, states
from flowpod_kube.errors import KubeError
from flowpod_operator._decisions.manifests import label_value
from flowpod_operator.cli import _errors, _naming, _render, _watching
from flowpod_operator.cli._output import dump, print_rows, without_managed_fields

if TYPE_CHECKING:
    from flowpod_kube.connecting import Connection, Target
    from flowpod_operator.cli._client import Kube

__all__ = ["Deps", "start_run", "follow_and_summarise", "cancel_run", "show_logs",
           "show_runs", "show_deployments", "summarise"]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


# The client stack (kubernetes-asyncio, aiohttp: ~0.5 s to import) loads only for commands
# that talk to a cluster; `--help`, `deploy --dry-run` and `crds` start without it.
def _connect(connection: Connection) -> Kube:
    from flowpod_operator.cli._client import Kube

    return Kube(connection)


async def _load_config(target: Target) -> Connection:
    from flowpod_kube import connecting

    return await connecting.connect(target)


def _operator_main(argv: list[str]) -> int | None:
    # Imported on use: kopf is heavy and only `flowpod operator` needs it.
    from flowpod_operator import running

    return running.main(argv)


@dataclass(frozen=True)
class Deps:
    """What the commands need from the outside world; tests replace any of it."""

    connect: Callable[[Connection], Kube] = _connect
    load_config: Callable[[Target], Awaitable[Connection]] = _load_config
    clock: Callable[[], datetime] = _utc_now
    out: Console = field(default_factory=lambda: Console(soft_wrap=True, highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True,
                                                         highlight=False))
    operator_main: Callable[[list[str]], int | None] = _operator_main
    random_suffix: Callable[[], str] = _naming.random_suffix  # of CLI-made run names
    no_state_seconds: float = 10.0  # `run --watch` warns of a missing operator after this


async def start_run(kube: Kube, deps: Deps, ns: str, deployment: str | None,
                    parameters: dict[str, Any], *, name: str | None, watch: bool,
                    logs: bool, entrypoint: str | None = None,
                    image: str | None = None) -> int:
    """Create a FlowRun of ``deployment``, or an ad-hoc one of ``entrypoint`` + ``image``."""
    spec: dict[str, Any]
    if deployment is not None:
        # Checked first so a typo is reported as a missing Deployment, not as a run that Fails.
        await kube.get_deployment(ns, deployment)
        spec, base = {"deploymentName": deployment}, deployment
    else:
        assert entrypoint is not None and image is not None
        spec, base = {"entrypoint": entrypoint, "image": image}, _naming.base_of_entrypoint(
            entrypoint)
    if parameters:
        spec["parameters"] = parameters
    created = await _create_run(kube, deps, ns, spec, base, name)
    run_name = created["metadata"]["name"]
    deps.out.print(f"flowrun.{contract.GROUP}/{run_name} created", markup=False)
    if not watch:
        deps.err.print(f"follow it with `flowpod watch {run_name} -n {ns}`, or read it with "
                       f"`flowpod logs {run_name} -f -n {ns}` or `flowpod get {run_name} -n "
                       f"{ns}`", markup=False)
        return 0
    return await follow_and_summarise(kube, deps, ns, run_name, logs=logs, first=created)


async def _create_run(kube: Kube, deps: Deps, ns: str, spec: dict[str, Any], base: str,
                      name: str | None) -> dict[str, Any]:
    """POST the FlowRun under ``name``, or under a time-ordered name (retried on a clash)."""
    labels = ({contract.LABEL_DEPLOYMENT: label_value(spec["deploymentName"])}
              if "deploymentName" in spec else {})
    for _ in range(5):
        metadata: dict[str, Any] = {"name": name or _naming.run_name(
            base, deps.clock(), deps.random_suffix())}
        if labels:
            metadata["labels"] = labels
        body = {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
                "metadata": metadata, "spec": spec}
        try:
            return await kube.create_flowrun(ns, body)
        except KubeError as error:
            if name is not None or error.status != 409:
                raise
    raise _errors.CliError(f"could not find a free FlowRun name for '{base}' in namespace "
                           f"'{ns}' after 5 tries", "name the run with --name")


async def follow_and_summarise(kube: Kube, deps: Deps, ns: str, run: str, *, logs: bool,
                               first: dict[str, Any] | None = None) -> int:
    """Follow a run to its end (`run --watch`, `watch`): states, logs, the closing line and
    the flow's result; exit 0 only for Completed."""
    final = await _watching.follow_run(kube, ns, run, _output(deps), logs=logs, first=first)
    code = summarise(deps, final)
    result = (final.get("status") or {}).get("result") or {}
    if code == 0 and (result.get("value") is not None or result.get("reference")):
        shown = result.get("reference") or _render.as_json(result.get("value"))
        deps.out.print(f"result: {shown}", markup=False, highlight=False)
    return code


async def cancel_run(kube: Kube, deps: Deps, ns: str, run: str, *, wait: bool) -> int:
    current = await kube.get_flowrun(ns, run)
    state = flowruns.current_state(current)
    if state is not None and state.type in states.TERMINAL_TYPES:
        again = current["spec"].get("deploymentName") or "DEPLOYMENT"
        raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}' already ended "
                               f"{state.name}; there is nothing to cancel",
                               f"start a new run with `flowpod run {again}`")
    if not current["spec"].get("cancel"):
        current = await kube.patch_flowrun(ns, run, {"spec": {"cancel": True}})
    deps.out.print(f"flowrun.{contract.GROUP}/{run} cancellation requested", markup=False)
    if not wait:
        return 0
    final = await _watching.follow_run(kube, ns, run, _output(deps), logs=False, first=current)
    return summarise(deps, final, success=states.StateType.CANCELLED)


async def show_logs(kube: Kube, deps: Deps, ns: str, run: str, *, follow: bool,
                    attempt: int | None = None) -> int:
    current = await kube.get_flowrun(ns, run)
    if attempt is not None:
        pod = await _pod_of_attempt(kube, ns, run, attempt)
        await _watching.stream_pod_logs(kube, ns, pod, _log_writer(deps), follow=follow)
        return 0
    pod = _watching.pod_of(current)
    if pod is None and follow and not _watching.is_final(current):
        pod = await _watching.wait_for_pod(kube, ns, run)
    kept = (current.get("status") or {}).get("logTail") or []
    if pod is not None:
        try:
            await _watching.stream_pod_logs(kube, ns, pod, _log_writer(deps), follow=follow)
            return 0
        except KubeError as error:
            if error.status != 404 or not kept:
                raise
    if kept:
        # A Failed, Crashed or Cancelled run keeps its last lines: its pod's log went with it.
        where = f"pod {pod} gone" if pod else "no pod"
        deps.err.print(f"{where}; showing the last {len(kept)} lines kept in the FlowRun's "
                       f"status", markup=False)
        for line in kept:
            _log_writer(deps)(line)
        return 0
    state = flowruns.current_state(current)
    detail = f" (state {state.name}: {state.message})" if state else ""
    raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}' has no pod{detail}",
                           f"wait for one with `flowpod logs {run} -f`, or see why with "
                           f"`flowpod get {run} -n {ns}`")


async def _pod_of_attempt(kube: Kube, ns: str, run: str, attempt: int) -> str:
    """The pod of attempt ``attempt`` of ``run`` (found by the labels the operator puts on
    every pod of an attempt; the newest if its Job made more than one)."""
    selector = f"{contract.LABEL_FLOW_RUN}={label_value(run)}"
    pods = await kube.list_pods(ns, selector)
    labels = [(p.get("metadata") or {}).get("labels") or {} for p in pods]
    matching = sorted((p for p, lab in zip(pods, labels)
                       if lab.get(contract.LABEL_ATTEMPT) == str(attempt)),
                      key=lambda p: p["metadata"].get("creationTimestamp", ""))
    if matching:
        return str(matching[-1]["metadata"]["name"])
    known = sorted({int(v) for lab in labels if (v := lab.get(contract.LABEL_ATTEMPT, ""))
                    .isdigit()})
    have = (f"its pods are of attempt {', '.join(map(str, known))}" if known
            else "it has no pods left (deleted with their Job, or never started)")
    raise _errors.CliError(f"FlowRun '{run}' in namespace '{ns}' has no pod of attempt "
                           f"{attempt}; {have}", f"see its attempts with `flowpod get {run} "
                           f"-n {ns}`")


async def show_runs(kube: Kube, deps: Deps, ns: str, run: str | None, *,
                    all_namespaces: bool, output: str | None) -> int:
    if run:
        obj = await kube.get_flowrun(ns, run)
        if output:
            dump(deps, without_managed_fields(obj), output)
        else:
            children = await _child_runs(kube, ns, obj)
            deps.out.print(_render.run_detail(obj, deps.clock(), children=children))
        return 0
    listed = await kube.list_flowruns(None if all_namespaces else ns)
    return _show_list(deps, listed, "FlowRuns", _render.runs_rows, ns=ns,
                      all_namespaces=all_namespaces, output=output)


async def _child_runs(kube: Kube, ns: str, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs `run` started (flowpod.run_deployment), oldest first: labelled with its
    name, and owned by it (not by an earlier run of the same name)."""
    meta = run["metadata"]
    selector = f"{contract.LABEL_PARENT_FLOW_RUN}={label_value(meta['name'])}"
    listed = await kube.list_flowruns(ns, label_selector=selector)
    owned = [child for child in listed.get("items", [])
             if any(ref.get("uid") == meta.get("uid")
                    for ref in child["metadata"].get("ownerReferences") or ())]
    return sorted(owned, key=lambda c: (c["metadata"].get("creationTimestamp", ""),
                                        c["metadata"]["name"]))


async def show_deployments(kube: Kube, deps: Deps, ns: str, name: str | None, *,
                           all_namespaces: bool, output: str | None) -> int:
    """`flowpod get deployments [NAME]`: a table, or one Deployment as yaml/json."""
    if name:
        dump(deps, without_managed_fields(await kube.get_deployment(ns, name)),
             output or "yaml")
        return 0
    listed = await kube.list_deployments(None if all_namespaces else ns)
    return _show_list(deps, listed, "Deployments", _render.deployments_rows, ns=ns,
                      all_namespaces=all_namespaces, output=output)


def _show_list(deps: Deps, listed: dict[str, Any], what: str,
               rows: Callable[..., tuple[list[str], list[list[Any]]]], *, ns: str,
               all_namespaces: bool, output: str | None) -> int:
    items = sorted(listed.get("items", []), key=lambda o: (
        o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]))
    if output:
        dump(deps, without_managed_fields({"apiVersion": "v1", "kind": "List",
                                           "items": items}), output)
    elif not items:
        where = "any namespace" if all_namespaces else f"namespace '{ns}'"
        deps.err.print(f"No {what} in {where}.", markup=False)
    else:
        print_rows(deps, *rows(items, deps.clock(), all_namespaces=all_namespaces))
    return 0


def _output(deps: Deps) -> _watching.Output:
    return _watching.Output(
        state=lambda wire: deps.err.print(_render.state_line(wire, deps.clock())),
        log=_log_writer(deps), clock=deps.clock,
        warn=lambda text: deps.err.print(Text.assemble(("warning: ", "bold yellow"), text)),
        no_state_seconds=deps.no_state_seconds)


def _log_writer(deps: Deps) -> Callable[[str], None]:
    return lambda line: deps.out.print(line, markup=False, highlight=False)


def summarise(deps: Deps, final: dict[str, Any],
               success: states.StateType = states.StateType.COMPLETED) -> int:
    """The closing line of a followed run, and the exit code: 0 only for ``success``."""
    state = flowruns.current_state(final)
    line = Text(f"{final['metadata']['name']} ")
    line.append_text(_render.state_text(final))
    duration = _render.run_duration(final, deps.clock())
    if duration != "-":
        line.append(f" in {duration}")
    if state is not None and state.message and state.type != success:
        line.append(f": {state.message}")
    deps.err.print(line)
    return 0 if state is not None and state.type == success else 1
