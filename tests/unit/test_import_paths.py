"""The import path without services: one format detection for import, watch and translate; what the importer
writes for a FHIR bundle and a registry CSV with a row that is not UTF-8 (raw first, then events pointing at
it, every bad record on hub.dlq with its reason, nothing else lost); progress and the per-file summary; and
``hub translate`` for every format. The producer and the raw-first writer are in-memory stand-ins; the real
path runs in tests/integration/test_import_fhir_live.py and test_file_import.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.registry import COLUMNS
from connectors.xml130 import generate
from hub.envelope import DeadLetter, Envelope
from hub.ops.file_import import FileReport, Importer
from hub.ops.formats import detect_format
from hub.ops.translate_files import translate_files
from hub.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLE = DATA / "fhir" / "transaction_tran_thi_lan.json"
RECEIVED = "2026-12-01T08:00:00.000+07:00"


class MemoryProducer:
    """The producer's ``write`` (the importer's DLQ writes), kept in a list; offsets count per topic."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []
        self._offsets: dict[str, int] = {}

    def append(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> tuple[int, int]:
        self.records.append((topic, value, key, list(headers)))
        self._offsets[topic] = self._offsets.get(topic, -1) + 1
        return 0, self._offsets[topic]

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = ()) -> tuple[int, int]:
        return self.append(topic, value, key, headers)

    def on(self, topic: str) -> list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]]:
        return [r for r in self.records if r[0] == topic]

    async def stop(self) -> None:
        pass


class MemoryWriter:
    """The importer's raw-first writer (hub.ops.publish) in memory: each raw record, then its events with that
    record's coordinates swapped in, as the real one does once Kafka has answered."""

    def __init__(self, producer: MemoryProducer) -> None:
        self._producer = producer

    async def submit(self, raws: Any, events: Any, *_rest: Any) -> None:
        from hub.ops.publish import located

        for (value, key, headers), own in zip(raws, events):
            partition, offset = self._producer.append("emr.raw", value, key, headers)
            for event_json, event_key in own:
                self._producer.append("events.canonical", located(event_json, partition, offset), event_key, ())

    async def submit_pairs(self, raws: Any, events: Any, keys: Any) -> None:
        pairs = [[(events[2 * i], key), (events[2 * i + 1], key)] for i, key in enumerate(keys)]
        await self.submit([(value, key, headers) for _topic, value, key, headers in raws], pairs)

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def start(self, report: FileReport, total: int, unit: str) -> None:
        self.calls.append(("start", total, unit))

    def update(self, done: int, report: FileReport) -> None:
        self.calls.append(("update", done, ""))

    def finish(self, report: FileReport) -> None:
        self.calls.append(("finish", report.read, ""))


async def run_import(path: Path) -> tuple[FileReport, MemoryProducer, Recorder]:
    progress = Recorder()
    importer = Importer(Settings(), progress)
    producer = MemoryProducer()
    importer.producer = producer  # type: ignore[assignment]
    importer._writer = MemoryWriter(producer)  # type: ignore[assignment]
    try:
        return await importer.import_file(path), producer, progress
    finally:
        await importer.__aexit__(None, None, None)


def csv_row(**values: str) -> str:
    base = {"record_id": "VX-1", "ho_ten": "Nguyễn Văn Hùng", "ngay_sinh": "12/05/1978", "gioi_tinh": "Nam",
            "so_cccd": "079078001234", "so_bhyt": "", "so_dien_thoai": "", "dia_chi": "", "ma_xa": "26734",
            "ma_vaccine": "AZ", "ten_vaccine": "AstraZeneca", "so_lo": "A1", "mui_thu": "1",
            "ngay_tiem": "10/06/2021", "ma_co_so": "79001"}
    return ",".join({**base, **values}[c] for c in COLUMNS)


class TestDetection:
    @pytest.mark.parametrize(("head", "kind"), [
        (b"", "unknown"), ("Bệnh nhân".encode(), "unknown"), (b"%PDF-1.4", "unknown"),
        (b"\xef\xbb\xbf<?xml version='1.0'?><GIAMDINHHS>", "xml130"), (b"  \n<TONG_HOP>", "xml130"),
        ('<?xml version="1.0" encoding="utf-16"?>'.encode("utf-16"), "xml130"),
        (b'{"resourceType": "Bundle"', "fhir"), (b"\xef\xbb\xbf\n {", "fhir"),
        (("record_id," + ",".join(COLUMNS[1:])).encode(), "registry"),
        (b"MSH|^~\\&|HIS", "hl7v2"), (b"FHS|^~\\&", "hl7v2"), (b"\x0bMSH|^~\\&", "hl7v2"),
    ], ids=["empty", "text", "pdf", "xml bom", "bare table", "utf-16 xml", "json", "json bom", "csv", "msh", "fhs",
            "mllp capture"])
    def test_detect_format(self, head: bytes, kind: str) -> None:
        assert detect_format(head) == kind


class TestFhirImport:
    async def test_raw_first_then_events_pointing_at_it_and_bad_entries_dead_lettered(self) -> None:
        report, producer, progress = await run_import(BUNDLE)
        assert (report.format, report.read, report.accepted, report.events) == ("fhir", 9, 8, 7)
        assert report.failures == {"parse.invalid: Observation status: Value for the field 'status' is required.": 1}
        assert report.notes == {"Organization: used to resolve references, not an event": 1}
        raws, events = producer.on("emr.raw"), producer.on("events.canonical")
        assert len(raws) == 7 and len(events) == 7
        assert [orjson.loads(r[1])["resource"]["resourceType"] for r in raws][:2] == ["Patient", "Encounter"]
        assert dict(raws[1][3])["entry"] == b"2" and dict(raws[1][3])["source_system"] == b"fhir"
        envelopes = [Envelope.from_json(r[1]) for r in events]
        assert [(e.source.raw.topic, e.source.raw.offset) for e in envelopes] == [("emr.raw", i) for i in range(7)]
        assert all(len(r[2]) == 32 and b"BN-2026" not in r[2] for r in raws + events)  # keyed hashes only
        (dlq,) = producer.on("hub.dlq")
        letter = DeadLetter.from_json(dlq[1])
        assert letter.reason == "entry 7 (Observation): status: Value for the field 'status' is required."
        assert letter.headers["where"] == "entry 7" and letter.headers["file"] == BUNDLE.name
        assert orjson.loads(letter.original)["resource"]["resourceType"] == "Observation"
        assert progress.calls[0] == ("start", BUNDLE.stat().st_size, "B") and progress.calls[-1] == ("finish", 9, "")

    async def test_bad_json_is_one_dead_letter_and_an_unreadable_file(self, tmp_path: Path) -> None:
        path = tmp_path / "cut.json"
        path.write_bytes(BUNDLE.read_bytes()[:700])
        report, producer, _ = await run_import(path)
        assert not report.readable and report.error.startswith("not valid JSON")
        assert report.summary_lines() == [f"{path}: not imported: {report.error}"]
        assert [r[0] for r in producer.records] == ["hub.dlq"]


class TestRegistryImport:
    async def test_a_row_that_is_not_utf8_is_one_bad_row_and_the_rest_imports(self, tmp_path: Path) -> None:
        """Windows-1258 bytes in line 3: that row goes to hub.dlq by line number; lines 2 and 4 import."""
        lines = [",".join(COLUMNS), csv_row(), csv_row(record_id="VX-2", ho_ten="Lê Thị Tâm"),
                 csv_row(record_id="VX-3", ho_ten="Đỗ Văn Nam"), csv_row(record_id="VX-4", ngay_tiem="31/02/2021")]
        data = [line.encode("utf-8") for line in lines]
        data[2] = lines[2].encode("cp1258", "replace")
        path = tmp_path / "tiem_chung.csv"
        path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(data) + b"\n")
        report, producer, progress = await run_import(path)
        assert (report.read, report.accepted, report.events, report.error) == (4, 2, 4, "")
        assert report.failures == {"parse: not UTF-8 (the registry export is UTF-8): the row is not imported": 1,
                                   "translate: ngay_tiem: impossible date": 1}
        ids = {Envelope.from_json(r[1]).source.message_id for r in producer.on("events.canonical")}
        assert ids == {"VX-1", "VX-3"}
        letters = sorted((DeadLetter.from_json(r[1]) for r in producer.on("hub.dlq")), key=lambda d: d.headers["line"])
        assert [(d.headers["line"], d.code) for d in letters] == [("3", "parse"), ("5", "translate")]
        assert letters[0].original == data[2] + b"\n"  # the bytes as they came, to fix and re-send
        assert progress.calls[-2] == ("update", path.stat().st_size, "")

    async def test_summary_lines(self, tmp_path: Path) -> None:
        path = tmp_path / "one.csv"
        path.write_text(",".join(COLUMNS) + "\n" + csv_row() + "\nVX-9,short\n", encoding="utf-8")
        report, _, _ = await run_import(path)
        assert report.summary_lines() == [
            f"{path} (registry): 2 rows read, 1 accepted, 2 events published, 1 failures (to hub.dlq)",
            "       1  parse: expected 15 columns, found 2"]


class TestBadExportsThroughImport:
    async def test_each_broken_table_is_one_dead_letter_and_nothing_else_is_lost(self, tmp_path: Path) -> None:
        """generate.export(broken=True): truncated base64, a table that is not XML, wrong encoding, billion
        laughs, an external entity and an impossible date, each in its own encounter. Through the importer each
        is one hub.dlq entry naming its table and kind, and every event the reader made is published."""
        from connectors.xml130 import Record, read_export

        path = tmp_path / "79048_202611.xml"
        path.write_bytes(generate.export(2, seed=11, broken=True))
        report, producer, _ = await run_import(path)
        letters = [DeadLetter.from_json(r[1]) for r in producer.on("hub.dlq")]
        assert [d.headers["kind"] for d in letters] == ["base64", "not-xml", "encoding", "entity", "external-entity",
                                                        "date"]
        assert all(d.headers["where"].startswith(f"HOSO {i}") for i, d in enumerate(letters, 3))
        assert "truncated" in letters[0].reason and "billion laughs" in letters[3].reason
        expected = [e.event_id for r in read_export(path, received_at=RECEIVED) if isinstance(r, Record)
                    for e in r.events]
        published = [Envelope.from_json(r[1]).event_id for r in producer.on("events.canonical")]
        assert published == expected and report.events == len(expected) and report.read == 8
        assert len(producer.on("emr.raw")) == 8  # every encounter's raw tables, the broken ones too


class TestBoundedMemory:
    def test_registry_lines_stream_in_bounded_memory(self) -> None:
        """~2 MB of registry CSV generated line by line (never a file) through the importer's line decoder and
        the reader: what stays allocated is a small constant, however long the file. The duplicate check keeps
        only a window of recent record ids (here 2,000 of the 20,000 rows; before it kept every id, ~110 bytes
        a row, ~1 GB for the 9.1 M-row registry). The multi-GB run, mapping included: bench.import_stream."""
        import tracemalloc

        from connectors.registry import iter_values, row_of
        from hub.ops.formats import utf8_lines

        row = csv_row().encode()
        n = 20_000

        def lines() -> Any:
            yield (",".join(COLUMNS) + "\n").encode()
            for i in range(n):
                yield row.replace(b"VX-1,", f"VX-{i},".encode(), 1) + b"\n"

        undecodable: dict[int, bytes] = {}
        tracemalloc.start()
        count = size = 0
        try:
            for item in iter_values(utf8_lines(lines(), undecodable), repeat_window=2_000):  # type: ignore[arg-type]
                count += 1
                size += len(row_of(*item).original)  # type: ignore[misc]
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == n and size > 2_000_000 and not undecodable
        assert peak < 2 * 1024 * 1024, peak  # not growing with n: 20,000 rows x 110 bytes would add 2.2 MB


def translate(*paths: Path) -> tuple[int, list[dict[str, Any]], list[str]]:
    out, err = io.StringIO(), io.StringIO()
    status = translate_files([str(p) for p in paths], charset="utf-8", received_at=RECEIVED, out=out, err=err)
    return status, [orjson.loads(line) for line in out.getvalue().splitlines()], err.getvalue().splitlines()


class TestTranslateEveryFormat:
    def test_fhir_bundle(self) -> None:
        status, events, errors = translate(BUNDLE)
        assert status == 0 and len(events) == 7 and events[0]["source"]["system"] == "fhir"
        assert errors == [f"{BUNDLE}: parse.invalid: entry 7 (Observation): status: Value for the field 'status' "
                          "is required."]

    def test_bhyt_xml_with_broken_tables(self, tmp_path: Path) -> None:
        path = tmp_path / "79048.xml"
        path.write_bytes(generate.export(1, seed=5, broken=True))
        status, events, errors = translate(path)
        assert status == 0 and {e["source"]["system"] for e in events} == {"xml130"}
        assert any(": parse.base64: " in line and "HOSO 2 XML" in line for line in errors)
        assert any(": translate.date: " in line for line in errors)

    def test_registry_csv(self, tmp_path: Path) -> None:
        path = tmp_path / "r.csv"
        path.write_text(",".join(COLUMNS) + "\n" + csv_row() + "\n" + csv_row(record_id="VX-2", ngay_tiem="31/02/2021")
                        + "\n", encoding="utf-8")
        status, events, errors = translate(path)
        assert status == 0 and [e["type"] for e in events] == ["patient.updated", "immunization.recorded"]
        assert errors == [f"{path}: line 3: translate: ngay_tiem: impossible date"]

    def test_hl7_and_unknown_and_missing(self, tmp_path: Path) -> None:
        hl7 = DATA / "hl7" / "adt_a01_nguyen_van_an.hl7"
        junk = tmp_path / "note.txt"
        junk.write_text("Ghi chú", encoding="utf-8")
        status, events, errors = translate(hl7, junk, tmp_path / "none.json")
        assert status == 2 and events and events[0]["source"]["system"] == "hl7v2"
        assert errors[0] == f"{junk}: cannot read: not a format the hub reads (BHYT XML, registry CSV, HL7 v2 or a " \
                            "FHIR Bundle in JSON)"
        assert errors[1].startswith(f"{tmp_path / 'none.json'}: cannot read: ")

    def test_same_events_as_import_would_publish(self) -> None:
        """translate and import share the reader: the same event ids."""
        _, events, _ = translate(BUNDLE)
        from connectors.fhir import read_bundle

        assert [e["event_id"] for e in events] == [e.event_id for e in read_bundle(BUNDLE, received_at=RECEIVED).events]
        assert json.loads(json.dumps(events[0]))["payload"]["resourceType"] == "Patient"


class TestProgressBar:
    def test_tqdm_bar_names_the_file_and_counts_only(self) -> None:
        from hub.ops.progress import TqdmProgress

        out = io.StringIO()
        bar = TqdmProgress(stream=out, disable=False)
        report = FileReport("/srv/drop/79048_202611.xml", "xml130")
        bar.start(report, 2_000_000, "B")
        report.read, report.events = 120, 3_400
        report.failures["parse.base64"] = 2
        bar.update(1_000_000, report)
        bar.finish(report)
        text = out.getvalue()
        assert "79048_202611.xml" in text and "120 read, 3,400 events, 2 failed" in text and "/srv/drop" not in text

    def test_silent_when_not_a_terminal(self) -> None:
        from hub.ops.progress import TqdmProgress

        out = io.StringIO()  # not a TTY: tqdm's disable=None turns the bar off
        bar = TqdmProgress(stream=out)
        report = FileReport("x.csv", "registry")
        bar.start(report, 10, "B")
        bar.update(5, report)
        bar.finish(report)
        assert out.getvalue() == ""
