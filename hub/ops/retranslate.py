"""Re-run translation over a range of ``hl7v2.raw`` and publish the events again (``hub retranslate``).

After a mapping fix an operator re-translates what arrived in a window, chosen by time or by partition and
offsets. Translation is deterministic and event ids are derived from the source, so consumers absorb the
events they already have (same ids, same bytes) and the messages that failed before now reach the record.
What still fails goes to ``hub.dlq`` exactly as in the live stage, with its raw coordinates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from hub.errors import DeliveryError
from hub.kafka import DurableProducer
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, dead_letter
from hub.stream.translator import translate_step
from hub.topics import HL7V2_RAW

STAGE = "translate"
_SEND_CHUNK = 500  # writes awaited together: acks=all costs one round trip per produce request, not per record


@dataclass(frozen=True)
class RawRange:
    """Which raw records to re-translate: a time window and/or one partition's offsets (inclusive)."""

    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    def __post_init__(self) -> None:
        if (self.from_offset is not None or self.to_offset is not None) and self.partition is None:
            raise ValueError("offsets are per partition: give --partition with --from-offset/--to-offset")
        if self.since_ms is not None and self.until_ms is not None and self.until_ms < self.since_ms:
            raise ValueError("--until is before --since")


@dataclass
class Summary:
    read: int = 0
    events: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


async def _bounds(consumer: AIOKafkaConsumer, tps: list[TopicPartition], selection: RawRange
                  ) -> dict[TopicPartition, tuple[int, int]]:
    """[start, end) offsets per partition; the end is fixed now, so records arriving meanwhile are left alone."""
    ends = await consumer.end_offsets(tps)
    starts = await consumer.beginning_offsets(tps)
    bounds = {tp: (starts[tp], ends[tp]) for tp in tps}
    for limit_ms, is_start in ((selection.since_ms, True), (selection.until_ms, False)):
        if limit_ms is None:
            continue
        found = await consumer.offsets_for_times({tp: limit_ms for tp in tps})
        for tp in tps:
            offset = found[tp].offset if found.get(tp) is not None else ends[tp]
            lo, hi = bounds[tp]
            bounds[tp] = (max(lo, offset), hi) if is_start else (lo, min(hi, offset))
    if selection.from_offset is not None or selection.to_offset is not None:
        tp = tps[0]
        lo, hi = bounds[tp]
        if selection.from_offset is not None:
            lo = max(lo, selection.from_offset)
        if selection.to_offset is not None:
            hi = min(hi, selection.to_offset + 1)
        bounds[tp] = (lo, hi)
    return {tp: b for tp, b in bounds.items() if b[0] < b[1]}


async def retranslate(settings: Settings, selection: RawRange, *, dry_run: bool = False) -> Summary:
    """Translate every raw record in ``selection`` and (unless ``dry_run``) publish the results."""
    consumer = AIOKafkaConsumer(HL7V2_RAW.name, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = None if dry_run else DurableProducer(settings, client_id="hssk-retranslate")
    summary = Summary()
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise DeliveryError(f"reading {HL7V2_RAW.name}: Kafka not reachable ({type(exc).__name__})") from exc
    try:
        if producer is not None:
            async with asyncio.timeout(30):
                await producer.connect()
        partitions = sorted(consumer.partitions_for_topic(HL7V2_RAW.name) or ())
        if selection.partition is not None:
            if selection.partition not in partitions:
                raise ValueError(f"{HL7V2_RAW.name} has no partition {selection.partition}")
            partitions = [selection.partition]
        tps = [TopicPartition(HL7V2_RAW.name, p) for p in partitions]
        consumer.unsubscribe()
        consumer.assign(tps)
        bounds = await _bounds(consumer, tps, selection)
        for tp, (start, _) in bounds.items():
            consumer.seek(tp, start)
        todo = dict(bounds)
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=1000)
            outgoing: list[Outgoing] = []
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= todo[tp][1]:
                        break
                    outgoing += await _translate(record, summary)
            if producer is not None:
                await _publish(producer, outgoing)
            todo = {tp: b for tp, b in todo.items() if await consumer.position(tp) < b[1]}
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    return summary


async def _translate(record, summary: Summary) -> list[Outgoing]:  # noqa: ANN001 - an aiokafka ConsumerRecord
    incoming = Incoming(record.key, record.value, dict(record.headers), record.topic, record.partition,
                        record.offset, record.timestamp / 1000)
    summary.read += 1
    try:
        events = await translate_step(incoming)
    except Exception as exc:  # noqa: BLE001 - as in the live stage: every failure is dead-lettered
        summary.failed += 1
        reason = getattr(exc, "reason", type(exc).__name__).split(":", 1)[0]
        summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
        return [dead_letter(STAGE, incoming, exc)]
    summary.events += len(events)
    return events


async def _publish(producer: DurableProducer, outgoing: list[Outgoing]) -> None:
    for i in range(0, len(outgoing), _SEND_CHUNK):
        await producer.write_many([(o.topic.name, o.value, o.key, o.headers) for o in outgoing[i:i + _SEND_CHUNK]])
