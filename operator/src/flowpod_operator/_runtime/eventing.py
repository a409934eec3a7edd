"""Kubernetes Events on FlowRuns: one per observed state transition, plus Job/Pod actions.

Role: `EventRecorder.observe` compares each new FlowRun body with the last one seen and
queues an Event for every state appended to its history since (whoever wrote it: the
operator or the engine). `record` queues one for an operator action (Job created, pod
deleted). Posting happens in the background, off the reconcile path, through an injected
`post` coroutine (flowpod_operator._runtime.kubeapi.KubeApi.post_event). Callers:
flowpod_operator._runtime.intake (observe) and .actuator (record).

Order: several transitions often fall within one second (Scheduled and Pending are one
write), and the Events are posted concurrently, so neither the API server's creation order
nor metav1.Time's whole seconds can order them. Each Event therefore carries an `eventTime`
with microseconds that strictly increases in the order the Events were recorded, and no
first/lastTimestamp (kubectl sorts by those first when present); its name ends in that time
in hex, as Kubernetes' own recorders name theirs, so a plain listing is in order too.

A change of the hook record's outcome (status.hooks: a hook Job created, the hooks of a
killed run succeeded or failed) is announced too: HookJobCreated, HooksSucceeded, or a
HooksFailed Warning, with the record's message.

A Crashed entry's Event carries the run's last log lines (status.logTail, written with that
state) after its message: as many of the newest as fit in the API server's 1 KiB bound of an
Event message, under "(last N lines of output)", so `kubectl get events` shows the evidence
next to the cause even after the pod is gone.

A Pending entry whose message names a waiting problem (flowpod_operator._decisions.waiting:
a wrong image, no node, a missing ServiceAccount) becomes a Warning with that reason.

After an operator restart, transitions made while it was down are not re-announced: the
first sight of a run only sets the baseline, so a restart never duplicates Events.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence

from flowpod import contract, states

from flowpod_operator._decisions import waiting

__all__ = ["EventRecorder", "event_body", "new_transitions", "with_log_tail", "COMPONENT",
           "MAX_EVENT_MESSAGE_BYTES"]

COMPONENT = "flowpod-operator"
_log = logging.getLogger("flowpod_operator.events")
_CRASHED = states.StateType.CRASHED.value
_WARNING_TYPES = {states.StateType.FAILED.value, _CRASHED}
_Marker = tuple[str, str, str]
# status.hooks outcomes that are announced (after a hard kill, or run by the engine itself).
_HOOK_EVENTS = {contract.HOOKS_PENDING: ("Normal", "HookJobCreated"),
                contract.HOOKS_SUCCEEDED: ("Normal", "HooksSucceeded"),
                contract.HOOKS_FAILED: ("Warning", "HooksFailed")}
# The API server's bound of an Event's message (events.k8s.io's `note`), in bytes.
MAX_EVENT_MESSAGE_BYTES = 1024
# The smallest step of an Event's microsecond eventTime.
_TICK = timedelta(microseconds=1)


def _marker(entry: Mapping[str, Any]) -> _Marker:
    return entry.get("type", ""), entry.get("name", ""), entry.get("timestamp", "")


def _history(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = body.get("status") or {}
    history = list(status.get("stateHistory") or [])
    if not history and status.get("state"):
        history = [status["state"]]
    return history


def new_transitions(previous: _Marker | None,
                    body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """History entries of `body` newer than the entry marked `previous` (None = no state
    had been seen yet). If the marker fell out of the bounded history, only the newest."""
    history = _history(body)
    if not history:
        return []
    if previous is None:
        return history
    for index in range(len(history) - 1, -1, -1):
        if _marker(history[index]) == previous:
            return history[index + 1:]
    return history[-1:]


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def with_log_tail(message: str, tail: Sequence[str],
                  limit: int = MAX_EVENT_MESSAGE_BYTES) -> str:
    """`message`, then the newest whole lines of `tail` that fit in `limit` bytes in all,
    under "(last N lines of output)"; the cause comes first, so it is never cut for them."""
    head = _cut(message, limit)
    text = head
    for count in range(1, len(tail) + 1):
        noun = "line" if count == 1 else "lines"
        candidate = f"{head}\n(last {count} {noun} of output)\n" + "\n".join(tail[-count:])
        if len(candidate.encode()) > limit:
            break
        text = candidate
    return text


def _micro_time(moment: datetime) -> str:
    """metav1.MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(flowrun: Mapping[str, Any], event_type: str, reason: str, message: str,
               *, now: datetime, instance: str, action: str) -> dict[str, Any]:
    """A core/v1 Event about `flowrun` at `now` (aware), in the events.k8s.io style:
    eventTime with microseconds, a reporting controller and instance, and an action."""
    meta = flowrun["metadata"]
    nanos = int(now.timestamp()) * 10**9 + now.microsecond * 1000
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{nanos:x}",
                     "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
                           "name": meta["name"], "namespace": meta["namespace"],
                           "uid": meta.get("uid", ""),
                           "resourceVersion": meta.get("resourceVersion", "")},
        "type": event_type,
        "reason": reason,
        "action": action,
        "message": _cut(message, MAX_EVENT_MESSAGE_BYTES),
        "source": {"component": COMPONENT},
        "reportingComponent": f"{contract.GROUP}/operator",
        "reportingInstance": instance[:128],
        "eventTime": _micro_time(now),
    }


class EventRecorder:
    """Queues Events and posts them in the background (best effort, bounded queue)."""

    def __init__(self, post: Callable[[Mapping[str, Any]], Awaitable[None]], *,
                 clock: Callable[[], datetime], workers: int = 4,
                 max_queued: int = 20000) -> None:
        self._post = post
        self._clock = clock
        self._workers = workers
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queued)
        self._seen: dict[tuple[str, str], _Marker | None] = {}
        self._hooks_seen: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._instance = socket.gethostname()
        self._last: datetime | None = None
        self.dropped = 0

    def observe(self, body: Mapping[str, Any], *, baseline: bool = False) -> None:
        """Queue an Event per state transition since the last body seen of this run.
        `baseline` (a run seen first at start-up) only remembers where it stands."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        history = _history(body)
        previous = self._seen.get(key)
        self._seen[key] = _marker(history[-1]) if history else None
        hooks = (body.get("status") or {}).get("hooks") or {}
        hooks_marker = (hooks.get("runner"), hooks.get("outcome"))
        hooks_before = self._hooks_seen.get(key)
        self._hooks_seen[key] = hooks_marker
        if baseline:
            return
        for entry in new_transitions(previous, body):
            kind = "Warning" if entry.get("type") in _WARNING_TYPES else "Normal"
            reason = entry.get("name") or "StateChanged"
            problem = (waiting.reason_of(entry.get("message"))
                       if entry.get("type") == states.StateType.PENDING.value else None)
            if problem:
                kind, reason = "Warning", problem
            message = entry.get("message") or f"FlowRun is {entry.get('name')}"
            if entry.get("type") == _CRASHED:
                # Written in the same patch as the final state, so it is here already.
                message = with_log_tail(message, (body.get("status") or {}).get("logTail") or ())
            self.record(body, kind, reason, message, action="Transition")
        if hooks_marker != hooks_before and hooks_marker[1] in _HOOK_EVENTS:
            kind, reason = _HOOK_EVENTS[hooks_marker[1]]
            self.record(body, kind, reason, hooks.get("message") or reason, action="Hooks")

    def record(self, flowrun: Mapping[str, Any], event_type: str, reason: str,
               message: str, *, action: str) -> None:
        event = event_body(flowrun, event_type, reason, message, now=self._tick(),
                           instance=self._instance, action=action)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def _tick(self) -> datetime:
        """The clock, but strictly later than the previous Event's time (see the module
        docstring: the order of the Events is carried by their times)."""
        now = self._clock()
        if self._last is not None and now <= self._last:
            now = self._last + _TICK
        self._last = now
        return now

    def forget(self, key: tuple[str, str]) -> None:
        self._seen.pop(key, None)
        self._hooks_seen.pop(key, None)

    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> list[asyncio.Task[None]]:
        """Start the posting tasks (the caller cancels them when done)."""
        return [asyncio.create_task(self._drain(), name=f"flowpod events {n}")
                for n in range(self._workers)]

    async def _drain(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._post(event)
            except Exception as exc:  # an Event is never worth stopping the operator for
                _log.warning("could not post an Event", extra={
                    "namespace": event["metadata"]["namespace"], "reason": event["reason"],
                    "error": str(exc)})
