"""A subscription's operating state in Redis: paused or not, the replay asked for, health-book freshness.

Redis rather than process memory, so a pause or a replay asked for from the CLI or the API reaches every
fanout worker, and survives their restarts. Keys (all under ``hssk:sub:<name>:``; citizen ids are
pseudonymous):

    paused          "1" while paused (absent: running)
    replay          {"id", "since_ms", "asked_at"}: the latest replay request
    replay:done     hash partition -> id of the replay request applied on that partition
    unpushed        sorted set citizen_id -> time (ms) of the oldest change not yet pushed (health book)
    pushed          hash citizen_id -> time (ms) of the last successful push (health book)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import orjson

from hub.fanout.turns import TurnPipeline

FRESHNESS_TARGET_S = 24 * 3600


def _key(name: str, part: str) -> str:
    return f"hssk:sub:{name}:{part}"


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    id: str
    since_ms: int
    asked_at_ms: int


class SubscriptionState:
    def __init__(self, redis, turns: TurnPipeline | None = None) -> None:  # redis.asyncio.Redis
        self._redis = redis
        self._turns = turns  # the engine's: a batch's freshness mark shares the pipeline of the other partitions'

    async def paused(self, name: str) -> bool:
        return bool(await self._redis.exists(_key(name, "paused")))

    async def set_paused(self, name: str, paused: bool) -> None:
        if paused:
            await self._redis.set(_key(name, "paused"), "1")
        else:
            await self._redis.delete(_key(name, "paused"))

    async def ask_replay(self, name: str, since_ms: int) -> ReplayRequest:
        request = ReplayRequest(uuid.uuid4().hex, since_ms, int(time.time() * 1000))
        await self._redis.set(_key(name, "replay"), orjson.dumps(
            {"id": request.id, "since_ms": request.since_ms, "asked_at": request.asked_at_ms}))
        return request

    async def replay_request(self, name: str) -> ReplayRequest | None:
        raw = await self._redis.get(_key(name, "replay"))
        if not raw:
            return None
        data = orjson.loads(raw)
        return ReplayRequest(str(data["id"]), int(data["since_ms"]), int(data.get("asked_at", 0)))

    async def replay_done(self, name: str) -> dict[int, str]:
        raw = await self._redis.hgetall(_key(name, "replay:done"))
        return {int(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in raw.items()}

    async def mark_replay_done(self, name: str, partitions: list[int], request_id: str) -> None:
        if partitions:
            await self._redis.hset(_key(name, "replay:done"), mapping={str(p): request_id for p in partitions})

    async def changed(self, name: str, changes: dict[str, int]) -> None:
        """Citizens with a change (time in ms) not yet pushed; an earlier unpushed change keeps its time."""
        if changes:
            await (self._turns or self._redis).zadd(_key(name, "unpushed"), changes, nx=True)

    async def pushed(self, name: str, citizen_ids: list[str], at_ms: int) -> None:
        if not citizen_ids:
            return
        if self._turns is not None:  # both in this turn's pipeline, with the other partitions' calls
            removed = self._turns.call("zrem", _key(name, "unpushed"), *citizen_ids)
            marked = self._turns.call("hset", _key(name, "pushed"), mapping={c: at_ms for c in citizen_ids})
            await asyncio.gather(removed, marked)
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(_key(name, "unpushed"), *citizen_ids)
            pipe.hset(_key(name, "pushed"), mapping={c: at_ms for c in citizen_ids})
            await pipe.execute()

    async def freshness(self, name: str, now_ms: int | None = None, target_s: int = FRESHNESS_TARGET_S
                        ) -> tuple[int, int]:
        """(citizens with an unpushed change, of which older than the target)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        key = _key(name, "unpushed")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(key)
            pipe.zcount(key, "-inf", now_ms - target_s * 1000)
            total, stale = await pipe.execute()
        return int(total), int(stale)
