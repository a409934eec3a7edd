"""The kubelet's containerLogs endpoint over TLS, which `kubectl logs` reaches via the API server.

Used by kubelet.py, which hands it a `locate(namespace, pod, container, previous)` callable.
Serves GET /containerLogs/{namespace}/{pod}/{container} with follow, tailLines, timestamps,
previous, limitBytes, sinceSeconds and sinceTime, on 127.0.0.1 with the node's serving
certificate. Like the kubelet, it requires a client certificate from the cluster CA (the API
server presents kube-apiserver-kubelet-client).
"""

from __future__ import annotations

import datetime
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener

from flowpod import contract
from flowpod_devcluster.node import containerlogs

__all__ = ["LogServer", "Locate", "server_context"]

log = logging.getLogger(__name__)

Locate = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]]]
_MAX_HEAD = 16 * 1024
_POLL = 0.1


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _read_head(stream: anyio.abc.ByteStream) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive()
        data += chunk
        if len(data) > _MAX_HEAD:
            raise HttpError(431, "request head too large")
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def _since(query: dict[str, list[str]], now: datetime.datetime) -> str | None:
    if "sinceSeconds" in query:
        moment = now - datetime.timedelta(seconds=int(query["sinceSeconds"][0]))
    elif "sinceTime" in query:
        moment = contract.parse_time(query["sinceTime"][0])
    else:
        return None
    return containerlogs.format_timestamp(moment)


class _Body:
    """Sends rendered records, honouring limitBytes."""

    def __init__(self, stream: anyio.abc.ByteStream, query: dict[str, list[str]]) -> None:
        self._stream = stream
        self._left = int(query["limitBytes"][0]) if "limitBytes" in query else None
        self._stamps = query.get("timestamps", ["false"])[0] == "true"

    @property
    def full(self) -> bool:
        return self._left is not None and self._left <= 0

    async def send(self, entries: list[containerlogs.Entry], since: str | None) -> None:
        chunk = b"".join(containerlogs.render(e, timestamps=self._stamps) for e in entries
                         if since is None or e.timestamp >= since)
        if self._left is not None:
            chunk, self._left = chunk[:self._left], self._left - len(chunk)
        if chunk:
            await self._stream.send(chunk)


class LogServer:
    def __init__(self, locate: Locate, context: ssl.SSLContext, *, host: str,
                 clock: Callable[[], datetime.datetime]) -> None:
        self._locate, self._context, self._host, self._clock = locate, context, host, clock
        self._listener: TLSListener | None = None
        self.port = 0

    async def bind(self) -> int:
        """Listen on a free port of ``host`` and return it (for daemonEndpoints)."""
        tcp = await anyio.create_tcp_listener(local_host=self._host, local_port=0)
        self.port = tcp.extra(anyio.abc.SocketAttribute.local_port)
        self._listener = TLSListener(tcp, self._context, standard_compatible=False)
        return self.port

    async def serve(self) -> None:
        assert self._listener is not None, "bind() first"
        await self._listener.serve(self._handle)

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(10):
                    request_line = await _read_head(stream)
                await self._respond(stream, request_line)
            except HttpError as exc:
                await _error(stream, exc.status, str(exc))
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    TimeoutError, ssl.SSLError):
                pass

    async def _respond(self, stream: anyio.abc.ByteStream, request_line: str) -> None:
        method, _, rest = request_line.partition(" ")
        target = rest.rsplit(" ", 1)[0]
        url = urlsplit(target)
        parts = [unquote(p) for p in url.path.split("/")]
        if method != "GET":
            raise HttpError(405, f"method {method} not allowed")
        if url.path == "/healthz":
            await _send_head(stream, 200, close_delimited=False, length=2)
            await stream.send(b"ok")
            return
        if len(parts) != 5 or parts[1] != "containerLogs":
            raise HttpError(404, f"no such endpoint {url.path}")
        query = parse_qs(url.query)
        previous = query.get("previous", ["false"])[0] == "true"
        try:
            path, live = self._locate(parts[2], parts[3], parts[4], previous)
        except KeyError as exc:
            raise HttpError(404, str(exc.args[0])) from exc
        except LookupError as exc:
            raise HttpError(400, str(exc)) from exc
        await _send_head(stream, 200, close_delimited=True)
        await self._stream_log(stream, path, live, query)

    async def _stream_log(self, stream: anyio.abc.ByteStream, path: Path,
                          live: Callable[[], bool], query: dict[str, list[str]]) -> None:
        body = _Body(stream, query)
        since = _since(query, self._clock())
        entries, offset = containerlogs.read_entries(path)
        if "tailLines" in query:
            tail = int(query["tailLines"][0])
            entries = entries[-tail:] if tail > 0 else []
        await body.send(entries, since)
        if query.get("follow", ["false"])[0] != "true":
            return
        while not body.full:
            running = live()
            entries, offset = containerlogs.read_entries(path, offset)
            await body.send(entries, since)
            if not entries:
                if not running:
                    return
                await anyio.sleep(_POLL)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}


async def _send_head(stream: anyio.abc.ByteStream, status: int, *, close_delimited: bool,
                     length: int | None = None) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
             "Content-Type: text/plain; charset=utf-8", "Connection: close"]
    if not close_delimited and length is not None:
        lines.append(f"Content-Length: {length}")
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())


async def _error(stream: anyio.abc.ByteStream, status: int, message: str) -> None:
    body = message.encode()
    try:
        await _send_head(stream, status, close_delimited=False, length=len(body))
        await stream.send(body)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
