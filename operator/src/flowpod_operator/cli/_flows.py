"""Flows as the CLI sees them: load FILE:FLOW, derive its parameter schema, parse `-p k=v`.

Role: `flowpod deploy` imports the user's flow locally (with the engine's loader) to write
a Deployment whose spec.parameterSchema is the JSON schema of the engine's own parameter
model of the flow (built by flowpod.deployments, shared with the SDK), and whose
spec.parameters are the `-p` defaults, checked against that model before anything reaches
the cluster. With
`--no-import` the schema comes from a file instead (read_parameter_schema) and the defaults
are checked against it, for flows whose dependencies exist only in the image. Callers:
flowpod_operator.cli._commands and ._actions.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from flowpod import deployments, engine, errors
from flowpod_operator.cli import _errors, _wirejson

__all__ = ["load_flow", "as_cli_error", "parameter_schema", "parse_parameters", "check_parameters",
           "read_parameter_schema", "check_parameters_against_schema"]


def load_flow(entrypoint: str) -> Any:
    """Import the Flow behind ``path/to/file.py:name`` (relative to the current directory) or
    ``package.module:name`` -- with the engine's own loader, so what deploys is what runs."""
    try:
        return engine.load_flow_from_entrypoint(entrypoint)
    except errors.EntrypointError as exc:
        missing = _missing_module(exc)
        if missing is not None:
            # The flow's own dependency, installed in the image but not here: importing is
            # only how the schema is read, so say how to deploy without it.
            raise _errors.CliError(
                f"{exc} (module '{missing}' is not installed here)",
                f"install '{missing}' locally, or deploy without importing the flow: "
                f"--no-import --parameter-schema FILE (a JSON schema of its parameters)"
            ) from None
        raise _errors.CliError(str(exc), "file entrypoints are relative to the current "
                               "directory, as they are to the image's working directory in "
                               "the pod; the function must be decorated with @flow") from None


def _missing_module(exc: BaseException) -> str | None:
    """The module a failed import could not find, from the error's cause chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            return seen.name
        seen = seen.__cause__
    return None


def read_parameter_schema(path: str) -> dict[str, Any]:
    """A parameter schema from a JSON or YAML file (`deploy --parameter-schema FILE`), checked
    to be a valid JSON schema object before it reaches the cluster."""
    import jsonschema
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise _errors.CliError(f"--parameter-schema: cannot read '{path}': {exc.strerror}",
                               "give the path of a JSON or YAML file") from None
    try:
        schema = yaml.safe_load(text)  # YAML 1.1 reads JSON too
    except yaml.YAMLError as exc:
        raise _errors.CliError(f"--parameter-schema: '{path}' is not JSON or YAML: {exc}",
                               "fix the file") from None
    if not isinstance(schema, dict):
        raise _errors.CliError(f"--parameter-schema: '{path}' holds "
                               f"{type(schema).__name__}, not a JSON schema object",
                               'write e.g. {"type": "object", "properties": {"n": '
                               '{"type": "integer"}}}')
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _errors.CliError(f"--parameter-schema: '{path}' is not a valid JSON schema: "
                               f"{exc.message}", "fix the file") from None
    return schema


def check_parameters_against_schema(schema: dict[str, Any], parameters: dict[str, Any]) -> None:
    """Refuse `-p` defaults the given schema rejects (used when the flow is not imported).
    Required parameters may come with each FlowRun, so `required` is not checked here."""
    import jsonschema

    relaxed = {k: v for k, v in schema.items() if k != "required"}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(relaxed).iter_errors(parameters))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "parameters"
        raise _errors.CliError(f"parameter '{where}': {error.message}",
                               "fix the -p value or the --parameter-schema file")


def parameter_schema(flow: Any) -> dict[str, Any]:
    """spec.parameterSchema of the flow (flowpod.deployments.parameter_schema), as a CliError
    when the object is not a flow."""
    with as_cli_error():
        return deployments.parameter_schema(flow)


@contextlib.contextmanager
def as_cli_error() -> Iterator[None]:
    """The shared builder's DeploymentError, told as the CLI tells every user error."""
    try:
        yield
    except deployments.DeploymentError as exc:
        raise _errors.CliError(exc.problem, exc.fix) from None


def parse_parameters(pairs: list[str] | None) -> dict[str, Any]:
    """`-p k=v` pairs: v is JSON when it parses strictly (numbers, true, lists, objects), else
    a string; NaN/Infinity never become floats (they are not JSON)."""
    return _wirejson.parse_pairs(pairs, "parameter",
                                 "write e.g. -p name=world or -p count=3 or -p 'xs=[1,2]'")


def check_parameters(flow: Any, parameters: dict[str, Any]) -> None:
    """Refuse `-p` defaults the flow cannot take, naming the parameter."""
    with as_cli_error():
        deployments.check_parameters(flow, parameters, "fix the -p value")
