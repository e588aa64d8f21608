"""How an import's records reach Kafka: each raw record to ``emr.raw`` first (Kafka is the source of truth),
then its events, which point at it, to ``events.canonical``, keyed by facility + source patient.

Pipelined so the importer maps the next chunk while Kafka confirms this one: ``submit`` queues a chunk's raw
records at once and returns; one task, in submission order, waits for each chunk's raw offsets and sends the
located events; ``drain`` returns once every raw record and event is acknowledged, and an import returns its
report only after it, so what an import reports as imported is durably in Kafka. Chunks are written in order
(a patient's events never overtake each other), at most ``depth`` are waiting for their raw offsets, the
producers' queues are bounded (bounded memory), and a failed write raises from the next ``submit`` or from
``drain``.

Events are serialised before their raw record's offset is known, with a placeholder offset that
``located`` swaps for the real one: the bytes are built once, wherever the mapping ran.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import multiprocessing
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from connectors.registry.read import COLUMNS, _as_csv
from connectors.registry.translate import map_values
from connectors.xml130 import Failure, RawHoso, Record, translate_hoso
from hub.envelope import Envelope, RawCoordinates, event_dict, event_id
from hub.errors import HubError
from hub.kafka import BulkProducer, Headers, Pending
from hub.kafka import Record as KafkaRecord
from hub.pseudonym import KeyHasher, keyed_hash
from hub.topics import EMR_RAW, EVENTS_CANONICAL

# What a connector puts on its events' source when asked to (``raw=RAW_PLACEHOLDER``): ``located`` swaps it.
RAW_PLACEHOLDER = RawCoordinates(EMR_RAW.name, -1, -1)
_MARK = b'"raw":{"topic":"' + EMR_RAW.name.encode() + b'","partition":-1,"offset":-1}'

RawRecord = tuple[bytes, bytes, Headers]  # value, key, headers
LocatedEvent = tuple[bytes, bytes]  # event JSON with the placeholder raw coordinates, key


def patient_key(secret: bytes, event: Envelope) -> bytes:
    """events.canonical is keyed by facility + source patient (never the raw id): one patient, one partition."""
    ids = event.subject.identifiers
    patient = ids[0].value if ids else event.source.message_id
    return keyed_hash(secret, event.source.facility, patient).encode()


def encode_events(secret: bytes, events: Sequence[Envelope]) -> list[LocatedEvent]:
    """The events of one raw record, serialised with placeholder raw coordinates, each with its key.

    Connectors that build events with ``raw=RAW_PLACEHOLDER`` are serialised as they are; others get a copy
    with it (once per Source: the events of a record share one). One key per subject, as they share that too.
    """
    out: list[LocatedEvent] = []
    source = located_source = keyed = key = None
    for event in events:
        raw = event.source.raw
        if raw is not RAW_PLACEHOLDER and raw != RAW_PLACEHOLDER:
            if event.source is not source:
                source = event.source
                located_source = replace(source, raw=RAW_PLACEHOLDER)
            event = replace(event, source=located_source)
        if keyed is None or event.subject is not keyed[0] or event.source is not keyed[1]:
            keyed, key = (event.subject, event.source), patient_key(secret, event)
        out.append((event.to_json(), key))
    return out


def located(event_json: bytes, partition: int, offset: int) -> bytes:
    """An event serialised by ``encode_events`` with its raw record's real coordinates."""
    return event_json.replace(_MARK, _coordinates(partition, offset), 1)


def _coordinates(partition: int, offset: int) -> bytes:
    return b'"raw":{"topic":"%s","partition":%d,"offset":%d}' % (_RAW_TOPIC, partition, offset)


_RAW_TOPIC = EMR_RAW.name.encode()


_Locate = Callable[[list[tuple[int, int]]], list[KafkaRecord]]  # raw records' (partition, offset) -> located events


def _locate_each(events: list[list[LocatedEvent]], where: list[tuple[int, int]]) -> list[KafkaRecord]:
    topic, mark, records = EVENTS_CANONICAL.name, _MARK, []
    for own, (partition, offset) in zip(events, where):
        coordinates = _coordinates(partition, offset)  # once for the events of one raw record
        records += [(topic, value.replace(mark, coordinates, 1), key, ()) for value, key in own]
    return records


def _locate_pairs(events: Sequence[bytes], keys: Sequence[bytes], where: list[tuple[int, int]]) -> list[KafkaRecord]:
    topic, mark, records = EVENTS_CANONICAL.name, _MARK, []
    append = records.append
    pairs = iter(events)
    for (partition, offset), key, first, second in zip(where, keys, pairs, pairs):
        coordinates = _coordinates(partition, offset)
        append((topic, first.replace(mark, coordinates, 1), key, ()))
        append((topic, second.replace(mark, coordinates, 1), key, ()))
    return records


@contextmanager
def bulk_gc() -> Iterator[None]:
    """A bulk import allocates millions of short-lived, cycle-free dicts while thousands of mapped records wait
    for Kafka: a 50,000-object first GC generation (as in the mapping workers) instead of 700 for the duration
    (-10% CPU per registry row in a same-run A/B); the process's own thresholds come back afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)


class RawFirstWriter:
    """See the module docstring. Events go through a sibling producer that reports failures only."""

    def __init__(self, producer: BulkProducer, depth: int = 4) -> None:
        self._producer = producer
        self._events = producer.sibling(report_successes=False)
        self._timeout = producer.timeout_s + 5.0
        self._queue: asyncio.Queue[tuple[Pending, _Locate] | None] = asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task[None] | None = None

    async def submit(self, raws: Sequence[RawRecord], events: Sequence[list[LocatedEvent]]) -> None:
        """Queue one chunk: ``raws[i]`` and then its ``events[i]`` (confirmed by the next ``drain``)."""
        pending = await self._send_raws([(EMR_RAW.name, value, key, headers) for value, key, headers in raws])
        await self._put((pending, functools.partial(_locate_each, list(events))))

    async def submit_pairs(self, raws: Sequence[KafkaRecord], events: Sequence[bytes], keys: Sequence[bytes]) -> None:
        """Queue a chunk whose raw record ``i`` (topic, value, key, headers) has two events, ``events[2i]`` and
        ``events[2i + 1]``, both keyed ``keys[i]``: a registry chunk, in the flat lists a mapping worker sends
        back cheaply (a tuple per record cost more to pickle than the record itself)."""
        pending = await self._send_raws(raws)
        await self._put((pending, functools.partial(_locate_pairs, events, keys)))

    async def drain(self) -> None:
        """Wait until every submitted chunk is durable (or raise the write failure)."""
        if self._task is None:
            return
        await self._put(None)
        task, self._task = self._task, None
        await task
        await self._events.confirm_queued()

    async def close(self) -> None:
        await self._events.stop()

    async def _send_raws(self, raws: Sequence[KafkaRecord]) -> Pending:
        self._raise_failure()
        if not self._events.connected:
            async with asyncio.timeout(self._timeout):
                await self._events.connect()
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return self._producer.send_many(raws)

    async def _put(self, item: tuple[Pending, _Locate] | None) -> None:
        """Wait for room in the pipeline, unless the writer task dies meanwhile (then raise its failure)."""
        assert self._task is not None
        queued = asyncio.ensure_future(self._queue.put(item))
        while not queued.done():
            await asyncio.wait({queued, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if self._task.done() and not queued.done():
                queued.cancel()
                self._raise_failure()

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            raw_pending, locate = item
            self._events.queue_many(locate(await raw_pending.result(self._timeout)))

    def _raise_failure(self) -> None:
        task = self._task
        if task is not None and task.done():
            self._task = None
            task.result()  # raises the DeliveryError that stopped it
            raise RuntimeError("the raw-first writer stopped")  # pragma: no cover - only ends via drain


# --- mapping chunks: the CPU-heavy half of an import, in worker processes when the file is big ---------------


@dataclass(slots=True)
class RowsMapped:
    """A chunk of registry rows, mapped and serialised: ready to write, or rejected with a reason. Flat lists
    of bytes and ints, as they cross from a mapping worker cheaply."""

    lines: list[int] = field(default_factory=list)  # the line of each accepted row
    raws: list[bytes] = field(default_factory=list)  # its CSV text (the raw record)
    raw_keys: list[bytes] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)  # two a row, Patient then Immunization (placeholder raw)
    event_keys: list[bytes] = field(default_factory=list)  # one a row: both its events have it
    rejected: list[tuple[int, str, str, bytes]] = field(default_factory=list)  # line, code, reason, row bytes
    dropped: list[str] = field(default_factory=list)  # columns left out (one entry per row and column)

    def raw_records(self, file_name: str) -> list[KafkaRecord]:
        """The rows' raw records for emr.raw, with the headers that say where each came from."""
        name, topic = file_name.encode(), EMR_RAW.name
        return [(topic, value, key, [("source_system", b"registry"), ("file", name), ("line", b"%d" % line)])
                for value, key, line in zip(self.raws, self.raw_keys, self.lines)]


_RAW_PLACEHOLDER_DICT = {"topic": RAW_PLACEHOLDER.topic, "partition": -1, "offset": -1}
_WIDTH = len(COLUMNS)


def pack_rows(items: list[tuple[int, list[str]]], for_worker: bool = True) -> tuple[list[int], str | list[str]]:
    """Registry rows (line, values) as the lines and every value in one list, or, ``for_worker``, in one string,
    NUL-separated: one string pickles ~10x cheaper than 15 per row (a value with a NUL in it, which the csv
    reader allows, keeps the list)."""
    lines = [line for line, _values in items]
    values = [value for _line, row in items for value in row]
    if not for_worker:
        return lines, values
    packed = "\0".join(values)
    return lines, packed if packed.count("\0") == len(values) - 1 else values


def map_rows(lines: list[int], values: str | list[str], received_at: str, secret: bytes) -> RowsMapped:
    """Registry rows (``pack_rows``) -> their raw records (keyed by site + record id) and located events.

    The bulk path: the envelopes are built as the dicts ``Envelope.to_json`` would write, without the Envelope,
    Source and Subject objects (``translate_row`` makes those for everyone else; a test checks the bytes are
    the same). Run it under ``bulk_gc``: the dicts hold no cycles, and the default GC threshold sweeps the
    chunks waiting for Kafka over and over.
    """
    if isinstance(values, str):
        values = values.split("\0")
    out = RowsMapped()
    key_of = KeyHasher(secret)
    dumps, rejected, dropped, events, event_keys = orjson.dumps, out.rejected, out.dropped, out.events, out.event_keys
    accepted, raws, raw_keys = out.lines, out.raws, out.raw_keys
    for at, line in zip(range(0, len(values), _WIDTH), lines):
        row = values[at:at + _WIDTH]
        try:
            m = map_values(row)
        except HubError as exc:
            rejected.append((line, exc.code, exc.reason, _as_csv(row)))
            continue
        if m.dropped:
            dropped += m.dropped
        rid, site = row[0], row[14]
        accepted.append(line)
        raws.append(_as_csv(row))
        raw_keys.append(key_of(site, "registry", rid).encode())
        identifiers, person = m.identifiers, m.name
        source = {"system": "registry", "facility": site, "message_id": rid, "application": None,
                  "raw": _RAW_PLACEHOLDER_DICT}
        subject = {"identifiers": identifiers, "family": person["family"] if person else None,
                   "given": person.get("given", []) if person else [], "birth_date": m.birth_date,
                   "sex": m.gender}
        event_keys.append(key_of(site, identifiers[0]["value"] if identifiers else rid).encode())
        occurred = m.occurred
        events.append(dumps(event_dict(event_id("registry", site, rid, "Patient"), "patient.updated", occurred,
                                       received_at, source, subject, [], m.patient)))
        events.append(dumps(event_dict(event_id("registry", site, rid, "Immunization"), "immunization.recorded",
                                       occurred, received_at, source, subject, [], m.immunization)))
    return out


@dataclass(slots=True)
class EncountersMapped:
    """A chunk of BHYT encounters, mapped and serialised, with what failed inside each."""

    raws: list[RawRecord] = field(default_factory=list)
    events: list[list[LocatedEvent]] = field(default_factory=list)
    failures: list[list[Failure]] = field(default_factory=list)
    ok: int = 0


def xml_raw(record: Record, file_name: str, secret: bytes, sent: dict[str, str] | None = None) -> RawRecord:
    """An encounter's raw record: its tables (base64 in JSON), keyed by facility + MA_LK.

    ``sent``: the NOIDUNGFILE text each table was decoded from, as the export had it; a table sent as one
    unbroken base64 line is kept as sent (it decodes to the same bytes), the others are encoded again. Text that
    decoded to ``data`` (strictly, or once its white space was dropped) is one unbroken line exactly when it has
    the length of ``data``'s base64: a length check instead of a regex over ~38 kB an encounter.
    """
    sent = sent or {}
    tables = {}
    for name, data in record.tables.items():
        text = sent.get(name)
        tables[name] = (text if text is not None and len(text) == 4 * ((len(data) + 2) // 3)
                        else base64.b64encode(data).decode())
    value = orjson.dumps({
        "source_system": "xml130", "facility": record.facility, "encounter_key": record.encounter_key,
        "file": file_name, "hoso": record.index, "sensitivity": list(record.sensitivity), "tables": tables,
    })
    key = keyed_hash(secret, record.facility, "encounter", record.encounter_key or f"{file_name}#{record.index}")
    return value, key.encode(), []


def map_encounters(items: Sequence[RawHoso | Record], received_at: str, facility: str | None, secret: bytes,
                   file_name: str) -> EncountersMapped:
    """HOSO as ``read_hoso`` gives them (or Records already translated) -> raw records and located events.

    A HOSO is translated with ``encoded=True``: its events come out as the bytes ``encode_events`` would
    write, built as plain dicts with no Envelope objects (a test checks they are the same bytes). All events of
    an encounter share its subject and source, so one key (``patient_key``'s) serves them all.
    """
    out = EncountersMapped()
    key_of = KeyHasher(secret)
    for item in items:
        if isinstance(item, RawHoso):
            record = translate_hoso(item, received_at, facility, raw=RAW_PLACEHOLDER, encoded=True)
            kinds = [t.kind for t in item.tables]
            unique = len(set(kinds)) == len(kinds)  # a repeated kind: which text was decoded is not known here
            sent = {t.kind: t.base64 for t in item.tables
                    if t.base64 is not None and t.problem is None and (unique or kinds.count(t.kind) == 1)}
            subject = record.subject
            if subject is None or not record.events:
                events: list[LocatedEvent] = []
            else:
                key = key_of(record.facility, subject.identifiers[0].value if subject.identifiers
                             else record.encounter_key or "").encode()
                events = [(value, key) for value in record.events]  # type: ignore[misc]
        else:
            record, sent = item, None
            events = encode_events(secret, record.events)
        out.raws.append(xml_raw(record, file_name, secret, sent))
        out.events.append(events)
        out.failures.append(record.failures)
        out.ok += record.ok
    return out


def _worker_start() -> None:
    """A mapping worker allocates millions of short-lived dicts and no cycles to speak of: a larger first
    generation makes the cyclic GC run far less often (-20% CPU per registry row, same-process A/B)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class MapPool:
    """Runs mapping functions on chunks, in ``workers`` processes (none: in this one), and hands each result
    to its ``then`` in submission order; at most ``depth`` chunks are being mapped at a time (bounded memory).

    Worker processes are spawned, not forked: the importer's process already runs librdkafka's threads.
    """

    def __init__(self, workers: int, depth: int | None = None) -> None:
        self.workers = workers
        self._depth = depth or max(2, 2 * workers)
        self._executor: ProcessPoolExecutor | None = None
        self._running: deque[tuple[asyncio.Future[Any], Callable[[Any], Awaitable[None]]]] = deque()

    async def put(self, fn: Callable[..., Any], args: tuple[Any, ...], then: Callable[[Any], Awaitable[None]]) -> None:
        if not self.workers:
            await then(fn(*args))
            return
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_start)
        self._running.append((asyncio.get_running_loop().run_in_executor(self._executor, fn, *args), then))
        while len(self._running) >= self._depth or (self._running and self._running[0][0].done()):
            await self._next()

    async def drain(self) -> None:
        while self._running:
            await self._next()

    async def _next(self) -> None:
        future, then = self._running.popleft()
        await then(await future)

    def close(self) -> None:
        for future, _then in self._running:
            future.cancel()
        self._running.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
