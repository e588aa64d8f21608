"""Reading a citizen's record for people and systems: find the citizen, audit the read, return the record.

A retired citizen's id (merged into another) reads the survivor's record (RedisRecordStore.load follows the
redirect); the audit names the survivor, whose data is shown.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from hub.audit import audit_read
from hub.envelope import SYSTEM_CCCD, Identifier
from hub.errors import DeliveryError
from hub.identity.resolve import RedisLinkStore, identity_key
from hub.kafka import DurableProducer
from hub.record.apply import Record
from hub.record.store import RedisRecordStore
from hub.settings import Settings


async def find_citizen_by_cccd(settings: Settings, client: aioredis.Redis, cccd: str) -> str | None:
    """Exact CCCD lookup through the MPI's links (never a fuzzy match for a read)."""
    return await RedisLinkStore(client).lookup(identity_key(settings.pseudonym_key, Identifier(SYSTEM_CCCD, cccd)))


async def read_record(settings: Settings, *, citizen_id: str | None = None, cccd: str | None = None,
                      actor: str, purpose: str, channel: str) -> Record | None:
    client = aioredis.from_url(settings.redis_url)
    try:
        if citizen_id is None and cccd is not None:
            citizen_id = await find_citizen_by_cccd(settings, client, cccd)
        if citizen_id is None:
            return None
        record = await RedisRecordStore(client).load(citizen_id)
        if record is None:
            return None
        producer = DurableProducer(settings, client_id="hssk-record-read")
        try:
            async with asyncio.timeout(settings.ack_timeout_s):
                await producer.connect(retry_every_s=0.5)
        except TimeoutError as exc:
            raise DeliveryError("the audit log (Kafka) is unreachable, so the record is not shown") from exc
        try:
            await audit_read(producer, actor=actor, citizen_id=record["citizen_id"], purpose=purpose, channel=channel)
        finally:
            await producer.stop()
        return record
    finally:
        await client.aclose()
