"""Awaiting one kubernetes-asyncio call and telling its failure in the shared vocabulary.

Role: `guard` awaits a request and turns an ApiException (with or without a Status body)
or a connection failure into flowpod_kube.errors' KubeError, naming the object (a Ref), the
server and where the connection came from. Callers: flowpod_operator.cli._client (every CLI
request) and flowpod_kube.apply (the SDK's deploy).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from flowpod_kube import errors
from flowpod_kube.connecting import Connection

__all__ = ["guard"]


async def guard(connection: Connection, ref: errors.Ref, pending: Awaitable[Any]) -> Any:
    """Await `pending`, turning every way it can fail into the shared vocabulary."""
    try:
        return await pending
    except ApiException as exc:
        raw = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) \
            else str(exc.body or "")
        status = errors.status_body(raw)
        if status is None and exc.body is None and exc.reason:
            # Watch errors arrive as ApiException(status, "Reason: message"), no body.
            reason, _, message = str(exc.reason).partition(": ")
            status = {"kind": "Status", "reason": reason, "message": message}
        raise errors.api_error(exc.status or 0, status, ref, server=connection.server,
                               source=connection.source, text=raw) from None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise errors.unreachable(exc, server=connection.server,
                                 source=connection.source) from None
