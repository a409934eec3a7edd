"""Graceful deletion as the kubelet does it: SIGTERM to the process group, the grace period,
then SIGKILL; finished pods go at once; a Job deleted in the background takes its pods."""

from __future__ import annotations

import json
import time

from flowpod_devcluster import manifests, plane, waiting

# Keeps the pod object around after the node's final grace-0 delete, so the test can read the
# status the node wrote last; the test removes it itself.
_HOLD = "flowpod.io/test-hold"

_TRAPS_TERM = """
    import signal, sys, time
    def stop(signum, frame):
        print("got SIGTERM", flush=True)
        time.sleep(0.5)
        sys.exit(42)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
"""

_IGNORES_TERM = """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
"""


def _start_held(cluster: plane.Cluster, namespace: str, name: str, code: str,
                grace: int) -> None:
    manifest = manifests.pod(name, manifests.python(code), terminationGracePeriodSeconds=grace)
    manifest["metadata"]["finalizers"] = [_HOLD]
    waiting.apply(cluster, namespace, manifest)
    waiting.wait_for(f"{name} to print ready",
                     lambda: cluster.kubectl("logs", "-n", namespace, name, check=False).stdout,
                     lambda out: "ready" in out)


def _delete_and_wait(cluster: plane.Cluster, namespace: str, name: str,
                     timeout: float) -> tuple[dict, float, str]:
    started = time.monotonic()
    cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    pod = waiting.wait_for_pod(
        cluster, namespace, name, what="terminated by the node", timeout=timeout,
        done=lambda p: "terminated" in waiting.container_status(p).get("state", {}))
    elapsed = time.monotonic() - started
    logs = cluster.kubectl("logs", "-n", namespace, name).stdout
    cluster.kubectl("patch", "pod", name, "-n", namespace, "--type=json",
                    "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]))
    return pod, elapsed, logs


def test_sigterm_trap_exits_within_grace(cluster: plane.Cluster, namespace: str) -> None:
    _start_held(cluster, namespace, "trapper", _TRAPS_TERM, grace=20)
    pod, elapsed, logs = _delete_and_wait(cluster, namespace, "trapper", timeout=20)
    terminated = waiting.container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (42, "Error")
    assert "signal" not in terminated
    assert elapsed < 10, f"took {elapsed:.1f}s; the trap exits 0.5 s after SIGTERM"
    assert pod["status"]["phase"] == "Failed"
    assert logs.splitlines() == ["ready", "got SIGTERM"]


def test_sigterm_ignored_is_killed_at_grace_end(cluster: plane.Cluster, namespace: str) -> None:
    grace = 3
    _start_held(cluster, namespace, "stubborn", _IGNORES_TERM, grace=grace)
    pod, elapsed, _ = _delete_and_wait(cluster, namespace, "stubborn", timeout=grace + 15)
    terminated = waiting.container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated.get("signal")) == (137, 9)
    assert terminated["reason"] == "Error"
    assert elapsed >= grace, f"killed after {elapsed:.1f}s, before the {grace}s grace ended"
    assert elapsed < grace + 8, f"killed only after {elapsed:.1f}s"


def test_finished_pod_is_removed_at_once(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod("done", ["true"],
                                                    terminationGracePeriodSeconds=300))
    waiting.wait_for_pod(cluster, namespace, "done",
                         lambda p: p["status"].get("phase") == "Succeeded", what="Succeeded")
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "done", "-n", namespace, "--timeout=20s")
    assert time.monotonic() - started < 10
    assert waiting.get(cluster, "pod", "done", namespace) is None


def _job_pods(cluster: plane.Cluster, namespace: str, job: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l",
                          f"batch.kubernetes.io/job-name={job}", "-o", "json").stdout
    return json.loads(out)["items"]


def test_deleting_job_in_background_removes_its_pods(cluster: plane.Cluster,
                                                     namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.job("sleepy", ["sleep", "300"]))
    waiting.wait_for("the job's pod to run", lambda: _job_pods(cluster, namespace, "sleepy"),
                     lambda pods: len(pods) == 1 and pods[0]["status"].get("phase") == "Running")
    cluster.kubectl("delete", "job", "sleepy", "-n", namespace, "--cascade=background",
                    "--wait=false")
    waiting.wait_for("the job's pods to be gone", lambda: _job_pods(cluster, namespace, "sleepy"),
                     lambda pods: pods == [], timeout=30)
    assert waiting.get(cluster, "job", "sleepy", namespace) is None
