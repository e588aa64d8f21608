"""How an import's records reach Kafka: each raw record to ``emr.raw`` first (Kafka is the source of truth),
then its events, which point at it, to ``events.canonical``, keyed by facility + source patient.

Pipelined so the importer maps the next chunk while Kafka confirms this one: ``submit`` queues a chunk's raw
records at once and returns; one task, in submission order, waits for each chunk's raw offsets, writes the
located events, and calls the chunk's ``done`` only once its events are confirmed too, so what an import
reports as imported is durably in Kafka. Chunks are written in order (a patient's events never overtake each
other), at most ``depth`` are in flight (bounded memory), and a failed write raises from the next ``submit``
or from ``drain``.

Events are serialised before their raw record's offset is known, with a placeholder offset that
``located`` swaps for the real one: the bytes are built once, wherever the mapping ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace

from hub.envelope import Envelope, RawCoordinates
from hub.kafka import BulkProducer, Headers, Pending
from hub.pseudonym import keyed_hash
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
    return event_json.replace(_MARK, b'"raw":{"topic":"%s","partition":%d,"offset":%d}'
                              % (EMR_RAW.name.encode(), partition, offset), 1)


class RawFirstWriter:
    """See the module docstring."""

    def __init__(self, producer: BulkProducer, depth: int = 4) -> None:
        self._producer = producer
        self._timeout = producer.timeout_s + 5.0
        self._queue: asyncio.Queue[tuple[Pending, list[list[LocatedEvent]], Callable[[int], None] | None] | None] = \
            asyncio.Queue(maxsize=depth)
        self._task: asyncio.Task[None] | None = None

    async def submit(self, raws: Sequence[RawRecord], events: Sequence[list[LocatedEvent]],
                     done: Callable[[int], None] | None = None) -> None:
        """Queue one chunk: ``raws[i]`` and then its ``events[i]``; ``done(events written)`` once all are durable."""
        self._raise_failure()
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        pending = self._producer.send_many([(EMR_RAW.name, value, key, headers) for value, key, headers in raws])
        await self._put((pending, list(events), done))

    async def drain(self) -> None:
        """Wait until every submitted chunk is durable (or raise the write failure)."""
        if self._task is None:
            return
        await self._put(None)
        task, self._task = self._task, None
        await task

    async def _put(self, item: tuple[Pending, list[list[LocatedEvent]], Callable[[int], None] | None] | None) -> None:
        """Wait for room in the pipeline, unless the writer task dies meanwhile (then raise its failure)."""
        assert self._task is not None
        queued = asyncio.ensure_future(self._queue.put(item))
        while not queued.done():
            await asyncio.wait({queued, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if self._task.done() and not queued.done():
                queued.cancel()
                self._raise_failure()

    async def _run(self) -> None:
        confirming: list[tuple[Pending, int, Callable[[int], None] | None]] = []
        while (item := await self._queue.get()) is not None:
            raw_pending, events, done = item
            where = await raw_pending.result(self._timeout)
            records = [(EVENTS_CANONICAL.name, located(value, partition, offset), key, ())
                       for own, (partition, offset) in zip(events, where) for value, key in own]
            confirming.append((self._producer.send_many(records), len(records), done))
            while confirming and (confirming[0][0].done or len(confirming) > 2):
                pending, count, callback = confirming.pop(0)
                await pending.result(self._timeout)
                if callback is not None:
                    callback(count)
        for pending, count, callback in confirming:
            await pending.result(self._timeout)
            if callback is not None:
                callback(count)

    def _raise_failure(self) -> None:
        task = self._task
        if task is not None and task.done():
            self._task = None
            task.result()  # raises the DeliveryError that stopped it
            raise RuntimeError("the raw-first writer stopped")  # pragma: no cover - only ends via drain
