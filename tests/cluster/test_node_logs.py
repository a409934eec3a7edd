"""`kubectl logs` reaches the test node's containerLogs endpoint through the API server."""

from __future__ import annotations

import re

from flowpod_devcluster import manifests, plane, waiting

_CHATTY = """
    import sys, time
    for i in range(3):
        print("out", i, flush=True)
        time.sleep(0.3)
    print("to stderr", file=sys.stderr, flush=True)
    sys.stdout.write("no newline at the end")
"""


def _finished(cluster: plane.Cluster, namespace: str, name: str) -> dict:
    return waiting.wait_for_pod(cluster, namespace, name,
                                lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                                what="a terminal phase")


def test_kubectl_logs_shows_output(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod("chatty", manifests.python(_CHATTY)))
    _finished(cluster, namespace, "chatty")
    logs = cluster.kubectl("logs", "-n", namespace, "chatty").stdout
    assert logs == "out 0\nout 1\nout 2\nto stderr\nno newline at the end"
    tail = cluster.kubectl("logs", "-n", namespace, "chatty", "--tail=2").stdout
    assert tail == "to stderr\nno newline at the end"
    stamped = cluster.kubectl("logs", "-n", namespace, "chatty", "--timestamps").stdout
    first = stamped.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z out 0", first), first


def test_kubectl_logs_follow_streams_until_exit(cluster: plane.Cluster, namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod("streamer", manifests.python(_CHATTY)))
    waiting.wait_for_pod(cluster, namespace, "streamer",
                         lambda p: "running" in waiting.container_status(p).get("state", {})
                         or p["status"].get("phase") == "Succeeded", what="running")
    followed = cluster.kubectl("logs", "-n", namespace, "streamer", "-f", timeout=30).stdout
    assert followed.endswith("out 2\nto stderr\nno newline at the end")


def test_logs_of_an_unknown_container_are_refused(cluster: plane.Cluster,
                                                  namespace: str) -> None:
    waiting.apply(cluster, namespace, manifests.pod("quiet", ["true"]))
    _finished(cluster, namespace, "quiet")
    result = cluster.kubectl("logs", "-n", namespace, "quiet", "-c", "nope", check=False)
    assert result.returncode != 0 and "nope" in result.stderr
