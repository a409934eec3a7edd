"""Checking a FlowRun's parameters against its Deployment's parameterSchema (JSON schema).

Role: pure functions returning None (valid) or a message that names each bad parameter
and how to fix it (`start_problems` runs them all: nulls that `kubectl apply` dropped, the
size bound contract.MAX_PARAMETERS_BYTES, the JSON schema); the decision function ends the
run Failed with it before any Job is made. The engine re-validates against the flow's signature inside the pod; this early check
saves a pod for the common mistakes. Caller: flowpod_operator._decisions.deciding.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import jsonschema
from jsonschema import exceptions as schema_errors

from flowpod import contract
from flowpod_operator._decisions.storage import storage_problem

__all__ = ["start_problems", "parameter_problems", "dropped_nulls", "size_problem",
           "schema_violations"]

# Same opening as the engine's message, so users see one wording wherever it is caught.
_PREFIX = "Validation of the flow parameters failed"
_MAX_PROBLEMS = 5


def _describe(error: schema_errors.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        missing = [name for name in error.validator_value if name not in instance]
        where = ".".join(filter(None, [path, missing[0] if missing else ""]))
        return f"parameter '{where}' is required but missing; set spec.parameters.{where}"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set((error.schema.get("properties") or {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        names = ", ".join(f"'{'.'.join(filter(None, [path, k]))}'" for k in extra)
        return f"unexpected parameter(s) {names}; remove them or fix their names"
    if not path:
        return f"parameters: {error.message}"
    return f"parameter '{path}': {error.message}; fix spec.parameters.{path}"


def schema_violations(schema: Mapping[str, Any], value: Any
                      ) -> list[schema_errors.ValidationError]:
    """Where `value` breaks the JSON `schema` (its own draft, else 2020-12), ordered by
    path; raises jsonschema's SchemaError when the schema itself is not valid. Also used
    for a resume's input (flowpod_operator._decisions.resuming)."""
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator)
    validator_class.check_schema(schema)
    return sorted(validator_class(schema).iter_errors(value),
                  key=lambda e: (list(map(str, e.absolute_path)), e.validator))


def parameter_problems(schema: Mapping[str, Any] | None,
                       parameters: Mapping[str, Any]) -> str | None:
    """None when `parameters` satisfy `schema` (or there is no schema), else the message."""
    if not schema:
        return None
    try:
        errors = schema_violations(schema, dict(parameters))
    except schema_errors.SchemaError as exc:
        return (f"{_PREFIX}: the Deployment's spec.parameterSchema is not a valid JSON "
                f"schema ({exc.message}); regenerate it with `flowpod deploy`")
    if not errors:
        return None
    problems = [_describe(e) for e in errors[:_MAX_PROBLEMS]]
    more = len(errors) - len(problems)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"{_PREFIX}: " + "; ".join(problems) + tail


def _null_paths(applied: Any, stored: Any, path: str) -> Iterator[str]:
    if not isinstance(applied, Mapping):
        return
    stored = stored if isinstance(stored, Mapping) else {}
    for key, value in applied.items():
        where = f"{path}.{key}"
        if value is None and key not in stored:
            yield where
        else:
            yield from _null_paths(value, stored.get(key), where)


def dropped_nulls(obj: Mapping[str, Any] | None, kind: str) -> str | None:
    """A message when `kubectl apply` (client-side) dropped null parameters of `obj` (a
    FlowRun or Deployment), else None. That kubectl turns `name: null` into "no such key",
    so the flow would silently get its default instead; its last-applied annotation still
    shows what the user wrote."""
    meta = (obj or {}).get("metadata") or {}
    text = (meta.get("annotations") or {}).get(contract.ANNOTATION_LAST_APPLIED)
    if not text:
        return None
    try:
        applied = ((json.loads(text).get("spec") or {}).get("parameters"))
    except (ValueError, AttributeError):
        return None
    stored = ((obj or {}).get("spec") or {}).get("parameters")
    paths = list(_null_paths(applied, stored, "spec.parameters"))
    if not paths:
        return None
    return (f"{_PREFIX}: {', '.join(paths)} of {kind} '{meta.get('name')}' was null, and "
            f"`kubectl apply` drops null fields, so the flow would silently get its default "
            f"instead; apply it with `kubectl apply --server-side` or `kubectl create` to "
            f"pass null, or leave the parameter out to use its default")


def size_problem(parameters: Mapping[str, Any]) -> str | None:
    """A message when the resolved parameters exceed contract.MAX_PARAMETERS_BYTES."""
    size, limit = contract.parameters_size(parameters), contract.MAX_PARAMETERS_BYTES
    if size <= limit:
        return None
    # The API server would store it, but a run's object must stay far below etcd's request
    # limit; say so before any pod, with the one fix that works.
    return (f"spec.parameters is too large: {size} bytes as JSON (with the Deployment's "
            f"defaults), over the limit of {limit} bytes ({limit // 1024} KiB); pass large "
            f"inputs by reference (a URL or a path on a volume) instead")


def start_problems(flowrun: Mapping[str, Any], deployment: Mapping[str, Any] | None,
                   parameters: Mapping[str, Any]) -> str | None:
    """Why a run with these resolved `parameters` must fail before any pod, or None:
    nulls kubectl dropped, the size bound, the Deployment's parameterSchema, then a result
    storage whose protocol fsspec does not know."""
    schema = ((deployment or {}).get("spec") or {}).get("parameterSchema")
    return (dropped_nulls(deployment, "Deployment") or dropped_nulls(flowrun, "FlowRun")
            or size_problem(parameters) or parameter_problems(schema, parameters)
            or storage_problem(flowrun, deployment))
