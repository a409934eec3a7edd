"""Fixtures of the suites that run on the real container node, `flowpod-containerd`.

- `containerd_node` (session): the node (containerd + runc + kubelet, the images built from
  the Dockerfiles) started into the session's plane; flowpod_devcluster/realnode.py says how.
  Every test using it is marked `containerd` (and `cluster`), so `pytest -m containerd` runs
  exactly these suites.
- `on_real_node`: a Deployment podTemplate (or Helm values) fragment that puts pods there.
"""

from __future__ import annotations

import os

import pytest

from flowpod_devcluster import plane, realnode


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "containerd_node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.containerd)


@pytest.fixture(scope="session")
def containerd_node(cluster: plane.Cluster) -> realnode.RealNode:
    node = realnode.up(cluster)
    yield node
    if not os.environ.get("FLOWPOD_KEEP_CLUSTER"):
        realnode.stop(cluster.state_dir)


@pytest.fixture
def on_real_node() -> dict:
    return {key: value for key, value in realnode.PLACEMENT.items()}
