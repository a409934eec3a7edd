"""`flowpod deploy`: the Deployment manifest built from flags and the flow, and its apply.

Role: builds the Deployment for FILE:FLOW (parameterSchema read from the flow's signature or
a file, schedules from ._schedules) and checks it against the operator's own model before
any cluster is used; applies it with server-side apply and says whether it was created,
configured or unchanged; `pause`/`unpause` set spec.paused. Caller:
flowpod_operator.cli._commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic

from flowpod import contract, deployments
from flowpod_kube.apply import outcome
from flowpod_kube.errors import KubeError, MissingCrdError
from flowpod_operator.cli import _errors, _flows, _schedules
from flowpod_operator.cli._output import dump, without_managed_fields
from flowpod_operator.crds import resources

if TYPE_CHECKING:
    from flowpod_operator.cli._actions import Deps
    from flowpod_operator.cli._client import Kube

__all__ = ["deployment_manifest", "check_manifest", "apply_deployment", "set_paused"]


def deployment_manifest(entrypoint: str, name: str, image: str, params: list[str] | None, *,
                        namespace: str | None = None, retries: int | None = None,
                        timeout_seconds: int | None = None,
                        service_account: str | None = None, no_import: bool = False,
                        schema_file: str | None = None,
                        schedule: _schedules.ScheduleFlags | None = None,
                        concurrency_limit: int | None = None,
                        collision_strategy: str | None = None) -> dict[str, Any]:
    """The Deployment for FILE:FLOW, its parameterSchema derived from the flow's signature,
    or (--no-import) read from ``schema_file`` without importing the flow; ``schedule``
    adds spec.schedules and the scheduling policies."""
    with _flows.as_cli_error():
        deployments.check_name(name)
    scheduling = _schedules.spec_fields(schedule or _schedules.ScheduleFlags())
    parameters = _flows.parse_parameters(params)
    if no_import:
        if schema_file is None:
            raise _errors.CliError("--no-import needs --parameter-schema FILE: without "
                                   "importing the flow its parameters are unknown",
                                   "write the JSON schema of the flow's parameters to a file "
                                   "(e.g. from `flowpod deploy ... --dry-run` where the flow "
                                   "imports) and pass it with --parameter-schema")
        schema = _flows.read_parameter_schema(schema_file)
        _flows.check_parameters_against_schema(schema, parameters)
    else:
        flow = _flows.load_flow(entrypoint)
        _flows.check_parameters(flow, parameters)
        schema = (_flows.read_parameter_schema(schema_file) if schema_file
                  else _flows.parameter_schema(flow))
    if collision_strategy is not None and concurrency_limit is None:
        raise _errors.CliError("--collision-strategy needs --concurrency-limit",
                               "add --concurrency-limit N (the most runs at once)")
    with _flows.as_cli_error():
        manifest = deployments.deployment_manifest(
            entrypoint=entrypoint, name=name, image=image, parameter_schema=schema,
            parameters=parameters, namespace=namespace, retries=retries,
            timeout_seconds=timeout_seconds, service_account=service_account,
            scheduling=scheduling, concurrency_limit=concurrency_limit,
            collision_strategy=collision_strategy)
    return check_manifest(manifest)


def check_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest, checked against the operator's own model: what it will accept is checked
    before any cluster is used."""
    try:
        resources.Deployment.model_validate(manifest)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _errors.CliError(f"the Deployment would be invalid at {where}: {first['msg']}",
                               "fix the matching flag") from None
    return manifest


async def apply_deployment(kube: Kube, deps: Deps, manifest: dict[str, Any],
                           output: str | None) -> int:
    name, ns = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        before = await kube.get_deployment(ns, name)
    except KubeError as error:
        if error.status != 404 or isinstance(error, MissingCrdError):
            raise
        before = None
    after = await kube.apply_deployment(ns, name, manifest)
    if output:
        dump(deps, without_managed_fields(after), output)
        return 0
    verb = outcome(before, after)
    deps.out.print(f"deployment.{contract.GROUP}/{name} {verb}", markup=False)
    return 0



async def set_paused(kube: Kube, deps: Deps, ns: str, name: str, paused: bool) -> int:
    """`flowpod pause|unpause NAME`: a merge patch of spec.paused (only when it changes)."""
    current = await kube.get_deployment(ns, name)
    verb = "paused" if paused else "unpaused"
    spec = current.get("spec") or {}
    if bool(spec.get("paused")) == paused:
        deps.out.print(f"deployment.{contract.GROUP}/{name} already {verb}", markup=False)
        return 0
    await kube.patch_deployment(ns, name, {"spec": {"paused": paused}})
    deps.out.print(f"deployment.{contract.GROUP}/{name} {verb}", markup=False)
    if not spec.get("schedules"):
        deps.err.print(f"note: Deployment '{name}' has no schedules; spec.paused only stops "
                       f"scheduled runs", markup=False)
    elif paused:
        deps.err.print(f"runs already started go on; list them with `flowpod get runs -n "
                       f"{ns}` and stop one with `flowpod cancel RUN -n {ns}`", markup=False)
    return 0
