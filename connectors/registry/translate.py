"""One registry row (one dose) -> a Patient and an Immunization event, as plain dicts (the bulk path: the
unit tests validate what it builds with the fhir.resources R4B models, as for HL7 v2).

Identifiers: a 12-digit ``so_cccd`` is the CCCD, a 9-digit one the old ID card; anything else is a typo the
MPI must not trust, so it is left out (and counted by the caller through ``Translation.dropped``). A
15-character ``so_bhyt`` is the card, whose last 10 digits are the lifelong BHXH number; a bare 10-digit
value is that number. Names are NFC, family name first, the rest given (middle first, as spoken).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

from hub.envelope import (
    SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, VN_FHIR_BASE, Envelope, Identifier, RawCoordinates, Source,
    Subject, event_id, uuid5,
)
from connectors.registry.read import COLUMNS
from hub.errors import TranslateError

SOURCE_SYSTEM = "registry"
VACCINE_SYSTEM = f"{VN_FHIR_BASE}/CodeSystem/registry-vaccine"
WARD_EXTENSION = f"{VN_FHIR_BASE}/StructureDefinition/ward-code"
FACILITY_SYSTEM = f"{VN_FHIR_BASE}/sid/facility"
_SEX = {"nam": "male", "1": "male", "nữ": "female", "nu": "female", "2": "female", "khác": "other", "khac": "other",
        "3": "other"}
_DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2}))?$")
_YMD = re.compile(r"(\d{4})-(\d{2})-(\d{2})$")
_BHYT_CARD = re.compile(r"[A-Z]{2}\d{13}$")


@dataclass(frozen=True, slots=True)
class Translation:
    events: list[Envelope]
    dropped: tuple[str, ...]  # columns whose value was not usable (e.g. "so_cccd"), for the import summary


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


@lru_cache(maxsize=65536)  # a city's birth dates and vaccination days repeat: parse each text once
def birth_date(text: str) -> str | None:
    """``dd/mm/yyyy`` or ``yyyy-mm-dd`` -> FHIR date; ``00`` day/month -> the precision that is known."""
    if not text:
        return None
    if m := _YMD.match(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif (m := _DMY.match(text)) and not m[4]:
        day, month, year = int(m[1]), int(m[2]), int(m[3])
    else:
        raise TranslateError("ngay_sinh: not dd/mm/yyyy or yyyy-mm-dd")
    if month == 0:
        if day:
            raise TranslateError("ngay_sinh: a day without a month")
        return f"{year:04d}"
    if day == 0:
        _checked(year, month, 1, "ngay_sinh")
        return f"{year:04d}-{month:02d}"
    return _checked(year, month, day, "ngay_sinh").isoformat()


@lru_cache(maxsize=65536)
def given_at(text: str) -> str:
    """``dd/mm/yyyy[ HH:MM]`` -> FHIR date or dateTime at +07:00 (the registry's local time)."""
    m = _DMY.match(text)
    if not m:
        raise TranslateError("ngay_tiem: not dd/mm/yyyy [HH:MM]")
    when = _checked(int(m[3]), int(m[2]), int(m[1]), "ngay_tiem").isoformat()
    if m[4] is None:
        return when
    hour, minute = int(m[4]), int(m[5])
    if hour > 23 or minute > 59:
        raise TranslateError("ngay_tiem: impossible time")
    return f"{when}T{hour:02d}:{minute:02d}:00+07:00"


def _checked(year: int, month: int, day: int, column: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise TranslateError(f"{column}: impossible date") from None


def _name(text: str) -> dict[str, Any] | None:
    words = _nfc(text).split()
    if not words:
        return None
    name: dict[str, Any] = {"use": "official", "text": " ".join(words), "family": words[0]}
    if len(words) > 1:
        name["given"] = words[1:]
    return name


def _identifiers(personal: str, card: str) -> tuple[list[dict[str, str]], tuple[str, ...]]:
    out: list[dict[str, str]] = []
    dropped: tuple[str, ...] = ()
    personal = personal.replace(" ", "")
    if personal:
        if personal.isdigit() and len(personal) == 12:
            out.append({"system": SYSTEM_CCCD, "value": personal})
        elif personal.isdigit() and len(personal) == 9:
            out.append({"system": SYSTEM_OLD_ID, "value": personal})
        else:
            dropped = ("so_cccd",)
    card = card.replace(" ", "").upper()
    if card:
        if _BHYT_CARD.match(card):
            out += [{"system": SYSTEM_BHYT, "value": card}, {"system": SYSTEM_BHXH, "value": card[-10:]}]
        elif card.isdigit() and len(card) == 10:
            out.append({"system": SYSTEM_BHXH, "value": card})
        else:
            dropped += ("so_bhyt",)
    return out, dropped


# Positions of the columns in a row's values (read.COLUMNS order).
(_RID, _NAME, _DOB, _GENDER, _CCCD, _BHYT, _PHONE, _ADDRESS, _WARD, _VACCINE, _VACCINE_NAME, _LOT, _DOSE, _GIVEN,
 _SITE) = range(15)


class Mapped(NamedTuple):
    """The FHIR resources of one row and what the envelope needs besides (the bulk path serialises these
    directly; ``translate_row`` wraps them in Envelopes)."""

    patient: dict[str, Any]
    immunization: dict[str, Any]
    identifiers: list[dict[str, str]]  # the patient's identifiers, also the subject's
    name: dict[str, Any] | None
    gender: str | None
    birth_date: str | None
    occurred: str
    dropped: tuple[str, ...]


def map_values(values: Sequence[str]) -> Mapped:
    """One row's 15 values (COLUMNS order) -> its Patient and Immunization; raises TranslateError naming the
    column when the row cannot be mapped. Builds fresh dicts for every row (callers may keep and change them)."""
    rid, site, vaccine = values[_RID], values[_SITE], values[_VACCINE]
    if not site:
        raise TranslateError("ma_co_so: vaccination site missing")
    if not vaccine:
        raise TranslateError("ma_vaccine: vaccine code missing")
    occurred = given_at(values[_GIVEN])
    dob = birth_date(values[_DOB])
    dose = values[_DOSE]
    dose_number = int(dose) if dose and dose.isdigit() else 0
    if dose and dose_number < 1:
        raise TranslateError("mui_thu: dose number is not a positive integer")
    identifiers, dropped = _identifiers(values[_CCCD], values[_BHYT])
    patient_id = uuid5(f"Patient|{SOURCE_SYSTEM}|{site}|{rid}")
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if identifiers:
        patient["identifier"] = identifiers
    name = _name(values[_NAME])
    if name:
        patient["name"] = [name]
    sex = values[_GENDER]
    gender = _SEX.get(sex.lower(), "unknown") if sex else None
    if gender:
        patient["gender"] = gender
    if dob:
        patient["birthDate"] = dob
    if phone := values[_PHONE]:
        patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    address_text, ward = values[_ADDRESS], values[_WARD]
    if address_text or ward:
        address: dict[str, Any] = {"use": "home", "country": "VN"}
        if address_text:
            address["text"] = _nfc(address_text)
        if ward:
            address["extension"] = [{"url": WARD_EXTENSION, "valueCode": ward}]
        patient["address"] = [address]

    vaccine_name = values[_VACCINE_NAME]
    immunization: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": uuid5(f"Immunization|{SOURCE_SYSTEM}|{site}|{rid}"),
        "status": "completed",
        "vaccineCode": ({"coding": [{"system": VACCINE_SYSTEM, "code": vaccine, "display": vaccine_name}],
                         "text": vaccine_name} if vaccine_name else
                        {"coding": [{"system": VACCINE_SYSTEM, "code": vaccine}]}),
        "patient": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": occurred,
        "primarySource": True,
        "performer": [{"actor": {"identifier": {"system": FACILITY_SYSTEM, "value": site}, "display": site}}],
    }
    if lot := values[_LOT]:
        immunization["lotNumber"] = lot
    if dose:
        immunization["protocolApplied"] = [{"doseNumberPositiveInt": dose_number}]
    return Mapped(patient, immunization, identifiers, name, gender, dob, occurred, dropped)


def translate_row(fields: dict[str, str], *, received_at: str, raw: RawCoordinates | None = None) -> Translation:
    """The events of one row; raises TranslateError naming the column when the row cannot be mapped.

    ``raw``: the coordinates of the row's raw record, put on every event's source (an importer that learns
    them only after writing passes a placeholder and fills it in the serialised event).
    """
    m = map_values([fields[column] for column in COLUMNS])
    rid, site = fields["record_id"], fields["ma_co_so"]
    name = m.name
    subject = Subject(identifiers=tuple(Identifier(i["system"], i["value"]) for i in m.identifiers),
                      family=name["family"] if name else None, given=tuple(name.get("given", ())) if name else (),
                      birth_date=m.birth_date, sex=m.gender)
    source = Source(SOURCE_SYSTEM, site, rid, raw=raw)
    events = [
        Envelope(event_id(SOURCE_SYSTEM, site, rid, "Patient"), "patient.updated", m.occurred, received_at, source,
                 subject, m.patient),
        Envelope(event_id(SOURCE_SYSTEM, site, rid, "Immunization"), "immunization.recorded", m.occurred,
                 received_at, source, subject, m.immunization),
    ]
    return Translation(events, m.dropped)
