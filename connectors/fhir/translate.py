"""A FHIR R4 Bundle (collection, transaction, batch or document) -> canonical events, entry by entry.

1. The bundle's shape is checked (``bundle``); each entry is validated on its own with the R4B models
   (``validate``): an invalid entry is one ``EntryFailure`` naming its index, type and field paths, and the
   valid entries still import.
2. The facility comes from the bundle (``identity.facility_of``), else from the caller.
3. Each valid entry gets a hub resource id: uuid5 of type, facility and the source's own id (a re-export of
   the same resource keeps its id), else its fullUrl or position within this bundle. A Patient with an MRN
   gets the id every other connector gives it (``Patient|facility|MR|mrn``), so an ADT feed, a BHYT export
   and a FHIR bundle of one facility name the same Patient.
4. References between entries are rewritten to those ids (``references``); each clinical entry's subject is
   the Patient it references (the bundle's only Patient when it references none).
5. Event ids: ``hub.envelope.event_id("fhir", facility, bundle key, "<type>/<source id>")``: the same file
   gives the same ids on every import. Sensitivity: the codes of the resource (``connectors.hl7v2.sensitivity``
   tables) and its meta.security labels; the flags of an encounter's resources are shared by all of them.

Resources that are only context (Organization, Practitioner, Location, Medication ...) are used to resolve
references and counted, not published.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections import Counter
from typing import Any

import orjson

from connectors.fhir import bundle as bundle_io
from connectors.fhir.identity import facility_of, map_identifiers, subject_of
from connectors.fhir.references import Index, rewrite
from connectors.fhir.results import (
    MAX_ENTRY_BYTES, MAX_ORIGINAL, SOURCE_SYSTEM, BundleResult, EntryEvents, EntryFailure,
)
from connectors.fhir.validate import UnknownResourceType, problems
from connectors.hl7v2 import sensitivity
from connectors.hl7v2.context import EVENT_TYPE as HL7_EVENT_TYPE
from hub.envelope import Envelope, Source, Subject, event_id, uuid5

# resourceType -> event type: the HL7 v2 translator's table (one place), plus the resources only FHIR sends.
EVENT_TYPE: dict[str, str] = {**HL7_EVENT_TYPE, "MedicationStatement": "medication.recorded",
                              "MedicationAdministration": "medication.recorded"}
_PATIENT_FIELDS = ("subject", "patient", "beneficiary")
# meta.security codes (v3-ActCode) that flag a sensitive category.
_SECURITY_FLAGS = {"HIV": "hiv", "PSY": "mental-health", "PSYTHPN": "mental-health"}
# Where a resource says when it happened, in order of preference.
_WHEN = ("effectiveDateTime", "effectivePeriod.start", "occurrenceDateTime", "performedDateTime",
         "performedPeriod.start", "period.end", "period.start", "onsetDateTime", "recordedDate", "authoredOn",
         "whenHandedOver", "dateAsserted", "issued", "date", "start", "created", "meta.lastUpdated")


def _now() -> str:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).isoformat(timespec="milliseconds")


def _nfc(value: Any) -> Any:
    """Text normalised to NFC at the edge (ARCHITECTURE invariant 7); most strings already are."""
    if isinstance(value, str):
        return value if value.isascii() or unicodedata.is_normalized("NFC", value) else \
            unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {k: _nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nfc(v) for v in value]
    return value


def _get(resource: dict[str, Any], dotted: str) -> Any:
    value: Any = resource
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _occurred(resource: dict[str, Any], fallback: str) -> str:
    for path in _WHEN:
        value = _get(resource, path)
        if isinstance(value, str) and value:
            return value
    return fallback


def _flags(resource: dict[str, Any]) -> set[str]:
    found = set(sensitivity.flags(resource))
    for label in (resource.get("meta") or {}).get("security") or ():
        if flag := _SECURITY_FLAGS.get(str(label.get("code") or "").upper()):
            found.add(flag)
    return found


def _patient_reference(resource: dict[str, Any]) -> tuple[bool, Any]:
    """(whether the resource names a patient at all, the reference text)."""
    for name in _PATIENT_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict) and ("reference" in value or "identifier" in value):
            return True, value.get("reference")
    for participant in resource.get("participant") or ():  # Appointment
        ref = (participant.get("actor") or {}).get("reference")
        if isinstance(ref, str) and (ref.startswith("Patient/") or ref.startswith("urn:")):
            return True, ref
    return False, None


def _source_key(index: int, full_url: str | None, resource: dict[str, Any]) -> tuple[str, bool]:
    """(the source's name for the resource, whether it is stable beyond this bundle)."""
    if isinstance(resource.get("id"), str) and resource["id"]:
        return f"id:{resource['id']}", True
    if full_url:
        return f"url:{full_url}", False
    return f"entry:{index}", False


def _fail(result: BundleResult, stage: str, kind: str, index: int | None, resource_type: str, detail: str,
          original: bytes) -> None:
    where = "bundle" if index is None else f"entry {index}" + (f" ({resource_type})" if resource_type else "")
    result.failures.append(EntryFailure(stage, kind, f"{where}: {detail}", index, resource_type, original,
                                        f"{resource_type + ' ' if resource_type else ''}{detail}"))


def translate_bundle(data: bytes, *, received_at: str | None = None, facility: str | None = None) -> BundleResult:
    """Never raises for bad input: a bundle that cannot be used at all sets ``error`` (and one failure)."""
    recorded_at = received_at or _now()
    result = BundleResult()
    try:
        doc = bundle_io.parse(data)
    except bundle_io.BundleError as exc:
        result.error = exc.reason
        _fail(result, "parse", exc.kind, None, "", exc.reason, data[:MAX_ORIGINAL])
        return result
    result.bundle_key = key = bundle_io.bundle_key(doc, data)
    timestamp = doc.get("timestamp") if isinstance(doc.get("timestamp"), str) else None
    entries = doc.get("entry") or []
    result.entries = len(entries)

    index = Index()
    valid: dict[int, tuple[str | None, dict[str, Any], bytes]] = {}
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        original = orjson.dumps(entry)
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        kind = kind if isinstance(kind, str) else ""
        method = ((entry.get("request") or {}) if isinstance(entry, dict) else {}).get("method")
        if method == "DELETE":
            _fail(result, "translate", "unsupported", i, kind, "DELETE requests are not imported (the hub keeps "
                  "history; send the resource with status entered-in-error)", original)
            continue
        if not isinstance(resource, dict):
            _fail(result, "parse", "invalid", i, "", "entry has no resource object", original)
            continue
        if len(original) > MAX_ENTRY_BYTES:  # would not fit a Kafka record: refused, its head kept for the DLQ
            _fail(result, "parse", "size", i, kind, f"entry is {len(original):,} bytes, over the {MAX_ENTRY_BYTES:,}-"
                  "byte limit of one record (send large attachments by URL)", original[:MAX_ORIGINAL])
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        index.add(i, full_url, resource)
        try:
            found = problems(resource)
        except UnknownResourceType:
            _fail(result, "parse", "unknown-type", i, "", f"resourceType {kind or '(missing)'} is not an R4 resource",
                  original)
            continue
        if found:
            _fail(result, "parse", "invalid", i, kind, "; ".join(found), original)
            continue
        names = [n for n in (full_url, f"{kind}/{resource['id']}" if resource.get("id") else None) if n]
        if (dup := next((seen[n] for n in names if n in seen), None)) is not None:
            _fail(result, "translate", "duplicate", i, kind, f"same resource as entry {dup}", original)
            continue
        seen.update((n, i) for n in names)
        valid[i] = (full_url, resource, original)

    patients = {i: r for i, (_u, r, _o) in valid.items() if r["resourceType"] == "Patient"}
    organizations = {i: r for i, (_u, r, _o) in valid.items() if r["resourceType"] == "Organization"}
    fac = facility_of(list(patients.values()), organizations, index.find) or facility or ""
    if not fac:
        result.error = ("the bundle names no facility (MA_CSKCB): give the Patient an MRN with system "
                        ".../sid/mrn/<code>, an Organization with identifier system .../sid/facility, or --facility")
        _fail(result, "translate", "facility", None, "", result.error, data[:MAX_ORIGINAL])
        return result
    result.facility = fac

    hub_refs: dict[int, str] = {}
    positions: dict[int, str] = {}
    mapped_patients: dict[int, tuple[dict[str, Any], Subject]] = {}
    for i, (full_url, resource, _original) in valid.items():
        kind = resource["resourceType"]
        source_key, stable = _source_key(i, full_url, resource)
        positions[i] = f"{kind}/{source_key}"
        if kind == "Patient":
            identifiers, mrn = map_identifiers(resource, fac)
            hub_id = uuid5(f"Patient|{fac}|MR|{mrn}") if mrn else uuid5(f"Patient|{fac}|fhir|{source_key}" + (
                "" if stable else f"|{key}"))
            patient = {**resource, "identifier": identifiers} if identifiers else dict(resource)
            mapped_patients[i] = (patient, subject_of(_nfc(patient)))
        else:
            hub_id = uuid5(f"{kind}|{fac}|fhir|{source_key}" + ("" if stable else f"|{key}"))
        hub_refs[i] = f"{kind}/{hub_id}"

    # The resources to publish, each with its Patient and encounter.
    staged: list[tuple[int, dict[str, Any], int, int | None]] = []
    for i, (_url, resource, original) in valid.items():
        kind = resource["resourceType"]
        if kind not in EVENT_TYPE:
            result.counts[f"{kind}.context"] += 1
            continue
        if kind == "Patient":
            owner: int | None = i
        else:
            named, ref = _patient_reference(resource)
            owner = index.find(ref) if named else (next(iter(patients)) if len(patients) == 1 else None)
            if owner is not None and owner not in patients:
                bad = owner
                owner = None
                why = (f"its subject (entry {bad}) failed validation" if bad not in valid
                       else f"its subject (entry {bad}) is not a Patient")
                _fail(result, "translate", "unlinked", i, kind, why, original)
                continue
            if owner is None:
                why = ("its subject is not a Patient in the bundle" if named else
                       f"no subject or patient reference, and the bundle has {len(patients)} Patients")
                _fail(result, "translate", "unlinked", i, kind, why, original)
                continue
            if not named:
                result.counts["subject.implied"] += 1
        body = mapped_patients[i][0] if kind == "Patient" else resource
        payload = _nfc(rewrite(body, index, hub_refs, result.counts))
        payload["id"] = hub_refs[i].split("/", 1)[1]
        encounter = index.find((resource.get("encounter") or {}).get("reference")) if kind != "Encounter" else i
        staged.append((i, payload, owner, encounter))

    own = {i: _flags(payload) for i, payload, _o, _e in staged}
    by_encounter: dict[int, set[str]] = {}
    for i, payload, _owner, encounter in staged:
        if encounter is not None and payload["resourceType"] != "Patient":
            by_encounter.setdefault(encounter, set()).update(own[i])
    source = Source(SOURCE_SYSTEM, fac, key)
    fallback = timestamp or recorded_at
    staged.sort(key=lambda item: (item[1]["resourceType"] != "Patient", item[0]))
    for i, payload, owner, encounter in staged:
        kind = payload["resourceType"]
        flags = own[i] | (by_encounter.get(encounter, set()) if kind != "Patient" and encounter is not None else set())
        event = Envelope(
            event_id=event_id(SOURCE_SYSTEM, fac, key, positions[i]),
            type=EVENT_TYPE[kind],
            occurred_at=_occurred(payload, fallback),
            recorded_at=recorded_at,
            source=source,
            subject=mapped_patients[owner][1],
            payload=payload,
            sensitivity=tuple(name for name in sensitivity.CATEGORIES if name in flags),
        )
        result.mapped.append(EntryEvents(i, kind, valid[i][2], hub_refs[owner], [event]))
        result.counts[f"{kind}.mapped"] += 1
    result.failures.sort(key=lambda f: -1 if f.index is None else f.index)
    return result


def read_bundle(source: Any, *, received_at: str | None = None, facility: str | None = None,
                max_bytes: int = bundle_io.DEFAULT_MAX_BYTES) -> BundleResult:
    """A path, bytes or binary file -> BundleResult (``translate_bundle`` after the size check)."""
    try:
        data = bundle_io.read_bytes(source, max_bytes)
    except bundle_io.BundleError as exc:
        result = BundleResult(error=exc.reason)
        _fail(result, "parse", exc.kind, None, "", exc.reason, b"")
        return result
    return translate_bundle(data, received_at=received_at, facility=facility)
