"""Following a FlowRun live: its state changes (a watch) and its pod's logs (a log stream).

Role: the async behaviour behind `flowpod run --watch`, `flowpod watch`, `flowpod logs -f`
and `flowpod cancel --wait`. State updates come from a watch on the one FlowRun, resumed from
the last resourceVersion when the server ends it and re-read after 410 Gone, so no transition is
missed. Logs of every pod the run gets (one per attempt) are tailed concurrently and drained,
bounded, once the run is final. A run that gets no state at all within
`Output.no_state_seconds` is reported once as "no operator seems to watch this namespace",
and watching goes on. Callers: flowpod_operator.cli._actions.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import anyio

from flowpod import flowruns, states
from flowpod_kube.errors import KubeError
from flowpod_operator.cli._errors import CliError

if TYPE_CHECKING:
    from flowpod_operator.cli._client import Kube

__all__ = ["Output", "run_updates", "follow_run", "pod_of", "stream_pod_logs", "is_final",
           "wait_for_pod", "no_operator_message"]

# A container still being created answers the log call with 400; poll until it starts.
_LOG_RETRY_SECONDS = 0.5
_DRAIN_SECONDS = 5.0


@dataclass
class Output:
    """Where following writes: state lines (stderr) and log lines (stdout), and the clock."""

    state: Callable[[dict[str, Any]], None]  # gets one wire state {type, name, message, ...}
    log: Callable[[str], None]
    clock: Callable[[], datetime]
    seen: list[str] = field(default_factory=list)  # pods whose logs were tailed
    # Told once when the run still has no state after `no_state_seconds`: every run gets
    # Scheduled from the operator within milliseconds, so silence means no operator.
    warn: Callable[[str], None] | None = None
    no_state_seconds: float = 10.0


def no_operator_message(namespace: str, name: str, seconds: float) -> str:
    """What to check when nothing has written a state: the operator is down or does not
    watch this namespace."""
    return (f"FlowRun '{name}' has no state after {seconds:g} s: no flowpod operator seems to "
            f"watch namespace '{namespace}'. Check it with `kubectl get pods -n flowpod-system` "
            f"and `helm status flowpod -n flowpod-system` (its watched namespaces are the "
            f"chart's `watchNamespaces`), or run one locally: `flowpod operator --namespace "
            f"{namespace}`. Still watching.")


def is_final(run: dict[str, Any]) -> bool:
    state = flowruns.current_state(run)
    return state is not None and state.type in states.TERMINAL_TYPES


def pod_of(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("podName")


async def run_updates(kube: Kube, namespace: str, name: str,
                      resource_version: str) -> AsyncIterator[dict[str, Any]]:
    """Every new version of one FlowRun, for as long as the caller iterates."""
    rv = resource_version
    while True:
        gone = False
        events = kube.watch_flowrun(namespace, name, resource_version=rv)
        async with aclosing(events):
            try:
                async for kind, obj in events:
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind == "DELETED":
                        raise CliError(f"FlowRun '{name}' in namespace '{namespace}' was "
                                       f"deleted while being watched")
                    if kind in ("ADDED", "MODIFIED"):
                        yield obj
            except KubeError as error:
                if error.status != 410:
                    raise
                gone = True  # our resourceVersion is too old: re-read
        if gone:
            obj = await kube.get_flowrun(namespace, name)
            rv = obj["metadata"]["resourceVersion"]
            yield obj


async def stream_pod_logs(kube: Kube, namespace: str, pod: str, write: Callable[[str], None],
                          *, follow: bool) -> None:
    """Write the flow container's log lines; with ``follow``, until the container ends."""
    while True:
        lines = kube.pod_log_lines(namespace, pod, follow=follow)
        try:
            async with aclosing(lines):
                async for line in lines:
                    write(line)
            return
        except KubeError as exc:
            # 400: the container has not started yet (ContainerCreating); wait for it.
            if exc.status != 400 or not follow:
                raise
        await anyio.sleep(_LOG_RETRY_SECONDS)


async def follow_run(kube: Kube, namespace: str, name: str, out: Output, *,
                     logs: bool = True, first: dict[str, Any] | None = None) -> dict[str, Any]:
    """Show state changes (and logs) of a FlowRun until it is final; returns the final object."""
    run = first or await kube.get_flowrun(namespace, name)
    tails: list[anyio.Event] = []
    shown: list[tuple[Any, ...]] = []  # keys of the states already printed

    async def tail(pod: str, done: anyio.Event) -> None:
        try:
            await stream_pod_logs(kube, namespace, pod, out.log, follow=True)
        except KubeError:
            pass  # the pod went away (retry, cancel, deletion): its state line says why
        finally:
            done.set()

    async def warn_if_silent() -> None:
        await anyio.sleep(out.no_state_seconds)
        if not shown and out.warn is not None:
            out.warn(no_operator_message(namespace, name, out.no_state_seconds))

    async with anyio.create_task_group() as tg:
        if flowruns.current_state(run) is None:
            tg.start_soon(warn_if_silent)

        def observe(obj: dict[str, Any]) -> None:
            for wire in _new_states(obj, shown):
                out.state(wire)
            pod = pod_of(obj)
            if logs and pod and pod not in out.seen:
                out.seen.append(pod)
                done = anyio.Event()
                tails.append(done)
                tg.start_soon(tail, pod, done)

        observe(run)
        if not is_final(run):
            updates = run_updates(kube, namespace, name, run["metadata"]["resourceVersion"])
            async with aclosing(updates):
                async for run in updates:
                    observe(run)
                    if is_final(run):
                        break
        # The final state can land before the last log lines; give the tails a bounded drain.
        with anyio.move_on_after(_DRAIN_SECONDS):
            for done in tails:
                await done.wait()
        tg.cancel_scope.cancel()
    return run


def _key(wire: dict[str, Any]) -> tuple[Any, ...]:
    return (wire.get("type"), wire.get("name"), wire.get("message"), wire.get("timestamp"))


def _new_states(run: dict[str, Any], shown: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """States of ``run`` not printed yet, oldest first. Taken from stateHistory, because one
    status write may carry two transitions (Scheduled and Pending land together) and a watch
    shows only the object as it is after the write."""
    status = run.get("status") or {}
    history = list(status.get("stateHistory") or [])
    if status.get("state") and (not history or _key(history[-1]) != _key(status["state"])):
        history.append(status["state"])
    fresh = []
    for wire in history:
        key = _key(wire)
        if key not in shown:
            shown.append(key)
            fresh.append(wire)
    return fresh


async def wait_for_pod(kube: Kube, namespace: str, name: str) -> str | None:
    """The run's pod as soon as it has one; None if it ends without ever getting one."""
    run = await kube.get_flowrun(namespace, name)
    if pod_of(run) or is_final(run):
        return pod_of(run)
    updates = run_updates(kube, namespace, name, run["metadata"]["resourceVersion"])
    async with aclosing(updates):
        async for run in updates:
            if pod_of(run) or is_final(run):
                return pod_of(run)
    return None
