"""XML1 (TONG_HOP, the encounter summary) -> Patient, Encounter and Conditions.

Identity comes from what the record gives: the facility's patient number (MA_BN, scoped by MA_CSKCB), SO_CCCD
(typed by its shape: 12 digits CCCD, 9 digits old ID card, a letter and 7 digits a passport, else an
untyped e-ID/other number), every BHYT card of MA_THE_BHYT (``;``-separated, with its validity period) and
the lifelong 10-digit BHXH number each card ends in; plus name, birth date, sex, address and phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from connectors.xml130 import ids
from connectors.xml130.errors import MappingError
from connectors.xml130.maps import MAPS
from connectors.xml130.values import birth, date_time, number, split, text
from hub.envelope import (
    SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, VN_FHIR_BASE, Identifier, Subject,
    mrn_system,
)

SYSTEM_OTHER_ID = "urn:hssk:xml130:so-cccd"  # SO_CCCD values of no recognisable type (e.g. e-ID account codes)
SYSTEM_ICD10 = "http://hl7.org/fhir/sid/icd-10"
SYSTEM_FACILITY = f"{VN_FHIR_BASE}/sid/facility"
EXT_OUTCOME = "urn:hssk:xml130:ket-qua-dtri"  # KET_QUA_DTRI: R4 Encounter has no outcome element
EXT_BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
DIED = frozenset({"5", "8"})

_CCCD = re.compile(r"[0-9]{12}")
_OLD_ID = re.compile(r"[0-9]{9}")
_PASSPORT = re.compile(r"[A-Z][0-9]{7}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def encounter_system(facility: str) -> str:
    """MA_LK is unique only inside one facility."""
    return f"{VN_FHIR_BASE}/sid/ma_lk/{quote(facility, safe='')}"


def record_number_system(facility: str) -> str:
    """MA_HSBA, the facility's medical-record (case file) number."""
    return f"{VN_FHIR_BASE}/sid/hsba/{quote(facility, safe='')}"


def department_system(facility: str) -> str:
    return f"{VN_FHIR_BASE}/sid/department/{quote(facility, safe='')}"


def service_provider(facility: str) -> dict[str, Any]:
    """As the HL7 v2 translator writes it, so both sources name a facility the same way."""
    if _FHIR_ID.fullmatch(facility):
        return {"reference": f"Organization/{facility}", "display": facility}
    return {"identifier": {"system": SYSTEM_FACILITY, "value": facility}, "display": facility}


@dataclass(frozen=True, slots=True)
class Summary:
    """XML1 mapped: the resources, the MPI subject, the times, and the diagnosis codes (for sensitivity)."""

    patient: dict[str, Any]
    encounter: dict[str, Any]
    conditions: list[dict[str, Any]]
    subject: Subject
    occurred_at: str
    icd10: tuple[str, ...]


def _id_system(value: str) -> str:
    if _CCCD.fullmatch(value):
        return SYSTEM_CCCD
    if _OLD_ID.fullmatch(value):
        return SYSTEM_OLD_ID
    if _PASSPORT.fullmatch(value):
        return SYSTEM_PASSPORT
    return SYSTEM_OTHER_ID


def _card_periods(f: dict[str, str], cards: int) -> list[dict[str, str] | None]:
    starts, ends = split(f.get("GT_THE_TU", "")), split(f.get("GT_THE_DEN", ""))
    out: list[dict[str, str] | None] = []
    for i in range(cards):
        period = {}
        if len(starts) == cards:
            period["start"] = date_time(starts[i], "GT_THE_TU")
        if len(ends) == cards:
            period["end"] = date_time(ends[i], "GT_THE_DEN")
        out.append(period or None)
    return out


def identifiers(f: dict[str, str], facility: str, ma_bn: str) -> list[dict[str, Any]]:
    """Every identifier XML1 gives, strongest last-resort first: MRN, CCCD-type number, cards, BHXH numbers."""
    out: list[dict[str, Any]] = [{"system": mrn_system(quote(facility, safe="")), "value": ma_bn}]
    seen = {(out[0]["system"], ma_bn)}

    def add(system: str, value: str, period: dict[str, str] | None = None) -> None:
        if (system, value) not in seen:
            seen.add((system, value))
            ident: dict[str, Any] = {"system": system, "value": value}
            if period:
                ident["period"] = period
            out.append(ident)

    for number_ in split(f.get("SO_CCCD", "")):
        add(_id_system(number_.upper()), number_)
    cards = [c.upper() for c in split(f.get("MA_THE_BHYT", ""))]
    for card, period in zip(cards, _card_periods(f, len(cards))):
        add(SYSTEM_BHYT, card, period)
    for card in cards:
        # Cards are 15 chars ending in the lifelong BHXH number; cards since 2021 show only those 10 digits.
        if len(card) in (10, 15) and card[-10:].isdigit():
            add(SYSTEM_BHXH, card[-10:])
    return out


def human_name(full: str) -> dict[str, Any]:
    """``Nguyễn Thị Bích Ngọc`` -> family ``Nguyễn``, given ``["Thị Bích", "Ngọc"]`` (middle, then given),
    the shape the HL7 v2 translator gives, so the MPI compares like with like."""
    parts = full.split()
    name: dict[str, Any] = {"use": "official", "text": " ".join(parts), "family": parts[0]}
    given = [p for p in (" ".join(parts[1:-1]), parts[-1] if len(parts) > 1 else "") if p]
    if given:
        name["given"] = given
    return name


def _patient(f: dict[str, str], facility: str, ma_bn: str) -> tuple[dict[str, Any], Subject]:
    idents = identifiers(f, facility, ma_bn)
    resource: dict[str, Any] = {"resourceType": "Patient", "id": ids.patient_id(facility, ma_bn),
                                "identifier": idents}
    name = human_name(text(f["HO_TEN"])) if f.get("HO_TEN") else None
    if name:
        resource["name"] = [name]
    gender = MAPS.gender(f["GIOI_TINH"]) if "GIOI_TINH" in f else None
    if gender:
        resource["gender"] = gender
    birth_date = None
    if "NGAY_SINH" in f:
        birth_date, birth_time = birth(f["NGAY_SINH"])
        resource["birthDate"] = birth_date
        if birth_time:
            resource["_birthDate"] = {"extension": [{"url": EXT_BIRTH_TIME, "valueDateTime": birth_time}]}
    outcome = f.get("KET_QUA_DTRI")
    if outcome in DIED:
        died_at = date_time(f["NGAY_RA"], "NGAY_RA") if outcome == "5" and "NGAY_RA" in f else None
        resource["deceasedDateTime" if died_at else "deceasedBoolean"] = died_at or True
    if "DIA_CHI" in f:
        resource["address"] = [{"use": "home", "text": text(f["DIA_CHI"])}]
    if "DIEN_THOAI" in f:
        resource["telecom"] = [{"system": "phone", "value": f["DIEN_THOAI"]}]
    subject = Subject(
        identifiers=tuple(Identifier(i["system"], i["value"]) for i in idents),
        family=name.get("family") if name else None,
        given=tuple(name.get("given", ())) if name else (),
        birth_date=birth_date,
        sex=gender,
    )
    return resource, subject


def _condition(facility: str, ma_lk: str, code: str, refs: tuple[str, str], recorded: str | None,
               note: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": ids.condition_id(facility, ma_lk, code),
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}],
        "code": {"coding": [{"system": SYSTEM_ICD10, "code": code}]},
        "subject": {"reference": refs[0]},
        "encounter": {"reference": refs[1]},
    }
    if recorded:
        resource["recordedDate"] = recorded
    if note:
        resource["note"] = [{"text": note}]
    return resource


def _diagnoses(f: dict[str, str]) -> list[str]:
    """MA_BENH_CHINH first (principal), then each code of MA_BENH_KT (secondary), without repeats."""
    codes = dict.fromkeys(c.upper() for c in split(f.get("MA_BENH_CHINH", "")))
    codes.update(dict.fromkeys(c.upper() for c in split(f.get("MA_BENH_KT", ""))))
    return list(codes)


def _encounter(f: dict[str, str], facility: str, ma_lk: str, patient_ref: str, start: str | None,
               end: str | None, condition_ids: list[str]) -> dict[str, Any]:
    kind = f.get("MA_LOAI_KCB", "")
    if len(kind) == 1:
        kind = "0" + kind  # QD 4210 wrote 1/2/3
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": ids.encounter_id(facility, ma_lk),
        "identifier": [{"system": encounter_system(facility), "value": ma_lk}],
        "status": "finished" if end else "unknown",
        "class": dict(MAPS.encounter_class(kind)),
        "subject": {"reference": patient_ref},
        "serviceProvider": service_provider(facility),
    }
    if "MA_HSBA" in f:
        resource["identifier"].append({"system": record_number_system(facility), "value": f["MA_HSBA"]})
    if kind:
        display = MAPS.encounter_type(kind)
        resource["type"] = [{"coding": [{"system": MAPS.encounter_type.system, "code": kind, "display": display}],
                             "text": display}]
    if start or end:
        resource["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if "SO_NGAY_DTRI" in f:
        days = number(f["SO_NGAY_DTRI"], "SO_NGAY_DTRI")
        resource["length"] = {"value": days, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}
    if "LY_DO_VV" in f:
        resource["reasonCode"] = [{"text": text(f["LY_DO_VV"])}]
    if condition_ids:
        resource["diagnosis"] = [
            {"condition": {"reference": f"Condition/{cid}"},
             "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "DD",
                                 "display": "Discharge diagnosis"}]},
             "rank": rank}
            for rank, cid in enumerate(condition_ids, start=1)
        ]
    if "MA_LOAI_RV" in f:
        code = f["MA_LOAI_RV"]
        entry = MAPS.discharge_type(code)
        codings = [{"system": MAPS.discharge_type.system, "code": code, "display": entry["display"]}]
        if "hl7" in entry:
            codings.append({"system": MAPS.discharge_hl7_system, "code": entry["hl7"]})
        resource["hospitalization"] = {"dischargeDisposition": {"coding": codings, "text": entry["display"]}}
    if "MA_KHOA" in f:
        resource["location"] = [{"location": {
            "identifier": {"system": department_system(facility), "value": code}, "display": code}}
            for code in split(f["MA_KHOA"])]
    if "KET_QUA_DTRI" in f:
        code = f["KET_QUA_DTRI"]
        display = MAPS.treatment_outcome(code)
        resource["extension"] = [{"url": EXT_OUTCOME, "valueCodeableConcept": {
            "coding": [{"system": MAPS.treatment_outcome.system, "code": code, "display": display}],
            "text": display}}]
    return resource


def summary(f: dict[str, str], facility: str) -> Summary:
    """Map one XML1 record; MappingError names the field when a required one is missing or invalid."""
    ma_lk = f.get("MA_LK")
    if not ma_lk:
        raise MappingError("missing", "XML1: MA_LK (encounter key) missing")
    ma_bn = f.get("MA_BN")
    if not ma_bn:
        raise MappingError("missing", "XML1: MA_BN (patient number) missing")
    start = date_time(f["NGAY_VAO"], "NGAY_VAO") if "NGAY_VAO" in f else None
    end = date_time(f["NGAY_RA"], "NGAY_RA") if "NGAY_RA" in f else None
    occurred_at = end or start
    if occurred_at is None:
        raise MappingError("missing", "XML1: NGAY_VAO and NGAY_RA both missing")
    patient, subject = _patient(f, facility, ma_bn)
    refs = (f"Patient/{patient['id']}", f"Encounter/{ids.encounter_id(facility, ma_lk)}")
    codes = _diagnoses(f)
    diagnosis_text = text(f["CHAN_DOAN_RV"]) if "CHAN_DOAN_RV" in f else None
    conditions = [_condition(facility, ma_lk, code, refs, end, diagnosis_text if rank == 0 else None)
                  for rank, code in enumerate(codes)]
    encounter = _encounter(f, facility, ma_lk, refs[0], start, end, [c["id"] for c in conditions])
    return Summary(patient, encounter, conditions, subject, occurred_at, tuple(codes))
