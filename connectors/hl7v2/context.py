"""What every translator shares: the message context (MSH/EVN read once) and how an event is enveloped.

Event ids: ``envelope.event_id`` of (source system, facility, MSH-10, position). The position of the message's
own Patient and Encounter is the resource type (``"Patient"``, ``"Encounter"``), as it has been since the
first release; every other resource's position is ``"<resourceType>/<segment index>"``, the index of the
segment it came from (MSH is 0). Both are fixed by the bytes, so a replay gives the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.hl7v2.datatypes import first_repetition, part, ts_field
from connectors.hl7v2.ids import encounter_id
from connectors.hl7v2.parse import Header, Message, Segment
from hub.envelope import Envelope, RawCoordinates, Source, Subject, uuid5
from hub.errors import TranslateError

SOURCE_SYSTEM = "hl7v2"

# resourceType -> canonical event type (hub/envelope.EVENT_TYPES).
EVENT_TYPE: dict[str, str] = {
    "Patient": "patient.updated",
    "Encounter": "encounter.recorded",
    "Condition": "condition.recorded",
    "AllergyIntolerance": "allergy.recorded",
    "Procedure": "procedure.recorded",
    "Observation": "observation.recorded",
    "RelatedPerson": "related-person.recorded",
    "DiagnosticReport": "report.recorded",
    "Immunization": "immunization.recorded",
    "ServiceRequest": "order.recorded",
    "MedicationRequest": "medication.recorded",
    "MedicationDispense": "medication.recorded",
    "DocumentReference": "document.recorded",
    "Appointment": "appointment.recorded",
}


@dataclass(frozen=True, slots=True)
class Context:
    """What every translator needs from MSH/EVN and the caller, read once per message."""

    message: Message
    header: Header
    facility: str
    occurred_at: str
    recorded_at: str
    source: Source

    def event(self, resource: dict[str, Any], subject: Subject, position: int | None = None,
              sensitivity: tuple[str, ...] = (), event_type: str | None = None) -> Envelope:
        """Envelope one resource; ``position`` is its segment index (None for the message's own Patient and
        Encounter)."""
        kind = resource["resourceType"]
        where = kind if position is None else f"{kind}/{position}"
        return Envelope(
            # == envelope.event_id(SOURCE_SYSTEM, facility, control id, where), by the faster uuid5
            event_id=uuid5(f"{SOURCE_SYSTEM}|{self.facility}|{self.header.control_id}|{where}"),
            type=event_type or EVENT_TYPE[kind],
            occurred_at=self.occurred_at,
            recorded_at=self.recorded_at,
            source=self.source,
            subject=subject,
            payload=resource,
            sensitivity=sensitivity,
        )


def build_context(message: Message, header: Header, received_at: str,
                  raw_coords: RawCoordinates | None) -> Context:
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


@dataclass(frozen=True, slots=True)
class PatientRef:
    """The patient a group of segments is about: the reference clinical resources point at, the envelope
    subject, and the encounter (PV1-19) when the message names one."""

    reference: str
    subject: Subject
    encounter: str | None = None
    visit_key: str = ""  # the scope of per-encounter ids: the visit number, else the message


def encounter_reference(pv1: Segment | None, ctx: Context) -> tuple[str | None, str]:
    """(Encounter reference, visit key) from PV1-19. Clinical messages only point at an Encounter when a visit
    number is sent; without one the Encounter id would name a message that created no Encounter."""
    visit = part(first_repetition(pv1, 19), 1, pv1.seps) if pv1 is not None else ""
    if not visit:
        return None, f"message|{ctx.header.control_id}"
    return f"Encounter/{encounter_id(ctx.facility, visit, ctx.header.control_id)}", f"visit|{visit}"
