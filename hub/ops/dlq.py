"""The dead-letter queue for operators: read ``hub.dlq`` entries, select them with filters, show them.

An entry is named by its own coordinates on hub.dlq, ``<partition>/<offset>`` (e.g. ``2/15``). Replaying
entries is ``hub.ops.replay``. Entries hold personal data (the original message): ``show`` prints it for an
operator; nothing here logs it.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from hub.envelope import DeadLetter
from hub.ops.lag import KafkaUnavailable, partitions_of
from hub.settings import Settings
from hub.topics import DLQ, EVENTS_CANONICAL, EVENTS_CITIZEN, HL7V2_RAW, RECORD_CHANGES, Topic

# Where each stage reads from: the topic a replay writes to.
STAGE_SOURCES: dict[str, Topic] = {
    "ingest": HL7V2_RAW, "translate": HL7V2_RAW, "identity": EVENTS_CANONICAL,
    "record": EVENTS_CITIZEN, "fanout": RECORD_CHANGES,
}
# The DLQ reason codes (hub.errors), "internal" for unexpected exceptions, "unreadable" for a broken entry.
CODES = ("frame", "parse", "translate", "identity", "deliver", "hub", "internal", "unreadable")
REPLAY_HEADER = "hssk.replay_of"  # on a replayed record: the entry it came from
VN_TZ = timezone(timedelta(hours=7))
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class EntryNotFound(LookupError):
    """No hub.dlq record at the given coordinates (never written, or deleted by retention)."""


@dataclass(frozen=True, order=True)
class EntryId:
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> "EntryId":
        match = re.fullmatch(r"\s*(\d+)\s*[/:]\s*(\d+)\s*", text)
        if match is None:
            raise ValueError(f"{text!r} is not a DLQ entry id: write <partition>/<offset>, e.g. 2/15")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.partition}/{self.offset}"


@dataclass(frozen=True, kw_only=True)
class Entry(DeadLetter):
    """One hub.dlq record: the ``DeadLetter`` a stage or the MLLP listener wrote, and where it sits on hub.dlq."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None

    @property
    def id(self) -> str:
        return f"{self.partition}/{self.offset}"

    @property
    def facility(self) -> str:
        return facility_of(self.headers, self.original)

    @property
    def replay_of(self) -> str | None:
        """The entry this failure came from, when it is the failure of a replay."""
        return self.headers.get(REPLAY_HEADER)

    @property
    def source(self) -> str:
        if self.source_topic is None:
            return "-"
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"

    def summary(self) -> dict[str, Any]:
        """Everything but the original bytes (no personal data beyond what the reason says)."""
        return {"id": self.id, "failed_at": self.failed_at, "timestamp_ms": self.timestamp_ms, "stage": self.stage,
                "code": self.code, "reason": self.reason, "facility": self.facility, "source": self.source,
                "source_topic": self.source_topic, "source_partition": self.source_partition,
                "source_offset": self.source_offset, "replay_of": self.replay_of, "size": len(self.original)}


def parse_entry(record: ConsumerRecord) -> Entry:
    """Decode a hub.dlq record; a record that is not a DeadLetter becomes an ``unreadable`` entry, kept whole."""
    base = {"partition": record.partition, "offset": record.offset, "timestamp_ms": record.timestamp,
            "key": record.key}
    try:
        letter = DeadLetter.from_json(record.value)
        return Entry(**base, **{f.name: getattr(letter, f.name) for f in fields(DeadLetter)})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        stage = dict(record.headers or ()).get("stage", b"unknown").decode("utf-8", "replace")
        return Entry(**base, stage=stage, code="unreadable", reason=f"not a dead letter ({type(exc).__name__})",
                     original=record.value or b"")


def facility_of(headers: dict[str, str], original: bytes) -> str:
    """The facility code (MA_CSKCB) an entry came from: raw headers, the event's source, or MSH-4."""
    for name in ("hl7.sending_facility", "facility"):
        if headers.get(name):
            return headers[name]
    head = original.lstrip(b"\xef\xbb\xbf")
    if head.startswith(b"{"):
        try:
            return str(orjson.loads(head)["source"]["facility"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return ""
    if head.startswith(b"MSH") and len(head) > 4:
        fields = re.split(rb"[\r\n]", head, maxsplit=1)[0].split(head[3:4])
        if len(fields) > 3:
            return fields[3].split(b"^")[0].decode("latin-1")  # MSH-4 (HD.1): ASCII in practice
    return ""


def parse_time(text: str, now: datetime | None = None) -> int:
    """A time filter in ms since the epoch: ``30m``/``2h``/``7d`` ago, or ISO 8601 (no offset: +07:00)."""
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(text.strip())
    if relative:
        return int((now - timedelta(seconds=int(relative[1]) * _UNITS[relative[2]])).timestamp() * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2026-11-22T08:30+07:00) or an age (30m, 2h, 7d)"
                         ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=VN_TZ)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class Filter:
    """Which entries to list or replay; every field given must match. Checked when built."""

    stage: str | None = None
    code: str | None = None
    reason: str | None = None  # case-insensitive substring of the reason
    facility: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.stage is not None and self.stage not in STAGE_SOURCES:
            raise ValueError(f"unknown stage {self.stage!r}: one of {', '.join(STAGE_SOURCES)}")
        if self.code is not None and self.code not in CODES:
            raise ValueError(f"unknown reason code {self.code!r}: one of {', '.join(CODES)}")
        if self.since_ms is not None and self.until_ms is not None and self.until_ms < self.since_ms:
            raise ValueError("--until is before --since")

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.stage, self.code, self.reason, self.facility, self.since_ms,
                                        self.until_ms))

    def matches(self, entry: Entry) -> bool:
        return ((self.stage is None or entry.stage == self.stage)
                and (self.code is None or entry.code == self.code)
                and (self.reason is None or self.reason.casefold() in entry.reason.casefold())
                and (self.facility is None or entry.facility == self.facility)
                and (self.since_ms is None or entry.timestamp_ms >= self.since_ms)
                and (self.until_ms is None or entry.timestamp_ms <= self.until_ms))


def reader(settings: Settings) -> AIOKafkaConsumer:
    """A consumer in no group: reading the DLQ or a source topic must not move any stage's offsets."""
    return AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", request_timeout_ms=10_000)


async def start_reader(consumer: AIOKafkaConsumer, settings: Settings, topic: str = DLQ.name) -> None:
    """Start ``consumer``, or KafkaUnavailable naming the broker's address."""
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise KafkaUnavailable(f"reading {topic}: Kafka at {settings.kafka_bootstrap} is not reachable "
                               f"({type(exc).__name__})") from exc


async def entries(settings: Settings, selection: Filter = Filter(), limit: int | None = None,
                  topic: str = DLQ.name) -> list[Entry]:
    """The entries matching ``selection``, oldest first per partition, read up to the end as it is now.

    ``topic``: hub.dlq, or a subscription's own dead letters (hub.topics.subscription_dlq).
    """
    consumer = reader(settings)
    await start_reader(consumer, settings, topic)
    found: list[Entry] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        bounds = {tp: (starts[tp], ends[tp]) for tp in tps}
        if selection.since_ms is not None:  # skip what is older without reading it
            at = await consumer.offsets_for_times({tp: selection.since_ms for tp in tps})
            bounds = {tp: (max(lo, at[tp].offset if at.get(tp) else hi), hi) for tp, (lo, hi) in bounds.items()}
        todo = {tp: b for tp, b in bounds.items() if b[0] < b[1]}
        for tp, (lo, _) in todo.items():
            consumer.seek(tp, lo)
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in fetched.items():
                for record in records:
                    if record.offset >= todo[tp][1]:
                        break
                    entry = parse_entry(record)
                    if selection.matches(entry):
                        found.append(entry)
            todo = {tp: b for tp, b in todo.items() if await consumer.position(tp) < b[1]}
    except KafkaError as exc:
        raise KafkaUnavailable(f"reading {topic}: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()
    found.sort(key=lambda e: (e.timestamp_ms, e.partition, e.offset))
    return found[:limit] if limit is not None else found


async def entry(settings: Settings, entry_id: EntryId, topic: str = DLQ.name) -> Entry:
    """One entry by its coordinates on ``topic``, or EntryNotFound saying which offsets the partition holds."""
    consumer = reader(settings)
    await start_reader(consumer, settings, topic)
    try:
        parts = await partitions_of(consumer, topic)
        if entry_id.partition not in parts:
            raise EntryNotFound(f"no DLQ entry {entry_id}: {topic} has partitions {sorted(parts)}")
        tp = TopicPartition(topic, entry_id.partition)
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        if not start <= entry_id.offset < end:
            held = f"offsets {start}-{end - 1}" if end > start else "no records"
            raise EntryNotFound(f"no DLQ entry {entry_id}: partition {entry_id.partition} holds {held}")
        consumer.seek(tp, entry_id.offset)
        async with asyncio.timeout(15):
            record = await consumer.getone(tp)
        if record.offset != entry_id.offset:  # e.g. a transaction marker sat at that offset
            raise EntryNotFound(f"no DLQ entry {entry_id}: the next record there is {tp.partition}/{record.offset}")
        return parse_entry(record)
    except (KafkaError, asyncio.TimeoutError) as exc:
        raise KafkaUnavailable(f"reading {topic}: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()


def counts(found: list[Entry]) -> list[tuple[str, str, int]]:
    """Entries per (stage, code), most first: the "DLQ by reason" view of a dashboard."""
    tally: dict[tuple[str, str], int] = {}
    for e in found:
        tally[(e.stage, e.code)] = tally.get((e.stage, e.code), 0) + 1
    return sorted(((stage, code, n) for (stage, code), n in tally.items()), key=lambda row: (-row[2], row[0], row[1]))


def decode_original(entry: Entry) -> str:
    """The original bytes for reading: HL7 as text (its charset, segments on lines), events as indented JSON."""
    raw = entry.original
    if raw.lstrip().startswith(b"{"):
        try:
            return orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            pass
    charset = entry.headers.get("charset") or "utf-8"
    try:
        text = raw.decode(charset, "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    text = unicodedata.normalize("NFC", text.lstrip("\ufeff"))
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
