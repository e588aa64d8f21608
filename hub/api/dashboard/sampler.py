"""The dashboard's sampler: every few seconds, consumer lag, topic end offsets and new DLQ entries into a History;
the review-queue size (the MPI's open cases, hub.identity.review) every tick and the subscriptions' state
(hub.fanout.admin.status: paused, lag, dead letters) every SUBSCRIPTIONS_EVERY_S, through those modules' own
functions. Either failing is noted on its panel and does not stop the Kafka sampling.

It runs as a background task of the api role (an aiohttp cleanup context), so the dashboard needs no extra
process. Each API replica samples on its own and keeps its own history: two replicas behind a load balancer
show the same current values but histories that start when each replica started. Nothing here is shared or
persisted; a restart starts the charts afresh (Prometheus with deploy/grafana is the long-term view).

Kafka being down is a state, not a crash: the sampling fails, the history keeps what it had plus the error,
and the next tick tries again with fresh clients. The DLQ is tallied incrementally (positions kept here, not in
a consumer group), so each entry is counted once however often the Kafka clients are recreated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from hub.api.dashboard.history import GroupLag, History, Sample
from hub.api.dashboard.view import OUTPUT_TOPICS
from hub.errors import DeliveryError
from hub.logging import get_logger
from hub.ops import lag
from hub.ops.dlq import Entry, parse_entry
from hub.settings import Settings
from hub.topics import DLQ

log = get_logger("api.dashboard")
DLQ_READ_PER_TICK = 20_000  # a DLQ of millions is tallied over several ticks instead of stalling one
TICK_TIMEOUT_S = 30.0
MAX_RETRY_S = 10.0  # while Kafka is down, tries space out to this (each try logs the clients' connect errors)
SUBSCRIPTIONS_EVERY_S = 10.0  # a status reading opens Kafka clients per subscription: not every tick
HEALTH_TIMEOUT_S = 10.0


def next_delay(previous: float, interval: float, failed: bool) -> float:
    """Seconds from one tick's start to the next: the interval, doubling after each failure up to MAX_RETRY_S."""
    return min(MAX_RETRY_S, max(interval, previous * 2)) if failed else interval


def group_totals(rows: Iterable[lag.PartitionLag]) -> dict[str, GroupLag]:
    """Per group: the sum of its partitions' lag, and the largest age of an unread message (None if unknown)."""
    totals: dict[str, tuple[int, float | None]] = {}
    for r in rows:
        n, secs = totals.get(r.group, (0, 0.0))
        secs = None if secs is None or r.lag_seconds is None else max(secs, r.lag_seconds)
        totals[r.group] = (n + r.lag, secs)
    return {g: GroupLag(n, None if s is None else round(s, 3)) for g, (n, s) in totals.items()}


class Probe(Protocol):
    """What one tick asks Kafka; the seam unit tests replace."""

    async def lag(self) -> list[lag.PartitionLag]: ...

    async def topic_ends(self, topics: Iterable[str]) -> dict[str, int]: ...

    async def dead_letters(self, positions: dict[int, int]) -> tuple[list[Entry], bool]: ...

    async def subscriptions(self) -> list[dict]: ...

    async def review_queue(self) -> int: ...

    async def close(self) -> None: ...


class KafkaProbe:
    """Long-lived Kafka clients for the sampler (reused across ticks, closed when a tick fails).

    Two consumers: once a consumer is assigned partitions, aiokafka refreshes metadata for those topics only,
    so the one that tails hub.dlq could no longer see the other topics' partitions.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None  # never assigned: metadata of every topic
        self._tail: AIOKafkaConsumer | None = None  # assigned to hub.dlq
        self._redis = None  # redis.asyncio.Redis for the review queue, made on first use

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=10_000)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer, AIOKafkaConsumer]:
        if self._admin is None:
            self._admin = await lag.admin_client(self.settings)
        if self._ends is None:
            self._ends = await self._consumer()
        if self._tail is None:
            self._tail = await self._consumer()
        return self._admin, self._ends, self._tail

    async def lag(self) -> list[lag.PartitionLag]:
        admin, _, _ = await self._clients()
        return await lag.measure(self.settings, admin=admin)

    async def topic_ends(self, topics: Iterable[str]) -> dict[str, int]:
        """Sum of log end offsets per topic (topics that do not exist are left out)."""
        _, consumer, _ = await self._clients()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(await lag.partitions_of(consumer, t))]
        ends = await consumer.end_offsets(tps) if tps else {}
        totals: dict[str, int] = {}
        for tp, end in ends.items():
            totals[tp.topic] = totals.get(tp.topic, 0) + end
        return totals

    async def dead_letters(self, positions: dict[int, int]) -> tuple[list[Entry], bool]:
        """hub.dlq entries from ``positions`` (partition -> next offset; updated in place), up to a bound.

        Returns the entries read and whether every partition was read up to its end as it was at the start.
        """
        _, _, consumer = await self._clients()
        tps = [TopicPartition(DLQ.name, p) for p in sorted(await lag.partitions_of(consumer, DLQ.name))]
        if not tps:
            return [], True
        ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
        todo = [tp for tp in tps if max(positions.get(tp.partition, 0), starts[tp]) < ends[tp]]
        found: list[Entry] = []
        if not todo:
            return found, True
        consumer.assign(todo)
        try:
            for tp in todo:
                consumer.seek(tp, max(positions.get(tp.partition, 0), starts[tp]))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0
            while todo and len(found) < DLQ_READ_PER_TICK and loop.time() < deadline:
                fetched = await consumer.getmany(*todo, timeout_ms=200, max_records=1000)
                for records in fetched.values():
                    found.extend(parse_entry(r) for r in records)
                for tp in todo:
                    positions[tp.partition] = await consumer.position(tp)  # what was returned, markers included
                todo = [tp for tp in todo if positions[tp.partition] < ends[tp]]
        finally:
            consumer.unsubscribe()  # no fetching in the background between ticks
        return found, not todo

    async def subscriptions(self) -> list[dict]:
        """Each configured subscription's state, as ``hub subscriptions list`` reads it."""
        from hub.fanout import admin

        return await admin.status(self.settings, admin.load(self.settings))

    async def review_queue(self) -> int:
        """Open identity review cases, as ``hub review list`` counts them."""
        import redis.asyncio as aioredis

        from hub.identity.review import Mpi

        if self._redis is None:
            self._redis = aioredis.from_url(self.settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return await Mpi(self._redis, self.settings.pseudonym_key).queue_size()

    async def close(self) -> None:
        consumers, admin, redis = (self._ends, self._tail), self._admin, self._redis
        self._ends = self._tail = self._admin = self._redis = None
        if redis is not None:
            await redis.aclose()
        for consumer in consumers:
            if consumer is not None:
                await consumer.stop()
        if admin is not None:
            await admin.close()


class Sampler:
    """Fills ``history`` every ``history.interval_s`` seconds until cancelled."""

    def __init__(self, history: History, probe: Callable[[], Probe], clock: Callable[[], float] = time.time) -> None:
        self.history = history
        self._new_probe = probe
        self._probe: Probe | None = None
        self._clock = clock
        self._dlq_positions: dict[int, int] = {}
        self._subscriptions_due = 0.0

    async def _health(self, probe: Probe, at: float) -> None:
        """The review queue every tick, the subscriptions when due; a failure is its panel's, not the tick's."""
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                queue = await probe.review_queue()
            self.history.read_review_queue(queue, at)
        except (RedisError, OSError, TimeoutError) as exc:
            self.history.review_queue_failed(f"Redis: {type(exc).__name__}")
        if at < self._subscriptions_due:
            return
        self._subscriptions_due = at + SUBSCRIPTIONS_EVERY_S
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                subscriptions = await probe.subscriptions()
            self.history.read_subscriptions(subscriptions, at)
        except (DeliveryError, KafkaError, RedisError, OSError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, DeliveryError) else type(exc).__name__
            self.history.subscriptions_failed(f"subscription status not read: {reason}")
        except ValueError as exc:  # the subscriptions file is not valid (SubscriptionConfigError names the field)
            self.history.subscriptions_failed(str(exc))

    async def tick(self) -> None:
        """One sample; on failure the error is noted in the history and the clients are dropped."""
        probe = self._probe = self._probe or self._new_probe()
        at = self._clock()
        await self._health(probe, at)
        try:
            rows = await probe.lag()
            ends = await probe.topic_ends(OUTPUT_TOPICS)
            positions = dict(self._dlq_positions)
            entries, caught_up = await probe.dead_letters(positions)
        except (DeliveryError, KafkaError, OSError, asyncio.TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, DeliveryError) else f"Kafka: {type(exc).__name__}"
            if self.history.error is None:
                log.warning("dashboard sampling failed; retrying", error=reason)
            self.history.failed(reason, at)
            await self._drop_probe()
            return
        self._dlq_positions = positions  # counted only when the whole tick worked: never twice
        for e in entries:
            self.history.count_dlq(e.stage, e.code)
        self.history.dlq_complete = self.history.dlq_complete or caught_up
        self.history.add(Sample(at, group_totals(rows), ends))

    async def _drop_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            try:
                await probe.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort; the next tick opens fresh clients
                log.warning("dashboard sampler: closing Kafka clients failed", error=type(exc).__name__)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Sample until cancelled or ``stop`` is set. The event is what ends the loop for certain: a cancel can be
        swallowed on the way (Python 3.11's ``asyncio.wait_for``, which this used, does so when the cancel lands
        as its inner call finishes), and one swallowed cancel kept an API's shutdown waiting for ever (the test
        suite hung on it). Timeouts here are ``asyncio.timeout``, which has no such race."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        delay = self.history.interval_s
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    async with asyncio.timeout(TICK_TIMEOUT_S):
                        await self.tick()
                except TimeoutError:
                    self.history.failed(f"sampling took longer than {TICK_TIMEOUT_S:.0f} s", self._clock())
                    await self._drop_probe()
                except Exception as exc:  # noqa: BLE001 - a bug in one tick must not end the sampling for good
                    log.error("dashboard sampling crashed; retrying", error=type(exc).__name__)
                    self.history.failed(f"internal error ({type(exc).__name__})", self._clock())
                    await self._drop_probe()
                delay = next_delay(delay, self.history.interval_s, self.history.error is not None)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, delay - (loop.time() - started))):
                        await stop.wait()
        finally:
            await self._drop_probe()

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """An aiohttp cleanup context: the sampler runs from the app's startup to its cleanup."""

        async def running(_: web.Application) -> AsyncIterator[None]:
            stop = asyncio.Event()
            task = asyncio.create_task(self.run(stop), name="dashboard-sampler")
            yield
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return running

