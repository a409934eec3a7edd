"""Find and read the Kubernetes client configuration the way kubectl does, for the CLI.

Role: turns `--kubeconfig`, `--context`, `--namespace`, the KUBECONFIG variable, ~/.kube/config
or the in-cluster service account into one `ApiConfig` (server URL, TLS context, bearer token,
namespace). Supports what kubeconfigs carry in practice: embedded or file certificates, tokens
and token files, insecure-skip-tls-verify, and exec credential plugins (EKS, GKE, AKS). Caller:
flowpod_operator.cli._client (through `load`); tests call `load` with explicit env and home.

Kept small and separate from the engine's in-pod client on purpose: the engine image must not
carry kubeconfig parsing, and the CLI must work where the operator extra is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from flowpod.contract import SERVICE_ACCOUNT_DIR
from flowpod_operator.cli import _errors

__all__ = ["ApiConfig", "Target", "load", "SERVICE_ACCOUNT_DIR"]

_NO_CONFIG_HINT = ("pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config "
                   "(the local plane writes .cluster/kubeconfig: `make cluster-up`)")


@dataclass(frozen=True)
class Target:
    """What the user asked for on the command line (all optional, like kubectl's flags)."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class ApiConfig:
    """How to reach one API server: URL, TLS, credentials and the default namespace."""

    server: str
    verify: ssl.SSLContext | bool
    token: Callable[[], str | None]
    namespace: str
    source: str  # for error messages: which file and context (or in-cluster) this came from


def load(target: Target, *, env: Mapping[str, str] | None = None,
         home: Path | None = None, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiConfig:
    """Resolve ``target`` into an ApiConfig, or raise CliError saying what to fix."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    files = _kubeconfig_files(target, env, home)
    if files:
        return _from_kubeconfig(files, target, env)
    if env.get("KUBERNETES_SERVICE_HOST") and (sa_dir / "token").is_file():
        return _in_cluster(target, env, sa_dir)
    raise _errors.CliError("no Kubernetes configuration found", _NO_CONFIG_HINT)


def _kubeconfig_files(target: Target, env: Mapping[str, str], home: Path) -> list[Path]:
    if target.kubeconfig is not None:
        if not target.kubeconfig.is_file():
            raise _errors.CliError(f"kubeconfig '{target.kubeconfig}' does not exist",
                                   "check the --kubeconfig path")
        return [target.kubeconfig]
    if env.get("KUBECONFIG"):
        # kubectl skips missing entries of the list rather than failing.
        return [Path(p) for p in env["KUBECONFIG"].split(os.pathsep) if p and Path(p).is_file()]
    default = home / ".kube" / "config"
    return [default] if default.is_file() else []


def _merged(files: list[Path]) -> dict[str, Any]:
    """kubectl's merge: the first file to define a name (or current-context) wins."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {},
                              "current-context": None}
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise _errors.CliError(f"kubeconfig '{path}' cannot be read: {exc}",
                                   "fix or remove that file") from None
        for section, field in (("clusters", "cluster"), ("users", "user"),
                               ("contexts", "context")):
            for entry in doc.get(section) or []:
                # Remember the file, because relative paths inside resolve against it.
                merged[section].setdefault(entry.get("name"),
                                           (dict(entry.get(field) or {}), path.parent))
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
    return merged


def _from_kubeconfig(files: list[Path], target: Target, env: Mapping[str, str]) -> ApiConfig:
    config = _merged(files)
    where = os.pathsep.join(map(str, files))
    name = target.context or config["current-context"]
    if not name:
        raise _errors.CliError(f"kubeconfig '{where}' has no current-context",
                               "pass --context NAME or run `kubectl config use-context NAME`")
    if name not in config["contexts"]:
        known = ", ".join(sorted(config["contexts"])) or "none"
        raise _errors.CliError(f"context '{name}' is not in kubeconfig '{where}'",
                               f"use one of: {known}")
    context, _ = config["contexts"][name]
    cluster, cluster_dir = config["clusters"].get(context.get("cluster"), (None, None))
    if cluster is None or not cluster.get("server"):
        raise _errors.CliError(f"context '{name}' names cluster '{context.get('cluster')}', "
                               f"which kubeconfig '{where}' does not define (or has no server)",
                               "fix the kubeconfig's clusters section")
    user, user_dir = config["users"].get(context.get("user"), ({}, cluster_dir))
    cert, token = _credentials(user, user_dir, env)
    return ApiConfig(
        server=cluster["server"].rstrip("/"),
        verify=_tls(cluster, cluster_dir, cert),
        token=token,
        namespace=target.namespace or context.get("namespace") or "default",
        source=f"kubeconfig '{where}', context '{name}'")


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(os.path.expanduser(entry[key]))
        path = path if path.is_absolute() else base / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise _errors.CliError(f"kubeconfig refers to {key} '{path}': {exc.strerror}",
                                   "fix the path in the kubeconfig") from None
    return None


def _credentials(user: Mapping[str, Any], base: Path, env: Mapping[str, str]
                 ) -> tuple[tuple[bytes, bytes] | None, Callable[[], str | None]]:
    """(client key pair, bearer token source) of a kubeconfig user; an exec plugin runs once."""
    cert = _data_or_file(user, "client-certificate", base)
    key = _data_or_file(user, "client-key", base)
    if user.get("token"):
        token = str(user["token"])
        return _pair(cert, key), lambda: token
    if user.get("tokenFile"):
        path = Path(user["tokenFile"])
        path = path if path.is_absolute() else base / path
        return _pair(cert, key), lambda: path.read_text().strip()  # rotated in place: re-read
    if cert is None and "exec" in user:
        status = _exec_credential(user["exec"], env)
        exec_token = status.get("token")
        exec_cert = (status.get("clientCertificateData", "").encode(),
                     status.get("clientKeyData", "").encode())
        return _pair(*exec_cert), lambda: exec_token
    return _pair(cert, key), lambda: None


def _pair(cert: bytes | None, key: bytes | None) -> tuple[bytes, bytes] | None:
    return (cert, key) if cert and key else None


def _tls(cluster: Mapping[str, Any], base: Path,
         cert: tuple[bytes, bytes] | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca = _data_or_file(cluster, "certificate-authority", base)
    if ca is not None:
        context.load_verify_locations(cadata=ca.decode())
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cluster.get("tls-server-name"):
        # httpx has no per-request SNI override; kubectl's tls-server-name is rare enough to
        # refuse clearly rather than half-support.
        raise _errors.CliError("kubeconfig sets tls-server-name, which flowpod does not support",
                               "use a server URL whose host matches the certificate")
    if cert is not None:
        # ssl can only load a key pair from files: write them to a private, short-lived dir.
        with tempfile.TemporaryDirectory(prefix="flowpod-") as tmp:
            cert_path, key_path = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            for path, data in ((cert_path, cert[0]), (key_path, cert[1])):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(cert_path, key_path)
    return context


def _exec_credential(spec: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Run a client-go exec credential plugin once and return its ExecCredential status."""
    command = spec.get("command")
    if not command:
        raise _errors.CliError("kubeconfig exec credential has no command",
                               "fix the user's exec section")
    info = {"apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
            "kind": "ExecCredential", "spec": {"interactive": False}}
    child_env = {**env, **{e["name"]: e["value"] for e in spec.get("env") or []},
                 "KUBERNETES_EXEC_INFO": json.dumps(info)}
    try:
        done = subprocess.run([command, *(spec.get("args") or [])], env=child_env,
                              capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        hint = spec.get("installHint") or f"install '{command}' or fix the kubeconfig"
        raise _errors.CliError(f"credential plugin '{command}' was not found", hint) from None
    if done.returncode != 0:
        raise _errors.CliError(f"credential plugin '{command}' failed: {done.stderr.strip()}",
                               "log in again with your cloud provider's CLI")
    try:
        return json.loads(done.stdout).get("status") or {}
    except ValueError:
        raise _errors.CliError(f"credential plugin '{command}' printed no ExecCredential JSON",
                               "check the plugin's version") from None


def _in_cluster(target: Target, env: Mapping[str, str], sa_dir: Path) -> ApiConfig:
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    context = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
    namespace_file = sa_dir / "namespace"
    namespace = target.namespace or (namespace_file.read_text().strip()
                                     if namespace_file.is_file() else "default")
    token_file = sa_dir / "token"
    return ApiConfig(server=f"https://{host}:{port}", verify=context,
                     token=lambda: token_file.read_text().strip(), namespace=namespace,
                     source="in-cluster service account")
