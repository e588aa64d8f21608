"""The record keeps clinical events (results, diagnoses, vaccines, ...) as FHIR resources by section:
idempotent, newest occurrence wins, sensitive entries flagged so readers withhold them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from connectors.hl7v2.translate import translate
from hub.fanout.healthbook import health_book
from hub.envelope import Envelope
from hub.record.apply import CLINICAL_SECTIONS, apply

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7" / "corpus"
RECEIVED = "2026-12-01T08:00:00.000+07:00"
CITIZEN = "cz-test-0001"


def events(name: str) -> list[Envelope]:
    return [e.with_citizen(CITIZEN) for e in translate((CORPUS / name).read_bytes(), received_at=RECEIVED)]


def apply_all(evts: list[Envelope], record: dict | None = None) -> dict:
    for event in evts:
        record, _ = apply(record, event)
    return record


def test_every_clinical_event_type_has_a_section() -> None:
    from hub.envelope import EVENT_TYPES

    applied_elsewhere = {"patient.updated", "encounter.recorded", "patient.merged", "citizen.merged", "citizen.unmerged"}
    assert EVENT_TYPES - applied_elsewhere == set(CLINICAL_SECTIONS)


def test_a_lab_report_lands_in_reports_and_observations_once() -> None:
    lab = events("oru_r01_cbc_10_obx.hl7")
    record = apply_all(lab)
    assert len(record["observations"]) == 10 and len(record["reports"]) == 1
    some = next(iter(record["observations"].values()))
    assert some["resource"]["resourceType"] == "Observation" and some["provenance"]["source"] == "hl7v2"
    version = record["version"]
    again = apply_all(lab, record)
    assert again == record and again["version"] == version  # a redelivered message changes nothing


def test_an_older_occurrence_never_overwrites_a_newer_one() -> None:
    [*_, newest] = [e for e in events("oru_r01_cbc_10_obx.hl7") if e.type == "observation.recorded"]
    older = replace(newest, event_id="older", occurred_at="2001-01-01T00:00:00+07:00",
                    payload={**newest.payload, "status": "preliminary"})
    forward = apply_all([older, newest])
    backward = apply_all([newest, older])
    rid = newest.payload["id"]
    assert forward["observations"][rid] == backward["observations"][rid]
    assert backward["observations"][rid]["resource"]["status"] == newest.payload["status"]


def test_hiv_results_and_diagnoses_are_flagged_and_withheld_from_the_health_book() -> None:
    record = apply_all(events("oru_r01_hiv_test.hl7") + events("adt_a01_hiv_diagnosis.hl7")
                       + events("vxu_v04_covid_dose2.hl7"))
    flagged = [e for section in CLINICAL_SECTIONS.values() for e in record.get(section, {}).values()
               if "hiv" in e.get("sensitivity", [])]
    assert flagged, "the HIV test and diagnosis carry the flag"
    assert any("hiv" in e.get("sensitivity", []) for e in record["encounters"].values())
    book = health_book(record)
    in_book = [e for section in ("conditions", "allergies", "immunizations", "encounters")
               for e in record.get(section, {}).values() if e.get("sensitivity")]
    assert in_book and book["summary"]["withheld_sensitive"] == len(in_book)
    shown = [item for group in book["history"].values() for item in group]
    assert all("hiv" not in str(item.get("sensitivity", "")) for item in shown)
    assert len(book["history"]["immunizations"]) == 1  # the COVID-19 dose is not sensitive and is shown


def test_a_record_without_clinical_events_keeps_its_old_shape() -> None:
    record = apply_all([e for e in events("adt_a01_v23_minimal.hl7") if e.type == "patient.updated"])
    assert not set(CLINICAL_SECTIONS.values()) & set(record)
