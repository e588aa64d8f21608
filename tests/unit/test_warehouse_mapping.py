"""Mapping canonical events to warehouse rows: concrete values per resource type, nothing personal kept."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject
from hub.warehouse import schema
from hub.warehouse.errors import MappingError
from hub.warehouse.mapping import instant, map_event

VN = timezone(timedelta(hours=7))
CID = "c-3f9a1e"
SUBJECT = Subject(identifiers=(Identifier(SYSTEM_CCCD, "079185002233"),), family="Nguyễn", given=("Thị", "Hồng"),
                  birth_date="1985-05-14", sex="female")


def event(type_: str, payload: dict[str, Any], *, citizen_id: str | None = CID, event_id: str = "ev-1",
          occurred_at: str = "2026-02-03T09:10:00+07:00", sensitivity: tuple[str, ...] = ()) -> Envelope:
    return Envelope(event_id=event_id, type=type_, occurred_at=occurred_at, recorded_at="2026-02-03T09:10:01+07:00",
                    source=Source("hl7v2", "79048", "MSG-1"), subject=SUBJECT, payload=payload,
                    sensitivity=sensitivity, citizen_id=citizen_id)


def fact(e: Envelope) -> tuple[schema.Table, dict[str, Any]]:
    rows = map_event(e)
    assert rows is not None and rows.fact is not None
    table, row = rows.fact
    assert len(row) == len(table.columns)
    return table, dict(zip(table.columns, row))


ENC_REF = {"reference": "Encounter/enc-1"}
SUBJ_REF = {"reference": "Patient/p-1"}


class TestFacts:
    def test_encounter(self) -> None:
        """An Encounter becomes one fact_encounter row: class, status, period in +07:00, the sending facility."""
        table, row = fact(event("encounter.recorded", {
            "resourceType": "Encounter", "id": "enc-1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": SUBJ_REF, "identifier": [{"system": "urn:visit", "value": "VV240001"}],
            "period": {"start": "2026-11-22T08:25:00+07:00", "end": "2026-11-22T16:30:00+07:00"},
            "participant": [{"individual": {"display": "BS. Phạm Minh Khánh"}}]}))
        assert table is schema.ENCOUNTER
        assert row == {
            "resource_id": "enc-1", "event_id": "ev-1", "event_occurred_at": datetime(2026, 2, 3, 9, 10, tzinfo=VN),
            "citizen_id": CID, "facility_code": "79048", "encounter_id": None, "status": "finished",
            "sensitivity": [], "class_code": "IMP", "period_start": datetime(2026, 11, 22, 8, 25, tzinfo=VN),
            "period_end": datetime(2026, 11, 22, 16, 30, tzinfo=VN)}

    def test_condition(self) -> None:
        """A Condition becomes a diagnosis: the ICD-10 code and its display, clinical status, the encounter."""
        table, row = fact(event("condition.recorded", {
            "resourceType": "Condition", "id": "cond-1", "subject": SUBJ_REF, "encounter": ENC_REF,
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "verificationStatus": {"coding": [{"code": "confirmed"}]},
            "category": [{"coding": [{"code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J18.9",
                                 "display": "Viêm phổi, không đặc hiệu"}], "text": "BN ho nhiều, sốt về chiều"},
            "onsetDateTime": "2026-01-30", "recordedDate": "2026-02-03T09:10:00+07:00"}))
        assert table is schema.DIAGNOSIS
        assert (row["code_system"], row["code"], row["display"]) == (
            "http://hl7.org/fhir/sid/icd-10", "J18.9", "Viêm phổi, không đặc hiệu")
        assert (row["status"], row["verification"], row["category"]) == ("active", "confirmed", "encounter-diagnosis")
        assert row["encounter_id"] == "enc-1"
        assert row["onset_at"] == datetime(2026, 1, 30, tzinfo=VN)
        assert "BN ho nhiều" not in repr(row)  # Condition text is free text: never read

    def test_immunization(self) -> None:
        table, row = fact(event("immunization.recorded", {
            "resourceType": "Immunization", "id": "imm-1", "status": "completed", "patient": SUBJ_REF,
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "208",
                                        "display": "COVID-19, mRNA"}]},
            "occurrenceDateTime": "2026-03-01T08:30:00+07:00", "primarySource": True,
            "route": {"coding": [{"code": "IM"}]}, "lotNumber": "FK8891",
            "protocolApplied": [{"doseNumberPositiveInt": 2}]}))
        assert table is schema.IMMUNIZATION
        assert {k: row[k] for k in ("code", "display", "occurred_at", "dose_number", "route", "primary_source",
                                    "status")} == {
            "code": "208", "display": "COVID-19, mRNA", "occurred_at": datetime(2026, 3, 1, 8, 30, tzinfo=VN),
            "dose_number": "2", "route": "IM", "primary_source": True, "status": "completed"}

    def test_refused_immunization_keeps_the_reason_code(self) -> None:
        _, row = fact(event("immunization.recorded", {
            "resourceType": "Immunization", "id": "imm-2", "status": "not-done", "patient": SUBJ_REF,
            "vaccineCode": {"coding": [{"code": "03"}]}, "statusReason": {"coding": [{"code": "PATOBJ"}]}}))
        assert (row["status"], row["status_reason"], row["occurred_at"]) == ("not-done", "PATOBJ", None)

    @pytest.mark.parametrize(("value", "expected"), [
        ({"valueQuantity": {"value": 11.3, "comparator": ">=", "unit": "mmol/L"}},
         ("quantity", 11.3, "mmol/L", ">=", None)),
        ({"valueQuantity": {"value": 158, "code": "cm"}}, ("quantity", 158.0, "cm", None, None)),
        ({"valueCodeableConcept": {"coding": [{"code": "260385009", "display": "Âm tính"}]}},
         ("codeable", None, None, None, "260385009")),
        ({"valueBoolean": True}, ("boolean", 1.0, None, None, None)),
        ({"valueInteger": 7}, ("integer", 7.0, None, None, None)),
        ({"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}}, ("ratio", None, None, None, None)),
        ({"valueString": "Nguyễn Văn An: phim phổi mờ"}, ("string", None, None, None, None)),
        ({}, (None, None, None, None, None)),
    ])
    def test_observation_values(self, value: dict[str, Any], expected: tuple[Any, ...]) -> None:
        """Numbers, units and codes are kept; string results are typed but their text is not."""
        table, row = fact(event("observation.recorded", {
            "resourceType": "Observation", "id": "obs-1", "status": "final", "subject": SUBJ_REF,
            "code": {"coding": [{"system": "http://loinc.org", "code": "2571-8", "display": "Triglycerid"}]},
            "interpretation": [{"coding": [{"code": "HH"}]}], "effectiveDateTime": "2026-02-07T08:00:00+07:00",
            **value}))
        assert table is schema.OBSERVATION
        assert (row["value_type"], row["value_num"], row["value_unit"], row["value_comparator"],
                row["value_code"]) == expected
        assert (row["code"], row["display"], row["interpretation"]) == ("2571-8", "Triglycerid", "HH")
        assert row["effective_at"] == datetime(2026, 2, 7, 8, 0, tzinfo=VN)
        assert "phim phổi" not in repr(row)

    def test_medication_request_and_dispense(self) -> None:
        """Both are medication facts, told apart by ``kind``; the dispense's encounter is its ``context``."""
        _, request = fact(event("medication.recorded", {
            "resourceType": "MedicationRequest", "id": "rx-1", "status": "active", "intent": "order",
            "subject": SUBJ_REF, "encounter": ENC_REF, "authoredOn": "2026-02-03T11:55:00+07:00",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "J01CA04",
                                                      "display": "Amoxicillin 500mg"}]},
            "dosageInstruction": [{"text": "Uống sau ăn, ngày 2 lần"}],
            "dispenseRequest": {"quantity": {"value": 14, "unit": "viên"}}}))
        assert {k: request[k] for k in ("kind", "code", "intent", "occurred_at", "quantity_value", "quantity_unit",
                                        "encounter_id")} == {
            "kind": "request", "code": "J01CA04", "intent": "order",
            "occurred_at": datetime(2026, 2, 3, 11, 55, tzinfo=VN), "quantity_value": 14.0,
            "quantity_unit": "viên", "encounter_id": "enc-1"}
        assert "Uống" not in repr(request)
        _, dispense = fact(event("medication.recorded", {
            "resourceType": "MedicationDispense", "id": "md-1", "status": "completed", "subject": SUBJ_REF,
            "context": ENC_REF, "whenHandedOver": "2026-02-03T12:55:00+07:00", "quantity": {"value": 14, "unit": "CAP"},
            "medicationCodeableConcept": {"coding": [{"code": "J01CA04"}]},
            "performer": [{"actor": {"display": "Nguyễn Thị Thảo"}}]}))
        assert (dispense["kind"], dispense["encounter_id"], dispense["quantity_unit"]) == ("dispense", "enc-1", "CAP")
        assert "Thảo" not in repr(dispense)

    def test_procedure(self) -> None:
        table, row = fact(event("procedure.recorded", {
            "resourceType": "Procedure", "id": "pr-1", "status": "completed", "subject": SUBJ_REF,
            "encounter": ENC_REF, "performedDateTime": "2026-02-03T09:14:00+07:00",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-9-cm", "code": "89.52",
                                 "display": "Điện tâm đồ"}]}}))
        assert table is schema.PROCEDURE
        assert (row["code"], row["display"], row["performed_at"]) == (
            "89.52", "Điện tâm đồ", datetime(2026, 2, 3, 9, 14, tzinfo=VN))

    def test_sensitivity_flags_are_carried(self) -> None:
        """Flagged facts are kept with their flags, so warehouse views and grants can withhold them."""
        _, row = fact(event("condition.recorded", {"resourceType": "Condition", "id": "c-hiv",
                                                   "code": {"coding": [{"code": "B24"}]}}, sensitivity=("hiv",)))
        assert row["sensitivity"] == ["hiv"]

    def test_a_fact_from_a_merged_away_members_source_is_filed_under_that_member(self) -> None:
        """The writer moves it to the survivor and keeps the member as its source: an unmerge gives it back."""
        dx = {"resourceType": "Condition", "id": "c-1", "code": {"coding": [{"code": "E11"}]}}
        moved = event("condition.recorded", dx).with_citizen(CID, "c-retired")
        rows = map_event(moved)
        assert rows is not None and rows.citizen_id == "c-retired"
        assert fact(moved)[1]["citizen_id"] == "c-retired"
        assert fact(event("condition.recorded", dx))[1]["citizen_id"] == CID


class TestCitizen:
    def test_patient_becomes_a_pseudonymous_dimension_row(self) -> None:
        """Birth year, sex, ward and province only: no name, CCCD, phone, street or exact birth date."""
        rows = map_event(event("patient.updated", {
            "resourceType": "Patient", "id": "p-1", "gender": "female", "birthDate": "1985-05-14",
            "identifier": [{"system": SYSTEM_CCCD, "value": "079185002233"}],
            "name": [{"text": "Nguyễn Thị Hồng", "family": "Nguyễn", "given": ["Thị", "Hồng"]}],
            "telecom": [{"system": "phone", "value": "0912345678"}],
            "address": [{"use": "home", "line": ["45 Lý Tự Trọng", "Phường Sài Gòn"], "city": "Hồ Chí Minh",
                         "state": "Hồ Chí Minh", "postalCode": "700000"}]}))
        assert rows is not None and rows.fact is None
        assert dict(zip(schema.CITIZEN.columns, rows.citizen)) == {
            "citizen_id": CID, "birth_year": 1985, "sex": "female", "ward": "Phường Sài Gòn",
            "province": "Hồ Chí Minh", "event_id": "ev-1", "event_occurred_at": datetime(2026, 2, 3, 9, 10, tzinfo=VN)}
        for personal in ("Nguyễn", "Hồng", "079185002233", "0912345678", "Lý Tự Trọng", "05-14"):
            assert personal not in repr(rows)

    def test_no_ward_line_means_no_ward(self) -> None:
        rows = map_event(event("patient.updated", {"resourceType": "Patient", "id": "p-2",
                                                   "address": [{"line": ["12 Lê Lợi"], "city": "Huế"}]}))
        assert rows is not None and rows.citizen[3:5] == (None, "Huế")

    def test_citizen_merged_names_the_retired_citizens(self) -> None:
        rows = map_event(event("citizen.merged", {"resourceType": "Patient", "id": CID, "link": [
            {"type": "replaces", "other": {"reference": "Patient/c-old-1"}},
            {"type": "seealso", "other": {"reference": "Patient/c-other"}},
            {"type": "replaces", "other": {"reference": "Patient/c-old-2"}}]}, event_id="ev-m"))
        assert rows is not None
        at = datetime(2026, 2, 3, 9, 10, tzinfo=VN)
        assert rows.merges == (("c-old-1", CID, "ev-m", at), ("c-old-2", CID, "ev-m", at))


    def test_citizen_unmerged_names_the_restored_citizen(self) -> None:
        rows = map_event(event("citizen.unmerged", {"resourceType": "Patient", "id": CID, "link": [
            {"type": "seealso", "other": {"reference": "Patient/c-back"}}]}, event_id="ev-u"))
        assert rows is not None and rows.merges == () and rows.fact is None
        assert rows.unmerges == (("c-back", CID, "ev-u", datetime(2026, 2, 3, 9, 10, tzinfo=VN)),)

    def test_a_stewards_merge_decision_needs_no_facility(self) -> None:
        """Review decisions (hub review accept) are merges no facility sent: they map, they are not dead letters."""
        from hub.identity.events import merged_event

        decided = merged_event(CID, "c-dup", "review-7", "2026-02-03T09:10:00+07:00", "2026-02-03T09:10:00+07:00")
        assert decided.source.facility == ""
        rows = map_event(decided)
        assert rows is not None and [m[:2] for m in rows.merges] == [("c-dup", CID)]

    def test_an_unmerge_naming_no_one_cannot_map(self) -> None:
        with pytest.raises(MappingError, match="names no other citizen"):
            map_event(event("citizen.unmerged", {"resourceType": "Patient", "id": CID, "link": []}))


class TestSkipsAndFailures:
    def test_types_the_warehouse_does_not_model_are_skipped(self) -> None:
        assert map_event(event("appointment.recorded", {"resourceType": "Appointment", "id": "a-1"})) is None
        assert map_event(event("allergy.recorded", {"resourceType": "AllergyIntolerance", "id": "al-1"})) is None

    @pytest.mark.parametrize(("e", "reason"), [
        (event("encounter.recorded", {"resourceType": "Encounter", "id": "e"}, citizen_id=None), "citizen_id"),
        (event("encounter.recorded", {"resourceType": "Encounter"}), "resource id"),
        (event("observation.recorded", {"resourceType": "Specimen", "id": "s"}), "does not map"),
        (event("encounter.recorded", {"resourceType": "Encounter", "id": "e", "period": {"start": "hôm qua"}}),
         "dateTime"),
        (event("patient.updated", {"resourceType": "Encounter", "id": "e"}), "patient event"),
        (event("citizen.merged", {"resourceType": "Patient", "id": CID, "link": []}), "retired"),
    ])
    def test_unmappable_events_raise_mapping_error(self, e: Envelope, reason: str) -> None:
        with pytest.raises(MappingError, match=reason) as info:
            map_event(e)
        assert info.value.code == "warehouse"


@pytest.mark.parametrize(("value", "expected"), [
    (None, None),
    ("", None),
    ("2026", datetime(2026, 1, 1, tzinfo=VN)),
    ("2026-03", datetime(2026, 3, 1, tzinfo=VN)),
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=VN)),
    ("2026-03-01T08:30:00+07:00", datetime(2026, 3, 1, 8, 30, tzinfo=VN)),
    ("2026-03-01T01:30:00Z", datetime(2026, 3, 1, 1, 30, tzinfo=timezone.utc)),
    ("2026-03-01T08:30:00.250+09:00", datetime(2026, 3, 1, 8, 30, 0, 250000, tzinfo=timezone(timedelta(hours=9)))),
    ("2026-03-01T08:30:00", datetime(2026, 3, 1, 8, 30, tzinfo=VN)),
])
def test_instant(value: str | None, expected: datetime | None) -> None:
    """FHIR dates and dateTimes: partial dates and offset-less times are read at +07:00."""
    assert instant(value) == expected
