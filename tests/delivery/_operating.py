"""The kubectl path's set-up for the delivery suites, on the operator engineer's harness.

Role: thin wrappers over tests/operator_harness.py (imported, not copied): CRDs applied, the
flow-run ServiceAccount + Role from examples/flow-run-rbac.yaml (the file README's kubectl path
uses, so it is exercised for real), the operator as a subprocess watching only the given
namespaces (so suites never take each other's runs), and waiting for a FlowRun's state.
Callers: tests/delivery/test_examples.py and test_cli_cluster.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import operator_harness as harness
from flowpod_devcluster import plane

__all__ = ["running_operator", "wait_final", "wait_state", "setup_namespace", "RBAC"]

RBAC = harness.FLOW_RUN_RBAC


def setup_namespace(cluster: plane.Cluster, namespace: str) -> None:
    harness.apply_crds(cluster)
    harness.prepare_namespace(cluster, namespace)


@contextlib.contextmanager
def running_operator(cluster: plane.Cluster, namespaces: list[str],
                     log_dir: Path) -> Iterator[harness.OperatorProcess]:
    proc = harness.OperatorProcess(cluster.kubeconfig, log_dir / "operator.log",
                                   tuple(namespaces)).start()
    try:
        yield proc
    finally:
        proc.stop()


def wait_state(cluster: plane.Cluster, namespace: str, name: str, types: set[str],
               timeout: float = 90) -> dict[str, Any]:
    """The FlowRun once its state type is one of ``types`` (AssertionError on timeout)."""
    api = harness.Api(cluster)
    try:
        return api.wait_flowrun(namespace, name, lambda f: harness.state_type(f) in types,
                                what=f"a state in {sorted(types)}", timeout=timeout)
    finally:
        api.close()


def wait_final(cluster: plane.Cluster, namespace: str, name: str,
               timeout: float = 90) -> dict[str, Any]:
    return wait_state(cluster, namespace, name, harness.FINAL, timeout)
