"""The `flowpod` CLI against the real local control plane, with the operator running.

Role: integration tests of the CLI as users run it (a subprocess, KUBECONFIG or --kubeconfig,
-n): `deploy` applies server-side and is idempotent, `run --watch` shows live states and the
pod's logs and exits 0 only for Completed, `get`/`logs` read what really happened, user errors
(a missing Deployment) are one clear line, and `flowpod crds` output is accepted by the API
server. Called by pytest with the `cluster` and `namespace` fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from delivery import _operating

REPO = Path(__file__).resolve().parents[2]


def _flowpod(cluster, *args: str, env_kubeconfig: bool = False,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    argv = [sys.executable, "-m", "flowpod_operator.cli", *args]
    if args[0] == "crds":
        pass  # offline: prints the generated CRDs
    elif env_kubeconfig:
        env["KUBECONFIG"] = str(cluster.kubeconfig)
    else:
        env.pop("KUBECONFIG", None)
        argv += ["--kubeconfig", str(cluster.kubeconfig)]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def operated(cluster, namespace, tmp_path: Path):
    _operating.setup_namespace(cluster, namespace)
    with _operating.running_operator(cluster, [namespace], tmp_path):
        yield namespace


def test_deploy_then_run_watch_completes_with_logs(cluster, operated: str) -> None:
    ns = operated
    deploy = ["deploy", "examples/retries/flow.py:flaky_pipeline", "--name", "retries",
              "--image", "flowpod/engine:dev", "-n", ns]
    first = _flowpod(cluster, *deploy)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "deployment.flowpod.io/retries created"
    again = _flowpod(cluster, *deploy, env_kubeconfig=True)
    assert again.stdout.strip() == "deployment.flowpod.io/retries unchanged", again.stderr
    schema = cluster.kubectl("get", "fdeploy", "retries", "-n", ns, "-o",
                             "jsonpath={.spec.parameterSchema.properties.failures.type}")
    assert schema.stdout == "integer"

    run = _flowpod(cluster, "run", "retries", "-p", "failures=1", "--watch", "-n", ns)
    assert run.returncode == 0, run.stdout + run.stderr
    name = run.stdout.splitlines()[0].split("/")[1].split()[0]
    assert name.startswith("retries-")
    for state in ("Pending", "Running", "Completed"):
        assert state in run.stderr, run.stderr
    assert "combined: orders: ok after 2 attempts; users: ok after 2 attempts" in run.stdout

    listed = _flowpod(cluster, "get", "-n", ns)
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(name))
    assert row[1:3] == ["retries", "Completed"], listed.stdout
    logs = _flowpod(cluster, "logs", name, "-n", ns, env_kubeconfig=True)
    assert logs.returncode == 0 and "combined: orders" in logs.stdout
    detail = _flowpod(cluster, "get", name, "-n", ns)
    assert "Scheduled -> Pending -> Running -> Completed" in detail.stdout, detail.stdout


def test_run_watch_of_a_failing_flow_exits_one_with_the_reason(cluster, operated: str) -> None:
    ns = operated
    cluster.kubectl("apply", "-n", ns, "-f", str(REPO / "examples/failing/deployment.yaml"))
    run = _flowpod(cluster, "run", "failing", "--watch", "-n", ns)
    assert run.returncode == 1, run.stdout + run.stderr
    summary = run.stderr.strip().splitlines()[-1]
    assert summary.startswith("failing-") and " Failed" in summary, run.stderr
    assert "Flow run raised" in summary and "invalid literal for int()" in summary
    assert "Traceback" in run.stdout, "the pod's log (with the flow's traceback) is tailed"


def test_missing_deployment_is_one_clear_line(cluster, namespace) -> None:
    _operating.setup_namespace(cluster, namespace)
    out = _flowpod(cluster, "run", "nope", "-n", namespace)
    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == (f"error: Deployment 'nope' in namespace "
                                          f"'{namespace}' not found")
    assert "Traceback" not in out.stderr


def test_crds_output_is_accepted_by_the_api_server(cluster) -> None:
    crds = _flowpod(cluster, "crds")
    applied = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=crds.stdout)
    assert "customresourcedefinition.apiextensions.k8s.io/flowruns.flowpod.io" in applied.stdout
