"""A lag exporter over HTTP: ``GET /metrics`` answers consumer lag in kafka-lag-exporter's text, measured at
each scrape (``hub lag --serve``). Scrapes are served one at a time, so a slow broker is not asked twice."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hub.errors import DeliveryError
from hub.logging import get_logger
from hub.ops import lag
from hub.settings import Settings

log = get_logger("lag-exporter")
Measure = Callable[[Settings], Awaitable[str]]


def build_app(settings: Settings, measure: Measure = lag.metrics_text) -> web.Application:
    """The exporter's routes; ``measure`` is the seam unit tests replace."""
    lock = asyncio.Lock()

    async def metrics(_: web.Request) -> web.Response:
        async with lock:
            try:
                text = await measure(settings)
            except DeliveryError as exc:  # Kafka down: say so, and Prometheus records the scrape as failed
                log.warning("lag not measured", error=exc.reason)
                return web.Response(status=503, text=exc.reason + "\n")
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until cancelled."""
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("lag exporter serving", port=port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
