"""The record's serving view in Redis: one JSON document per citizen plus the ids of applied events.

Reads and writes go a batch at a time (one round trip each). Writes are MULTI/EXEC so a record and its
applied-event set never disagree. One worker owns each citizen at a time (events.citizen is keyed by
citizen_id), so read-modify-write needs no lock.
"""

from __future__ import annotations

import orjson

from hub.record.apply import Record


def record_key(citizen_id: str) -> str:
    return f"record:{citizen_id}"


def applied_key(citizen_id: str) -> str:
    return f"record:{citizen_id}:events"


class RedisRecordStore:
    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._redis = redis

    async def load(self, citizen_id: str) -> Record | None:
        return (await self.load_many([citizen_id]))[citizen_id]

    async def load_many(self, citizen_ids: list[str]) -> dict[str, Record | None]:
        if not citizen_ids:
            return {}
        raws = await self._redis.mget([record_key(c) for c in citizen_ids])
        return {c: orjson.loads(raw) if raw else None for c, raw in zip(citizen_ids, raws, strict=True)}

    async def applied(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """For each (citizen_id, event_id): has that event already been applied to that record?"""
        if not pairs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for citizen_id, event_id in pairs:
                pipe.sismember(applied_key(citizen_id), event_id)
            return [bool(r) for r in await pipe.execute()]

    async def save_many(self, records: list[Record], applied: list[tuple[str, str]]) -> None:
        """Store records and mark events applied, atomically."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for record in records:
                pipe.set(record_key(record["citizen_id"]), orjson.dumps(record))
            for citizen_id, event_id in applied:
                pipe.sadd(applied_key(citizen_id), event_id)
            await pipe.execute()
