"""Deterministic resource ids, one function per FHIR resource type.

Each id is uuid5 of the resource type, the facility and the source's own keys for the thing (visit number,
order number, code and time...), never a random value and never the raw id numbers themselves. So the same
fact sent twice (A01 then A08, a corrected ORU) keeps its resource id, and a replay changes nothing.
Keys are joined with ``|``; parts are the values as sent (already unescaped).
"""

from __future__ import annotations

from hub.envelope import uuid5


def _id(*parts: str) -> str:
    return uuid5("|".join(parts))


def patient_id(facility: str, value: str, type_code: str) -> str:
    """From the first PID-3 identifier (with its CX.5 type)."""
    return _id("Patient", facility, type_code, value)


def encounter_id(facility: str, visit_number: str, control_id: str) -> str:
    """From PV1-19; without a visit number, from the message (MSH-10)."""
    key = f"visit|{visit_number}" if visit_number else f"message|{control_id}"
    return _id("Encounter", facility, key)


def condition_id(facility: str, scope: str, code: str) -> str:
    """A diagnosis (DG1) of one encounter, or a problem (PRB-4 instance id); ``scope`` names which."""
    return _id("Condition", facility, scope, code)


def allergy_id(facility: str, patient: str, allergen: str) -> str:
    """One allergen of one patient: a repeated AL1 updates the same AllergyIntolerance."""
    return _id("AllergyIntolerance", facility, patient, allergen)


def procedure_id(facility: str, encounter: str, code: str, when: str) -> str:
    return _id("Procedure", facility, encounter, code, when)


def observation_id(facility: str, scope: str, code: str, sub_id: str) -> str:
    """An OBX in its order (filler/placer number) or encounter, by OBX-3 code and OBX-4 sub-id."""
    return _id("Observation", facility, scope, code, sub_id)


def related_person_id(facility: str, patient: str, key: str) -> str:
    return _id("RelatedPerson", facility, patient, key)


def report_id(facility: str, order: str) -> str:
    """A DiagnosticReport per order (OBR filler number, else placer number, else message + OBR set id)."""
    return _id("DiagnosticReport", facility, order)


def service_request_id(facility: str, order: str) -> str:
    """From the placer order number (ORC-2/OBR-2), else the filler's (ORC-3/OBR-3)."""
    return _id("ServiceRequest", facility, order)


def medication_request_id(facility: str, order: str) -> str:
    """From the placer order number (ORC-2), so RDS dispenses can point at the RDE order."""
    return _id("MedicationRequest", facility, order)


def medication_dispense_id(facility: str, order: str, dispensed: str, sub_id: str) -> str:
    return _id("MedicationDispense", facility, order, dispensed, sub_id)


def immunization_id(facility: str, patient: str, vaccine: str, when: str) -> str:
    """One vaccine given to one patient at one time: a re-sent VXU updates the same Immunization."""
    return _id("Immunization", facility, patient, vaccine, when)


def document_id(facility: str, document: str) -> str:
    """From TXA-12 (unique document number), else the message."""
    return _id("DocumentReference", facility, document)


def appointment_id(facility: str, appointment: str) -> str:
    """From SCH-2 (filler appointment id), else SCH-1 (placer's)."""
    return _id("Appointment", facility, appointment)
