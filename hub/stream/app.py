"""Shared stream wiring: one faust app per role, and the batch loop every stage runs in it.

Each stage consumes in batches (up to 500 events, 20 ms window), awaits every output's acknowledgement, runs
its after-batch hook, and only then may commit the batch's offsets (at most every
``HSSK_STAGE_COMMIT_INTERVAL_MS`` while busy, at once when idle): a failed write or a crash replays batches,
never skips one. The loop is plain aiokafka inside a faust task; ``StageLoop`` says why.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError, IllegalStateError, KafkaError, MessageSizeTooLargeError, OutOfOrderSequenceNumber,
    RecordTooLargeError, UnknownProducerId,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.envelope import DeadLetter, Envelope, original_head
from hub.errors import HubError, OutputRefused
from hub.logging import get_logger
from hub.ops import metrics
from hub.partition import KeyPartitioner
from hub.settings import Settings
from hub.stream.spinner import restore_root_level
from hub.topics import DLQ, Topic

log = get_logger("stream")
BATCH_SIZE = 500
BATCH_WINDOW_S = 0.02
GC_FIRST_GENERATION = 50_000
# A batch that fails on one of these failed because a store (Redis, a socket) was unreachable, not because of
# its events: it is run again after a pause, capped, until it succeeds (the stage stalls and its lag shows it),
# instead of sending every event of it to hub.dlq. The chaos test found identity dead-lettering ~100 events
# during a one-second Redis restart. (The warehouse retries PostgreSQL inside its own step.)
UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
# The stage producers' record limit (the broker accepts 10 MiB + 64 KiB). A dead letter base64-encodes its
# input (4/3): inputs up to 7 MiB are kept whole in hub.dlq, longer ones keep their head (``dead_letter``).
MAX_RECORD_BYTES = 10 * 1024 * 1024
DLQ_ORIGINAL_MAX = 7 * 1024 * 1024
DLQ_HEAD_BYTES = 512 * 1024
# Kafka errors that no retry can cure: the output itself is refused (too big), so its event goes to hub.dlq.
# Every other KafkaError re-runs the batch after a pause; aiokafka's ``retriable`` flag cannot tell them apart
# (KafkaTimeoutError, what a broker outage gives, is not ``retriable`` either).
REFUSED_FOR_GOOD: tuple[type[KafkaError], ...] = (MessageSizeTooLargeError, RecordTooLargeError)
# After the broker refuses a batch, an idempotent producer's sequence numbers run ahead of the broker's and
# every later batch to that partition fails with OutOfOrderSequenceNumber (found by test_stage_loop): only a
# new producer (a new producer id) writes again.
PRODUCER_BROKEN: tuple[type[KafkaError], ...] = (*REFUSED_FOR_GOOD, OutOfOrderSequenceNumber, UnknownProducerId)


@dataclass(frozen=True, slots=True)
class Incoming:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    topic: str
    partition: int
    offset: int
    timestamp: float  # Kafka record time, seconds since the epoch


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: Topic
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


Step = Callable[[Incoming], Awaitable[list[Outgoing]]]
# A batch step answers each input, in order, with its outputs or the exception that stopped it. Stages that
# talk to Redis take whole batches so one pipeline round trip serves hundreds of events.
Result = list[Outgoing] | Exception
BatchStep = Callable[[list[Incoming]], Awaitable[list[Result]]]
AfterBatch = Callable[[], Awaitable[None]]


def each(step: Step) -> BatchStep:
    """Adapt a per-event step to a batch step."""

    async def run(batch: list[Incoming]) -> list[Result]:
        results: list[Result] = []
        for incoming in batch:
            try:
                results.append(await step(incoming))
            except Exception as exc:  # noqa: BLE001 - every failure goes to the DLQ, none stops the stage
                results.append(exc)
        return results

    return run


def make_app(role: str, settings: Settings) -> faust.App:
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"hssk-{role}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.state_dir / "faust" / role),
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,  # topics come from the catalogue (hub topics create)
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # A stage sends a whole batch at once: a short linger and large batches turn hundreds of sends into
        # a few produce requests (with linger 0 the socket writes of one request per send dominated).
        producer_linger=0.005,
        producer_max_batch_size=512 * 1024,
        broker_commit_interval=1.0,
        topic_partitions=settings.topic_partitions,
    )
    # Started with the worker (faust tasks do not run under agent.test_context, so unit tests bind no port).
    app.task(_metrics_server(role, settings))
    # faust is the worker around the stage loops (start-up, signals, tasks): it subscribes to nothing itself, so
    # it starts without its consumer and conductor (an app with no agents would subscribe to no topics, which
    # aiokafka refuses).
    app.producer_only = True
    # A batch builds tens of thousands of short-lived, acyclic dicts; with the default first-generation threshold
    # (700) the collector ran many times per batch and rescanned the role's long-lived caches (the same finding
    # as the bulk import's bulk_gc). Collections stay on, just rarer.
    gc.set_threshold(GC_FIRST_GENERATION, 20, 20)
    # At HSSK_LOG_LEVEL=warning faust's start-up spinner leaves the root logger at DEBUG: undo it for every role.
    restore_root_level(app, settings)
    return app


def _metrics_server(role: str, settings: Settings) -> Callable[[], Awaitable[None]]:
    async def serve_metrics() -> None:
        metrics.serve(role, settings)

    return serve_metrics


def read_envelope(incoming: Incoming) -> Envelope | HubError:
    """The event in a record of an internal topic, or the error that sends the record to the DLQ."""
    try:
        return Envelope.from_json(incoming.value)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return HubError(f"not a canonical event ({type(exc).__name__})")


def dead_letter(stage: str, incoming: Incoming, exc: Exception) -> Outgoing:
    """The hub.dlq record for an input the stage could not handle. An input too big to fit in one DLQ record
    once base64-encoded keeps only its head, with ``original_bytes``/``original_sha256`` headers (the
    convention of connectors/xml130/results.py); the whole input stays at its source coordinates."""
    code = exc.code if isinstance(exc, HubError) else "internal"
    reason = exc.reason if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
    headers = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for k, v in incoming.headers.items()}
    original = incoming.value
    if len(original) > DLQ_ORIGINAL_MAX:
        original, whole = original_head(original, DLQ_HEAD_BYTES)
        headers.update(whole)
        reason += (f" (hub.dlq keeps its first {DLQ_HEAD_BYTES} bytes; the whole input is at "
                   f"{incoming.topic}/{incoming.partition}/{incoming.offset})")
    letter = DeadLetter(
        stage=stage, code=code, reason=reason, original=original,
        source_topic=incoming.topic, source_partition=incoming.partition, source_offset=incoming.offset,
        headers=headers, failed_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    )
    return Outgoing(DLQ, incoming.key, letter.to_json(), (("stage", stage.encode()),))


def _unreachable(results: list[Result] | None) -> BaseException | None:
    return next((r for r in results or () if isinstance(r, UNREACHABLE)), None)


async def _until_reachable(stage: str, call: Callable[[], Awaitable[Any]], size: int | None) -> Any:
    """``call()`` until it neither raises nor answers an event with an UNREACHABLE error. For a batch step
    (``size`` events) any other exception becomes every event's answer, so each goes to the DLQ with it; for
    an after-batch hook (``size`` None) it propagates."""
    pause = RETRY_FIRST_S
    while True:
        try:
            results = await call()
        except UNREACHABLE as exc:
            error: BaseException | None = exc
        except Exception as exc:  # noqa: BLE001 - a failing batch step fails each of its events
            if size is None:
                raise
            return [exc] * size
        else:
            error = _unreachable(results) if size is not None else None
            if error is None:
                return results
        log.warning("a store is unreachable; the batch is run again", stage=stage, error=type(error).__name__,
                    retry_in_s=pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, RETRY_MAX_S)


def add_stage(app: faust.App, settings: Settings, stage: str, source: Topic, step: BatchStep,
              after_batch: AfterBatch | None = None) -> StageLoop:
    """Run ``step`` over ``source`` in batches, as a task of the role's faust worker; failures go to hub.dlq.

    ``step`` may be called again with the same batch (after an UNREACHABLE error, after a Kafka write failed, or
    after a crash, by the next worker): it must give the same answers the second time, whatever the first call
    had written.

    ``after_batch`` runs once the batch's outputs are durable and before its offsets are committed:
    the place for side effects that must not happen unless the outputs exist (e.g. saving a record).
    """
    loop = StageLoop(app.conf.id, stage, source, step, after_batch, settings)
    app.task(loop.run)
    return loop


class StageLoop:
    """One stage's consume -> step -> produce -> commit loop on aiokafka, in the role's consumer group.

    Why not a faust agent: measured by ``bench.stage_overhead``, a faust agent copying events (take_events,
    per-event sends through faust's producer buffer, its offset tracking) used ~750 µs of CPU per event, a
    plain aiokafka batch loop doing the same ~70 µs: faust's per-event machinery was most of every stage's
    cost. faust stays the worker around it (start-up, signals, tasks, the metrics server).

    Offsets are committed only after the batch's outputs are acknowledged (acks=all, idempotent producer)
    and ``after_batch`` has run, so a crash or a rebalance replays the batch instead of skipping it.
    """

    def __init__(self, group: str, stage: str, source: Topic, step: BatchStep, after_batch: AfterBatch | None,
                 settings: Settings) -> None:
        self.group, self.stage, self.source = group, stage, source
        self.step, self.after_batch, self.settings = step, after_batch, settings
        self.counted = metrics.StageMetrics(stage)
        self._producer: AIOKafkaProducer  # made by ``run``
        self._partitioner = KeyPartitioner()  # kept across producers: its memory of keys stays valid

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group,
            client_id=f"{self.group}-{self.stage}", enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_min_bytes=self.settings.stage_fetch_min_bytes,
            fetch_max_wait_ms=self.settings.stage_fetch_max_wait_ms)
        offsets = _Offsets(self.stage, consumer, self.settings.stage_commit_interval_ms / 1000)
        consumer.subscribe([self.source.name], listener=offsets)
        await _until_started(self.stage, consumer)
        self._producer = await self._new_producer()
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=int(BATCH_WINDOW_S * 1000), max_records=BATCH_SIZE)
                if fetched:
                    await self._batch([r for records in fetched.values() for r in records])
                    offsets.done({tp: records[-1].offset + 1 for tp, records in fetched.items()})
                await offsets.commit(due_only=bool(fetched))
        finally:
            try:
                async with asyncio.timeout(5):
                    await offsets.commit(due_only=False)
            except (KafkaError, TimeoutError):
                pass  # not committed: the next owner replays those batches
            await asyncio.gather(self._producer.stop(), consumer.stop(), return_exceptions=True)

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, client_id=f"{self.group}-{self.stage}", acks="all",
            enable_idempotence=True, linger_ms=5, max_batch_size=512 * 1024, max_request_size=MAX_RECORD_BYTES,
            partitioner=self._partitioner)
        await _until_started(self.stage, producer)
        return producer

    async def _send(self, outputs: list[Outgoing]) -> list[KafkaError | None]:
        """``_send_all`` on the stage's producer, replaced by a new one when a refusal broke its sequence."""
        errors = await _send_all(self._producer, outputs)
        if any(isinstance(e, PRODUCER_BROKEN) for e in errors):
            old, self._producer = self._producer, await self._new_producer()
            await old.stop()
        return errors

    async def _batch(self, records: list[Any]) -> None:
        started = time.perf_counter()
        batch = [Incoming(r.key, r.value, dict(r.headers or ()), r.topic, r.partition, r.offset, r.timestamp / 1000)
                 for r in records]
        refused: dict[int, str] = {}  # input index -> the Kafka error that refused one of its outputs for good
        pause = RETRY_FIRST_S
        while True:
            results = await _until_reachable(self.stage, lambda: self.step(batch), len(batch))
            failures: list[str] = []
            outputs: list[Outgoing] = []
            owners: list[int] = []  # outputs[j] answers batch[owners[j]]
            for i, (incoming, result) in enumerate(zip(batch, results, strict=True)):
                if i in refused:
                    result = OutputRefused(f"Kafka refused an output of this event for good ({refused[i]})")
                if isinstance(result, Exception):
                    failures.append(metrics.failure_code(result))
                    if not isinstance(result, HubError):
                        log.error("stage step failed", stage=self.stage, partition=incoming.partition,
                                  offset=incoming.offset, error=type(result).__name__)
                    result = [dead_letter(self.stage, incoming, result)]
                outputs.extend(result)
                owners.extend([i] * len(result))
            errors = await self._send(outputs)
            for j, e in enumerate(errors):
                # A broker refusing a produce batch fails every record in it: send a refused output alone to
                # learn whether it, or only a neighbour, is too big.
                if isinstance(e, REFUSED_FOR_GOOD):
                    errors[j] = (await self._send([outputs[j]]))[0]
            if not any(errors):
                break
            newly = {owners[j]: type(e).__name__ for j, e in enumerate(errors)
                     if isinstance(e, REFUSED_FOR_GOOD) and owners[j] not in refused}
            for i, error in newly.items():
                log.error("Kafka refused an output for good; the event goes to hub.dlq", stage=self.stage,
                          partition=batch[i].partition, offset=batch[i].offset, error=error)
            refused.update(newly)
            if newly and all(e is None or isinstance(e, REFUSED_FOR_GOOD) for e in errors):
                continue  # run the batch again at once, with those events dead-lettered
            # Kafka timed out or refused a write for now: run the batch again after a pause, skip nothing.
            log.warning("writing the batch's outputs failed; the batch is run again", stage=self.stage,
                        error=type(next(e for e in errors if e is not None)).__name__, retry_in_s=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
        if self.after_batch is not None:
            await _until_reachable(self.stage, self.after_batch, None)
        self.counted.batch_done(len(batch), failures, [o.topic.name for o in outputs], time.perf_counter() - started)


class _Offsets(ConsumerRebalanceListener):
    """The offsets of a stage's finished batches, committed at most every ``interval_s`` while batches keep
    coming and at once when the input pauses (or its partitions are taken away): a commit per batch is a
    request and a write to __consumer_offsets, which at a steady low rate is paid for every event or two.
    Only finished batches are ever committed, so a crash replays at most ``interval_s`` of them."""

    def __init__(self, stage: str, consumer: AIOKafkaConsumer, interval_s: float) -> None:
        self.stage, self.consumer, self.interval_s = stage, consumer, interval_s
        self.pending: dict[TopicPartition, int] = {}
        self.last = time.monotonic()

    def done(self, offsets: dict[TopicPartition, int]) -> None:
        self.pending.update(offsets)

    async def commit(self, due_only: bool) -> None:
        if not self.pending or (due_only and time.monotonic() - self.last < self.interval_s):
            return
        offsets = dict(self.pending)
        self.last = time.monotonic()
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # partitions moved while the batches ran
            log.warning("offsets not committed; the batches are replayed by the partition's owner",
                        stage=self.stage, error=type(exc).__name__)
        # Dropped only now: a commit cut short (the stage stopping mid-request) leaves them for the last one.
        for tp, offset in offsets.items():
            if self.pending.get(tp) == offset:
                del self.pending[tp]

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.commit(due_only=False)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass


async def _send_all(producer: AIOKafkaProducer, outputs: list[Outgoing]) -> list[KafkaError | None]:
    """Send every output and wait for all of them: each one's error (None once acknowledged), so a batch can
    tell an output Kafka refuses for good (REFUSED_FOR_GOOD: dead-letter its event) from a passing failure."""
    sent: list[asyncio.Future[Any] | KafkaError] = []
    for o in outputs:
        try:
            sent.append(await producer.send(o.topic.name, o.value, key=o.key, headers=list(o.headers)))
        except KafkaError as exc:  # refused before queueing, e.g. MessageSizeTooLargeError
            sent.append(exc)
    errors: list[KafkaError | None] = []
    for item in sent:
        if isinstance(item, KafkaError):
            errors.append(item)
            continue
        try:
            await item
            errors.append(None)
        except KafkaError as exc:
            errors.append(exc)
    return errors


async def _until_started(stage: str, client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Start a Kafka client, waiting for the broker if it is not up yet (roles may start before Kafka)."""
    pause = RETRY_FIRST_S
    while True:
        try:
            await client.start()
            return
        except KafkaError as exc:
            log.warning("Kafka not reachable; retrying", stage=stage, error=type(exc).__name__, retry_in_s=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)
