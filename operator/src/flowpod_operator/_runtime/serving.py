"""The operator's HTTP endpoints: GET /healthz and GET /metrics on one port.

Role: a small aiohttp server (aiohttp comes with kopf). /healthz answers 200 once kopf says
the operator is running (its ready flag: watches started), 503 before; Kubernetes probes and
the tests wait on it. A standby (leader election, waiting for the Lease) is healthy and says
so: 200 with "standby: ..." -- restarting it would not make it lead sooner. /metrics is the Prometheus text exposition of
flowpod_operator._runtime.metrics, rendered by prometheus-client. Callers:
flowpod_operator.running.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flowpod_operator._runtime.metrics import Metrics

__all__ = ["start_endpoints"]


async def start_endpoints(host: str, port: int, ready: asyncio.Event,
                          metrics: Metrics, *,
                          standby: Callable[[], str | None] = lambda: None) -> web.AppRunner:
    """Serve both endpoints until the returned runner is cleaned up. `standby` says why
    this process stands by, or None when it does not."""

    async def healthz(_: web.Request) -> web.Response:
        waiting = standby()
        if waiting is not None:
            return web.Response(text=f"{waiting}\n")
        if ready.is_set():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="starting\n")

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
