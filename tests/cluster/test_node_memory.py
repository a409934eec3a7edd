"""Memory limits are enforced by a cgroup: a hog over its limit is OOMKilled (137), while a
modest allocation under the same kind of limit completes. A machine that cannot enforce
limits fails here with the node's own explanation — it is never skipped."""

from __future__ import annotations

from flowpod_devcluster import manifests, plane, waiting

_HOG = """
    chunks = []
    for _ in range({mib}):
        chunks.append(b"x" * (1024 * 1024))  # touched pages, so they count against the limit
    print("survived", flush=True)
"""


def _limited(name: str, limit: str, mib: int) -> dict:
    resources = {"limits": {"memory": limit}}
    return manifests.pod(name, manifests.python(_HOG.format(mib=mib)),
                         container_extra={"resources": resources})


def _settled(pod: dict) -> bool:
    state = waiting.container_status(pod).get("state", {})
    return "terminated" in state or waiting.waiting_reason(pod) in (
        "CreateContainerError", "CreateContainerConfigError")


def _run(cluster: plane.Cluster, namespace: str, manifest: dict) -> dict:
    waiting.apply(cluster, namespace, manifest)
    pod = waiting.wait_for_pod(cluster, namespace, manifest["metadata"]["name"], _settled,
                               what="the container to end", timeout=60)
    waiting_state = waiting.container_status(pod)["state"].get("waiting")
    if waiting_state is not None:
        raise AssertionError("this machine cannot enforce memory limits, so OOMKilled cannot be "
                             f"tested: {waiting_state.get('message')}")
    return pod


def test_memory_hog_is_oom_killed(cluster: plane.Cluster, namespace: str) -> None:
    pod = _run(cluster, namespace, _limited("hog", "64Mi", mib=512))
    terminated = waiting.container_status(pod)["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated
    assert (terminated["exitCode"], terminated.get("signal")) == (137, 9)
    assert pod["status"]["phase"] == "Failed"
    assert "survived" not in cluster.kubectl("logs", "-n", namespace, "hog").stdout


def test_allocation_under_limit_completes(cluster: plane.Cluster, namespace: str) -> None:
    pod = _run(cluster, namespace, _limited("modest", "256Mi", mib=32))
    terminated = waiting.container_status(pod)["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Completed", 0)
    assert cluster.kubectl("logs", "-n", namespace, "modest").stdout == "survived\n"
