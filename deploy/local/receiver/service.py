"""Role ``receiver``: serve the reference receiver on ``HSSK_RECEIVER_HOST:HSSK_RECEIVER_PORT`` until SIGTERM.

Its store lives in the hub's state folder, so ``hub down`` and ``hub up`` keep what it received, and a test
stack's receiver never mixes with the demo's.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import uvloop
from aiohttp import web

from deploy.local.receiver.app import Receiver, build_app
from deploy.local.receiver.commit import GroupCommit
from deploy.local.receiver.store import DeliveryStore
from hub.logging import get_logger
from hub.settings import Settings

log = get_logger("receiver")


def store_path(settings: Settings) -> Path:
    return settings.state_dir / "receiver" / "deliveries.sqlite3"


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = GroupCommit(DeliveryStore(store_path(settings)))
    runner = web.AppRunner(build_app(Receiver(store, settings.receiver_secret,
                                                     previous_secret=settings.receiver_previous_secret)), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.receiver_host, settings.receiver_port).start()
        log.info("receiver listening", host=settings.receiver_host, port=settings.receiver_port)
        await stop.wait()
    finally:
        await runner.cleanup()
        await store.close()
        log.info("receiver stopped")


def run(settings: Settings) -> None:
    """The ``hub`` command's entry for the ``receiver`` role (on uvloop, as the MLLP listener: its C transports
    cut the per-request cost of socket reads and writes)."""
    uvloop.run(serve(settings))
