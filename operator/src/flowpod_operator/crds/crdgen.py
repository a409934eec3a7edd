"""Generate crds/flowpod.io_deployments.yaml and crds/flowpod.io_flowruns.yaml from the models.

Role: the only writer of the CRD files (`python -m flowpod_operator.crds`, i.e. `make crds`).
The drift test (tests/operator/test_crd_drift.py) calls `render_all()` and compares it with
the committed files; the cluster tests apply the files. Nothing here runs in the operator.

Pydantic's JSON schema is close to what Kubernetes wants but not structural: it uses $refs,
anyOf for Optional and int-or-string, titles, and `additionalProperties` for free-form
objects. `to_structural` rewrites it node by node into an OpenAPI v3 structural schema.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel

from flowpod import contract
from flowpod_operator.crds import _cel
from flowpod_operator.crds import resources

__all__ = ["to_structural", "deployment_crd", "flowrun_crd", "render", "render_all",
           "write_all", "main", "FILENAMES", "HEADER"]

FILENAMES = {
    contract.DEPLOYMENTS: f"{contract.GROUP}_{contract.DEPLOYMENTS}.yaml",
    contract.FLOWRUNS: f"{contract.GROUP}_{contract.FLOWRUNS}.yaml",
}
HEADER = ("# Generated from flowpod_operator.crds.resources by `python -m flowpod_operator.crds`"
          " (make crds).\n# Do not edit by hand: change the models and regenerate.\n")
_DROP = {"title", "$defs"}


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Inline a $ref; keys next to it (description, CEL rules) win over the definition's."""
    if "$ref" not in node:
        return dict(node)
    target = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
    target.update({k: v for k, v in node.items() if k != "$ref"})
    return target


def _unwrap_any_of(node: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
    types = sorted(b.get("type") for b in branches)
    if types == ["integer", "string"]:
        # Kubernetes' spelling of int-or-string (quantities like 512Mi or 2).
        node["x-kubernetes-int-or-string"] = True
        return node
    if len(branches) != 1:
        raise ValueError(f"cannot express a union of {branches} in a structural schema")
    merged = _resolve(branches[0], defs)
    merged.update(node)
    return merged


def to_structural(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """One pydantic JSON-schema node (and its children) as a structural schema node."""
    out = _resolve(node, defs)
    if "anyOf" in out:
        out = _unwrap_any_of(out, defs)
        out = _resolve(out, defs)
    for key in _DROP:
        out.pop(key, None)
    if out.get("default", 0) is None:
        out.pop("default")  # "no value" is expressed by leaving the field out
    if out.get("x-kubernetes-preserve-unknown-fields"):
        # Free-form JSON: keep pydantic's type only when it is a real object.
        out.pop("additionalProperties", None)
        if "items" not in out and out.get("type") not in ("object", "array"):
            out.pop("type", None)
    if "properties" in out:
        out.pop("additionalProperties", None)  # structural schemas forbid both
        out["type"] = "object"
        out["properties"] = {k: to_structural(v, defs) for k, v in out["properties"].items()}
    elif isinstance(out.get("additionalProperties"), Mapping):
        out["additionalProperties"] = to_structural(out["additionalProperties"], defs)
    elif out.get("additionalProperties") is True:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    if isinstance(out.get("items"), Mapping):
        out["items"] = to_structural(out["items"], defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return _ordered(out)


# Stable key order makes the YAML readable and the drift check byte-exact.
_KEY_ORDER = ["description", "type", "format", "enum", "default", "minimum", "maximum",
              "minLength", "maxLength", "pattern", "maxItems", "maxProperties", "required", "properties",
              "additionalProperties", "items"]


_RULE_KEY_ORDER = ["rule", "message", "messageExpression", "reason", "fieldPath"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    known = [k for k in _KEY_ORDER if k in node]
    rest = sorted(k for k in node if k not in _KEY_ORDER)
    out = {k: node[k] for k in known + rest}
    if "x-kubernetes-validations" in out:
        out["x-kubernetes-validations"] = [
            {k: rule[k] for k in _RULE_KEY_ORDER if k in rule}
            for rule in out["x-kubernetes-validations"]
        ]
    return out


class _Dumper(yaml.SafeDumper):
    """Never emits &anchors/*aliases: the same sub-schema used twice is written out twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _schema_of(model: type[BaseModel], field: str) -> dict[str, Any]:
    full = model.model_json_schema(by_alias=True)
    return to_structural(full["properties"][field], full.get("$defs", {}))


def _root(kind: str, description: str, spec: dict[str, Any], status: dict[str, Any] | None,
          rules: list[dict[str, str]]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"description": "APIVersion of this object: flowpod.io/v1alpha1.",
                       "type": "string"},
        "kind": {"description": f"Kind of this object: {kind}.", "type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    root: dict[str, Any] = {"description": description, "type": "object",
                            "required": ["spec"], "properties": properties}
    if rules:
        root["x-kubernetes-validations"] = rules
    return root


def _crd(kind: str, plural: str, short: str, schema: dict[str, Any],
         columns: list[dict[str, Any]], status: bool) -> dict[str, Any]:
    version: dict[str, Any] = {"name": contract.VERSION, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": schema}}
    if status:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{contract.GROUP}"},
        "spec": {
            "group": contract.GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": [short],
                      "categories": ["flowpod"]},
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def deployment_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of flowpod Deployments."""
    schema = _root("Deployment", resources.Deployment.__doc__ or "",
                   _schema_of(resources.Deployment, "spec"),
                   _schema_of(resources.Deployment, "status"), [])
    columns = [
        {"name": "Schedule", "type": "string", "jsonPath": ".status.schedule",
         "description": "The schedules in one line, or Paused."},
        {"name": "Next", "type": "date", "jsonPath": ".status.nextScheduleTimes[0]",
         "description": "The next due time."},
        {"name": "Active", "type": "integer", "jsonPath": ".status.activeRuns",
         "description": "Scheduled runs not yet final."},
        {"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime",
         "description": "The due time of the last scheduled run."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Entrypoint", "type": "string", "jsonPath": ".spec.entrypoint", "priority": 1},
        {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
    ]
    return _crd("Deployment", contract.DEPLOYMENTS, "fdeploy", schema, columns, status=True)


def flowrun_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of FlowRuns, with the state-machine CEL rules."""
    spec = _schema_of(resources.FlowRun, "spec")
    frozen = [name for name in spec["properties"] if name not in ("cancel", contract.SPEC_RESUME)]
    spec.setdefault("x-kubernetes-validations", []).extend(
        [_cel.flowrun_form_rule(), *_cel.spec_immutable_rules(frozen), _cel.cancel_kept_rule()])
    status = _schema_of(resources.FlowRun, "status")
    status.setdefault("x-kubernetes-validations", []).append(
        _cel.final_status_frozen_rule(list(status["properties"])))
    schema = _root("FlowRun", resources.FlowRun.__doc__ or "", spec, status,
                   [_cel.state_kept_rule(), _cel.no_cancel_after_end_rule(),
                    _cel.resume_only_while_paused_rule()])
    columns = [
        {"name": "State", "type": "string", "jsonPath": ".status.state.name",
         "description": "Name of the current state, e.g. Running, Completed, Late."},
        # A union: a FlowRun has exactly one of the two (the form rule), like `flowpod list`.
        {"name": "Deployment", "type": "string",
         "jsonPath": ".spec['deploymentName','entrypoint']",
         "description": "The Deployment run, or the entrypoint of an ad-hoc run."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Duration", "type": "string", "jsonPath": ".status.duration",
         "description": "From the first RUNNING to the final state."},
        # -o wide only: rarely more than 1 and empty, and the default view stays narrow.
        {"name": "Attempt", "type": "integer", "jsonPath": ".status.attempt", "priority": 1,
         "description": "Infrastructure attempt, from 1."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1,
         "description": "Why the pod ended, e.g. OOMKilled, Evicted, DeadlineExceeded."},
        {"name": "Message", "type": "string", "jsonPath": ".status.state.message",
         "priority": 1},
    ]
    return _crd("FlowRun", contract.FLOWRUNS, "fr", schema, columns, status=True)


def render(crd: Mapping[str, Any]) -> str:
    """The file text of one CRD (header + YAML), deterministic for the drift check."""
    body = yaml.dump(dict(crd), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def render_all() -> dict[str, str]:
    """file name -> file text, for every CRD."""
    return {
        FILENAMES[contract.DEPLOYMENTS]: render(deployment_crd()),
        FILENAMES[contract.FLOWRUNS]: render(flowrun_crd()),
    }


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowpod_operator.crds",
                                     description="Write the flowpod CRDs from the models.")
    parser.add_argument("--output-dir", type=Path, default=Path("crds"),
                        help="directory to write the CRD files into (default: ./crds)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files differ from the models")
    args = parser.parse_args(argv)
    if args.check:
        stale = [name for name, text in render_all().items()
                 if not (args.output_dir / name).is_file()
                 or (args.output_dir / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{args.output_dir / name} is out of date: run `make crds`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all(args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
