"""The operator's connection: one configuration for kopf's watches and our own calls.

Role: load the kubernetes-asyncio Configuration through flowpod_kube.connecting
(--kubeconfig, else the in-cluster service account, else $KUBECONFIG / ~/.kube/config),
sized for the operator's workers, and express the same credentials as a kopf
ConnectionInfo, so kopf's watches and our own calls can never talk to different clusters.
Callers: flowpod_operator.running (configuration) and ._runtime.wiring (kopf's login).
"""

from __future__ import annotations

import kopf
from kubernetes_asyncio import client

from flowpod_kube.connecting import Connection, Target, connect

__all__ = ["load_connection", "connection_info"]


async def load_connection(kubeconfig: str | None = None,
                          context: str | None = None) -> Connection:
    """The operator's Connection (a pod prefers its service account to any kubeconfig
    lying around). Raises flowpod_kube.errors.ConfigError with the fix."""
    connection = await connect(Target(kubeconfig, context), in_cluster_first=True)
    cfg = connection.configuration
    # Hundreds of runs start at once in a burst; keep enough connections for the workers.
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, 128)
    return connection


async def connection_info(cfg: client.Configuration) -> kopf.ConnectionInfo:
    """The same endpoint and credentials for kopf (re-read on each login: tokens rotate)."""
    token = await cfg.get_api_key_with_prefix("BearerToken")
    scheme = None
    if token:
        scheme, _, token = token.partition(" ") if " " in token else ("Bearer", "", token)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token or None,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
    )
