"""`helm install` of charts/flowpod onto the real local control plane, end to end.

Role: the true install path. The chart's operator Deployment runs as a pod on the test node
(image flowpod/operator:dev maps to this repository's venv; the pod talks to the API with the
token of the chart's ServiceAccount, so the chart's RBAC is what it gets), a FlowRun applied
with kubectl reaches Completed, the API server itself answers `can-i` for the chart's exact
grants, and `helm uninstall` leaves no operator resource behind. CRDs from the chart's crds/
directory are kept by Helm by design (it never deletes CRDs), and so are FlowRuns.
The docs are run, not copied: the install uses the README kind path's `helm install` flags,
every command of the NOTES it prints is pasted into bash as printed, and the `kubectl wait`
flags the README documents are checked against a Completed and a Failed run.
Called by pytest with the `cluster` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import yaml

from delivery import _docs, _helm
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


def _kind_path_install(release: str, namespace: str, runs_namespace: str) -> list[str]:
    """The README kind path's `helm install`, flag for flag, aimed at this plane: the plane's
    kubeconfig instead of kind's context, and this test's namespaces instead of its own."""
    (argv,) = [c for c in _docs.kind_path_commands() if c[:2] == ["helm", "install"]]
    assert argv[2:4] == ["flowpod", "charts/flowpod"], argv
    args, rest = ["install", release, str(_helm.CHART)], iter(argv[4:])
    for arg in rest:
        if arg == "--kube-context":
            next(rest)
        elif arg == "--namespace":
            args += [arg, namespace]
            next(rest)
        else:
            args.append(arg.replace("{default}", f"{{{runs_namespace}}}"))
    assert f"flowRuns.namespaces={{{runs_namespace}}}" in args, args
    return args


# `get --watch` never ends: a user stops it with Ctrl-C, the test after a few seconds
# (`timeout` runs the kubectl binary, not this function).
_WATCH_STOPS = """kubectl() {
  if [[ " $* " == *" --watch "* ]]; then timeout 5 kubectl "$@" || [ $? -eq 124 ]
  else command kubectl "$@"; fi
}"""


def _run_notes(cluster, install_output: str) -> str:
    """Every command of the NOTES `helm install` printed, pasted into bash as printed."""
    notes = install_output.split("\nNOTES:\n", 1)[1]
    blocks = _docs.code_blocks(notes, 5)
    assert len(blocks) >= 5, notes
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "PATH": f"{cluster.bin_dir}{os.pathsep}{os.environ['PATH']}"}
    script = "\n\n".join([_WATCH_STOPS, *blocks])
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"NOTES commands failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _check_operator_pod(cluster, release: str, namespace: str, port: int) -> None:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      f"{LABEL}={release}", "-o", "json").stdout)["items"]
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    assert pods[0]["spec"]["serviceAccountName"] == f"{release}-flowpod-operator"
    # The probes' target answers: the health endpoint of the operator in the pod. The test
    # node runs no readiness probes (a container is Ready once it starts), so `helm --wait`
    # can return before the operator listens; a real kubelet would hold Ready until then.
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                assert resp.status == 200
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _state(cluster, namespace: str, name: str) -> dict:
    run = json.loads(cluster.kubectl("get", "-n", namespace, f"flowrun/{name}", "-o",
                                     "json").stdout)
    return run.get("status") or {}


def _kubectl_path() -> list[list[str]]:
    """Every command README.md's kubectl path shows, as the shell splits it."""
    blocks = _docs.code_blocks(_docs.readme_section("### 1. kubectl path"), 4)
    return [c for b in blocks for c in _docs.commands(b)]


def _documented(flag: str) -> list[str]:
    """The kubectl path's one command that shows `flag`."""
    found = [c for c in _kubectl_path() if flag in c]
    assert len(found) == 1, (flag, found)
    return found[0]


def _wait(cluster, namespace: str, argv: list[str], run: str | None = None,
          timeout: str | None = None) -> tuple[int, float, str]:
    """Run a documented `kubectl wait` in `namespace`, optionally on another run or timeout."""
    assert argv[:2] == ["kubectl", "wait"], argv
    args = [a for a in argv[1:] if not (timeout and a.startswith("--timeout="))]
    if run:
        args = [f"flowrun/{run}" if a.startswith("flowrun/") else a for a in args]
    args += [f"--timeout={timeout}"] if timeout else []
    started = time.monotonic()
    done = cluster.kubectl(*args, "-n", namespace, check=False, timeout=150)
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


def _check_documented_waits(cluster, namespace: str, completed: str) -> None:
    # Real runs on the real API server: one Completed (`completed`), one Failed (the README's
    # examples/failing/), each waited for with the flags README.md documents.
    failed_wait = _documented("--for=condition=Succeeded=False")
    state_wait = _documented("--for=jsonpath={.status.state.type}=COMPLETED")
    apply = _documented("examples/failing/")
    cluster.kubectl(*apply[1:-1], str(REPO / apply[-1]), "-n", namespace)
    failed = next(a for a in failed_wait if a.startswith("flowrun/")).split("/", 1)[1]

    code, took, said = _wait(cluster, namespace, failed_wait)
    status = _state(cluster, namespace, failed)
    assert code == 0, f"{said}\n{json.dumps(status, indent=1)}"
    assert status["state"]["type"] == "FAILED", status
    print(f"kubectl wait --for=condition=Succeeded=False returned {took:.1f}s after apply")
    assert _wait(cluster, namespace, state_wait, run=completed)[0] == 0
    # The other way round, each wait holds out to its timeout: the reason both are documented.
    assert _wait(cluster, namespace, failed_wait, run=completed, timeout="3s")[0] != 0
    assert _wait(cluster, namespace, state_wait, run=failed, timeout="3s")[0] != 0
    assert _wait(cluster, namespace, ["kubectl", "wait", f"flowrun/{failed}",
                                      "--for=condition=Succeeded"], timeout="3s")[0] != 0


def test_helm_install_runs_a_flow_run_then_uninstalls_cleanly(cluster, namespace) -> None:
    release, port, runs_namespace = _release(), _free_port(), f"{namespace}-runs"
    cluster.kubectl("create", "namespace", runs_namespace)
    started = time.monotonic()
    # The kind path's flags, plus what this shared plane needs: watch only this test's
    # namespace (other tests run their own operators) and a free health port.
    out = _helm.run(*_kind_path_install(release, namespace, runs_namespace),
                    "--timeout", "120s", "--set", f"watchNamespaces={{{namespace}}}",
                    "--set", f"operator.healthPort={port}",
                    kubeconfig=cluster.kubeconfig, timeout=180).stdout
    installed = time.monotonic() - started
    assert "image: flowpod/engine:dev" in out  # NOTES' FlowRun follows image.engine.tag
    assert f"kubectl -n {namespace} wait flowrun/hello-first --for=condition=Succeeded" in out
    try:
        _check_operator_pod(cluster, release, namespace, port)
        cluster.kubectl("get", "serviceaccount", "flowpod-flow-run", "-n", runs_namespace)
        watched = _run_notes(cluster, out)
        assert "hello-first" in watched
        assert _state(cluster, namespace, "hello-first")["state"]["type"] == "COMPLETED"

        cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/hello"))
        name = yaml.safe_load((REPO / "examples/hello/flowrun.yaml").read_text())[
            "metadata"]["name"]
        waited = cluster.kubectl("wait", "-n", namespace, f"flowrun/{name}",
                                 "--for=condition=Succeeded", "--timeout=90s", check=False,
                                 timeout=120)
        status = _state(cluster, namespace, name)
        assert waited.returncode == 0, (f"FlowRun {name} did not complete: "
                                        f"{json.dumps(status, indent=1)}")
        assert status["state"]["type"] == "COMPLETED"
        assert status["podName"]
        _check_documented_waits(cluster, namespace, completed=name)
    finally:
        _helm.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "90s",
                  kubeconfig=cluster.kubeconfig, timeout=120)
        cluster.kubectl("delete", "namespace", runs_namespace, "--wait=false", check=False)
    left = _wait_gone(cluster, release, namespace)
    assert not any(left.values()), f"helm uninstall left operator resources behind: {left}"
    # Kept by design: Helm never deletes CRDs from crds/, and users' FlowRuns stay.
    cluster.kubectl("get", "crd", "flowruns.flowpod.io", "deployments.flowpod.io")
    cluster.kubectl("get", "-n", namespace, f"flowrun/{name}")
    print(f"helm install --wait took {installed:.1f}s")


def test_notes_name_the_engine_image_at_app_version_by_default(cluster, namespace) -> None:
    # Rendering NOTES needs `helm install`; a dry run against the plane installs nothing.
    out = _helm.run("install", _release(), str(_helm.CHART), "--namespace", namespace,
                    "--dry-run", kubeconfig=cluster.kubeconfig).stdout
    # NOTES.txt: the first FlowRun, with the engine image whose tag fell back to appVersion.
    app_version = yaml.safe_load((_helm.CHART / "Chart.yaml").read_text())["appVersion"]
    assert f"image: flowpod/engine:{app_version}" in out


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
            "flowruns", "flowruns/status", "flowruns/finalizers", "deployments",
            "deployments/status", "jobs", "pods", "pods/log", "events"}
        elsewhere = "-n=kube-system"
        assert _can(cluster, operator, "watch", "flowruns.flowpod.io", elsewhere)
        assert _can(cluster, operator, "create", "jobs.batch", elsewhere)
        assert _can(cluster, operator, "patch", "flowruns.flowpod.io", "--subresource=status",
                    elsewhere)
        # Patch on the object itself is for the one label it adds (flowpod.io/deployment);
        # it still may not replace anyone's FlowRun. Delete is for finished runs past their
        # Deployment's history limits or their ttlSecondsAfterFinished.
        assert _can(cluster, operator, "patch", "flowruns.flowpod.io", elsewhere)
        assert not _can(cluster, operator, "update", "flowruns.flowpod.io", elsewhere)
        assert _can(cluster, operator, "delete", "flowruns.flowpod.io", elsewhere)
        assert not _can(cluster, operator, "get", "secrets", elsewhere)
        assert not _can(cluster, operator, "create", "pods", elsewhere)
        # A Deployment's schedule status is the operator's to write; its spec is not.
        assert _can(cluster, operator, "patch", "deployments.flowpod.io", "--subresource=status",
                    elsewhere)
        assert not _can(cluster, operator, "patch", "deployments.flowpod.io", elsewhere)
        here = f"-n={namespace}"
        for verb in ("get", "watch", "patch", "create"):
            assert _can(cluster, flow_run, verb, "flowruns.flowpod.io", here), verb
        assert _can(cluster, flow_run, "patch", "flowruns.flowpod.io", "--subresource=status",
                    here)
        # Its Deployment's default parameters: get, and nothing more.
        assert _can(cluster, flow_run, "get", "deployments.flowpod.io", here)
        assert not _can(cluster, flow_run, "list", "deployments.flowpod.io", here)
        assert _can(cluster, operator, "get", "pods", "--subresource=log", elsewhere)
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
