"""Targeted behaviour of the clinical translators: ids that link messages, sensitivity, merges, memo safety."""

from __future__ import annotations

import copy

import uuid
from pathlib import Path

import orjson
import pytest

from connectors.hl7v2 import sensitivity
from hub.envelope import uuid5
from connectors.hl7v2.parse import decode, parse
from connectors.hl7v2.patient import patient, subject_of
from connectors.hl7v2.translate import translate
from hub.envelope import EVENT_ID_NAMESPACE, Envelope, event_id
from hub.errors import TranslateError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hl7" / "corpus"
RECEIVED_AT = "2026-03-05T10:00:00.000+07:00"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def run(name: str) -> list[Envelope]:
    return translate((CORPUS / f"{name}.hl7").read_bytes(), received_at=RECEIVED_AT)


def payload(name: str, resource_type: str, n: int = 0) -> dict:
    return [e.payload for e in run(name) if e.payload["resourceType"] == resource_type][n]


def message(*segments: str) -> bytes:
    return "\r".join(segments).encode("utf-8")


class TestIds:
    @pytest.mark.parametrize("name", ["", "a", "Observation|79048|filler|LIS|1|2345-7||1", "Nguyễn|Thị", "x" * 500])
    def test_uuid5_is_the_stdlib_uuid5(self, name: str) -> None:
        """The fast uuid5 gives exactly str(uuid.uuid5(EVENT_ID_NAMESPACE, name))."""
        assert uuid5(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))

    def test_event_ids_follow_the_envelope_rule(self) -> None:
        """Event ids equal envelope.event_id(system, facility, MSH-10, position); positions name the segment."""
        events = run("oru_r01_two_orders")
        positions = ["DiagnosticReport/4", "Observation/5", "DiagnosticReport/7", "Observation/8", "Observation/9"]
        assert [e.event_id for e in events] == [event_id("hl7v2", "79048", "LIS-R01-0006", p) for p in positions]

    def test_order_links_across_messages(self) -> None:
        """The ORU report is basedOn the ServiceRequest the ORM created (same placer number, same id)."""
        order = payload("orm_o01_lab_order", "ServiceRequest")
        report = payload("oru_r01_cbc_10_obx", "DiagnosticReport")
        assert report["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
        cancelled = payload("orm_o01_cancel", "ServiceRequest")
        assert cancelled["id"] == order["id"] and cancelled["status"] == "revoked"

    def test_dispense_points_at_the_prescription(self) -> None:
        """RDS's MedicationDispense names the MedicationRequest of the RDE with the same ORC-2."""
        request = payload("rde_o11_amoxicillin", "MedicationRequest")
        dispense = payload("rds_o13_dispense", "MedicationDispense")
        assert dispense["authorizingPrescription"] == [{"reference": f"MedicationRequest/{request['id']}"}]
        assert payload("rde_o11_discontinue", "MedicationRequest")["id"] == request["id"]

    def test_problem_updates_and_deletes_keep_the_condition_id(self) -> None:
        """PPR PC2/PC3 about PRB-4 instance PRB-UMC-2 change one Condition (same id)."""
        updated, deleted = payload("ppr_pc2_resolved", "Condition"), payload("ppr_pc3_delete", "Condition")
        assert updated["id"] == deleted["id"]
        assert deleted["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
        assert "clinicalStatus" not in deleted

    def test_diagnosis_of_one_visit_keeps_its_id_from_admission_to_discharge(self) -> None:
        """J18.9 on visit CR-V-26001 is one Condition in the A01 and the A03."""
        admitted = next(p for p in (e.payload for e in run("adt_a01_full_dg1_al1_pr1_obx_nk1"))
                        if p["resourceType"] == "Condition" and p["code"]["coding"][0]["code"] == "J18.9")
        assert payload("adt_a03_discharge_final_dx", "Condition")["id"] == admitted["id"]

    def test_document_lifecycle(self) -> None:
        """T04 updates the T02 document; T06/T10 are new documents pointing at their parent; T11 cancels one."""
        original, pdf = payload("mdm_t02_discharge_summary", "DocumentReference"), payload("mdm_t02_pdf", "DocumentReference")
        authenticated = payload("mdm_t04_authenticated", "DocumentReference")
        assert authenticated["id"] == pdf["id"] and authenticated["docStatus"] == "final"
        addendum, replacement = (payload(n, "DocumentReference") for n in ("mdm_t06_addendum", "mdm_t10_replacement"))
        assert addendum["relatesTo"][0]["code"] == "appends"
        assert replacement["relatesTo"][0]["code"] == "replaces"
        for doc in (addendum, replacement):
            assert doc["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{original['id']}"
            assert doc["id"] != original["id"]
        cancelled = payload("mdm_t11_cancel", "DocumentReference")
        assert cancelled["id"] == addendum["id"] and cancelled["status"] == "entered-in-error"
        assert cancelled["content"] == [{"attachment": {"title": "Giấy ra viện",
                                                        "creation": "2026-02-13T08:50:00+07:00"}}]

    def test_appointment_triggers_share_one_appointment(self) -> None:
        """S12 booking, S13 reschedule and S15 cancellation about SCH-2 UMC-F-1 change one Appointment."""
        booked, moved, cancelled = (payload(n, "Appointment") for n in (
            "siu_s12_tq1_v26", "siu_s13_rescheduled", "siu_s15_cancelled"))
        assert booked["id"] == moved["id"] == cancelled["id"]
        assert (booked["start"], moved["start"]) == ("2026-03-05T08:00:00+07:00", "2026-03-06T09:00:00+07:00")
        assert cancelled["status"] == "cancelled" and "start" not in cancelled

    def test_deleted_immunization_replaces_the_original(self) -> None:
        """RXA-21 D for the same patient, vaccine and time marks the same Immunization entered-in-error."""
        given, deleted = payload("vxu_v04_covid_dose2", "Immunization"), payload("vxu_v04_deleted", "Immunization")
        assert deleted["id"] == given["id"]
        assert deleted["status"] == "entered-in-error"

    def test_corrected_results_keep_observation_ids(self) -> None:
        """A corrected OBX (same order, code, set id) has the id of the preliminary one."""
        raw = (CORPUS / "oru_r01_preliminary_corrected.hl7").read_bytes()
        first = translate(raw, received_at=RECEIVED_AT)
        second = translate(raw.replace(b"LIS-R01-0007", b"LIS-R01-0008").replace(b"|P\r", b"|F\r"),
                           received_at=RECEIVED_AT)
        assert [e.payload["id"] for e in first] == [e.payload["id"] for e in second]
        assert [e.event_id for e in first] != [e.event_id for e in second]

    def test_clinical_subject_matches_the_patient(self) -> None:
        """Clinical messages derive the subject without a Patient; it equals what ADT's patient() gives."""
        for path in sorted(CORPUS.glob("*.hl7")):
            msg = parse(decode(path.read_bytes()))
            for pid in msg.all("PID"):
                resource, subject = patient(pid, msg.msh.component(4, 1))
                assert subject_of(pid, msg.msh.component(4, 1)) == (resource["id"], subject), path.name


class TestAdtShapes:
    def test_person_only_messages_have_no_encounter(self) -> None:
        """A28/A31 give no Encounter even with a placeholder PV1; clinical segments still map."""
        assert [e.type for e in run("adt_a28_add_person")] == ["patient.updated", "allergy.recorded"]
        assert "encounter" not in run("adt_a28_add_person")[1].payload

    def test_merge_names_survivor_and_retired(self) -> None:
        """A40: subject is the survivor; payload lists retired identifiers as old and links the retired Patient."""
        (event,) = run("adt_a40_merge")
        old = [i["value"] for i in event.payload["identifier"] if i.get("use") == "old"]
        assert old == ["CR0101777", "DN4790123456789", "0123456789"]
        assert [i.value for i in event.subject.identifiers] == ["CR0099001", "079185002233"]
        retired_id = uuid5("Patient|79048|MR|CR0101777")
        assert event.payload["link"] == [{"other": {"reference": f"Patient/{retired_id}"}, "type": "replaces"}]

    def test_related_person_of_a_newborn_carries_the_mothers_cccd(self) -> None:
        """NK1-33 gives the mother's own identifiers: the MPI can tell the baby from the mother."""
        baby, mother = run("adt_a04_newborn_mother_name")[:2]
        assert mother.type == "related-person.recorded"
        assert mother.payload["patient"] == {"reference": f"Patient/{baby.payload['id']}"}
        assert mother.subject == baby.subject  # the event is about the baby

    def test_z_segment_between_segments_changes_nothing(self) -> None:
        """Z-segments anywhere are ignored by mapping."""
        raw = (CORPUS / "adt_a01_z_segments.hl7").read_bytes()
        stripped = b"\r".join(s for s in raw.split(b"\r") if not s.startswith(b"Z"))
        assert [e.to_json() for e in translate(raw, received_at=RECEIVED_AT)] == \
            [e.to_json() for e in translate(stripped, received_at=RECEIVED_AT)]


class TestFailures:
    MSH = "MSH|^~\\&|LIS|79048|HUB|SYT|20260203113000||{type}|M1|P|2.5"
    PID = "PID|1||CR1^^^79048^MR||Nguyễn^An^Văn||19900512|M"

    @pytest.mark.parametrize(("msh9", "segments", "reason"), [
        ("ORU^R01", ["OBR|1||L1|58410-2^CBC^LN"], "PID segment missing before OBR"),
        ("ORU^R01", [PID], "OBR segment missing"),
        ("ORU^R01", [PID, "OBR|1||L1"], "OBR-4: universal service identifier missing"),
        ("ORM^O01", [PID, "ORC|NW|O1"], "OBR or RXO segment missing"),
        ("ORM^O01", [PID, "ORC|NW|O1", "RXO||500|||mg"], "RXO-1: requested give code missing"),
        ("RDS^O13", [PID, "ORC|RE|O1"], "RXD segment missing"),
        ("RDS^O13", [PID, "ORC|RE|O1", "RXD|1"], "RXD-2: dispense/give code missing"),
        ("PPR^PC1", [PID], "PRB segment missing"),
        ("PPR^PC1", [PID, "PRB|AD|20260101"], "PRB-3: problem id missing"),
        ("MDM^T02", [PID], "TXA segment missing"),
        ("MDM^T02", [PID, "TXA|1"], "TXA-2: document type missing"),
        ("SIU^S12", [PID], "SCH segment missing"),
        ("SIU^S12", ["SCH||||||||||||||||||||||||Booked", PID], "SCH-1/SCH-2: no appointment id"),
        ("VXU^V04", [PID], "RXA segment missing"),
        ("VXU^V04", [PID, "RXA|0|1|20260101"], "RXA-5: administered code missing"),
        ("ADT^A01", [PID, "PV1|1|I", "AL1|1|DA"], "AL1-3: allergen missing"),
        ("ADT^A01", [PID, "PV1|1|I", "DG1|1"], "DG1-3: diagnosis code missing"),
        ("ADT^A40", ["MRG|OLD1^^^79048^MR"], "MRG without a preceding PID"),
        ("ADT^A40", [PID, "MRG|"], "MRG-1: no prior patient identifier"),
        ("ORU^R01", [PID, "OBR|1||L1|X^Y^LN", "OBX|1|DT|X^Y^LN||2026-01-01"],
         "OBX-5 (DT): '2026-01-01' is not a valid HL7 timestamp"),
    ])
    def test_rejected_with_the_field(self, msh9: str, segments: list[str], reason: str) -> None:
        """What a translator cannot map is a TranslateError naming the segment or field."""
        raw = message(self.MSH.format(type=msh9), *segments)
        with pytest.raises(TranslateError) as info:
            translate(raw, received_at=RECEIVED_AT)
        assert info.value.reason.startswith(reason)

    def test_cancelled_appointment_may_lack_a_time(self) -> None:
        """FHIR app-3 allows a cancelled appointment without start and end."""
        raw = message(self.MSH.format(type="SIU^S12"), "SCH|A1" + "|" * 24 + "Cancelled", self.PID)
        (event,) = translate(raw, received_at=RECEIVED_AT)
        assert event.payload["status"] == "cancelled"
        assert "start" not in event.payload


class TestSensitivity:
    @pytest.mark.parametrize(("concept", "flags"), [
        ({"coding": [{"system": ICD10, "code": "B20"}]}, ("hiv",)),
        ({"coding": [{"system": ICD10, "code": "b24"}]}, ("hiv",)),
        ({"coding": [{"system": ICD10, "code": "Z21"}]}, ("hiv",)),
        ({"coding": [{"system": ICD10, "code": "O98.7"}]}, ("hiv",)),
        ({"coding": [{"system": ICD10, "code": "F20.0"}]}, ("mental-health",)),
        ({"coding": [{"system": ICD10, "code": "X70"}]}, ("mental-health",)),
        ({"coding": [{"system": "http://loinc.org", "code": "75622-1"}]}, ("hiv",)),
        ({"coding": [{"system": "http://www.whocc.no/atc", "code": "N06AB06"}]}, ("mental-health",)),
        ({"coding": [{"system": "urn:local", "code": "XN9", "display": "Xét nghiệm HIV nhanh"}]}, ("hiv",)),
        ({"text": "Khám tâm thần"}, ("mental-health",)),
        ({"coding": [{"system": ICD10, "code": "J18.9"}], "text": "Viêm phổi"}, ()),
        ({"coding": [{"system": "urn:local", "code": "B20"}]}, ()),  # B20 outside ICD-10 is not HIV
        ({"text": "SHIVA"}, ()),  # word boundaries: HIV inside a word is not HIV
    ])
    def test_flags(self, concept: dict, flags: tuple[str, ...]) -> None:
        """Codes from the lists (ICD-10 by prefix, LOINC, ATC, text patterns for local codes) raise flags."""
        assert sensitivity.flags({"resourceType": "Condition", "code": concept}) == flags

    def test_union_keeps_catalogue_order(self) -> None:
        assert sensitivity.union(("mental-health",), (), ("hiv",)) == ("hiv", "mental-health")

    def test_results_inherit_their_reports_flags(self) -> None:
        """Every result of an HIV report is flagged, even one whose own code is not on the lists."""
        raw = message(TestFailures.MSH.format(type="ORU^R01"), TestFailures.PID, "OBR|1||L1|75622-1^HIV 1+2^LN",
                      "OBX|1|NM|26464-8^Bạch cầu^LN||6.1||||||F")
        report, observation = translate(raw, received_at=RECEIVED_AT)
        assert report.sensitivity == observation.sensitivity == ("hiv",)

    def test_value_concept_flags_the_observation(self) -> None:
        """A coded result naming HIV flags the Observation even when the test code is local."""
        raw = message(TestFailures.MSH.format(type="ORU^R01"), TestFailures.PID, "OBR|1||L1|XN^Xét nghiệm^99X",
                      "OBX|1|CWE|KQ^Kết quả^99X||B20^Bệnh HIV^I10||||||F")
        report, observation = translate(raw, received_at=RECEIVED_AT)
        assert observation.sensitivity == ("hiv",)
        assert report.sensitivity == ("hiv",)


class TestMemoSafety:
    def test_changing_an_output_does_not_change_the_next_translation(self) -> None:
        """Memoised parts are either copied out or frozen: a consumer editing a payload gets a TypeError for a
        shared part and can never corrupt later messages."""
        raw = (CORPUS / "oru_r01_cbc_10_obx.hl7").read_bytes()
        expected = [e.to_json() for e in translate(raw, received_at=RECEIVED_AT)]
        refused = 0
        for event in translate(raw, received_at=RECEIVED_AT):
            p = event.payload
            for key in ("code", "performer", "referenceRange", "interpretation", "valueQuantity", "category"):
                value = p.get(key)
                try:
                    if isinstance(value, dict):
                        value.clear()
                    elif isinstance(value, (list, tuple)):
                        for item in value:
                            item.clear() if isinstance(item, dict) else None
                        value.append({"x": 1})
                except (TypeError, AttributeError):
                    refused += 1
        assert refused > 0  # the Observations' shared parts are frozen
        assert [e.to_json() for e in translate(raw, received_at=RECEIVED_AT)] == expected

    def test_a_deep_copy_of_a_payload_is_plain_and_mutable(self) -> None:
        """What a consumer copies is its own: plain dicts and lists it may change."""
        raw = (CORPUS / "oru_r01_cbc_10_obx.hl7").read_bytes()
        observation = next(e for e in translate(raw, received_at=RECEIVED_AT) if e.type == "observation.recorded")
        mine = copy.deepcopy(observation.payload)
        mine["code"]["text"] = "đã sửa"
        assert orjson.loads(orjson.dumps(mine))["code"]["text"] == "đã sửa"
        assert "text" not in observation.payload["code"] or observation.payload["code"]["text"] != "đã sửa"

    def test_output_is_plain_json(self) -> None:
        """Payloads round-trip through JSON unchanged (no tuples, no custom objects)."""
        for event in run("vxu_v04_two_vaccines_local_codes"):
            assert orjson.loads(orjson.dumps(event.payload)) == event.payload
