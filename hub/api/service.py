"""Role ``api``: serve the record API until SIGTERM/SIGINT, against the real Redis and Kafka.

The audit producer connects in the background, so the API starts even while Kafka is down; until it is
connected every record read answers 503 (never an unaudited read) and ``/health`` says ``degraded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from hub.api import dashboard
from hub.api.app import Deps, build_app
from hub.api.audit import AuditLog
from hub.identity.review import Mpi
from hub.api.ratelimit import RateLimiter
from hub.api.tokens import TokenFile
from hub.identity.resolve import RedisLinkStore
from hub.kafka import DurableProducer
from hub.logging import get_logger
from hub.record.store import RedisRecordStore
from hub.settings import Settings

log = get_logger("api")


@dataclass
class Running:
    """A started API: its port and what ``stop`` must close."""

    port: int
    runner: web.AppRunner
    producer: DurableProducer
    connecting: asyncio.Task[None]
    redis: aioredis.Redis

    async def stop(self) -> None:
        await self.runner.cleanup()
        self.connecting.cancel()
        await self.producer.stop()  # before awaiting the connect: it also ends a connect whose cancel was lost
        with contextlib.suppress(asyncio.CancelledError):
            await self.connecting
        await self.redis.aclose()


async def start(settings: Settings, *, port: int | None = None) -> Running:
    """Start serving on ``settings.api_host`` and ``port`` (default ``settings.api_port``; 0 picks a free one)."""
    redis = aioredis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    producer = DurableProducer(settings, client_id="hssk-api")
    connecting = asyncio.create_task(producer.connect(retry_every_s=0.5))
    deps = Deps(
        settings=settings,
        tokens=TokenFile(settings.api_token_file),
        limiter=RateLimiter(settings.api_rate_per_s, settings.api_rate_burst),
        records=RedisRecordStore(redis),
        links=RedisLinkStore(redis),
        audit=AuditLog(producer),
        kafka_ready=lambda: producer.connected,
        review=Mpi(redis, settings.pseudonym_key),
        events=producer,
    )
    app = build_app(deps)
    dashboard.mount(app, settings)  # its sampler runs while the app does (each replica keeps its own history)
    runner = web.AppRunner(app, access_log=None)  # the guard logs route templates, never paths
    running = Running(0, runner, producer, connecting, redis)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.api_host, settings.api_port if port is None else port).start()
    except BaseException:
        await running.stop()  # e.g. the port is taken: close the producer and Redis we opened
        raise
    running.port = runner.addresses[0][1]
    log.info("api listening", host=settings.api_host, port=running.port)
    return running


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(settings)
    try:
        await stop.wait()
    finally:
        await running.stop()
        log.info("api stopped")


def run(settings: Settings) -> None:
    """The ``hub`` command's entry for the ``api`` role."""
    asyncio.run(serve(settings))
