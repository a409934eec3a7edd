"""Unit tests of the CRD models (flowpod_operator.crds.resources), the CEL rule generator
(flowpod_operator.crds._cel) and the structural-schema conversion (flowpod_operator.crds.crdgen)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Iterator

import pydantic
import pytest

from flowpod import contract, flowruns, states
from flowpod_operator.crds import _cel
from flowpod_operator.crds import crdgen
from flowpod_operator.crds import resources

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd", [crdgen.deployment_crd(), crdgen.flowrun_crd()],
                         ids=["deployments", "flowruns"])
def test_schemas_are_structural_and_fully_described(crd: dict) -> None:
    for path, node in _walk(_schema(crd)):
        assert not {"$ref", "anyOf", "title", "$defs", "allOf"} & set(node), path
        assert not ("properties" in node and "additionalProperties" in node), path
        untyped_ok = (node.get("x-kubernetes-preserve-unknown-fields")
                      or node.get("x-kubernetes-int-or-string"))
        assert "type" in node or untyped_ok, f"{path} has no type"
        assert node.get("default", 0) is not None, f"{path} defaults to null"
        if path.count(".") and not path.endswith(("{}", "[]")) and path != ".metadata":
            # Every named field is explained by `kubectl explain`.
            assert node.get("description"), f"{path} has no description"


def test_deployment_crd_names_defaults_and_columns() -> None:
    crd = crdgen.deployment_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "Deployment", "deployments", ["fdeploy"], ["flowpod"])
    spec = _schema(crd)["properties"]["spec"]
    assert spec["required"] == ["entrypoint", "image"]
    props = spec["properties"]
    assert props["cancellationGracePeriodSeconds"]["default"] == 30
    assert props["pendingTimeoutSeconds"]["default"] == 300
    assert props["retries"]["default"] == 0
    assert "default" not in props["timeoutSeconds"]
    limits = props["podTemplate"]["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"] == {"x-kubernetes-int-or-string": True}
    assert props["podTemplate"]["properties"]["env"]["items"]["required"] == ["name"]
    assert props["parameters"]["x-kubernetes-preserve-unknown-fields"] is True


def test_flowrun_crd_status_columns_and_rules() -> None:
    crd = crdgen.flowrun_crd()
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = crd["spec"]["names"]
    assert (names["shortNames"], names["categories"]) == (["fr"], ["flowpod"])
    columns = {c["name"].upper(): c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["STATE", "DEPLOYMENT", "AGE", "DURATION", "ATTEMPT", "REASON",
                             "MESSAGE"]
    assert columns["STATE"]["jsonPath"] == ".status.state.name"
    assert columns["DEPLOYMENT"]["jsonPath"] == ".spec['deploymentName','entrypoint']"
    assert (columns["ATTEMPT"]["jsonPath"], columns["ATTEMPT"]["priority"]) == (
        ".status.attempt", 1)
    assert (columns["REASON"]["jsonPath"], columns["REASON"]["priority"]) == (".status.reason", 1)
    assert columns["MESSAGE"] == {"name": "Message", "type": "string",
                                  "jsonPath": ".status.state.message", "priority": 1}
    schema = _schema(crd)
    assert schema["x-kubernetes-validations"] == [_cel.state_kept_rule(),
                                                  _cel.no_cancel_after_end_rule(),
                                                  _cel.resume_only_while_paused_rule()]
    spec = schema["properties"]["spec"]
    assert _cel.flowrun_form_rule() in spec["x-kubernetes-validations"]
    # Every spec field but resume is immutable (cancel may only go to true), each rule
    # naming its field; resume may change while the run is paused (a rule on the root).
    frozen = [r["fieldPath"] for r in spec["x-kubernetes-validations"] if "fieldPath" in r]
    assert sorted(frozen) == sorted(f".{f}" for f in spec["properties"] if f != "resume")
    assert _cel.resume_only_while_paused_rule()["fieldPath"] == ".spec.resume"
    assert _cel.cancel_kept_rule() in spec["x-kubernetes-validations"]
    assert schema["properties"]["status"]["x-kubernetes-validations"] == [
        _cel.final_status_frozen_rule(list(schema["properties"]["status"]["properties"]))]
    assert spec["properties"]["cancel"]["default"] is False
    status = schema["properties"]["status"]["properties"]
    assert status["state"]["x-kubernetes-validations"] == [_cel.state_transition_rule()]
    assert "x-kubernetes-validations" not in status["stateHistory"]["items"]
    assert status["stateHistory"]["maxItems"] == contract.MAX_STATE_HISTORY
    assert status["state"]["properties"]["message"]["maxLength"] == contract.MAX_MESSAGE_LENGTH
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert status["result"]["maxProperties"] == 1
    assert status["result"]["properties"]["value"] == {
        "description": "The return value as JSON, when small.",
        "x-kubernetes-preserve-unknown-fields": True}
    assert status["state"]["properties"]["type"]["enum"] == [t.value for t in states.StateType]


def _clauses(rule: str) -> dict[str, set[str]]:
    found = re.findall(r"oldSelf\.type == '(\w+)' && self\.type in \[([^\]]*)\]", rule)
    return {old: set(re.findall(r"'(\w+)'", targets)) for old, targets in found}


def test_transition_rule_is_the_engine_table() -> None:
    rule = _cel.state_transition_rule()["rule"]
    assert rule.startswith("self == oldSelf || ")
    expected = {old.value: {t.value for t in new}
                for old, new in states.ALLOWED_TRANSITIONS.items() if new}
    assert _clauses(rule) == expected
    for terminal in states.TERMINAL_TYPES:
        assert f"oldSelf.type == '{terminal.value}'" not in rule
    assert _clauses(rule)["CANCELLING"] == {"CANCELLED"}


def test_transition_rule_follows_a_changed_table(monkeypatch) -> None:
    S = states.StateType
    table = {t: frozenset() for t in S}
    table[S.SCHEDULED] = frozenset({S.RUNNING})
    monkeypatch.setattr(states, "ALLOWED_TRANSITIONS", MappingProxyType(table))
    generated = _cel.state_transition_rule()
    assert _clauses(generated["rule"]) == {"SCHEDULED": {"RUNNING"}}
    assert "'SCHEDULED may only become RUNNING'" in generated["messageExpression"]
    assert "'CANCELLING is terminal'" in generated["messageExpression"]


@pytest.mark.parametrize("entrypoint, ok", [
    ("examples/hello/flow.py:hello", True), ("flow.py:main_flow", True),
    ("pkg.mod:fn", True), ("pkg:fn", True), ("/abs/dir/f.py:_private", True),
    ("flow.py", False), ("pkg.mod", False), ("flow.py:", False), (":fn", False),
    ("flow.py:1fn", False), ("pkg..mod:fn", False), ("my flows/f.py:fn", False),
    ("f.py:fn:extra", False), ("pkg.mod:fn.attr", False),
])
def test_entrypoint_rule(entrypoint: str, ok: bool) -> None:
    assert _cel.is_valid_entrypoint(entrypoint) is ok
    if not ok:
        with pytest.raises(pydantic.ValidationError, match="spec.entrypoint must be"):
            resources.DeploymentSpec(entrypoint=entrypoint, image="img")


@pytest.mark.parametrize("spec", [
    {"deploymentName": "d", "entrypoint": "f.py:f", "image": "i"},
    {"deploymentName": "d", "image": "i"},
    {"entrypoint": "f.py:f"},
    {"image": "i"},
    {},
])
def test_flowrun_spec_needs_exactly_one_form(spec: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match="set exactly one of"):
        resources.FlowRunSpec.model_validate(spec)


def test_flowrun_parses_camel_case_and_defaults() -> None:
    spec = resources.FlowRunSpec.model_validate({"deploymentName": "hello",
                                                  "scheduledTime": "2025-01-02T03:04:05Z"})
    assert spec.deployment_name == "hello" and spec.cancel is False
    assert spec.scheduled_time == T0
    adhoc = resources.FlowRunSpec.model_validate({"entrypoint": "f.py:f", "image": "i"})
    assert adhoc.model_dump(by_alias=True, exclude_none=True) == {
        "entrypoint": "f.py:f", "image": "i", "cancel": False}


def test_status_written_by_flowruns_parses_back() -> None:
    status = flowruns.status_patch({}, states.Running(), generation=1, now=T0)
    status.update(flowruns.status_patch(status, states.Completed("ok"), generation=1, now=T0,
                                        result={"value": [1, 2]},
                                        taskRuns={"counts": {"COMPLETED": 2}, "failed": []}))
    run = resources.FlowRun.model_validate({"metadata": {"name": "r"},
                                            "spec": {"deploymentName": "d"}, "status": status})
    assert run.status.state.to_state().name == "Completed"
    assert run.status.result.value == [1, 2]
    assert [c.type for c in run.status.conditions] == ["Succeeded", "Ready"]
    assert run.status.task_runs.counts == {"COMPLETED": 2}


def test_exported_names_exist() -> None:
    for module in (resources, crdgen, _cel):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
