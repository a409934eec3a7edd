"""A small async client for the Kubernetes API, authenticated with the node's client certificate.

Used by every part of the test node (registering, syncing, podworkers, volumes, environment).
It speaks plain JSON over httpx; errors become ApiError carrying the Status code and reason so
callers can tell a conflict (409) or an expired watch (410) from a real failure.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["Api", "ApiError", "Credentials", "load_kubeconfig"]

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server, an ERROR event in a watch, or (status 0) no
    answer at all."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, status: int, body: bytes | dict) -> ApiError:
        data: Any = body
        if isinstance(body, bytes):
            try:
                data = json.loads(body)
            except ValueError:
                data = {"message": body.decode(errors="replace")[:500]}
        if not isinstance(data, dict):
            data = {}
        return cls(int(data.get("code") or status), str(data.get("reason") or ""),
                   str(data.get("message") or ""))


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def _material(entry: dict, data_key: str, file_key: str, out: Path) -> Path:
    if entry.get(data_key):
        out.write_bytes(base64.b64decode(entry[data_key]))
        out.chmod(0o600)
        return out
    if entry.get(file_key):
        return Path(entry[file_key])
    raise ValueError(f"kubeconfig lacks {data_key} / {file_key}; the node needs a client cert")


def load_kubeconfig(path: Path, workdir: Path) -> Credentials:
    """Read the current context of ``path``; embedded PEM data is written into ``workdir``
    because ssl wants files."""
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    workdir.mkdir(parents=True, exist_ok=True)
    return Credentials(
        server=cluster["server"],
        ca_file=_material(cluster, "certificate-authority-data", "certificate-authority",
                          workdir / "ca.crt"),
        cert_file=_material(user, "client-certificate-data", "client-certificate",
                            workdir / "client.crt"),
        key_file=_material(user, "client-key-data", "client-key", workdir / "client.key"),
    )


class Api:
    """JSON calls against one API server. Paths are absolute API paths (/api/v1/...)."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self._client = httpx.AsyncClient(
            base_url=credentials.server, verify=credentials.ssl_context(),
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers={"User-Agent": "flowpod-test-node/0.1", "Accept": "application/json"})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: dict[str, Any] | None = None,
                      content_type: str = "application/json") -> dict:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            resp = await self._client.request(method, path, content=content, params=params,
                                              headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from exc
        if resp.status_code >= 300:
            raise ApiError.from_status(resp.status_code, resp.content)
        return resp.json() if resp.content else {}

    async def get(self, path: str, **params: Any) -> dict:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: Any) -> dict:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> dict:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Any = None) -> dict:
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, **params: Any) -> AsyncIterator[dict]:
        """Yield watch events ({type, object}); an ERROR event is raised as ApiError."""
        params = {**params, "watch": "true"}
        timeout = httpx.Timeout(10.0, read=None)
        try:
            async with self._client.stream("GET", path, params=params, timeout=timeout) as resp:
                if resp.status_code >= 300:
                    raise ApiError.from_status(resp.status_code, await resp.aread())
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise ApiError.from_status(500, event.get("object") or {})
                    yield event
        except httpx.TransportError as exc:
            raise ApiError(0, "Unreachable", f"watch {path}: {exc!r}") from exc
