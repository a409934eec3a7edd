"""Shared pytest fixtures: the real local control plane (session scope) and a fresh namespace
per test. Used by every test marked `cluster`, and by anything that asks for `cluster`.

The plane is reused when one is already running in .cluster/ (e.g. after `make cluster-up`)
and is then left running; otherwise the session starts its own and stops it at the end.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pytest

from flowpod_devcluster import plane

_STATE_DIR = Path(os.environ.get("FLOWPOD_CLUSTER_DIR", plane.REPO_ROOT / ".cluster"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that needs the plane is marked, so `-m "not cluster"` gives the hermetic suite.
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> plane.Cluster:
    state_dir = _STATE_DIR.resolve()
    live = plane.load(state_dir)
    if live is not None and live.is_ready():
        yield live
        return
    started = plane.up(state_dir)
    try:
        yield started
    finally:
        if not os.environ.get("FLOWPOD_KEEP_CLUSTER"):
            plane.down(state_dir)


def _wait_for_default_service_account(cluster: plane.Cluster, namespace: str) -> None:
    # Pods are refused until the serviceaccount controller has made `default` in a new namespace.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if cluster.kubectl("get", "serviceaccount", "default", "-n", namespace,
                           check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"serviceaccount default never appeared in namespace {namespace}")


@pytest.fixture
def namespace(cluster: plane.Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    _wait_for_default_service_account(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
