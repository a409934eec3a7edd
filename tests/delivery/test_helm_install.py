"""`helm install` of charts/flowpod onto the real local control plane, end to end.

Role: the true install path. The chart's operator Deployment runs as a pod on the test node
(image flowpod/operator:dev maps to this repository's venv; the pod talks to the API with the
token of the chart's ServiceAccount, so the chart's RBAC is what it gets), a FlowRun applied
with kubectl reaches Completed, the API server itself answers `can-i` for the chart's exact
grants, and `helm uninstall` leaves no operator resource behind. CRDs from the chart's crds/
directory are kept by Helm by design (it never deletes CRDs), and so are FlowRuns.
Called by pytest with the `cluster` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid

import yaml

from delivery import _helm
from flowpod import contract

REPO = _helm.CHART.parents[1]
LABEL = "app.kubernetes.io/instance"
NAMESPACED_KINDS = "deployments.apps,replicasets.apps,pods,serviceaccounts,roles,rolebindings"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _release() -> str:
    # Cluster-scoped names carry the release name: unique per run, so reruns never collide.
    return f"fp{uuid.uuid4().hex[:6]}"


def _install(cluster, release: str, namespace: str, *values: str) -> str:
    args = ["install", release, str(_helm.CHART), "--namespace", namespace, "--wait",
            "--timeout", "120s"]
    for item in values:
        args += ["--set", item]
    return _helm.run(*args, kubeconfig=cluster.kubeconfig, timeout=180).stdout


def _leftovers(cluster, release: str, namespace: str) -> dict[str, list[str]]:
    found = {}
    for kinds, scope in ((NAMESPACED_KINDS, ["-n", namespace]),
                         ("clusterroles,clusterrolebindings", [])):
        out = cluster.kubectl("get", kinds, *scope, "-l", f"{LABEL}={release}", "-o", "name")
        found[kinds] = out.stdout.split()
    return found


def _wait_gone(cluster, release: str, namespace: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        left = _leftovers(cluster, release, namespace)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def _can(cluster, who: str, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *args, f"--as={who}", check=False)
    return out.stdout.strip() == "yes"


def test_helm_install_runs_a_flow_run_then_uninstalls_cleanly(cluster, namespace) -> None:
    release, port = _release(), _free_port()
    started = time.monotonic()
    out = _install(cluster, release, namespace, f"watchNamespaces={{{namespace}}}",
                   "image.operator.tag=dev", f"operator.healthPort={port}")
    installed = time.monotonic() - started
    # NOTES.txt: the first FlowRun, with the engine image whose tag fell back to appVersion.
    app_version = yaml.safe_load((_helm.CHART / "Chart.yaml").read_text())["appVersion"]
    assert f"image: flowpod/engine:{app_version}" in out
    assert f"kubectl -n {namespace} wait flowrun/hello-first --for=condition=Succeeded" in out
    try:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                          f"{LABEL}={release}", "-o", "json").stdout)["items"]
        assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
        assert pods[0]["spec"]["serviceAccountName"] == f"{release}-flowpod-operator"
        # The probes' target answers: the health endpoint of the operator in the pod.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200

        cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/hello"))
        name = yaml.safe_load((REPO / "examples/hello/flowrun.yaml").read_text())[
            "metadata"]["name"]
        waited = cluster.kubectl("wait", "-n", namespace, f"flowrun/{name}",
                                 "--for=condition=Succeeded", "--timeout=90s", check=False,
                                 timeout=120)
        run = json.loads(cluster.kubectl("get", "-n", namespace, f"flowrun/{name}", "-o",
                                         "json").stdout)
        assert waited.returncode == 0, (f"FlowRun {name} did not complete: "
                                        f"{json.dumps(run.get('status'), indent=1)}")
        assert run["status"]["state"]["type"] == "COMPLETED"
        assert run["status"]["podName"]
    finally:
        _helm.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "90s",
                  kubeconfig=cluster.kubeconfig, timeout=120)
    left = _wait_gone(cluster, release, namespace)
    assert not any(left.values()), f"helm uninstall left operator resources behind: {left}"
    # Kept by design: Helm never deletes CRDs from crds/, and users' FlowRuns stay.
    cluster.kubectl("get", "crd", "flowruns.flowpod.io", "deployments.flowpod.io")
    cluster.kubectl("get", "-n", namespace, f"flowrun/{name}")
    print(f"helm install --wait took {installed:.1f}s")


def test_cluster_wide_install_grants_exactly_the_chart_rbac(cluster, namespace) -> None:
    # replicas=0: RBAC only, so no second operator competes with other tests' runs.
    release = _release()
    _install(cluster, release, namespace, "operator.replicas=0")
    operator = f"system:serviceaccount:{namespace}:{release}-flowpod-operator"
    flow_run = f"system:serviceaccount:{namespace}:{contract.DEFAULT_SERVICE_ACCOUNT}"
    try:
        role = json.loads(cluster.kubectl("get", "clusterrole", f"{release}-flowpod-operator",
                                          "-o", "json").stdout)
        assert {r["resources"][0] for r in role["rules"]} == {
            "flowruns", "flowruns/status", "flowruns/finalizers", "deployments", "jobs", "pods",
            "events"}
        elsewhere = "-n=kube-system"
        assert _can(cluster, operator, "watch", "flowruns.flowpod.io", elsewhere)
        assert _can(cluster, operator, "create", "jobs.batch", elsewhere)
        assert _can(cluster, operator, "patch", "flowruns.flowpod.io", "--subresource=status",
                    elsewhere)
        assert not _can(cluster, operator, "patch", "flowruns.flowpod.io", elsewhere)
        assert not _can(cluster, operator, "get", "secrets", elsewhere)
        assert not _can(cluster, operator, "create", "pods", elsewhere)
        here = f"-n={namespace}"
        for verb in ("get", "watch", "patch", "create"):
            assert _can(cluster, flow_run, verb, "flowruns.flowpod.io", here), verb
        assert _can(cluster, flow_run, "patch", "flowruns.flowpod.io", "--subresource=status",
                    here)
        assert not _can(cluster, flow_run, "list", "flowruns.flowpod.io", here)
        assert not _can(cluster, flow_run, "delete", "flowruns.flowpod.io", here)
        assert not _can(cluster, flow_run, "get", "secrets", here)
        assert not _can(cluster, flow_run, "get", "flowruns.flowpod.io", elsewhere)
    finally:
        _helm.run("uninstall", release, "--namespace", namespace, "--wait",
                  kubeconfig=cluster.kubeconfig)
    left = _wait_gone(cluster, release, namespace)
    assert not any(left.values()), f"helm uninstall left resources behind: {left}"


def test_rendered_chart_passes_server_side_validation(cluster, namespace) -> None:
    # The API server's own schema check of every object, for each value set of the lint test.
    for values in ([], [f"watchNamespaces={{{namespace}}}"], ["image.operator.tag=1.2.3"]):
        args = ["template", "v", str(_helm.CHART), "--namespace", namespace, "--kube-version",
                _helm.KUBE_VERSION]
        for item in values:
            args += ["--set", item]
        manifest = _helm.run(*args).stdout
        out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest,
                              check=False)
        assert out.returncode == 0, out.stderr
