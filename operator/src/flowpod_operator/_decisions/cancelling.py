"""Cancelling a FlowRun (spec.cancel): the pure branch of deciding.decide for a run whose
cancellation was requested.

Role: `cancel(run)` writes Cancelling and deletes the live pods with the run's grace period,
force-deletes a pod stuck past it, and writes Cancelled once no pod of the run is alive
(deleting Jobs that could still start one). The exact messages are the contract (README's
states table). Caller: flowpod_operator._decisions.deciding.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flowpod import states

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import diagnosing as diag
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import queueing
from flowpod_operator._decisions.runs import Run, log_source, outcome_fields, until
from flowpod_operator._decisions.views import Meta

__all__ = ["cancel"]

_T = states.StateType


def _active_jobs(run: Run) -> list[str]:
    """Jobs that may still start a pod: unfinished, and no pod of theirs seen yet (with
    backoffLimit 0, a Job whose pod ended can never start another), or suspended by their
    queue (re-admitted, a preempted Job makes a new pod)."""
    names = []
    for att in run.attempts.values():
        job = att.job
        if job is None or Meta(job).deletion_timestamp or (
                (att.pods or att.gone) and not queueing.is_suspended(job)):
            continue
        conditions = (job.get("status") or {}).get("conditions") or []
        if not any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in conditions):
            names.append(Meta(job).name or "")
    return names


def _cancelled(run: Run) -> list[act.Action]:
    """No pod of the run is alive: the run is Cancelled (and its Jobs can start no pod)."""
    jobs = _active_jobs(run)
    if jobs and not run.o.fresh:
        return [act.Refresh(children=True)]  # a pod may exist that the cache has not shown
    att = run.attempt()
    fields: dict[str, Any] = {}
    text = "Cancelled by request (spec.cancel) before the run started"
    source = None
    if run.state is not None and run.state.type is _T.SCHEDULED and run.current:
        text = "Cancelled by request (spec.cancel) while awaiting a retry"
    elif att.pods or att.gone:
        d = run.diagnose()
        fields = outcome_fields(d, run.o.status)
        code = f" (exit code {d.exit_code})" if d.exit_code is not None else ""
        text = f"Cancelled by request (spec.cancel); pod {d.pod_name} stopped{code}"
        source = log_source(run, d)
    actions: list[act.Action] = [act.DeleteJob(name) for name in jobs]
    return actions + [act.WriteStatus((states.Cancelled(text, timestamp=run.now),), fields,
                                      log_tail_of=source)]


def cancel(run: Run) -> list[act.Action]:
    live = run.live_pods()
    if not live:
        return _cancelled(run)
    grace = run.settings().cancellation_grace_period_seconds
    names = ", ".join(Meta(p).name or "" for p in live)
    if run.state is None or run.state.type is not _T.CANCELLING:
        text = (f"Cancellation requested (spec.cancel): stopping pod {names} with a "
                f"{grace}s grace period")
        return [act.WriteStatus((states.Cancelling(text, timestamp=run.now),))]
    actions: list[act.Action] = []
    stuck: list[str] = []
    recheck: datetime | None = None
    for pod in live:
        meta = Meta(pod)
        name, deleting = meta.name or "", obs.parse_time(meta.deletion_timestamp)
        if deleting is None:
            actions.append(act.DeletePod(name, grace))
            deleting = run.now + timedelta(seconds=grace)
        if run.now >= deleting + diag.STUCK_AFTER:
            stuck.append(name)
        else:
            due = deleting + diag.STUCK_AFTER
            recheck = due if recheck is None else min(recheck, due)
    actions += [act.DeletePod(name, 0) for name in stuck]
    if len(stuck) == len(live):
        text = (f"Cancelled by request (spec.cancel); pod {names} did not stop within its "
                f"{grace}s grace period and was force-deleted")
        return actions + [act.WriteStatus((states.Cancelled(text, timestamp=run.now),))]
    return [act.Requeue(until(recheck, run.now))] + actions if recheck else actions
