"""One vocabulary for Kubernetes failures, shared by the operator and the CLI.

Role: every way of failing to reach or use the API server becomes a `KubeError` that says
what is wrong, naming the object (`problem`), and what to do about it (`fix`), with the
HTTP status when the API server caused it. `api_error` maps a status code and the
API server's Status body to that wording (missing object, missing CRDs, rejected
credentials, RBAC, conflicts, invalid fields); `unreachable` words a connection failure;
`crds_not_served` the operator's start-up check. Callers: flowpod_kube.connecting
(configuration errors), flowpod_operator._runtime.kubeapi (the operator's calls),
flowpod_operator.cli._client (the CLI's calls, from kubernetes-asyncio's ApiException).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from flowpod import contract

__all__ = ["KubeError", "ConfigError", "ApiError", "MissingCrdError", "Ref", "api_error",
           "unreachable", "crds_not_served", "status_body", "CRD_FIX"]

CRD_FIX = ("install them with `flowpod crds | kubectl apply -f -` "
           "or `helm install flowpod charts/flowpod`")


class KubeError(Exception):
    """A failure said as the problem (naming the object) and, when known, the fix."""

    def __init__(self, problem: str, fix: str | None = None, *,
                 status: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        # Set when the API server caused it, so callers can react (e.g. 400 while a
        # container is still being created) without parsing messages.
        self.status = status

    def __str__(self) -> str:
        return f"{self.problem}; {self.fix}" if self.fix else self.problem


class ConfigError(KubeError):
    """No usable kubeconfig or in-cluster configuration."""


class ApiError(KubeError):
    """The API server answered, and refused (or could not be reached: status None)."""


class MissingCrdError(ApiError):
    """The flowpod CRDs are not installed on this API server."""


@dataclass(frozen=True)
class Ref:
    """The object a request is about, so errors can name it and say how to fix it."""

    kind: str
    name: str | None
    namespace: str | None
    missing_fix: str | None = None

    def describe(self) -> str:
        where = f" in namespace '{self.namespace}'" if self.namespace else ""
        return f"{self.kind} '{self.name}'{where}" if self.name else f"{self.kind}s{where}"


def status_body(raw: bytes | str | None) -> Mapping[str, Any] | None:
    """The API server's Status object from a response body, or None if it is not one."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("kind") == "Status" else None


def api_error(code: int, status: Mapping[str, Any] | None, ref: Ref, *, server: str,
              source: str, text: str = "") -> ApiError:
    """The error for an answer `code` with Status body `status` (None if the body was not
    a Status: then `text` is the raw body) about `ref`, from the API at `server`
    configured by `source`."""
    error = _describe(code, status, ref, server=server, source=source, text=text)
    error.status = code
    return error


def _describe(code: int, status: Mapping[str, Any] | None, ref: Ref, *, server: str,
              source: str, text: str) -> ApiError:
    if status is None:
        if code == 404:
            # A bare "404 page not found" means the URL's resource type is unknown.
            return MissingCrdError(
                f"the cluster does not know {ref.kind}s ({contract.API_VERSION}): the "
                f"flowpod CRDs are not installed ({source})", CRD_FIX)
        return ApiError(f"the API server answered HTTP {code} for {ref.describe()}: "
                        f"{text[:300]}")
    message, reason = status.get("message", ""), status.get("reason", "")
    if code == 404:
        return ApiError(f"{ref.describe()} not found", ref.missing_fix)
    if code == 401:
        return ApiError(f"the API server at {server} rejected the credentials from {source}",
                        "log in again or fix the kubeconfig's user")
    if code == 403:
        return ApiError(f"forbidden: {message}",
                        "ask a cluster admin for RBAC on flowpod.io resources in this "
                        "namespace, or use another --namespace/--context")
    if reason == "AlreadyExists":
        return ApiError(f"{ref.describe()} already exists",
                        "choose another name or delete the existing one")
    if code == 422:
        return ApiError(f"the API server rejected {ref.describe()}: {message}",
                        "fix the field it names and try again")
    return ApiError(f"{ref.describe()}: HTTP {code} {reason}: {message}")


def unreachable(exc: BaseException, *, server: str, source: str) -> ApiError:
    """The error for a request that never got an answer."""
    return ApiError(f"cannot reach the Kubernetes API at {server} ({source}): "
                    f"{exc or type(exc).__name__}",
                    "is the cluster running? For the local plane run `make cluster-up`; "
                    "otherwise check --kubeconfig / --context")


def crds_not_served(missing: list[str]) -> MissingCrdError:
    """The operator's start-up check found these plurals missing from the API group."""
    return MissingCrdError(f"the API server does not serve {sorted(missing)} in "
                           f"{contract.API_VERSION}",
                           "install the CRDs first (kubectl apply -f crds/, or the Helm chart)")
