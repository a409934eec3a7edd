"""Hooks after a hard kill: whether the operator runs a final run's hooks in a hook Job.

Role: a flow's on_crashed / on_cancellation hooks run in its own process when the engine
reaches the final state itself. When the process was killed (OOM, SIGKILL, eviction, a
lost node, a deadline, a deleted pod, a cancellation past its grace period), the operator
writes the final state and nothing of the flow ran its hooks; `plan` then asks for a short
hook Job (`build_job`: the attempt's image, entrypoint and pod settings, with
contract.ENV_HOOKS naming the hook option, backoffLimit 0 and an activeDeadlineSeconds),
which runs exactly those hooks (flowpod.engine._hooks_mode).

Run once: the engine records the hooks the flow declares with Running (status.hooks.
declared; a run whose engine never started declares none, and gets no hook Job: nothing of
the flow ran). Whoever runs them first claims them by writing status.hooks.runner under a
resourceVersion precondition -- the engine (Engine) just before running them, the operator
(Job) before creating the Job, whose name is deterministic (`<run>-hooks`; AlreadyExists
means it is there). The outcome (Succeeded / Failed, with a message) is written by the
hook Job's engine, or by the operator from the Job when that engine could not. Pure, like
the rest of the decision layer; caller: flowpod_operator._decisions.deciding.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from flowpod import contract

from flowpod_operator._decisions import actions as act
from flowpod_operator._decisions import diagnosing as diag
from flowpod_operator._decisions import manifests
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.runs import Run
from flowpod_operator._decisions.views import Meta

__all__ = ["Plan", "plan", "job_name", "build_job", "is_hooks_object"]

_SUFFIX = "-hooks"
_MAX_NAME = 63


@dataclass(frozen=True)
class Plan:
    """The actions for the hooks of a final run; `busy` while they are not done (the run
    is then kept: no clean-up deletes it before its hooks ran)."""

    actions: tuple[act.Action, ...] = ()
    busy: bool = False


IDLE = Plan()


def job_name(flowrun_name: str) -> str:
    """`<run>-hooks`, shortened with a hash of the FlowRun name past 63 characters."""
    name = flowrun_name + _SUFFIX
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(flowrun_name.encode()).hexdigest()[:8]
    head = flowrun_name[: _MAX_NAME - len(_SUFFIX) - 9].rstrip("-.")
    return f"{head}-{digest}{_SUFFIX}"


def is_hooks_object(obj: Mapping[str, Any]) -> bool:
    """A hook Job or its pod (they carry no attempt label, so no attempt counts them)."""
    return contract.LABEL_HOOKS in Meta(obj).labels


def _pod_spec(run: Run) -> dict[str, Any]:
    """The pod spec of the run's last attempt (the Deployment may have changed since), or
    a fresh one when that Job is gone."""
    job = run.attempt().job
    if job is None:
        job = manifests.build_job(run.o.flowrun, run.o.deployment, max(run.current, 1),
                                  settings=run.settings(),
                                  service_account=run.policy.service_account)
    return copy.deepcopy(((job.get("spec") or {}).get("template") or {}).get("spec") or {})


def build_job(run: Run, option: str) -> dict[str, Any]:
    """The hook Job of `run`: the attempt's pod (same image, entrypoint, ServiceAccount,
    volumes) with ENV_HOOKS set, run once within the Policy's hooks deadline."""
    meta = run.o.flowrun["metadata"]
    spec = _pod_spec(run)
    for container in spec.get("containers") or []:
        if container.get("name") == contract.CONTAINER_NAME:
            env = [e for e in container.get("env") or () if e.get("name") != contract.ENV_HOOKS]
            container["env"] = env + [{"name": contract.ENV_HOOKS, "value": option}]
    labels = {k: v for k, v in manifests.run_labels(run.o.flowrun, 1).items()
              if k != contract.LABEL_ATTEMPT}
    labels[contract.LABEL_HOOKS] = option
    notes = {contract.ANNOTATION_FLOW_RUN: meta["name"],
             contract.ANNOTATION_FLOW_RUN_UID: meta["uid"]}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": labels, "annotations": notes,
                     "ownerReferences": [{"apiVersion": contract.API_VERSION,
                                          "kind": contract.KIND_FLOW_RUN,
                                          "name": meta["name"], "uid": meta["uid"],
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                 "activeDeadlineSeconds": run.policy.hooks_deadline_seconds,
                 "template": {"metadata": {"labels": dict(labels), "annotations": dict(notes)},
                              "spec": spec}},
    }


def _ours(objs: Sequence[Mapping[str, Any]], run: Run) -> list[Mapping[str, Any]]:
    return [o for o in objs if is_hooks_object(o) and obs.belongs_to(o, run.o.flowrun)]


def _job_outcome(run: Run, job: Mapping[str, Any]) -> dict[str, str] | None:
    """The outcome told by a finished hook Job (None: not finished)."""
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"}
    name = Meta(job).name
    if "Complete" in conditions:
        return {"outcome": contract.HOOKS_SUCCEEDED, "message": f"hook Job {name} completed"}
    failed = conditions.get("Failed")
    if failed is None:
        return None
    d = diag.diagnose(job, _ours(run.o.pods, run), _ours(run.o.gone_pods, run),
                      settings=obs.settings_from_job(job), now=run.now, fresh=True,
                      job_name=name)
    detail = d.message or failed.get("message") or failed.get("reason") or "failed"
    return {"outcome": contract.HOOKS_FAILED,
            "message": contract.truncate_message(f"hook Job {name} failed: {detail}")}


def plan(run: Run) -> Plan:
    """What to do about the hooks of `run`, whose state is final."""
    assert run.state is not None
    option = contract.hook_for_state_type(run.state.type.value)
    record = run.o.status.get("hooks") or {}
    if option is None or option not in (record.get("declared") or ()):
        return IDLE
    runner, outcome = record.get("runner"), record.get("outcome")
    if outcome in contract.HOOKS_DONE:
        return IDLE
    if runner == contract.HOOKS_RUNNER_ENGINE:
        if run.live_pods():
            return Plan(busy=True)  # the engine may still be running them
        # Claimed but never reported: the process died while its hooks ran. Not again.
        return Plan((act.WriteStatus((), {"hooks": {
            "outcome": contract.HOOKS_FAILED,
            "message": f"the flow's process ended while its {option} hooks ran; they are "
                       "not run again"}}),), busy=True)
    name = job_name(run.o.name)
    if runner is None:
        claim = {"runner": contract.HOOKS_RUNNER_JOB, "job": name,
                 "outcome": contract.HOOKS_PENDING,
                 "message": f"hook Job {name} runs the {option} hooks"}
        return Plan((act.WriteStatus((), {"hooks": claim}),), busy=True)
    job = next((j for j in _ours(run.o.jobs, run) if Meta(j).name == name), None)
    if job is None and run.o.job_error:
        return Plan((act.WriteStatus((), {"hooks": {
            "outcome": contract.HOOKS_FAILED,
            "message": contract.truncate_message(
                f"hook Job {name} could not be created: {run.o.job_error}")}}),), busy=True)
    if job is None:
        if not run.o.fresh:  # it may exist already (a restart): AlreadyExists is fine too
            return Plan((act.Refresh(children=True),), busy=True)
        if outcome == contract.HOOKS_RUNNING:
            # Its pod started the hooks and the Job is gone: never run them a second time.
            return Plan((act.WriteStatus((), {"hooks": {
                "outcome": contract.HOOKS_FAILED,
                "message": f"hook Job {name} was deleted while its {option} hooks ran; "
                           "they are not run again"}}),), busy=True)
        return Plan((act.CreateJob(build_job(run, option)),), busy=True)
    told = _job_outcome(run, job)
    if told is None:
        return Plan(busy=True)  # the Job's events bring the run back
    return Plan((act.WriteStatus((), {"hooks": told}),), busy=True)
