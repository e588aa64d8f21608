"""MDM TXA (+ OBX content) -> DocumentReference; SIU SCH (+ TQ1, AIS, AIL, AIP) -> Appointment."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

from connectors.hl7v2.context import Context, PatientRef
from connectors.hl7v2.datatypes import (
    HL7_NULL, cwe_field, cwe_list, ei, first_repetition, number, part, pl_text, to_iso, ts_field, xcn_field,
)
from connectors.hl7v2.ids import appointment_id, document_id
from connectors.hl7v2.maps import MAPS
from connectors.hl7v2.orders import order_system
from connectors.hl7v2.parse import Segment, unescape
from hub.envelope import VN_FHIR_BASE
from hub.errors import TranslateError

TEXT_TYPES = frozenset({"TX", "FT", "ST", "CF"})
_MINUTES = {"MIN": 1, "M": 1, "MINUTES": 1, "H": 60, "HR": 60, "HOUR": 60, "HOURS": 60, "S": 1 / 60, "SEC": 1 / 60}


def document_system(namespace: str) -> str:
    return f"{VN_FHIR_BASE}/sid/document/{namespace}"


def _instant(value: str | None) -> str | None:
    """FHIR instant needs a time and an offset; a date-only value is left out rather than invented."""
    return value if value and "T" in value else None


def _attachment(content: list[Segment]) -> dict[str, Any]:
    """OBX-5 of the document: text types joined as UTF-8 text, or an ED (type^subtype^encoding^data)."""
    lines: list[str] = []
    for obx in content:
        seps = obx.seps
        value_type = part(first_repetition(obx, 2), 1, seps).upper()
        if value_type == "ED":
            c = obx[5].split(seps.repetition, 1)[0].split(seps.component)
            kind, subtype, encoding, data = (part(c, i, seps) for i in (2, 3, 4, 5))
            content_type = f"{kind}/{subtype}".lower() if kind and subtype else "application/octet-stream"
            if encoding.upper() == "BASE64":
                try:
                    base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise TranslateError("OBX-5: ED data is not valid Base64") from exc
                payload = data
            elif encoding.upper() == "HEX":
                try:
                    payload = base64.b64encode(bytes.fromhex(data)).decode()
                except ValueError as exc:
                    raise TranslateError("OBX-5: ED data is not valid hex") from exc
            else:
                payload = base64.b64encode(data.encode("utf-8")).decode()
            return {"contentType": content_type, "data": payload}
        if value_type in TEXT_TYPES or not value_type:
            lines += [unescape(rep, seps) for rep in obx.repetitions(5) if rep != HL7_NULL]
    attachment: dict[str, Any] = {}
    if lines:
        attachment = {"contentType": "text/plain; charset=utf-8",
                      "data": base64.b64encode("\n".join(lines).encode("utf-8")).decode()}
    return attachment


def document_reference(txa: Segment, content: list[Segment], ctx: Context, ref: PatientRef,
                       relation: str | None = None, status: str | None = None) -> dict[str, Any]:
    """TXA -> DocumentReference: type TXA-2, masterIdentifier TXA-12, docStatus TXA-17, status TXA-19 (or
    ``status``), date TXA-6 (else TXA-4), authors TXA-9/TXA-5, content from the OBX segments. ``relation``
    (``appends`` for an addendum, ``replaces`` for a replacement) points at the parent document TXA-13."""
    seps = txa.seps
    kind = cwe_field(txa, 2)
    if kind is None:
        raise TranslateError("TXA-2: document type missing")
    number_, namespace = ei(txa, 12)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": document_id(ctx.facility, f"document|{namespace or ctx.facility}|{number_}" if number_
                          else f"message|{ctx.header.control_id}"),
    }
    if number_:
        resource["masterIdentifier"] = {"system": document_system(namespace or ctx.facility), "value": number_}
    resource["status"] = status or MAPS.document_availability(part(first_repetition(txa, 19), 1, seps))
    if doc_status := MAPS.document_status(part(first_repetition(txa, 17), 1, seps)):
        resource["docStatus"] = doc_status
    resource["type"] = kind
    resource["subject"] = {"reference": ref.reference}
    if date := _instant(ts_field(txa, 6)) or _instant(ts_field(txa, 4)):
        resource["date"] = date
    authors = [a for a in (xcn_field(txa, 9, ctx.facility), xcn_field(txa, 5, ctx.facility)) if a]
    if authors:
        resource["author"] = authors[:1] if len(authors) == 2 and authors[0] == authors[1] else authors
    if authenticator := xcn_field(txa, 10, ctx.facility):
        resource["authenticator"] = authenticator
    attachment = _attachment(content)
    title = kind.get("text")
    if title:
        attachment["title"] = title
    if created := ts_field(txa, 6) or ts_field(txa, 4):
        attachment["creation"] = created
    if not attachment:
        raise TranslateError("TXA/OBX: the document has neither content nor a title")
    resource["content"] = [{"attachment": attachment}]
    parent, parent_ns = ei(txa, 13)
    if relation and parent:
        resource["relatesTo"] = [{"code": relation, "target": {
            "reference": "DocumentReference/" + document_id(ctx.facility, f"document|{parent_ns or ctx.facility}|{parent}"),
            "identifier": {"system": document_system(parent_ns or ctx.facility), "value": parent}}}]
    if ref.encounter:
        resource["context"] = {"encounter": [{"reference": ref.encounter}]}
    return resource


# --- SIU^S12 -> Appointment ---------------------------------------------------------------------------------

def _minutes(amount: str, unit: str) -> int | None:
    value = number(amount)
    factor = _MINUTES.get(unit.upper() or "MIN")
    if value is None or factor is None or value <= 0:
        return None
    return int(round(value * factor))


def appointment(sch: Segment, ctx: Context, ref: PatientRef, resources: list[Segment],
                status: str | None = None) -> dict[str, Any]:
    """SCH (+ TQ1, AIS, AIG, AIL, AIP) -> Appointment. The start comes from TQ1-7, SCH-11.4 (v2.3-2.5 timing)
    or AIS-4; the end from TQ1-8, SCH-11.5, or start + duration (SCH-9/10, AIS-7/8). A booked appointment
    without a start is a TranslateError (FHIR app-3). ``status`` overrides SCH-25 (the trigger says it:
    a cancellation is cancelled whatever SCH-25 holds)."""
    seps = sch.seps
    placer, placer_ns = ei(sch, 1)
    filler, filler_ns = ei(sch, 2)
    if filler:
        key = f"filler|{filler_ns or ctx.facility}|{filler}"
    elif placer:
        key = f"placer|{placer_ns or ctx.facility}|{placer}"
    else:
        raise TranslateError("SCH-1/SCH-2: no appointment id")
    resource: dict[str, Any] = {"resourceType": "Appointment", "id": appointment_id(ctx.facility, key)}
    identifiers = [{"system": order_system(ns or ctx.facility) + "/appointment", "value": v}
                   for v, ns in ((placer, placer_ns), (filler, filler_ns)) if v]
    resource["identifier"] = identifiers
    status = status or MAPS.appointment_status(part(first_repetition(sch, 25), 1, seps))
    resource["status"] = status
    if kind := cwe_field(sch, 8):
        resource["appointmentType"] = kind
    if reasons := cwe_list(sch, 7):
        resource["reasonCode"] = reasons
    by_name: dict[str, list[Segment]] = {}
    for seg in resources:
        by_name.setdefault(seg.name, []).append(seg)
    tq1 = by_name.get("TQ1", [None])[0]
    ais = by_name.get("AIS", [None])[0]
    timing = first_repetition(sch, 11)
    start = (ts_field(tq1, 7) if tq1 is not None else None) or (
        to_iso(part(timing, 4, seps), "SCH-11") if timing else None) or (ts_field(ais, 4) if ais is not None else None)
    end = (ts_field(tq1, 8) if tq1 is not None else None) or (
        to_iso(part(timing, 5, seps), "SCH-11") if timing else None)
    minutes = _minutes(part(first_repetition(sch, 9), 1, seps), part(first_repetition(sch, 10), 1, seps))
    if minutes is None and ais is not None:
        minutes = _minutes(part(first_repetition(ais, 7), 1, seps), part(first_repetition(ais, 8), 1, seps))
    start, end = _instant(start), _instant(end)
    if start and not end and minutes:
        end = (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()
    if start and end:
        resource["start"], resource["end"] = start, end
    elif status not in ("proposed", "cancelled", "waitlist"):
        raise TranslateError("TQ1-7/SCH-11/AIS-4: appointment start time missing")
    if minutes:
        resource["minutesDuration"] = minutes
    participants: list[dict[str, Any]] = [{"actor": {"reference": ref.reference}, "status": "accepted"}]
    for aip in by_name.get("AIP", ()):
        if person := xcn_field(aip, 3, ctx.facility):
            participants.append({"actor": person, "status": "accepted"})
    for ail in by_name.get("AIL", ()):
        if where := pl_text(first_repetition(ail, 3), ail.seps):
            participants.append({"actor": {"display": where}, "status": "accepted"})
    resource["participant"] = participants
    return resource
