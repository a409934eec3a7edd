"""The CLI's schedule commands on the real local control plane, with the operator running.

Role: what only the real API server and operator show. `deploy --interval` makes the operator
start runs by itself; `flowpod pause` stops them (the status says Paused, no new run comes)
and, being a merge-patch update rather than part of deploy's server-side apply, outlasts a
re-deploy of the same flags; `get deployments` shows the schedule; `unpause` starts runs
again. Called by pytest with the `cluster` and `namespace` fixtures.
"""

from __future__ import annotations

import json
import time

import pytest

from delivery.test_cli_cluster import _flowpod, operated  # noqa: F401
from flowpod import contract
from flowpod_devcluster import waiting

pytestmark = pytest.mark.cluster
INTERVAL = 2


def _runs(cluster, ns: str, deployment: str) -> list[str]:
    listed = cluster.kubectl("get", "flowruns", "-n", ns, "-o", "json", "-l",
                             f"{contract.LABEL_DEPLOYMENT}={deployment}")
    return sorted(item["metadata"]["name"] for item in json.loads(listed.stdout)["items"])


def _deployment(cluster, ns: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "fdeploy", name, "-n", ns, "-o", "json").stdout)


def _wait(what: str, check, timeout: float = 40):
    return waiting.wait_for(what, check, bool, timeout=timeout)


def test_deploy_interval_starts_runs_pause_stops_them_and_outlasts_a_redeploy(
        cluster, operated: str) -> None:
    ns = operated
    deploy = ["deploy", "examples/hello/flow.py:hello", "--name", "tick", "--image",
              "flowpod/engine:dev", "--interval", str(INTERVAL), "-n", ns]
    created = _flowpod(cluster, *deploy)
    assert created.returncode == 0, created.stderr
    (entry,) = _deployment(cluster, ns, "tick")["spec"]["schedules"]
    assert entry["interval"] == INTERVAL  # with the CRD's defaults (active, timezone)
    _wait("two scheduled runs", lambda: len(_runs(cluster, ns, "tick")) >= 2)
    assert all(name.startswith("tick-0-") for name in _runs(cluster, ns, "tick"))

    paused = _flowpod(cluster, "pause", "tick", "-n", ns)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "deployment.flowpod.io/tick paused"
    _wait("the Paused status", lambda: (_deployment(cluster, ns, "tick").get("status") or {})
          .get("schedule") == "Paused")
    before = _runs(cluster, ns, "tick")
    again = _flowpod(cluster, *deploy)  # the same flags: the pause is not deploy's to undo
    assert again.stdout.strip() == "deployment.flowpod.io/tick unchanged", again.stderr
    time.sleep(3 * INTERVAL)
    assert _runs(cluster, ns, "tick") == before, "no run may start while paused"
    assert _deployment(cluster, ns, "tick")["spec"]["paused"] is True
    table = _flowpod(cluster, "get", "deployments", "-n", ns)
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "ENTRYPOINT", "IMAGE", "SCHEDULE", "NEXT", "ACTIVE",
                              "LAST", "AGE"]
    assert row.split()[:5] == ["tick", "examples/hello/flow.py:hello", "flowpod/engine:dev",
                               "Paused", "-"]

    resumed = _flowpod(cluster, "unpause", "tick", "-n", ns)
    assert resumed.returncode == 0, resumed.stderr
    _wait("a run after unpause", lambda: len(_runs(cluster, ns, "tick")) > len(before))
    missing = _flowpod(cluster, "pause", "nope", "-n", ns)
    assert missing.returncode == 1
    assert f"error: Deployment 'nope' in namespace '{ns}' not found" in missing.stderr
