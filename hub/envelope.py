"""The canonical event envelope: the one shape every event on the hub's topics has.

Its published contract is ``schemas/canonical-event.v1.json``; tests check that what this module writes
validates against it. Payloads are FHIR R4 resources as plain dicts (fhir.resources defines valid; the hot
path does not pay for its object model).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1
# Namespace for deterministic event ids (uuid5): same source coordinates -> same id, on every replay.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c8f2e-6a43-5c7e-9d0b-3b1e5a8e4c21")

EVENT_TYPES = frozenset({
    "patient.updated", "encounter.recorded", "immunization.recorded", "observation.recorded",
    "condition.recorded", "medication.recorded", "citizen.merged",
    # Added with the full HL7 v2 coverage (additive: version 1 consumers ignore types they do not apply).
    "patient.merged", "allergy.recorded", "procedure.recorded", "related-person.recorded", "report.recorded",
    "order.recorded", "document.recorded", "appointment.recorded",
    # The MPI undoing a merge (hub.identity.events).
    "citizen.unmerged",
})
# Sensitive categories an event may be flagged with (connectors/hl7v2/sensitivity.json).
SENSITIVITY_FLAGS = frozenset({"hiv", "mental-health"})

# Naming systems for identifiers (draft Ministry of Health IG, see shared/reference/vietnam-health-data.md).
VN_FHIR_BASE = "http://fhir.ehealth.gov.vn/core"
SYSTEM_CCCD = f"{VN_FHIR_BASE}/sid/national_id"
SYSTEM_BHYT = f"{VN_FHIR_BASE}/sid/insurance_number"
# The 10-digit lifelong social-insurance number: the last 10 characters of a 15-character BHYT card.
SYSTEM_BHXH = f"{VN_FHIR_BASE}/sid/bhxh_number"
SYSTEM_OLD_ID = f"{VN_FHIR_BASE}/sid/citizen_id"
SYSTEM_PASSPORT = f"{VN_FHIR_BASE}/sid/passport"


def mrn_system(facility: str) -> str:
    """Facility MRNs are only unique inside their facility, so the facility is part of the system."""
    return f"{VN_FHIR_BASE}/sid/mrn/{facility}"


_NAMESPACE = EVENT_ID_NAMESPACE.bytes
# RFC 4122 variant: the first nibble of the fourth group becomes 10xx; a lookup, because int(c, 16) per id
# cost more than the SHA-1 itself.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))`` computed on the hex digest, without UUID objects (3x faster;
    a lab report derives 25 ids, a BHYT encounter ~60). Tests check it equals the stdlib."""
    h = hashlib.sha1(_NAMESPACE + name.encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def event_id(system: str, facility: str, message_id: str, position: str) -> str:
    """Deterministic event id from the source coordinates (ARCHITECTURE invariant 3)."""
    return uuid5(f"{system}|{facility}|{message_id}|{position}")


@dataclass(frozen=True, slots=True)
class RawCoordinates:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Source:
    system: str  # "hl7v2", "xml130", ...
    facility: str  # MA_CSKCB facility code
    message_id: str  # MSH-10 or the export's record key
    application: str | None = None
    raw: RawCoordinates | None = None


@dataclass(frozen=True, slots=True)
class Identifier:
    system: str
    value: str


@dataclass(frozen=True, slots=True)
class Subject:
    """Who the source says the event is about, as the source said it (input to the MPI)."""

    identifiers: tuple[Identifier, ...] = ()
    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None
    sex: str | None = None  # FHIR administrative gender


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    type: str
    occurred_at: str
    recorded_at: str
    source: Source
    subject: Subject
    payload: dict[str, Any]
    sensitivity: tuple[str, ...] = ()
    citizen_id: str | None = None  # set by the identity stage
    record_version: int | None = None  # set by the record stage on record.changes
    schema_version: int = SCHEMA_VERSION
    # Set by the identity stage when the event's source record belonged to a citizen since merged into
    # ``citizen_id``: the record keeps the event with that member, so an unmerge gives it back to them.
    member_id: str | None = None

    def with_citizen(self, citizen_id: str, member_id: str | None = None) -> "Envelope":
        # Positional, not dataclasses.replace (which re-reads every field by name): once per event on identity.
        return Envelope(self.event_id, self.type, self.occurred_at, self.recorded_at, self.source, self.subject,
                        self.payload, self.sensitivity, citizen_id, self.record_version, self.schema_version,
                        member_id)

    def to_dict(self) -> dict[str, Any]:
        return self._as_dict(_source_dict(self.source), _subject_dict(self.subject))

    def to_json(self) -> bytes:
        # The events of one message share their Source and Subject objects (a lab report: 11 events), so their
        # dicts are built once and reused while serialising; to_dict() hands out fresh ones.
        cache = _LAST_PARTS
        if cache[0] is not self.source:
            cache[0], cache[1] = self.source, _source_dict(self.source)
        if cache[2] is not self.subject:
            cache[2], cache[3] = self.subject, _subject_dict(self.subject)
        return orjson.dumps(self._as_dict(cache[1], cache[3]))

    def _as_dict(self, source: dict[str, Any], subject: dict[str, Any]) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict, which deep-copies the payload: 10x slower per event.
        data = event_dict(self.event_id, self.type, self.occurred_at, self.recorded_at, source, subject,
                          list(self.sensitivity), self.payload, self.schema_version)
        if self.citizen_id is not None:
            data["citizen_id"] = self.citizen_id
        if self.record_version is not None:
            data["record_version"] = self.record_version
        if self.member_id is not None:
            data["member_id"] = self.member_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Envelope":
        # Every stage decodes every event: fields are read by name once, no intermediate dict copies.
        src = data["source"]
        raw = src.get("raw")
        subj = data.get("subject") or {}
        unknown = src.keys() - _SOURCE_FIELDS
        if unknown:  # as Source(**src) would say
            raise TypeError(f"unexpected source fields {sorted(unknown)}")
        return cls(
            data["event_id"], data["type"], data["occurred_at"], data["recorded_at"],
            Source(src["system"], src["facility"], src["message_id"], src.get("application"),
                   RawCoordinates(**raw) if raw else None),
            Subject(tuple(Identifier(i["system"], i["value"]) if len(i) == 2 else Identifier(**i)
                          for i in subj.get("identifiers", ())),
                    subj.get("family"), tuple(subj.get("given", ())), subj.get("birth_date"), subj.get("sex")),
            data["payload"], tuple(data.get("sensitivity", ())), data.get("citizen_id"), data.get("record_version"),
            data.get("schema_version", SCHEMA_VERSION), data.get("member_id"),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> "Envelope":
        return cls.from_dict(orjson.loads(raw))


def event_dict(event_id: str, type_: str, occurred_at: str, recorded_at: str, source: dict[str, Any],
               subject: dict[str, Any], sensitivity: Any, payload: dict[str, Any],
               schema_version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The envelope as JSON writes it, keys in order: the one layout of ``Envelope.to_json`` and of the bulk
    paths (hub.ops.publish.map_rows, the BHYT importer) that build events from plain dicts, without Envelopes."""
    return {"event_id": event_id, "type": type_, "schema_version": schema_version, "occurred_at": occurred_at,
            "recorded_at": recorded_at, "source": source, "subject": subject, "sensitivity": sensitivity,
            "payload": payload}


_SOURCE_FIELDS = frozenset({"system", "facility", "message_id", "application", "raw"})


def _source_dict(src: Source) -> dict[str, Any]:
    source: dict[str, Any] = {"system": src.system, "facility": src.facility, "message_id": src.message_id,
                              "application": src.application}
    if src.raw is not None:
        source["raw"] = {"topic": src.raw.topic, "partition": src.raw.partition, "offset": src.raw.offset}
    return source


def _subject_dict(subj: Subject) -> dict[str, Any]:
    return {"identifiers": [{"system": i.system, "value": i.value} for i in subj.identifiers],
            "family": subj.family, "given": list(subj.given), "birth_date": subj.birth_date, "sex": subj.sex}


# (Source, its dict, Subject, its dict) of the last event serialised; compared by identity, never by value.
_LAST_PARTS: list[Any] = [None, None, None, None]


# DLQ entry headers of an entry that keeps only the head of its input: the whole input's length and SHA-256.
ORIGINAL_BYTES = "original_bytes"
ORIGINAL_SHA256 = "original_sha256"


def original_head(original: bytes, keep: int, length: int | None = None,
                  sha256: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The first ``keep`` bytes of a failed input, for a DLQ entry that must fit in one Kafka record, and the
    headers describing the whole input (``length``/``sha256``: of a whole already cut before, else of
    ``original``), so what was kept can be matched to it. ``hub dlq replay`` refuses such an entry."""
    headers = {ORIGINAL_BYTES: str(length if length is not None else len(original)),
               ORIGINAL_SHA256: sha256 or hashlib.sha256(original).hexdigest()}
    return original[:keep], headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to hub.dlq: enough to understand the failure and replay the original bytes."""

    stage: str
    code: str
    reason: str
    original: bytes
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    failed_at: str = ""

    def to_json(self) -> bytes:
        import base64

        data = asdict(self)
        data["original"] = base64.b64encode(self.original).decode()
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> "DeadLetter":
        """The inverse of ``to_json``; raises ValueError (or KeyError/TypeError) for anything else."""
        import base64

        data = orjson.loads(raw)
        return cls(stage=str(data["stage"]), code=str(data.get("code") or "hub"), reason=str(data.get("reason") or ""),
                   original=base64.b64decode(data["original"], validate=True), source_topic=data.get("source_topic"),
                   source_partition=data.get("source_partition"), source_offset=data.get("source_offset"),
                   headers=dict(data.get("headers") or {}), failed_at=str(data.get("failed_at") or ""))
