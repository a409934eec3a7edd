"""The CLI's async Kubernetes API client (httpx): requests, watches and log streams.

Role: the one async core every `flowpod` command talks through. It authenticates from an
ApiConfig (flowpod_operator.cli._kubeconfig), and turns every API failure into a CliError that
names the object and the fix (a missing FlowRun, missing CRDs, RBAC, an unreachable cluster).
Callers: flowpod_operator.cli._commands and ._watching. Tests inject an httpx transport
(httpx.MockTransport) instead of a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Generator, Mapping

import httpx

from flowpod import flowruns
from flowpod_operator.cli import _errors
from flowpod_operator.cli._kubeconfig import ApiConfig

__all__ = ["Ref", "Kube", "flowrun_ref", "deployment_ref", "pod_ref", "APPLY_PATCH"]

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "flowpod-cli"
_CRD_FIX = ("install them with `flowpod crds | kubectl apply -f -` "
            "or `helm install flowpod charts/flowpod`")


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


def flowrun_ref(namespace: str | None, name: str | None = None) -> Ref:
    where = f"-n {namespace}" if namespace else "-A"
    return Ref("FlowRun", name, namespace, f"list the runs with `flowpod get {where}`")


def deployment_ref(namespace: str, name: str | None = None) -> Ref:
    return Ref("Deployment", name, namespace,
               f"create it with `flowpod deploy FILE:FLOW --name {name or 'NAME'} --image IMAGE "
               f"-n {namespace}` or list them with `kubectl get fdeploy -n {namespace}`")


def pod_ref(namespace: str, name: str) -> Ref:
    return Ref("Pod", name, namespace, "the run's pod may have been deleted already")


class _Bearer(httpx.Auth):
    """Adds the token per request: token files and exec tokens may change between calls."""

    def __init__(self, config: ApiConfig) -> None:
        self._config = config

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._config.token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


class Kube:
    """An async session with one API server; use as `async with Kube(config) as kube:`."""

    def __init__(self, config: ApiConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.namespace = config.namespace
        # No read timeout: watches and `logs -f` legitimately stay silent for minutes.
        self._http = httpx.AsyncClient(
            base_url=config.server, verify=config.verify, transport=transport,
            auth=_Bearer(config), timeout=httpx.Timeout(30.0, read=None),
            headers={"User-Agent": "flowpod-cli"})

    async def __aenter__(self) -> "Kube":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # --- plain requests ---------------------------------------------------------------------

    async def request(self, method: str, path: str, ref: Ref, *,
                      params: Mapping[str, Any] | None = None, body: Any = None,
                      content_type: str | None = None) -> dict[str, Any]:
        headers = {"Content-Type": content_type} if content_type else {}
        content = json.dumps(body).encode() if body is not None else None
        try:
            response = await self._http.request(method, path, params=params, content=content,
                                                 headers=headers)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response, ref)
        return response.json()

    async def get(self, path: str, ref: Ref, **params: Any) -> dict[str, Any]:
        return await self.request("GET", path, ref, params=params or None)

    async def create(self, path: str, ref: Ref, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, ref, body=body)

    async def merge_patch(self, path: str, ref: Ref, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, ref, body=patch,
                                  content_type=flowruns.MERGE_PATCH)

    async def apply(self, path: str, ref: Ref, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: create or update in one call, owning the fields we set."""
        return await self.request("PATCH", path, ref, body=body, content_type=APPLY_PATCH,
                                  params={"fieldManager": FIELD_MANAGER, "force": "true"})

    # --- streams ----------------------------------------------------------------------------

    async def lines(self, path: str, ref: Ref,
                    params: Mapping[str, Any] | None = None) -> AsyncIterator[str]:
        """The response body line by line, as it arrives (watch events, `logs -f`)."""
        try:
            async with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._error(response, ref)
                async for line in response.aiter_lines():
                    yield line
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    async def watch(self, path: str, ref: Ref, *, resource_version: str | None,
                    field_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) watch events of a collection, from ``resource_version`` on."""
        params: dict[str, Any] = {"watch": "1", "allowWatchBookmarks": "true",
                                  "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            params["resourceVersion"] = resource_version
        if field_selector:
            params["fieldSelector"] = field_selector
        async for line in self.lines(path, ref, params):
            if line.strip():
                event = json.loads(line)
                yield event["type"], event["object"]

    # --- errors -----------------------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> _errors.CliError:
        return _errors.CliError(
            f"cannot reach the Kubernetes API at {self.config.server} "
            f"({self.config.source}): {exc or type(exc).__name__}",
            "is the cluster running? For the local plane run `make cluster-up`; otherwise "
            "check --kubeconfig / --context")

    def _error(self, response: httpx.Response, ref: Ref) -> _errors.CliError:
        error = self._describe_error(response, ref)
        error.http_status = response.status_code
        return error

    def _describe_error(self, response: httpx.Response, ref: Ref) -> _errors.CliError:
        try:
            status = response.json()
        except ValueError:
            status = None
        code = response.status_code
        if not isinstance(status, dict) or status.get("kind") != "Status":
            if code == 404:
                # A bare "404 page not found" means the URL's resource type is unknown.
                return _errors.CliError(
                    f"the cluster does not know {ref.kind}s (flowpod.io/v1alpha1): the flowpod "
                    f"CRDs are not installed ({self.config.source})", _CRD_FIX)
            return _errors.CliError(f"the API server answered HTTP {code} for "
                                    f"{ref.describe()}: {response.text[:300]}")
        message, reason = status.get("message", ""), status.get("reason", "")
        if code == 404:
            return _errors.CliError(f"{ref.describe()} not found", ref.missing_fix)
        if code == 401:
            return _errors.CliError(
                f"the API server at {self.config.server} rejected the credentials from "
                f"{self.config.source}", "log in again or fix the kubeconfig's user")
        if code == 403:
            return _errors.CliError(f"forbidden: {message}",
                                    "ask a cluster admin for RBAC on flowpod.io resources in "
                                    "this namespace, or use another --namespace/--context")
        if reason == "AlreadyExists":
            return _errors.CliError(f"{ref.describe()} already exists",
                                    "choose another name or delete the existing one")
        if code == 422:
            return _errors.CliError(f"the API server rejected {ref.describe()}: {message}",
                                    "fix the field it names and try again")
        return _errors.CliError(f"{ref.describe()}: HTTP {code} {reason}: {message}")
