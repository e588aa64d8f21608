"""One canonical event -> the warehouse rows it stands for. Pure: no I/O, unit-tested without services.

What is kept is decided here, field by field: codes, code-system displays, statuses, times, numbers and
units. Never names, identifiers (CCCD, BHYT, MRN, visit numbers), addresses below the ward, phone
numbers, practitioner names or free clinical text (notes, dosage text, string results, Condition.text).

Times: FHIR dateTimes become aware datetimes; partial dates (YYYY, YYYY-MM, YYYY-MM-DD) and times without
an offset are read in Asia/Ho_Chi_Minh (+07:00), as everywhere in the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hub.envelope import Envelope
from hub.identity.events import MERGED, UNMERGED, merge_link
from hub.warehouse import schema
from hub.warehouse.errors import MappingError
from hub.warehouse.schema import Table

VN_TZ = timezone(timedelta(hours=7))
# Event types the warehouse does not model (allergies, orders, documents, appointments...): skipped, not
# dead-lettered; they are not errors, just not warehouse material.
FACT_EVENT_TYPES = frozenset({"encounter.recorded", "condition.recorded", "immunization.recorded",
                              "observation.recorded", "medication.recorded", "procedure.recorded"})
PATIENT_EVENT_TYPES = frozenset({"patient.updated", "patient.merged"})
MERGE_EVENT_TYPE = MERGED
UNMERGE_EVENT_TYPE = UNMERGED
WARD_PREFIXES = ("phường ", "xã ", "thị trấn ", "đặc khu ")
MEDICATION_KINDS = {"MedicationRequest": "request", "MedicationDispense": "dispense",
                    "MedicationAdministration": "administration", "MedicationStatement": "statement"}


@dataclass(frozen=True, slots=True)
class Rows:
    """What one event writes. Row tuples are in their table's column order (hub/warehouse/schema.py)."""

    citizen_id: str
    facility_code: str
    fact: tuple[Table, tuple[Any, ...]] | None = None
    citizen: tuple[Any, ...] | None = None  # a dim_citizen row (Patient events)
    merges: tuple[tuple[Any, ...], ...] = ()  # citizen_merge rows (citizen.merged)
    unmerges: tuple[tuple[Any, ...], ...] = ()  # (restored, survivor, event id, occurred at) (citizen.unmerged)


def map_event(event: Envelope) -> Rows | None:
    """The rows of ``event``; None when its type is not warehouse material; MappingError when it cannot map."""
    kind = event.type
    links = kind in (MERGE_EVENT_TYPE, UNMERGE_EVENT_TYPE)
    if kind not in FACT_EVENT_TYPES and kind not in PATIENT_EVENT_TYPES and not links:
        return None
    cid = event.citizen_id
    if not cid:
        raise MappingError(f"{kind} without a citizen_id")
    facility = event.source.facility
    if not facility and not links:  # a steward's merge decision comes from no facility
        raise MappingError(f"{kind} without a source facility")
    payload = event.payload
    if not isinstance(payload, dict):
        raise MappingError(f"{kind} payload is not a FHIR resource")
    occurred = instant(event.occurred_at)
    if occurred is None:
        raise MappingError(f"{kind} without occurred_at")
    if kind in PATIENT_EVENT_TYPES:
        return Rows(cid, facility, citizen=_citizen(cid, event.event_id, occurred, payload))
    if kind == MERGE_EVENT_TYPE:
        return Rows(cid, facility, merges=_merges(cid, event.event_id, occurred, payload))
    if kind == UNMERGE_EVENT_TYPE:
        try:
            link = merge_link(event)
        except ValueError as exc:
            raise MappingError(str(exc)) from None
        return Rows(cid, facility, unmerges=((link.other, link.survivor, event.event_id, occurred),))
    rtype = payload.get("resourceType")
    mapper = _FACT_MAPPERS.get(rtype)  # type: ignore[arg-type]
    if mapper is None:
        raise MappingError(f"{kind} carries a {rtype!r} resource, which the warehouse does not map")
    rid = payload.get("id")
    if not rid or not isinstance(rid, str):
        raise MappingError(f"{kind} {rtype} without a resource id")
    table, own = mapper(payload)
    # A fact is filed under the merged-away member its source record belongs to, if the MPI named one: the
    # writer moves it to the survivor (citizen_merge) and keeps the member as its source, so an unmerge
    # gives it back, as the record does.
    owner = event.member_id or cid
    common = (rid, event.event_id, occurred, owner, facility,
              _ref_id(payload.get("encounter") or payload.get("context")), own.pop("status", payload.get("status")),
              list(event.sensitivity))
    return Rows(owner, facility, fact=(table, common + tuple(own[c] for c in table.columns[len(common):])))


# ---------------------------------------------------------------- the dimension and merges

def _citizen(cid: str, event_id: str, occurred: datetime, patient: dict[str, Any]) -> tuple[Any, ...]:
    if patient.get("resourceType") != "Patient":
        raise MappingError(f"a patient event carries a {patient.get('resourceType')!r} resource")
    birth = patient.get("birthDate")
    year = int(birth[:4]) if isinstance(birth, str) and birth[:4].isdigit() else None
    ward, province = _ward(patient.get("address") or [])
    return (cid, year, patient.get("gender"), ward, province, event_id, occurred)


def _ward(addresses: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The home address's ward and province; the street line is never read into the warehouse."""
    if not addresses:
        return None, None
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0])
    ward = home.get("district")
    if not ward:
        ward = next((line for line in home.get("line", ())[1:] if line.lower().startswith(WARD_PREFIXES)), None)
    return ward, home.get("state") or home.get("city")


def _merges(survivor: str, event_id: str, occurred: datetime, patient: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    """citizen.merged: envelope.citizen_id survives; each ``link`` of type ``replaces`` names a retired citizen
    as ``Patient/<citizen_id>``."""
    retired = []
    for link in patient.get("link") or ():
        if link.get("type") != "replaces":
            continue
        rid = _ref_id(link.get("other"))
        if rid and rid != survivor:
            retired.append((rid, survivor, event_id, occurred))
    if not retired:
        raise MappingError("citizen.merged names no retired citizen (link type 'replaces')")
    return tuple(retired)


# ---------------------------------------------------------------- facts, one mapper per resource type

def _encounter(r: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    klass = r.get("class") or {}
    period = r.get("period") or {}
    return schema.ENCOUNTER, {"class_code": klass.get("code"), "period_start": instant(period.get("start")),
                              "period_end": instant(period.get("end"))}


def _condition(r: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    system, code, display = _coded(r.get("code"))
    return schema.DIAGNOSIS, {
        "status": _code(r.get("clinicalStatus")), "code_system": system, "code": code, "display": display,
        "category": _code(_first(r.get("category"))), "verification": _code(r.get("verificationStatus")),
        "onset_at": instant(r.get("onsetDateTime") or (r.get("onsetPeriod") or {}).get("start")),
        "recorded_at": instant(r.get("recordedDate")),
    }


def _immunization(r: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    system, code, display = _coded(r.get("vaccineCode"))
    protocol = _first(r.get("protocolApplied")) or {}
    dose = protocol.get("doseNumberPositiveInt", protocol.get("doseNumberString"))
    return schema.IMMUNIZATION, {
        "code_system": system, "code": code, "display": display, "occurred_at": instant(r.get("occurrenceDateTime")),
        "dose_number": None if dose is None else str(dose), "route": _code(r.get("route")),
        "status_reason": _code(r.get("statusReason")), "primary_source": r.get("primarySource"),
    }


def _observation(r: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    system, code, display = _coded(r.get("code"))
    value_type, num, unit, comparator, value_code = _value(r)
    return schema.OBSERVATION, {
        "code_system": system, "code": code, "display": display, "category": _code(_first(r.get("category"))),
        "effective_at": instant(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start")
                                or r.get("effectiveInstant")),
        "value_type": value_type, "value_num": num, "value_unit": unit, "value_comparator": comparator,
        "value_code": value_code, "interpretation": _code(_first(r.get("interpretation"))),
    }


def _value(r: dict[str, Any]) -> tuple[str | None, float | None, str | None, str | None, str | None]:
    """(type, number, unit, comparator, code). String values are typed but not kept: they are free text."""
    if "valueQuantity" in r:
        q = r["valueQuantity"]
        num = q.get("value")
        return "quantity", None if num is None else float(num), q.get("unit") or q.get("code"), q.get("comparator"), None
    if "valueCodeableConcept" in r:
        return "codeable", None, None, None, _code(r["valueCodeableConcept"])
    if "valueBoolean" in r:
        return "boolean", float(bool(r["valueBoolean"])), None, None, None
    if "valueInteger" in r:
        return "integer", float(r["valueInteger"]), None, None, None
    for key in ("valueRange", "valueRatio", "valueString", "valueDateTime", "valueTime", "valuePeriod",
                "valueSampledData"):
        if key in r:
            return key[len("value"):].lower(), None, None, None, None
    return None, None, None, None, None


def _medication(r: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    kind = MEDICATION_KINDS[r["resourceType"]]
    system, code, display = _coded(r.get("medicationCodeableConcept"))
    when = (r.get("authoredOn") or r.get("whenHandedOver") or r.get("whenPrepared") or r.get("effectiveDateTime")
            or (r.get("effectivePeriod") or {}).get("start"))
    quantity = r.get("quantity") or (r.get("dispenseRequest") or {}).get("quantity") or {}
    value = quantity.get("value")
    return schema.MEDICATION, {
        "kind": kind, "code_system": system, "code": code, "display": display, "intent": r.get("intent"),
        "occurred_at": instant(when), "quantity_value": None if value is None else float(value),
        "quantity_unit": quantity.get("unit") or quantity.get("code"),
    }


def _procedure(r: dict[str, Any]) -> tuple[Table, dict[str, Any]]:
    system, code, display = _coded(r.get("code"))
    return schema.PROCEDURE, {"code_system": system, "code": code, "display": display, "performed_at": instant(
        r.get("performedDateTime") or (r.get("performedPeriod") or {}).get("start"))}


_FACT_MAPPERS = {"Encounter": _encounter, "Condition": _condition, "Immunization": _immunization,
                 "Observation": _observation, "Procedure": _procedure,
                 **{name: _medication for name in MEDICATION_KINDS}}


# ---------------------------------------------------------------- FHIR data types

def _first(items: Any) -> Any:
    return items[0] if isinstance(items, list) and items else None


def _coded(concept: Any) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of the first coding with a code. The concept's ``text`` is not read: it may be
    free text typed by a clinician."""
    if not isinstance(concept, dict):
        return None, None, None
    for coding in concept.get("coding") or ():
        if coding.get("code"):
            return coding.get("system"), coding["code"], coding.get("display")
    return None, None, None


def _code(concept: Any) -> str | None:
    return _coded(concept)[1]


def _ref_id(reference: Any) -> str | None:
    """``Encounter/abc`` -> ``abc``."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str) or not ref:
        return None
    return ref.rsplit("/", 1)[-1]


def instant(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (partial dates: the start of the period, at +07:00)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingError(f"not a FHIR dateTime: {type(value).__name__}")
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=VN_TZ)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=VN_TZ)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:  # the value itself stays out of the reason: reasons are logged
        raise MappingError("not a FHIR dateTime") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=VN_TZ)
