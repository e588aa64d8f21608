"""What every table mapper needs about its encounter, built once from XML1, and the one event builder.

Event types follow the resource: the envelope's published set (``hub.envelope.EVENT_TYPES``) has no type for
procedures or documents yet, so those use ``procedure.recorded`` and ``document.recorded`` (to be added to
the schema; see the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from connectors.xml130.maps import MAPS
from hub.envelope import Envelope, Source, Subject, event_id

SOURCE_SYSTEM = "xml130"

EVENT_TYPE: dict[str, str] = {
    "Patient": "patient.updated",
    "Encounter": "encounter.recorded",
    "Condition": "condition.recorded",
    "MedicationDispense": "medication.recorded",
    "Observation": "observation.recorded",
    "DiagnosticReport": "observation.recorded",
    "Procedure": "procedure.recorded",
    "DocumentReference": "document.recorded",
}

# meta.security on every resource of an HIV-sensitive encounter, so the flag travels with the payload too.
HIV_SECURITY = [
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV",
     "display": "HIV/AIDS information sensitivity"},
    {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R", "display": "restricted"},
]
SENSITIVITY_HIV = "hiv"


@dataclass(frozen=True, slots=True)
class Context:
    facility: str
    ma_lk: str
    patient_ref: str  # "Patient/<id>"
    encounter_ref: str  # "Encounter/<id>"
    occurred_at: str  # the encounter's discharge (else admission) time: default for rows without their own
    recorded_at: str
    source: Source
    subject: Subject
    sensitivity: tuple[str, ...] = ()

    def event(self, resource: dict[str, Any], position: str, occurred_at: str | None = None) -> Envelope:
        """One canonical event; ``position`` (table/row/resource) makes its id unique within the encounter."""
        if self.sensitivity:
            resource["meta"] = {"security": [dict(c) for c in HIV_SECURITY]}
        return Envelope(
            event_id=event_id(SOURCE_SYSTEM, self.facility, self.ma_lk, position),
            type=EVENT_TYPE[resource["resourceType"]],
            occurred_at=occurred_at or self.occurred_at,
            recorded_at=self.recorded_at,
            source=self.source,
            subject=self.subject,
            payload=resource,
            sensitivity=self.sensitivity,
        )


def fields(record: etree._Element, legacy: bool = False) -> dict[str, str]:
    """A record element -> {field: stripped text}, empty fields left out. ``legacy``: read QD 4210 names as
    their QD 130 ones (XML1, XML5; the QD 130 name wins when both are present).

    The hot loop of the reader (every field of every row), so it is one comprehension; parsing removed
    comments and processing instructions, so every child is an element.
    """
    out = {c.tag: t.strip() for c in record if (t := c.text) and not t.isspace()}
    if out and next(iter(out))[0] == "{":
        out = {tag.rpartition("}")[2]: value for tag, value in out.items()}
    if legacy:
        for old, new in MAPS.aliases_4210.items():
            if old in out and new not in out:
                out[new] = out[old]
    return out


def is_hiv(icd10: str) -> bool:
    code = icd10.replace(".", "").upper()
    return code.startswith(MAPS.hiv_prefixes)
