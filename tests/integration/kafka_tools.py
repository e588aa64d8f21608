"""Helpers for integration tests that read topics on the real broker."""

from __future__ import annotations

import asyncio
from typing import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from hub.settings import Settings


async def read_until(settings: Settings, topic: str, done: Callable[[list[ConsumerRecord]], bool],
                     timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``done(records)`` holds or the timeout passes."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while not done(records) and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


async def wait_until_idle(settings: Settings, timeout_s: float = 60.0) -> None:
    """Poll until every stage's consumer group has committed everything on its source topic."""
    from hub.ops.status import _admin, consumer_lag

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    admin = await _admin(settings)
    try:
        while True:
            lags = await consumer_lag(settings, admin)
            if all(g.total == 0 for g in lags):
                return
            if loop.time() > deadline:
                raise AssertionError(f"stages still behind after {timeout_s} s: {[(g.group, g.total) for g in lags]}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
