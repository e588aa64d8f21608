"""DurableProducer's background connect against a Kafka that is not there (a closed loopback port refuses at
once, so no broker is needed): it keeps retrying until ``stop``, and ``stop`` alone ends it, because a cancel
can be swallowed on the way (Python 3.11's asyncio.wait_for does) and must not be the only way out."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from hub.errors import DeliveryError
from hub.kafka import DurableProducer
from hub.settings import Settings


def unreachable() -> Settings:
    return replace(Settings(), kafka_bootstrap="127.0.0.1:1", ack_timeout_s=1.0)


async def test_connect_retries_until_stop_ends_it_without_a_cancel() -> None:
    producer = DurableProducer(unreachable(), client_id="hssk-test")
    connecting = asyncio.create_task(producer.connect(retry_every_s=0.05))
    await asyncio.sleep(0.3)
    assert not connecting.done() and not producer.connected  # still retrying: Kafka is down, not an error
    await producer.stop()
    done, _ = await asyncio.wait([connecting], timeout=5)
    assert done and connecting.exception() is None and not producer.connected


async def test_a_stopped_producer_does_not_connect_and_writes_say_so() -> None:
    producer = DurableProducer(unreachable(), client_id="hssk-test")
    await producer.stop()
    async with asyncio.timeout(2):
        await producer.connect(retry_every_s=0.05)  # returns at once
    assert not producer.connected
    with pytest.raises(DeliveryError, match="not connected to Kafka"):
        await producer.write("hl7v2.raw", b"MSH|")
