"""The streaming MPI's input: a canonical event's subject (and Patient payload) as a ``SourceRecord``.

So the real-time path scores an event against candidate records with the same ``MatchModel.score`` that
batch linkage uses: one implementation, two drivers.
"""

from __future__ import annotations

from typing import Any

from hub.envelope import SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Envelope
from hub.identity.records import SourceRecord

_MRN_PREFIX = SYSTEM_CCCD.rsplit("/", 1)[0] + "/mrn/"
WARD_CODE = "/StructureDefinition/ward-code"  # the address extension holding the ward code (registry feeds)
_PERSONAL = (SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT)  # preference order for the one personal-id slot


def record_from_envelope(envelope: Envelope, record_id: str | None = None) -> SourceRecord:
    """What the event says about its person, in the matcher's terms (name family-first, ISO birth date)."""
    # Plain loops, no generator expressions: run for every event the identity stage reads.
    subject = envelope.subject
    by_system: dict[str, str] = {}
    facility = mrn = ""
    for ident in subject.identifiers:
        system = ident.system
        if system.startswith(_MRN_PREFIX):
            facility, mrn = system[len(_MRN_PREFIX):], ident.value
        elif system not in by_system:
            by_system[system] = ident.value
    personal = ""
    for system in _PERSONAL:
        if system in by_system:
            personal = by_system[system]
            break
    insurance = by_system.get(SYSTEM_BHXH) or by_system.get(SYSTEM_BHYT, "")
    name = " ".join([p for p in (subject.family or "", *subject.given) if p])
    payload: dict[str, Any] = envelope.payload if envelope.payload.get("resourceType") == "Patient" else {}
    phone = ""
    for t in payload.get("telecom", ()):
        if t.get("system") == "phone":
            phone = t.get("value", "")
            break
    address = ward = ""
    for addr in payload.get("address", ()):
        address = addr.get("text") or ", ".join([*addr.get("line", []), addr.get("district", ""), addr.get("city", "")])
        for x in addr.get("extension", ()):
            if str(x.get("url", "")).endswith(WARD_CODE):
                ward = str(x.get("valueCode", ""))
                break
        break
    return SourceRecord(
        record_id=record_id or envelope.event_id, name=name, birth_date=subject.birth_date or "",
        sex=subject.sex or "", personal_id=personal, insurance=insurance, phone=phone, address=address, ward=ward,
        facility=facility or envelope.source.facility, mrn=mrn, event_date=envelope.occurred_at[:10],
    )
