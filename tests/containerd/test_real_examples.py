"""Every example under examples/ end to end in real engine containers on `flowpod-containerd`.

Role: the same runs as tests/delivery/test_examples.py (same expected final states, same
result checks, the approval resumed and the cancellation cancelled with the CLI), but each
flow-run pod runs the engine image built from engine_image/Dockerfile under containerd and
runc, as UID 10001 with no capabilities and RuntimeDefault seccomp, its flow code being the
examples baked into the image. The example Deployments are applied as shipped plus only the
placement onto this node (podTemplate nodeSelector and toleration). The operator runs as a
subprocess on the host, as in the process-node suite. Called by pytest (marker `containerd`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from delivery import _operating
from delivery.test_examples import (EXAMPLES, EXPECTED, _cancel, _check_final, _docs,
                                   _resume_approval)
from flowpod import contract
from flowpod_devcluster import realnode


def placed(name: str, placement: dict) -> str:
    """The example's manifests with every Deployment's pods placed on the containerd node."""
    docs = []
    for path in sorted((EXAMPLES / name).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == contract.KIND_DEPLOYMENT:
                template = doc["spec"].setdefault("podTemplate", {})
                template.update(placement)
            if doc:
                docs.append(doc)
    return yaml.safe_dump_all(docs)


def _pods_nodes(cluster, namespace: str) -> set[str]:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
    return {p["spec"].get("nodeName", "") for p in pods["items"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_to_its_expected_state_in_real_containers(
        cluster, containerd_node, namespace, on_real_node, name: str, tmp_path: Path) -> None:
    _operating.setup_namespace(cluster, namespace)
    run_name = _docs(name, "flowrun")["metadata"]["name"]
    with _operating.running_operator(cluster, [namespace], tmp_path):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=placed(name, on_real_node))
        if name == "cancellation":
            _operating.wait_state(cluster, namespace, run_name, {"RUNNING"}, timeout=180)
            # Cancelling deletes the pod: see where it runs while it does.
            nodes = _pods_nodes(cluster, namespace)
            _cancel(cluster, namespace, run_name)
        if name == "approval":
            _resume_approval(cluster, namespace, run_name)
        final = _operating.wait_final(cluster, namespace, run_name, timeout=300)
        if name != "cancellation":
            nodes = _pods_nodes(cluster, namespace)
    _check_final(name, final, tmp_path)
    # Every flow-run pod of the example ran on the real node, none on the process node.
    assert nodes == {realnode.NODE_NAME}
