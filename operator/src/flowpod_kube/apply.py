"""Server-side apply of a Deployment from outside the cluster, and what it did.

Role: `apply_deployment` connects through the kubeconfig (flowpod_kube.connecting, as the
CLI does), applies the manifest with server-side apply under the CLI's field manager (so
`flowpod deploy` and `flow.deploy()` own the same fields), and says whether the Deployment
was created, configured or unchanged (`outcome`, shared with `flowpod deploy`). Failures are
errors of the shared vocabulary (flowpod_kube.errors). This module is the one the engine
package may reach, on use, from flowpod.deploying (see the import contracts in
pyproject.toml). Callers: flowpod.deploying, flowpod_operator.cli._deploying.
"""

from __future__ import annotations

from typing import Any, Mapping

from kubernetes_asyncio import client

from flowpod import contract
from flowpod_kube import errors
from flowpod_kube.calls import guard
from flowpod_kube.connecting import Target, api_client, connect

__all__ = ["apply_deployment", "outcome", "FIELD_MANAGER", "APPLY_PATCH"]

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "flowpod-cli"
# Connect within 30 s; an apply answers at once.
_TIMEOUT = (30, 60)


def outcome(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """"created", "unchanged" (same generation: the spec did not change) or "configured"."""
    if before is None:
        return "created"
    if before["metadata"].get("generation") == after["metadata"].get("generation"):
        return "unchanged"
    return "configured"


async def apply_deployment(manifest: dict[str, Any], *, kubeconfig: str | None = None,
                           context: str | None = None) -> str:
    """Apply ``manifest`` in its namespace (default: the kubeconfig context's); returns
    `outcome`. The manifest is not changed."""
    namespace = manifest["metadata"].get("namespace")
    connection = await connect(Target(kubeconfig, context, namespace))
    ns, name = namespace or connection.namespace, manifest["metadata"]["name"]
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": ns}}
    ref = errors.Ref("Deployment", name, ns, f"check that namespace '{ns}' exists "
                     f"(`kubectl get namespace {ns}`) and the CRDs are installed")
    args = (contract.GROUP, contract.VERSION, ns, contract.DEPLOYMENTS, name)
    async with api_client(connection, user_agent=FIELD_MANAGER) as api:
        custom = client.CustomObjectsApi(api)
        try:
            before = await guard(connection, ref, custom.get_namespaced_custom_object(
                *args, _request_timeout=_TIMEOUT))
        except errors.KubeError as error:
            if error.status != 404 or isinstance(error, errors.MissingCrdError):
                raise
            before = None
        after = await guard(connection, ref, custom.patch_namespaced_custom_object(
            *args, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH,
            _request_timeout=_TIMEOUT))
    return outcome(before, after)
