"""The operator's brain: a pure, level-based decision for one FlowRun.

Role: `decide(observation, now)` looks at a FlowRun, its Deployment, and the Jobs and Pods
of its attempts, and returns the actions that move it on (create a Job, write a state,
delete a pod, check again later). It keeps no memory between calls, so the same function
serves a fresh event, a periodic resync, and an operator that restarted mid-run. Callers:
flowpod_operator._runtime.loop (for real) and tests/operator/test_deciding_*.py (with dicts).
A cancellation's branch lives in flowpod_operator._decisions.cancelling, a resume's in
.resuming, a killed run's hooks in .kill_hooks, the memory of an attempt after an OOMKilled
one in .memory.

Who writes what (ARCHITECTURE.md, "Who writes which state"): the operator writes Scheduled/Late, Pending, AwaitingRetry (an
infrastructure retry), Crashed, Cancelling, and Cancelled when the engine did not; the
engine writes everything else. A terminal state is never left (the API server enforces it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from flowpod import contract, flowruns, states

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import cancelling
from flowpod_operator._decisions import cleanup
from flowpod_operator._decisions import diagnosing as diag
from flowpod_operator._decisions import kill_hooks
from flowpod_operator._decisions import manifests
from flowpod_operator._decisions import memory
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions import resuming
from flowpod_operator._decisions import owned
from flowpod_operator._decisions import queueing
from flowpod_operator._decisions.runs import (Policy, Run, group_attempts, log_source,
                                              outcome_fields, until)
from flowpod_operator._decisions import validating
from flowpod_operator._decisions import waiting as wait
from flowpod_operator._decisions.views import Meta

__all__ = ["Policy", "decide"]

_T = states.StateType


def decide(observation: obs.Observation, now: datetime,
           policy: Policy = Policy()) -> list[act.Action]:
    """The actions that move this FlowRun on, given what is observed at `now` (aware UTC).
    An empty list means nothing to do until something changes."""
    # Children first: the run's own WriteStatus must stay last (see actions).
    actions = owned.cancellations(observation) + _decide(observation, now, policy)
    labels = manifests.missing_flowrun_labels(observation.flowrun)
    return actions + [act.LabelFlowRun(labels)] if labels else actions


def _decide(o: obs.Observation, now: datetime, policy: Policy) -> list[act.Action]:
    state = flowruns.current_state(o.flowrun)
    attempts = group_attempts(o)
    recorded = int(o.status.get("attempt") or 0)
    run = Run(o, state, attempts, max([recorded, *attempts]), now, policy)
    if state is not None and state.is_final():
        return _after_final(run)
    if o.spec.get("cancel") or (state is not None and state.type is _T.CANCELLING):
        return cancelling.cancel(run)
    if state is not None and state.type is _T.PAUSED and run.current:
        paused = _paused(run, state.name == states.names.SUSPENDED)
        if paused is not None:
            return paused
    if run.current == 0:
        # Only a fresh run is ours to start; a run in another state without a Job was
        # started elsewhere (e.g. a local engine reporting here) and is left alone.
        return _start(run) if state is None or state.type is _T.SCHEDULED else []
    if recorded < run.current:
        return _record_attempt(run)
    return _follow(run)


# --- starting ------------------------------------------------------------------------------

def _failed(run: Run, message: str) -> list[act.Action]:
    return [act.WriteStatus((states.Failed(message, timestamp=run.now),))]


def _resolve(run: Run) -> list[act.Action] | tuple[Mapping[str, Any] | None, dict[str, Any]]:
    """(deployment, parameters) for a new attempt, or the actions when that is impossible."""
    o = run.o
    name = o.spec.get("deploymentName")
    deployment = None
    if name:
        deployment = o.deployment
        if deployment is None:
            if not o.deployment_fresh:
                return [act.Refresh(deployment=True)]
            return _failed(run, f"Deployment '{name}' not found in namespace '{o.namespace}'")
    elif not (o.spec.get("entrypoint") and o.spec.get("image")):
        return _failed(run, "a FlowRun needs spec.deploymentName, or spec.entrypoint together "
                            "with spec.image; set one of them")
    parameters = manifests.resolve_parameters(o.flowrun, deployment)
    problem = validating.start_problems(o.flowrun, deployment, parameters)
    if problem:
        return _failed(run, problem)
    return deployment, parameters


def _new_attempt(run: Run, number: int, settings: obs.RunSettings | None,
                 steps: list[states.State], why: str | None = None,
                 extra: Mapping[str, Any] | None = None,
                 oom_killed: bool = False) -> list[act.Action]:
    """Create the Job of attempt `number` and record it with the states in `steps`
    (`oom_killed`: the attempt before it was, so it may get more memory)."""
    resolved = _resolve(run)
    if isinstance(resolved, list):
        return resolved
    deployment, _ = resolved
    name = manifests.job_name(run.o.name, number)
    if run.o.job_error:
        return _failed(run, f"Job {name} could not be created: {run.o.job_error}; fix the "
                            "Deployment's podTemplate or image")
    settings = settings or obs.settings_from_deployment(deployment)
    more = memory.plan(run.attempt(number - 1).job, settings, oom_killed=oom_killed)
    job = manifests.build_job(run.o.flowrun, deployment, number, settings=settings,
                              service_account=run.policy.service_account,
                              resources=more.resources)
    why = why or f"attempt {number} of {settings.max_attempts}" + (
        f", which gets {more.note}" if more.note else "")
    steps.append(states.Pending(f"Job {name} created ({why})", timestamp=run.now))
    if queueing.is_suspended(job):  # said at once: one status write per queued run
        steps.append(states.Pending(queueing.waiting_message(job), timestamp=run.now))
    fields: dict[str, Any] = {"attempt": number, "jobName": name, **(extra or {}),
                              **_memory_record(run, job, number)}
    if number > 1:
        fields.update(podName=None, exitCode=None, reason=None)
    return [act.CreateJob(job), act.WriteStatus(tuple(steps), fields)]


def _memory_record(run: Run, job: Mapping[str, Any] | None, number: int) -> dict[str, Any]:
    """status.memory with the memory of attempt `number` (made with `job`), if it sets any."""
    entry = memory.record(job, number) if job is not None else None
    return {"memory": memory.history(run.o.status, entry)} if entry else {}


def _start(run: Run) -> list[act.Action]:
    resolved = _resolve(run)
    if isinstance(resolved, list):
        return resolved
    when = obs.parse_time(run.o.spec.get("scheduledTime"))
    if when is not None and run.now < when:
        wait = act.Requeue((when - run.now).total_seconds())
        if run.state is not None:
            return [wait]
        stamp = contract.format_time(when)
        return [wait, act.WriteStatus((states.Scheduled(f"Scheduled to start at {stamp}",
                                                        timestamp=run.now),))]
    slot = run.o.slot
    if slot is not None and not slot.start:
        return _hold(run, slot.message, slot.cancel)
    steps: list[states.State] = []
    if run.state is None:
        steps.append(states.Scheduled("Scheduled to start now", timestamp=run.now))
    if when is not None and run.now - when > run.policy.late_after and (
            run.state is None or run.state.name != states.names.LATE):
        late = (run.now - when).total_seconds()
        steps.append(states.Late(f"Starting {late:.0f}s after its scheduled time "
                                 f"{contract.format_time(when)}", timestamp=run.now))
    return _new_attempt(run, 1, None, steps)


def _hold(run: Run, message: str, cancel: bool) -> list[act.Action]:
    """A due run that has no concurrency slot: it waits (said once per reason) or, under
    collisionStrategy CancelNew, ends Cancelled."""
    if cancel:
        return [act.WriteStatus((states.Cancelled(message, timestamp=run.now),))]
    state = run.state
    if (state is not None and state.name == states.names.AWAITING_CONCURRENCY_SLOT
            and state.message == message):
        return []  # the runtime queues the run again when a slot frees
    return [act.WriteStatus((states.AwaitingConcurrencySlot(message, timestamp=run.now),))]


def _record_attempt(run: Run) -> list[act.Action]:
    """A Job exists that the status does not record (the operator stopped in between)."""
    name = manifests.job_name(run.o.name, run.current)
    fields: dict[str, Any] = {"attempt": run.current, "jobName": name,
                              **_memory_record(run, run.attempt().job, run.current)}
    state = run.state
    if state is not None and state.type is not _T.SCHEDULED:
        return [act.WriteStatus((), fields)]
    steps = [] if state is not None else [states.Scheduled("Scheduled to start now",
                                                           timestamp=run.now)]
    steps.append(states.Pending(f"Job {name} created (attempt {run.current} of "
                                f"{run.settings().max_attempts})", timestamp=run.now))
    if run.current > 1:
        fields.update(podName=None, exitCode=None, reason=None)
    return [act.WriteStatus(tuple(steps), fields)]


# --- paused runs -----------------------------------------------------------------------------

def _paused(run: Run, suspended: bool) -> list[act.Action] | None:
    """Answer a Paused or Suspended run's spec.resume (a resumed Suspended run gets a new
    attempt), or fail a Suspended run whose pause expired; None: follow the pod."""
    def resume_attempt(answer: resuming.Answer) -> list[act.Action]:
        return _new_attempt(run, run.current + 1, run.settings(), [],
                            why=f"attempt {run.current + 1}, {answer.message.lower()}",
                            extra=answer.fields)
    return resuming.decide(run, suspended, resume_attempt)


# --- following a started attempt -----------------------------------------------------------

def _cleanup(run: Run, d: diag.Diagnosis) -> list[act.Action]:
    """Stop what a crashed attempt leaves behind, so nothing of it can start later."""
    grace = run.settings().cancellation_grace_period_seconds
    actions: list[act.Action] = [act.DeletePod(n, 0) for n in d.stuck_pods]
    actions += [act.DeletePod(n, grace) for n in d.unstarted_pods]
    att = run.attempt()
    if d.reason == "PendingTimeout" and att.job is not None and not att.pods:
        actions.append(act.DeleteJob(Meta(att.job).name or ""))
    return actions


def _follow(run: Run) -> list[act.Action]:
    d = run.diagnose()
    if d.needs_fresh:
        return [act.Refresh(children=True)]
    if d.needs_job_events:
        return [act.Refresh(job_events=Meta(run.attempt().job or {}).name)]
    if d.phase is diag.Phase.STOPPING and d.message and not _awaiting_retry(run.state):
        # Someone else is deleting the pod (a cancellation never reaches _follow): write the
        # exact verdict now, before the engine's own SIGTERM report of an unknown cause.
        return _after_end(run, d)
    if d.queued is not None:
        return _queued(run, d, d.queued)
    if d.phase is not diag.Phase.ENDED:
        return _meanwhile(run, d)
    state = run.state
    if state is not None and state.type is _T.PAUSED and state.name == states.names.SUSPENDED:
        return []  # the engine ended its process on purpose; the run waits to be resumed
    return _after_end(run, d)


def _meanwhile(run: Run, d: diag.Diagnosis) -> list[act.Action]:
    """An attempt not over yet: look again when time alone may change it, and record its
    pod's name and, while it waits to start, why (written when that changes)."""
    actions: list[act.Action] = [act.Requeue(until(d.recheck_at, run.now))] \
        if d.recheck_at is not None else []
    fields = {"podName": d.pod_name} if d.pod_name and d.pod_name != run.o.status.get(
        "podName") else {}
    text = wait.new_message(run.state.message, d.waiting, d.pod_name) if (
        run.state is not None and run.state.type is _T.PENDING
        and d.phase is diag.Phase.STARTING) else None
    steps = (states.Pending(text, timestamp=run.now),) if text else ()
    return actions + [act.WriteStatus(steps, fields)] if steps or fields else actions


def _queued(run: Run, d: diag.Diagnosis, message: str) -> list[act.Action]:
    """The attempt's Job waits for its queue: Pending with the queue's name, however long,
    and a preempted run (its Job suspended again) back to that wait, not Crashed; its
    attempt stays, and the Job makes a new pod when admitted again."""
    actions: list[act.Action] = [act.DeletePod(n, 0) for n in d.stuck_pods]
    if d.recheck_at is not None:
        actions.append(act.Requeue(until(d.recheck_at, run.now)))
    state = run.state
    if (state is not None and state.type in (_T.PENDING, _T.RUNNING)
            and state.message != message):
        actions.append(act.WriteStatus((states.Pending(message, timestamp=run.now),)))
    return actions


def _awaiting_retry(state: states.State | None) -> bool:
    return (state is not None and state.type is _T.SCHEDULED
            and state.name == states.names.AWAITING_RETRY)


def _after_end(run: Run, d: diag.Diagnosis) -> list[act.Action]:
    """The current attempt ended without a final state: retry it, or the run Crashed."""
    settings = run.settings()
    fields = outcome_fields(d, run.o.status)
    cleanup = _cleanup(run, d)
    # Once AwaitingRetry is written, the recorded reason is the attempt's (its pod may go).
    recorded = run.o.status.get("reason") if _awaiting_retry(run.state) else None
    oom_killed = (recorded or d.reason) == memory.OOM_KILLED
    more = memory.plan(run.attempt().job, settings, oom_killed=oom_killed)
    if not (d.retryable and run.current < settings.max_attempts) or more.at_cap:
        text = f"{d.message}; {more.note}" if more.at_cap else d.message
        return cleanup + [act.WriteStatus((states.Crashed(text, timestamp=run.now),),
                                          fields, log_tail_of=log_source(run, d))]
    if not _awaiting_retry(run.state):
        text = f"{d.message}; retrying as attempt {run.current + 1} of {settings.max_attempts}"
        text += f", which gets {more.note}" if more.note else ""
        return cleanup + [act.WriteStatus((states.AwaitingRetry(text, timestamp=run.now),),
                                          fields)]
    if not d.settled:
        # Never two pods at once: the next attempt waits until this one's pod is gone.
        wait = [act.Requeue(until(d.recheck_at, run.now))] if d.recheck_at else []
        return cleanup + wait
    return _new_attempt(run, run.current + 1, settings, [], oom_killed=oom_killed)


# --- after the end -------------------------------------------------------------------------

def _after_final(run: Run) -> list[act.Action]:
    """A final run: its hooks after a hard kill first (it is not deleted before they ran),
    then clean-up, and recording how its pod ended."""
    hooks = kill_hooks.plan(run)
    if not hooks.busy:
        return _clean_up(run) or _settle(run)
    if any(isinstance(a, act.WriteStatus) for a in hooks.actions):
        return list(hooks.actions)  # one status write per decision
    return list(hooks.actions) + _settle(run)


def _clean_up(run: Run) -> list[act.Action]:
    """A final run past its history limit or its TTL is deleted; one within its TTL is
    looked at again when the TTL expires."""
    uid = Meta(run.o.flowrun).uid
    if run.o.beyond_history:
        return [act.DeleteFlowRun(uid, run.o.beyond_history)]
    expiry = cleanup.expires_at(run.o.flowrun, run.o.deployment,
                                run.policy.ttl_seconds_after_finished)
    if expiry is None:
        return []
    when, ttl = expiry
    if run.now >= when:
        return [act.DeleteFlowRun(uid, f"ttlSecondsAfterFinished of {ttl} expired")]
    return [act.Requeue(until(when, run.now))] + _settle(run)


def _settle(run: Run) -> list[act.Action]:
    """A final run: record how its pod ended, and remove a pod that outlives the run."""
    actions: list[act.Action] = []
    assert run.state is not None and run.state.timestamp is not None
    linger_until = run.state.timestamp + run.policy.linger
    grace = run.settings().cancellation_grace_period_seconds
    for pod in run.live_pods():
        meta = Meta(pod)
        deleting = obs.parse_time(meta.deletion_timestamp)
        if deleting is not None:
            # Stuck terminating (its node gone, say): force it once its grace is long over.
            stuck_at = deleting + diag.STUCK_AFTER
            actions.append(act.DeletePod(meta.name or "", 0) if run.now >= stuck_at
                           else act.Requeue(until(stuck_at, run.now)))
            continue
        if not diag.is_started(pod) or run.now >= linger_until:
            actions.append(act.DeletePod(meta.name or "", grace))
        else:
            actions.append(act.Requeue(until(linger_until, run.now)))
    att = run.attempt()
    if att.pods or att.gone:
        d = run.diagnose()
        if d.phase is diag.Phase.ENDED:
            status = run.o.status
            fields = {k: v for k, v in outcome_fields(d, status).items()
                      if status.get(k) is None}
            # A deadline is the real cause even when the engine, stopped by it, wrote first.
            if d.reason == "DeadlineExceeded" and status.get("reason") != d.reason:
                fields["reason"] = d.reason
            if fields:
                actions.append(act.WriteStatus((), fields))
    return actions
