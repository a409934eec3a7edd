"""examples/scheduled/ end to end: a Deployment with an interval schedule and
`concurrencyLimit: 1` starts runs by itself, they complete, and never two run at once.

Role: the kubectl path for real, as tests/delivery/test_examples.py runs the other examples
(CRDs + flow-run RBAC, the operator as a subprocess for the namespace, `kubectl apply -f
examples/scheduled/`); then `kubectl delete -f` of the same directory. The static checks of
the example (valid Deployment, entrypoint resolves, deployment.yaml equals `flowpod deploy
--dry-run`) are in test_examples.py. Called by pytest; uses the `cluster` and `namespace`
fixtures.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import operator_harness as harness
from delivery import _operating
from flowpod import contract

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scheduled"


def _scheduled_runs(api: harness.Api, namespace: str) -> list[dict[str, Any]]:
    listing = api.get(contract.flowrun_path(namespace),
                      labelSelector=f"{contract.LABEL_DEPLOYMENT}=scheduled") or {}
    return [r for r in listing.get("items", []) if (r.get("spec") or {}).get("scheduledTime")]


def _spans(runs: list[dict[str, Any]]) -> list[tuple[datetime, datetime, str]]:
    """(start, end, name) of each run that ran, in start order."""
    spans = [(contract.parse_time(r["status"]["startTime"]),
              contract.parse_time(r["status"]["endTime"]), r["metadata"]["name"])
             for r in runs if (r.get("status") or {}).get("startTime")
             and r["status"].get("endTime")]
    return sorted(spans)


def test_scheduled_example_runs_on_its_own_one_at_a_time(cluster, namespace,
                                                        tmp_path: Path) -> None:
    _operating.setup_namespace(cluster, namespace)
    api = harness.Api(cluster)
    try:
        with _operating.running_operator(cluster, [namespace], tmp_path):
            cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
            deadline = time.monotonic() + 150
            completed: list[dict[str, Any]] = []
            while len(completed) < 2:
                assert time.monotonic() < deadline, (
                    f"two scheduled runs did not complete: {_scheduled_runs(api, namespace)}"
                    f"\n{(tmp_path / 'operator.log').read_text(errors='replace')[-3000:]}")
                time.sleep(1)
                runs = _scheduled_runs(api, namespace)
                completed = [r for r in runs if harness.state_type(r) == "COMPLETED"]
            spans = _spans(runs)
            cluster.kubectl("delete", "-n", namespace, "-f", str(EXAMPLE), "--wait=true")
            assert api.get(contract.deployment_path(namespace, "scheduled")) is None
    finally:
        api.close()
    assert all(r["status"]["result"]["value"].startswith("took ") for r in completed)
    assert len(spans) >= 2
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        assert start >= end, f"{second} started at {start} while {first} ran until {end}"
