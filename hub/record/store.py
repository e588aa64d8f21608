"""The record's serving view in Redis: one JSON document per citizen plus the ids of applied events.

Writes are MULTI/EXEC so the record and its applied-event set never disagree. One worker owns each
citizen at a time (events.citizen is keyed by citizen_id), so read-modify-write needs no lock.
"""

from __future__ import annotations

import orjson

from hub.record.apply import Record


class RedisRecordStore:
    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._redis = redis

    @staticmethod
    def _key(citizen_id: str) -> str:
        return f"record:{citizen_id}"

    async def load(self, citizen_id: str) -> Record | None:
        raw = await self._redis.get(self._key(citizen_id))
        return orjson.loads(raw) if raw else None

    async def was_applied(self, citizen_id: str, event_id: str) -> bool:
        return bool(await self._redis.sismember(self._key(citizen_id) + ":events", event_id))

    async def save(self, record: Record, event_id: str) -> None:
        key = self._key(record["citizen_id"])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, orjson.dumps(record))
            pipe.sadd(key + ":events", event_id)
            await pipe.execute()

    async def mark_applied(self, citizen_id: str, event_id: str) -> None:
        await self._redis.sadd(self._key(citizen_id) + ":events", event_id)
