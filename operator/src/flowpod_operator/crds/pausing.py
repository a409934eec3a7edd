"""Pydantic models of a FlowRun's pause and resume fields: spec.resume, status.pause and
status.resumed (wire names in flowpod.contract).

Role: part of the FlowRun CRD schema (imported by flowpod_operator.crds.resources, whose
FlowRunSpec and FlowRunStatus carry them). The engine publishes status.pause with a Paused
or Suspended state; a person sets spec.resume (`flowpod resume`, kubectl, GitOps); the
operator validates its input against status.pause.inputSchema and records the accepted
resume in status.resumed, or its refusal in status.pause.refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["ResumeRequest", "ResumeRefusal", "PauseStatus", "ResumedStatus"]

_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
_KEY = {"min_length": 1, "max_length": 253}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ResumeRequest(_Model):
    """Resume the run's current pause (spec.resume), with the input it waits for."""

    key: str | None = Field(
        None, **_KEY, description="The pause to resume (status.pause.key). Unset means the "
                                  "current pause; a key of an earlier pause is ignored.")
    input: Any = Field(
        None, description="The input the flow waits for (pause_flow_run/suspend_flow_run "
                          "wait_for_input), validated by the operator against "
                          "status.pause.inputSchema before the run resumes.",
        json_schema_extra=_PRESERVE)


class ResumeRefusal(_Model):
    """Why the operator refused a spec.resume; the run stays paused."""

    generation: int = Field(ge=0, description="metadata.generation of the refused "
                                              "spec.resume.")
    message: str = Field(max_length=4096, description="What is wrong, naming the field.")


class PauseStatus(_Model):
    """What a Paused or Suspended run waits for (written by the engine)."""

    key: str = Field(**_KEY, description="This pause's key (pause-N, suspend-N or the "
                                         "flow's own).")
    input_schema: dict[str, Any] | None = Field(
        None, description="JSON schema of the input the flow waits for; absent when it "
                          "waits for no input.", json_schema_extra=_PRESERVE)
    timeout_at: datetime = Field(description="When the pause expires: the run then ends "
                                             "Failed.")
    suspended: bool = Field(False, description="True when the run's pod has ended "
                                               "(suspend_flow_run): a resume starts a new "
                                               "attempt.")
    refused: ResumeRefusal | None = Field(None, description="The last refused spec.resume.")


class ResumedStatus(_Model):
    """The resume the operator accepted; the flow gets its input."""

    key: str = Field(**_KEY, description="The pause it resumed.")
    input: Any = Field(None, description="The validated input.", json_schema_extra=_PRESERVE)
    generation: int = Field(ge=0, description="metadata.generation of the spec.resume it "
                                              "came from: that spec.resume is spent.")
