"""Benchmark: FlowRun created -> engine Running, on the real containerd node and on the
process node, p50 / p90 over N runs each (default 20).

Role: a plain script that prints figures. It starts the plane (or reuses .cluster), the
containerd node (flowpod_devcluster/realnode.py) and the operator as a subprocess, then, per
node, creates FlowRuns of examples/hello one at a time and times, for each, from just before
its POST to the moment the engine in the pod reported Running (the timestamp the engine
writes into status.stateHistory, milliseconds, this machine's clock).

    .venv/bin/python tests/bench/realnode_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import operator_harness as harness  # noqa: E402
from flowpod import contract  # noqa: E402
from flowpod_devcluster import plane, realnode  # noqa: E402


def measure(api: harness.Api, ns: str, deployment: str, runs: int) -> list[float]:
    took = []
    for index in range(runs):
        name = f"{deployment}-{index:03d}"
        created = datetime.now(timezone.utc)
        api.create_flowrun(ns, name, deploymentName=deployment)
        run = api.wait_final(ns, name, timeout=180)
        assert harness.state_type(run) == "COMPLETED", run["status"]
        (running,) = [s for s in run["status"]["stateHistory"] if s["type"] == "RUNNING"]
        took.append((contract.parse_time(running["timestamp"]) - created).total_seconds())
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    cluster = plane.up(Path(os.environ.get("FLOWPOD_CLUSTER_DIR", plane.REPO_ROOT / ".cluster")))
    realnode.up(cluster)
    ns = f"bench-startup-{uuid.uuid4().hex[:5]}"
    harness.apply_crds(cluster)
    harness.prepare_namespace(cluster, ns)
    api = harness.Api(cluster)
    entry = "examples/hello/flow.py:hello"
    api.create_deployment(ns, "real", entrypoint=entry, image=harness.IMAGE,
                          podTemplate=dict(realnode.PLACEMENT))
    api.create_deployment(ns, "process", entrypoint=entry, image=harness.IMAGE)
    with tempfile.TemporaryDirectory() as tmp:
        proc = harness.OperatorProcess(cluster.kubeconfig, Path(tmp) / "operator.log",
                                       (ns,)).start()
        try:
            for node, deployment in ((realnode.NODE_NAME, "real"), (plane.NODE_NAME, "process")):
                took = sorted(measure(api, ns, deployment, args.runs))
                p90 = took[int(0.9 * (len(took) - 1))]
                print(f"{node}: FlowRun created -> engine Running over {len(took)} runs: "
                      f"p50 {statistics.median(took):.2f}s, p90 {p90:.2f}s, "
                      f"min {took[0]:.2f}s, max {took[-1]:.2f}s; "
                      f"load average {os.getloadavg()[0]:.1f}")
        finally:
            proc.stop()
            api.close()
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    main()
