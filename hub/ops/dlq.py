"""The dead-letter queue for operators: list and show ``hub.dlq`` entries, replay them after a fix.

An entry is named by its own coordinates on hub.dlq, ``<partition>/<offset>`` (e.g. ``2/15``). Replay writes
the original bytes back to the source topic of the stage that failed, with the original key and headers plus
``hssk.replay_of=<entry>``. It is idempotent twice over: event ids downstream are derived from the source, so
a replayed message produces the same events; and a ledger in Redis (entry -> where it was replayed) makes a
second replay of the same entry a reported no-op instead of a second record.

Entries hold personal data (the original message): ``show`` prints it for an operator; nothing here logs it.
"""

from __future__ import annotations

import asyncio
import base64
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from hub.errors import DeliveryError
from hub.ops.lag import KafkaUnavailable, partitions_of
from hub.pseudonym import keyed_hash
from hub.settings import Settings
from hub.topics import DLQ, EVENTS_CANONICAL, EVENTS_CITIZEN, HL7V2_RAW, RECORD_CHANGES, Topic

# Where each stage reads from: the topic a replay writes to.
STAGE_SOURCES: dict[str, Topic] = {
    "ingest": HL7V2_RAW, "translate": HL7V2_RAW, "identity": EVENTS_CANONICAL,
    "record": EVENTS_CITIZEN, "fanout": RECORD_CHANGES,
}
# The DLQ reason codes (hub.errors), "internal" for unexpected exceptions, "unreadable" for a broken entry.
CODES = ("frame", "parse", "translate", "identity", "deliver", "hub", "internal", "unreadable")
REPLAY_HEADER = "hssk.replay_of"
LEDGER_KEY = "hssk:dlq:replays"  # Redis hash: entry id -> "<topic>/<partition>/<offset> <time>" or "pending <time>"
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


@dataclass(frozen=True)
class Entry:
    """One hub.dlq record, decoded (``DeadLetter`` as written by the stages and the MLLP listener)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    stage: str
    code: str
    reason: str
    original: bytes
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    failed_at: str = ""

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
        data = orjson.loads(record.value)
        return Entry(**base, stage=str(data["stage"]), code=str(data.get("code") or "hub"),
                     reason=str(data.get("reason") or ""), original=base64.b64decode(data["original"], validate=True),
                     source_topic=data.get("source_topic"), source_partition=data.get("source_partition"),
                     source_offset=data.get("source_offset"), headers=dict(data.get("headers") or {}),
                     failed_at=str(data.get("failed_at") or ""))
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


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", request_timeout_ms=10_000)


async def _start(consumer: AIOKafkaConsumer, settings: Settings) -> None:
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise KafkaUnavailable(f"reading {DLQ.name}: Kafka at {settings.kafka_bootstrap} is not reachable "
                               f"({type(exc).__name__})") from exc


async def entries(settings: Settings, selection: Filter = Filter(), limit: int | None = None) -> list[Entry]:
    """The entries matching ``selection``, oldest first per partition, read up to the end as it is now."""
    consumer = _consumer(settings)
    await _start(consumer, settings)
    found: list[Entry] = []
    try:
        tps = [TopicPartition(DLQ.name, p) for p in sorted(await partitions_of(consumer, DLQ.name))]
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
        raise KafkaUnavailable(f"reading {DLQ.name}: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()
    found.sort(key=lambda e: (e.timestamp_ms, e.partition, e.offset))
    return found[:limit] if limit is not None else found


async def entry(settings: Settings, entry_id: EntryId) -> Entry:
    """One entry by its hub.dlq coordinates, or EntryNotFound saying which offsets the partition holds."""
    consumer = _consumer(settings)
    await _start(consumer, settings)
    try:
        parts = await partitions_of(consumer, DLQ.name)
        if entry_id.partition not in parts:
            raise EntryNotFound(f"no DLQ entry {entry_id}: {DLQ.name} has partitions {sorted(parts)}")
        tp = TopicPartition(DLQ.name, entry_id.partition)
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        if not start <= entry_id.offset < end:
            held = f"offsets {start}-{end - 1}" if end > start else "no records"
            raise EntryNotFound(f"no DLQ entry {entry_id}: partition {entry_id.partition} holds {held}")
        consumer.seek(tp, entry_id.offset)
        record = await asyncio.wait_for(consumer.getone(tp), 15)
        if record.offset != entry_id.offset:  # e.g. a transaction marker sat at that offset
            raise EntryNotFound(f"no DLQ entry {entry_id}: the next record there is {tp.partition}/{record.offset}")
        return parse_entry(record)
    except (KafkaError, asyncio.TimeoutError) as exc:
        raise KafkaUnavailable(f"reading {DLQ.name}: {type(exc).__name__}") from exc
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


@dataclass(frozen=True)
class ReplayRecord:
    topic: Topic
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def replay_record(entry: Entry, secret: bytes) -> ReplayRecord:
    """What a replay writes: the original bytes, key and headers, to the failed stage's source topic."""
    if entry.code == "unreadable":
        raise ValueError(f"entry {entry.id} is not a readable dead letter; it cannot be replayed")
    target = STAGE_SOURCES.get(entry.stage)
    if target is None:
        raise ValueError(f"entry {entry.id}: no source topic is known for stage {entry.stage!r}")
    if entry.code == "frame":
        raise ValueError(f"entry {entry.id} holds only the head of an oversized frame; the sender must resend it")
    headers = {k: v for k, v in entry.headers.items() if k != REPLAY_HEADER}
    key = entry.key
    if entry.stage == "ingest":
        # Refused at the listener: no raw key or headers were made. Make them as the listener would.
        key = key or _raw_key(entry.original, secret)
        headers.setdefault("received_at", entry.failed_at)
    out = tuple((k, v.encode()) for k, v in headers.items()) + ((REPLAY_HEADER, entry.id.encode()),)
    return ReplayRecord(target, key, entry.original, out)


def _raw_key(raw: bytes, secret: bytes) -> bytes | None:
    """The listener's key for hl7v2.raw (keyed hash of facility + source patient); None if unreadable."""
    from connectors.hl7v2.parse import decode, parse, read_header, source_patient_id
    from hub.errors import ParseError

    try:
        message = parse(decode(raw, "utf-8"))
        header = read_header(message)
    except (ParseError, UnicodeError, IndexError):
        return None
    patient = source_patient_id(message)
    parts = (header.sending_facility, patient) if patient else (header.sending_facility, "msh10", header.control_id)
    return keyed_hash(secret, *parts).encode()


class Ledger(Protocol):
    """Which entries were replayed, and where to; ``claim`` is atomic so two operators cannot both replay."""

    async def claim(self, entry_id: str, note: str) -> str | None: ...  # None: claimed; else the existing note
    async def confirm(self, entry_id: str, note: str) -> None: ...
    async def release(self, entry_id: str) -> None: ...
    async def lookup(self, entry_ids: list[str]) -> dict[str, str]: ...


class RedisLedger:
    def __init__(self, redis_url: str) -> None:
        import redis.asyncio as aioredis

        self._url = redis_url
        self._redis = aioredis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=5)

    async def _call(self, what: str, op: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await op
        except (RedisError, OSError) as exc:
            raise DeliveryError(f"{what}: the replay ledger (Redis at {self._url}) is unavailable "
                                f"({type(exc).__name__})") from exc

    async def claim(self, entry_id: str, note: str) -> str | None:
        if await self._call("claiming a replay", self._redis.hsetnx(LEDGER_KEY, entry_id, note)):
            return None
        value = await self._call("reading the replay ledger", self._redis.hget(LEDGER_KEY, entry_id))
        return value.decode() if value is not None else None

    async def confirm(self, entry_id: str, note: str) -> None:
        await self._call("recording a replay", self._redis.hset(LEDGER_KEY, entry_id, note))

    async def release(self, entry_id: str) -> None:
        await self._call("releasing a replay claim", self._redis.hdel(LEDGER_KEY, entry_id))

    async def restore(self, found: dict[str, str]) -> int:
        """Record replays found on Kafka that the ledger lacks or holds as unconfirmed; return how many."""
        if not found:
            return 0
        known = await self.lookup(sorted(found))
        missing = {i: note for i, note in found.items() if known.get(i, "pending").startswith("pending")}
        if missing:
            await self._call("restoring the replay ledger", self._redis.hset(LEDGER_KEY, mapping=missing))
        return len(missing)

    async def lookup(self, entry_ids: list[str]) -> dict[str, str]:
        if not entry_ids:
            return {}
        values = await self._call("reading the replay ledger", self._redis.hmget(LEDGER_KEY, entry_ids))
        return {i: v.decode() for i, v in zip(entry_ids, values, strict=True) if v is not None}

    async def close(self) -> None:
        await self._redis.aclose()


class Writer(Protocol):
    async def write(self, topic: str, value: bytes, key: bytes | None = None,
                    headers: Any = ()) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Outcome:
    entry: str
    status: str  # replayed | skipped | would-replay | failed
    target: str  # topic (and partition/offset once written)
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"entry": self.entry, "status": self.status, "target": self.target, "detail": self.detail}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ledger_keys(entry: Entry) -> list[str]:
    """The ledger keys of an entry: its own id, and the source record it failed on (``src:<topic/p/o>``).

    The second catches two entries for one source record (a stage that crashed after dead-lettering and
    before committing dead-letters the record again when it is redelivered): only one of them is replayed.
    """
    return [entry.id] + ([f"src:{entry.source}"] if entry.source_topic is not None else [])


def _skip_reason(held: str, topic: str, key: str, entry_id: str) -> str:
    if held.startswith("pending"):
        return f"an earlier replay did not confirm ({held}); check {topic} or use --force"
    if key != entry_id:
        return f"its source record {key[4:]} was already replayed to {held}"
    return f"already replayed to {held}"


async def replay_entries(found: list[Entry], secret: bytes, ledger: Ledger, writer: Writer | None, *,
                         force: bool = False) -> list[Outcome]:
    """Replay each entry once: claim it in the ledger, write it, confirm where it went (``writer`` None: dry run).

    A write that fails releases the claims, so the entry can be replayed later; a claim already held is
    reported as skipped (``force`` replays anyway: downstream event ids still absorb the duplicate).
    """
    outcomes: list[Outcome] = []
    for item in found:
        try:
            record = replay_record(item, secret)
        except ValueError as exc:
            outcomes.append(Outcome(item.id, "failed", "-", str(exc)))
            continue
        keys = ledger_keys(item)
        if writer is None:
            done = await ledger.lookup(keys)
            key = next((k for k in keys if k in done), None)
            outcomes.append(Outcome(item.id, "skipped" if key and not force else "would-replay", record.topic.name,
                                    _skip_reason(done[key], record.topic.name, key, item.id) if key else ""))
            continue
        claimed, held, held_key = [], None, ""
        for key in keys:
            held = await ledger.claim(key, f"pending {_now()}")
            if held is not None:
                held_key = key
                break
            claimed.append(key)
        if held is not None and not force:
            for key in claimed:
                await ledger.release(key)
            outcomes.append(Outcome(item.id, "skipped", record.topic.name,
                                    _skip_reason(held, record.topic.name, held_key, item.id)))
            continue
        try:
            partition, offset = await writer.write(record.topic.name, record.value, record.key, record.headers)
        except DeliveryError as exc:
            for key in claimed:
                await ledger.release(key)
            outcomes.append(Outcome(item.id, "failed", record.topic.name, exc.reason))
            continue
        where = f"{record.topic.name}/{partition}/{offset}"
        for key in keys:
            await ledger.confirm(key, f"{where} {_now()}")
        outcomes.append(Outcome(item.id, "replayed", where, "forced" if held is not None else ""))
    return outcomes


async def replay(settings: Settings, found: list[Entry], *, dry_run: bool = False, force: bool = False
                 ) -> list[Outcome]:
    """Replay entries on the running hub: the durable producer (acks=all) and the Redis ledger."""
    from hub.kafka import DurableProducer

    ledger = RedisLedger(settings.redis_url)
    producer = None if dry_run else DurableProducer(settings, client_id="hssk-dlq-replay")
    try:
        if producer is not None:
            try:
                await asyncio.wait_for(producer.connect(), timeout=15)
            except asyncio.TimeoutError:
                raise KafkaUnavailable(f"replaying: Kafka at {settings.kafka_bootstrap} is not reachable") from None
        return await replay_entries(found, settings.pseudonym_key, ledger, producer, force=force)
    finally:
        if producer is not None:
            await producer.stop()
        await ledger.close()


async def replayed(settings: Settings, found: list[Entry]) -> dict[str, str]:
    """Ledger notes of the entries that were replayed (for ``list``)."""
    ledger = RedisLedger(settings.redis_url)
    try:
        return await ledger.lookup([e.id for e in found])
    finally:
        await ledger.close()


async def replays_on_kafka(settings: Settings) -> dict[str, str]:
    """Every replay the source topics hold (records with ``hssk.replay_of``): entry id -> ledger note.

    Kafka is the source of truth, so the ledger is derived state: this rebuilds it after Redis lost it.
    It reads the topics whole, so it is an operator's action, not part of every replay.
    """
    found: dict[str, str] = {}
    for topic in sorted({t.name for t in STAGE_SOURCES.values()}):
        found.update(await _replays_on(settings, topic))
    return found


async def _replays_on(settings: Settings, topic: str) -> dict[str, str]:
    """One topic's replays (a consumer per topic: reassigning one consumer between scans lost records)."""
    found: dict[str, str] = {}
    consumer = _consumer(settings)
    await _start(consumer, settings)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        if not tps:
            return found
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        todo = [tp for tp in tps if ends[tp] > starts[tp]]
        for tp in todo:
            consumer.seek(tp, starts[tp])
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    for name, value in record.headers or ():
                        if name == REPLAY_HEADER:
                            found[value.decode()] = f"{topic}/{record.partition}/{record.offset} rebuilt"
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
    except KafkaError as exc:
        raise KafkaUnavailable(f"reading {topic}: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()
    return found


async def rebuild_ledger(settings: Settings) -> tuple[int, int]:
    """Restore the replay ledger from Kafka; return (replays found, ledger entries restored)."""
    found = await replays_on_kafka(settings)
    ledger = RedisLedger(settings.redis_url)
    try:
        return len(found), await ledger.restore(found)
    finally:
        await ledger.close()
