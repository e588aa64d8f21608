"""Deterministic ids, one function per resource type (uuid5 of the facility and the source's own keys).

Never the raw id numbers in an id: a resource id is visible in references everywhere. The Patient id uses
the same formula as the HL7 v2 translator for a facility MRN (``Patient|facility|MR|MRN``), so one facility's
ADT feed and its BHYT export name the same Patient.
"""

from __future__ import annotations

from hub.envelope import uuid5


def patient_id(facility: str, ma_bn: str) -> str:
    return uuid5(f"Patient|{facility}|MR|{ma_bn}")


def encounter_id(facility: str, ma_lk: str) -> str:
    return uuid5(f"Encounter|{facility}|ma_lk|{ma_lk}")


def condition_id(facility: str, ma_lk: str, icd10: str) -> str:
    return uuid5(f"Condition|{facility}|{ma_lk}|{icd10}")


def medication_dispense_id(facility: str, ma_lk: str, row: str) -> str:
    return uuid5(f"MedicationDispense|{facility}|{ma_lk}|{row}")


def procedure_id(facility: str, ma_lk: str, row: str) -> str:
    return uuid5(f"Procedure|{facility}|{ma_lk}|{row}")


def observation_id(facility: str, ma_lk: str, row: str) -> str:
    return uuid5(f"Observation|{facility}|{ma_lk}|{row}")


def diagnostic_report_id(facility: str, ma_lk: str, service: str) -> str:
    return uuid5(f"DiagnosticReport|{facility}|{ma_lk}|{service}")


def document_reference_id(facility: str, ma_lk: str, table: str, row: str) -> str:
    return uuid5(f"DocumentReference|{facility}|{ma_lk}|{table}|{row}")
