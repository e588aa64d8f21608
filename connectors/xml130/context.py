"""What every table mapper needs about its encounter, built once from XML1, and the one event builder.

Event types follow the resource: the envelope's published set (``hub.envelope.EVENT_TYPES``) has no type for
procedures or documents yet, so those use ``procedure.recorded`` and ``document.recorded`` (to be added to
the schema; see the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

import orjson

from connectors.xml130.maps import MAPS
from hub.envelope import SCHEMA_VERSION, Envelope, Source, Subject, event_dict, uuid5

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

# Envelope is a frozen slots dataclass: its __init__ sets each of its 12 fields through object.__setattr__, which
# cost more than the event's two uuid5 ids together (an encounter makes ~33 envelopes). ``_envelope`` fills the
# same slots through their descriptors; a test checks the result equals ``Envelope(...)``, field by field.
_new = object.__new__
_dumps = orjson.dumps
_FIELDS = ("event_id", "type", "occurred_at", "recorded_at", "source", "subject", "payload", "sensitivity",
           "citizen_id", "record_version", "schema_version", "member_id")
if tuple(Envelope.__dataclass_fields__) != _FIELDS:  # a field added to Envelope must be set here too
    raise RuntimeError("connectors.xml130.context._envelope no longer sets exactly the Envelope's fields")
_SET = tuple(getattr(Envelope, name).__set__ for name in _FIELDS)


def _envelope(event_id_: str, type_: str, occurred_at: str, recorded_at: str, source: Source, subject: Subject,
              payload: dict[str, Any], sensitivity: tuple[str, ...]) -> Envelope:
    """``Envelope(...)`` with no citizen_id, record_version or member_id, without the frozen dataclass's __init__
    cost."""
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11 = _SET
    envelope = _new(Envelope)
    s0(envelope, event_id_)
    s1(envelope, type_)
    s2(envelope, occurred_at)
    s3(envelope, recorded_at)
    s4(envelope, source)
    s5(envelope, subject)
    s6(envelope, payload)
    s7(envelope, sensitivity)
    s8(envelope, None)
    s9(envelope, None)
    s10(envelope, SCHEMA_VERSION)
    s11(envelope, None)
    return envelope


# The encoded path writes an event as bytes around its payload's JSON: the envelope's parts shared by every
# event of an encounter (recorded_at, source, subject, sensitivity: ~40% of an event's bytes) are serialised
# once per encounter (``encoded_middle``) instead of once per event. This relies on event_dict's key order,
# checked here against a probe; a test checks the bytes equal Envelope.to_json's.
_EVENT_ID = b'{"event_id":"'
_TYPE = {resource: f'","type":"{type_}","schema_version":{SCHEMA_VERSION},"occurred_at":'.encode()
         for resource, type_ in EVENT_TYPE.items()}
_EMPTY_HEAD = b'{"event_id":"","type":"","schema_version":%d,"occurred_at":""' % SCHEMA_VERSION
if _dumps(event_dict("E", "T", "O", "R", {}, {}, (), 0)) != (
        b'{"event_id":"E","type":"T","schema_version":%d,"occurred_at":"O","recorded_at":"R","source":{},'
        b'"subject":{},"sensitivity":[],"payload":0}' % SCHEMA_VERSION):
    raise RuntimeError("hub.envelope.event_dict's layout changed: connectors.xml130.context.Context.event too")


def encoded_middle(recorded_at: str, source: Source, subject: Subject, sensitivity: tuple[str, ...]) -> bytes:
    """The JSON of an encounter's events between their occurred_at and their payload (both excluded), with the
    dicts Envelope.to_json writes: ``,"recorded_at":...,"payload":``."""
    shape = Envelope("", "", "", "", source, subject, {}).to_dict()
    whole = _dumps(event_dict("", "", "", recorded_at, shape["source"], shape["subject"], sensitivity, 0))
    return whole[len(_EMPTY_HEAD):-2]  # (orjson writes the sensitivity tuple as an array, as to_json its list)


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
    event_prefix: str  # f"{SOURCE_SYSTEM}|{facility}|{ma_lk}|": hub.envelope.event_id's uuid5 name but the position
    sensitivity: tuple[str, ...] = ()
    # The importer's path: ``encoded_middle``'s bytes; each event is then its JSON bytes, built from plain dicts,
    # never an Envelope (a test checks the bytes equal Envelope.to_json's).
    encoded: bytes | None = None

    def event(self, resource: dict[str, Any], position: str, occurred_at: str | None = None) -> Envelope | bytes:
        """One canonical event; ``position`` (table/row/resource) makes its id unique within the encounter."""
        if self.sensitivity:
            resource["meta"] = {"security": [dict(c) for c in HIV_SECURITY]}
        if self.encoded is not None:
            return b"".join((_EVENT_ID, uuid5(self.event_prefix + position).encode(),
                             _TYPE[resource["resourceType"]], _dumps(occurred_at or self.occurred_at), self.encoded,
                             _dumps(resource), b"}"))
        return _envelope(uuid5(self.event_prefix + position), EVENT_TYPE[resource["resourceType"]],
                         occurred_at or self.occurred_at, self.recorded_at, self.source, self.subject, resource,
                         self.sensitivity)


def fields(record: etree._Element, legacy: bool = False) -> dict[str, str]:
    """A record element -> {field: stripped text}, empty fields left out. ``legacy``: read QD 4210 names as
    their QD 130 ones (XML1, XML5; the QD 130 name wins when both are present).

    The hot loop of the reader (every field of every row), so it is one comprehension with one ``strip`` per
    field (a whitespace-only text strips to ""); parsing removed comments and processing instructions, so
    every child is an element.
    """
    out = {c.tag: v for c in record if (t := c.text) and (v := t.strip())}
    if out and next(iter(out))[0] == "{":
        out = {tag.rpartition("}")[2]: value for tag, value in out.items()}
    return legacy_names(out) if legacy else out


def legacy_names(out: dict[str, str]) -> dict[str, str]:
    """Add the QD 130 name of every QD 4210 field present (the QD 130 name wins when both are); in place."""
    for old, new in MAPS.aliases_4210.items():
        if old in out and new not in out:
            out[new] = out[old]
    return out


def is_hiv(icd10: str) -> bool:
    code = icd10.replace(".", "").upper()
    return code.startswith(MAPS.hiv_prefixes)
