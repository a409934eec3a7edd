"""The Helm path with the real operator image on `flowpod-containerd`.

Role: README's kind-path `helm install`, flag for flag (through tests/delivery's reading of
it), plus what this shared plane needs (this test's namespaces, a free health port on
loopback) and the placement onto the real node. The operator pod must go Running and Ready
from the image built from operator/Dockerfile, with the kubelet's real readiness probe on
its /healthz; the chart's securityContext must be what runc enforced on the live process
(UID 10001, no capabilities, no new privileges, a seccomp filter, a read-only root
filesystem); and the examples/hello FlowRun must complete through that operator, its engine
pod in a real container too. Marker `containerd`.
"""

from __future__ import annotations

import json
from pathlib import Path

from delivery import _helm
from delivery.test_helm_install import _free_port, _kind_path_install, _release, _state
from containerd.test_real_examples import placed
from flowpod_devcluster import realnode

LABEL = "app.kubernetes.io/instance"


def _operator_pod(cluster, release: str, namespace: str) -> dict:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      f"{LABEL}={release}", "-o", "json").stdout)["items"]
    assert len(pods) == 1, pods
    return pods[0]


def _task_pid(node: realnode.RealNode, container_id: str) -> int:
    for line in node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        task, pid, status = line.split()
        if task == container_id and status == "RUNNING":
            return int(pid)
    raise AssertionError(f"no running task {container_id} in:\n{node.ctr('tasks', 'ls').stdout}")


def _kernel_view(pid: int) -> tuple[dict[str, str], str]:
    """/proc/PID/status as a dict, and the mount options of the process's root."""
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    return {k: v.strip() for k, v in status.items()}, root[5]


def test_the_chart_runs_the_operator_image_locked_down_by_runc(cluster, containerd_node,
                                                               namespace) -> None:
    release, port = _release(), _free_port()
    selector, tolerations = (json.dumps(realnode.PLACEMENT[key])
                             for key in ("nodeSelector", "tolerations"))
    out = _helm.run(*_kind_path_install(release, namespace, namespace),
                    "--timeout", "240s", "--set", f"watchNamespaces={{{namespace}}}",
                    "--set", f"operator.healthPort={port}",
                    "--set", "operator.extraArgs={--health-host=127.0.0.1}",
                    "--set-json", f"operator.nodeSelector={selector}",
                    "--set-json", f"operator.tolerations={tolerations}",
                    kubeconfig=cluster.kubeconfig, timeout=300).stdout
    try:
        pod = _operator_pod(cluster, release, namespace)
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME
        assert pod["status"]["phase"] == "Running"
        (container,) = pod["status"]["containerStatuses"]
        # Ready means the real kubelet's readiness probe reached the operator's /healthz.
        assert container["ready"] is True, container
        assert container["imageID"], container
        pid = _task_pid(containerd_node, container["containerID"].removeprefix("containerd://"))
        status, root_options = _kernel_view(pid)
        assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        assert int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
        assert "ro" in root_options.split(","), root_options

        cluster.kubectl("apply", "-n", namespace, "-f", "-",
                        input=placed("hello", realnode.PLACEMENT))
        waited = cluster.kubectl("wait", "-n", namespace, "flowrun/hello-example",
                                 "--for=condition=Succeeded", "--timeout=180s", check=False,
                                 timeout=200)
        run = _state(cluster, namespace, "hello-example")
        assert waited.returncode == 0, (json.dumps(run, indent=1), out)
        assert run["state"]["type"] == "COMPLETED"
        engine = json.loads(cluster.kubectl("get", "pod", "-n", namespace, run["podName"],
                                            "-o", "json").stdout)
        assert engine["spec"]["nodeName"] == realnode.NODE_NAME
    finally:
        _helm.run("uninstall", release, "--namespace", namespace, "--wait", "--timeout",
                  "120s", kubeconfig=cluster.kubeconfig, timeout=150)
