"""One FlowRun as a decision sees it: its attempts, their Jobs and Pods, and the knobs.

Role: `group_attempts` sorts an Observation's Jobs and Pods by attempt number, and `Run`
bundles what every step of flowpod_operator._decisions.deciding shares (the observation,
the current state and attempt, the clock, the Policy), with the diagnosis of an attempt.
Pure data and functions, like the rest of the decision layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, Mapping

from flowpod import states

from flowpod_operator._decisions import diagnosing as diag
from flowpod_operator._decisions import manifests
from flowpod_operator._decisions import observations as obs
from flowpod_operator._decisions.views import Meta

__all__ = ["Policy", "Attempt", "Run", "group_attempts", "until", "outcome_fields",
           "log_source"]


@dataclass(frozen=True)
class Policy:
    """Operator-wide knobs of the decision (the CLI may set them)."""

    service_account: str = manifests.DEFAULT_SERVICE_ACCOUNT
    # A due run that starts later than this after its scheduledTime is marked Late first.
    late_after: timedelta = timedelta(seconds=15)
    # A run already final whose pod still runs this long afterwards gets the pod deleted.
    linger: timedelta = timedelta(seconds=30)
    # ttlSecondsAfterFinished of runs whose FlowRun and Deployment set none (None: keep).
    ttl_seconds_after_finished: int | None = None
    # activeDeadlineSeconds of a hook Job (on_crashed / on_cancellation after a hard kill).
    hooks_deadline_seconds: int = 300


@dataclass
class Attempt:
    job: Mapping[str, Any] | None = None
    pods: list[Mapping[str, Any]] = field(default_factory=list)
    gone: list[Mapping[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """Everything about the run the helpers below share."""

    o: obs.Observation
    state: states.State | None
    attempts: dict[int, Attempt]
    current: int
    now: datetime
    policy: Policy

    def attempt(self, number: int | None = None) -> Attempt:
        return self.attempts.get(self.current if number is None else number) or Attempt()

    def settings(self, number: int | None = None) -> obs.RunSettings:
        job = self.attempt(number).job
        if job is not None:
            return obs.settings_from_job(job)
        return obs.settings_from_deployment(self.o.deployment)

    def diagnose(self, number: int | None = None) -> diag.Diagnosis:
        number = self.current if number is None else number
        att = self.attempt(number)
        name = self.o.status.get("jobName") if number == self.o.status.get("attempt") else None
        return diag.diagnose(att.job, att.pods, att.gone, settings=self.settings(number),
                             now=self.now, fresh=self.o.fresh,
                             job_name=name or manifests.job_name(self.o.name, number),
                             job_events=self.o.job_events if number == self.current else None)

    def live_pods(self) -> list[Mapping[str, Any]]:
        return [p for a in self.attempts.values() for p in a.pods if not diag.is_terminated(p)]


def group_attempts(o: obs.Observation) -> dict[int, Attempt]:
    attempts: dict[int, Attempt] = {}

    def ours(objs: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any]]]:
        for obj in objs:
            number = obs.attempt_of(obj)
            if number and obs.belongs_to(obj, o.flowrun):
                yield number, obj

    for number, job in ours(o.jobs):
        attempts.setdefault(number, Attempt()).job = job
    for number, pod in ours(o.pods):
        attempts.setdefault(number, Attempt()).pods.append(pod)
    for number, pod in ours(o.gone_pods):
        attempts.setdefault(number, Attempt()).gone.append(pod)
    return attempts


def until(when: datetime, now: datetime) -> float:
    return max((when - now).total_seconds(), 0.0)


def outcome_fields(d: diag.Diagnosis, status: Mapping[str, Any]) -> dict[str, Any]:
    fields = {"exitCode": d.exit_code, "reason": d.reason or None,
              "podName": d.pod_name or status.get("podName")}
    return {k: v for k, v in fields.items() if v is not None}


def log_source(run: Run, d: diag.Diagnosis) -> str | None:
    """The attempt's pod, while it still exists: its log tail is kept with the final state."""
    names = [Meta(p).name for p in run.attempt().pods]
    if d.pod_name in names:
        return d.pod_name
    return names[-1] if names else None
