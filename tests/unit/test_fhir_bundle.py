"""FHIR R4 Bundles -> canonical events: concrete mapped values, every payload valid (R4B models and the
envelope schema), references resolved to hub ids, subjects, sensitivity, and a precise reason per bad entry
while the valid entries still map. Malformed bundles first."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import connectors.fhir as fhir
from connectors.fhir import BundleResult, read_bundle, translate_bundle
from hub.envelope import (
    EVENT_ID_NAMESPACE, SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, Envelope, event_id, mrn_system,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "fhir" / "transaction_tran_thi_lan.json"
RECEIVED = "2026-12-01T08:00:00.000+07:00"
SAMPLE: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))


def run(doc: dict[str, Any] | bytes, **kwargs: Any) -> BundleResult:
    data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return translate_bundle(data, received_at=RECEIVED, **kwargs)


def by_type(result: BundleResult, kind: str) -> list[Envelope]:
    return [e for e in result.events if e.payload["resourceType"] == kind]


def uid(name: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def collection(*resources: dict[str, Any], base: str = "https://emr.benhvien-q1.vn/fhir") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} if r.get("id")
                      else {"resource": r} for r in resources]}


PATIENT_Q1 = {"resourceType": "Patient", "id": "p-88",
              "identifier": [{"system": mrn_system("79025"), "value": "Q1-000088"},
                             {"system": SYSTEM_CCCD, "value": "079095001188"}],
              "name": [{"family": "Lê", "given": ["Hoàng", "Phúc"]}], "gender": "male", "birthDate": "1995-09-02"}


@pytest.fixture(scope="module")
def sample() -> BundleResult:
    return read_bundle(DATA, received_at=RECEIVED)


class TestBadBundles:
    @pytest.mark.parametrize(("raw", "kind", "words"), [
        (b"", "json", "empty"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": [', "json", "not valid JSON"),
        (b"[1, 2]", "not-bundle", "JSON list at the top"),
        (b'{"resourceType": "Patient", "id": "x"}', "not-bundle", "a Patient, not a Bundle"),
        (b'{"type": "collection"}', "not-bundle", "no resourceType"),
        (b'{"resourceType": "Bundle", "type": "history"}', "bundle-type", "'history'"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": {}}', "not-bundle", "not a list"),
        ('{"resourceType": "Bundle", "type": "collection", "id": "Lê Văn Tám"}'.encode("cp1258"), "encoding", "UTF-8"),
    ], ids=["empty", "truncated JSON", "array", "a Patient", "no resourceType", "history", "entry object",
            "windows-1258"])
    def test_unusable_bundles_are_one_clear_failure(self, raw: bytes, kind: str, words: str) -> None:
        result = run(raw)
        assert result.error and words in result.error, result.error
        assert [(f.code, f.index) for f in result.failures] == [(f"parse.{kind}", None)]
        assert result.events == []

    def test_size_limit_is_checked_before_parsing(self, tmp_path: Path) -> None:
        """A file over the limit is refused having read one byte past the limit, never parsed."""
        big = tmp_path / "big.json"
        big.write_bytes(orjson.dumps(SAMPLE) + b" " * 5000)
        result = read_bundle(big, received_at=RECEIVED, max_bytes=4096)
        assert "over the 4,096-byte limit" in result.error and result.failures[0].code == "parse.size"

    def test_missing_file(self, tmp_path: Path) -> None:
        result = read_bundle(tmp_path / "none.json", received_at=RECEIVED)
        assert result.failures[0].code == "parse.io" and "cannot read" in result.error

    def test_no_facility(self) -> None:
        patient = {k: v for k, v in PATIENT_Q1.items() if k != "identifier"}
        result = run(collection(patient))
        assert result.failures[0].code == "translate.facility" and "names no facility" in result.error
        assert run(collection(patient), facility="79025").facility == "79025"  # the caller may say it


class TestBadEntries:
    def test_each_invalid_entry_has_index_type_and_field_and_the_rest_maps(self, sample: BundleResult) -> None:
        assert [(f.code, f.index, f.resource_type, f.reason) for f in sample.failures] == [
            ("parse.invalid", 7, "Observation", "entry 7 (Observation): status: Value for the field 'status' is "
                                                "required.")]
        assert len(sample.events) == 7
        failure = sample.failures[0]
        assert orjson.loads(failure.original)["resource"]["code"]["coding"][0]["code"] == "2339-0"
        assert failure.group == "parse.invalid: Observation status: Value for the field 'status' is required."

    def test_entry_problems_table(self) -> None:
        bad_obs = {"resourceType": "Observation", "status": "final", "code": {"text": "Mạch"},
                   "subject": {"reference": "Patient/p-88"},
                   "component": [{"code": {"text": "x"}, "valueQuantity": {"value": "nhanh"}}]}
        external = {"resourceType": "Condition", "id": "c-1", "code": {"text": "Sốt"},
                    "subject": {"reference": "Patient/someone-else"}}
        doc = collection(PATIENT_Q1, bad_obs, {"resourceType": "Bệnhán", "id": "z"}, external,
                         {"resourceType": "Patient", "id": "p-99", "gender": "nam"},
                         {"resourceType": "Condition", "id": "c-2", "code": {"text": "Ho"},
                          "subject": {"reference": "Patient/p-99"}},
                         dict(PATIENT_Q1))
        doc["entry"].insert(1, "not an object")
        result = run(doc)
        assert [(f.code, f.index) for f in result.failures] == [
            ("parse.invalid", 1), ("parse.invalid", 2), ("parse.unknown-type", 3), ("translate.unlinked", 4),
            ("parse.invalid", 5), ("translate.unlinked", 6), ("translate.duplicate", 7)]
        reasons = [f.reason for f in result.failures]
        assert reasons[1] == ("entry 2 (Observation): component[0].valueQuantity.value: Value error, Decimal value "
                              "string does not match spec regex.")
        assert reasons[2] == "entry 3: resourceType Bệnhán is not an R4 resource"
        assert reasons[3] == "entry 4 (Condition): its subject is not a Patient in the bundle"
        assert reasons[4].startswith("entry 5 (Patient): gender: not in the required value set")
        assert reasons[5] == "entry 6 (Condition): its subject (entry 5) failed validation"
        assert reasons[6] == "entry 7 (Patient): same resource as entry 0"
        assert [e.type for e in result.events] == ["patient.updated"]  # the valid Patient still maps
        assert all("nhanh" not in r and "someone-else" not in r for r in reasons)  # no values in reasons

    def test_an_entry_too_big_for_one_record_is_refused_and_the_rest_maps(self) -> None:
        """A DocumentReference with a 1 MB inline attachment would not fit a Kafka record (nor its DLQ entry)."""
        doc = copy.deepcopy(SAMPLE)
        doc["entry"].append({"resource": {
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "urn:uuid:5b1f2c1e-0000-4000-8000-000000000002"},
            "content": [{"attachment": {"contentType": "application/pdf", "data": "QUFB" * 260_000}}]}})
        result = run(doc)
        failure = result.failures[-1]
        assert (failure.code, failure.index, failure.resource_type) == ("parse.size", 9, "DocumentReference")
        assert "over the 786,432-byte limit of one record" in failure.reason
        assert len(failure.original) == 512 * 1024 and len(result.events) == 7

    def test_delete_requests_are_refused_not_dropped(self) -> None:
        doc = copy.deepcopy(SAMPLE)
        doc["entry"].append({"request": {"method": "DELETE", "url": "Observation/old-1"}})
        result = run(doc)
        assert result.failures[-1].code == "translate.unsupported" and result.failures[-1].index == 9
        assert len(result.events) == 7

    def test_no_subject_with_two_patients_is_unlinked(self) -> None:
        other = {**PATIENT_Q1, "id": "p-89", "identifier": [{"system": mrn_system("79025"), "value": "Q1-000089"}]}
        obs = {"resourceType": "Observation", "id": "o-1", "status": "final", "code": {"text": "Nhiệt độ"}}
        result = run(collection(PATIENT_Q1, other, obs))
        assert result.failures[0].reason == ("entry 2 (Observation): no subject or patient reference, and the "
                                             "bundle has 2 Patients")


class TestGolden:
    def test_sample_bundle_matches_its_golden_file(self, sample: BundleResult) -> None:
        """transaction_tran_thi_lan.json -> -expected.json (events as on the wire, failures). After a deliberate
        mapping change, regenerate the golden file and review its diff."""
        expected = json.loads(DATA.with_name(DATA.stem + "-expected.json").read_text(encoding="utf-8"))
        assert [e.to_dict() for e in sample.events] == expected["events"]
        assert [{"code": f.code, "index": f.index, "reason": f.reason} for f in sample.failures] == expected["failures"]


class TestMapping:
    def test_every_payload_validates(self, sample: BundleResult, validate_fhir: Callable[[dict[str, Any]], None],
                                     validate_event: Callable[[Envelope], None]) -> None:
        for event in sample.events:
            validate_fhir(event.payload)
            validate_event(event)

    def test_types_in_order(self, sample: BundleResult) -> None:
        assert [e.type for e in sample.events] == [
            "patient.updated", "encounter.recorded", "condition.recorded", "observation.recorded",
            "medication.recorded", "immunization.recorded", "allergy.recorded"]
        assert sample.counts["Organization.context"] == 1

    def test_facility_and_identifiers(self, sample: BundleResult) -> None:
        assert sample.facility == "79048" and sample.bundle_key == "Bundle/bv-cho-ray-2026-11-30-0001"
        (patient,) = by_type(sample, "Patient")
        assert [(i["system"], i["value"]) for i in patient.payload["identifier"]] == [
            (mrn_system("79048"), "BN-2026-7781"), (SYSTEM_CCCD, "079186005566"),
            (SYSTEM_BHYT, "DN4797912345678"), (SYSTEM_BHXH, "7912345678")]
        assert patient.payload["identifier"][0]["type"]["coding"][0]["code"] == "MR"  # the rest is kept
        assert [(i.system, i.value) for i in patient.subject.identifiers] == [
            (i["system"], i["value"]) for i in patient.payload["identifier"]]

    def test_patient_id_is_the_one_every_connector_gives_the_mrn(self, sample: BundleResult) -> None:
        """An ADT feed, a BHYT export and a FHIR bundle of one facility name the same Patient."""
        assert by_type(sample, "Patient")[0].payload["id"] == uid("Patient|79048|MR|BN-2026-7781")

    def test_subject_and_demographics(self, sample: BundleResult) -> None:
        subject = sample.events[0].subject
        assert (subject.family, subject.given, subject.birth_date, subject.sex) == (
            "Trần", ("Thị", "Lan"), "1986-03-14", "female")
        assert all(e.subject == subject for e in sample.events)
        assert sample.events[0].occurred_at == "2026-11-30T16:45:00+07:00"  # the bundle's timestamp

    def test_references_point_at_hub_ids(self, sample: BundleResult) -> None:
        patient_id = by_type(sample, "Patient")[0].payload["id"]
        encounter = by_type(sample, "Encounter")[0].payload
        assert encounter["id"] == uid("Encounter|79048|fhir|id:enc-7781-1")
        assert encounter["subject"] == {"reference": f"Patient/{patient_id}"}
        assert encounter["serviceProvider"]["reference"].startswith("Organization/")
        condition = by_type(sample, "Condition")[0].payload
        # "Encounter/enc-7781-1" and "urn:uuid:...0003" name the same entry
        assert condition["encounter"] == by_type(sample, "Observation")[0].payload["encounter"] == {
            "reference": f"Encounter/{encounter['id']}"}
        shot = by_type(sample, "Immunization")[0].payload
        assert shot["patient"] == {"reference": f"Patient/{patient_id}"} and shot["lotNumber"] == "FLU-2026-11"
        assert by_type(sample, "Observation")[0].payload["valueQuantity"]["value"] == 165
        assert by_type(sample, "Condition")[0].payload["code"]["coding"][0]["display"] == "Tăng huyết áp vô căn"

    def test_event_ids_are_deterministic_envelope_ids(self, sample: BundleResult) -> None:
        again = read_bundle(DATA, received_at="2027-01-01T00:00:00+07:00")
        assert [e.event_id for e in again.events] == [e.event_id for e in sample.events]
        encounter = by_type(sample, "Encounter")[0]
        assert encounter.event_id == event_id("fhir", "79048", "Bundle/bv-cho-ray-2026-11-30-0001",
                                              "Encounter/id:enc-7781-1")
        assert len({e.event_id for e in sample.events}) == len(sample.events)

    def test_bundle_without_id_is_keyed_by_content(self) -> None:
        doc = {k: v for k, v in SAMPLE.items() if k != "id"}
        first, second = run(doc), run(doc)
        assert first.bundle_key.startswith("sha256:") and first.bundle_key == second.bundle_key
        assert [e.event_id for e in first.events] == [e.event_id for e in second.events]

    def test_collection_with_absolute_urls_and_an_implied_subject(
            self, validate_fhir: Callable[[dict[str, Any]], None]) -> None:
        obs = {"resourceType": "Observation", "id": "o-7", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Nhiệt độ"}]},
               "valueQuantity": {"value": 38.5, "unit": "Cel"}, "effectiveDateTime": "2026-11-29T21:15:00+07:00"}
        proc = {"resourceType": "Procedure", "id": "pr-1", "status": "completed", "code": {"text": "Nội soi dạ dày"},
                "subject": {"reference": "https://emr.benhvien-q1.vn/fhir/Patient/p-88"},
                "performedDateTime": "2026-11-29T10:00:00+07:00"}
        result = run(collection(PATIENT_Q1, obs, proc))
        assert result.failures == [] and result.facility == "79025"
        assert [e.type for e in result.events] == ["patient.updated", "observation.recorded", "procedure.recorded"]
        pid = result.events[0].payload["id"]
        assert pid == uid("Patient|79025|MR|Q1-000088")
        assert result.events[2].payload["subject"] == {"reference": f"Patient/{pid}"}
        assert result.events[1].subject.identifiers == result.events[0].subject.identifiers
        assert result.counts["subject.implied"] == 1 and result.events[1].occurred_at == "2026-11-29T21:15:00+07:00"
        for event in result.events:
            validate_fhir(event.payload)

    def test_conditional_reference_and_old_id_card(self) -> None:
        patient = {"resourceType": "Patient", "identifier": [
            {"system": mrn_system("79033"), "value": "BN-5"},
            {"type": {"coding": [{"code": "NNVNM"}]}, "system": "urn:oid:2.16.704.1", "value": "025123456"}],
            "name": [{"text": "Phạm Minh Châu"}]}
        condition = {"resourceType": "Condition", "code": {"text": "Viêm họng"},
                     "subject": {"reference": f"Patient?identifier={mrn_system('79033')}|BN-5"}}
        doc = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001", "resource": patient,
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": condition, "request": {"method": "POST", "url": "Condition"}}]}
        result = run(doc)
        assert result.failures == []
        patient_event, cond_event = result.events
        assert cond_event.payload["subject"]["reference"] == f"Patient/{patient_event.payload['id']}"
        assert (SYSTEM_OLD_ID, "025123456") in [(i.system, i.value) for i in patient_event.subject.identifiers]
        assert (patient_event.subject.family, patient_event.subject.given) == ("Phạm", ("Minh", "Châu"))

    def test_medication_statement_and_document(self, validate_fhir: Callable[[dict[str, Any]], None]) -> None:
        statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                     "medicationCodeableConcept": {"text": "Metformin 500 mg"},
                     "subject": {"reference": "Patient/p-88"}, "effectiveDateTime": "2026-10-01"}
        doc_ref = {"resourceType": "DocumentReference", "id": "d-1", "status": "current",
                   "subject": {"reference": "Patient/p-88"}, "date": "2026-11-30T11:00:00+07:00",
                   "content": [{"attachment": {"contentType": "text/plain", "title": "Giấy ra viện"}}]}
        result = run(collection(PATIENT_Q1, statement, doc_ref))
        assert [e.type for e in result.events] == ["patient.updated", "medication.recorded", "document.recorded"]
        assert [e.occurred_at for e in result.events[1:]] == ["2026-10-01", "2026-11-30T11:00:00+07:00"]
        for event in result.events:
            validate_fhir(event.payload)

    def test_text_is_normalised_to_nfc(self) -> None:
        import unicodedata

        patient = copy.deepcopy(PATIENT_Q1)
        patient["name"] = [{"family": unicodedata.normalize("NFD", "Lê"), "given": ["Hoàng", "Phúc"]}]
        result = run(collection(patient))
        assert result.events[0].payload["name"][0]["family"] == "Lê" and result.events[0].subject.family == "Lê"


class TestSensitivity:
    def test_hiv_diagnosis_flags_its_encounter_and_the_encounters_other_resources(self) -> None:
        enc = {"resourceType": "Encounter", "id": "e-1", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": "Patient/p-88"}}
        hiv = {"resourceType": "Condition", "id": "c-hiv", "code": {"coding": [
            {"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]}, "subject": {"reference": "Patient/p-88"},
            "encounter": {"reference": "Encounter/e-1"}}
        cd4 = {"resourceType": "Observation", "id": "o-cd4", "status": "final", "code": {"text": "Bạch cầu"},
               "subject": {"reference": "Patient/p-88"}, "encounter": {"reference": "Encounter/e-1"}}
        other = {"resourceType": "Observation", "id": "o-2", "status": "final", "code": {"text": "Cân nặng"},
                 "subject": {"reference": "Patient/p-88"}}
        result = run(collection(PATIENT_Q1, enc, hiv, cd4, other))
        assert [(e.payload["resourceType"], e.sensitivity) for e in result.events] == [
            ("Patient", ()), ("Encounter", ("hiv",)), ("Condition", ("hiv",)), ("Observation", ("hiv",)),
            ("Observation", ())]

    def test_security_label_flags(self) -> None:
        note = {"resourceType": "DocumentReference", "id": "d-psy", "status": "current",
                "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]},
                "subject": {"reference": "Patient/p-88"},
                "content": [{"attachment": {"contentType": "text/plain"}}]}
        result = run(collection(PATIENT_Q1, note))
        assert result.events[1].sensitivity == ("mental-health",)

    def test_sample_is_not_flagged(self, sample: BundleResult) -> None:
        assert all(e.sensitivity == () for e in sample.events)


class TestPublicSurface:
    def test_exports(self) -> None:
        assert sorted(fhir.__all__) == sorted([
            "BUNDLE_TYPES", "DEFAULT_MAX_BYTES", "EVENT_TYPE", "SOURCE_SYSTEM", "BundleError", "BundleResult",
            "EntryEvents", "EntryFailure", "read_bundle", "translate_bundle"])

    def test_dead_letter_names_the_entry(self, sample: BundleResult) -> None:
        letter = sample.failures[0].dead_letter("2026-12-01T08:00:00+07:00", source_file="x.json",
                                                facility="79048", bundle=sample.bundle_key)
        assert letter.stage == "import" and letter.code == "parse"
        assert letter.headers == {"kind": "invalid", "source_system": "fhir", "where": "entry 7",
                                  "resource_type": "Observation", "file": "x.json", "facility": "79048",
                                  "bundle": "Bundle/bv-cho-ray-2026-11-30-0001"}
