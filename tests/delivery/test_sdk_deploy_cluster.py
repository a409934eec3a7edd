"""flow.deploy() against the real local control plane: server-side apply from Python.

Role: the SDK creates the Deployment through a kubeconfig, a second identical call is
"unchanged", a changed option is "configured", and `flowpod deploy` with the same flags
finds nothing to change (one builder, one field manager). Called by pytest with the
`cluster` and `namespace` fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from delivery import _operating
from delivery.test_cli_cluster import _flowpod
from flowpod import engine

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = "examples/retries/flow.py:flaky_pipeline"


def test_flow_deploy_creates_then_leaves_the_deployment_unchanged(
        cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _operating.setup_namespace(cluster, namespace)
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    pipeline = engine.load_flow_from_entrypoint(ENTRYPOINT)
    options = {"image": "flowpod/engine:dev", "namespace": namespace, "interval": 3600,
               "kubeconfig": str(cluster.kubeconfig)}
    assert pipeline.deploy("retries", **options) == "created"
    assert pipeline.deploy("retries", **options) == "unchanged"
    stored = json.loads(cluster.kubectl("get", "fdeploy", "retries", "-n", namespace,
                                        "-o", "json").stdout)
    wanted = pipeline.to_deployment("retries", image="flowpod/engine:dev",
                                    namespace=namespace, interval=3600)
    # The API server adds the CRD's defaults; every field the SDK wrote is stored as written.
    for key in ("entrypoint", "image", "parameterSchema"):
        assert stored["spec"][key] == wanted["spec"][key], key
    assert [s["interval"] for s in stored["spec"]["schedules"]] == [3600]
    assert stored["spec"]["entrypoint"] == ENTRYPOINT

    cli = _flowpod(cluster, "deploy", ENTRYPOINT, "--name", "retries", "--image",
                   "flowpod/engine:dev", "--interval", "3600", "-n", namespace)
    assert cli.stdout.strip() == "deployment.flowpod.io/retries unchanged", cli.stderr

    async def changed() -> str:
        return await pipeline.adeploy("retries", retries=2, **options)

    assert anyio.run(changed) == "configured"


def test_flow_deploy_to_a_missing_namespace_names_it(cluster, namespace: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from flowpod_kube.errors import KubeError

    _operating.setup_namespace(cluster, namespace)
    monkeypatch.chdir(REPO)
    pipeline = engine.load_flow_from_entrypoint(ENTRYPOINT)
    with pytest.raises(KubeError, match="no-such-namespace"):
        pipeline.deploy("retries", image="flowpod/engine:dev", namespace="no-such-namespace",
                        kubeconfig=str(cluster.kubeconfig))
