"""A minimal, retrying HTTP client for one FlowRun, used from inside its pod.

Role: the transport half of the in-pod Kubernetes reporter. It knows how to reach the API
server (in-cluster service-account config, or explicit settings for tests), how to GET the
FlowRun (and its Deployment, for the default parameters), PATCH its status subresource and
watch it for its next change (a paused run waits on that), how to create another FlowRun in
its namespace and watch one (runs a flow starts, flowpod.deployment_runs), and how to ride
out a short API outage (retries with capped exponential backoff on connection errors, 429
and 5xx). It makes no decisions about states: flowpod.engine._kubereporter does. Callers:
flowpod.engine._kubereporter, flowpod.engine._in_pod, flowpod.deployment_runs, tests
(through an httpx transport, e.g. httpx.MockTransport).

httpx only: the engine image must not depend on kubernetes clients, kopf or a kubeconfig
loader (import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import anyio
import httpx

from flowpod import contract
from flowpod.contract import SERVICE_ACCOUNT_DIR

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "Connection",
    "RetryPolicy",
    "KubeApiError",
    "Conflict",
    "NotFound",
    "FlowRunClient",
]

_RBAC_HINT = ("the pod's ServiceAccount needs get/watch/patch/create on flowruns, patch on "
              "flowruns/status and get on deployments.flowpod.io in this namespace "
              "(examples/flow-run-rbac.yaml)")

# Named in the API server's message when an admission policy (not RBAC) denied a request.
_ADMISSION_POLICY = "ValidatingAdmissionPolicy"


class KubeApiError(Exception):
    """The API server answered with an error we do not retry."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Conflict(KubeApiError):
    """409: the resourceVersion precondition failed; re-read and re-decide."""


class NotFound(KubeApiError):
    """404: the FlowRun (or the CRD) does not exist."""


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate to it.

    `token` is a callable so a projected service-account token, which the kubelet rotates
    in place, is re-read for every request instead of going stale after an hour.
    """

    base_url: str
    token: Callable[[], str | None]
    verify: ssl.SSLContext | bool = True

    @classmethod
    def explicit(cls, base_url: str, token: str | None = None,
                 verify: ssl.SSLContext | bool = True) -> "Connection":
        return cls(base_url.rstrip("/"), lambda: token, verify)

    @classmethod
    def in_cluster(cls, env: Mapping[str, str] | None = None,
                   sa_dir: Path = SERVICE_ACCOUNT_DIR) -> "Connection":
        """The pod's own service account, as every in-cluster Kubernetes client does it."""
        env = os.environ if env is None else env
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise RuntimeError("Not running in a cluster: KUBERNETES_SERVICE_HOST and "
                               "KUBERNETES_SERVICE_PORT are not set")
        token_file, ca_file = sa_dir / "token", sa_dir / "ca.crt"
        if not token_file.is_file() or not ca_file.is_file():
            raise RuntimeError(f"No service-account credentials in {sa_dir}: the pod needs "
                               f"automountServiceAccountToken (the default)")
        host = f"[{host}]" if ":" in host else host  # IPv6 service address
        context = ssl.create_default_context(cafile=str(ca_file))
        return cls(f"https://{host}:{port}", lambda: token_file.read_text().strip(), context)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient failures. `deadline` bounds one call's total retrying, so a
    short outage (an API server restart) is ridden out and a long one still ends."""

    initial: float = 0.2
    maximum: float = 5.0
    deadline: float = 120.0
    timeout: float = 10.0  # one HTTP request

    def delays(self) -> "list[float]":
        out, delay, total = [], self.initial, 0.0
        while total + delay <= self.deadline:
            out.append(delay)
            total += delay
            delay = min(delay * 2, self.maximum)
        return out


def _is_transient(status: int) -> bool:
    return status == 429 or status >= 500


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("message") or body)[:2000] if isinstance(body, dict) else str(body)


# A watch holds one of the client's connections (httpx allows 100) for as long as it lasts.
# At most this many at once, so the run's own status writes, creates and reads always find
# a free connection however many runs a flow waits for; a run waiting for a watch slot is
# seen once a slot frees (the watch then starts from the version it last saw).
MAX_WATCHES = 64


class FlowRunClient:
    """GET and status-PATCH of one FlowRun (namespace/name), with retries.

    The httpx client is created lazily inside the running event loop (and again if a later
    call runs in another loop), because an AsyncClient's connection pool belongs to a loop.
    """

    def __init__(self, connection: Connection, namespace: str, name: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 retry: RetryPolicy = RetryPolicy(),
                 asleep: Callable[[float], Awaitable[Any]] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.connection = connection
        self.namespace = namespace
        self.name = name
        self.retry = retry
        self._transport = transport
        self._asleep = asleep or anyio.sleep
        self._log = log or (lambda message: None)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: object | None = None
        self._watch_slots: anyio.CapacityLimiter | None = None
        self.path = contract.flowrun_path(namespace, name)

    def _http(self) -> httpx.AsyncClient:
        try:
            loop: object | None = asyncio.get_running_loop()
        except RuntimeError:  # another anyio backend (trio): one loop per process anyway
            loop = None
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(
                base_url=self.connection.base_url, verify=self.connection.verify,
                transport=self._transport, timeout=self.retry.timeout)
            self._client_loop = loop
            self._watch_slots = anyio.CapacityLimiter(MAX_WATCHES)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def get(self, *, deadline: float | None = None) -> dict[str, Any]:
        """The FlowRun object. `deadline` (seconds) overrides the retry policy's."""
        return await self._request("GET", self.path, deadline=deadline)

    async def get_deployment(self, name: str) -> dict[str, Any]:
        """The run's flowpod Deployment (in the FlowRun's namespace), for its default
        parameters. Raises NotFound when it does not exist."""
        return await self._request("GET", contract.deployment_path(self.namespace, name),
                                   where=f"Deployment {self.namespace}/{name}")

    async def patch_status(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of the status subresource; returns the updated FlowRun.

        Raises Conflict when `body`'s metadata.resourceVersion is stale.
        """
        return await self._request("PATCH", f"{self.path}/status", json=dict(body),
                                   headers={"Content-Type": contract.MERGE_PATCH})

    async def patch_status_json(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON Patch of the status subresource (keeps nulls inside values)."""
        return await self._request("PATCH", f"{self.path}/status", json=operations,
                                   headers={"Content-Type": contract.JSON_PATCH})

    async def create_flowrun(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a FlowRun into this namespace; Conflict (409) when its name is taken."""
        name = (body.get("metadata") or {}).get("name") or "(generated name)"
        return await self._request("POST", contract.flowrun_path(self.namespace),
                                   json=dict(body), where=f"FlowRun {self.namespace}/{name}")

    async def get_flowrun(self, name: str) -> dict[str, Any]:
        """Another FlowRun of this namespace; NotFound when it does not exist."""
        return await self._request("GET", contract.flowrun_path(self.namespace, name),
                                   where=f"FlowRun {self.namespace}/{name}")

    async def watch_flowrun(self, name: str, resource_version: str,
                            timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        """The watch events ({type, object}) of one FlowRun after `resource_version`, until
        the server ends the watch (at the latest after `timeout_seconds`). An expired
        resourceVersion arrives as an ERROR event (code 410), as the API server sends it."""
        params = {"watch": "1", "fieldSelector": f"metadata.name={name}",
                  "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        headers = {"Accept": "application/json"}
        token = self.connection.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # The server holds the watch open for timeout_seconds; a read that waits longer
        # than that (plus slack) means the connection is gone.
        timeout = httpx.Timeout(self.retry.timeout, read=timeout_seconds + self.retry.timeout)
        http = self._http()
        slots, borrower = self._watch_slots, object()
        assert slots is not None  # made with the client
        # On behalf of a token, not the task: a generator may be closed from another task.
        await slots.acquire_on_behalf_of(borrower)
        try:
            async with http.stream("GET", contract.flowrun_path(self.namespace),
                                   params=params, headers=headers,
                                   timeout=timeout) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._error(response, f"FlowRun {self.namespace}/{name}")
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        finally:
            slots.release_on_behalf_of(borrower)

    async def next_change(self, resource_version: str | None,
                          timeout: float) -> dict[str, Any] | None:
        """This run's FlowRun as changed after `resource_version`: one watch that ends at the
        first event, or None when `timeout` seconds (whole, at least 1) pass without one. No
        retries: the caller re-reads and watches again. Raises KubeApiError (410 when the
        version is too old) and httpx.HTTPError."""
        events = self.watch_flowrun(self.name, resource_version or "", max(int(timeout), 1))
        try:
            async for event in events:
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeApiError(int(status.get("code") or 500),
                                       str(status.get("message") or status))
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    return event.get("object")
        finally:
            await events.aclose()
        return None

    async def _request(self, method: str, path: str, *, deadline: float | None = None,
                       where: str | None = None, **kwargs: Any) -> Any:
        policy = self.retry if deadline is None else RetryPolicy(
            self.retry.initial, self.retry.maximum, deadline, min(self.retry.timeout, deadline))
        delays = iter(policy.delays())
        started = time.monotonic()
        while True:
            try:
                response = await self._send(method, path, **kwargs)
            except httpx.TransportError as exc:  # connect refused/reset, timeouts
                failure = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return response.json()
                if not _is_transient(response.status_code):
                    raise self._error(response, where)
                failure = f"HTTP {response.status_code}: {_error_message(response)}"
            delay = next(delays, None)
            if delay is None:
                raise KubeApiError(0, f"{method} {path} kept failing for "
                                      f"{time.monotonic() - started:.0f}s; last: {failure}")
            self._log(f"{method} {path} failed ({failure}); retrying in {delay:.1f}s")
            await self._asleep(delay)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        token = self.connection.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self._http().request(method, path, headers=headers, **kwargs)

    def _error(self, response: httpx.Response, where: str | None = None) -> KubeApiError:
        status, message = response.status_code, _error_message(response)
        where = where or f"FlowRun {self.namespace}/{self.name}"
        if status == 409:
            return Conflict(status, message)
        if status == 404:
            return NotFound(status, f"{where} not found: {message}")
        if status == 403 and _ADMISSION_POLICY in message:
            # Allowed by RBAC, refused by a rule on the request (per-run identity): the
            # policy's own message says why; more permissions would not help.
            return KubeApiError(status, f"{where}: refused ({message})")
        if status in (401, 403):
            return KubeApiError(status, f"{where}: access denied ({message}); {_RBAC_HINT}")
        return KubeApiError(status, f"{where}: {message}")
