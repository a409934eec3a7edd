"""The test node runs pods as a kubelet would: exit codes and phases, Job failure, env from the
downward API, Secrets and ConfigMaps, unknown images, and activeDeadlineSeconds."""

from __future__ import annotations

import json

from flowpod_devcluster import manifests, plane, waiting


def _terminated(pod: dict, name: str | None = None) -> dict:
    return waiting.container_status(pod, name).get("state", {}).get("terminated") or {}


def test_failing_job_pod_fails_with_its_exit_code(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.job("exit3", manifests.python(
        "import sys; sys.exit(3)")))
    job = waiting.wait_for("job exit3 to get the Failed condition",
                           lambda: waiting.get(cluster, "job", "exit3", namespace),
                           lambda j: any(c["type"] == "Failed" and c["status"] == "True"
                                         for c in (j or {}).get("status", {}).get(
                                             "conditions") or []))
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      "batch.kubernetes.io/job-name=exit3", "-o",
                                      "json").stdout)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Failed"
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert "signal" not in terminated
    assert terminated["containerID"].startswith("flowpod://")
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "False" and conditions["PodScheduled"] == "True"
    assert pod["status"]["startTime"] and pod["status"]["podIP"] == cluster.node_ip


def test_succeeding_pod_reports_completed(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod("ok", ["true"]))
    pod = waiting.wait_for_pod(cluster, namespace, "ok",
                               lambda p: p["status"].get("phase") == "Succeeded",
                               what="phase Succeeded")
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert terminated["startedAt"] <= terminated["finishedAt"]


def test_running_pod_is_ready(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod("sleeper", ["sleep", "300"],
                                                    terminationGracePeriodSeconds=2))
    pod = waiting.wait_for_pod(cluster, namespace, "sleeper",
                               lambda p: p["status"].get("phase") == "Running",
                               what="phase Running")
    status = waiting.container_status(pod)
    assert "running" in status["state"] and status["ready"] is True
    assert status["started"] is True and status["restartCount"] == 0
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True",
                          "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}


def test_unknown_image_backs_off(cluster: plane.Cluster, namespace: str) -> None:
    manifest = manifests.pod("nopull", ["true"])
    manifest["spec"]["containers"][0]["image"] = "registry.example/not-mapped:1.0"
    waiting.apply(cluster, namespace, manifest)
    pod = waiting.wait_for_pod(
        cluster, namespace, "nopull", what="container waiting with ImagePullBackOff",
        done=lambda p: waiting.waiting_reason(p) == "ImagePullBackOff")
    assert pod["status"]["phase"] == "Pending"


def test_active_deadline_fails_the_pod(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod(
        "late", ["sleep", "300"], activeDeadlineSeconds=2, terminationGracePeriodSeconds=5))
    pod = waiting.wait_for_pod(cluster, namespace, "late", what="DeadlineExceeded and stopped",
                               done=lambda p: p["status"].get("reason") == "DeadlineExceeded"
                               and bool(_terminated(p)))
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["message"] == ("Pod was active on the node longer than the specified "
                                        "deadline")
    terminated = _terminated(pod)
    # sleep dies of the SIGTERM it is sent: 128 + 15.
    assert (terminated["exitCode"], terminated.get("signal")) == (143, 15)
    assert terminated["reason"] == "DeadlineExceeded"


_PRINT_ENV = """
    import json, os
    keys = ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME", "SA_NAME", "POD_IP",
            "HOST_IP", "TOKEN", "COLOUR", "GREETING", "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT", "VIRTUAL_ENV", "odd.name"]
    print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "cwd": os.getcwd()}))
"""


def test_env_value_from(cluster: plane.Cluster, namespace: str, tmp_path) -> None:
    waiting.apply(cluster, namespace,
                  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                   "stringData": {"token": "s3cr3t"}},
                  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                   "data": {"colour": "teal"}})
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SA_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "COLOUR", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                             "key": "colour"}}},
        {"name": "GREETING", "value": "hello $(POD_NAME) in $(COLOUR), not $$(COLOUR)"},
        {"name": "odd.name", "value": "kept"},
    ]
    workdir = str(tmp_path / "wd")
    waiting.apply(cluster, namespace, manifests.pod(
        "envy", manifests.python(_PRINT_ENV), container_extra={"env": env,
                                                               "workingDir": workdir}))
    pod = waiting.wait_for_pod(cluster, namespace, "envy",
                               lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                               what="a terminal phase")
    logs = cluster.kubectl("logs", "-n", namespace, "envy").stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    printed = json.loads(logs)
    assert printed["cwd"] == workdir
    assert printed["env"] == {
        "POD_NAME": "envy", "POD_NAMESPACE": namespace, "POD_UID": pod["metadata"]["uid"],
        "NODE_NAME": plane.NODE_NAME, "SA_NAME": "default", "POD_IP": cluster.node_ip,
        "HOST_IP": cluster.node_ip, "TOKEN": "s3cr3t", "COLOUR": "teal",
        "GREETING": "hello envy in teal, not $(COLOUR)",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cluster.api_port),
        "VIRTUAL_ENV": str(plane.REPO_ROOT / ".venv"), "odd.name": "kept"}


def test_missing_secret_is_a_config_error(cluster: plane.Cluster, namespace: str) -> None:
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    waiting.apply(cluster, namespace, manifests.pod("noconf", ["true"],
                                                    container_extra={"env": env}))
    pod = waiting.wait_for_pod(
        cluster, namespace, "noconf", what="CreateContainerConfigError",
        done=lambda p: waiting.waiting_reason(p) == "CreateContainerConfigError")
    assert 'secret "absent" not found' in waiting.container_status(pod)["state"]["waiting"][
        "message"]
    assert pod["status"]["phase"] == "Pending"
