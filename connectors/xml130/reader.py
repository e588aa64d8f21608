"""``read_export``: a BHYT XML export (envelope or bare table) -> one Record per encounter, or a Failure.

Per HOSO: decode and safely parse each table, map XML1 first (patient, encounter, diagnoses: without it
nothing else can be linked to a person), decide the encounter's sensitivity (an XML6 table or an HIV
diagnosis), then map the detail tables in order. Every problem becomes a Failure on the record and the
rest of the record, and of the file, is still read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from connectors.xml130 import clinical, documents
from connectors.xml130.context import (
    SENSITIVITY_HIV, SOURCE_SYSTEM, Context, encoded_middle, is_hiv, legacy_names,
)
from connectors.xml130.errors import MappingError, TableError
from connectors.xml130.flat import Table, from_root, read_table
from connectors.xml130.layout import ENVELOPE_ROOT, ROOT_TO_TABLE, TABLES
from connectors.xml130.maps import MAPS
from connectors.xml130.output import Output
from connectors.xml130.results import Failure, Record, Result
from connectors.xml130.rows import rows
from connectors.xml130.safe import decode_base64, parse_document
from connectors.xml130.source import (
    PEEK_BYTES, EnvelopeError, Limits, RawHoso, RawTable, Source, first_element, open_source, stream_envelope,
)
from connectors.xml130.summary import summary
from hub.envelope import RawCoordinates
from hub.envelope import Source as EventSource

DEFAULT_LIMITS = Limits()
MAPPED_ORDER = ("XML2", "XML3", "XML4", "XML5", "XML7", "XML8")


def _now() -> str:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).isoformat(timespec="milliseconds")


def read_export(source: Source, *, received_at: str | None = None, facility: str | None = None,
                limits: Limits = DEFAULT_LIMITS, raw: RawCoordinates | None = None) -> Iterator[Result]:
    """Read one export file, lazily: a Record per HOSO as it is read, Failures for what cannot be read.

    ``source`` is a path, the bytes, or a binary file object (read in ``limits.chunk_bytes`` chunks).
    ``received_at`` (ISO 8601 with offset) is every event's recorded_at; the default is now. ``facility``
    stands in for MA_CSKCB when neither the envelope nor XML1 gives it. ``raw``: coordinates put on every
    event's source (see ``translate_hoso``). Never raises for bad input.
    """
    recorded_at = received_at or _now()
    for item in read_hoso(source, received_at=recorded_at, facility=facility, limits=limits, raw=raw):
        yield translate_hoso(item, recorded_at, facility, limits, raw) if isinstance(item, RawHoso) else item


def read_hoso(source: Source, *, received_at: str | None = None, facility: str | None = None,
              limits: Limits = DEFAULT_LIMITS, raw: RawCoordinates | None = None) -> Iterator[RawHoso | Result]:
    """``read_export`` without the translation: each HOSO of an envelope as it was read (its tables still
    base64), for ``translate_hoso`` to map elsewhere (an importer's worker processes); a bare document and
    file-level problems as ``read_export`` gives them."""
    recorded_at = received_at or _now()
    try:
        stream, owned = open_source(source)
    except OSError as exc:
        yield Failure("parse", "io", f"cannot open the export: {exc.strerror or type(exc).__name__}", "file",
                      b"", facility)
        return
    try:
        try:
            head = stream.read(PEEK_BYTES)
        except OSError as exc:
            yield Failure("parse", "io", f"reading the export failed: {exc.strerror or type(exc).__name__}",
                          "file", b"", facility)
            return
        if first_element(head) == ENVELOPE_ROOT:
            yield from _envelope(head, stream, facility, limits)
        else:
            yield _bare(head, stream, recorded_at, facility, limits, raw)
    finally:
        if owned:
            stream.close()


def _envelope(head: bytes, stream: Any, facility: str | None, limits: Limits) -> Iterator[RawHoso | Failure]:
    hoso_read = 0
    try:
        for hoso in stream_envelope(head, stream, limits):
            hoso_read = hoso.index
            yield hoso
    except EnvelopeError as exc:
        error = exc.error
        yield Failure("parse", error.kind, f"{error.reason}; {exc.hoso_read} HOSO read before it",
                      f"after HOSO {hoso_read}", b"", facility)
    except OSError as exc:
        yield Failure("parse", "io", f"reading the export failed: {exc.strerror or type(exc).__name__}; "
                      f"{hoso_read} HOSO read before it", f"after HOSO {hoso_read}", b"", facility)


def _bare(head: bytes, stream: Any, recorded_at: str, facility: str | None, limits: Limits,
          raw: RawCoordinates | None) -> Result:
    try:
        data = head + stream.read(max(0, limits.max_table_bytes + 1 - len(head)))
    except OSError as exc:
        return Failure.of("parse", "io", f"reading the export failed: {exc.strerror or type(exc).__name__}",
                          "document", head, facility)
    try:
        root = parse_document(data, limits.max_table_bytes)
    except TableError as exc:
        return Failure.of("parse", exc.kind, exc.reason, "document", data, facility)
    tag = root.tag.rpartition("}")[2] if isinstance(root.tag, str) else ""
    kind = ROOT_TO_TABLE.get(tag)
    if tag == ENVELOPE_ROOT:
        return Failure.of("parse", "encoding", "envelope is not in an ASCII-compatible encoding (BHYT XML is UTF-8)",
                          "document", data, facility)
    if kind is None:
        return Failure.of("parse", "table", f"root element {tag or '?'} is neither {ENVELOPE_ROOT} nor a BHYT table",
                          "document", data, facility)
    if kind != "XML1":
        return Failure.of("translate", "unlinked", f"a bare {kind} document cannot be linked to a patient without "
                          "its XML1: send the GIAMDINHHS envelope or the XML1 table", "document",
                          data, facility)
    hoso = RawHoso(1, facility or "")
    return _translate(hoso, {kind: (data, from_root(kind, data, root))}, [], recorded_at, facility, raw)


def _decode(table: RawTable, limits: Limits) -> tuple[bytes, Table | None]:
    if table.problem is not None:
        raise table.problem
    assert table.base64 is not None
    data = decode_base64(table.base64, limits.max_table_bytes)
    if MAPS.tables(table.kind) in ("unmapped", "sensitive"):
        return data, None  # kept raw, not parsed: nothing reads it
    return data, read_table(table.kind, data, limits.max_table_bytes)


def translate_hoso(hoso: RawHoso, recorded_at: str, facility: str | None = None,
                   limits: Limits = DEFAULT_LIMITS, raw: RawCoordinates | None = None, *,
                   encoded: bool = False) -> Record:
    """One HOSO (its tables still base64) -> a Record. Public for replaying a HOSO from the DLQ, and for
    mapping HOSO read by ``read_hoso`` in another process. ``raw``: the coordinates of the encounter's raw
    record, put on every event's source (an importer that learns them only after writing passes a
    placeholder and fills it in the serialised events). ``encoded``: the record's events are their JSON bytes
    (``Envelope.to_json``'s), built without Envelope objects, for an importer that only writes them."""
    where = f"HOSO {hoso.index}"
    parsed: dict[str, tuple[bytes, Table | None]] = {}
    failures: list[Failure] = []
    for table in hoso.tables:
        try:
            if table.kind in parsed:
                raise TableError("table", f"{table.kind} appears twice in one HOSO")
            parsed[table.kind] = _decode(table, limits)
        except TableError as exc:
            original = (table.base64 or "").encode("ascii", "replace")
            failures.append(Failure.of("parse", exc.kind, f"{table.kind}: {exc.reason}", f"{where} {table.kind}",
                                       original, hoso.facility or facility))
    return _translate(hoso, parsed, failures, recorded_at, facility, raw, encoded)


def _unlinked(record: Record, out_where: str, reason: str) -> Record:
    for kind, data in record.tables.items():
        if kind != "XML1" and MAPS.tables(kind) not in ("unmapped", "sensitive"):
            record.failures.append(Failure.of("translate", "unlinked", f"{kind}: {reason}", f"{out_where} {kind}",
                                              data, record.facility or None))
    return record


def _translate(hoso: RawHoso, parsed: dict[str, tuple[bytes, Table | None]],
               failures: list[Failure], recorded_at: str, facility: str | None,
               raw: RawCoordinates | None, encoded: bool = False) -> Record:
    where = f"HOSO {hoso.index}"
    record = Record(hoso.index, hoso.facility or facility or "", None, failures=failures,
                    tables={kind: data for kind, (data, _root) in parsed.items()})
    for kind in parsed:
        treatment = MAPS.tables(kind)
        if treatment in ("unmapped", "sensitive"):
            record.counts[f"{kind}.{treatment}"] += 1
    if "XML1" not in parsed:
        reason = "XML1 unreadable" if any(f.where.endswith("XML1") for f in failures) else "no XML1 in the HOSO"
        if not any(f.where.endswith("XML1") for f in failures):
            failures.append(Failure("translate", "missing", "HOSO has no XML1 (encounter summary)",
                                    f"{where} XML1", b"", record.facility or None))
        return _unlinked(record, where, f"{reason}: the table cannot be linked to a patient")
    data, xml1 = parsed["XML1"]
    assert xml1 is not None
    f = legacy_names(xml1.records[0])
    fac = f.get("MA_CSKCB") or hoso.facility or facility
    record.encounter_key = f.get("MA_LK")
    if not fac:
        failures.append(Failure.of("translate", "missing", "XML1: MA_CSKCB (facility) missing and no envelope "
                                   "MACSKCB", f"{where} XML1", data, None, record.encounter_key))
        return _unlinked(record, where, "XML1 unusable: the table cannot be linked to a patient")
    record.facility = fac
    try:
        mapped = summary(f, fac)
    except MappingError as exc:
        failures.append(Failure.of("translate", exc.kind, exc.reason, f"{where} XML1", data, fac,
                                   record.encounter_key))
        return _unlinked(record, where, "XML1 unusable: the table cannot be linked to a patient")
    except Exception as exc:  # a reader bug must cost one encounter, not the file
        failures.append(Failure.of("translate", "internal", f"XML1: unexpected {type(exc).__name__} in the reader "
                                   "(a bug: the tables are kept for replay)", f"{where} XML1", data,
                                   fac, record.encounter_key))
        return _unlinked(record, where, "XML1 unusable: the table cannot be linked to a patient")
    sensitive = "XML6" in parsed or any(is_hiv(code) for code in mapped.icd10)
    sensitivity = (SENSITIVITY_HIV,) if sensitive else ()
    record.sensitivity = sensitivity
    record.subject = mapped.subject
    ma_lk = f["MA_LK"]
    source = EventSource(SOURCE_SYSTEM, fac, ma_lk, raw=raw)
    middle = encoded_middle(recorded_at, source, mapped.subject, sensitivity) if encoded else None
    ctx = Context(fac, ma_lk, f"Patient/{mapped.patient['id']}", f"Encounter/{mapped.encounter['id']}",
                  mapped.occurred_at, recorded_at, source, mapped.subject, f"{SOURCE_SYSTEM}|{fac}|{ma_lk}|",
                  sensitivity, middle)
    out = Output(where, fac, ma_lk, failures=failures, counts=record.counts)
    out.events.append(ctx.event(mapped.patient, "XML1/Patient"))
    out.events.append(ctx.event(mapped.encounter, "XML1/Encounter"))
    for condition in mapped.conditions:
        out.events.append(ctx.event(condition, f"XML1/{condition['code']['coding'][0]['code']}/Condition"))
    out.counts["XML1.rows"] += 1
    groups: dict[str, str] = {}
    for kind in MAPPED_ORDER:
        if kind not in parsed:
            continue
        table_bytes, table = parsed[kind]
        assert table is not None
        try:
            _map_table(kind, table_bytes, table, ctx, out, groups)
        except MappingError as exc:
            failures.append(Failure.of("translate", exc.kind, f"{kind}: {exc.reason}", f"{where} {kind}",
                                       table_bytes, fac, ma_lk))
        except Exception as exc:  # a reader bug must cost one table, not the file (the reason says so)
            failures.append(Failure.of("translate", "internal", f"{kind}: unexpected {type(exc).__name__} in the "
                                       "reader (a bug: the table is kept for replay)", f"{where} {kind}",
                                       table_bytes, fac, ma_lk))
    record.events = out.events
    return record


def _map_table(kind: str, data: bytes, table: Table, ctx: Context, out: Output, groups: dict[str, str]) -> None:
    if TABLES[kind][1] is None:  # the root is the one record
        documents.paper(kind, table.records[0], data, ctx, out)
        return
    records = rows(table, legacy=kind == "XML5")
    if kind == "XML2":
        clinical.drugs(records, ctx, out)
    elif kind == "XML3":
        clinical.services(records, ctx, out, groups)
    elif kind == "XML4":
        clinical.results(records, ctx, out, groups)
    elif kind == "XML5":
        documents.notes(records, ctx, out)
