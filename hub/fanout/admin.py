"""Operating subscriptions: list, show, pause, resume, replay. Shared by ``hub subscriptions`` and the API.

Pause, resume and replay write to Redis (hub.fanout.state) and the running fanout workers act on it within
half a second; nothing here talks to a worker directly, so it works with any number of them, or none yet
(a replay asked for while the role is down is applied when it starts).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from hub.fanout import config, formats
from hub.fanout.retry import schedule
from hub.fanout.state import SubscriptionState
from hub.ops.lag import ROLE_SOURCES, dlq_size, measure, partitions_of
from hub.settings import Settings
from hub.topics import RECORD_CHANGES, subscription_dlq


class NotManaged(ValueError):
    """The subscription is not delivered by the fan-out (the warehouse role delivers it)."""


def load(settings: Settings) -> tuple[config.Subscription, ...]:
    """The configured subscriptions; SubscriptionConfigError if the file is not valid."""
    return config.load(settings.subscriptions_file, config.settings_env(settings))


def find(settings: Settings, name: str) -> config.Subscription:
    """KeyError names a subscription that is not in the file."""
    return config.find(load(settings), name)


async def _dlq_records(settings: Settings, name: str) -> int:
    return await dlq_size(settings, subscription_dlq(name).name)


def source_topic(sub: config.Subscription) -> str:
    """The topic the subscription's consumer group reads: record.changes, or the warehouse role's events.citizen
    (the warehouse writes facts from the citizen events, not from the record changes)."""
    return RECORD_CHANGES.name if sub.runs_in_fanout else ROLE_SOURCES["warehouse"]


async def status(settings: Settings, subs: tuple[config.Subscription, ...], detail: bool = False
                 ) -> list[dict[str, Any]]:
    """Each subscription's configuration with its state: paused, lag (per partition with ``detail``), DLQ size."""
    client = aioredis.from_url(settings.redis_url)
    state = SubscriptionState(client)
    try:
        rows = await measure(settings, [s.group for s in subs], seconds=detail)
        out = []
        for sub in subs:
            mine = [r for r in rows if r.group == sub.group and r.topic == source_topic(sub)]
            # None: the group has no offsets yet (never started); the role commits its start position at once
            item = sub.summary() | {"lag": sum(r.lag for r in mine) if mine else None}
            if sub.runs_in_fanout:
                item["paused"] = await state.paused(sub.name)
                item["dlq_records"] = await _dlq_records(settings, sub.name)
            if detail:
                item["lag_by_partition"] = [{"partition": r.partition, "lag": r.lag, "committed": r.committed_offset,
                                             "lag_seconds": r.lag_seconds} for r in mine]
                item["retry_waits_s"] = [f"{a:.3g}-{b:.3g}" for a, b in schedule(sub.retry)]
                if sub.format == formats.HEALTH_BOOK:
                    unpushed, stale = await state.freshness(sub.name)
                    item["freshness"] = {"unpushed_citizens": unpushed, "older_than_24h": stale}
                request = await state.replay_request(sub.name)
                if request is not None:
                    done = await state.replay_done(sub.name)
                    item["last_replay"] = {"since_ms": request.since_ms, "asked_at_ms": request.asked_at_ms,
                                           "applied_partitions": sorted(p for p, i in done.items() if i == request.id)}
            out.append(item)
        return out
    finally:
        await client.aclose()


def _managed(sub: config.Subscription) -> None:
    if not sub.runs_in_fanout:
        raise NotManaged(f"subscription {sub.name!r} is delivered by the warehouse role; "
                         "operate it with hub lag / hub dlq and the warehouse role itself")


async def set_paused(settings: Settings, sub: config.Subscription, paused: bool) -> None:
    _managed(sub)
    client = aioredis.from_url(settings.redis_url)
    try:
        await SubscriptionState(client).set_paused(sub.name, paused)
    finally:
        await client.aclose()


async def replay(settings: Settings, sub: config.Subscription, since_ms: int, wait_s: float = 0.0
                 ) -> dict[str, Any]:
    """Ask the workers to deliver again from ``since_ms``; with ``wait_s``, wait until every partition took it."""
    _managed(sub)
    client = aioredis.from_url(settings.redis_url)
    state = SubscriptionState(client)
    try:
        request = await state.ask_replay(sub.name, since_ms)
        applied: list[int] = []
        if wait_s > 0:
            consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
            await consumer.start()
            try:
                partitions = await partitions_of(consumer, RECORD_CHANGES.name)
            finally:
                await consumer.stop()
            deadline = time.monotonic() + wait_s
            while True:
                done = await state.replay_done(sub.name)
                applied = sorted(p for p, i in done.items() if i == request.id)
                if set(applied) >= partitions or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        return {"subscription": sub.name, "request_id": request.id, "since_ms": since_ms,
                "applied_partitions": applied}
    finally:
        await client.aclose()
