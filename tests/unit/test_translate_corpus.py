"""The team's corpus of HL7 v2 messages (tests/data/hl7/corpus): every supported type, versions 2.3-2.8,
Vietnamese and international patients, LF/CRLF separators, BOM, missing optional fields, repetitions,
escape sequences and Z-segments.

Every message must translate, every payload validate as FHIR R4B (plus the closed value sets the models do
not check), every event validate against the envelope schema; then a table pins concrete mapped values.
``corpus/rejected`` holds messages that must fail, each with the reason it fails for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from connectors.hl7v2.parse import decode, parse, read_header
from connectors.hl7v2.translate import TRANSLATORS, translate
from hub.envelope import EVENT_TYPES, SENSITIVITY_FLAGS, Envelope, SYSTEM_CCCD, SYSTEM_PASSPORT
from hub.errors import ParseError, TranslateError, UnsupportedMessage

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7" / "corpus"
ACCEPTED = sorted(CORPUS.glob("*.hl7"))
REJECTED = sorted((CORPUS / "rejected").glob("*.hl7"))
RECEIVED_AT = "2026-03-05T10:00:00.000+07:00"
EXPECTED = CORPUS / "expected"
# Reviewed goldens: one message per resource family. Regenerate with HSSK_REGEN_GOLDEN=1, then read the diff.
GOLDEN = ["adt_a01_full_dg1_al1_pr1_obx_nk1", "adt_a40_merge", "oru_r01_cbc_10_obx", "oul_r22_basic",
          "vxu_v04_covid_dose2", "orm_o01_lab_order", "rde_o11_amoxicillin", "rds_o13_dispense", "ppr_pc1_diabetes",
          "mdm_t02_discharge_summary", "siu_s12_tq1_v26"]
REGEN = os.environ.get("HSSK_REGEN_GOLDEN") == "1"

# Closed (required) value sets of the resources the translators build, which fhir.resources does not check.
CLOSED: dict[tuple[str, str], frozenset[str]] = {
    ("Observation", "status"): frozenset({"registered", "preliminary", "final", "amended", "corrected",
                                          "cancelled", "entered-in-error", "unknown"}),
    ("DiagnosticReport", "status"): frozenset({"registered", "partial", "preliminary", "final", "amended",
                                               "corrected", "appended", "cancelled", "entered-in-error", "unknown"}),
    ("Immunization", "status"): frozenset({"completed", "entered-in-error", "not-done"}),
    ("ServiceRequest", "status"): frozenset({"draft", "active", "on-hold", "revoked", "completed",
                                             "entered-in-error", "unknown"}),
    ("ServiceRequest", "intent"): frozenset({"order"}),
    ("MedicationRequest", "status"): frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error",
                                                "stopped", "draft", "unknown"}),
    ("MedicationRequest", "intent"): frozenset({"order"}),
    ("MedicationDispense", "status"): frozenset({"preparation", "in-progress", "cancelled", "on-hold", "completed",
                                                 "entered-in-error", "stopped", "declined", "unknown"}),
    ("Procedure", "status"): frozenset({"completed"}),
    ("AllergyIntolerance", "criticality"): frozenset({"low", "high", "unable-to-assess"}),
    ("DocumentReference", "status"): frozenset({"current", "superseded", "entered-in-error"}),
    ("DocumentReference", "docStatus"): frozenset({"preliminary", "final", "amended", "entered-in-error"}),
    ("Appointment", "status"): frozenset({"proposed", "pending", "booked", "arrived", "fulfilled", "cancelled",
                                          "noshow", "entered-in-error", "checked-in", "waitlist"}),
}
ALLERGY_CATEGORIES = frozenset({"food", "medication", "environment", "biologic"})
COMPARATORS = frozenset({"<", "<=", ">=", ">"})


def _quantities(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if "value" in node and isinstance(node["value"], (int, float)) else []
        return found + [q for v in node.values() for q in _quantities(v)]
    if isinstance(node, list):
        return [q for v in node for q in _quantities(v)]
    return []


def check_closed_codes(resource: dict[str, Any]) -> None:
    kind = resource["resourceType"]
    for (rtype, field), allowed in CLOSED.items():
        if rtype == kind and field in resource:
            assert resource[field] in allowed, f"{kind}.{field}: {resource[field]!r}"
    for category in resource.get("category", []) if kind == "AllergyIntolerance" else []:
        assert category in ALLERGY_CATEGORIES, category
    for participant in resource.get("participant", []) if kind == "Appointment" else []:
        assert participant["status"] in {"accepted", "declined", "tentative", "needs-action"}
    for location in resource.get("location", []) if kind == "Encounter" else []:
        assert location.get("status", "active") in {"planned", "active", "reserved", "completed"}
    for link in resource.get("link", []):
        assert link["type"] in {"replaced-by", "replaces", "refer", "seealso"}
    for q in _quantities(resource):
        assert q.get("comparator", "<") in COMPARATORS, q
    if kind == "Condition" and resource.get("verificationStatus", {}).get("coding", [{}])[0].get("code") == \
            "entered-in-error":
        assert "clinicalStatus" not in resource  # FHIR con-5
    if kind == "Appointment" and resource["status"] not in ("proposed", "cancelled", "waitlist"):
        assert resource["start"] and resource["end"]  # FHIR app-3


def run(path: Path) -> list[Envelope]:
    return translate(path.read_bytes(), received_at=RECEIVED_AT)


def pick(data: Any, path: str) -> Any:
    """``pick(event, "payload.identifier.0.value")``: dotted path, list indices as numbers."""
    for key in path.split("."):
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


def _header(path: Path) -> tuple[str, str, str]:
    header = read_header(parse(decode(path.read_bytes())))
    return header.message_code, header.trigger, header.version


class TestCorpus:
    def test_size_and_spread(self) -> None:
        """At least 80 messages; every translator has a message; versions 2.3 to 2.8 all appear."""
        assert len(ACCEPTED) + len(REJECTED) >= 80
        headers = [_header(p) for p in ACCEPTED]
        assert {(code, trigger) for code, trigger, _ in headers} == set(TRANSLATORS)
        assert {v for _, _, v in headers} >= {"2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"}

    def test_defects_are_represented(self) -> None:
        """The corpus holds the real-world defects the issue lists (checked on the raw bytes)."""
        raws = {p.name: p.read_bytes() for p in ACCEPTED}
        assert any(b"\n" in r and b"\r" not in r for r in raws.values()), "LF-only separators"
        assert any(b"\r\n" in r for r in raws.values()), "CRLF separators"
        assert any(r.startswith(b"\xef\xbb\xbf") for r in raws.values()), "a BOM"
        for escape in (rb"\F\ ", rb"\S\ ", rb"\T\ ", rb"\R\ ", rb"\E\ ", rb"\X"):
            assert any(escape.strip() in r for r in raws.values()), escape
        assert any(b"\rZ" in r for r in raws.values()), "Z-segments"
        assert any(b"~" in r.split(b"\r")[2] for r in raws.values() if r.count(b"\r") > 3), "repetitions"

    @pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
    def test_translates_and_validates(self, path: Path, validate_fhir, validate_event) -> None:
        """Each message gives events whose payloads are valid FHIR R4B and whose envelopes match the schema."""
        events = run(path)
        assert events
        for event in events:
            validate_fhir(event.payload)
            check_closed_codes(event.payload)
            validate_event(event)
            assert event.type in EVENT_TYPES
            assert set(event.sensitivity) <= SENSITIVITY_FLAGS
            assert event.subject.identifiers, "the MPI needs the source's identifiers"
        assert len({e.event_id for e in events}) == len(events), "event ids are unique within a message"
        ids = {(e.payload["resourceType"], e.payload["id"]) for e in events}
        assert len(ids) == len(events), "resource ids are unique within a message"
        for event in events:  # a report names only observations that are in the same message
            for result in event.payload.get("result", []):
                kind, rid = result["reference"].split("/")
                assert (kind, rid) in ids

    @pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
    def test_deterministic(self, path: Path) -> None:
        """Translating the same bytes twice gives byte-identical events."""
        assert [e.to_json() for e in run(path)] == [e.to_json() for e in run(path)]


class TestGolden:
    @pytest.mark.parametrize("name", GOLDEN)
    def test_golden(self, name: str) -> None:
        """The whole output (events as on the wire) equals the reviewed expected JSON."""
        import orjson

        actual = [orjson.loads(e.to_json()) for e in run(CORPUS / f"{name}.hl7")]
        path = EXPECTED / f"{name}.json"
        if REGEN:
            EXPECTED.mkdir(exist_ok=True)
            path.write_text(json.dumps(actual, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        assert actual == json.loads(path.read_text(encoding="utf-8"))


REJECTIONS: dict[str, tuple[type[Exception], str]] = {
    "adt_a09_unsupported": (UnsupportedMessage, "unsupported message type ADT^A09"),
    "qry_a19_unsupported": (UnsupportedMessage, "unsupported message type QRY^A19"),
    "oru_r01_obx_without_code": (TranslateError, "OBX-3: observation identifier missing"),
    "vxu_v04_without_administration_time": (TranslateError, "RXA-3: date/time start of administration missing"),
    "siu_s12_without_start": (TranslateError, "TQ1-7/SCH-11/AIS-4: appointment start time missing"),
    "adt_a01_no_patient_identifier": (TranslateError, "PID-3: no patient identifier"),
    "adt_a01_bad_birth_date": (TranslateError, "PID-7: '19851341' is not a valid HL7 timestamp (month 13)"),
    "rde_o11_without_give_code": (TranslateError, "RXE-2: give code missing"),
    "mdm_t02_bad_base64": (TranslateError, "OBX-5: ED data is not valid Base64"),
    "adt_a40_without_mrg": (TranslateError, "MRG segment missing"),
    "not_hl7": (ParseError, "message does not start with an MSH segment"),
}


class TestRejected:
    def test_every_rejected_message_has_an_expectation(self) -> None:
        assert {p.stem for p in REJECTED} == set(REJECTIONS)

    @pytest.mark.parametrize("path", REJECTED, ids=lambda p: p.stem)
    def test_rejected(self, path: Path) -> None:
        """A message that cannot become events fails with the stage's error and a reason naming the field."""
        error, reason = REJECTIONS[path.stem]
        with pytest.raises(error) as info:
            run(path)
        assert type(info.value) is error
        assert info.value.reason == reason


ICD10 = "http://hl7.org/fhir/sid/icd-10"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

# (message, event index, path into the event as on the wire, expected value)
VALUES: list[tuple[str, int, str, Any]] = [
    # ADT: types, the full A01
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 0, "payload.name.0.text", "Nguyễn Thị Hồng"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 0, "payload.identifier.2.value", "0123456789"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 1, "type", "related-person.recorded"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 1, "payload.relationship.0.coding.0.code", "SPS"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 1, "payload.identifier.0", {"system": SYSTEM_CCCD, "value": "079083004455"}),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 2, "payload.participant.0.individual.display", "BS. Phạm Minh Khánh"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 2, "payload.participant.1.type.0.coding.0.code", "ADM"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 2, "payload.diagnosis.0.use.coding.0.code", "AD"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 2, "payload.diagnosis.1.use.coding.0.code", "CM"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 2, "payload.diagnosis.1.rank", 2),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 3, "payload.valueQuantity",
     {"value": 158, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 4, "payload.valueQuantity.value", 52.5),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 5, "payload.criticality", "high"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 5, "payload.category", ["medication"]),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 5, "payload.reaction.0.manifestation", [{"text": "Phát ban"},
                                                                                {"text": "Khó thở"}]),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 5, "payload.onsetDateTime", "2015-06-01"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 6, "payload.code.coding.0", {
        "system": ICD10, "code": "J18.9", "display": "Viêm phổi, không đặc hiệu"}),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 6, "payload.recordedDate", "2026-02-03T09:10:00+07:00"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 8, "payload.code.coding.0.system", "http://hl7.org/fhir/sid/icd-9-cm"),
    ("adt_a01_full_dg1_al1_pr1_obx_nk1", 8, "payload.performedDateTime", "2026-02-03T09:14:00+07:00"),
    ("adt_a01_v23_minimal", 2, "payload.code", {"coding": [{"system": ICD10, "code": "K35.8"}],
                                                 "text": "Viêm ruột thừa cấp"}),
    ("adt_a01_v28_international_passport", 0, "payload.identifier.0", {"system": SYSTEM_PASSPORT,
                                                                        "value": "C01X00T47"}),
    ("adt_a01_v28_international_passport", 0, "payload.name.0.prefix", ["Dr."]),
    ("adt_a01_v28_international_passport", 0, "payload.telecom.0", {"system": "email",
                                                                     "value": "j.mueller@example.de", "use": "home"}),
    ("adt_a01_v28_international_passport", 0, "occurred_at", "2026-03-01T10:25:00+07:00"),
    ("adt_a01_lf_separators", 1, "payload.class.code", "EMER"),
    ("adt_a01_hiv_diagnosis", 1, "sensitivity", ["hiv"]),
    ("adt_a01_hiv_diagnosis", 2, "sensitivity", ["hiv"]),
    ("adt_a01_hiv_diagnosis", 3, "sensitivity", []),
    ("adt_a01_hiv_diagnosis", 0, "sensitivity", []),
    ("adt_a01_mental_health_diagnosis", 1, "sensitivity", ["mental-health"]),
    ("adt_a02_transfer", 1, "payload.location", [
        {"location": {"display": "NOI2 / P.305 / G.12"}, "status": "completed"},
        {"location": {"display": "HSTC / P.1 / G.03"}, "status": "active"}]),
    ("adt_a03_discharge_final_dx", 1, "payload.status", "finished"),
    ("adt_a03_discharge_final_dx", 1, "payload.period.end", "2026-02-10T09:30:00+07:00"),
    ("adt_a03_discharge_final_dx", 1, "payload.diagnosis.0.use.coding.0.code", "DD"),
    ("adt_a04_crlf_separators", 0, "payload.identifier.1.value", "7412345678"),
    ("adt_a04_emergency", 1, "payload.status", "arrived"),
    ("adt_a04_repeated_fields", 0, "payload.name.1", {"use": "usual", "text": "Châu Sang", "family": "Châu",
                                                      "given": ["Sang"]}),
    ("adt_a04_repeated_fields", 0, "payload.address.1.use", "temp"),
    ("adt_a04_repeated_fields", 0, "payload.telecom", [
        {"system": "phone", "value": "0903111222", "use": "mobile"},
        {"system": "phone", "value": "0283855667", "use": "home"},
        {"system": "phone", "value": "0283999000", "use": "work"}]),
    ("adt_a04_missing_optional", 1, "payload.status", "arrived"),
    ("adt_a04_missing_optional", 0, "occurred_at", "2026-01-18T08:00:00+07:00"),
    ("adt_a04_newborn_mother_name", 0, "payload.name.0.family", "Con của Lê"),
    ("adt_a04_newborn_mother_name", 0, "payload.birthDate", "2026-01-31"),
    ("adt_a04_newborn_mother_name", 0, "payload.multipleBirthInteger", 1),
    ("adt_a03_discharge_final_dx", 1, "payload.hospitalization.dischargeDisposition.coding.0", {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "01"}),
    ("adt_a04_newborn_mother_name", 1, "payload.identifier.0.value", "079196001234"),
    ("adt_a04_newborn_mother_name", 1, "payload.relationship.0.coding.0.code", "MTH"),
    ("adt_a05_preadmit", 1, "payload.status", "planned"),
    ("adt_a05_preadmit", 1, "payload.class.code", "PRENC"),
    ("adt_a05_v23_allergy_misc", 2, "payload.code", {"text": "Bụi nhà"}),
    ("adt_a06_outpatient_to_inpatient", 1, "payload.class.code", "IMP"),
    ("adt_a07_inpatient_to_outpatient", 1, "payload.class.code", "AMB"),
    ("adt_a08_two_next_of_kin", 2, "payload.relationship.0.coding.0.code", "FTH"),
    ("adt_a08_two_next_of_kin", 2, "payload.birthDate", "1993-07-07"),
    ("adt_a08_obx_text_nte", 2, "payload.valueString", "Đau bụng dưới 2 ngày"),
    ("adt_a08_obx_text_nte", 2, "payload.note", [{"text": "Bệnh nhân tự đến"}]),
    ("adt_a08_obx_text_nte", 3, "payload.interpretation.0.coding.0", {
        "system": V3_INTERPRETATION, "code": "H", "display": "High"}),
    ("adt_a08_bom", 0, "payload.name.0.text", "Đinh Thị Thu"),
    ("adt_a08_procedure_v23", 2, "payload.code", {"coding": [{"system": "http://hl7.org/fhir/sid/icd-9-cm",
                                                              "code": "47.01"}], "text": "Cắt ruột thừa nội soi"}),
    ("adt_a08_procedure_v23", 2, "payload.performer.0.actor.display", "Huỳnh Văn Nam"),
    ("adt_a11_cancel_admit", 1, "payload.status", "cancelled"),
    ("adt_a12_cancel_transfer", 1, "payload.location", [{"location": {"display": "CC / P.1 / G.1"}}]),
    ("adt_a13_cancel_discharge", 1, "payload.status", "in-progress"),
    ("adt_a28_add_person", 1, "payload.category", ["food"]),
    ("adt_a28_add_person", 1, "payload.criticality", "low"),
    ("adt_a28_unknown_birth_day", 0, "payload.birthDate", "1950"),
    ("adt_a31_escapes_v27", 0, "payload.address.0.line", ["Số 5|7 đường 3^2", "Phường 9\\10"]),
    ("adt_a31_hex_escape_name", 0, "payload.name.0.text", "Lý Thị Hồng"),
    ("adt_a01_z_segments", 1, "payload.identifier.0.value", "BV7-V-0101"),
    ("adt_a01_international_japan", 0, "payload.address.0.country", "JPN"),
    ("adt_a01_international_ireland", 0, "payload.name.0.given", ["Áine", "Siobhán"]),
    ("adt_a03_food_allergy", 2, "payload.criticality", "low"),
    ("adt_a03_food_allergy", 3, "payload.criticality", "unable-to-assess"),
    ("adt_a03_food_allergy", 2, "payload.onsetDateTime", "2021"),
    # A40
    ("adt_a40_merge", 0, "type", "patient.merged"),
    ("adt_a40_merge", 0, "payload.identifier.2", {"use": "old", "system": "http://fhir.ehealth.gov.vn/core/sid/mrn/79048",
                                                  "value": "CR0101777"}),
    ("adt_a40_merge", 0, "payload.link.0.type", "replaces"),
    ("adt_a40_merge", 0, "subject.identifiers.0.value", "CR0099001"),
    ("adt_a40_two_merges", 1, "subject.given", ["Văn", "Minh"]),
    # ORU / OUL
    ("oru_r01_cbc_10_obx", 0, "payload.status", "final"),
    ("oru_r01_cbc_10_obx", 0, "payload.issued", "2026-02-03T11:25:00+07:00"),
    ("oru_r01_cbc_10_obx", 0, "payload.identifier.1.value", "LAB-20260203-0042"),
    ("oru_r01_cbc_10_obx", 1, "payload.valueQuantity.value", 12.4),
    ("oru_r01_cbc_10_obx", 1, "payload.referenceRange.0.low.value", 4.0),
    ("oru_r01_cbc_10_obx", 1, "payload.referenceRange.0.high.unit", "10*9/L"),
    ("oul_r22_basic", 1, "payload.category.0.coding.0.code", "laboratory"),
    ("oru_r01_radiology_text", 1, "payload.category.0.coding.0.code", "imaging"),
    ("oru_r01_hiv_test", 1, "payload.category.0.coding.0.code", "laboratory"),
    ("oru_r01_cbc_10_obx", 3, "payload.interpretation.0.coding.0.code", "L"),
    ("oru_r01_cbc_10_obx", 4, "payload.effectiveDateTime", "2026-02-03T11:00:00+07:00"),
    ("oru_r01_cbc_10_obx", 1, "payload.performer.0.display", "Võ Thị Hạnh"),
    ("oru_r01_coded_results", 1, "payload.valueCodeableConcept.coding.0", {
        "system": "http://snomed.info/sct", "code": "260385009", "display": "Âm tính"}),
    ("oru_r01_coded_results", 2, "payload.interpretation.0.coding.0.code", "A"),
    ("oru_r01_coded_results", 3, "payload.valueQuantity", {"value": 1.015}),
    ("oru_r01_formatted_text_nte", 0, "payload.category.0.coding.0.code", "RAD"),
    ("oru_r01_formatted_text_nte", 1, "payload.valueString",
     "Gan: kích thước bình thường.\nTúi mật: không sỏi.\nThận: bình thường."),
    ("oru_r01_formatted_text_nte", 2, "payload.valueString", "Chưa phát hiện bất thường\nKhuyên tái khám nếu đau"),
    ("oru_r01_hiv_test", 0, "sensitivity", ["hiv"]),
    ("oru_r01_hiv_test", 2, "payload.valueQuantity.value", 1250),
    ("oru_r01_hiv_test", 2, "payload.referenceRange.0.high.value", 20),
    ("oru_r01_structured_numeric", 1, "payload.valueQuantity.comparator", "<"),
    ("oru_r01_structured_numeric", 2, "payload.valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 128}}),
    ("oru_r01_structured_numeric", 3, "payload.valueRange.high.value", 6.3),
    ("oru_r01_structured_numeric", 4, "payload.valueQuantity.comparator", ">="),
    ("oru_r01_structured_numeric", 4, "payload.interpretation.0.coding.0.code", "HH"),
    ("oru_r01_two_orders", 2, "payload.result.1.reference", None),  # filled in by test_two_orders
    ("oru_r01_preliminary_corrected", 0, "payload.status", "preliminary"),
    ("oru_r01_preliminary_corrected", 1, "payload.status", "preliminary"),
    ("oru_r01_preliminary_corrected", 2, "payload.status", "corrected"),
    ("oru_r01_preliminary_corrected", 3, "payload.status", "cancelled"),
    ("oru_r01_v23_lf", 1, "payload.valueQuantity", {"value": 15.2, "unit": "G/L"}),
    ("oru_r01_v23_lf", 1, "payload.code.coding.0.system", "urn:hssk:hl7v2:code-system:L"),
    ("oru_r01_dt_tm_values", 1, "payload.valueDateTime", "2026-08-15"),
    ("oru_r01_dt_tm_values", 2, "payload.valueTime", "08:30:00"),
    ("oru_r01_non_numeric_nm", 1, "payload.valueString", "vết"),
    ("oru_r01_international_offset", 1, "payload.effectiveDateTime", "2026-02-13T07:55:00-05:00"),
    ("oru_r01_international_offset", 0, "subject.family", "Smith"),
    ("oru_r01_no_orc_escapes", 1, "payload.valueString", "U tuyến & mô đệm; kích thước 2^3 cm, bờ | đều"),
    ("oru_r01_no_orc_escapes", 2, "payload.valueString", "Mẫu A~B đã nhuộm\\HE"),
    ("oru_r01_lab_code_local", 1, "payload.valueQuantity", {"value": 5.4, "unit": "mmol/l"}),
    ("oul_r22_basic", 0, "payload.result.0.reference", None),
    ("oul_r22_basic", 0, "payload.identifier.0.value", "ORD-900"),
    ("oul_r22_basic", 0, "payload.category.0.coding.0.code", "LAB"),
    ("oul_r22_specimen_observation", 2, "payload.valueString", "Mẫu đạt yêu cầu"),
    # VXU
    ("vxu_v04_covid_dose2", 0, "payload.vaccineCode.coding.0", {
        "system": "http://hl7.org/fhir/sid/cvx", "code": "208",
        "display": "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"}),
    ("vxu_v04_covid_dose2", 0, "payload.lotNumber", "FK8891"),
    ("vxu_v04_covid_dose2", 0, "payload.expirationDate", "2026-06-30"),
    ("vxu_v04_covid_dose2", 0, "payload.doseQuantity.value", 0.3),
    ("vxu_v04_covid_dose2", 0, "payload.site.coding.0.code", "LD"),
    ("vxu_v04_covid_dose2", 0, "payload.route.coding.0.code", "IM"),
    ("vxu_v04_covid_dose2", 0, "payload.performer.0.actor.display", "Trần Thị Yến"),
    ("vxu_v04_covid_dose2", 0, "payload.occurrenceDateTime", "2026-03-01T08:30:00+07:00"),
    ("vxu_v04_covid_dose2", 0, "payload.protocolApplied", [{"doseNumberPositiveInt": 2}]),
    ("vxu_v04_covid_dose2", 0, "payload.primarySource", True),
    ("vxu_v04_covid_dose2", 0, "payload.manufacturer.display", "Pfizer, Inc"),
    ("vxu_v04_bcg_newborn", 1, "payload.route.coding.0.code", "IDINJ"),
    ("vxu_v04_bcg_newborn", 0, "payload.relationship.0.coding.0.code", "MTH"),
    ("vxu_v04_historical_unknown_amount", 0, "payload.primarySource", False),
    ("vxu_v04_historical_unknown_amount", 0, "payload.occurrenceDateTime", "2010-05-15"),
    ("vxu_v04_refused", 0, "payload.status", "not-done"),
    ("vxu_v04_refused", 0, "payload.statusReason.text", "Gia đình từ chối"),
    ("vxu_v04_deleted", 0, "payload.status", "entered-in-error"),
    ("vxu_v04_two_vaccines_local_codes", 0, "payload.vaccineCode.coding.0.system",
     "http://fhir.ehealth.gov.vn/core/CodeSystem/vaccine-tcmr"),
    ("vxu_v04_two_vaccines_local_codes", 1, "payload.doseQuantity", {"value": 2, "unit": "giọt"}),
    ("vxu_v04_v23_lf", 0, "payload.route.coding.0.code", "IM"),
    # ORM / OML
    ("orm_o01_lab_order", 0, "payload.status", "active"),
    ("orm_o01_lab_order", 0, "payload.reasonCode.0.coding.0.code", "J18.9"),
    ("orm_o01_lab_order", 0, "payload.requester.display", "Phạm Minh Khánh"),
    ("orm_o01_cancel", 0, "payload.status", "revoked"),
    ("orm_o01_two_orders_nte", 0, "payload.note", [{"text": "Nhịn ăn 6 giờ trước khi siêu âm"}]),
    ("orm_o01_two_orders_nte", 1, "payload.code.coding.0.code", "2345-7"),
    ("orm_o01_v23", 0, "payload.status", "active"),
    ("orm_o01_pharmacy_rxo_v23", 0, "type", "medication.recorded"),
    ("orm_o01_pharmacy_rxo_v23", 0, "payload.medicationCodeableConcept.coding.0.code", "J01DD04"),
    ("orm_o01_pharmacy_rxo_v23", 0, "payload.dosageInstruction.0.timing.code.text", "TID"),
    ("orm_o01_pharmacy_rxo_v23", 0, "payload.dosageInstruction.0.route.coding.0.code", "IVINJ"),
    ("orm_o01_pharmacy_rxo_v23", 0, "payload.dispenseRequest", {"quantity": {"value": 10, "unit": "INJ"},
                                                                "numberOfRepeatsAllowed": 0}),
    ("orm_o01_pharmacy_rxo_v23", 1, "payload.dosageInstruction.0.timing.code.text", "BID"),
    ("orm_o01_pharmacy_rxo_v23", 1, "payload.identifier.0.value", "BD-RX-78"),
    ("oml_o21_lab", 0, "payload.code.coding.0.code", "10839-9"),
    ("oml_o21_hiv_test", 0, "sensitivity", ["hiv"]),
    # RDE / RDS
    ("rde_o11_amoxicillin", 0, "payload.dosageInstruction.0.doseAndRate.0.doseQuantity", {
        "value": 500, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}),
    ("rde_o11_amoxicillin", 0, "payload.dosageInstruction.0.text", "Uống sau ăn, ngày 2 lần"),
    ("rde_o11_amoxicillin", 0, "payload.dosageInstruction.0.timing.code.text", "BID"),
    ("rde_o11_amoxicillin", 0, "payload.dispenseRequest", {"quantity": {"value": 14, "unit": "CAP"},
                                                           "numberOfRepeatsAllowed": 0}),
    ("rde_o11_dose_range", 0, "payload.dosageInstruction.0.doseAndRate.0.doseRange.high.value", 1000),
    ("rde_o11_antiretroviral", 0, "sensitivity", ["hiv"]),
    ("rde_o11_discontinue", 0, "payload.status", "stopped"),
    ("rds_o13_dispense", 0, "payload.quantity", {"value": 14, "unit": "CAP"}),
    ("rds_o13_dispense", 0, "payload.whenHandedOver", "2026-02-03T12:55:00+07:00"),
    ("rds_o13_dispense", 0, "payload.identifier.0.value", "PR-2026-5001"),
    ("rds_o13_v26", 0, "payload.status", "completed"),
    # PPR
    ("ppr_pc1_diabetes", 0, "payload.clinicalStatus.coding.0.code", "active"),
    ("ppr_pc1_diabetes", 0, "payload.onsetDateTime", "2024-01-15"),
    ("ppr_pc1_diabetes", 0, "payload.note.0.text", "Theo dõi HbA1c mỗi 3 tháng"),
    ("ppr_pc2_resolved", 0, "payload.clinicalStatus.coding.0.code", "resolved"),
    ("ppr_pc3_delete", 0, "payload.verificationStatus.coding.0.code", "entered-in-error"),
    ("ppr_pc1_depression", 0, "sensitivity", ["mental-health"]),
    # MDM
    ("mdm_t02_discharge_summary", 0, "payload.docStatus", "final"),
    ("mdm_t02_discharge_summary", 0, "payload.masterIdentifier.value", "DOC-CR-2026-0001"),
    ("mdm_t02_discharge_summary", 0, "payload.content.0.attachment.contentType", "text/plain; charset=utf-8"),
    ("mdm_t02_pdf", 0, "payload.content.0.attachment.contentType", "application/pdf"),
    ("mdm_t02_pdf", 0, "payload.content.0.attachment.data",
     "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK"),
    ("mdm_t02_v23_lf", 0, "payload.docStatus", "final"),
    ("mdm_t02_psychiatry_note", 0, "sensitivity", ["mental-health"]),
    ("mdm_t02_psychiatry_note", 0, "payload.docStatus", "preliminary"),
    # SIU
    ("siu_s12_tq1_v26", 0, "payload.start", "2026-03-05T08:00:00+07:00"),
    ("siu_s12_tq1_v26", 0, "payload.end", "2026-03-05T08:15:00+07:00"),
    ("siu_s12_tq1_v26", 0, "payload.participant.2.actor.display", "NOITIET / PK / 2"),
    ("siu_s12_sch11_v25", 0, "payload.end", "2026-03-10T09:20:00+07:00"),
    ("siu_s12_sch11_v25", 0, "payload.minutesDuration", 20),
    ("siu_s12_ais_duration", 0, "payload.status", "pending"),
    ("siu_s12_ais_duration", 0, "payload.end", "2026-03-15T14:30:00+07:00"),
    ("siu_s12_international", 0, "payload.participant.1.actor.display", "Dr. Trần Hải"),
    ("siu_s13_rescheduled", 0, "payload.start", "2026-03-06T09:00:00+07:00"),
    ("siu_s13_rescheduled", 0, "payload.status", "booked"),
    ("siu_s14_modified", 0, "payload.participant.1.actor.display", "PKNHI / P.TIEM / 1"),
    ("siu_s15_cancelled", 0, "payload.status", "cancelled"),
    ("siu_s17_deleted", 0, "payload.status", "entered-in-error"),
]


def _wire(name: str) -> list[dict[str, Any]]:
    import orjson

    return [orjson.loads(e.to_json()) for e in run(CORPUS / f"{name}.hl7")]


class TestMappedValues:
    @pytest.mark.parametrize(("name", "index", "path", "expected"), [v for v in VALUES if v[3] is not None],
                             ids=lambda v: v if isinstance(v, str) else None)
    def test_value(self, name: str, index: int, path: str, expected: Any) -> None:
        """Each listed field of the translated message has exactly the mapped value."""
        assert pick(_wire(name)[index], path) == expected

    def test_two_orders(self) -> None:
        """Each OBR is a report of its own OBX only."""
        events = _wire("oru_r01_two_orders")
        assert [e["type"] for e in events] == ["report.recorded", "observation.recorded", "report.recorded",
                                               "observation.recorded", "observation.recorded"]
        assert events[0]["payload"]["result"] == [{"reference": f"Observation/{events[1]['payload']['id']}"}]
        assert events[2]["payload"]["result"] == [{"reference": f"Observation/{e['payload']['id']}"}
                                                  for e in events[3:]]

    def test_oul_orc_after_obr_belongs_to_it(self) -> None:
        """In OUL^R22 the ORC after an OBR is that order's; its OBX stay in the report."""
        events = _wire("oul_r22_basic")
        assert events[0]["payload"]["result"] == [{"reference": f"Observation/{events[1]['payload']['id']}"}]

    def test_every_event_type_is_produced(self) -> None:
        """The corpus exercises every event type the translators can emit."""
        produced = {e.type for p in ACCEPTED for e in run(p)}
        assert produced == EVENT_TYPES - {"citizen.merged", "citizen.unmerged"}  # the MPI's own events
