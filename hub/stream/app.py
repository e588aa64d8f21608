"""Shared faust wiring: one app per role, and the batch loop every stage uses.

faust sends one message at a time by default (users report ~300-500 msg/s per agent); consuming in
batches with ``take_events`` and awaiting the batch's sends together is what makes a stage fast. Offsets
are committed by faust only after the batch is acknowledged, and only after its producer is flushed;
we also await every send's future, so a failed write fails the batch instead of being committed past.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import faust
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.envelope import DeadLetter, Envelope
from hub.errors import HubError
from hub.logging import get_logger
from hub.ops import metrics
from hub.settings import Settings
from hub.topics import DLQ, Topic

log = get_logger("stream")
BATCH_SIZE = 500
BATCH_WINDOW_S = 0.02
# A batch that fails on one of these failed because a store (Redis, a socket) was unreachable, not because of
# its events: it is run again after a pause, capped, until it succeeds (the stage stalls and its lag shows it),
# instead of sending every event of it to hub.dlq. The chaos test found identity dead-lettering ~100 events
# during a one-second Redis restart. (The warehouse retries PostgreSQL inside its own step.)
UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


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
    code = exc.code if isinstance(exc, HubError) else "internal"
    reason = exc.reason if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
    letter = DeadLetter(
        stage=stage, code=code, reason=reason, original=incoming.value,
        source_topic=incoming.topic, source_partition=incoming.partition, source_offset=incoming.offset,
        headers={k: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for k, v in incoming.headers.items()},
        failed_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
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


def add_stage(app: faust.App, stage: str, source: Topic, step: BatchStep,
              after_batch: AfterBatch | None = None) -> Any:
    """Register an agent that runs ``step`` over ``source`` in batches; failures go to hub.dlq.

    ``step`` may be called again with the same batch (after an UNREACHABLE error, or after a crash, by the
    next worker): it must give the same answers the second time, whatever the first call had written.

    ``after_batch`` runs once the batch's outputs are durable and before its offsets can be committed:
    the place for side effects that must not happen unless the outputs exist (e.g. saving a record).
    """
    topics: dict[str, faust.TopicT] = {}
    counted = metrics.StageMetrics(stage)

    def topic(t: Topic) -> faust.TopicT:
        if t.name not in topics:
            topics[t.name] = app.topic(t.name, key_type=bytes, value_type=bytes)
        return topics[t.name]

    async def run(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WINDOW_S):
            started = time.perf_counter()
            batch = [Incoming(e.key, e.value, dict(e.headers or {}), e.message.topic, e.message.partition,
                              e.message.offset, e.message.timestamp) for e in events]
            results = await _until_reachable(stage, lambda: step(batch), len(batch))
            pending, failures, written = [], [], []
            for incoming, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    failures.append(metrics.failure_code(result))
                    if not isinstance(result, HubError):
                        log.error("stage step failed", stage=stage, partition=incoming.partition,
                                  offset=incoming.offset, error=type(result).__name__)
                    result = [dead_letter(stage, incoming, result)]
                for out in result:
                    written.append(out.topic.name)
                    pending.append(await topic(out.topic).send(key=out.key, value=out.value, headers=list(out.headers)))
            await asyncio.gather(*pending)
            if after_batch is not None:
                await _until_reachable(stage, after_batch, None)
            counted.batch_done(len(batch), failures, written, time.perf_counter() - started)

    run.__name__ = f"{stage}_agent"
    return app.agent(topic(source), name=f"hssk.{stage}")(run)
