"""How commands print objects: yaml/json dumps, kubectl-like tables, the -o check.

Role: output helpers shared by every command module (._actions, ._deploying): `dump` prints an
object as YAML that YAML 1.1 readers (kubectl) read back unchanged, or as strict JSON;
`print_rows` prints a Rich table on a terminal and a plain one when piped. Callers:
flowpod_operator.cli._actions, ._deploying, ._commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from flowpod_operator.cli import _errors, _render, _wirejson

if TYPE_CHECKING:
    from flowpod_operator.cli._actions import Deps

__all__ = ["dump", "without_managed_fields", "print_rows", "check_output"]


class _Yaml11SafeDumper(yaml.SafeDumper):
    """Quotes the strings YAML 1.1 readers take for booleans. PyYAML leaves `y` and `n` bare,
    but kubectl (go-yaml, YAML 1.1) reads a bare `n:` key as false: a flow parameter named
    `n` would silently become `false` in the cluster."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "'" if value in {"y", "Y", "n", "N"} else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Yaml11SafeDumper.add_representer(str, _represent_str)


def dump(deps: Deps, obj: Any, fmt: str) -> None:
    _wirejson.check(obj, "the output")  # YAML would print .nan, which kubectl cannot send
    text = (_wirejson.dumps(obj, indent=2) if fmt == "json"
            else yaml.dump(obj, Dumper=_Yaml11SafeDumper, sort_keys=False))
    deps.out.print(text.rstrip(), markup=False)


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The object (or each item of a List) without metadata.managedFields, as kubectl shows
    it: server-side apply bookkeeping, long and of no use when reading a run."""
    if "items" in obj:
        return {**obj, "items": [without_managed_fields(item) for item in obj["items"]]}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta} if "metadata" in obj else obj


def print_rows(deps: Deps, header: list[str], rows: list[list[Any]]) -> None:
    """A table: Rich on a terminal, plain (untruncated, one line per row) when piped."""
    if deps.out.is_terminal:
        deps.out.print(_render.rich_table(header, rows))
    else:
        deps.out.print(_render.plain_table(header, rows), markup=False, highlight=False,
                       crop=False, overflow="ignore")


def check_output(output: str | None) -> None:
    if output is not None and output not in ("yaml", "json"):
        raise _errors.CliError(f"unknown output format '{output}'", "use -o yaml or -o json")


