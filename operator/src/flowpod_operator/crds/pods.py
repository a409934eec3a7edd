"""CRD fields of the flow-run pod: `spec.podTemplate` (resources, env, ServiceAccount, ...).

Role: part of the Deployment and FlowRun CRD schemas (flowpod_operator.crds.resources uses
PodTemplate for both kinds' `podTemplate`); the operator's Job builder
(flowpod_operator._decisions.manifests) applies these overrides to the pod it makes.
Callers: flowpod_operator.crds.resources, crdgen.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["ResourceRequirements", "EnvVar", "PodTemplate"]

_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ResourceRequirements(_Model):
    """Compute resources of the flow container (a subset of core/v1 ResourceRequirements)."""

    limits: dict[str, int | str] | None = Field(
        None, description="Maximum resources, e.g. {cpu: '1', memory: 512Mi}. A flow over its "
                          "memory limit is OOM-killed and the run ends Crashed (OOMKilled).")
    requests: dict[str, int | str] | None = Field(
        None, description="Resources reserved for scheduling, e.g. {cpu: 100m, memory: 128Mi}.")


class EnvVar(_Model):
    """An environment variable of the flow container (core/v1 EnvVar)."""

    name: str = Field(description="Variable name.", min_length=1)
    value: str | None = Field(None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        None, description="Source of the value (core/v1 EnvVarSource: secretKeyRef, "
                          "configMapKeyRef, fieldRef, resourceFieldRef); not validated here.",
        json_schema_extra=_PRESERVE)


class PodTemplate(_Model):
    """Overrides applied to the pod that runs each flow run; everything else is flowpod's default."""

    resources: ResourceRequirements | None = Field(
        None, description="CPU and memory requests and limits of the flow container.")
    env: list[EnvVar] | None = Field(
        None, description="Extra environment variables of the flow container. The FLOWPOD_* "
                          "variables are set by flowpod and cannot be overridden.")
    service_account_name: str | None = Field(
        None, description="ServiceAccount of the pod. It needs get/patch/watch on flowruns and "
                          "patch on flowruns/status in the namespace (the engine reports "
                          "through it).")
    node_selector: dict[str, str] | None = Field(
        None, description="Node labels the pod must match to be scheduled.")
    tolerations: list[dict[str, Any]] | None = Field(
        None, description="core/v1 Tolerations of the pod; items are passed through unchanged.",
        json_schema_extra={"items": {"type": "object", **_PRESERVE}})
    volumes: list[dict[str, Any]] | None = Field(
        None, description="core/v1 Volumes of the pod; items are passed through unchanged.",
        json_schema_extra={"items": {"type": "object", **_PRESERVE}})
    volume_mounts: list[dict[str, Any]] | None = Field(
        None, description="core/v1 VolumeMounts of the flow container; items are passed "
                          "through unchanged.",
        json_schema_extra={"items": {"type": "object", **_PRESERVE}})
    working_dir: str | None = Field(
        None, description="Working directory of the flow container; a file entrypoint is "
                          "resolved relative to it. Defaults to the image's WORKDIR.")
