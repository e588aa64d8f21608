"""Replaying DLQ entries after a fix: the original bytes go back to the failed stage's source topic, once.

A replay writes the original bytes with the original key and headers plus ``hssk.replay_of=<entry>``. It is
idempotent twice over: event ids downstream are derived from the source, so a replayed message produces the
same events; and a ledger in Redis (entry -> where it was replayed) makes a second replay of the same entry,
or of another entry for the same source record, a reported no-op instead of a second record. The ledger is
derived state: ``rebuild_ledger`` restores it from the headers on Kafka.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from hub.envelope import ORIGINAL_BYTES
from hub.errors import DeliveryError
from hub.ops.dlq import REPLAY_HEADER, STAGE_SOURCES, Entry, reader, start_reader
from hub.ops.lag import KafkaUnavailable, partitions_of
from hub.pseudonym import keyed_hash
from hub.settings import Settings
from hub.topics import Topic

LEDGER_KEY = "hssk:dlq:replays"  # Redis hash: ledger key -> "<topic>/<partition>/<offset> <time>" or "pending <time>"


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
    if ORIGINAL_BYTES in entry.headers:
        raise ValueError(f"entry {entry.id} holds only the head of its {entry.headers[ORIGINAL_BYTES]}-byte input; "
                         f"replaying it would send a cut message (the whole input: {entry.source})")
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
                async with asyncio.timeout(15):
                    await producer.connect()
            except TimeoutError:
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
    consumer = reader(settings)
    await start_reader(consumer, settings, topic)
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
