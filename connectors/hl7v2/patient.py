"""PID -> Patient, PV1 -> Encounter, NK1 -> RelatedPerson, MRG -> the retired side of a merge."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from connectors.hl7v2.context import Context
from connectors.hl7v2.datatypes import (
    birth_date, coded, cwe_field, cx, first_repetition, part, pl_text, ts_field, xad, xcn, xpn, xtn,
)
from connectors.hl7v2.ids import encounter_id, patient_id, related_person_id
from connectors.hl7v2.maps import MAPS
from connectors.hl7v2.parse import Segment, Separators
from hub.envelope import SYSTEM_BHXH, SYSTEM_BHYT, VN_FHIR_BASE, Identifier, Subject
from hub.errors import TranslateError

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"
# PV1 fields that name a clinician, and the participation type each is.
_PARTICIPANTS = ((7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"), (17, "ADM", "admitter"))


# CX.5 + scope -> Identifier.system, memoised (the same few types and facilities arrive all day; quoting the
# scope for the MRN system costs more than the rest of the identifier).
_identifier_system = functools.lru_cache(maxsize=4096)(MAPS.identifier_system)


def visit_system(facility: str) -> str:
    """Visit numbers (PV1-19) are only unique inside their facility, like MRNs."""
    return f"{VN_FHIR_BASE}/sid/visit/{facility}"


def identifiers(reps: list[str], seps: Separators, facility: str) -> tuple[list[dict[str, str]], str]:
    """CX repetitions (PID-3, MRG-1, NK1-33) as Identifiers, and the resource id from the first one ("" if
    none). A BHYT card also gives its 10-digit BHXH number; duplicates are sent once."""
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    resource_id = ""

    def add(system: str, value: str) -> None:
        if (system, value) not in seen:
            seen.add((system, value))
            out.append({"system": system, "value": value})

    for rep in reps:
        ident = cx(rep, seps)
        if not ident.value:
            continue
        if not resource_id:
            resource_id = patient_id(facility, ident.value, ident.type_code)
        system = _identifier_system(ident.type_code, ident.assigner or facility)
        add(system, ident.value)
        # BHYT cards are 15 chars ending in the lifelong BHXH number; cards since 2021 show only those 10.
        if system == SYSTEM_BHYT and len(ident.value) in (10, 15) and ident.value[-10:].isdigit():
            add(SYSTEM_BHXH, ident.value[-10:])
    return out, resource_id


def _contact_fields(resource: dict[str, Any], seg: Segment, name: int, address: int, phones: tuple[int, int],
                    sex: int, dob: int) -> dict[str, Any]:
    """Name, gender, birth date, address and telecom: shared by PID and NK1 (different field numbers)."""
    seps = seg.seps
    names = [n for n in (xpn(rep, seps) for rep in seg.repetitions(name)) if n]
    if names:
        resource["name"] = names
    sex_code = part(first_repetition(seg, sex), 1, seps)
    if sex_code and (gender := MAPS.administrative_sex(sex_code)):
        resource["gender"] = gender
    if born := birth_date(part(first_repetition(seg, dob), 1, seps), f"{seg.name}-{dob}"):
        resource["birthDate"] = born
    addresses = [a for a in (xad(rep, seps) for rep in seg.repetitions(address)) if a]
    if addresses:
        resource["address"] = addresses
    telecom = [t for t in (xtn(rep, seps, "home") for rep in seg.repetitions(phones[0])) if t]
    telecom += [t for t in (xtn(rep, seps, "work") for rep in seg.repetitions(phones[1])) if t]
    if telecom:
        resource["telecom"] = telecom
    return resource


def patient(pid: Segment, facility: str) -> tuple[dict[str, Any], Subject]:
    """PID -> FHIR Patient (plain dict) and the envelope subject the MPI reads."""
    idents, resource_id = identifiers(pid.repetitions(3), pid.seps, facility)
    if not resource_id:
        raise TranslateError("PID-3: no patient identifier")
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, "identifier": idents}
    _contact_fields(resource, pid, 5, 11, (13, 14), 8, 7)
    seps = pid.seps
    if deceased_at := ts_field(pid, 29):  # PID-29 death date/time, else PID-30 death indicator
        resource["deceasedDateTime"] = deceased_at
    elif (indicator := part(first_repetition(pid, 30), 1, seps)) in ("Y", "N"):
        resource["deceasedBoolean"] = indicator == "Y"
    order = part(first_repetition(pid, 25), 1, seps)  # PID-24 multiple birth, PID-25 birth order (twins)
    if order.isdigit() and int(order) > 0:
        resource["multipleBirthInteger"] = int(order)
    elif (multiple := part(first_repetition(pid, 24), 1, seps)) in ("Y", "N"):
        resource["multipleBirthBoolean"] = multiple == "Y"
    first = resource.get("name", [{}])[0]
    subject = Subject(
        identifiers=tuple(Identifier(i["system"], i["value"]) for i in idents),
        family=first.get("family"),
        given=tuple(first.get("given", ())),
        birth_date=resource.get("birthDate"),
        sex=resource.get("gender"),
    )
    return resource, subject


def subject_of(pid: Segment, facility: str) -> tuple[str, Subject]:
    """The Patient id and envelope subject from PID, without building the Patient (clinical messages do not
    emit one): identifiers, first name, birth date and sex only."""
    seps = pid.seps
    idents, resource_id = identifiers(pid.repetitions(3), seps, facility)
    if not resource_id:
        raise TranslateError("PID-3: no patient identifier")
    name = next((n for n in (xpn(rep, seps) for rep in pid.repetitions(5)) if n), None) or {}
    sex_code = part(first_repetition(pid, 8), 1, seps)
    return resource_id, Subject(
        identifiers=tuple(Identifier(i["system"], i["value"]) for i in idents),
        family=name.get("family"),
        given=tuple(name.get("given", ())),
        birth_date=birth_date(part(first_repetition(pid, 7), 1, seps), "PID-7"),
        sex=MAPS.administrative_sex(sex_code) if sex_code else None,
    )


def retired(mrg: Segment, facility: str) -> tuple[list[dict[str, str]], str]:
    """MRG-1 (prior patient identifier list): the retired identifiers and the retired Patient's id."""
    idents, resource_id = identifiers(mrg.repetitions(1), mrg.seps, facility)
    if not resource_id:
        raise TranslateError("MRG-1: no prior patient identifier")
    return idents, resource_id


def related_person(nk1: Segment, facility: str, patient_ref: str, patient_key: str) -> dict[str, Any] | None:
    """NK1 -> RelatedPerson: name, relationship, contacts and (NK1-33) their own identifiers, which is how a
    newborn recorded under the mother's name can be told apart from her. None for an empty NK1."""
    seps = nk1.seps
    resource: dict[str, Any] = {"resourceType": "RelatedPerson", "id": "", "patient": {"reference": patient_ref}}
    idents, _ = identifiers(nk1.repetitions(33), seps, facility)
    if idents:
        resource["identifier"] = idents
    if relation := cwe_field(nk1, 3):
        code = relation["coding"][0]["code"] if relation.get("coding") else ""
        if code:
            relation = dict(relation, coding=[coded(MAPS.relationship(code), code, "0063")])
        resource["relationship"] = [relation]
    _contact_fields(resource, nk1, 2, 4, (5, 6), 15, 16)
    if not any(k in resource for k in ("name", "identifier", "telecom", "address")):
        return None
    key = idents[0]["value"] if idents else resource.get("name", [{}])[0].get("text", "") + "|" + part(
        first_repetition(nk1, 3), 1, seps)
    resource["id"] = related_person_id(facility, patient_key, key)
    return resource


def service_provider(facility: str) -> dict[str, Any]:
    if _FHIR_ID.fullmatch(facility):
        return {"reference": f"Organization/{facility}", "display": facility}
    return {"identifier": {"system": f"{VN_FHIR_BASE}/sid/facility", "value": facility}, "display": facility}


def _participants(pv1: Segment, facility: str) -> list[dict[str, Any]]:
    out = []
    for field, code, display in _PARTICIPANTS:
        for rep in pv1.repetitions(field):
            if person := xcn(rep, pv1.seps, facility):
                out.append({"type": [{"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}],
                            "individual": person})
    return out


def encounter(pv1: Segment, ctx: Context, patient_ref: str, status: Callable[[str | None], str],
              diagnoses: list[dict[str, Any]] | None = None, transfer: bool = False) -> dict[str, Any]:
    """PV1 -> FHIR Encounter (plain dict). ``status`` picks the status from the discharge time (PV1-45);
    ``transfer`` lists the prior location (PV1-6) as completed; ``diagnoses`` are Encounter.diagnosis entries."""
    seps = pv1.seps
    visit_number = part(first_repetition(pv1, 19), 1, seps)
    start, end = ts_field(pv1, 44), ts_field(pv1, 45)
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id(ctx.facility, visit_number, ctx.header.control_id),
        "status": status(end),
        "class": dict(MAPS.encounter_class(part(first_repetition(pv1, 2), 1, seps))),
        "subject": {"reference": patient_ref},
        "serviceProvider": service_provider(ctx.facility),
    }
    if visit_number:
        resource["identifier"] = [{"system": visit_system(ctx.facility), "value": visit_number}]
    if start or end:
        resource["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    locations = []
    if transfer and (prior := pl_text(first_repetition(pv1, 6), seps)):
        locations.append({"location": {"display": prior}, "status": "completed"})
    if where := pl_text(first_repetition(pv1, 3), seps):
        locations.append({"location": {"display": where}, **({"status": "active"} if transfer else {})})
    if locations:
        resource["location"] = locations
    if participants := _participants(pv1, ctx.facility):
        resource["participant"] = participants
    hospitalization = {}
    for key, field, table in (("admitSource", 14, "0023"), ("dischargeDisposition", 36, "0112")):
        if code := part(first_repetition(pv1, field), 1, seps):  # codes as sent, in their HL7 v2 table
            hospitalization[key] = {"coding": [{"system": f"{V2_TABLE}{table}", "code": code}]}
    if hospitalization:
        resource["hospitalization"] = hospitalization
    if diagnoses:
        resource["diagnosis"] = diagnoses
    return resource
