"""Pydantic models of a Deployment's schedules and of its status (flowpod.io/v1alpha1).

Role: the schema half of scheduling. `Schedule` is one entry of `spec.schedules` (exactly one
of cron, interval or rrule, checked by the API server through CEL); `DeploymentStatus` is what
the operator writes back (Ready, the next times, the active runs). What CEL cannot check (cron
syntax, a time zone's name, an RRULE) is checked by the operator
(flowpod_operator._decisions.scheduling), which reports it as Ready=False naming the field.
Callers: flowpod_operator.crds.resources (DeploymentSpec, Deployment), crdgen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = ["Schedule", "DeploymentStatus", "MissedRunPolicy", "ConcurrencyPolicy",
           "SLUG_PATTERN", "MAX_SLUG_LENGTH", "ONE_KIND_RULE", "NEXT_TIMES"]

SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_SLUG_LENGTH = 20
NEXT_TIMES = 3
MissedRunPolicy = Literal["RunLatest", "RunAll", "Skip"]
ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]
_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
ONE_KIND_RULE = {
    "rule": "(has(self.cron) ? 1 : 0) + (has(self.interval) ? 1 : 0) + "
            "(has(self.rrule) ? 1 : 0) == 1",
    "message": "a schedule has exactly one of cron, interval or rrule; split it into "
               "several entries of spec.schedules",
}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Schedule(_Model):
    """When to start runs of the Deployment: exactly one of cron, interval or rrule."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [ONE_KIND_RULE]})

    cron: str | None = Field(
        None, min_length=1, max_length=256,
        description="Five-field cron expression (minute hour day-of-month month day-of-week) "
                    "or a macro such as @hourly, @daily, @weekly, @monthly, @yearly, read in "
                    "timezone. A wall-clock time that occurs twice (autumn) starts one run; "
                    "one that is skipped (spring) starts at the moment the clock jumps.")
    interval: int | None = Field(
        None, ge=1, description="Seconds between runs, counted from anchorDate.")
    anchor_date: datetime | None = Field(
        None, description="Interval only: a time the runs fall on (RFC 3339); default "
                          "2020-01-01T00:00:00Z.")
    rrule: str | None = Field(
        None, min_length=1, max_length=4096,
        description="RFC 5545 recurrence rule, e.g. 'FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9', "
                    "optionally with a DTSTART line; read in timezone.")
    timezone: str = Field(
        "UTC", min_length=1, max_length=64,
        description="IANA time zone of cron and rrule, e.g. Europe/Berlin. Default UTC.")
    active: bool = Field(True, description="Set to false to stop this schedule only.")
    parameters: dict[str, Any] | None = Field(
        None, description="Flow parameters of this schedule's runs, merged key by key over "
                          "the Deployment's spec.parameters.", json_schema_extra=_PRESERVE)
    slug: str | None = Field(
        None, min_length=1, max_length=MAX_SLUG_LENGTH, pattern=SLUG_PATTERN,
        description="Short name used in run names (<deployment>-<slug>-<epoch seconds>) "
                    "and the flowpod.io/schedule label; default the entry's index (0, 1, ...). "
                    "Unique within the Deployment.")

    @model_validator(mode="after")
    def check_one_kind(self) -> "Schedule":
        if sum(x is not None for x in (self.cron, self.interval, self.rrule)) != 1:
            raise ValueError(ONE_KIND_RULE["message"])
        return self


class _Condition(_Model):
    type: str = Field(min_length=1, max_length=316, description="Condition type: Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from.")
    last_transition_time: datetime = Field(
        description="When status last changed (not when it was last written).")
    reason: str = Field(min_length=1, max_length=1024,
                        description="CamelCase reason, e.g. Scheduling, Paused, "
                                    "InvalidSchedule.")
    message: str = Field(max_length=32768, description="Human-readable detail and the fix.")


class DeploymentStatus(_Model):
    """What the operator's scheduler observed and did, written by the operator only."""

    observed_generation: int | None = Field(
        None, description="metadata.generation of the spec this status reflects.")
    conditions: list[_Condition] | None = Field(
        None, description="Ready: True while the schedules are valid (reason Scheduling, "
                          "Paused or NoSchedules); False with the field and the fix when "
                          "one is not, and then also Stalled (True) until the spec is fixed "
                          "(the kstatus convention).",
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]})
    schedule: str | None = Field(
        None, max_length=1024, description="The schedules in one line, or Paused.")
    scheduled_through: datetime | None = Field(
        None, description="Every due time up to this one has been handled: started, or "
                          "skipped by missedRunPolicy, concurrencyPolicy or paused.")
    last_schedule_time: datetime | None = Field(
        None, description="The due time of the last run the schedules started.")
    next_schedule_times: list[datetime] | None = Field(
        None, max_length=NEXT_TIMES,
        description=f"The next {NEXT_TIMES} due times over all active schedules.")
    active_runs: int | None = Field(
        None, ge=0, description="Scheduled runs of this Deployment not yet final.")
    last_run_name: str | None = Field(None, description="The last run the schedules started.")
    last_run_state: str | None = Field(None, description="Its state name, e.g. Completed.")
