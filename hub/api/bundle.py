"""A citizen's record (the dict hub/record keeps in Redis) as a FHIR R4 Bundle, like ``Patient/$everything``.

One builder per record section, in ``SECTIONS``; a section the API does not know yet is skipped and
reported by ``unknown_sections`` (its name only), so a record that grows new sections keeps being served.
Entries flagged with a sensitivity category (HIV, mental health, ...) are withheld: no scope grants them yet.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from hub.envelope import VN_FHIR_BASE

Record = dict[str, Any]
Resource = dict[str, Any]
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
SYSTEM_FACILITY = f"{VN_FHIR_BASE}/sid/facility"
# Keys every record has that are bookkeeping, not content.
RECORD_META = frozenset({"citizen_id", "version", "updated_at"})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def visible(item: Any) -> bool:
    """False for entries carrying a sensitivity flag: they are not served until a scope allows them."""
    return not (isinstance(item, dict) and item.get("sensitivity"))


def _compact(resource: Resource) -> Resource:
    """Drop empty fields: FHIR forbids null and empty arrays."""
    return {k: v for k, v in resource.items() if v not in (None, [], {}, "")}


def patient_resource(record: Record) -> Resource:
    demo = record.get("demographics") or {}
    meta = {"versionId": str(record.get("version", 0)), "lastUpdated": record.get("updated_at")}
    return _compact({
        "resourceType": "Patient",
        "id": record["citizen_id"],
        "meta": _compact(meta),
        "identifier": [{"system": i["system"], "value": i["value"]} for i in record.get("identifiers", [])
                       if i.get("system") and i.get("value")],
        "name": [demo["name"]] if demo.get("name") else None,
        "gender": demo.get("gender"),
        "birthDate": demo.get("birth_date"),
        "address": [demo["address"]] if demo.get("address") else None,
        "telecom": demo.get("telecom") or None,
    })


def encounter_resource(citizen_id: str, encounter_id: str, entry: dict[str, Any]) -> Resource:
    cls = entry.get("class")
    facility = entry.get("facility")
    return _compact({
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": entry.get("status") or "unknown",
        "class": {"system": ACT_CODE, "code": cls} if cls else {"system": NULL_FLAVOR, "code": "UNK"},
        "subject": {"reference": f"Patient/{citizen_id}"},
        "identifier": entry.get("identifier"),
        "period": entry.get("period"),
        "location": entry.get("location"),
        "serviceProvider": {"identifier": {"system": SYSTEM_FACILITY, "value": facility}, "display": facility}
        if facility else None,
    })


def _encounters(record: Record) -> Iterable[Resource]:
    section = record.get("encounters") or {}
    for encounter_id in sorted(section):
        if visible(section[encounter_id]):
            yield encounter_resource(record["citizen_id"], encounter_id, section[encounter_id])


# Section name in the record -> builder of its resources. Demographics and identifiers make the Patient.
SECTIONS: dict[str, Callable[[Record], Iterable[Resource]]] = {"encounters": _encounters}
PATIENT_SECTIONS = frozenset({"demographics", "identifiers"})


def unknown_sections(record: Record) -> list[str]:
    """Sections of the record no builder knows yet (names only, safe to log)."""
    return sorted(k for k in record if k not in RECORD_META | PATIENT_SECTIONS | SECTIONS.keys())


def record_bundle(record: Record, base_url: str, timestamp: str | None = None) -> Resource:
    """A ``searchset`` Bundle: the Patient (search mode ``match``) and everything about them (``include``)."""
    resources = [patient_resource(record)]
    for build in SECTIONS.values():
        resources.extend(build(record))
    entries = [{
        "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
        "resource": r,
        "search": {"mode": "match" if i == 0 else "include"},
    } for i, r in enumerate(resources)]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": record.get("updated_at") or timestamp or now_iso()},
        "type": "searchset",
        "timestamp": timestamp or now_iso(),
        "total": 1,  # searchset total counts matches (the Patient), not included resources
        "entry": entries,
    }
