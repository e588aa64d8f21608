"""Role ``mllp``: settle crash leftovers, serve MLLP (plain and optionally TLS) until SIGTERM, then stop
accepting and answer everything in flight. SIGHUP re-reads the sources file (it is also polled for changes)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import redis.asyncio as aioredis
import uvloop
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from connectors.mllp.connection import MllpServer, tls_context
from connectors.mllp.dedup import DedupStore
from connectors.mllp.listener import MllpListener
from connectors.mllp.recover import reconcile
from connectors.mllp.sources import SourcesFile, sources_from_settings
from hub.kafka import DurableProducer
from hub.logging import get_logger
from hub.settings import Settings

log = get_logger("mllp")
SOURCES_POLL_S = 5.0


async def _watch_sources(sources: SourcesFile) -> None:
    while True:
        await asyncio.sleep(SOURCES_POLL_S)
        sources.reload_if_changed()


async def _settle(settings: Settings, dedup: DedupStore) -> None:
    """Crash recovery before serving; if Redis or Kafka is not there yet, serve anyway (dedup degrades)."""
    try:
        async with asyncio.timeout(60):
            await reconcile(settings, dedup)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("dedup markers not settled at start", error=type(exc).__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    sources = sources_from_settings(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, sources.reload)
    if settings.mllp_metrics_port:
        try:
            start_http_server(settings.mllp_metrics_port, addr=settings.mllp_host)
        except OSError as exc:  # HL7 feeds matter more than a scrape target: serve them anyway, loudly
            log.error("metrics endpoint not started", port=settings.mllp_metrics_port, error=exc.strerror)
    redis = aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    dedup = DedupStore(redis, settings.pseudonym_key, settings.dedup_ttl_s, in_flight_wait_s=settings.ack_timeout_s)
    producer = DurableProducer(settings, client_id="hssk-mllp")
    connecting = asyncio.create_task(producer.connect())
    await _settle(settings, dedup)
    server = MllpServer(MllpListener(settings, producer, sources, dedup))
    if settings.mllp_port:  # 0: TLS only
        await server.listen(settings.mllp_host, settings.mllp_port)
    if settings.mllp_tls_port:
        context = tls_context(settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_tls_client_ca)
        await server.listen(settings.mllp_host, settings.mllp_tls_port, context)
    watcher = asyncio.create_task(_watch_sources(sources))
    log.info("mllp listening", host=settings.mllp_host, port=settings.mllp_port,
             tls_port=settings.mllp_tls_port or None, facilities=len(sources.current.facilities),
             open_mode=sources.current.open_mode)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await server.shutdown(timeout_s=settings.ack_timeout_s + 1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await dedup.drain()  # confirms still queued reach Redis
        connecting.cancel()
        await producer.stop()  # before awaiting the connect: it also ends a connect whose cancel was lost
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await redis.aclose()
        log.info("mllp stopped")


def run(settings: Settings) -> None:
    # uvloop's C transports halve the per-message cost of socket reads and ACK writes, which dominate the
    # listener's profile (bench.mllp: 100 senders, see the closing note of the MLLP issue).
    uvloop.run(serve(settings))
