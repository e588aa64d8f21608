"""The fields of a citizen event the record reads, taken straight from the event's decoded JSON.

Why not ``Envelope.from_dict``: it builds five frozen dataclasses per event (the envelope, its source, its subject
and each identifier), which cost the record stage about as much as decoding the JSON, and the record reads the
subject only to attribute an event inside a merged record. ``read_event`` accepts exactly what
``Envelope.from_dict`` accepts: the common shape (source coordinates included) is checked here and read
directly, anything else (a source or coordinates with other fields, an identifier with extra fields, an
unexpected type) goes through ``Envelope.from_dict``, which
raises its own error for what it refuses; the subject is built from the JSON only when it is asked for.
"""

from __future__ import annotations

from typing import Any

from hub.envelope import Envelope, Subject

_SOURCE_REQUIRED = frozenset({"system", "facility", "message_id"})
_SOURCE_KNOWN = _SOURCE_REQUIRED | {"application", "raw"}
_RAW = frozenset({"topic", "partition", "offset"})  # RawCoordinates(**raw) takes exactly these
_IDENTIFIER = frozenset({"system", "value"})
_SEQUENCE = (list, tuple)


class RecordEvent:
    """One event as the record applies it: id, type, times, facility and source system, payload, sensitivity,
    its citizen and the merged-away member it belongs to."""

    __slots__ = ("event_id", "type", "occurred_at", "recorded_at", "facility", "system", "payload", "sensitivity",
                 "citizen_id", "member_id", "_data", "_envelope")

    def __init__(self, event_id: str, type_: str, occurred_at: str, recorded_at: str, facility: str, system: str,
                 payload: dict[str, Any], sensitivity: tuple[str, ...], citizen_id: str | None,
                 member_id: str | None, data: dict[str, Any] | None, envelope: Envelope | None) -> None:
        self.event_id, self.type, self.occurred_at, self.recorded_at = event_id, type_, occurred_at, recorded_at
        self.facility, self.system, self.payload, self.sensitivity = facility, system, payload, sensitivity
        self.citizen_id, self.member_id, self._data, self._envelope = citizen_id, member_id, data, envelope

    @classmethod
    def of(cls, envelope: Envelope) -> "RecordEvent":
        return cls(envelope.event_id, envelope.type, envelope.occurred_at, envelope.recorded_at,
                   envelope.source.facility, envelope.source.system, envelope.payload, envelope.sensitivity,
                   envelope.citizen_id, envelope.member_id, None, envelope)

    @property
    def envelope(self) -> Envelope:
        if self._envelope is None:
            self._envelope = Envelope.from_dict(self._data)  # type: ignore[arg-type]  # set when no envelope
        return self._envelope

    @property
    def subject(self) -> Subject:
        return self.envelope.subject


Event = Envelope | RecordEvent  # what the appliers and merges take


def as_record_event(event: Event) -> RecordEvent:
    return event if type(event) is RecordEvent else RecordEvent.of(event)  # type: ignore[arg-type]


def _plain_subject(subject: Any) -> bool:
    """A subject ``Envelope.from_dict`` takes as it is: identifiers of exactly system and value, given names a list."""
    if type(subject) is not dict:
        return False
    identifiers = subject.get("identifiers", ())
    if type(identifiers) not in _SEQUENCE or type(subject.get("given", ())) not in _SEQUENCE:
        return False
    for identifier in identifiers:
        if type(identifier) is not dict or identifier.keys() != _IDENTIFIER:
            return False
    return True


def _plain_raw(raw: Any) -> bool:
    """Source coordinates ``Envelope.from_dict`` takes (none, or exactly topic, partition and offset): most
    events carry them (everything from HL7 v2 and the importers), so they must not leave the direct path."""
    return not raw or (type(raw) is dict and raw.keys() == _RAW)


def read_event(data: Any) -> RecordEvent:
    """The event in decoded JSON; KeyError or TypeError (as ``Envelope.from_dict`` raises) when it is not one."""
    if type(data) is dict:
        source = data.get("source")
        if (type(source) is dict and _SOURCE_REQUIRED <= source.keys() <= _SOURCE_KNOWN
                and _plain_raw(source.get("raw")) and _plain_subject(data.get("subject") or {})):
            return RecordEvent(data["event_id"], data["type"], data["occurred_at"], data["recorded_at"],
                               source["facility"], source["system"], data["payload"],
                               tuple(data.get("sensitivity", ())), data.get("citizen_id"), data.get("member_id"),
                               data, None)
    return RecordEvent.of(Envelope.from_dict(data))
