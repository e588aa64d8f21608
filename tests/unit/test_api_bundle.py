"""Record dict -> FHIR R4 Bundle and health book: built from what the record holds, unknown sections
skipped, sensitive entries withheld, Vietnamese text kept exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from hub.api.bundle import record_bundle, unknown_sections
from hub.fanout.healthbook import health_book
from hub.envelope import SYSTEM_BHYT, SYSTEM_CCCD, Envelope
from hub.record.apply import apply, empty_record

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "hl7" / "adt_a01_pham_thi_thu_ha_bhyt_mrn_cccd-expected.json"
CITIZEN = "cz-0123456789abcdef0123456789abcdef"
BASE = "http://127.0.0.1:8080/v1/fhir"


@pytest.fixture()
def record() -> dict[str, Any]:
    """The record hub.record builds from the golden A01 of Phạm Thị Thu Hà (patient + encounter)."""
    current = None
    for data in json.loads(GOLDEN.read_text(encoding="utf-8")):
        current, _ = apply(current, Envelope.from_dict(data).with_citizen(CITIZEN))
    return current


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


class TestRecordBundle:
    def test_the_bundle_validates_as_fhir(self, record: dict[str, Any], validate_fhir: Callable) -> None:
        bundle = record_bundle(record, BASE)
        validate_fhir(bundle)
        for entry in bundle["entry"]:
            validate_fhir(entry["resource"])

    def test_the_patient_carries_the_vietnamese_name_and_identifiers(self, record: dict[str, Any]) -> None:
        bundle = record_bundle(record, BASE)
        assert bundle["type"] == "searchset" and bundle["total"] == 1
        [patient] = resources(bundle, "Patient")
        assert patient["id"] == CITIZEN
        assert patient["name"][0]["text"] == "Phạm Thị Thu Hà" and patient["name"][0]["family"] == "Phạm"
        assert patient["gender"] == "female" and patient["birthDate"] == "1986-07-21"
        assert {"system": SYSTEM_CCCD, "value": "079186001122"} in patient["identifier"]
        assert {"system": SYSTEM_BHYT, "value": "HC4791234567890"} in patient["identifier"]
        assert patient["address"][0]["line"][0] == "9 Nguyễn Văn Trỗi"
        assert patient["meta"]["versionId"] == str(record["version"])
        assert bundle["entry"][0]["search"] == {"mode": "match"}
        assert bundle["entry"][0]["fullUrl"] == f"{BASE}/Patient/{CITIZEN}"

    def test_encounters_reference_the_patient(self, record: dict[str, Any]) -> None:
        bundle = record_bundle(record, BASE)
        [encounter] = resources(bundle, "Encounter")
        assert encounter["subject"] == {"reference": f"Patient/{CITIZEN}"}
        assert encounter["class"]["code"] == "IMP" and encounter["status"] == "in-progress"
        assert encounter["serviceProvider"]["identifier"]["value"] == "79034"
        assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include"]

    def test_unknown_sections_are_skipped_and_named(self, record: dict[str, Any], validate_fhir: Callable) -> None:
        """A record that grows a section the API does not map yet is still served."""
        grown = {**record, "care_plans": {"x": {"anything": 1}}, "observations": [1, 2]}
        bundle = record_bundle(grown, BASE)
        validate_fhir(bundle)
        assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient", "Encounter"]
        assert unknown_sections(grown) == ["care_plans", "observations"]
        assert unknown_sections(record) == []

    def test_an_empty_record_gives_a_patient_only(self, validate_fhir: Callable) -> None:
        bundle = record_bundle(empty_record(CITIZEN), BASE)
        validate_fhir(bundle)
        assert [e["resource"] for e in bundle["entry"]] == [
            {"resourceType": "Patient", "id": CITIZEN, "meta": {"versionId": "0"}}]

    def test_encounters_without_class_or_status_still_validate(self, validate_fhir: Callable) -> None:
        record = empty_record(CITIZEN)
        record["encounters"]["e1"] = {"status": None, "class": None, "period": None, "facility": None,
                                      "location": None, "identifier": None, "provenance": {}}
        bundle = record_bundle(record, BASE)
        validate_fhir(bundle)
        [encounter] = resources(bundle, "Encounter")
        assert encounter["status"] == "unknown" and encounter["class"]["code"] == "UNK"

    def test_sensitive_entries_are_withheld(self, record: dict[str, Any]) -> None:
        flagged = copy.deepcopy(record)
        for entry in flagged["encounters"].values():
            entry["sensitivity"] = ["hiv"]
        assert resources(record_bundle(flagged, BASE), "Encounter") == []


class TestHealthBook:
    def test_the_four_groups(self, record: dict[str, Any]) -> None:
        book = health_book(record)
        assert set(book) >= {"administrative", "history", "encounters", "summary"}
        admin = book["administrative"]
        assert admin["name"] == "Phạm Thị Thu Hà" and admin["given"] == ["Thị Thu", "Hà"]
        assert admin["address"] == "9 Nguyễn Văn Trỗi, Phường Phú Nhuận, Hồ Chí Minh"
        assert admin["telecom"] == ["0938555777"]
        assert {"system": SYSTEM_CCCD, "value": "079186001122"} in admin["identifiers"]
        assert book["history"] == {"allergies": [], "illnesses": [], "immunizations": []}
        [encounter] = book["encounters"]
        assert encounter["facility"] == "79034" and encounter["start"] == "2026-01-22T09:05:00+07:00"
        summary = book["summary"]
        assert summary["encounter_count"] == 1 and summary["facilities"] == ["79034"]
        assert summary["first_encounter"] == summary["last_encounter"] == "2026-01-22T09:05:00+07:00"
        assert summary["not_recorded_yet"] == ["allergies", "illnesses", "immunizations"]
        assert summary["withheld_sensitive"] == 0

    def test_history_sections_are_passed_through_when_the_record_has_them(self, record: dict[str, Any]) -> None:
        grown = {**record, "immunizations": {"imm-1": {"vaccine": "Vắc xin sởi", "date": "2025-03-01",
                                                       "provenance": {"facility": "79001"}}},
                 "conditions": {"c-1": {"code": "E11", "sensitivity": ["hiv"]}}}
        book = health_book(grown)
        assert book["history"]["immunizations"] == [
            {"id": "imm-1", "vaccine": "Vắc xin sởi", "date": "2025-03-01", "facility": "79001"}]
        assert book["history"]["illnesses"] == []  # flagged: withheld from the citizen-facing book
        assert book["summary"]["withheld_sensitive"] == 1
        assert book["summary"]["not_recorded_yet"] == ["allergies"]

    def test_encounters_are_newest_first(self) -> None:
        record = empty_record(CITIZEN)
        for key, start in (("a", "2025-01-01T08:00:00+07:00"), ("b", "2026-05-01T08:00:00+07:00"),
                           ("c", "2024-02-01T08:00:00+07:00")):
            record["encounters"][key] = {"status": "finished", "class": "AMB", "period": {"start": start},
                                         "facility": "79048", "provenance": {}}
        book = health_book(record)
        assert [e["id"] for e in book["encounters"]] == ["b", "a", "c"]
        assert book["summary"]["first_encounter"].startswith("2024") and book["summary"]["last_encounter"].startswith("2026")

    def test_an_empty_record(self) -> None:
        book = health_book(empty_record(CITIZEN))
        assert book["administrative"]["name"] is None and book["encounters"] == []
        assert book["summary"]["encounter_count"] == 0 and book["summary"]["first_encounter"] is None
