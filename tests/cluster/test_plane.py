"""The control plane and the test node are up: /readyz, a Ready node with capacity and
addresses, and a Lease the node keeps renewing."""

from __future__ import annotations

import datetime

from flowpod import contract
from flowpod_devcluster import plane, waiting


def test_readyz_is_ok(cluster: plane.Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_node_registers_ready_with_capacity(cluster: plane.Cluster) -> None:
    node = waiting.get(cluster, "node", plane.NODE_NAME)
    assert node is not None
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses == {"InternalIP": cluster.node_ip, "Hostname": plane.NODE_NAME}
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    for resource in ("cpu", "memory", "pods"):
        assert node["status"]["allocatable"][resource] == node["status"]["capacity"][resource]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    # The lifecycle controller removes the not-ready taint once it has seen Ready.
    waiting.wait_for("no node.kubernetes.io/* taints on the node",
                     lambda: waiting.get(cluster, "node", plane.NODE_NAME),
                     lambda n: not any(t["key"].startswith("node.kubernetes.io/")
                                       for t in (n or {}).get("spec", {}).get("taints") or []))


def _renewed(cluster: plane.Cluster) -> datetime.datetime:
    lease = waiting.get(cluster, "lease", plane.NODE_NAME, "kube-node-lease")
    assert lease is not None and lease["spec"]["holderIdentity"] == plane.NODE_NAME
    return contract.parse_time(lease["spec"]["renewTime"])


def test_node_lease_is_renewed(cluster: plane.Cluster) -> None:
    first = _renewed(cluster)
    # Renewals happen every 10 s; one must land within 15 s.
    waiting.wait_for("the node Lease to be renewed", lambda: _renewed(cluster),
                     lambda renewed: renewed > first, timeout=15, interval=0.5)
