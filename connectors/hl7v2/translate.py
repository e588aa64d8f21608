"""HL7 v2 message -> canonical events: the pure step of the ``translator`` role.

``translate`` decodes, parses and reads MSH, then hands the message to the one translator registered for
its (message code, trigger event) in ``TRANSLATORS`` (FHIR-Converter style: one root per trigger event,
helpers per data type in ``datatypes``, code maps as data in ``maps.json``, one id function per resource).

The payloads are plain dicts, built directly. fhir.resources models are about 100x slower to build and dump
than dicts (shared/reference/kafka-local.md: ~950 msg/s against hundreds of thousands), so they stay off this
per-message path; the unit tests validate every payload they produce with the R4B models instead.

Translation is deterministic: no clock, no randomness. Resource ids are uuid5 of the facility and the
source's own keys (never the raw id numbers), event ids come from ``envelope.event_id``, so a replayed
message gives byte-identical events (ARCHITECTURE invariant 3).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.hl7v2.datatypes import birth_date, cx, first_repetition, part, pl_text, ts_field, xad, xpn, xtn
from connectors.hl7v2.maps import MAPS
from connectors.hl7v2.parse import Header, Message, Segment, decode, parse, read_header
from hub.envelope import (
    EVENT_ID_NAMESPACE, SYSTEM_BHYT, VN_FHIR_BASE, Envelope, Identifier, RawCoordinates, Source, Subject,
    event_id,
)
from hub.errors import TranslateError, UnsupportedMessage

SOURCE_SYSTEM = "hl7v2"
# The 10-digit lifelong social-insurance number: the last 10 characters of a BHYT card.
SYSTEM_BHXH = f"{VN_FHIR_BASE}/sid/bhxh_number"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def visit_system(facility: str) -> str:
    """Visit numbers (PV1-19) are only unique inside their facility, like MRNs."""
    return f"{VN_FHIR_BASE}/sid/visit/{facility}"


# --- deterministic ids, one per resource type --------------------------------------------------------------

def patient_id(facility: str, value: str, type_code: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"Patient|{facility}|{type_code}|{value}"))


def encounter_id(facility: str, visit_number: str, control_id: str) -> str:
    key = f"visit|{visit_number}" if visit_number else f"message|{control_id}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"Encounter|{facility}|{key}"))


# --- the message context ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Context:
    """What every translator needs from MSH/EVN and the caller, read once per message."""

    message: Message
    header: Header
    facility: str
    occurred_at: str
    recorded_at: str
    source: Source


def _context(message: Message, header: Header, received_at: str, raw_coords: RawCoordinates | None) -> Context:
    if not header.sending_facility:
        raise TranslateError("MSH-4: sending facility missing")
    if not header.control_id:
        raise TranslateError("MSH-10: message control id missing")
    evn = message.first("EVN")
    occurred_at = (ts_field(evn, 2) if evn is not None else None) or ts_field(message.msh, 7)
    if occurred_at is None:
        raise TranslateError("MSH-7: message date/time missing")
    source = Source(SOURCE_SYSTEM, header.sending_facility, header.control_id,
                    application=header.sending_application or None, raw=raw_coords)
    return Context(message, header, header.sending_facility, occurred_at, received_at, source)


def _envelope(ctx: Context, event_type: str, resource: dict[str, Any], subject: Subject) -> Envelope:
    return Envelope(
        event_id=event_id(SOURCE_SYSTEM, ctx.facility, ctx.header.control_id, resource["resourceType"]),
        type=event_type,
        occurred_at=ctx.occurred_at,
        recorded_at=ctx.recorded_at,
        source=ctx.source,
        subject=subject,
        payload=resource,
    )


# --- resources -------------------------------------------------------------------------------------------

def _identifiers(pid: Segment, facility: str) -> tuple[list[dict[str, str]], str]:
    """Every PID-3 repetition as an Identifier, and the patient id (from the first one)."""
    seps = pid.seps
    identifiers: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    resource_id = ""

    def add(system: str, value: str) -> None:
        if (system, value) not in seen:
            seen.add((system, value))
            identifiers.append({"system": system, "value": value})

    for rep in pid.repetitions(3):
        ident = cx(rep, seps)
        if not ident.value:
            continue
        if not resource_id:
            resource_id = patient_id(facility, ident.value, ident.type_code)
        system = MAPS.identifier_system(ident.type_code, ident.assigner or facility)
        add(system, ident.value)
        # BHYT cards are 15 chars ending in the lifelong BHXH number; cards since 2021 show only those 10.
        if system == SYSTEM_BHYT and len(ident.value) in (10, 15) and ident.value[-10:].isdigit():
            add(SYSTEM_BHXH, ident.value[-10:])
    if not resource_id:
        raise TranslateError("PID-3: no patient identifier")
    return identifiers, resource_id


def patient(pid: Segment, facility: str) -> tuple[dict[str, Any], Subject]:
    """PID -> FHIR Patient (plain dict) and the envelope subject the MPI reads."""
    seps = pid.seps
    identifiers, resource_id = _identifiers(pid, facility)
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, "identifier": identifiers}
    names = [n for n in (xpn(rep, seps) for rep in pid.repetitions(5)) if n]
    if names:
        resource["name"] = names
    sex_code = part(first_repetition(pid, 8), 1, seps)
    gender = MAPS.administrative_sex(sex_code) if sex_code else None
    if gender:
        resource["gender"] = gender
    dob = birth_date(part(first_repetition(pid, 7), 1, seps), "PID-7")
    if dob:
        resource["birthDate"] = dob
    addresses = [a for a in (xad(rep, seps) for rep in pid.repetitions(11)) if a]
    if addresses:
        resource["address"] = addresses
    telecom = [t for t in (xtn(rep, seps, "home") for rep in pid.repetitions(13)) if t]
    telecom += [t for t in (xtn(rep, seps, "work") for rep in pid.repetitions(14)) if t]
    if telecom:
        resource["telecom"] = telecom
    first = names[0] if names else {}
    subject = Subject(
        identifiers=tuple(Identifier(i["system"], i["value"]) for i in identifiers),
        family=first.get("family"),
        given=tuple(first.get("given", ())),
        birth_date=dob,
        sex=gender,
    )
    return resource, subject


def _service_provider(facility: str) -> dict[str, Any]:
    if _FHIR_ID.fullmatch(facility):
        return {"reference": f"Organization/{facility}", "display": facility}
    return {"identifier": {"system": f"{VN_FHIR_BASE}/sid/facility", "value": facility}, "display": facility}


def encounter(pv1: Segment, ctx: Context, patient_ref: str, status: Callable[[str | None], str]) -> dict[str, Any]:
    """PV1 -> FHIR Encounter (plain dict). ``status`` picks the status from the discharge time (PV1-45)."""
    seps = pv1.seps
    visit_number = part(first_repetition(pv1, 19), 1, seps)
    start, end = ts_field(pv1, 44), ts_field(pv1, 45)
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id(ctx.facility, visit_number, ctx.header.control_id),
        "status": status(end),
        "class": dict(MAPS.encounter_class(part(first_repetition(pv1, 2), 1, seps))),
        "subject": {"reference": patient_ref},
        "serviceProvider": _service_provider(ctx.facility),
    }
    if visit_number:
        resource["identifier"] = [{"system": visit_system(ctx.facility), "value": visit_number}]
    if start or end:
        resource["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if where := pl_text(first_repetition(pv1, 3), seps):
        resource["location"] = [{"location": {"display": where}}]
    return resource


# --- translators, one per trigger event -----------------------------------------------------------------

def _adt(ctx: Context, status: Callable[[str | None], str]) -> list[Envelope]:
    pid = ctx.message.first("PID")
    if pid is None:
        raise TranslateError("PID segment missing")
    patient_resource, subject = patient(pid, ctx.facility)
    events = [_envelope(ctx, "patient.updated", patient_resource, subject)]
    pv1 = ctx.message.first("PV1")
    if pv1 is not None:
        resource = encounter(pv1, ctx, f"Patient/{patient_resource['id']}", status)
        events.append(_envelope(ctx, "encounter.recorded", resource, subject))
    return events


def adt_a01(ctx: Context) -> list[Envelope]:
    """Admit: the patient is in hospital."""
    return _adt(ctx, lambda _end: "in-progress")


def adt_a04(ctx: Context) -> list[Envelope]:
    """Register (outpatient/emergency): the patient has arrived."""
    return _adt(ctx, lambda _end: "arrived")


def adt_a08(ctx: Context) -> list[Envelope]:
    """Update patient information: finished once a discharge time (PV1-45) is sent."""
    return _adt(ctx, lambda end: "finished" if end else "in-progress")


Translator = Callable[[Context], list[Envelope]]

TRANSLATORS: dict[tuple[str, str], Translator] = {
    ("ADT", "A01"): adt_a01,
    ("ADT", "A04"): adt_a04,
    ("ADT", "A08"): adt_a08,
}


def translate(raw: bytes, *, received_at: str, charset: str = "utf-8",
              raw_coords: RawCoordinates | None = None) -> list[Envelope]:
    """One HL7 v2 message (exact bytes) -> its canonical events, in order.

    Raises ParseError (undecodable or not HL7), UnsupportedMessage (no translator for the type) or
    TranslateError (a required part is missing or invalid; the reason names the field).
    """
    message = parse(decode(raw, charset))
    header = read_header(message)
    trigger = header.trigger
    if not trigger and (evn := message.first("EVN")) is not None:
        trigger = evn.component(1, 1)  # v2.2/v2.3 senders may put the trigger only in EVN-1
    translator = TRANSLATORS.get((header.message_code, trigger))
    if translator is None:
        raise UnsupportedMessage(f"unsupported message type {header.message_code}^{trigger}")
    return translator(_context(message, header, received_at, raw_coords))
