"""The Kubernetes reporter: the engine's reporter protocol written to a FlowRun's status.

Role: implements flowpod.reporting.Reporter for a flow run executing in a pod. Every state
the engine proposes becomes one patch of the FlowRun status subresource built by
flowpod.flowruns.status_patch, sent with a resourceVersion precondition. A final state
carries everything that goes with it (result, task-run summary) in that one write: the CRD
freezes a final run's status. On 409 the FlowRun
is re-read and the proposal re-decided against the fresh state with the one acceptance
rule, flowpod.states.accept (a run that meanwhile became terminal or Cancelling makes the
proposal fail with flowpod.errors.Abort, exactly as in memory). It also answers "is
cancellation requested?" (spec.cancel or state CANCELLING) and `read_state` for
pause/resume. A paused state's PauseRequest is published as status.pause (cleared by the
next state), `wait_for_change` watches the FlowRun for its next change (a paused run waits
on it instead of polling), and `resume_input` reads the input of an accepted resume
(status.resumed). Callers: flowpod.engine._in_pod (builds one per pod), tests (with
httpx.MockTransport).

Transport and retries live in flowpod.engine._kubeapi; this module holds only the decisions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping

import anyio
import httpx

from flowpod import contract, flowruns, reporting, states
from flowpod.engine._kubeapi import Conflict, FlowRunClient, KubeApiError, NotFound
from flowpod.errors import Abort, TerminationSignal

__all__ = ["KubeReporter", "task_runs_patch", "result_field"]

_CONFLICT_ROUNDS = 20  # re-decisions after 409s before giving up (a write storm, not a race)

_log = logging.getLogger("flowpod.kube")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def task_runs_patch(summary: reporting.TaskRunSummary,
                    previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """status.taskRuns for `summary`, as a merge patch over the `previous` status.taskRuns.

    Merge patches merge maps, so a count that disappeared (e.g. RUNNING back to none) is
    sent as null to delete it rather than left stale.
    """
    wire = summary.to_wire()
    counts: dict[str, int | None] = {k: None for k in (previous or {}).get("counts") or {}}
    counts.update(wire["counts"])
    wire["counts"] = counts
    return wire


def _has_nested_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or _has_nested_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nested_null(v) for v in value)
    return False


def _size(nbytes: int) -> str:
    return f"{nbytes / 1024:.0f} KiB" if nbytes < 1024 * 1024 else f"{nbytes / 2**20:.1f} MiB"


_NO_STORAGE = ("the run has no result storage (spec.resultStorage). Set spec.resultStorage "
               "on the Deployment (or FlowRun) to keep it there")


def result_field(value: Any,
                 max_inline: int = contract.MAX_INLINE_RESULT_BYTES) -> dict[str, Any] | None:
    """status.result for a flow's return value: {value} when it is small JSON, else
    {notKept: why}. The reporter turns the latter into {reference} when the run has result
    storage; without it a file inside the pod is gone with the pod, so the status says why
    the result was not kept instead of pointing at something nobody can read."""
    if value is None:
        return None
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        what = ("it holds NaN or Infinity, which JSON cannot represent"
                if isinstance(exc, ValueError) else f"a {type(value).__name__} is not JSON")
        return {"value": None, "reference": None, "notKept": (
            f"The result was not kept: {what}, and {_NO_STORAGE}, or return JSON data "
            f"(dicts, lists, strings, numbers).")}
    size = len(text.encode())
    if size <= max_inline:
        return {"value": json.loads(text), "reference": None, "notKept": None}
    return {"value": None, "reference": None, "notKept": (
        f"The result was not kept: it is {_size(size)} as JSON, over the {_size(max_inline)} "
        f"that fit in the FlowRun's status, and {_NO_STORAGE}.")}


class KubeReporter:
    """Reporter for one FlowRun, through its status subresource.

    `clock` stamps startTime/endTime/conditions. `log_tail` returns the flow's last
    output lines, kept in the status with a Failed, Crashed or Cancelled state (the pod's
    log goes with the pod). Extra status fields for the next state write (e.g.
    flowRunName) can be queued with `set_status_fields`.
    """

    def __init__(self, client: FlowRunClient, *,
                 clock: Callable[[], datetime] = _utcnow,
                 log_tail: Callable[[], Iterable[str]] | None = None,
                 cancel_check_deadline: float = 5.0,
                 crash_verdict_wait: float = 2.0,
                 asleep: Callable[[float], Awaitable[None]] = anyio.sleep) -> None:
        self.client = client
        self.flowrun: dict[str, Any] | None = None  # the last FlowRun object seen
        self._clock = clock
        self._log_tail = log_tail
        self._cancel_check_deadline = cancel_check_deadline
        self._pending_fields: dict[str, Any] = {}
        self._summary: reporting.TaskRunSummary | None = None  # the last one flushed
        self._crash_verdict_wait = crash_verdict_wait
        self._asleep = asleep
        self._watch_failures = 0
        # Whether this process ran the flow, and since when it exists: a Pending or
        # Scheduled written later is the operator taking the run back (see _taken_back).
        self._started_at = clock()
        self._ran = False
        # Stores a result that does not fit in the status and returns its URL (None: the
        # run has no result storage); set once the run's id is known.
        self.keep_result: Callable[[Any], str] | None = None

    # -- reading ---------------------------------------------------------------------
    async def refresh(self, *, deadline: float | None = None) -> dict[str, Any]:
        self.flowrun = await self.client.get(deadline=deadline)
        return self.flowrun

    async def _current(self) -> dict[str, Any]:
        return self.flowrun if self.flowrun is not None else await self.refresh()

    async def read_state(self) -> states.State | None:
        """The FlowRun's state now (a paused run polls this to notice resume or cancel)."""
        return flowruns.current_state(await self.refresh())

    async def resume_input(self, key: str) -> tuple[bool, Any]:
        """(True, input) when the operator accepted a resume of pause `key` with input."""
        return contract.resumed_input(await self._current(), key)

    async def wait_for_change(self, seconds: float) -> None:
        """Return when the FlowRun changed (a watch event), or after `seconds`. A failed
        watch waits a little (growing to 5 s) before returning, so an API outage is never
        a tight loop; the caller re-reads the FlowRun either way."""
        version = ((self.flowrun or {}).get("metadata") or {}).get("resourceVersion")
        try:
            changed = await self.client.next_change(version, seconds)
        except (KubeApiError, httpx.HTTPError) as exc:
            if not isinstance(exc, KubeApiError) or exc.status != 410:  # 410: just re-read
                _log.warning("watching the FlowRun failed (%s); watching again", exc)
                self._watch_failures += 1
                await self._asleep(min(0.2 * 2 ** self._watch_failures, 5.0, seconds))
            return
        self._watch_failures = 0
        if changed is not None:
            self.flowrun = changed

    async def is_cancellation_requested(self) -> bool:
        """spec.cancel is true or the state is CANCELLING. Asked on SIGTERM, so it reads
        briefly and falls back to the last object seen when the API does not answer."""
        try:
            flowrun = await self.refresh(deadline=self._cancel_check_deadline)
        except (KubeApiError, httpx.HTTPError) as exc:
            _log.warning("could not re-read the FlowRun for cancellation (%s); using the "
                         "last copy", exc)
            flowrun = self.flowrun or {}
        return _cancel_requested(flowrun)

    # -- writing ---------------------------------------------------------------------
    def set_status_fields(self, **fields: Any) -> None:
        """Status fields (camelCase) to send along with the next state write."""
        self._pending_fields.update(fields)

    async def propose_state(self, state: states.State) -> states.State:
        if state.is_crashed() and isinstance(state.data, TerminationSignal):
            await self._await_operator_verdict()
            current = flowruns.current_state(self.flowrun or {})
            if current is not None and self._taken_back(current):
                raise _terminated(Abort(f"the operator took the run back ({current.name}: "
                                        f"{current.message}); this pod's end is not the "
                                        "run's", state=current), state)
        fields = dict(self._pending_fields)
        fields.update(self._pause_fields(state))
        if state.is_completed():
            result = await self._result(state.data)
            if result is not None:
                fields["result"] = result
        log_tail = self._log_tail() if self._log_tail is not None else None
        try:
            accepted = await self._write_state(state, fields, log_tail)
        except Abort as refused:
            raise _terminated(refused, state) from None
        self._pending_fields.clear()
        return accepted

    def _pause_fields(self, state: states.State) -> dict[str, Any]:
        """status.pause: published with a Paused/Suspended state, removed by the next one."""
        if state.is_paused() and isinstance(state.data, reporting.PauseRequest):
            return {contract.STATUS_PAUSE: state.data.to_wire()}
        if contract.pause_of(self.flowrun or {}) is not None:
            return {contract.STATUS_PAUSE: None}
        return {}
    async def _result(self, value: Any) -> dict[str, Any] | None:
        """status.result: inline, else a reference into the result storage when there is
        one, else why it was not kept."""
        result = result_field(value)
        if result is None or not result["notKept"] or self.keep_result is None:
            return result
        try:
            url = await anyio.to_thread.run_sync(self.keep_result, value)
        except Exception as exc:  # unpicklable, storage gone: say so, the run still completed
            _log.warning("could not store the flow's result", exc_info=True)
            why = contract.truncate_message(f"{type(exc).__name__}: {exc}")[:600]
            return {"value": None, "reference": None, "notKept": (
                f"The result was not kept: it does not fit in the FlowRun's status, and "
                f"writing it to the result storage failed: {why}")}
        return {"value": None, "reference": url, "notKept": None}

    async def _await_operator_verdict(self) -> None:
        """A SIGTERM nobody asked for means the pod is being deleted, evicted or its node
        drained. Only the operator can see which, so it writes the exact Crashed state; give
        it a moment to land before falling back to our own, less specific one."""
        waited = 0.0
        while waited < self._crash_verdict_wait:
            try:
                current = flowruns.current_state(await self.refresh(deadline=1.0))
            except (KubeApiError, httpx.HTTPError):
                return
            if current is not None and (current.is_final() or self._taken_back(current)):
                return
            await self._asleep(0.1)
            waited += 0.1

    def _taken_back(self, current: states.State) -> bool:
        """The operator moved the run on without this process: it waits for a retry
        (AwaitingRetry) or for its queue again (Pending: the Job was preempted)."""
        back = current.type in (states.StateType.SCHEDULED, states.StateType.PENDING)
        stamp = current.timestamp
        return back and (self._ran or (stamp is not None and stamp >= self._started_at))

    async def _write_state(self, state: states.State, fields: dict[str, Any],
                           log_tail: Iterable[str] | None = None) -> states.State:
        for _ in range(_CONFLICT_ROUNDS):
            try:
                flowrun = await self._current()
            except NotFound as exc:
                raise Abort(f"The FlowRun is gone ({exc.message}); refusing {state.name}") from None
            current = flowruns.current_state(flowrun)
            decision = states.accept(current, state, cancel_requested=_cancel_requested(flowrun))
            if decision.verdict is states.Verdict.REFUSE:
                raise Abort(decision.reason, state=current)
            if decision.verdict is states.Verdict.ALREADY_THERE:
                return current or state
            patch = flowruns.status_patch(
                flowrun.get("status"), state, now=self._clock(),
                generation=int(flowrun["metadata"].get("generation") or 0),
                log_tail=log_tail, **fields)
            if state.is_final() and self._summary is not None:
                # A final run's status is frozen (the CRD's rule): the task-run summary
                # rides with the final state, so no flush can arrive too late.
                previous = (flowrun.get("status") or {}).get("taskRuns")
                patch["taskRuns"] = task_runs_patch(self._summary, previous)
            try:
                self.flowrun = await self._send_state(flowrun, patch)
                self._ran = self._ran or state.type is states.StateType.RUNNING
                return state
            except Conflict:
                self.flowrun = None  # someone else wrote: re-read, then re-decide
            except KubeApiError as exc:
                if exc.status != 422:
                    raise
                # The API server's CEL rules refused it although our own check passed on
                # the same resourceVersion: its table is the authority, so this is a refusal.
                refused_in = flowruns.current_state(await self.refresh())
                raise Abort(f"The API server refused {state.name}: {exc.message}",
                            state=refused_in) from None
        raise KubeApiError(409, f"gave up writing {state.name} after {_CONFLICT_ROUNDS} "
                                f"conflicting writes")

    async def _send_state(self, flowrun: Mapping[str, Any],
                          patch: dict[str, Any]) -> dict[str, Any]:
        """One write of a state and everything that goes with it, guarded by resourceVersion.

        A merge patch reads nulls as "delete", so a result holding nulls goes as a JSON
        Patch of the whole status instead: still one write, as a final status allows.
        """
        version = flowrun["metadata"].get("resourceVersion")
        result = patch.get("result")
        if result is None or not _has_nested_null(result.get("value")):
            return await self.client.patch_status(flowruns.patch_body(version, patch))
        status = _merged(flowrun.get("status") or {}, {**patch, "result": None})
        status["result"] = {k: v for k, v in result.items() if v is not None}
        operations = [{"op": "add", "path": "/status", "value": status}]
        if version:  # setting it makes it a precondition: 409 when stale, as above
            operations.insert(0, {"op": "replace", "path": "/metadata/resourceVersion",
                                  "value": version})
        return await self.client.patch_status_json(operations)

    async def flush_task_runs(self, summary: reporting.TaskRunSummary) -> None:
        """One status patch per batch (the engine batches), leaving the state alone. Once
        the run is final its status is frozen: the final write carried the last summary."""
        self._summary = summary
        for _ in range(_CONFLICT_ROUNDS):
            flowrun = await self._current()
            current = flowruns.current_state(flowrun)
            if current is not None and current.is_final():
                return
            previous = (flowrun.get("status") or {}).get("taskRuns")
            patch = {"taskRuns": task_runs_patch(summary, previous)}
            body = flowruns.patch_body(flowrun["metadata"].get("resourceVersion"), patch)
            try:
                self.flowrun = await self.client.patch_status(body)
                return
            except Conflict:
                self.flowrun = None  # the summary is cumulative: just re-read and resend
        raise KubeApiError(409, f"gave up writing the task-run summary after "
                                f"{_CONFLICT_ROUNDS} conflicting writes")

    # -- hooks that must survive a hard kill (contract.HOOKS_AFTER_KILL) -------------------
    async def claim_hooks(self, option: str) -> bool:
        """Claim the run's `option` hooks for this process (status.hooks.runner: Engine),
        just before running them. False when they are not ours: the run already ended
        (the operator wrote its final state, and its hook Job runs them) or someone claimed
        them. The resourceVersion precondition makes the claim exclusive."""
        for _ in range(_CONFLICT_ROUNDS):
            flowrun = await self._current()
            current = flowruns.current_state(flowrun)
            hooks = (flowrun.get("status") or {}).get("hooks") or {}
            if hooks.get("runner") or (current is not None and current.is_final()):
                return False
            claim = {"runner": contract.HOOKS_RUNNER_ENGINE, "outcome": contract.HOOKS_RUNNING}
            if await self._patch_fields(flowrun, {"hooks": claim}):
                return True
        raise KubeApiError(409, f"gave up claiming the {option} hooks after "
                                f"{_CONFLICT_ROUNDS} conflicting writes")

    async def record_hooks(self, record: Mapping[str, Any]) -> None:
        """Write how the hooks went (status.hooks outcome and message). Allowed on a final
        run too: the hook record is the one thing its frozen status may still gain."""
        for _ in range(_CONFLICT_ROUNDS):
            if await self._patch_fields(await self._current(), {"hooks": dict(record)}):
                return
        raise KubeApiError(409, f"gave up recording the hooks' outcome after "
                                f"{_CONFLICT_ROUNDS} conflicting writes")

    async def _patch_fields(self, flowrun: Mapping[str, Any], fields: dict[str, Any]) -> bool:
        """One status patch of `fields` guarded by resourceVersion; False on 409 (then the
        next read is fresh)."""
        body = flowruns.patch_body(flowrun["metadata"].get("resourceVersion"), fields)
        try:
            self.flowrun = await self.client.patch_status(body)
            return True
        except Conflict:
            self.flowrun = None
            return False

    async def aclose(self) -> None:
        await self.client.aclose()


def _merged(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` applied to `target` as a JSON merge patch (RFC 7386) would be."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            base = merged.get(key)
            merged[key] = _merged(base if isinstance(base, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def _terminated(refused: Abort, state: states.State) -> Abort:
    """A SIGTERM's crash refused (the operator took the run back, or its exact verdict, e.g.
    Evicted, came first): the run's state is the operator's, but this process was still
    terminated and exits as such (143); an exit 0 would let the Job count a success."""
    if refused.state is None or not isinstance(state.data, TerminationSignal):
        return refused
    return Abort(str(refused), state=dataclasses.replace(refused.state, data=state.data))


def _cancel_requested(flowrun: Mapping[str, Any]) -> bool:
    if (flowrun.get("spec") or {}).get("cancel"):
        return True
    state = flowruns.current_state(flowrun)
    return state is not None and state.is_cancelling()
