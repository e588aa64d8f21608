"""BHYT XML (QD 130 / 4210) -> canonical events: a golden file plus targeted assertions for every table.

Golden: ``tests/data/xml130/inpatient/XML*.xml`` (one encounter, every mapped table, an unmapped XML9) are
wrapped in a GIAMDINHHS envelope and read; the events must equal ``inpatient-expected.json``. Regenerate with
``HSSK_REGEN_GOLDEN=1 pytest tests/unit/test_xml130.py`` and read every changed line before committing it.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.xml130 import EVENT_TYPE, Failure, Record, Summary, read_export
from connectors.xml130.generate import envelope, hoso
from connectors.xml130.summary import SYSTEM_BHXH, encounter_system
from hub.envelope import uuid5
from hub.envelope import (
    EVENT_ID_NAMESPACE, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Envelope, event_id, mrn_system,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "xml130"
INPATIENT = DATA / "inpatient"
RECEIVED_AT = "2026-12-01T08:00:00.000+07:00"
REGEN = os.environ.get("HSSK_REGEN_GOLDEN") == "1"
MA_LK = "79048.2611.00000042"


def tables(**replace: bytes | None) -> dict[str, bytes]:
    """The inpatient tables by LOAIHOSO, with some replaced (bytes) or left out (None)."""
    out = {p.stem: p.read_bytes() for p in sorted(INPATIENT.glob("XML*.xml"))}
    for kind, data in replace.items():
        if data is None:
            out.pop(kind, None)
        else:
            out[kind] = data
    return out


def edit(kind: str, old: str, new: str) -> bytes:
    data = (INPATIENT / f"{kind}.xml").read_text(encoding="utf-8")
    assert old in data, old
    return data.replace(old, new).encode("utf-8")


def read_one(table_map: dict[str, bytes] | None = None) -> Record:
    results = list(read_export(envelope([hoso(table_map or tables())]), received_at=RECEIVED_AT))
    assert len(results) == 1 and isinstance(results[0], Record), results
    return results[0]


def by_type(record: Record, resource_type: str) -> list[dict[str, Any]]:
    return [e.payload for e in record.events if e.payload["resourceType"] == resource_type]


def one(record: Record, resource_type: str) -> dict[str, Any]:
    found = by_type(record, resource_type)
    assert len(found) == 1, (resource_type, len(found))
    return found[0]


@pytest.fixture(scope="module")
def record() -> Record:
    return read_one()


@pytest.fixture(scope="session")
def validate_xml130_event() -> Callable[[Envelope], None]:
    """The canonical schema, with the two event types this reader adds (not yet in the published enum)."""
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "canonical-event.v1.json").read_text(encoding="utf-8"))
    extended = copy.deepcopy(schema)
    enum = extended["properties"]["type"]["enum"]
    enum += sorted(set(EVENT_TYPE.values()) - set(enum))
    validator = jsonschema.Draft202012Validator(extended, format_checker=jsonschema.FormatChecker())

    def check(event: Envelope) -> None:
        validator.validate(orjson.loads(event.to_json()))

    return check


class TestGolden:
    def test_golden(self, record: Record) -> None:
        """The whole output for the inpatient encounter equals the reviewed expected JSON."""
        actual = [orjson.loads(e.to_json()) for e in record.events]
        expected_path = DATA / "inpatient-expected.json"
        if REGEN:
            expected_path.write_text(json.dumps(actual, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        assert actual == json.loads(expected_path.read_text(encoding="utf-8"))

    def test_every_payload_validates(self, record: Record, validate_fhir: Callable[[dict[str, Any]], None],
                                     validate_xml130_event: Callable[[Envelope], None]) -> None:
        """Every payload validates as FHIR R4B and every event against the canonical envelope schema."""
        assert len(record.events) == 17
        for event in record.events:
            validate_fhir(event.payload)
            validate_xml130_event(event)

    def test_order_and_types(self, record: Record) -> None:
        """Patient, Encounter and Conditions first (XML1), then the detail tables in table order."""
        assert [e.payload["resourceType"] for e in record.events] == [
            "Patient", "Encounter", "Condition", "Condition", "Condition",
            "MedicationDispense", "MedicationDispense", "Procedure", "Procedure",
            "Observation", "Observation", "Observation", "DiagnosticReport", "DiagnosticReport",
            "DocumentReference", "DocumentReference", "DocumentReference",
        ]
        assert [e.type for e in record.events] == [EVENT_TYPE[e.payload["resourceType"]] for e in record.events]

    def test_deterministic(self) -> None:
        """Reading the same bytes twice gives byte-identical events (no clock, no randomness)."""
        raw = envelope([hoso(tables())])
        first = [e.to_json() for r in read_export(raw, received_at=RECEIVED_AT) for e in r.events]
        second = [e.to_json() for r in read_export(raw, received_at=RECEIVED_AT) for e in r.events]
        assert first == second

    def test_event_ids_are_envelope_event_ids(self, record: Record) -> None:
        """Event ids are hub.envelope.event_id of (xml130, facility, MA_LK, position): replay-stable."""
        patient_event = record.events[0]
        assert patient_event.event_id == event_id("xml130", "79048", MA_LK, "XML1/Patient")
        assert len({e.event_id for e in record.events}) == len(record.events)

    def test_fast_envelope_equals_the_dataclass(self, record: Record) -> None:
        """The reader's envelope constructor gives exactly what ``Envelope(...)`` gives, every field."""
        for event in record.events:
            built = Envelope(event_id=event.event_id, type=event.type, occurred_at=event.occurred_at,
                             recorded_at=event.recorded_at, source=event.source, subject=event.subject,
                             payload=event.payload, sensitivity=event.sensitivity)
            assert type(event) is Envelope
            assert event == built and event.to_json() == built.to_json()
            assert (event.citizen_id, event.record_version, event.schema_version) == (None, None, 1)

    def test_fast_uuid5_equals_stdlib(self) -> None:
        """The reader's string uuid5 is exactly uuid.uuid5 (ids must not change with the implementation)."""
        for name in ("Patient|79048|MR|BN00123456", "Nguyễn|Ệ|x", "", "a" * 300):
            assert uuid5(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


class TestXML1:
    def test_patient_name_and_demographics(self, record: Record) -> None:
        """HO_TEN is split family / middle / given with its diacritics (NFC); sex, birth month, address."""
        patient = one(record, "Patient")
        assert patient["name"] == [{"use": "official", "text": "Nguyễn Thị Bích Ngọc", "family": "Nguyễn",
                                    "given": ["Thị Bích", "Ngọc"]}]
        assert patient["gender"] == "female"
        assert patient["birthDate"] == "1985-07"  # NGAY_SINH 198507000000: unknown day and time
        assert "_birthDate" not in patient
        assert patient["address"] == [{"use": "home",
                                       "text": "12 Lê Lợi, Phường Bến Thành, Thành phố Hồ Chí Minh"}]
        assert patient["telecom"] == [{"system": "phone", "value": "0903123456"}]

    def test_decomposed_text_is_normalised_to_nfc(self) -> None:
        """Text from legacy (Windows-1258-era) systems arrives decomposed; names and addresses leave as NFC."""
        import unicodedata

        nfd_name = unicodedata.normalize("NFD", "Nguyễn Thị Bích Ngọc")
        xml1 = edit("XML1", "<HO_TEN>Nguyễn Thị Bích Ngọc</HO_TEN>", f"<HO_TEN>{nfd_name}</HO_TEN>")
        patient = one(read_one(tables(XML1=xml1)), "Patient")
        assert patient["name"][0]["text"] == "Nguyễn Thị Bích Ngọc"
        assert unicodedata.is_normalized("NFC", patient["name"][0]["family"])

    def test_identifiers(self, record: Record) -> None:
        """MA_BN scoped by MA_CSKCB, CCCD, both BHYT cards with their validity, and each card's BHXH number."""
        patient = one(record, "Patient")
        assert patient["identifier"] == [
            {"system": mrn_system("79048"), "value": "BN00123456"},
            {"system": SYSTEM_CCCD, "value": "079185001234"},
            {"system": SYSTEM_BHYT, "value": "DN4797912345678",
             "period": {"start": "2026-01-01", "end": "2026-12-31"}},
            {"system": SYSTEM_BHYT, "value": "HT3790000123456",
             "period": {"start": "2025-01-01", "end": "2025-12-31"}},
            {"system": SYSTEM_BHXH, "value": "7912345678"},
            {"system": SYSTEM_BHXH, "value": "0000123456"},
        ]
        subject = record.events[0].subject
        assert subject.family == "Nguyễn" and subject.given == ("Thị Bích", "Ngọc")
        assert subject.birth_date == "1985-07" and subject.sex == "female"
        assert [i.value for i in subject.identifiers] == [i["value"] for i in patient["identifier"]]

    def test_same_patient_id_as_hl7v2_for_the_mrn(self, record: Record) -> None:
        """One facility's ADT feed and its BHYT export name the same Patient (Patient|facility|MR|MRN)."""
        assert one(record, "Patient")["id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "Patient|79048|MR|BN00123456"))

    @pytest.mark.parametrize(("value", "system"), [
        ("079185001234", SYSTEM_CCCD), ("025123456", SYSTEM_OLD_ID), ("C1234567", SYSTEM_PASSPORT),
        ("VNEID-8812", "urn:hssk:xml130:so-cccd"),
    ])
    def test_so_cccd_is_typed_by_shape(self, value: str, system: str) -> None:
        """SO_CCCD has no type marker: 12 digits CCCD, 9 digits old ID, letter + 7 digits passport, else other."""
        rec = read_one(tables(XML1=edit("XML1", "<SO_CCCD>079185001234</SO_CCCD>", f"<SO_CCCD>{value}</SO_CCCD>")))
        assert {"system": system, "value": value} in one(rec, "Patient")["identifier"]

    def test_encounter(self, record: Record) -> None:
        """Keyed on (MA_CSKCB, MA_LK); times at +07:00; inpatient class; outcome, discharge type, department."""
        enc = one(record, "Encounter")
        assert enc["id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, f"Encounter|79048|ma_lk|{MA_LK}"))
        assert enc["identifier"][0] == {"system": encounter_system("79048"), "value": MA_LK}
        assert enc["status"] == "finished"
        assert enc["class"]["code"] == "IMP"
        assert enc["type"][0]["text"] == "Điều trị nội trú"
        assert enc["period"] == {"start": "2026-11-03T08:15:00+07:00", "end": "2026-11-08T10:00:00+07:00"}
        assert enc["length"]["value"] == 5
        assert enc["reasonCode"] == [{"text": "Sốt cao, ho kéo dài 5 ngày"}]
        assert enc["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "2"
        assert enc["extension"][0]["valueCodeableConcept"]["text"] == "Đỡ"
        disposition = enc["hospitalization"]["dischargeDisposition"]
        assert disposition["text"] == "Ra viện" and disposition["coding"][1]["code"] == "home"
        assert enc["location"][0]["location"]["display"] == "K03"
        assert enc["serviceProvider"] == {"reference": "Organization/79048", "display": "79048"}
        assert record.events[1].occurred_at == "2026-11-08T10:00:00+07:00"

    def test_conditions(self, record: Record) -> None:
        """MA_BENH_CHINH is rank 1; each MA_BENH_KT code is secondary; a repeated code appears once."""
        conditions = by_type(record, "Condition")
        assert [c["code"]["coding"][0]["code"] for c in conditions] == ["J18.9", "I10", "E11.9"]
        assert all(c["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10" for c in conditions)
        assert conditions[0]["note"][0]["text"].startswith("Viêm phổi, không đặc hiệu")
        diagnosis = one(record, "Encounter")["diagnosis"]
        assert [d["rank"] for d in diagnosis] == [1, 2, 3]
        assert diagnosis[0]["condition"]["reference"] == f"Condition/{conditions[0]['id']}"

    def test_birth_time_and_death(self) -> None:
        """A known birth time becomes patient-birthTime; KET_QUA_DTRI 5 (died) sets deceasedDateTime."""
        xml1 = edit("XML1", "<NGAY_SINH>198507000000</NGAY_SINH>", "<NGAY_SINH>202611030547</NGAY_SINH>")
        xml1 = xml1.replace(b"<KET_QUA_DTRI>2</KET_QUA_DTRI>", b"<KET_QUA_DTRI>5</KET_QUA_DTRI>")
        patient = one(read_one(tables(XML1=xml1)), "Patient")
        assert patient["birthDate"] == "2026-11-03"
        assert patient["_birthDate"]["extension"][0]["valueDateTime"] == "2026-11-03T05:47:00+07:00"
        assert patient["deceasedDateTime"] == "2026-11-08T10:00:00+07:00"

    @pytest.mark.parametrize(("value", "expected"), [
        ("198500000000", "1985"), ("19850700", "1985-07"), ("19850712", "1985-07-12"), ("198507120000", "1985-07-12"),
    ])
    def test_unknown_birth_parts(self, value: str, expected: str) -> None:
        """``00`` month/day reduce the precision; ``0000`` time is unknown; 4210's 8-digit dates are read."""
        rec = read_one(tables(XML1=edit("XML1", "198507000000", value)))
        assert one(rec, "Patient")["birthDate"] == expected

    def test_legacy_4210_bare_xml1(self, validate_fhir: Callable[[dict[str, Any]], None]) -> None:
        """A bare QD 4210 XML1: MA_THE, MA_BENH, MA_BENHKHAC, TINH_TRANG_RV, 1-digit MA_LOAI_KCB are read."""
        results = list(read_export(DATA / "legacy-4210-xml1.xml", received_at=RECEIVED_AT))
        assert len(results) == 1 and isinstance(results[0], Record) and results[0].ok
        rec = results[0]
        patient = one(rec, "Patient")
        assert patient["name"][0]["text"] == "Trần Văn Đức"
        assert patient["birthDate"] == "1962"
        assert {"system": SYSTEM_BHYT, "value": "HT2790123456789",
                "period": {"start": "2019-01-01", "end": "2019-12-31"}} in patient["identifier"]
        assert [c["code"]["coding"][0]["code"] for c in by_type(rec, "Condition")] == ["I10", "E11.9"]
        enc = one(rec, "Encounter")
        assert enc["type"][0]["coding"][0]["code"] == "01" and enc["class"]["code"] == "AMB"
        assert enc["hospitalization"]["dischargeDisposition"]["text"] == "Ra viện"
        assert rec.facility == "79033"
        for event in rec.events:
            validate_fhir(event.payload)


class TestLayouts:
    def test_namespaced_tables_and_envelope(self) -> None:
        """Some vendors put a default namespace on the envelope and the tables: read the same as without."""
        def ns(doc: bytes, root: bytes) -> bytes:
            return doc.replace(b"<" + root + b">", b"<" + root + b' xmlns="urn:vendor:bhyt">', 1)

        docs = tables()
        docs["XML1"] = ns(docs["XML1"], b"TONG_HOP")
        docs["XML2"] = ns(docs["XML2"], b"CHITIEU_CHITIET_THUOC")
        raw = envelope([hoso(docs)]).replace(b"<GIAMDINHHS>", b'<GIAMDINHHS xmlns="urn:vendor:bhyt">', 1)
        (rec,) = list(read_export(raw, received_at=RECEIVED_AT))
        assert isinstance(rec, Record) and rec.ok, getattr(rec, "failures", rec)
        plain = read_one()
        assert [e.to_json() for e in rec.events] == [e.to_json() for e in plain.events]

    def test_pretty_printed_and_bom(self) -> None:
        """A UTF-8 BOM and indentation around values change nothing."""
        docs = tables(XML2=b"\xef\xbb\xbf" + edit("XML2", "<STT>1</STT>", "<STT>\n        1\n      </STT>"))
        rec = read_one(docs)
        assert rec.ok and [e.payload["id"] for e in rec.events] == [e.payload["id"] for e in read_one().events]


class TestXML2:
    def test_medication_dispense(self, record: Record) -> None:
        """Drug code and name, strength, route, dose, quantity, order and administration times."""
        first, second = by_type(record, "MedicationDispense")
        assert first["medicationCodeableConcept"] == {
            "coding": [{"system": "urn:hssk:xml130:ma-thuoc", "code": "40.220", "display": "Ceftriaxon"}],
            "text": "Ceftriaxon 1g"}
        assert first["quantity"] == {"value": 5, "unit": "Lọ"}
        assert first["dosageInstruction"] == [{
            "text": "Tiêm tĩnh mạch chậm 1 lọ/ngày Pha với 10ml nước cất",
            "route": {"coding": [{"system": "urn:hssk:xml130:duong-dung", "code": "2.10"}]}}]
        assert first["whenPrepared"] == "2026-11-03T09:00:00+07:00"
        assert first["whenHandedOver"] == "2026-11-03T09:45:00+07:00"
        assert first["context"]["reference"] == f"Encounter/{one(record, 'Encounter')['id']}"
        assert second["medicationCodeableConcept"]["text"] == "Paracetamol & Codein 500mg"  # CDATA kept
        assert second["whenHandedOver"] == "2026-11-03T14:00:00+07:00"  # no NGAY_TH_YL: the order time


class TestXML3:
    def test_procedures_and_skipped_rows(self, record: Record) -> None:
        """Lab and imaging services become Procedures; the supply and the bed are skipped and counted."""
        lab, xray = by_type(record, "Procedure")
        assert lab["code"]["text"] == "Tổng phân tích tế bào máu ngoại vi (bằng máy đếm laser)"
        assert lab["category"]["coding"][0]["code"] == "108252007"
        assert lab["performedPeriod"] == {"start": "2026-11-03T08:40:00+07:00", "end": "2026-11-03T10:00:00+07:00"}
        assert [p["actor"]["identifier"]["value"] for p in lab["performer"]] == [
            "012345/BYT-CCHN", "004567/HCM-CCHN"]  # NGUOI_THUC_HIEN; MA_BAC_SI ordered it
        assert xray["performedDateTime"] == "2026-11-03T09:00:00+07:00"
        assert record.counts["XML3.supply"] == 1 and record.counts["XML3.bed"] == 1
        assert record.counts["XML3.procedure"] == 2 and record.counts["XML3.rows"] == 4


class TestXML4:
    def test_observations(self, record: Record) -> None:
        """Numeric results are Quantities with the unit; a description-only result is a string."""
        wbc, hgb, xray = by_type(record, "Observation")
        assert wbc["code"]["coding"][0] == {"system": "urn:hssk:xml130:ma-chi-so", "code": "WBC",
                                            "display": "Số lượng bạch cầu"}
        assert wbc["valueQuantity"] == {"value": 11.2, "unit": "G/L"}
        assert hgb["valueQuantity"] == {"value": 132, "unit": "g/L"}
        assert wbc["category"][0]["coding"][0]["code"] == "laboratory"
        assert wbc["issued"] == "2026-11-03T10:00:00+07:00"
        assert xray["valueString"] == "Hình ảnh mờ không đều thùy dưới phổi phải"
        assert xray["category"][0]["coding"][0]["code"] == "imaging"

    def test_diagnostic_reports(self, record: Record) -> None:
        """One DiagnosticReport per service with its results, conclusion and result time."""
        observations = by_type(record, "Observation")
        blood, xray = by_type(record, "DiagnosticReport")
        assert blood["code"]["coding"][0]["code"] == "22.0120.1370"
        assert blood["result"] == [{"reference": f"Observation/{o['id']}"} for o in observations[:2]]
        assert blood["conclusion"] == "Bạch cầu tăng"
        assert xray["conclusion"] == "Viêm phổi thùy dưới phải"
        assert xray["effectiveDateTime"] == "2026-11-03T11:30:00+07:00"


class TestDocuments:
    def test_xml5_progress_note(self, record: Record) -> None:
        """Each XML5 row is a progress note whose text sections are a UTF-8 attachment."""
        note = by_type(record, "DocumentReference")[0]
        assert note["type"]["coding"][0]["code"] == "11506-3"
        text = base64.b64decode(note["content"][0]["attachment"]["data"]).decode("utf-8")
        assert text == ("Diễn biến lâm sàng: Bệnh nhân tỉnh, tiếp xúc tốt. Sốt 38,5°C, ho khạc đờm đục.\n\n"
                        "Giai đoạn bệnh: Giai đoạn cấp")
        assert note["date"] == "2026-11-03T09:00:00+07:00"

    def test_xml7_xml8_keep_the_original_document(self, record: Record) -> None:
        """Discharge paper and record summary: the table document unchanged, with diagnosis and date."""
        _note, paper, summary = by_type(record, "DocumentReference")
        assert paper["type"]["text"] == "Giấy ra viện" and paper["type"]["coding"][0]["code"] == "18842-5"
        assert base64.b64decode(paper["content"][0]["attachment"]["data"]) == (INPATIENT / "XML7.xml").read_bytes()
        assert paper["description"] == "Viêm phổi, không đặc hiệu"
        assert paper["author"][0]["identifier"]["value"] == "000123/HCM-CCHN"
        assert summary["type"]["text"] == "Tóm tắt hồ sơ bệnh án"
        assert summary["date"] == "2026-11-08T10:15:00+07:00"

    def test_unmapped_table_is_kept_and_counted(self, record: Record) -> None:
        """XML9 (birth certificate) is not mapped: kept raw on the record and counted."""
        assert record.counts["XML9.unmapped"] == 1
        assert record.tables["XML9"] == (INPATIENT / "XML9.xml").read_bytes()
        assert record.ok


class TestSensitivity:
    def test_xml6_flags_every_event(self, validate_fhir: Callable[[dict[str, Any]], None]) -> None:
        """An XML6 (HIV care) table flags every event of the encounter: envelope and meta.security."""
        xml6 = b"<CHI_TIEU_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS><MA_LK>x</MA_LK>" \
               b"</CHI_TIEU_HO_SO_BENH_AN_CHAM_SOC_VA_DIEU_TRI_HIV_AIDS>"
        rec = read_one({**tables(), "XML6": xml6})
        assert rec.sensitivity == ("hiv",) and rec.counts["XML6.sensitive"] == 1
        for event in rec.events:
            assert event.sensitivity == ("hiv",)
            assert event.payload["meta"]["security"][0]["code"] == "HIV"
            validate_fhir(event.payload)

    def test_hiv_diagnosis_flags_without_xml6(self) -> None:
        """An HIV ICD-10 code (B20-B24, Z21, R75) flags the encounter even without an XML6 table."""
        rec = read_one(tables(XML1=edit("XML1", "<MA_BENH_KT>I10;E11.9;I10</MA_BENH_KT>",
                                        "<MA_BENH_KT>I10;B24</MA_BENH_KT>")))
        assert {e.sensitivity for e in rec.events} == {("hiv",)}

    def test_ordinary_encounter_is_not_flagged(self, record: Record) -> None:
        assert record.sensitivity == () and all("meta" not in e.payload for e in record.events)


class TestSummary:
    def test_summary_counts(self, record: Record) -> None:
        """Summary adds records, events by type and failures by code (no personal data in it)."""
        summary = Summary()
        summary.add(record)
        summary.add(Failure("parse", "envelope", "broken", "after HOSO 1"))
        assert summary.records == 1 and summary.events == 17
        assert summary.event_types["medication.recorded"] == 2
        assert summary.failures == {"parse.envelope": 1}


class TestMaps:
    def test_unmapped_codes_pass_through_and_are_counted(self) -> None:
        """An unknown MA_LOAI_KCB gets the default class, passes through as the type code, and is counted."""
        from connectors.xml130.maps import UNMAPPED

        before = UNMAPPED[("encounter_type", "06")]
        enc = one(read_one(tables(XML1=edit("XML1", "<MA_LOAI_KCB>03</MA_LOAI_KCB>",
                                             "<MA_LOAI_KCB>06</MA_LOAI_KCB>"))), "Encounter")
        assert enc["class"]["code"] == "AMB"
        assert enc["type"][0]["coding"][0]["code"] == "06"
        assert enc["type"][0]["text"] == "Loại khám chữa bệnh khác"
        assert UNMAPPED[("encounter_type", "06")] == before + 1

    def test_every_table_has_a_default(self, tmp_path: Path) -> None:
        """A maps file without a table's default is refused at load time, never per record."""
        from connectors.xml130 import maps

        data = json.loads(maps.MAPS_PATH.read_text(encoding="utf-8"))
        del data["gender"]["default"]
        broken = tmp_path / "maps.json"
        broken.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ValueError, match="gender"):
            maps.load(broken)

    def test_gender_values_are_checked(self, tmp_path: Path) -> None:
        from connectors.xml130 import maps

        data = json.loads(maps.MAPS_PATH.read_text(encoding="utf-8"))
        data["gender"]["codes"]["1"] = "nam"
        broken = tmp_path / "maps.json"
        broken.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ValueError, match="gender"):
            maps.load(broken)
