"""Consumer lag, exact: per consumer group, topic and partition, in messages and in seconds.

Lag in messages is the log end offset minus the committed offset (the next offset the group will read).
Lag in seconds is the age of the oldest unconsumed message: now minus the timestamp of the record at the
committed offset, 0 when the group is caught up. A group that has committed nothing on a partition it
should read (a hub role before its first commit) is measured from the log start.

The Prometheus names are those of kafka-lag-exporter, so its dashboards and alerts work unchanged.
Labels are group, topic and partition: names of the hub's own making, never personal data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from hub.errors import DeliveryError
from hub.settings import Settings
from hub.topics import DLQ, EVENTS_CANONICAL, EVENTS_CITIZEN, HL7V2_RAW, RECORD_CHANGES

# Each stream role's consumer group reads one catalogue topic; these groups are reported even before they commit.
ROLE_SOURCES = {
    "translator": HL7V2_RAW.name, "identity": EVENTS_CANONICAL.name,
    "record": EVENTS_CITIZEN.name, "fanout": RECORD_CHANGES.name, "warehouse": EVENTS_CITIZEN.name,
}
_FETCH_TIMEOUT_S = 5.0


def group_of(role: str) -> str:
    return f"hssk-{role}"


ROLE_GROUPS = {group_of(role): topic for role, topic in ROLE_SOURCES.items()}


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    log_end_offset: int
    committed_offset: int | None  # None: the group has committed nothing here
    lag: int  # messages
    lag_seconds: float | None = None  # age of the oldest unconsumed message; None when not measured

    def to_dict(self) -> dict:
        return asdict(self)


class KafkaUnavailable(DeliveryError):
    """Kafka could not be asked (down, unreachable, or not answering in time)."""


def lag_messages(end: int, committed: int | None, start: int) -> int:
    """Messages the group has still to read: from its committed offset (or the log start) to the end.

    A committed offset below the log start (records deleted by retention) counts from the log start: the
    group can only read what is still there.
    """
    position = start if committed is None or committed < 0 else max(committed, start)
    return max(0, end - position)


def lag_seconds(oldest_unread_ms: int | None, now_ms: int, lag: int) -> float | None:
    """Age in seconds of the oldest unread record; 0 when nothing is unread, None when it could not be read."""
    if lag == 0:
        return 0.0
    if oldest_unread_ms is None:
        return None
    return max(0.0, (now_ms - oldest_unread_ms) / 1000)


async def admin_client(settings: Settings, timeout_s: float = 5.0) -> AIOKafkaAdminClient:
    """A started admin client, or KafkaUnavailable naming the address."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s * 2):
            await admin.start()
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise KafkaUnavailable(f"reading consumer lag: Kafka at {settings.kafka_bootstrap} is not reachable "
                               f"({type(exc).__name__})") from exc
    return admin


async def _group_names(admin: AIOKafkaAdminClient) -> list[str]:
    listed = await admin.list_consumer_groups()
    names = {g[0] for g in listed if len(g) < 2 or g[1] in ("consumer", "")}
    return sorted(names | set(ROLE_GROUPS))


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        parts = consumer.partitions_for_topic(topic)
    return set(parts or ())


async def _committed(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str
                     ) -> dict[TopicPartition, int | None]:
    """What the group has committed, plus (for a hub role) every partition of its source topic."""
    found = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
             if meta is not None and meta.offset >= 0}
    result: dict[TopicPartition, int | None] = dict(found)
    if group in ROLE_GROUPS:
        topic = ROLE_GROUPS[group]
        for p in await partitions_of(consumer, topic):
            result.setdefault(TopicPartition(topic, p), None)
    return result


async def measure(settings: Settings, groups: Iterable[str] | None = None, *, seconds: bool = True,
                  admin: AIOKafkaAdminClient | None = None) -> list[PartitionLag]:
    """Lag of every consumer group (or of ``groups``) on every partition it reads, sorted.

    ``seconds=False`` skips reading the oldest unread records (what a tight polling loop wants).
    """
    own_admin = admin is None
    admin = admin or await admin_client(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000,
                                max_partition_fetch_bytes=64 * 1024)
    try:
        await consumer.start()
        names = sorted(set(groups)) if groups is not None else await _group_names(admin)
        committed = {g: await _committed(admin, consumer, g) for g in names}
        existing = {t: await partitions_of(consumer, t) for t in {tp.topic for c in committed.values() for tp in c}}
        # Offsets a group committed on a topic since deleted are not lag: nothing is left to read.
        committed = {g: {tp: o for tp, o in c.items() if tp.partition in existing[tp.topic]} for g, c in committed.items()}
        tps = sorted({tp for by_tp in committed.values() for tp in by_tp})
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        rows = []
        for group in names:
            for tp, offset in sorted(committed[group].items()):
                lag = lag_messages(ends[tp], offset, starts[tp])
                rows.append(PartitionLag(group, tp.topic, tp.partition, ends[tp], offset, lag))
        if seconds:
            rows = await _with_seconds(consumer, rows, starts)
        return rows
    except KafkaError as exc:
        raise KafkaUnavailable(f"reading consumer lag from {settings.kafka_bootstrap}: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()
        if own_admin:
            await admin.close()


async def _with_seconds(consumer: AIOKafkaConsumer, rows: list[PartitionLag],
                        starts: Mapping[TopicPartition, int]) -> list[PartitionLag]:
    """Fill ``lag_seconds`` by reading the record at each lagging row's committed offset."""
    wanted = {(r.topic, r.partition, r.committed_offset if r.committed_offset is not None
               else starts[TopicPartition(r.topic, r.partition)]) for r in rows if r.lag > 0}
    stamps = await oldest_unread_timestamps(consumer, wanted)
    now_ms = int(time.time() * 1000)
    out = []
    for r in rows:
        position = r.committed_offset if r.committed_offset is not None else starts[TopicPartition(r.topic, r.partition)]
        ts = stamps.get((r.topic, r.partition, position))
        out.append(PartitionLag(r.group, r.topic, r.partition, r.log_end_offset, r.committed_offset, r.lag,
                                lag_seconds(ts, now_ms, r.lag)))
    return out


async def oldest_unread_timestamps(consumer: AIOKafkaConsumer, positions: set[tuple[str, int, int]]
                                   ) -> dict[tuple[str, int, int], int]:
    """Timestamp (ms) of the first record at or after each (topic, partition, offset).

    Positions on one partition are read one after another (several groups may lag on it at different points).
    """
    result: dict[tuple[str, int, int], int] = {}
    todo = sorted(positions)
    while todo:
        batch: dict[TopicPartition, tuple[str, int, int]] = {}
        rest = []
        for pos in todo:  # one position per partition per round
            tp = TopicPartition(pos[0], pos[1])
            if tp in batch:
                rest.append(pos)
            else:
                batch[tp] = pos
        consumer.assign(list(batch))
        for tp, pos in batch.items():
            consumer.seek(tp, pos[2])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FETCH_TIMEOUT_S
        waiting = dict(batch)
        while waiting and loop.time() < deadline:
            fetched = await consumer.getmany(*waiting, timeout_ms=200, max_records=len(waiting) * 4)
            for tp, records in fetched.items():
                if records and tp in waiting:
                    result[waiting.pop(tp)] = records[0].timestamp
        todo = rest
    return result


def max_lag_by_group(rows: Iterable[PartitionLag]) -> dict[str, tuple[int, float | None]]:
    """Per group: the largest lag in messages and in seconds over its partitions (seconds None: some unknown)."""
    out: dict[str, tuple[int, float | None]] = {}
    for r in rows:
        lag, secs = out.get(r.group, (0, 0.0))
        if secs is not None:
            secs = None if r.lag_seconds is None else max(secs, r.lag_seconds)
        out[r.group] = (max(lag, r.lag), secs)
    return out


class _Snapshot:
    """A prometheus_client collector over one measurement (lag is read asynchronously, collected once)."""

    def __init__(self, rows: list[PartitionLag], dlq_records: int | None) -> None:
        self.rows = rows
        self.dlq_records = dlq_records

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily("kafka_consumergroup_group_lag", "Group offset lag of a partition", labels=labels)
        secs = GaugeMetricFamily("kafka_consumergroup_group_lag_seconds",
                                 "Age of the oldest unconsumed message of a partition, seconds", labels=labels)
        offset = GaugeMetricFamily("kafka_consumergroup_group_offset", "Last committed offset of a partition",
                                   labels=labels)
        latest = GaugeMetricFamily("kafka_partition_latest_offset", "Log end offset of a partition",
                                   labels=["topic", "partition"])
        max_lag = GaugeMetricFamily("kafka_consumergroup_group_max_lag", "Max group offset lag", labels=["group"])
        max_secs = GaugeMetricFamily("kafka_consumergroup_group_max_lag_seconds",
                                     "Max age of an unconsumed message over the group's partitions", labels=["group"])
        seen: set[tuple[str, int]] = set()
        for r in self.rows:
            values = [r.group, r.topic, str(r.partition)]
            lag.add_metric(values, r.lag)
            if r.lag_seconds is not None:
                secs.add_metric(values, r.lag_seconds)
            if r.committed_offset is not None:
                offset.add_metric(values, r.committed_offset)
            if (r.topic, r.partition) not in seen:
                seen.add((r.topic, r.partition))
                latest.add_metric([r.topic, str(r.partition)], r.log_end_offset)
        for group, (most, most_s) in sorted(max_lag_by_group(self.rows).items()):
            max_lag.add_metric([group], most)
            if most_s is not None:
                max_secs.add_metric([group], most_s)
        families = [lag, secs, max_lag, max_secs, offset, latest]
        if self.dlq_records is not None:
            dlq = GaugeMetricFamily("hssk_dlq_records", f"Records held in {DLQ.name} (log end minus log start)")
            dlq.add_metric([], self.dlq_records)
            families.append(dlq)
        return families


def render_prometheus(rows: list[PartitionLag], dlq_records: int | None = None) -> str:
    """The Prometheus text exposition of one lag measurement."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(rows, dlq_records))
    return generate_latest(registry).decode()


async def dlq_size(settings: Settings, topic: str = DLQ.name) -> int:
    """Records in hub.dlq (or another dead-letter topic, e.g. a subscription's) still retained: end minus start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        if not tps:
            return 0
        ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def metrics_text(settings: Settings) -> str:
    """What an HTTP /metrics endpoint answers: every group's lag, measured now, and the DLQ's size."""
    rows = await measure(settings)
    try:
        size: int | None = await dlq_size(settings)
    except KafkaError:
        size = None
    return render_prometheus(rows, size)


def render_table(rows: list[PartitionLag]) -> str:
    """A fixed-width table, one row per group and partition, with a total line per group."""
    header = ("GROUP", "TOPIC", "PARTITION", "LOG-END", "COMMITTED", "LAG", "LAG-SECONDS")
    lines = [header]
    for r in rows:
        lines.append((r.group, r.topic, str(r.partition), str(r.log_end_offset),
                      "-" if r.committed_offset is None else str(r.committed_offset), str(r.lag),
                      "-" if r.lag_seconds is None else f"{r.lag_seconds:.3f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            .rstrip() for line in lines]
    return "\n".join(text) + "\n"
