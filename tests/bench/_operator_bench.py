"""Shared set-up of the operator benchmarks (tests/bench/operator_*.py).

Role: start (or reuse) the local plane, make a namespace for flow-run pods, run the
operator as a real subprocess watching it, and watch Jobs / FlowRuns as they appear,
time-stamping each on arrival (time.perf_counter). Used only by the benchmark scripts.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

# The benchmarks are plain scripts (sys.path[0] is tests/bench/); the operator harness they
# share with the operator tests is a test helper in tests/, where pytest finds it through its
# `pythonpath` setting. Adding that one directory here spares callers a PYTHONPATH.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import operator_harness as harness  # noqa: E402 (needs the path above)
from flowpod import contract  # noqa: E402
from flowpod_devcluster import plane  # noqa: E402

__all__ = ["Bench", "bench_env", "async_client", "watch"]

# Pods of "parked" runs match no node: the scheduler keeps them Pending, so a benchmark of
# the operator's own latency is not also a benchmark of 1,000 Python processes starting.
PARKED = {"nodeSelector": {"flowpod.io/benchmark": "parked"}}


class Bench:
    def __init__(self, cluster: plane.Cluster, namespace: str,
                 operator: harness.OperatorProcess) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.operator = operator
        self.api = harness.Api(cluster)


@contextmanager
def bench_env(stem: str, *operator_args: str) -> Iterator[Bench]:
    # The same switch as the tests' (tests/conftest.py): a benchmark can get a plane of its own.
    state_dir = Path(os.environ.get("FLOWPOD_CLUSTER_DIR", plane.REPO_ROOT / ".cluster")).resolve()
    cluster = plane.load(state_dir)
    if cluster is None or not cluster.is_ready():
        cluster = plane.up(state_dir)
    harness.apply_crds(cluster)
    namespace = f"bench-{stem}-{uuid.uuid4().hex[:5]}"
    harness.prepare_namespace(cluster, namespace)
    log = cluster.state_dir / "logs" / f"operator-{namespace}.log"
    operator = harness.OperatorProcess(cluster.kubeconfig, log, (namespace,),
                                       ("--log-level", "WARNING", *operator_args)).start()
    bench = Bench(cluster, namespace, operator)
    try:
        yield bench
    finally:
        operator.stop()
        bench.api.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        print(f"(operator log: {log})")


def async_client(cluster: plane.Cluster, connections: int = 64) -> httpx.AsyncClient:
    pki = cluster.pki
    context = ssl.create_default_context(cafile=pki["ca.crt"])
    context.load_cert_chain(pki["admin.crt"], pki["admin.key"])
    return httpx.AsyncClient(base_url=cluster.api_url, verify=context, timeout=60,
                             limits=httpx.Limits(max_connections=connections))


async def watch(client: httpx.AsyncClient, path: str, seen: dict[str, float],
                changed: asyncio.Event, *, key: str = "name",
                ready: Any = None) -> None:
    """Record the arrival time of each object (by `key` = name or flow-run label) whose
    watch event satisfies `ready(object)` (default: any), until cancelled. The API server
    ends a watch after its request timeout, and a connection can break: then list again
    (what the listing shows counts as arrived then) and watch on from there."""

    def note(obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(contract.LABEL_FLOW_RUN) \
            if key == "label" else meta.get("name")
        if name and name not in seen and (ready is None or ready(obj)):
            seen[name] = time.perf_counter()
            changed.set()

    while True:
        listing = (await client.get(path)).json()
        for obj in listing.get("items", []):
            note(obj)
        params = {"watch": "1", "resourceVersion": listing["metadata"]["resourceVersion"],
                  "allowWatchBookmarks": "false"}
        try:
            async with client.stream("GET", path, params=params, timeout=None) as response:
                async for line in response.aiter_lines():
                    event = json.loads(line) if line else {}
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Gone: list again
                    if event.get("object"):
                        note(event["object"])
        except httpx.HTTPError:
            pass  # the watch broke off: list and watch again


def flowrun_body(name: str, deployment: str) -> dict[str, Any]:
    return {"apiVersion": contract.API_VERSION, "kind": contract.KIND_FLOW_RUN,
            "metadata": {"name": name}, "spec": {"deploymentName": deployment}}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def repo_path(*parts: str) -> Path:
    return plane.REPO_ROOT.joinpath(*parts)
