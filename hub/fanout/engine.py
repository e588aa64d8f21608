"""The delivery engine: one consumer group per subscription on record.changes, one worker per partition.

Why aiokafka and not a faust agent per subscription: a faust app is one consumer group, and a subscription
needs its own (its own offsets, its own lag in ``hub lag``, replay by seeking only its group), plus control
faust does not expose per agent — pausing partitions, seeking to ``offsets_for_times``, committing exactly
the offset a partition has delivered. Each subscription runs in its own task with its own consumer, so a
slow or dead subscriber only ever holds up itself.

Semantics, per subscription:
- at-least-once: an offset is committed only once every change before it is delivered or dead-lettered
  (at most every ``HSSK_STAGE_COMMIT_INTERVAL_MS`` while changes keep coming, at once when they pause);
- per-citizen order: a partition's worker takes a batch, sends each citizen's deliveries in order (citizens
  of the batch side by side, at most ``LANES`` at once) and takes the next batch only when all are done, so
  while one delivery retries, later changes of that partition wait (other partitions and subscriptions do not);
- retries: ``hub.fanout.retry`` (exponential backoff with jitter, a maximum), then ``dlq.<name>``;
- pause/resume: the Redis flag (``hub.fanout.state``), checked every ``CONTROL_S``; paused, nothing is
  fetched or sent and the lag grows;
- replay: a request in Redis (``since``); each worker applies it to the partitions it owns
  (``offsets_for_times``, seek, commit) once, so it also reaches a worker started later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from hub.envelope import DeadLetter
from hub.errors import DeliveryError
from hub.fanout import formats
from hub.fanout.breaker import Breaker
from hub.fanout.config import Subscription, SubscriptionConfigError, load
from hub.fanout.metrics import SubscriptionMetrics
from hub.fanout.plan import Change, Planned, plan
from hub.fanout.retry import with_retries
from hub.fanout.sinks import KafkaSink, Sink, WebhookSink
from hub.fanout.state import SubscriptionState
from hub.fanout.turns import TurnPipeline
from hub.filestamp import Stamp, file_stamp
from hub.kafka import DurableProducer
from hub.logging import get_logger
from hub.record.merge import is_redirect
from hub.record.store import RedisRecordStore, record_key, visible
from hub.settings import Settings
from hub.topics import RECORD_CHANGES, Topic, ensure_topics, subscription_dlq, subscription_out

log = get_logger("fanout")
CONTROL_S = 0.5
FRESHNESS_S = 10.0
BATCH = 500
LANES = 64  # deliveries of one partition on their way at once (distinct citizens); the receiver group-commits them
PROBE_BATCH = LANES  # changes a partition takes until its endpoint has answered (at start, after an open circuit)
HIGH_WATER = 2000  # records queued for one partition before its fetching pauses
# A partition whose batch has been out this long is stuck (a dead or slow subscriber retrying): it keeps one
# batch queued and fetches no more, so a dead subscriber stops costing the process's other subscriptions
# fetching and decoding (found by bench.fanout's isolation rounds).
STUCK_S = 1.0
RESTART_S = 2.0
RELOAD_S = 5.0  # how often the subscriptions file is looked at for changes (as the MLLP listener's sources file)
LOAD_CHUNK = 256  # records read in one MGET by a partition worker
REDIS_CONNECTIONS = 64  # shared by every subscription of the process; a full pool waits instead of failing


def subscription_topics(subs: tuple[Subscription, ...]) -> tuple[Topic, ...]:
    """The topics the engine needs beyond the catalogue: out.<name> for Kafka deliveries, dlq.<name> for all."""
    topics: list[Topic] = []
    for sub in subs:
        if not sub.runs_in_fanout:
            continue
        if sub.delivery.kind == "kafka":
            topics.append(subscription_out(sub.name))
        topics.append(subscription_dlq(sub.name))
    return tuple(topics)


class _Partition:
    """One partition of one subscription: its queue of fetched changes and the offset it has delivered."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.queue: deque[Any] = deque()
        self.arrived: deque[float] = deque()  # monotonic time each queued change was fetched (coalescing)
        self.wakeup = asyncio.Event()
        self.generation = 0  # bumped by a replay: a batch of an older generation does not move ``done``
        self.done: int | None = None  # next offset to commit
        self.committed: int | None = None
        self.task: asyncio.Task[None] | None = None
        self.lanes = asyncio.Semaphore(LANES)
        self.busy_since: float | None = None  # monotonic start of the batch being delivered

    def full(self, now: float) -> bool:
        """Enough is queued: stop fetching for this partition (one batch while stuck, HIGH_WATER otherwise)."""
        stuck = self.busy_since is not None and now - self.busy_since >= STUCK_S
        return len(self.queue) >= (BATCH if stuck else HIGH_WATER)

    def feed(self, records: list[Any]) -> None:
        if self.done is None and records:  # never committed: what came before was skipped by the reset policy
            self.done = records[0].offset
        now = time.monotonic()
        self.queue.extend(records)
        self.arrived.extend([now] * len(records))
        self.wakeup.set()

    def reset(self, offset: int) -> None:
        self.generation += 1
        self.queue.clear()
        self.arrived.clear()
        self.done = offset

    def take(self, limit: int) -> list[Any]:
        n = min(limit, len(self.queue))
        for _ in range(n):
            self.arrived.popleft()
        return [self.queue.popleft() for _ in range(n)]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: "SubscriptionRunner") -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.runner.revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runner.replay_checked = None  # check the replay request against the new partitions
        await self.runner.assigned(list(assigned))


class SubscriptionRunner:
    """Consume record.changes for one subscription and deliver; ``run`` until cancelled."""

    def __init__(self, settings: Settings, sub: Subscription, sink: Sink, producer: DurableProducer,
                 store: RedisRecordStore, state: SubscriptionState, turns: TurnPipeline | None = None) -> None:
        self.settings = settings
        self.sub = sub
        self.sink = sink
        self.producer = producer
        self.store = store
        self.state = state
        # The record MGETs of partitions woken by the same fetch share one pipeline (hub/fanout/turns.py).
        self._mget = turns.mget if turns is not None else store.redis.mget
        self.metrics = SubscriptionMetrics(sub.name)
        self.breaker = Breaker(sub.retry.first_s, sub.retry.max_s)
        self.dlq_topic = subscription_dlq(sub.name)
        self.running = asyncio.Event()
        self.running.set()
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.replay_checked: str | None = None
        self._consumer: AIOKafkaConsumer | None = None

    # --- the consumer loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.sub.group, client_id=self.sub.group,
            enable_auto_commit=False, auto_offset_reset=self.sub.start, max_poll_records=BATCH)
        consumer.subscribe([RECORD_CHANGES.name], listener=_Rebalance(self))
        await consumer.start()
        next_control = next_fresh = next_commit = 0.0
        commit_every = self.settings.stage_commit_interval_ms / 1000
        try:
            while True:
                now = time.monotonic()
                if now >= next_control:
                    await self._control(consumer)
                    next_control = now + CONTROL_S
                if now >= next_fresh and self.sub.format == formats.HEALTH_BOOK:
                    await self._freshness()
                    next_fresh = now + FRESHNESS_S
                fetched = await consumer.getmany(timeout_ms=200, max_records=BATCH)
                for tp, records in fetched.items():
                    self._partition(tp).feed(records)
                self._flow(consumer)
                if not fetched or now >= next_commit:  # busy: at most every interval (see Settings); idle: now
                    await self._commit(consumer)
                    next_commit = now + commit_every
                self._lag(consumer)
        finally:
            workers = [p.task for p in self.partitions.values() if p.task is not None]
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            with contextlib.suppress(KafkaError):
                await self._commit(consumer)
            await consumer.stop()
            self._consumer = None

    def _partition(self, tp: TopicPartition) -> _Partition:
        part = self.partitions.get(tp)
        if part is None:
            part = self.partitions[tp] = _Partition(tp)
            part.task = asyncio.create_task(self._work(part), name=f"{self.sub.group}-{tp.partition}")
        return part

    async def assigned(self, tps: list[TopicPartition]) -> None:
        """Know where each new partition stands. One this group never committed on gets its start (the log start
        for ``start = "earliest"``; for "latest", its first fetched offset) committed at once, so ``hub lag``
        shows the subscription's lag on every partition from the first moment."""
        consumer = self._consumer
        if consumer is None:
            return
        for tp in tps:
            with contextlib.suppress(KafkaError):
                committed = await consumer.committed(tp)
                part = self._partition(tp)
                if committed is not None:
                    part.done = part.committed = committed
                elif self.sub.start == "earliest" and part.done is None:
                    # The log start, never the fetch position: the fetcher may already hold records past it
                    # that are not delivered yet. Committed by the next _commit.
                    part.done = (await consumer.beginning_offsets([tp]))[tp]

    async def revoked(self, tps: list[TopicPartition]) -> None:
        consumer = self._consumer
        offsets = {}
        for tp in tps:
            part = self.partitions.pop(tp, None)
            if part is None:
                continue
            if part.task is not None:
                part.task.cancel()
            if part.done is not None and part.done != part.committed:
                offsets[tp] = part.done
        if offsets and consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.commit(offsets)

    def _flow(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        if not self.running.is_set() or self.breaker.parked():  # paused, or a dead endpoint: fetch nothing
            full = assigned
        else:
            now = time.monotonic()
            full = assigned & {tp for tp, p in self.partitions.items() if p.full(now)}
        paused = consumer.paused()  # only changes: aiokafka logs and resets fetch state on every call
        if full - paused:
            consumer.pause(*(full - paused))
        if (paused & assigned) - full:
            consumer.resume(*((paused & assigned) - full))

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets = {tp: p.done for tp, p in self.partitions.items() if p.done is not None and p.done != p.committed}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress: the next round commits again
            log.warning("commit failed; retrying next round", subscription=self.sub.name, error=type(exc).__name__)
            return
        for tp, offset in offsets.items():
            if tp in self.partitions:
                self.partitions[tp].committed = offset

    def _lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp, part in self.partitions.items():
            high = consumer.highwater(tp)
            if high is not None and part.done is not None:
                self.metrics.lag(tp.partition, max(0, high - part.done))

    # --- control: pause, replay, freshness -----------------------------------------------------------------

    async def _control(self, consumer: AIOKafkaConsumer) -> None:
        try:
            paused = await self.state.paused(self.sub.name)
            request = await self.state.replay_request(self.sub.name)
        except (OSError, aioredis.RedisError) as exc:
            log.warning("subscription state unreadable; keeping the last", subscription=self.sub.name,
                        error=type(exc).__name__)
            return
        if paused == self.running.is_set():
            log.info("subscription paused" if paused else "subscription resumed", subscription=self.sub.name)
            (self.running.clear if paused else self.running.set)()
        self.metrics.paused.set(1 if paused else 0)
        if request is not None and request.id != self.replay_checked:
            await self._replay(consumer, request)

    async def _replay(self, consumer: AIOKafkaConsumer, request: Any) -> None:
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not assigned:
            return  # not yet assigned: checked again after the rebalance
        done = await self.state.replay_done(self.sub.name)
        todo = [tp for tp in assigned if done.get(tp.partition) != request.id]
        if todo:
            found = await consumer.offsets_for_times({tp: request.since_ms for tp in todo})
            ends = await consumer.end_offsets(todo)
            targets = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in todo}
            for tp, offset in targets.items():
                self._partition(tp).reset(offset)
                consumer.seek(tp, offset)
            await consumer.commit(targets)
            for tp, offset in targets.items():
                self.partitions[tp].committed = offset
            await self.state.mark_replay_done(self.sub.name, [tp.partition for tp in todo], request.id)
            log.info("replay applied", subscription=self.sub.name, partitions=[tp.partition for tp in todo],
                     since_ms=request.since_ms)
        self.replay_checked = request.id

    async def _freshness(self) -> None:
        try:
            unpushed, stale = await self.state.freshness(self.sub.name)
        except (OSError, aioredis.RedisError):
            return
        self.metrics.unpushed.set(unpushed)
        self.metrics.stale.set(stale)

    # --- delivering one partition --------------------------------------------------------------------------

    async def _work(self, part: _Partition) -> None:
        while True:
            await part.wakeup.wait()
            await self.running.wait()
            if self.sub.coalesce_s and part.arrived:
                await asyncio.sleep(max(0.0, part.arrived[0] + self.sub.coalesce_s - time.monotonic()))
                await self.running.wait()
            if not part.queue:
                part.wakeup.clear()
                continue
            await self.breaker.ready()  # a dead endpoint: no new batch until the next probe is due
            generation = part.generation
            batch = part.take(BATCH if self.breaker.trusted else PROBE_BATCH)
            if not part.queue:
                part.wakeup.clear()
            part.busy_since = time.monotonic()
            try:
                await self._deliver_batch(batch, part.lanes)
            except Exception as exc:  # noqa: BLE001 - a bug must not stall the partition: isolate the culprit
                log.error("batch failed; delivering its changes one by one", subscription=self.sub.name,
                          partition=part.tp.partition, error=type(exc).__name__)
                await self._one_by_one(batch, part.lanes)
            finally:
                part.busy_since = None
            if generation == part.generation:
                part.done = batch[-1].offset + 1

    async def _one_by_one(self, batch: list[Change], lanes: asyncio.Semaphore) -> None:
        for change in batch:
            try:
                await self._deliver_batch([change], lanes)
            except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason, the rest goes on
                await self._dead_letter(change, f"internal: {type(exc).__name__}", None)

    async def _deliver_batch(self, batch: list[Change], lanes: asyncio.Semaphore) -> None:
        planned = await self._plan(batch)
        self.metrics.result("filtered", planned.filtered)
        self.metrics.result("withheld", planned.withheld)
        for change, reason in planned.failed:
            await self._dead_letter(change, reason, None)
        if planned.changed:
            await self._until_done(lambda: self.state.changed(self.sub.name, planned.changed), "freshness")
        pushed: list[str] = []
        await asyncio.gather(*(self._lane(items, planned, lanes, pushed) for items in planned.lanes.values()))
        if pushed:  # one freshness write per batch, not a round trip per push ahead of the lane's next delivery
            now_ms = int(time.time() * 1000)
            await self._until_done(lambda: self.state.pushed(self.sub.name, pushed, now_ms), "freshness")

    async def _plan(self, batch: list[Change]) -> Planned:
        delay = 0.2
        while True:  # the record store down: wait for it (the lag shows), never skip the batch
            try:
                return await plan(self.sub, batch, self._load)
            except (OSError, aioredis.RedisError) as exc:
                log.warning("record store unreachable; retrying", subscription=self.sub.name,
                            error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _load(self, citizen_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """The batch's records in one MGET per LOAD_CHUNK; a merged citizen's redirect is followed by the store's
        public ``load`` (the one reader of redirects), so only those few cost a round trip of their own."""
        records: dict[str, dict[str, Any] | None] = {}
        redirects = []
        for i in range(0, len(citizen_ids), LOAD_CHUNK):
            chunk = citizen_ids[i:i + LOAD_CHUNK]
            raws = await self._mget([record_key(c, self.store.prefix) for c in chunk])
            for citizen_id, raw in zip(chunk, raws, strict=True):
                record = orjson.loads(raw) if raw else None
                if record is not None and is_redirect(record):
                    redirects.append(citizen_id)
                records[citizen_id] = visible(record) if record is not None else None
        for citizen_id, record in zip(redirects, await asyncio.gather(*(self.store.load(c) for c in redirects)),
                                      strict=True):
            records[citizen_id] = record
        return records

    async def _lane(self, items: list[formats.Outbound], planned: Planned, lanes: asyncio.Semaphore,
                    pushed: list[str]) -> None:
        async with lanes:
            for item in items:
                await self._deliver(item, planned, pushed)

    async def _deliver(self, item: formats.Outbound, planned: Planned, pushed: list[str]) -> None:
        started = time.perf_counter()
        outcome = await with_retries(lambda: self.breaker.call(lambda: self.sink.send(item)), self.sub.retry,
                                     on_retry=lambda attempt, reason: self.metrics.retries.inc())
        self.metrics.seconds.observe(time.perf_counter() - started)
        change = planned.source[item.key]
        if not outcome.delivered:
            log.warning("delivery dead-lettered", subscription=self.sub.name, attempts=outcome.attempts,
                        reason=outcome.reason)
            await self._dead_letter(change, outcome.reason, item)
            return
        self.metrics.result("delivered")
        if item.format == formats.HEALTH_BOOK:
            now_ms = int(time.time() * 1000)
            first = planned.changed.get(item.citizen_id)
            if first is not None:
                self.metrics.push_latency.observe(max(0.0, (now_ms - first) / 1000))
            pushed.append(item.citizen_id)

    async def _dead_letter(self, change: Change, reason: str, item: formats.Outbound | None) -> None:
        headers = {"subscription": self.sub.name}
        if item is not None:
            headers |= {"idempotency_key": item.key, "format": item.format}
        letter = DeadLetter(
            stage="fanout", code=DeliveryError.code, reason=reason, original=change.value,
            source_topic=RECORD_CHANGES.name, source_partition=getattr(change, "partition", None),
            source_offset=change.offset, headers=headers,
            failed_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        await self._until_done(lambda: self.producer.write(self.dlq_topic.name, letter.to_json(), key=change.key),
                               "dead letter")
        self.metrics.result("dead_lettered")
        self.metrics.dlq.inc()

    async def _until_done(self, action: Any, what: str) -> None:
        """Hub-internal writes (DLQ, freshness) are retried until they succeed: nothing is committed past them."""
        delay = 0.2
        while True:
            try:
                await action()
                return
            except (DeliveryError, OSError, aioredis.RedisError) as exc:
                log.warning(f"{what} write failed; retrying", subscription=self.sub.name, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


@dataclass
class _Running:
    """One subscription being delivered: what it was started from, its sink, its task."""

    sub: Subscription
    sink: Sink
    task: asyncio.Task[None]


class Engine:
    """Every subscription of the file that the fan-out delivers, each in its own task; ``run`` until cancelled.

    With ``watch`` (the subscriptions file), the file is looked at every ``RELOAD_S``: a subscription added
    starts, one removed stops (its consumer group keeps its offsets, so adding it back resumes where it
    stopped), one changed restarts with its new settings; the others are not touched. A file that no longer
    validates is logged with every problem and the running subscriptions go on as they were.
    """

    def __init__(self, settings: Settings, subs: tuple[Subscription, ...], *, watch: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.subs = tuple(s for s in subs if s.runs_in_fanout)
        self.runners: dict[str, SubscriptionRunner] = {}
        self._watch, self._env = watch, env
        self._stamp = _stamp_of(watch) if watch is not None else None

    def _sink(self, sub: Subscription, producer: DurableProducer) -> Sink:
        if sub.delivery.kind == "kafka":
            return KafkaSink(producer, subscription_out(sub.name))
        if sub.delivery.dev_secret:
            log.warning("webhook signs with the dev-only secret; set its secret_env outside demos",
                        subscription=sub.name, secret_env=sub.delivery.secret_env)
        return WebhookSink(sub.name, sub.delivery.url or "", sub.delivery.secret, sub.delivery.timeout_s)

    async def run(self) -> None:
        if not self.subs and self._watch is None:
            log.info("no subscriptions to deliver")
            return
        producer = DurableProducer(self.settings, client_id="hssk-fanout-deliveries", max_batch_bytes=256 * 1024)
        await producer.connect()
        # redis-py's default pool raises MaxConnectionsError at 100 connections; partition workers of several
        # subscriptions reading records side by side would hit it, so they wait for a connection instead.
        client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(  # from_pool: closed with it
            self.settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=30))
        turns = TurnPipeline(client)
        store, state = RedisRecordStore(client), SubscriptionState(client, turns)

        def start(sub: Subscription) -> _Running:
            sink = self._sink(sub, producer)
            runner = self.runners[sub.name] = SubscriptionRunner(self.settings, sub, sink, producer, store, state, turns)
            return _Running(sub, sink, asyncio.create_task(_keep_running(runner), name=sub.group))

        running: dict[str, _Running] = {}
        try:
            await self._apply(self.subs, running, start)
            if self._watch is None:
                await asyncio.Event().wait()  # the runners go on until cancelled
            while True:
                await asyncio.sleep(RELOAD_S)
                changed = self._reload()
                if changed is not None:
                    try:
                        await self._apply(changed, running, start)
                    except (KafkaError, DeliveryError, OSError) as exc:  # e.g. Kafka down creating new topics
                        log.error("subscriptions not all started; trying again", error=type(exc).__name__)
                        self._stamp = None  # the next look applies the file again
        finally:
            await self._stop(list(running.values()))
            await producer.stop()
            await client.aclose()

    def _reload(self) -> tuple[Subscription, ...] | None:
        """The file's subscriptions if it changed since it was last applied and still validates; else None."""
        assert self._watch is not None
        stamp = _stamp_of(self._watch)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            subs = load(self._watch, self._env)
        except SubscriptionConfigError as exc:
            log.error("subscriptions file not valid; the running subscriptions go on unchanged",
                      source=exc.source, problems=exc.problems)
            return None
        return tuple(s for s in subs if s.runs_in_fanout)

    async def _apply(self, subs: tuple[Subscription, ...], running: dict[str, _Running],
                     start: Callable[[Subscription], _Running]) -> None:
        """Make the running subscriptions ``subs``: stop the removed and changed ones, start the new ones."""
        wanted = {s.name: s for s in subs}
        gone = [running.pop(name) for name, r in list(running.items()) if wanted.get(name) != r.sub]
        await self._stop(gone)
        new = [s for s in subs if s.name not in running]
        if new:
            await ensure_topics(self.settings, extra=subscription_topics(tuple(new)))
        for sub in new:
            running[sub.name] = start(sub)
        self.subs = subs
        if gone or new:
            log.info("subscriptions delivering", subscriptions=[s.name for s in subs],
                     started=[s.name for s in new], stopped=[r.sub.name for r in gone])

    async def _stop(self, stopping: list[_Running]) -> None:
        for r in stopping:  # once: a second cancel would interrupt a runner closing its consumer
            if not r.task.done() and not r.task.cancelling():
                r.task.cancel()
        await asyncio.gather(*(r.task for r in stopping), return_exceptions=True)
        for r in stopping:
            await r.sink.close()
            self.runners.pop(r.sub.name, None)


def _stamp_of(path: Path) -> Stamp | None:
    """The file's stamp; None while it cannot be read (``load`` then says why, once per change)."""
    try:
        return file_stamp(path)
    except OSError:
        return None


async def _keep_running(runner: SubscriptionRunner) -> None:
    """A runner that fails (Kafka gone, a bug) is restarted after a pause; the other subscriptions go on."""
    while True:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolation: one subscription's failure stops only itself
            log.error("subscription runner failed; restarting", subscription=runner.sub.name,
                      error=type(exc).__name__)  # the type only: an exception's text may quote data
            runner.partitions.clear()
            await asyncio.sleep(RESTART_S)
