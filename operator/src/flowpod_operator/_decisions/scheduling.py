"""What a Deployment's schedules ask for now: runs to start, runs to cancel, the status, when
to look again.

Role: pure, with the clock injected (`now`). `plan(deployment, runs, now)` reads the
Deployment (its timetables through flowpod_operator._decisions.timetables) and its scheduled
runs, applies missedRunPolicy, startingDeadlineSeconds and concurrencyPolicy (a CronJob's
meanings), and returns a `Plan`: the FlowRun manifests to create (deterministic names, so a
restart or a second look finds them already there), the live runs to cancel (Replace), the
status to write and the next due time to wake at. Callers: flowpod_operator._runtime.scheduler.

The cursor is `status.scheduledThrough`: every due time at or before it has been handled
(started or deliberately skipped). A new Deployment's cursor is its creation time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from flowpod import contract

from flowpod_operator._decisions import timetables
from flowpod_operator._decisions.manifests import label_value
from flowpod_operator._decisions.views import FlowRunView, Meta

__all__ = ["Plan", "Start", "plan", "ON_TIME", "MAX_RUN_ALL", "is_final"]

# A due time looked at within this long of it is on time; later it was missed (the operator
# was down or the clock jumped), and Skip does not start it.
ON_TIME = timedelta(seconds=10)
# RunAll starts at most this many missed runs per schedule (the newest ones).
MAX_RUN_ALL = 100
NEXT_TIMES = 3
_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


@dataclass(frozen=True)
class Start:
    """A FlowRun to create for one due time of one schedule."""

    name: str
    slug: str
    due: datetime
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    starts: list[Start] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    wake_at: datetime | None = None


def is_final(run: Mapping[str, Any]) -> bool:
    return FlowRunView(run).state_type in _FINAL


def plan(deployment: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
         now: datetime) -> Plan:
    """The plan for one Deployment; `runs` are its FlowRuns that carry a schedule label."""
    meta = Meta(deployment)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    created = contract.parse_time_or_none(
        (deployment.get("metadata") or {}).get("creationTimestamp")) or now
    cursor = contract.parse_time_or_none(status.get("scheduledThrough")) or created
    tables, invalid = timetables.parse(spec, created)
    paused = bool(spec.get("paused"))
    starts: list[Start] = []
    cancels: list[str] = []
    if invalid is None and not paused:
        due = _due(tables, _cursors(tables, cursor, runs), now, spec)
        starts, cancels = _concurrency(due, runs, spec, meta.name or "", deployment, now)
    # Everything due until now is handled: started, skipped by policy, paused or invalid.
    handled = [t for t in (table.latest_until(now) for table in tables) if t is not None]
    through = max([cursor, *handled])
    upcoming = [] if invalid is not None or paused else _upcoming(tables, now)
    new_status = _status(deployment, runs, starts, through, upcoming, tables, invalid, now)
    return Plan(starts, cancels, new_status, upcoming[0] if upcoming else None)


def _cursors(tables: Sequence[timetables.Timetable], cursor: datetime,
             runs: Sequence[Mapping[str, Any]]) -> list[datetime]:
    """Per schedule, the latest due time already handled: status.scheduledThrough, or the
    newest run of that schedule when later. The runs record progress themselves, so the
    scheduler may write scheduledThrough lazily (flowpod_operator._runtime.scheduler)."""
    newest: dict[str, datetime] = {}
    for run in runs:
        slug = ((run.get("metadata") or {}).get("labels") or {}).get(contract.LABEL_SCHEDULE)
        due = contract.parse_time_or_none((run.get("spec") or {}).get("scheduledTime"))
        if slug is not None and due is not None and (slug not in newest or due > newest[slug]):
            newest[slug] = due
    return [max(cursor, newest.get(table.slug, cursor)) for table in tables]


def _due(tables: Sequence[timetables.Timetable], cursors: Sequence[datetime], now: datetime,
         spec: Mapping[str, Any]) -> list[tuple[timetables.Timetable, datetime]]:
    policy = spec.get("missedRunPolicy") or "RunLatest"
    deadline = spec.get("startingDeadlineSeconds")
    out: list[tuple[timetables.Timetable, datetime]] = []
    for table, cursor in zip(tables, cursors):
        times = table.between(cursor, now, MAX_RUN_ALL)
        if deadline is not None:
            times = [t for t in times if now - t <= timedelta(seconds=int(deadline))]
        on_time = [t for t in times if now - t <= ON_TIME]
        if policy == "RunAll":
            chosen = times
        elif policy == "Skip":
            chosen = on_time
        else:
            # RunLatest: due times looked at on time all start (a busy scheduler a few
            # seconds behind has missed nothing); of a backlog missed while the operator was
            # down, the newest one stands for all.
            chosen = on_time or times[-1:]
        out.extend((table, t) for t in chosen)
    return sorted(out, key=lambda pair: (pair[1], pair[0].index))


def _concurrency(due: Sequence[tuple[timetables.Timetable, datetime]],
                 runs: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], name: str,
                 deployment: Mapping[str, Any], now: datetime
                 ) -> tuple[list[Start], list[str]]:
    policy = spec.get("concurrencyPolicy") or "Allow"
    existing = {Meta(run).name for run in runs}
    live = [Meta(run).name or "" for run in runs if not is_final(run)]
    starts: list[Start] = []
    cancels: list[str] = []
    for table, moment in due:
        run = timetables.run_name(name, table.slug, moment)
        if run in existing:
            continue  # already started (a restart, or a second look at the same time)
        if policy == "Forbid" and (live or starts):
            continue
        if policy == "Replace":
            cancels.extend(r for r in live if r not in cancels)
            starts = []  # a newer due time replaces an older one not yet started
        starts.append(Start(run, table.slug, moment,
                            _manifest(deployment, table, run, moment)))
    return starts, cancels


def _manifest(deployment: Mapping[str, Any], table: timetables.Timetable, run: str,
              due: datetime) -> dict[str, Any]:
    meta = Meta(deployment)
    spec: dict[str, Any] = {"deploymentName": meta.name,
                            "scheduledTime": contract.format_time(due, fraction=False)}
    if table.parameters:
        spec["parameters"] = dict(table.parameters)
    return {
        "apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
        "metadata": {
            "name": run, "namespace": meta.namespace,
            # Deployment names may exceed a label value's 63 characters.
            "labels": {contract.LABEL_DEPLOYMENT: label_value(meta.name or ""),
                       contract.LABEL_SCHEDULE: table.slug},
            "ownerReferences": [{"apiVersion": contract.API_VERSION,
                                 "kind": contract.KIND_DEPLOYMENT, "name": meta.name,
                                 "uid": meta.uid}],
        },
        "spec": spec,
    }


def _upcoming(tables: Sequence[timetables.Timetable], now: datetime) -> list[datetime]:
    times: set[datetime] = set()
    for table in tables:
        moment: datetime | None = now
        for _ in range(NEXT_TIMES):
            moment = table.next_after(moment) if moment is not None else None
            if moment is None:
                break
            times.add(moment)
    return sorted(times)[:NEXT_TIMES]


def _status(deployment: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
            starts: Sequence[Start], through: datetime, upcoming: Sequence[datetime],
            tables: Sequence[timetables.Timetable],
            invalid: timetables.InvalidSchedule | None, now: datetime) -> dict[str, Any]:
    spec = deployment.get("spec") or {}
    old = deployment.get("status") or {}
    if invalid is not None:
        ready = ("False", "InvalidSchedule", invalid.message)
    elif spec.get("paused"):
        ready = ("True", "Paused", "spec.paused is true: no schedule starts runs; set it to "
                                   "false (flowpod unpause) to resume")
    elif not tables:
        ready = ("True", "NoSchedules", "no active schedule; runs start only when created")
    else:
        # No due time in the message: it would change at every due time, and a changed
        # condition costs a status write (status.nextScheduleTimes has the times).
        ready = ("True", "Scheduling", "the schedules start runs at their due times; "
                                       "status.nextScheduleTimes lists the next ones"
                 if upcoming else "the schedules have no further due time")
    out: dict[str, Any] = {
        "observedGeneration": Meta(deployment).generation,
        "conditions": _conditions(old, ready, Meta(deployment).generation, now),
        "schedule": "Paused" if spec.get("paused") else
                    ", ".join(t.summary for t in tables) or None,
        "scheduledThrough": contract.format_time(through, fraction=False),
        "nextScheduleTimes": [contract.format_time(t, fraction=False) for t in upcoming],
        "activeRuns": sum(not is_final(r) for r in runs) + len(starts),
    }
    last = _last_run(runs, starts)
    if last is not None:
        out.update(last)
    elif old.get("lastScheduleTime"):
        out["lastScheduleTime"] = old["lastScheduleTime"]
    return out


def _last_run(runs: Sequence[Mapping[str, Any]], starts: Sequence[Start]
              ) -> dict[str, Any] | None:
    if starts:
        start = starts[-1]
        return {"lastScheduleTime": contract.format_time(start.due, fraction=False),
                "lastRunName": start.name, "lastRunState": "Scheduled"}
    dated = [(contract.parse_time_or_none((r.get("spec") or {}).get("scheduledTime")), r)
             for r in runs]
    dated = [(t, r) for t, r in dated if t is not None]
    if not dated:
        return None
    moment, run = max(dated, key=lambda pair: pair[0])
    state = ((run.get("status") or {}).get("state") or {}).get("name") or "Scheduled"
    return {"lastScheduleTime": contract.format_time(moment, fraction=False),
            "lastRunName": Meta(run).name, "lastRunState": state}


def _conditions(old: Mapping[str, Any], ready: tuple[str, str, str], generation: int,
                now: datetime) -> list[dict[str, Any]]:
    """Ready always; kstatus' Stalled too while a schedule is unreadable (only a spec edit
    helps). Reconciling is not written: the status is written with observedGeneration in the
    same patch that acts on a new generation, which kstatus already reads as in progress."""
    out = [_condition(old, contract.CONDITION_READY, ready, generation, now)]
    if ready[1] == "InvalidSchedule":
        out.append(_condition(old, contract.CONDITION_STALLED, ("True",) + ready[1:],
                              generation, now))
    return out


def _condition(old: Mapping[str, Any], kind: str, value: tuple[str, str, str],
               generation: int, now: datetime) -> dict[str, Any]:
    status, reason, message = value
    previous = next((c for c in old.get("conditions") or () if c.get("type") == kind), None)
    since = previous.get("lastTransitionTime") if previous and \
        previous.get("status") == status else None
    return {"type": kind, "status": status, "reason": reason,
            "message": message, "observedGeneration": generation,
            "lastTransitionTime": since or contract.format_time(now, fraction=False)}
