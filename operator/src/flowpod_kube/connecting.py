"""Where the API server is and how to authenticate, for the operator and the CLI alike.

Role: resolve kubectl-style choices (`--kubeconfig`, `--context`, `--namespace`, then
$KUBECONFIG, ~/.kube/config, the in-cluster service account) into a `Connection`: a
kubernetes-asyncio Configuration loaded by kubernetes_asyncio.config itself, the namespace
to work in (the flag, else the context's, else "default") and a `source` that error
messages name. `api_client` opens the one ApiClient both sides use; `http_settings` gives the same
connection to an httpx client (flowpod.run_deployment from a laptop). Failures are
ConfigErrors that say what to fix. Callers: flowpod_operator._runtime.connecting (the
operator: in-cluster first) and flowpod_operator.cli (kubectl's order).

Where kubectl and the library differ, kubectl wins: the first kubeconfig file of a list to
set current-context decides it (the library takes the last), a tokenFile is re-read before
each request (the library reads it once; projected tokens rotate), and a missing exec
credential plugin is reported with its installHint.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.config import ConfigException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from kubernetes_asyncio.config.kube_config import ConfigNode, KubeConfigLoader, KubeConfigMerger

from flowpod.contract import SERVICE_ACCOUNT_DIR

from flowpod_kube.errors import ConfigError

__all__ = ["Target", "Connection", "connect", "api_client", "http_settings",
           "SERVICE_ACCOUNT_DIR"]

_NO_CONFIG_HINT = ("pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config "
                   "(the local plane writes .cluster/kubeconfig: `make cluster-up`)")
_NO_USER = "flowpod: no user"  # stands in for a context's missing user (not a valid name)
# The library logs a failed exec plugin at ERROR before raising; we raise it worded, so a
# CLI without logging configured must not also print the library's line.
logging.getLogger("kubernetes_asyncio.config").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Target:
    """What the user asked for (all optional, like kubectl's flags)."""

    kubeconfig: Path | str | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class Connection:
    """How to reach one API server, which namespace to use, and where that came from."""

    configuration: client.Configuration
    namespace: str
    source: str  # for error messages: which file and context (or in-cluster)

    @property
    def server(self) -> str:
        return self.configuration.host


async def connect(target: Target = Target(), *, env: Mapping[str, str] | None = None,
                  home: Path | None = None, sa_dir: Path = SERVICE_ACCOUNT_DIR,
                  in_cluster_first: bool = False) -> Connection:
    """Resolve `target`: --kubeconfig, else $KUBECONFIG (every existing file of the list),
    else ~/.kube/config, else the in-cluster service account; `in_cluster_first` (the
    operator, which runs in a pod) tries the service account right after --kubeconfig."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    files = _kubeconfig_files(target, env, home)
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").is_file()
    if target.kubeconfig is None and in_cluster and (in_cluster_first or not files):
        return _in_cluster(target, env, sa_dir)
    if files:
        return await _from_kubeconfig(files, target)
    raise ConfigError("no Kubernetes configuration found", _NO_CONFIG_HINT)


def api_client(connection: Connection, *, user_agent: str) -> client.ApiClient:
    """An ApiClient on `connection` whose writes managedFields name `user_agent`."""
    api = client.ApiClient(configuration=connection.configuration)
    api.user_agent = user_agent
    return api


def http_settings(connection: Connection) -> tuple[str, Callable[[], str | None],
                                                  ssl.SSLContext | bool]:
    """(server URL, bearer token getter, TLS settings) of `connection`, for an httpx client.

    The token getter runs a synchronous refresh hook (a rotated tokenFile) before each
    request; an exec credential plugin's token is the one it gave when loaded.
    """
    config = connection.configuration

    def token() -> str | None:
        hook = config.refresh_api_key_hook
        if hook is not None and not _is_async(hook):
            hook(config)
        value = config.api_key.get("BearerToken") or config.api_key.get("authorization")
        return value.removeprefix("Bearer ").strip() if value else None

    verify: ssl.SSLContext | bool = False
    if config.verify_ssl:
        verify = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
        if config.cert_file:
            verify.load_cert_chain(config.cert_file, config.key_file or None)
    return config.host.rstrip("/"), token, verify


def _is_async(hook: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(hook)


def _kubeconfig_files(target: Target, env: Mapping[str, str], home: Path) -> list[Path]:
    if target.kubeconfig is not None:
        path = Path(target.kubeconfig).expanduser()
        if not path.is_file():
            raise ConfigError(f"kubeconfig '{target.kubeconfig}' does not exist",
                              "check the --kubeconfig path")
        return [path]
    if env.get("KUBECONFIG"):
        # kubectl skips missing entries of the list rather than failing.
        return [Path(p).expanduser() for p in env["KUBECONFIG"].split(os.pathsep)
                if p and Path(p).expanduser().is_file()]
    default = home / ".kube" / "config"
    return [default] if default.is_file() else []


def _plain(node: Any) -> Any:
    return node.value if isinstance(node, ConfigNode) else node


def _read(files: list[Path], where: str) -> tuple[KubeConfigMerger, str | None]:
    """The merged kubeconfig (first file wins per name) and kubectl's current-context."""
    current = None
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"kubeconfig '{path}' cannot be read: {exc}",
                              "fix or remove that file") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"kubeconfig '{path}' cannot be read: not a mapping",
                              "fix or remove that file")
        current = current or doc.get("current-context")
    return KubeConfigMerger(where), current


def _entries(merged: Mapping[str, Any], section: str) -> dict[str, Any]:
    return {(_plain(e) or {}).get("name"): e for e in merged.get(section) or []}


async def _from_kubeconfig(files: list[Path], target: Target) -> Connection:
    where = os.pathsep.join(map(str, files))
    merger, current = _read(files, where)
    merged = merger.config.value if merger.config is not None else {}
    name = target.context or current
    if not name:
        raise ConfigError(f"kubeconfig '{where}' has no current-context",
                          "pass --context NAME or run `kubectl config use-context NAME`")
    contexts = _entries(merged, "contexts")
    if name not in contexts:
        known = ", ".join(sorted(filter(None, contexts))) or "none"
        raise ConfigError(f"context '{name}' is not in kubeconfig '{where}'",
                          f"use one of: {known}")
    context = _plain(contexts[name]).get("context") or {}
    cluster = _plain(_entries(merged, "clusters").get(context.get("cluster"))) or {}
    if not (cluster.get("cluster") or {}).get("server"):
        raise ConfigError(f"context '{name}' names cluster '{context.get('cluster')}', "
                          f"which kubeconfig '{where}' does not define (or has no server)",
                          "fix the kubeconfig's clusters section")
    user = _entries(merged, "users").get(context.get("user"))
    if user is None:
        # kubectl allows a context without a user; the library needs one for https.
        user = {"name": _NO_USER, "user": {}}
        merged.setdefault("users", []).append(user)
        _plain(contexts[name]).setdefault("context", {})["user"] = _NO_USER
    configuration = await _load(merger, name, _plain(user), where)
    _reread_token_file(configuration, user)
    return Connection(configuration,
                      target.namespace or context.get("namespace") or "default",
                      f"kubeconfig '{where}', context '{name}'")


async def _load(merger: KubeConfigMerger, context: str, user: Mapping[str, Any],
                where: str) -> client.Configuration:
    """Let the library load the context; word its failures."""
    configuration = client.Configuration()
    loader = KubeConfigLoader(config_dict=merger.config, config_base_path=None,
                              active_context=context)
    plugin = (user.get("user") or {}).get("exec") or {}
    command = plugin.get("command")
    try:
        await loader.load_and_set(configuration)
    except FileNotFoundError:
        if not command:
            raise
        hint = plugin.get("installHint") or f"install '{command}' or fix the kubeconfig"
        raise ConfigError(f"credential plugin '{command}' was not found", hint) from None
    except ConfigException as exc:
        if command and str(exc).startswith("exec:"):
            raise ConfigError(f"credential plugin '{command}' failed: {exc}",
                              "log in again with your cloud provider's CLI") from None
        raise ConfigError(f"kubeconfig '{where}', context '{context}' cannot be used: {exc}",
                          "fix the kubeconfig") from None
    return configuration


def _reread_token_file(configuration: client.Configuration, user: Any) -> None:
    """Read a user's tokenFile again before each request (it may be rotated in place)."""
    fields = (_plain(user) or {}).get("user") or {}
    if fields.get("token") or not fields.get("tokenFile"):
        return
    path = Path(fields["tokenFile"]).expanduser()
    if not path.is_absolute() and isinstance(user, ConfigNode) and user.path:
        path = Path(user.path).resolve().parent / path

    def refresh(config: client.Configuration) -> None:
        config.api_key["BearerToken"] = "Bearer " + path.read_text().strip()

    configuration.refresh_api_key_hook = refresh


def _in_cluster(target: Target, env: Mapping[str, str], sa_dir: Path) -> Connection:
    configuration = client.Configuration()
    loader = InClusterConfigLoader(token_filename=str(sa_dir / "token"),
                                   cert_filename=str(sa_dir / "ca.crt"),
                                   environ={"KUBERNETES_SERVICE_PORT": "443", **env})
    try:
        loader.load_and_set(configuration)
    except ConfigException as exc:
        raise ConfigError(f"the in-cluster service account cannot be used: {exc}",
                          "check the pod's service account mount") from None
    namespace_file = sa_dir / "namespace"
    namespace = target.namespace or (namespace_file.read_text().strip()
                                     if namespace_file.is_file() else "default")
    return Connection(configuration, namespace, "in-cluster service account")
