"""CRD fields of result storage and of retries (flowpod.io/v1alpha1).

Role: the schema half of results that outlive a pod. `result_storage_field` is
`spec.resultStorage` of a Deployment and of a FlowRun: an fsspec URL whose shape the API
server checks (CEL); whether fsspec knows its protocol is checked by the operator before
any pod (flowpod_operator._decisions.storage), and whether it is writable by the engine at
the start of the run. `ReuseResultsFrom` is `spec.reuseResultsFrom` of a FlowRun that
`flowpod retry --from-failure` creates: the run whose persisted task results it reuses.
Callers: flowpod_operator.crds.resources (DeploymentSpec, FlowRunSpec), crdgen.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["ReuseResultsFrom", "result_storage_field", "URL_REGEX", "MAX_URL_LENGTH"]

# scheme "://" rest, as fsspec splits a URL (RFC 3986's scheme characters).
URL_REGEX = r"^[A-Za-z][A-Za-z0-9+.-]*://.+$"
MAX_URL_LENGTH = 2048


def _url_rule(field_path: str) -> dict[str, str]:
    return {"rule": f"self.matches(r'{URL_REGEX}')",
            "message": f"{field_path} must be an fsspec URL such as file:///mnt/results (a "
                       f"mounted volume) or s3://bucket/prefix"}


def result_storage_field(owner: str) -> Any:
    """`spec.resultStorage` of `owner` ("Deployment" or "FlowRun")."""
    extra = (" Overrides the Deployment's spec.resultStorage." if owner == "FlowRun" else "")
    return Field(
        None, min_length=1, max_length=MAX_URL_LENGTH,
        description=("Where persisted results go, as an fsspec URL: file:///mnt/results (a "
                     "volume mounted there through podTemplate), s3://bucket/prefix or "
                     "gs://bucket/prefix (the image then needs s3fs or gcsfs). Task results "
                     "with persist_result, cache entries, and a flow result too large for "
                     "status.result (which then names it in status.result.reference) are "
                     "kept there, so they outlive the pod and `flowpod retry --from-failure` "
                     "can reuse them. Unset: kept inside the pod only, lost with it." + extra),
        json_schema_extra={"x-kubernetes-validations": [_url_rule("spec.resultStorage")]})


class ReuseResultsFrom(BaseModel):
    """The earlier run whose persisted task results this run reuses, task by task."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    flow_run_name: str = Field(min_length=1, max_length=253,
                               description="Name of the earlier FlowRun (same namespace).")
    flow_run_uid: str = Field(min_length=1, max_length=64,
                              description="Its metadata.uid: results are stored under it, so "
                                          "a re-created run of the same name is not mistaken "
                                          "for it.")
