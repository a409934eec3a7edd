"""CRD fields of memory retries: spec.retryPolicy of a Deployment and status.memory of a FlowRun.

Role: the schema half of "an attempt that ended OOMKilled is retried with more memory".
`RetryPolicy` is a Deployment's `spec.retryPolicy` (a multiplier and its cap, a Kubernetes
quantity the API server checks with CEL's quantity library); `AttemptMemory` is one entry of
a FlowRun's `status.memory`, the memory each attempt's flow container got. The raise itself
is decided by flowpod_operator._decisions.memory. Callers: flowpod_operator.crds.resources
(DeploymentSpec, FlowRunStatus), crdgen.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from flowpod_operator.crds.quantities import parse_quantity

__all__ = ["RetryPolicy", "AttemptMemory", "retry_policy_field", "memory_field",
           "MAX_QUANTITY_LENGTH", "MAX_MEMORY_RECORDS"]

MAX_QUANTITY_LENGTH = 64
# One entry per attempt: spec.retries is at most 100.
MAX_MEMORY_RECORDS = 101
_MULTIPLIER_HINT = ("spec.retryPolicy.memoryMultiplier must be a number above 1, e.g. 2 "
                    "(an attempt after an OOMKilled one gets twice the memory)")
_MAX_MEMORY_HINT = ("spec.retryPolicy.maxMemory must be a positive Kubernetes quantity, "
                    "e.g. 2Gi or 512Mi")
_TOGETHER_HINT = ("spec.retryPolicy.memoryMultiplier and spec.retryPolicy.maxMemory go "
                  "together: set both (the raise and its cap) or neither")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class RetryPolicy(_Model):
    """How an infrastructure retry (spec.retries) changes the next attempt."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.memoryMultiplier) == has(self.maxMemory)",
        "message": _TOGETHER_HINT}]})

    memory_multiplier: float | None = Field(
        None, description="An attempt that ended OOMKilled is retried (within spec.retries) "
                          "with its flow container's memory limit and request multiplied by "
                          "this, up to maxMemory. Needs a memory limit in "
                          "podTemplate.resources; requires maxMemory.",
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": "self > 1.0", "message": _MULTIPLIER_HINT}]})
    max_memory: str | None = Field(
        None, min_length=1, max_length=MAX_QUANTITY_LENGTH,
        description="The cap of the raised memory limit (a Kubernetes quantity, e.g. 2Gi). "
                    "An attempt OOMKilled with its limit already at the cap is not retried: "
                    "the same memory would fail the same way.",
        json_schema_extra={"x-kubernetes-validations": [
            {"rule": "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
             "message": _MAX_MEMORY_HINT}]})

    @field_validator("memory_multiplier")
    @classmethod
    def check_multiplier(cls, value: float | None) -> float | None:
        if value is not None and not value > 1:
            raise ValueError(f"{_MULTIPLIER_HINT}; got {value}")
        return value

    @field_validator("max_memory")
    @classmethod
    def check_max_memory(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            positive = parse_quantity(value) > 0
        except ValueError:
            positive = False
        if not positive:
            raise ValueError(f"{_MAX_MEMORY_HINT}; got {value!r}")
        return value

    @model_validator(mode="after")
    def check_together(self) -> "RetryPolicy":
        if (self.memory_multiplier is None) != (self.max_memory is None):
            raise ValueError(_TOGETHER_HINT)
        return self


class AttemptMemory(_Model):
    """The memory one attempt's flow container got."""

    attempt: int = Field(ge=1, description="The attempt (as in status.attempt).")
    limit: str | None = Field(None, max_length=MAX_QUANTITY_LENGTH,
                              description="Its resources.limits.memory.")
    request: str | None = Field(None, max_length=MAX_QUANTITY_LENGTH,
                                description="Its resources.requests.memory.")


def retry_policy_field() -> Any:
    """`spec.retryPolicy` of a Deployment."""
    return Field(None, description="How a retry changes the next attempt: memoryMultiplier "
                                   "and maxMemory give an attempt after an OOMKilled one "
                                   "more memory.")


def memory_field() -> Any:
    """`status.memory` of a FlowRun."""
    return Field(None, max_length=MAX_MEMORY_RECORDS,
                 description="The memory limit and request of each attempt's flow container, "
                             "oldest first (written when the attempt's Job is created), so a "
                             "raise after an OOMKilled attempt (spec.retryPolicy) shows here.")
