"""Bad BHYT exports: every failure is a reason on the record (or, when the envelope itself breaks, after the
records read so far), never an exception, and nothing else in the file is lost. Malformed input first.

Also: size limits, streaming with bounded memory over a generated multi-megabyte export (the true 2 GB run
is in bench/xml130.py), the generator's broken variants, and the package's public surface.
"""

from __future__ import annotations

import base64
import gc
import resource
import time
import tracemalloc
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import connectors.xml130 as xml130
from connectors.xml130 import Failure, Limits, Record, read_export
from connectors.xml130 import generate as gen
from connectors.xml130.generate import envelope, hoso

DATA = Path(__file__).resolve().parents[1] / "data" / "xml130" / "inpatient"
RECEIVED_AT = "2026-12-01T08:00:00.000+07:00"

BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
        + ']><CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC><CHI_TIET_THUOC><TEN_THUOC>&lol9;</TEN_THUOC>'
        "</CHI_TIET_THUOC></DSACH_CHI_TIET_THUOC></CHITIEU_CHITIET_THUOC>").encode()
XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/hostname">]>'
       b"<CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC><CHI_TIET_THUOC><TEN_THUOC>&secret;</TEN_THUOC>"
       b"</CHI_TIET_THUOC></DSACH_CHI_TIET_THUOC></CHITIEU_CHITIET_THUOC>")
XML2 = (DATA / "XML2.xml").read_bytes()


def tables(**replace: bytes | str | None) -> list[tuple[str, str]]:
    """The inpatient tables as (LOAIHOSO, NOIDUNGFILE); bytes are base64-encoded, str is sent as given."""
    docs = {p.stem: p.read_bytes() for p in sorted(DATA.glob("XML*.xml"))}
    out = []
    for kind, doc in {**docs, **replace}.items():
        if doc is None:
            continue
        out.append((kind, base64.b64encode(doc).decode() if isinstance(doc, bytes) else doc))
    return out


def read(raw: bytes, **kwargs: Any) -> list[Record | Failure]:
    return list(read_export(raw, received_at=RECEIVED_AT, **kwargs))


def read_hoso(items: list[tuple[str, str]], **kwargs: Any) -> Record:
    results = read(envelope([hoso(items)]), **kwargs)
    assert len(results) == 1 and isinstance(results[0], Record), results
    return results[0]


def types(record: Record) -> set[str]:
    return {e.payload["resourceType"] for e in record.events}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# (id, XML2's NOIDUNGFILE, expected failure code, words the reason must contain)
TABLE_CASES: list[tuple[str, bytes | str, str, str]] = [
    ("truncated base64", b64(XML2)[:-3], "parse.base64", "truncated"),
    ("truncated at a quantum", b64(XML2[: len(XML2) // 2])[: (len(b64(XML2[: len(XML2) // 2])) // 4) * 4],
     "parse.truncated", "ends early"),
    ("base64 with a stray byte", b64(XML2)[:100] + "!" + b64(XML2)[100:], "parse.base64", "not valid base64"),
    ("base64 with non-ASCII", "Qm" + "ệ" + b64(XML2), "parse.base64", "non-ASCII"),
    ("empty NOIDUNGFILE", "", "parse.base64", "empty"),
    ("not XML", b"%PDF-1.4 a scanned page", "parse.not-xml", "not XML"),
    ("empty document", b"   ", "parse.not-xml", "empty"),
    ("wrong encoding", unicodedata.normalize("NFD", XML2.decode()).encode("cp1258", "replace"), "parse.encoding",
     "encoding"),
    ("billion laughs", BOMB, "parse.entity", "entit"),
    ("external entity", XXE, "parse.external-entity", "external entit"),
    ("doctype without entities", b'<!DOCTYPE CHITIEU_CHITIET_THUOC SYSTEM "http://example.invalid/x.dtd">'
     b"<CHITIEU_CHITIET_THUOC/>", "parse.dtd", "DOCTYPE"),
    ("external parameter entity", b'<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///nonexistent/p.ent"> %p;]>'
     b"<CHITIEU_CHITIET_THUOC/>", "parse.external-entity", "not resolved"),
    ("external DTD subset on disk", b'<!DOCTYPE CHITIEU_CHITIET_THUOC SYSTEM "file:///etc/hostname">'
     b"<CHITIEU_CHITIET_THUOC/>", "parse.dtd", "DOCTYPE"),
    ("wrong root", (DATA / "XML1.xml").read_bytes(), "parse.table", "expected CHITIEU_CHITIET_THUOC"),
    ("unclosed element", b"<CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC>", "parse.truncated", "ends early"),
]


class TestBadTables:
    @pytest.mark.parametrize(("name", "content", "code", "words"), TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
    def test_bad_xml2_costs_only_xml2(self, name: str, content: bytes | str, code: str, words: str) -> None:
        """A broken XML2 is one failure with its reason; the patient, encounter and other tables still map."""
        rec = read_hoso(tables(XML2=content))
        assert [f.code for f in rec.failures] == [code], [f.reason for f in rec.failures]
        failure = rec.failures[0]
        assert words in failure.reason
        assert failure.where == "HOSO 1 XML2" and failure.facility == "79048"
        assert "MedicationDispense" not in types(rec)
        assert {"Patient", "Encounter", "Condition", "Procedure", "Observation", "DocumentReference"} <= types(rec)

    def test_billion_laughs_expands_nothing(self) -> None:
        """The bomb is refused in milliseconds and no 'lol' text reaches anything."""
        started = time.perf_counter()
        rec = read_hoso(tables(XML2=BOMB))
        assert time.perf_counter() - started < 1.0
        assert not any(b"lollollol" in e.to_json() for e in rec.events)

    def test_external_entity_is_never_read(self) -> None:
        """The file an external entity names is not opened: its content appears nowhere."""
        secret = Path("/etc/hostname").read_bytes().strip()
        rec = read_hoso(tables(XML2=XXE))
        assert all(secret not in e.to_json() for e in rec.events) if secret else True
        assert all(secret not in f.reason.encode() for f in rec.failures) if secret else True

    def test_line_wrapped_base64_is_accepted(self) -> None:
        """Exports that wrap NOIDUNGFILE at 76 columns (MIME style) read normally."""
        wrapped = base64.encodebytes(XML2).decode()
        rec = read_hoso(tables(XML2=wrapped))
        assert rec.ok and len([e for e in rec.events if e.payload["resourceType"] == "MedicationDispense"]) == 2

    def test_oversized_table(self) -> None:
        """A table over the limit is a size failure for that table only."""
        rec = read_hoso(tables(), limits=Limits(max_table_bytes=1500))
        sizes = {f.where.split()[-1] for f in rec.failures if f.code == "parse.size"}
        assert sizes == {"XML1", "XML3"}  # the tables over 1,500 bytes
        assert not rec.events  # without XML1 nothing can be linked

    def test_duplicate_table(self) -> None:
        rec = read_hoso(tables() + [("XML2", b64(XML2))])
        assert [f.code for f in rec.failures] == ["parse.table"] and "twice" in rec.failures[0].reason

    def test_too_many_tables(self) -> None:
        rec = read_hoso(tables(), limits=Limits(max_tables_per_hoso=3))
        assert {f.code for f in rec.failures} == {"parse.size"}
        assert "Patient" in types(rec)


class TestBadRows:
    def test_impossible_date_costs_only_its_row(self) -> None:
        """31 November in drug row 1 fails that row (with its bytes); row 2 and everything else map."""
        bad = XML2.replace(b"<NGAY_YL>202611030900</NGAY_YL>", b"<NGAY_YL>202611310900</NGAY_YL>")
        rec = read_hoso(tables(XML2=bad))
        assert [(f.code, f.where) for f in rec.failures] == [("translate.date", "HOSO 1 XML2 row 1")]
        assert rec.failures[0].reason == "XML2 row 1: NGAY_YL: day out of range for the month"
        assert b"202611310900" in rec.failures[0].original and b"202611310900" not in rec.failures[0].reason.encode()
        assert len([e for e in rec.events if e.payload["resourceType"] == "MedicationDispense"]) == 1
        assert rec.counts["XML2.failed"] == 1 and rec.counts["XML2.rows"] == 2

    @pytest.mark.parametrize(("old", "new", "code", "reason"), [
        (b"<SO_LUONG>5</SO_LUONG>", b"<SO_LUONG>n\xc4\x83m</SO_LUONG>", "translate.value", "SO_LUONG: not a number"),
        (b"<NGAY_TH_YL>202611030945</NGAY_TH_YL>", b"<NGAY_TH_YL>202611032561</NGAY_TH_YL>", "translate.date",
         "NGAY_TH_YL: time out of range"),
        (b"<NGAY_YL>202611030900</NGAY_YL>", b"<NGAY_YL>2026-11-03</NGAY_YL>", "translate.date",
         "NGAY_YL: not a yyyyMMddHHmm date-time"),
        (b"<STT>2</STT>", b"<STT>1</STT>", "translate.value", "STT repeats"),
        (b"<MA_LK>79048.2611.00000042</MA_LK><STT>2</STT>", b"<MA_LK>OTHER</MA_LK><STT>2</STT>", "translate.value",
         "MA_LK differs"),
    ])
    def test_bad_row_values(self, old: bytes, new: bytes, code: str, reason: str) -> None:
        assert old in XML2
        rec = read_hoso(tables(XML2=XML2.replace(old, new, 1)))
        assert [f.code for f in rec.failures] == [code]
        assert reason in rec.failures[0].reason

    @pytest.mark.parametrize(("old", "new", "code"), [
        (b"<NGAY_VAO>202611030815</NGAY_VAO>", b"<NGAY_VAO>202613030815</NGAY_VAO>", "translate.date"),
        (b"<MA_BN>BN00123456</MA_BN>", b"<MA_BN/>", "translate.missing"),
        (b"<MA_LK>79048.2611.00000042</MA_LK>", b"", "translate.missing"),
    ])
    def test_bad_xml1_fails_the_encounter_but_keeps_its_tables(self, old: bytes, new: bytes, code: str) -> None:
        """Without a usable XML1 nothing can be linked: one reason for XML1, an 'unlinked' one per table,
        and every table's bytes stay on the record and on its failure (for the DLQ)."""
        xml1 = (DATA / "XML1.xml").read_bytes()
        rec = read_hoso(tables(XML1=xml1.replace(old, new)))
        assert rec.events == []
        assert rec.failures[0].code == code and rec.failures[0].where == "HOSO 1 XML1"
        unlinked = {f.where.split()[-1] for f in rec.failures[1:]}
        assert unlinked == {"XML2", "XML3", "XML4", "XML5", "XML7", "XML8"}
        assert all(f.code == "translate.unlinked" and f.original for f in rec.failures[1:])
        assert set(rec.tables) == {"XML1", "XML2", "XML3", "XML4", "XML5", "XML7", "XML8", "XML9"}

    def test_missing_xml1(self) -> None:
        rec = read_hoso(tables(XML1=None))
        assert rec.failures[0].code == "translate.missing" and "no XML1" in rec.failures[0].reason


class TestBadFiles:
    def test_truncated_export_keeps_what_came_before(self) -> None:
        """A file cut mid-HOSO: the complete HOSOs are records, then one failure says where it broke."""
        raw = gen.export(3, seed=7)
        cut = raw[: raw.index(b"<HOSO>", raw.index(b"<HOSO>", raw.index(b"<HOSO>") + 1) + 1) + 500]
        results = read(cut)
        assert [type(r).__name__ for r in results] == ["Record", "Record", "Failure"]
        failure = results[-1]
        assert isinstance(failure, Failure) and failure.code == "parse.truncated"
        assert "inside HOSO 3" in failure.reason and "2 HOSO read before it" in failure.reason

    def test_envelope_broken_in_the_middle(self) -> None:
        raw = gen.export(3, seed=7)
        second = raw.index(b"<HOSO>", raw.index(b"<HOSO>") + 1)
        broken = raw[:second] + b"<HOSO><FILEHOSO></HOSO>" + raw[second:]
        results = read(broken)
        assert [type(r).__name__ for r in results] == ["Record", "Failure"]
        assert results[-1].code == "parse.envelope"

    def test_envelope_with_billion_laughs_doctype(self) -> None:
        """A DOCTYPE on the envelope is refused before any entity could be expanded."""
        raw = gen.export(1)
        evil = raw.replace(b"<GIAMDINHHS>", b'<!DOCTYPE GIAMDINHHS [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                           b"<GIAMDINHHS>", 1)
        results = read(evil)
        assert len(results) == 1 and isinstance(results[0], Failure) and results[0].code == "parse.dtd"

    @pytest.mark.parametrize(("raw", "code"), [
        (b"", "parse.not-xml"),
        (b"MA_LK,HO_TEN\n1,Nguyen Van A\n", "parse.not-xml"),
        (b"<KHAC><X/></KHAC>", "parse.table"),
        ((DATA / "XML2.xml").read_bytes(), "translate.unlinked"),
        ('<?xml version="1.0" encoding="utf-16"?><GIAMDINHHS/>'.encode("utf-16"), "parse.encoding"),
    ], ids=["empty", "csv", "unknown root", "bare XML2", "utf-16 envelope"])
    def test_unreadable_documents(self, raw: bytes, code: str) -> None:
        results = read(raw)
        assert len(results) == 1 and isinstance(results[0], Failure)
        assert results[0].code == code, results[0].reason

    def test_file_limit(self) -> None:
        raw = gen.export(40)
        results = read(raw, limits=Limits(max_file_bytes=200_000, chunk_bytes=64 * 1024))
        assert isinstance(results[-1], Failure) and results[-1].code == "parse.size"
        assert 0 < sum(isinstance(r, Record) for r in results) < 40

    def test_huge_noidungfile_does_not_end_the_file(self) -> None:
        """A 12 MB NOIDUNGFILE (over libxml2's 10 MB text-node limit) is a size failure; the next HOSO reads."""
        good = hoso(tables())
        huge = hoso(tables(XML2="QUFB" * 3_000_000))
        results = read(envelope([good, huge, good]), limits=Limits(max_table_bytes=1 << 20))
        assert [type(r).__name__ for r in results] == ["Record", "Record", "Record"]
        assert results[0].ok and results[2].ok
        assert [(f.code, f.where) for f in results[1].failures] == [("parse.size", "HOSO 2 XML2")]

    def test_read_from_path_and_file_object(self, tmp_path: Path) -> None:
        raw = gen.export(2)
        path = tmp_path / "export.xml"
        path.write_bytes(raw)
        from_path = [e.event_id for r in read_export(path, received_at=RECEIVED_AT) for e in r.events]
        with path.open("rb") as fh:
            from_file = [e.event_id for r in read_export(fh, received_at=RECEIVED_AT) for e in r.events]
        assert from_path == from_file == [e.event_id for r in read(raw) for e in r.events]


class TestGenerator:
    def test_broken_variants_each_fail_as_designed(self, validate_fhir: Callable[[dict[str, Any]], None]) -> None:
        """export(broken=True): the valid encounters are clean; each broken one has exactly its failure, and
        still yields its Patient and Encounter."""
        results = read(gen.export(2, broken=True))
        assert all(isinstance(r, Record) for r in results)
        records: list[Record] = results  # type: ignore[assignment]
        assert [r.ok for r in records[:2]] == [True, True]
        codes = [[f.code for f in r.failures] for r in records[2:]]
        assert codes == [["parse.base64"], ["parse.not-xml"], ["parse.encoding"], ["parse.entity"],
                         ["parse.external-entity"], ["translate.date"]]
        assert list(gen.BROKEN) == ["truncated_base64", "not_xml", "wrong_encoding", "billion_laughs",
                                    "external_entity", "impossible_date"]
        for r in records:
            assert {"Patient", "Encounter"} <= types(r)
        for event in records[0].events:
            validate_fhir(event.payload)

    def test_generated_content_is_vietnamese_and_complete(self) -> None:
        """Every mapped table is present, names carry diacritics, and the sizes match the benchmark's spec."""
        (rec,) = read(gen.export(1, seed=3, hiv=True, unmapped=True))
        assert isinstance(rec, Record) and rec.ok
        assert set(rec.tables) == {"XML1", "XML2", "XML3", "XML4", "XML5", "XML6", "XML7", "XML8", "XML9"}
        count = {t: sum(1 for e in rec.events if e.payload["resourceType"] == t) for t in types(rec)}
        assert count["MedicationDispense"] == 10 and count["Procedure"] == 5 and count["Observation"] == 6
        name = rec.events[0].payload["name"][0]["text"]
        assert not name.isascii() and unicodedata.is_normalized("NFC", name)  # e.g. "Nguyễn Thị Hương"
        assert rec.sensitivity == ("hiv",)

    def test_generator_writes_a_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        out = tmp_path / "x.xml"
        monkeypatch.setattr("sys.argv", ["generate", "--encounters", "2", "--broken", "--out", str(out)])
        assert gen.main() == 0
        assert len([r for r in read(out.read_bytes()) if isinstance(r, Record)]) == 8


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


class TestStreaming:
    def test_records_arrive_while_the_file_is_read(self) -> None:
        """Lazy and chunked: the first record is yielded after at most two chunks, reads never exceed a chunk,
        and at every record the bytes read are at most one chunk ahead of the records delivered."""
        chunk = 64 * 1024
        source = gen.GeneratedFile(gen.stream(6_000_000, pool=20, chunk=256 * 1024))
        results = read_export(source, received_at=RECEIVED_AT, limits=Limits(chunk_bytes=chunk))
        first = next(results)
        assert isinstance(first, Record) and source.bytes_read <= 2 * chunk + 64 * 1024
        records = 1
        per_record = source.bytes_read  # generous: one HOSO is ~30 kB
        for result in results:
            assert isinstance(result, Record)
            records += 1
            assert source.bytes_read <= records * per_record + chunk
        assert source.largest_read <= 64 * 1024 and records > 150

    def test_bounded_memory_over_a_generated_stream(self) -> None:
        """~16 MB streamed through the reader: Python allocations peak under 8 MB and resident memory grows
        by less than 64 MB (the file itself never exists; a tree of it would be several times its size)."""
        source = gen.GeneratedFile(gen.stream(16_000_000, pool=10))
        gc.collect()
        rss_before = _rss_bytes()
        tracemalloc.start()
        records = events = 0
        try:
            for result in read_export(source, received_at=RECEIVED_AT):
                assert isinstance(result, Record)
                records += 1
                events += len(result.events)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert source.bytes_read >= 16_000_000 and records > 400
        assert peak < 8 * 1024 * 1024, peak
        assert _rss_bytes() - rss_before < 64 * 1024 * 1024


class TestPublicSurface:
    def test_exports(self) -> None:
        """The package exports a small, deliberate surface (what `hub import` will call)."""
        assert sorted(xml130.__all__) == sorted([
            "EVENT_TYPE", "SENSITIVITY_HIV", "SOURCE_SYSTEM", "Failure", "Limits", "RawHoso", "Record", "Result",
            "Summary", "read_export", "read_hoso", "translate_hoso"])
        assert xml130.SOURCE_SYSTEM == "xml130"


class TestNeverRaises:
    def test_missing_file_is_a_failure(self, tmp_path: Path) -> None:
        results = read_export(tmp_path / "absent.xml", received_at=RECEIVED_AT)
        (failure,) = list(results)
        assert isinstance(failure, Failure) and failure.code == "parse.io"

    def test_read_error_mid_file_keeps_the_records_before(self) -> None:
        """An OSError from the file after some HOSOs: those records, then a parse.io failure."""
        raw = gen.export(3)

        class Flaky:
            def __init__(self) -> None:
                self.pos = 0

            def read(self, size: int = -1) -> bytes:
                if self.pos > len(raw) * 2 // 3:
                    raise OSError(5, "Input/output error")
                out = raw[self.pos:self.pos + 16_384]
                self.pos += len(out)
                return out

        results = list(read_export(Flaky(), received_at=RECEIVED_AT))  # type: ignore[arg-type]
        assert isinstance(results[-1], Failure) and results[-1].code == "parse.io"
        assert sum(isinstance(r, Record) for r in results) >= 1

    def test_a_reader_bug_costs_one_table(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unexpected exception in a table mapper is a translate.internal failure for that table only."""
        from connectors.xml130 import clinical

        def boom(*_args: object) -> None:
            raise KeyError("bug")

        monkeypatch.setattr(clinical, "drugs", boom)
        rec = read_hoso(tables())
        assert [(f.code, f.where) for f in rec.failures] == [("translate.internal", "HOSO 1 XML2")]
        assert {"Patient", "Procedure", "Observation"} <= types(rec)


class TestDeadLetters:
    def test_failure_becomes_a_dead_letter(self) -> None:
        """A failure carries what hub.dlq needs: stage, stable code, reason, the original bytes, position."""
        bad = XML2.replace(b"<NGAY_YL>202611030900</NGAY_YL>", b"<NGAY_YL>202611310900</NGAY_YL>")
        failure = read_hoso(tables(XML2=bad)).failures[0]
        letter = failure.dead_letter("2026-12-01T08:00:01+07:00", source_file="79048_202611.xml")
        assert (letter.stage, letter.code) == ("import", "translate")
        assert letter.original.startswith(b"<CHI_TIET_THUOC>") and b"202611310900" in letter.original
        assert letter.headers == {"kind": "date", "where": "HOSO 1 XML2 row 1", "source_system": "xml130",
                                  "file": "79048_202611.xml", "facility": "79048"}
        assert b'"code":"translate"' in letter.to_json()

    def test_a_huge_bad_table_still_gets_a_dead_letter_that_fits_in_a_kafka_message(self) -> None:
        """A bad table of several MB (here a truncated XML2 of ~3 MB) gets a hub.dlq entry under Kafka's default
        1 MB message limit: its reason, the first 512 KiB of what failed, and the whole input's length and
        SHA-256, so the part kept can be matched to the export; the rest of the encounter is still read."""
        import hashlib

        row = XML2.split(b"<CHI_TIET_THUOC>", 1)[1].split(b"</CHI_TIET_THUOC>", 1)[0]
        body = b"".join(b"<CHI_TIET_THUOC>" + row + b"</CHI_TIET_THUOC>" for _ in range(3_000_000 // len(row)))
        huge = (b'<?xml version="1.0" encoding="utf-8"?><CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC>' + body)
        sent = b64(huge)  # no closing tags: truncated
        rec = read_hoso(tables(XML2=sent))
        assert [(f.code, f.where) for f in rec.failures] == [("parse.truncated", "HOSO 1 XML2")]
        assert {"Patient", "Encounter", "Procedure", "Observation"} <= types(rec)
        letter = rec.failures[0].dead_letter("2026-12-01T08:00:01+07:00", source_file="79048_202611.xml")
        wire = letter.to_json()
        assert len(wire) < 1_000_000 < len(sent)
        assert letter.reason.startswith("XML2: table XML ends early")
        assert letter.original == sent.encode()[:512 * 1024]
        assert letter.headers["original_bytes"] == str(len(sent))
        assert letter.headers["original_sha256"] == hashlib.sha256(sent.encode()).hexdigest()
        assert (letter.headers["where"], letter.headers["file"]) == ("HOSO 1 XML2", "79048_202611.xml")

    def test_a_bad_row_keeps_its_whole_bytes_and_no_size_headers(self) -> None:
        """Only an original over the cap is cut: a bad row's entry has its bytes whole and no size headers."""
        bad = XML2.replace(b"<NGAY_YL>202611030900</NGAY_YL>", b"<NGAY_YL>202611310900</NGAY_YL>")
        letter = read_hoso(tables(XML2=bad)).failures[0].dead_letter("2026-12-01T08:00:01+07:00")
        assert letter.original.rstrip().endswith(b"</CHI_TIET_THUOC>")
        assert "original_bytes" not in letter.headers and "original_sha256" not in letter.headers
