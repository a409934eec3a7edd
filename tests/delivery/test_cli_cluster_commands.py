"""The `flowpod` CLI's run commands against the real local control plane, no operator.

Role: what only a real API server shows. `run --watch` with no operator running warns (after
the injectable `Deps.no_state_seconds`) that no operator seems to watch the namespace, and
keeps watching; CLI-made runs carry the flowpod.io/deployment label and time-ordered names,
and `flowpod delete --deployment` finds them through a real label selector; `flowpod resume`
sets spec.resume on a paused run, and the CRD's CEL rule refuses it on one that is not.
Called by pytest with the `cluster` and `namespace` fixtures.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
from rich.console import Console

from delivery import _operating
from flowpod import contract
from flowpod_kube import connecting
from flowpod_operator.cli import Deps, _actions
from flowpod_operator.cli._client import Kube

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = """
apiVersion: flowpod.io/v1alpha1
kind: Deployment
metadata: {name: hello}
spec: {entrypoint: "examples/hello/flow.py:hello", image: "flowpod/engine:dev"}
"""


def _flowpod(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "flowpod_operator.cli", *args,
                           "--kubeconfig", str(cluster.kubeconfig)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_run_watch_without_an_operator_warns_and_keeps_watching(cluster, namespace) -> None:
    _operating.setup_namespace(cluster, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)
    out, err = io.StringIO(), io.StringIO()
    deps = Deps(out=Console(file=out, width=300), err=Console(file=err, width=300),
                no_state_seconds=0.5)

    async def watch_for_three_seconds() -> bool:
        target = connecting.Target(cluster.kubeconfig, None, namespace)
        async with Kube(await connecting.connect(target)) as kube:
            with anyio.move_on_after(3) as scope:
                await _actions.start_run(kube, deps, namespace, "hello", {}, name=None,
                                         watch=True, logs=True)
        return scope.cancelled_caught

    assert anyio.run(watch_for_three_seconds), "the watch must go on after the warning"
    warning = err.getvalue()
    assert warning.count("warning:") == 1, warning
    assert (f"has no state after 0.5 s: no flowpod operator seems to watch namespace "
            f"'{namespace}'") in " ".join(warning.split())
    assert "kubectl get pods -n flowpod-system" in warning
    assert f"flowpod operator --namespace {namespace}" in " ".join(warning.split())


def test_cli_runs_are_labelled_time_ordered_and_deleted_by_deployment(cluster,
                                                                     namespace) -> None:
    _operating.setup_namespace(cluster, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)
    for _ in range(2):
        made = _flowpod(cluster, "run", "hello", "-n", namespace)
        assert made.returncode == 0, made.stderr
        assert "flowpod watch hello-" in made.stderr
    ad_hoc = _flowpod(cluster, "run", "--entrypoint", "examples/hello/flow.py:hello",
                      "--image", "flowpod/engine:dev", "-n", namespace)
    assert ad_hoc.returncode == 0, ad_hoc.stderr
    listed = json.loads(cluster.kubectl(
        "get", "flowruns", "-n", namespace, "-l", f"{contract.LABEL_DEPLOYMENT}=hello",
        "-o", "json").stdout)["items"]
    names = [item["metadata"]["name"] for item in listed]
    assert len(names) == 2 and all(re.fullmatch(r"hello-\d{14}-[a-z0-9]{4}", n) for n in names)
    by_time = sorted(listed, key=lambda i: i["metadata"]["creationTimestamp"])
    assert sorted(names) == [i["metadata"]["name"] for i in by_time] or \
        by_time[0]["metadata"]["creationTimestamp"] == by_time[1]["metadata"]["creationTimestamp"]

    deleted = _flowpod(cluster, "delete", "--deployment", "hello", "-n", namespace)
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(deleted.stdout.split("\n")[:2]) == sorted(
        f"flowrun.flowpod.io/{n} deleted" for n in names)
    left = cluster.kubectl("get", "flowruns", "-n", namespace, "-o",
                           "jsonpath={.items[*].metadata.name}").stdout.split()
    assert len(left) == 1 and left[0].startswith("hello-"), "the ad-hoc run is not the Deployment's"


def _status_patch(*states: tuple[str, str]) -> str:
    history = [{"type": t, "name": n, "message": "", "timestamp": f"2030-01-01T00:00:0{i}Z"}
               for i, (t, n) in enumerate(states)]
    return json.dumps({"status": {"state": history[-1], "stateHistory": history}})


def test_resume_sets_spec_resume_only_on_a_paused_run_on_the_api_server(cluster,
                                                                        namespace) -> None:
    # The real API server takes the JSON Patch of spec.resume on a paused run, and its CEL
    # rule refuses spec.resume on one that is not paused. The states and status.pause are
    # written by hand here, as the engine would have; no operator answers.
    _operating.setup_namespace(cluster, namespace)
    pause = {"key": "pause-1", "timeoutAt": "2030-01-01T01:00:00Z", "suspended": False}
    for name, last in (("paused", ("PAUSED", "Paused")), ("running", ("RUNNING", "Running"))):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=(
            f"apiVersion: flowpod.io/v1alpha1\nkind: FlowRun\nmetadata: {{name: {name}}}\n"
            f"spec: {{deploymentName: hello}}\n"))
        patch = json.loads(_status_patch(("RUNNING", "Running"), last))
        if name == "paused":
            patch["status"]["pause"] = pause
        cluster.kubectl("patch", "flowrun", name, "-n", namespace, "--subresource=status",
                        "--type=merge", "-p", json.dumps(patch))
    unanswered = _flowpod(cluster, "resume", "paused", "-n", namespace, "-i", "ok=true",
                          "--timeout", "1")
    assert unanswered.returncode == 1
    assert "no operator answered the resume within 1 s" in unanswered.stderr
    run = json.loads(cluster.kubectl("get", "flowrun", "paused", "-n", namespace, "-o",
                                     "json").stdout)
    assert run["spec"]["resume"] == {"key": "pause-1", "input": {"ok": True}}
    assert run["status"]["state"]["type"] == "PAUSED", "only the operator resumes"
    again = _flowpod(cluster, "resume", "running", "-n", namespace)
    assert again.returncode == 1 and "is not Paused or Suspended (Running)" in again.stderr
    refused = cluster.kubectl("patch", "flowrun", "running", "-n", namespace, "--type=merge",
                              "-p", '{"spec": {"resume": {"input": 1}}}', check=False)
    assert refused.returncode != 0
    assert ("spec.resume can only be set while the run is Paused or Suspended; it is "
            "Running") in refused.stderr