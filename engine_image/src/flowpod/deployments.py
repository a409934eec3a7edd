"""Deployment manifests built from a Flow: the one builder `flowpod deploy` and the SDK share.

Role: `deployment_manifest` writes the Deployment custom resource (a plain dict) for a flow
-- its spec.parameterSchema is the JSON schema of the engine's own parameter model
(flowpod.engine.parameter_model), closed unless the flow takes **kwargs -- and
`default_entrypoint` derives `path/to/file.py:fn` from where the flow function is defined.
Everything here is pure: no cluster, no Kubernetes client, no kubeconfig, so the in-pod
package may hold it. Checks that need the operator's resource models or its reading of
schedules stay in the CLI (flowpod_operator.cli). Applying a manifest lives in
flowpod.deploying (`flow.deploy()`, behind the `cli` extra). Callers: Flow.to_deployment /
Flow.deploy, flowpod_operator.cli._deploying and ._flows.
"""

from __future__ import annotations

import inspect
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pydantic
import pydantic.json_schema

from flowpod import contract
from flowpod.errors import FlowpodError

__all__ = ["DeploymentError", "deployment_manifest", "default_entrypoint", "flow_function",
           "parameter_model", "parameter_schema", "takes_kwargs", "check_parameters",
           "schedule_entries", "schedule_fields", "check_name"]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class DeploymentError(FlowpodError, ValueError):
    """A Deployment that cannot be written: what is wrong (naming the field) and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem, self.fix = problem, fix


def flow_function(flow: Any) -> Callable[..., Any]:
    """The plain function behind a @flow object (or the function itself)."""
    return getattr(flow, "fn", flow)


def parameter_model(flow: Any) -> type[pydantic.BaseModel]:
    """The pydantic model of the flow function's parameters: the engine's own
    (flowpod.engine.parameter_model), the one that validates them in the pod."""
    from flowpod import engine  # the engine imports the runtime; only needed here

    if not hasattr(flow, "parameters"):
        raise DeploymentError(f"'{flow!r}' is not a flow function", "decorate it with @flow")
    return engine.parameter_model(flow)


class _LenientSchema(pydantic.json_schema.GenerateJsonSchema):
    """A parameter typed with a plain class has no JSON schema: accept any value there (the
    engine still checks it in the pod) instead of refusing the whole flow."""

    def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> dict[str, Any]:
        return {"description": "any value: its Python type has no JSON schema, so the flow "
                               "itself checks it"}


def takes_kwargs(flow: Any) -> bool:
    """Whether the flow function takes `**kwargs` (then any parameter name is its own)."""
    return any(p.kind is p.VAR_KEYWORD
               for p in inspect.signature(flow_function(flow)).parameters.values())


def parameter_schema(flow: Any) -> dict[str, Any]:
    """The JSON schema written to spec.parameterSchema. It is closed (additionalProperties:
    false) unless the flow takes **kwargs, so the operator fails a run with a misspelt
    parameter name before any pod starts."""
    model = parameter_model(flow)
    with warnings.catch_warnings():
        # A default that is not JSON (an object instance) is left out of the schema: it stays
        # a default of the function, so the flow still gets it when the parameter is omitted.
        warnings.simplefilter("ignore", pydantic.json_schema.PydanticJsonSchemaWarning)
        schema = model.model_json_schema(by_alias=True, schema_generator=_LenientSchema)
    schema["title"] = getattr(flow, "name", None) or flow_function(flow).__name__
    if not takes_kwargs(flow):
        schema["additionalProperties"] = False
    return schema


def check_parameters(flow: Any, parameters: Mapping[str, Any], fix: str) -> None:
    """Refuse defaults the flow cannot take, naming the parameter (pydantic's message);
    ``fix`` says where the caller's values came from (a flag, an argument)."""
    model = parameter_model(flow)
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    unknown = sorted(set(parameters) - set(fields))
    if unknown and not takes_kwargs(flow):
        raise DeploymentError(f"the flow has no parameter {', '.join(map(repr, unknown))}",
                              f"its parameters are: {', '.join(fields) or 'none'}")
    for key, value in parameters.items():
        if key not in fields:
            continue  # taken by **kwargs, untyped
        # Field by field: required parameters without a default come with each FlowRun.
        try:
            adapter = pydantic.TypeAdapter(
                fields[key].annotation,
                config=pydantic.ConfigDict(arbitrary_types_allowed=True))
            adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (key, *first["loc"]))
            raise DeploymentError(f"parameter '{where}': {first['msg']} (got {value!r})",
                                  fix) from None


def default_entrypoint(flow: Any, cwd: str | os.PathLike[str] | None = None) -> str:
    """``path/to/file.py:fn`` for the flow function, the path relative to ``cwd`` (default:
    the current directory), as the pod resolves it against the image's working directory."""
    fn = flow_function(flow)
    hint = "pass entrypoint='path/to/file.py:function' (relative to the image's workdir)"
    if "<locals>" in fn.__qualname__ or "." in fn.__qualname__:
        raise DeploymentError(f"flow '{fn.__qualname__}' is not defined at the top level of "
                              "a module, so no entrypoint can name it", hint)
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        source = None
    if source is None or not source.endswith(".py") or not Path(source).is_file():
        # Notebooks, the REPL and `python -c` have no file the pod could import.
        raise DeploymentError(f"flow '{fn.__name__}' has no source file (defined in "
                              f"{fn.__module__!r}, e.g. a notebook or the REPL)", hint)
    relative = os.path.relpath(source, Path(cwd) if cwd is not None else Path.cwd())
    return f"{Path(relative).as_posix()}:{fn.__name__}"


def schedule_entries(cron: Iterable[str] = (), interval: Iterable[int] = (),
                     rrule: Iterable[str] = (), timezone: str | None = None
                     ) -> list[dict[str, Any]]:
    """spec.schedules: every cron, then every interval, then every rrule; ``timezone`` goes
    on the cron and rrule entries (an interval counts seconds, whatever the zone)."""
    given = ([("cron", c) for c in cron] + [("interval", i) for i in interval]
             + [("rrule", r) for r in rrule])
    return [{key: value, **({"timezone": timezone} if timezone is not None
                            and key != "interval" else {})} for key, value in given]


def schedule_fields(schedules: list[dict[str, Any]], *, paused: bool = False,
                    missed_run_policy: str | None = None,
                    concurrency_policy: str | None = None) -> dict[str, Any]:
    """The scheduling spec fields actually given (so a server-side apply owns nothing else)."""
    if not schedules:
        return {}
    fields: dict[str, Any] = {"schedules": schedules}
    if paused:
        fields["paused"] = True
    if missed_run_policy is not None:
        fields["missedRunPolicy"] = missed_run_policy
    if concurrency_policy is not None:
        fields["concurrencyPolicy"] = concurrency_policy
    return fields


def check_name(name: str) -> None:
    """Refuse a Deployment name the API server would refuse (a DNS subdomain)."""
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise DeploymentError(f"Deployment name '{name}' is not a valid Kubernetes name",
                              "use lower-case letters, digits and '-', e.g. my-flow")


def deployment_manifest(*, entrypoint: str, name: str, image: str,
                        parameter_schema: Mapping[str, Any],
                        parameters: Mapping[str, Any] | None = None,
                        namespace: str | None = None, retries: int | None = None,
                        timeout_seconds: int | None = None,
                        service_account: str | None = None,
                        scheduling: Mapping[str, Any] | None = None,
                        concurrency_limit: int | None = None,
                        collision_strategy: str | None = None) -> dict[str, Any]:
    """The Deployment resource, with only the fields given (``scheduling`` from
    schedule_fields); the name is checked to be a Kubernetes name."""
    check_name(name)
    spec: dict[str, Any] = {"entrypoint": entrypoint, "image": image}
    if parameters:
        spec["parameters"] = dict(parameters)
    spec["parameterSchema"] = dict(parameter_schema)
    if retries is not None:
        spec["retries"] = retries
    if timeout_seconds is not None:
        spec["timeoutSeconds"] = timeout_seconds
    if concurrency_limit is not None:
        spec["concurrencyLimit"] = concurrency_limit
        spec["collisionStrategy"] = collision_strategy or "Enqueue"
    if service_account:
        spec["podTemplate"] = {"serviceAccountName": service_account}
    spec.update(scheduling or {})
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_DEPLOYMENT,
            "metadata": metadata, "spec": spec}
