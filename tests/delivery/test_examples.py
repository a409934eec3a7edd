"""Every example under examples/ runs end to end on the local control plane, plus static checks.

Role: hermetic checks that each example is well formed (a Deployment and a FlowRun that the
operator's models accept, an entrypoint the engine's loader resolves, a deployment.yaml equal
to what `flowpod deploy --dry-run -o yaml` writes for it) and that examples/flow-run-rbac.yaml
grants what the chart grants; then, per example, the kubectl path for real: CRDs + flow-run RBAC
applied, the operator running as a subprocess for that namespace, `kubectl apply -f
examples/NAME/`, and the expected terminal state (the cancellation demo is cancelled with
`flowpod cancel` while Running). Called by pytest; the cluster part uses the `cluster` and
`namespace` fixtures. The approval example is resumed with `flowpod resume` once Paused,
first with input the operator refuses.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from delivery import _helm, _operating
from flowpod import contract, engine
from flowpod_operator.crds import resources

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# name -> (expected final state type, extra check of the final FlowRun)
EXPECTED = {
    "hello": "COMPLETED",
    "retries": "COMPLETED",
    "fan-out": "COMPLETED",
    "fan-out-deployments": "COMPLETED",
    "failing": "FAILED",
    "cancellation": "CANCELLED",
    "approval": "COMPLETED",
}
# Examples with only a Deployment: its schedules start the runs (their end-to-end test is
# tests/delivery/test_example_scheduled.py).
SCHEDULED = ("scheduled",)


def _docs(name: str, kind: str) -> dict:
    path = EXAMPLES / name / f"{kind}.yaml"
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


def test_every_example_directory_is_listed_and_complete() -> None:
    found = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert found == sorted([*EXPECTED, *SCHEDULED])
    for name in found:
        assert (EXAMPLES / name / "deployment.yaml").is_file(), name
        assert (EXAMPLES / name / "flowrun.yaml").is_file() == (name in EXPECTED), name
    readme = (REPO / "README.md").read_text()
    for name in found:
        assert f"`examples/{name}/`" in readme, f"README's examples table lacks {name}"


@pytest.mark.parametrize("name", SCHEDULED)
def test_scheduled_example_is_valid_and_resolves(name: str, monkeypatch) -> None:
    deployment = resources.Deployment.model_validate(_docs(name, "deployment"))
    assert deployment.spec.schedules and deployment.spec.concurrency_limit == 1
    assert deployment.spec.entrypoint.startswith(f"examples/{name}/")
    monkeypatch.chdir(REPO)
    engine.load_flow_from_entrypoint(deployment.spec.entrypoint).validate_parameters({})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_objects_are_valid_and_resolve(name: str, monkeypatch) -> None:
    deployment = resources.Deployment.model_validate(_docs(name, "deployment"))
    run = resources.FlowRun.model_validate(_docs(name, "flowrun"))
    assert run.spec.deployment_name == deployment.metadata["name"]
    assert deployment.spec.image == "flowpod/engine:dev"
    # Repo-relative, as the image's WORKDIR /opt/flowpod (and the test node) resolve it.
    assert deployment.spec.entrypoint.startswith(f"examples/{name}/")
    monkeypatch.chdir(REPO)
    flow = engine.load_flow_from_entrypoint(deployment.spec.entrypoint)
    flow.validate_parameters({**(deployment.spec.parameters or {}),
                              **(run.spec.parameters or {})})


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if n != "hello"] + list(SCHEDULED)
                         + ["fan-out-deployments/deployment-child"])
def test_deployment_yaml_is_what_flowpod_deploy_dry_run_writes(name: str) -> None:
    path = EXAMPLES / (name + ".yaml" if "/" in name else f"{name}/deployment.yaml")
    text = path.read_text()
    command = next(line for line in text.splitlines() if line.startswith("#   flowpod deploy"))
    argv = shlex.split(command.removeprefix("#   "))[1:]
    out = subprocess.run([sys.executable, "-m", "flowpod_operator.cli", *argv],
                         cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == yaml.safe_load(text), (
        f"{path.relative_to(REPO)} drifted from `{command[4:]}`; regenerate it")


def test_flow_run_rbac_equals_the_charts_flow_run_role() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((EXAMPLES / "flow-run-rbac.yaml")
                                                    .read_text()) if d}
    rendered = _helm.template()
    (chart_role,) = [o for o in rendered.of_kind("Role") if o["metadata"]["name"].endswith(
        "-flow-run")]
    assert docs["Role"]["rules"] == chart_role["rules"]
    assert docs["ServiceAccount"]["metadata"]["name"] == contract.DEFAULT_SERVICE_ACCOUNT
    assert docs["RoleBinding"]["subjects"][0]["name"] == contract.DEFAULT_SERVICE_ACCOUNT


def test_flow_run_identity_policy_equals_the_charts() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((EXAMPLES / "flow-run-rbac.yaml")
                                                    .read_text()) if d}
    ours, binding = docs["ValidatingAdmissionPolicy"], docs["ValidatingAdmissionPolicyBinding"]
    assert binding["spec"] == {"policyName": ours["metadata"]["name"],
                               "validationActions": ["Deny"]}
    rendered = _helm.template("flowRuns.serviceAccountName=runner")
    (chart,) = rendered.of_kind("ValidatingAdmissionPolicy")
    (chart_binding,) = rendered.of_kind("ValidatingAdmissionPolicyBinding")
    assert chart_binding["spec"] == {"policyName": chart["metadata"]["name"],
                                     "validationActions": ["Deny"]}
    # The chart scopes the policy to its configured flow-run account; all else is equal.
    spec = json.dumps(ours["spec"]).replace(f":{contract.DEFAULT_SERVICE_ACCOUNT}')",
                                            ":runner')")
    assert json.loads(spec) == chart["spec"]
    assert spec != json.dumps(ours["spec"])
    # The wire names it checks are the contract's (YAML cannot import them).
    assert f"'{contract.LABEL_PARENT_FLOW_RUN}'" in spec
    assert f"'{contract.API_VERSION.split('/')[0]}/'" in spec
    off = _helm.template("flowRuns.identityPolicy=false")
    assert not off.of_kind("ValidatingAdmissionPolicy")
    assert not off.of_kind("ValidatingAdmissionPolicyBinding")


def _check_result(name: str, run: dict) -> None:
    status = run["status"]
    if name == "hello":
        assert status["result"]["value"] == "HELLO, FLOWPOD!"
    elif name == "fan-out":
        assert status["result"]["value"] == {"total": 4900, "description": "25 values, max 576"}
        assert status["taskRuns"]["counts"]["COMPLETED"] == 25 + 2
    elif name == "fan-out-deployments":
        assert status["result"]["value"] == {
            "total": sum(i * i for i in range(8)),
            "children": [f"fan-out-deployments-example-score-{i}" for i in range(8)]}
    elif name == "retries":
        value = status["result"]["value"]
        assert value["attempts"] == {"orders": 3, "users": 3}
    elif name == "failing":
        failed = status["taskRuns"]["failed"]
        assert any(f["name"].startswith("parse") and "ValueError" in f["message"]
                   for f in failed), failed
        assert "ValueError" in status["state"]["message"] or "parse" in status["state"]["message"]
    elif name == "cancellation":
        names = [s["name"] for s in status["stateHistory"]]
        assert "Running" in names and "Cancelling" in names
    elif name == "approval":
        assert status["result"]["value"] == {
            "artifact": "release-2.1.0.tar.gz", "approver": "ada",
            "published": "https://downloads.example.com/release-2.1.0.tar.gz"}
        names = [s["name"] for s in status["stateHistory"]]
        assert names[-3:] == ["Paused", "Running", "Completed"]


def _flowpod(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowpod_operator.cli", *args,
                           "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=90)


def _resume_approval(cluster, namespace: str, run_name: str) -> None:
    """As the example's docstring says: a wrong approval is refused, a right one resumes."""
    _operating.wait_state(cluster, namespace, run_name, {"PAUSED"})
    wrong = _flowpod(cluster, "resume", run_name, "-n", namespace, "-i", "approved=maybe",
                     "-i", "approver=ada")
    assert wrong.returncode == 1
    assert "spec.resume.input.approved: 'maybe' is not of type 'boolean'" in wrong.stderr
    right = _flowpod(cluster, "resume", run_name, "-n", namespace, "-i", "approved=true",
                     "-i", "approver=ada")
    assert right.returncode == 0, right.stderr


def _cancel(cluster, namespace: str, run_name: str) -> None:
    """As the cancellation example says: `flowpod cancel` once the run is Running."""
    cancel = _flowpod(cluster, "cancel", run_name, "-n", namespace)
    assert cancel.returncode == 0, cancel.stderr


def _check_final(name: str, final: dict, tmp_path: Path) -> None:
    """The example's expected final state (the operator's log tail if not) and result."""
    log = (tmp_path / "operator.log").read_text(errors="replace")
    assert final["status"]["state"]["type"] == EXPECTED[name], (
        f"{name}: {final['status']}\n--- operator log tail ---\n{log[-3000:]}")
    _check_result(name, final)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_to_its_expected_state(cluster, namespace, name: str,
                                            tmp_path: Path) -> None:
    _operating.setup_namespace(cluster, namespace)
    run_name = _docs(name, "flowrun")["metadata"]["name"]
    with _operating.running_operator(cluster, [namespace], tmp_path):
        cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / name))
        if name == "cancellation":
            _operating.wait_state(cluster, namespace, run_name, {"RUNNING"})
            _cancel(cluster, namespace, run_name)
        if name == "approval":
            _resume_approval(cluster, namespace, run_name)
        final = _operating.wait_final(cluster, namespace, run_name, timeout=120)
    _check_final(name, final, tmp_path)
    succeeded = {c["type"]: c for c in final["status"]["conditions"]}["Succeeded"]
    assert succeeded["status"] == ("True" if EXPECTED[name] == "COMPLETED" else "False")
