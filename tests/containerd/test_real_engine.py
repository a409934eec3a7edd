"""The engine image in real containers on `flowpod-containerd`: what only a real kubelet,
containerd and runc can show.

- OOMKilled is reported by the real kubelet (the kernel's cgroup OOM killer, seen by
  containerd) and mapped to Crashed with the same message as on the process node.
- `kubectl logs` reads a real container's log through the API server and the kubelet.
- The engine writes nothing outside the paths its pod mounts: its container's writable
  overlay layer holds nothing but the mount points runc made. So it also runs under a
  read-only root filesystem, as the chart's restricted securityContext asks.
- An image that is not on the node crashes the run after its pending timeout, as on the
  process node, and the pull never left the machine: every registry maps to a closed
  loopback port (realnode.py).
- The OCI spec runc ran the engine with: UID/GID 10001, no capabilities at all, no new
  privileges, and a seccomp filter (RuntimeDefault).

The operator runs on the host (as in tests/operator/); flow code other than the examples is
mounted read-only from tests/operator/flows/ with a hostPath volume. Marker `containerd`.
"""

from __future__ import annotations

import hashlib
import json

import pytest

import operator_harness as harness
from flowpod import contract

CASES = "tests/operator/flows/operator_cases.py"
FLOWS_MOUNT = "/opt/flowpod/tests/operator/flows"
OOM = "OOMKilled: the flow used more memory than its limit of 64Mi"


@pytest.fixture(scope="module")
def api(cluster):
    client = harness.Api(cluster)
    yield client
    client.close()


@pytest.fixture(scope="module")
def runs(cluster, containerd_node, api, tmp_path_factory):
    from flowpod_devcluster import realnode
    ns = f"real-engine-{tmp_path_factory.mktemp('x').name[-4:]}".lower().replace("_", "-")
    harness.apply_crds(cluster)
    harness.prepare_namespace(cluster, ns)
    flows = {"volumes": [{"name": "flows", "hostPath": {
        "path": str(harness.REPO / "tests" / "operator" / "flows"), "type": "Directory"}}],
        "volumeMounts": [{"name": "flows", "mountPath": FLOWS_MOUNT, "readOnly": True}]}
    api.create_deployment(ns, "hello", entrypoint="examples/hello/flow.py:hello",
                          image=harness.IMAGE, podTemplate=dict(realnode.PLACEMENT))
    api.create_deployment(ns, "hog", entrypoint=f"{CASES}:hog_memory", image=harness.IMAGE,
                          podTemplate={**realnode.PLACEMENT, **flows,
                                       "resources": {"limits": {"memory": "64Mi"}}})
    api.create_deployment(ns, "no-image", entrypoint="examples/hello/flow.py:hello",
                          image="registry.invalid/flowpod/nope:1", pendingTimeoutSeconds=10,
                          podTemplate=dict(realnode.PLACEMENT))
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = harness.OperatorProcess(cluster.kubeconfig, log, (ns,)).start()
    api.create_flowrun(ns, "hello-run", deploymentName="hello",
                       parameters={"name": "containerd"})
    api.create_flowrun(ns, "oom", deploymentName="hog")
    api.create_flowrun(ns, "unknown-image", deploymentName="no-image")
    yield ns, proc
    proc.stop()
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _final(api, runs, name: str) -> dict:
    ns, proc = runs
    return api.wait_final(ns, name, timeout=240,
                          explain=lambda: proc.log_tail(needle=f'"{name}"'))


def _pod(api, ns: str, run: str) -> dict:
    (pod,) = api.pods(ns, f"{contract.LABEL_FLOW_RUN}={run}")
    return pod


def _container_id(pod: dict) -> str:
    (status,) = pod["status"]["containerStatuses"]
    return status["containerID"].removeprefix("containerd://")


def test_oom_killed_by_the_real_kubelet_is_crashed(api, runs, containerd_node):
    flowrun = _final(api, runs, "oom")
    state = flowrun["status"]["state"]
    assert state["type"] == "CRASHED", flowrun["status"]
    assert state["message"].startswith(OOM), state
    assert flowrun["status"]["reason"] == "OOMKilled"
    pod = _pod(api, runs[0], "oom")
    assert pod["spec"]["nodeName"] == "flowpod-containerd"
    (status,) = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["reason"] == "OOMKilled", status
    assert status["state"]["terminated"]["exitCode"] == 137, status


def test_kubectl_logs_of_a_real_container(cluster, api, runs, containerd_node):
    flowrun = _final(api, runs, "hello-run")
    assert flowrun["status"]["state"]["type"] == "COMPLETED", flowrun["status"]
    pod = _pod(api, runs[0], "hello-run")
    assert pod["spec"]["nodeName"] == "flowpod-containerd"
    logs = cluster.kubectl("logs", "-n", runs[0], pod["metadata"]["name"]).stdout
    assert "HELLO, CONTAINERD!" in logs, logs


def test_the_engine_writes_nothing_outside_its_mounts(api, runs, containerd_node):
    assert _final(api, runs, "hello-run")["status"]["state"]["type"] == "COMPLETED"
    container = _container_id(_pod(api, runs[0], "hello-run"))
    # Directories runc created to mount onto are the only entries allowed in the layer.
    mount_points = containerd_node.mount_points(container)
    written = containerd_node.written_files(container)
    assert [p for p in written if p not in mount_points] == [], written


def test_runc_ran_the_engine_unprivileged_under_seccomp(api, runs, containerd_node):
    assert _final(api, runs, "hello-run")["status"]["state"]["type"] == "COMPLETED"
    container = _container_id(_pod(api, runs[0], "hello-run"))
    spec = json.loads(containerd_node.ctr("containers", "info", container).stdout)["Spec"]
    process = spec["process"]
    assert (process["user"]["uid"], process["user"]["gid"]) == (10001, 10001), process["user"]
    assert process["noNewPrivileges"] is True
    assert all(not caps for caps in process.get("capabilities", {}).values()), process
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"


def test_an_image_not_on_the_node_crashes_and_is_pulled_only_from_loopback(
        cluster, api, runs, containerd_node):
    flowrun = _final(api, runs, "unknown-image")
    state = flowrun["status"]["state"]
    assert state["type"] == "CRASHED", flowrun["status"]
    assert flowrun["status"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "could not start for 10s (pendingTimeoutSeconds)" in state["message"]
    events = json.loads(cluster.kubectl("get", "events", "-n", runs[0], "-o", "json").stdout)
    pulls = [e["message"] for e in events["items"] if e["reason"] == "Failed"
             and "registry.invalid/flowpod/nope:1" in e["message"]]
    assert pulls and all("http://127.0.0.1:9/v2/" in m for m in pulls), pulls


def _package_digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()


_DIGEST = ("import flowpod, hashlib, pathlib; root = pathlib.Path(flowpod.__file__).parent; "
           "d = hashlib.sha256(); "
           "[d.update(str(p.relative_to(root)).encode() + b'\\0' + p.read_bytes() + b'\\0') "
           "for p in sorted(root.rglob('*.py'), key=lambda p: str(p.relative_to(root)))]; "
           "print(d.hexdigest())")


def test_the_image_holds_this_checkouts_engine(cluster, containerd_node, namespace):
    # A stale image (a build cache that kept an old wheel) would pass every other check.
    source = harness.REPO / "engine_image" / "src" / "flowpod"
    want = _package_digest({str(p.relative_to(source)): p.read_bytes()
                            for p in source.rglob("*.py")})
    from flowpod_devcluster import realnode
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "digest"},
           "spec": {**realnode.PLACEMENT, "restartPolicy": "Never",
                    "containers": [{"name": "digest", "image": harness.IMAGE,
                                    "command": ["python", "-c", _DIGEST]}]}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    cluster.kubectl("wait", "-n", namespace, "pod/digest",
                    "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s", timeout=150)
    got = cluster.kubectl("logs", "-n", namespace, "digest").stdout.strip()
    assert got == want
