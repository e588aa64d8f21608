"""Role ``mllp``: run the listener until SIGTERM, then stop accepting and answer what is in flight."""

from __future__ import annotations

import asyncio
import signal

from connectors.mllp.listener import MllpListener
from hub.kafka import DurableProducer
from hub.logging import get_logger
from hub.settings import Settings

log = get_logger("mllp")


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = DurableProducer(settings, client_id="hssk-mllp")
    connecting = asyncio.create_task(producer.connect())
    listener = MllpListener(settings, producer)
    server = await listener.serve()
    log.info("mllp listening", host=settings.mllp_host, port=settings.mllp_port)
    try:
        await stop.wait()
    finally:
        server.close()  # stop accepting; connections finish the frame they are handling
        await listener.drain(timeout_s=settings.ack_timeout_s + 1)
        connecting.cancel()
        await producer.stop()
        log.info("mllp stopped")


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))
