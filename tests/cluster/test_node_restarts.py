"""Init containers run first and in order; restartPolicy OnFailure restarts a failed container
after the kubelet's back-off, keeping its previous run's state and logs."""

from __future__ import annotations

from flowpod_devcluster import manifests, plane, waiting

_SCRATCH = {"name": "scratch", "mountPath": "/scratch"}


def test_init_containers_run_first(cluster: plane.Cluster, namespace: str) -> None:
    init = [manifests.container(["sh", "-c", f"echo {word} >> /scratch/order"], name=word,
                                volumeMounts=[_SCRATCH]) for word in ("first", "second")]
    manifest = manifests.pod("inits", ["cat", "/scratch/order"],
                             container_extra={"volumeMounts": [_SCRATCH]},
                             initContainers=init, volumes=[{"name": "scratch", "emptyDir": {}}])
    waiting.apply(cluster, namespace, manifest)
    pod = waiting.wait_for_pod(cluster, namespace, "inits",
                               lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                               what="a terminal phase")
    assert pod["status"]["phase"] == "Succeeded"
    assert [s["state"]["terminated"]["reason"] for s in pod["status"]["initContainerStatuses"]] \
        == ["Completed", "Completed"]
    assert cluster.kubectl("logs", "-n", namespace, "inits").stdout == "first\nsecond\n"


def test_failing_init_container_fails_a_never_restart_pod(cluster: plane.Cluster,
                                                          namespace: str) -> None:
    manifest = manifests.pod("badinit", ["true"],
                             initContainers=[manifests.container(["false"], name="init")])
    waiting.apply(cluster, namespace, manifest)
    pod = waiting.wait_for_pod(cluster, namespace, "badinit",
                               lambda p: p["status"].get("phase") == "Failed", what="Failed")
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert "waiting" in waiting.container_status(pod)["state"]


_FAILS_ONCE = """
    import os, sys
    marker = "/scratch/tried"
    if os.path.exists(marker):
        print("second run")
        sys.exit(0)
    open(marker, "w").close()
    print("first run")
    sys.exit(1)
"""


def test_on_failure_restarts_after_back_off(cluster: plane.Cluster, namespace: str) -> None:
    manifest = manifests.pod("flaky", manifests.python(_FAILS_ONCE), restart_policy="OnFailure",
                             container_extra={"volumeMounts": [_SCRATCH]},
                             volumes=[{"name": "scratch", "emptyDir": {}}])
    waiting.apply(cluster, namespace, manifest)
    backing_off = waiting.wait_for_pod(
        cluster, namespace, "flaky", what="CrashLoopBackOff after the first failure",
        done=lambda p: waiting.waiting_reason(p) == "CrashLoopBackOff")
    assert backing_off["status"]["phase"] == "Running"
    # The kubelet's first back-off is 10 s.
    pod = waiting.wait_for_pod(cluster, namespace, "flaky",
                               lambda p: p["status"].get("phase") == "Succeeded",
                               what="Succeeded on the second run", timeout=30)
    status = waiting.container_status(pod)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert cluster.kubectl("logs", "-n", namespace, "flaky").stdout == "second run\n"
    previous = cluster.kubectl("logs", "-n", namespace, "flaky", "--previous").stdout
    assert previous == "first run\n"
