"""``hub import FILE...``: EMR export files into the hub, the way most hospitals can send on day one.

Formats, detected from the first bytes:
- BHYT XML (QĐ 130, and the older 4210 layout; ``connectors.xml130``): each encounter's raw tables go to
  ``emr.raw`` first (Kafka is the source of truth), then its events to ``events.canonical`` with those raw
  coordinates, keyed by a keyed hash of facility + patient so one patient's events stay in order; every
  failed table, row or file goes to ``hub.dlq`` with its bytes and position.
- Vaccination registry CSV (``connectors.registry``): each row's CSV text goes to ``emr.raw``, then its
  Patient and Immunization events to ``events.canonical``; unreadable or unmappable rows go to ``hub.dlq``
  with their line number and reason, and the rest of the file continues.
- HL7 v2 files (one or many messages, FHS/BHS batches, any segment separator): each message takes the
  MLLP listener's own path (sources file, charset, resend detection, raw headers) onto ``hl7v2.raw``, so a
  file is simply another transport and the translator stage does the rest.
- FHIR R4 Bundles in JSON (``connectors.fhir``): each clinical entry's JSON goes to ``emr.raw``, then its
  event; each invalid or unlinkable entry goes to ``hub.dlq`` with its index, type and field path.

The format comes from ``hub.ops.formats.detect_format`` (the one detection, shared with ``hub watch`` and
``hub translate``). A ``Progress`` sees each file start, advance (bytes read, or messages for HL7 v2) and
finish; the command line draws it as a tqdm bar.

Event ids are deterministic, so importing a file twice publishes the same events and changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis

from connectors.mllp.ack import VN_TZ
from connectors.mllp.dedup import DedupStore
from connectors.mllp.listener import MllpListener, Peer, split_batch
from connectors.mllp.sender import read_ack
from connectors.mllp.sources import sources_from_settings
from connectors.fhir import EntryEvents, EntryFailure, read_bundle
from connectors.registry import BadRow, RegistryFormatError, iter_values
from connectors.xml130 import Failure, RawHoso, Record, read_hoso
from hub.envelope import DeadLetter, Envelope
from hub.kafka import BulkProducer
from hub.ops.formats import HEAD_BYTES, UNITS, UNKNOWN_REASON, detect_format, utf8_lines
from hub.ops.publish import (
    RAW_PLACEHOLDER, EncountersMapped, MapPool, RawFirstWriter, RowsMapped, bulk_gc, encode_events, map_encounters,
    map_rows, pack_rows,
)
from hub.pseudonym import keyed_hash
from hub.settings import Settings
from hub.topics import DLQ

_CHUNK = 100  # encounters written together: acks=all costs a round trip per produce request, not per record
_ROW_CHUNK = 2000  # registry rows written together (three records each)
_BULK_TIMEOUT_S = 30.0
_POOL_MIN_BYTES = 4 << 20  # smaller files are mapped in the importer's process (starting workers costs ~1 s)
_PROGRESS_EVERY_S = 0.2


@dataclass
class FileReport:
    """What happened to one file: counts and reasons only (no personal data)."""

    path: str
    format: str
    read: int = 0  # encounters (XML) or messages (HL7 v2)
    events: int = 0  # events published (XML); for HL7 v2 the translator stage makes them later
    accepted: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # reason code -> count (each one is on hub.dlq)
    notes: Counter[str] = field(default_factory=Counter)  # imported, with a value left out (e.g. a mistyped CCCD)
    error: str = ""  # the file could not be read at all

    @property
    def readable(self) -> bool:
        return not self.error

    def summary_lines(self) -> list[str]:
        """The per-file summary ``hub import`` prints and ``hub watch`` writes next to the file: records read,
        events produced, failures grouped by reason (each one is on hub.dlq), notes."""
        if self.error:
            return [f"{self.path}: not imported: {self.error}"]
        unit = UNITS.get(self.format, "records")
        lines = [f"{self.path} ({self.format}): {self.read} {unit} read, {self.accepted} accepted, "
                 f"{self.events} events published, {sum(self.failures.values())} failures (to hub.dlq)"]
        lines += [f"  {n:>6}  {reason}" for reason, n in self.failures.most_common()]
        lines += [f"  {n:>6}  imported; {note}" for note, n in self.notes.most_common()]
        return lines


class Progress(Protocol):
    """How far an import is, per file (no personal data: names of files, counts)."""

    def start(self, report: FileReport, total: int, unit: str) -> None: ...

    def update(self, done: int, report: FileReport) -> None: ...

    def finish(self, report: FileReport) -> None: ...


class _Silent:
    def start(self, report: FileReport, total: int, unit: str) -> None:
        pass

    def update(self, done: int, report: FileReport) -> None:
        pass

    def finish(self, report: FileReport) -> None:
        pass


class Importer:
    """One producer (and for HL7 v2 one listener) for every file of a run."""

    def __init__(self, settings: Settings, progress: Progress | None = None, facility: str | None = None) -> None:
        self.settings = settings
        self.facility = facility  # stands in for the facility a file does not name (BHYT XML, FHIR)
        # A bulk load, not a sender waiting for its ACK: librdkafka's batching and a longer deadline per write.
        self.producer = BulkProducer(settings, client_id="hssk-import",
                                     timeout_s=max(settings.ack_timeout_s, _BULK_TIMEOUT_S))
        self._writer = RawFirstWriter(self.producer)
        # Mapping a big file's chunks uses every core (worker processes); a small file is mapped here.
        cores = os.cpu_count() or 1
        workers = settings.import_workers if settings.import_workers >= 0 else (cores if cores > 1 else 0)
        self._pool = MapPool(workers)
        self._inline = MapPool(0)
        self.progress: Progress = progress or _Silent()
        self._redis = aioredis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._listener: MllpListener | None = None
        self._last_progress = 0.0

    async def __aenter__(self) -> "Importer":
        async with asyncio.timeout(30):
            await self.producer.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._pool.close()
        await self._writer.close()
        await self.producer.stop()
        await self._redis.aclose()

    async def import_file(self, path: Path) -> FileReport:
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
        except OSError as exc:
            return FileReport(str(path), "unknown", error=f"cannot read: {exc.strerror}")
        kind = detect_format(head)
        report = FileReport(str(path), kind)
        if kind == "unknown":
            report.error = UNKNOWN_REASON
            return report
        if kind != "hl7v2":  # HL7 v2 counts messages, known once the file is split
            self.progress.start(report, path.stat().st_size, "B")
        try:
            if kind == "xml130":
                await self._xml130(path, report)
            elif kind == "hl7v2":
                await self._hl7v2(path, report)
            elif kind == "registry":
                await self._registry(path, report)
            else:
                await self._fhir(path, report)
            await self._writer.drain()  # the report counts only what Kafka confirmed
        finally:
            self.progress.finish(report)
        return report

    # --- BHYT XML ------------------------------------------------------------------------------------------

    async def _xml130(self, path: Path, report: FileReport) -> None:
        received_at = _now()
        pool = self._pool_for(path)
        chunk: list[RawHoso | Record] = []
        seen = 0
        with open(path, "rb") as stream:  # a file object, so the bar can follow the position
            for item in read_hoso(stream, received_at=received_at, facility=self.facility, raw=RAW_PLACEHOLDER):
                if isinstance(item, Failure):
                    await self._dead_letter(item, path, report)
                    if item.stage == "parse" and not seen:
                        report.error = item.reason  # nothing of the file could be read
                    continue
                seen += 1
                chunk.append(item)
                if len(chunk) >= _CHUNK:
                    await self._map_encounters(pool, chunk, path, report, received_at)
                    chunk = []
                    self._tick(report, stream.tell())
            if chunk:
                await self._map_encounters(pool, chunk, path, report, received_at)
            await pool.drain()
            self._tick(report, stream.tell(), force=True)

    async def _map_encounters(self, pool: MapPool, chunk: list[RawHoso | Record], path: Path, report: FileReport,
                              received_at: str) -> None:
        """Map a chunk of HOSO (in a worker process for a big file), then publish it, in file order."""
        async def publish(mapped: EncountersMapped) -> None:
            await self._writer.submit(mapped.raws, mapped.events)
            report.events += sum(len(own) for own in mapped.events)
            for failures in mapped.failures:
                for failure in failures:
                    await self._dead_letter(failure, path, report)
            report.read += len(mapped.raws)
            report.accepted += mapped.ok

        await pool.put(map_encounters, (chunk, received_at, self.facility, self.settings.pseudonym_key, path.name),
                       publish)

    async def _write_located(self, raws: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
                             events: list[list[Envelope]]) -> int:
        """Each raw record to emr.raw first, then its events, which point at it (hub.ops.publish). Returns the
        number of events queued: pipelined, they are confirmed by the ``drain`` that ends each file."""
        secret = self.settings.pseudonym_key
        encoded = [encode_events(secret, own) for own in events]
        await self._writer.submit(raws, encoded)
        return sum(len(own) for own in encoded)

    def _pool_for(self, path: Path) -> MapPool:
        return self._pool if self._pool.workers and path.stat().st_size >= _POOL_MIN_BYTES else self._inline

    async def _dead_letter(self, failure: Failure, path: Path, report: FileReport) -> None:
        failed_at = _now()
        letter = failure.dead_letter(failed_at, source_file=path.name)
        await self.producer.write(DLQ.name, letter.to_json(), None, [("stage", letter.stage.encode())])
        report.failures[failure.code] += 1

    # --- vaccination registry CSV ------------------------------------------------------------------------

    async def _registry(self, path: Path, report: FileReport) -> None:
        received_at = _now()
        pool = self._pool_for(path)
        chunk: list[tuple[int, list[str]]] = []
        undecodable: dict[int, bytes] = {}  # line -> its bytes: lines that are not UTF-8, each one a bad row
        try:
            with open(path, "rb") as raw, bulk_gc():
                for item in iter_values(utf8_lines(raw, undecodable)):
                    while undecodable:
                        await self._undecodable(undecodable, path, report)
                    if isinstance(item, BadRow):
                        report.read += 1
                        await self._bad_row(item.line, "parse", item.reason, item.original, path, report)
                        continue
                    chunk.append(item)
                    if len(chunk) >= _ROW_CHUNK:
                        await self._map_rows(pool, chunk, path, report, received_at)
                        chunk = []
                        self._tick(report, raw.tell())
                while undecodable:
                    await self._undecodable(undecodable, path, report)
                if chunk:
                    await self._map_rows(pool, chunk, path, report, received_at)
                await pool.drain()
                self._tick(report, raw.tell(), force=True)
        except RegistryFormatError as exc:
            report.error = str(exc)

    async def _undecodable(self, lines: dict[int, bytes], path: Path, report: FileReport) -> None:
        line = min(lines)
        original = lines.pop(line)
        report.read += 1
        await self._bad_row(line, "parse", "not UTF-8 (the registry export is UTF-8): the row is not imported",
                            original, path, report)

    async def _map_rows(self, pool: MapPool, chunk: list[tuple[int, list[str]]], path: Path, report: FileReport,
                        received_at: str) -> None:
        """Map a chunk of rows (in a worker process for a big file), then publish it, in file order."""
        async def publish(mapped: RowsMapped) -> None:
            report.read += len(mapped.raws) + len(mapped.rejected)
            for line, code, reason, original in mapped.rejected:
                await self._bad_row(line, code, reason, original, path, report)
            for column in mapped.dropped:
                report.notes[f"{column} left out: not a valid number"] += 1
            await self._writer.submit_pairs(mapped.raw_records(path.name), mapped.events, mapped.event_keys)
            report.events += len(mapped.events)
            report.accepted += len(mapped.raws)

        await pool.put(map_rows, (*pack_rows(chunk, for_worker=pool.workers > 0), received_at,
                                  self.settings.pseudonym_key), publish)

    async def _bad_row(self, line: int, code: str, reason: str, original: bytes, path: Path,
                       report: FileReport) -> None:
        letter = DeadLetter(stage="import", code=code, reason=reason, original=original,
                            headers={"source_system": "registry", "file": path.name, "line": str(line)},
                            failed_at=_now())
        await self.producer.write(DLQ.name, letter.to_json(), None, [("stage", b"import")])
        report.failures[f"{code}: {reason}"] += 1

    # --- HL7 v2 --------------------------------------------------------------------------------------------

    async def _hl7v2(self, path: Path, report: FileReport) -> None:
        listener = self._hl7_listener()
        peer = Peer(f"file:{path.name}", f"import-{int(time.time())}")
        received_at = _now()
        messages = split_batch(path.read_bytes())
        self.progress.start(report, len(messages), "messages")
        for message in messages:
            ack = await listener.handle_message(message, peer, received_at)
            code, _, text = read_ack(ack) if ack else ("AA", "", "")
            report.read += 1
            if code in ("AA", "CA"):
                report.accepted += 1
            else:
                report.failures[f"{code}: {text.split(':', 1)[0]}"] += 1
            self._tick(report, report.read)
        self._tick(report, report.read, force=True)

    def _hl7_listener(self) -> MllpListener:
        if self._listener is None:
            settings = self.settings
            sources = sources_from_settings(settings)
            dedup = DedupStore(self._redis, settings.pseudonym_key, settings.dedup_ttl_s,
                               in_flight_wait_s=settings.ack_timeout_s)
            self._listener = MllpListener(settings, self.producer, sources, dedup)
        return self._listener

    # --- FHIR Bundles ---------------------------------------------------------------------------------------

    async def _fhir(self, path: Path, report: FileReport) -> None:
        result = read_bundle(path, received_at=_now(), facility=self.facility,
                             max_bytes=self.settings.fhir_max_bundle_bytes)
        report.read = result.entries
        for failure in result.failures:
            await self._entry_failed(failure, path, report, result.facility, result.bundle_key)
        if result.error:
            report.error = result.error
            return
        secret = self.settings.pseudonym_key
        for start in range(0, len(result.mapped), _CHUNK):
            entries: list[EntryEvents] = result.mapped[start:start + _CHUNK]
            raws = [(entry.original, keyed_hash(secret, result.facility, "fhir", entry.patient_key).encode(),
                     [("source_system", b"fhir"), ("file", path.name.encode()),
                      ("bundle", result.bundle_key.encode()), ("entry", str(entry.index).encode()),
                      ("resource_type", entry.resource_type.encode())]) for entry in entries]
            report.events += await self._write_located(raws, [entry.events for entry in entries])
        context = {key: n for key, n in result.counts.items() if key.endswith(".context")}
        report.accepted = len(result.mapped) + sum(context.values())
        for key, n in context.items():
            report.notes[f"{key.removesuffix('.context')}: used to resolve references, not an event"] += n
        self._tick(report, path.stat().st_size, force=True)

    async def _entry_failed(self, failure: EntryFailure, path: Path, report: FileReport, facility: str,
                            bundle: str) -> None:
        letter = failure.dead_letter(_now(), source_file=path.name, facility=facility, bundle=bundle)
        await self.producer.write(DLQ.name, letter.to_json(), None, [("stage", b"import")])
        report.failures[failure.group] += 1

    def _tick(self, report: FileReport, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= _PROGRESS_EVERY_S:
            self._last_progress = now
            self.progress.update(done, report)


def _now() -> str:
    return datetime.now(VN_TZ).isoformat(timespec="milliseconds")


async def import_files(settings: Settings, paths: list[Path], progress: Progress | None = None,
                       facility: str | None = None) -> list[FileReport]:
    async with Importer(settings, progress, facility) as importer:
        return [await importer.import_file(path) for path in paths]
