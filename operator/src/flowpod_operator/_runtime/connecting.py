"""Where the API server is and how to authenticate: one configuration for both clients.

Role: load a kubernetes-asyncio Configuration from `--kubeconfig` (or, without it, the
in-cluster service account, falling back to $KUBECONFIG / ~/.kube/config outside a
cluster), and express the same credentials as a kopf ConnectionInfo, so kopf's watches and
our own calls can never talk to different clusters. Callers: flowpod_operator.running
(configuration) and _wiring (kopf's login handler).
"""

from __future__ import annotations

import os
from pathlib import Path

import kopf
from kubernetes_asyncio import client, config

__all__ = ["load_configuration", "connection_info"]


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(
        config.incluster_config.SERVICE_TOKEN_FILENAME).exists()


async def load_configuration(kubeconfig: str | None = None,
                             context: str | None = None) -> client.Configuration:
    """A client Configuration for the given kubeconfig, else in-cluster, else the default
    kubeconfig ($KUBECONFIG or ~/.kube/config). Raises ValueError with the fix if none."""
    cfg = client.Configuration()
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise ValueError(f"--kubeconfig {kubeconfig}: no such file; pass the path of a "
                             "kubeconfig, or omit it to use the in-cluster service account")
        await config.load_kube_config(config_file=str(path), context=context,
                                      client_configuration=cfg, persist_config=False)
    elif _in_cluster():
        config.load_incluster_config(client_configuration=cfg)
    else:
        default = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(
            Path("~/.kube/config").expanduser())
        if not Path(default).is_file():
            raise ValueError("no cluster to connect to: not running in a pod and no kubeconfig "
                             "found; pass --kubeconfig PATH")
        await config.load_kube_config(config_file=default, context=context,
                                      client_configuration=cfg, persist_config=False)
    # Hundreds of runs start at once in a burst; keep enough connections for the workers.
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, 128)
    return cfg


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
