"""Checking a FlowRun's parameters against its Deployment's parameterSchema (JSON schema).

Role: a pure function returning None (valid) or a message that names each bad parameter
and how to fix it; the decision function ends the run Failed with it before any Job is
made. The engine re-validates against the flow's signature inside the pod; this early check
saves a pod for the common mistakes. Caller: flowpod_operator._decisions.deciding.
"""

from __future__ import annotations

from typing import Any, Mapping

import jsonschema
from jsonschema import exceptions as schema_errors

__all__ = ["parameter_problems"]

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


def parameter_problems(schema: Mapping[str, Any] | None,
                       parameters: Mapping[str, Any]) -> str | None:
    """None when `parameters` satisfy `schema` (or there is no schema), else the message."""
    if not schema:
        return None
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except schema_errors.SchemaError as exc:
        return (f"{_PREFIX}: the Deployment's spec.parameterSchema is not a valid JSON "
                f"schema ({exc.message}); regenerate it with `flowpod deploy`")
    errors = sorted(validator_class(schema).iter_errors(dict(parameters)),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if not errors:
        return None
    problems = [_describe(e) for e in errors[:_MAX_PROBLEMS]]
    more = len(errors) - len(problems)
    tail = f" (and {more} more)" if more > 0 else ""
    return f"{_PREFIX}: " + "; ".join(problems) + tail
