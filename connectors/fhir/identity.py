"""Who a bundle is about and where it comes from: the facility (MA_CSKCB) and each Patient's identifiers in
the hub's naming systems (hub.envelope), which is what the MPI links on.

Identifier systems: the hub's own (``.../sid/national_id`` ...) are kept; an identifier typed with a
v2-0203 code (``identifier.type``) and some other system is renamed by that type (MR -> the facility's MRN
system, NNVNM/NI -> CCCD or the old 9-digit ID by shape, PPN -> passport, HC -> BHYT); anything else passes
through unchanged. A BHYT card also gives its lifelong BHXH number (last 10 digits), as elsewhere in the hub.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from connectors.registry.translate import FACILITY_SYSTEM
from hub.envelope import (
    SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Identifier, Subject, mrn_system,
)

_MRN_PREFIX = mrn_system("")
_TYPE_SYSTEMS = {"MR": "mrn", "NNVNM": "national", "NI": "national", "CCCD": "national", "CMND": SYSTEM_OLD_ID,
                 "PPN": SYSTEM_PASSPORT, "HC": SYSTEM_BHYT, "BHYT": SYSTEM_BHYT}
_GENDERS = frozenset({"male", "female", "other", "unknown"})


def facility_of(patients: list[dict[str, Any]], organizations: dict[str, dict[str, Any]],
                resolve: Any) -> str:
    """MA_CSKCB from a Patient's MRN system (``.../sid/mrn/<code>``), else from the Organization a Patient is
    managed by, else from the bundle's only Organization, with a ``.../sid/facility`` identifier; "" if none."""
    for patient in patients:
        for ident in patient.get("identifier") or ():
            system = ident.get("system") or ""
            if system.startswith(_MRN_PREFIX) and len(system) > len(_MRN_PREFIX):
                return system[len(_MRN_PREFIX):]
    candidates = [resolve((p.get("managingOrganization") or {}).get("reference")) for p in patients]
    candidates = [organizations[c] for c in candidates if c in organizations]
    if not candidates and len(organizations) == 1:
        candidates = list(organizations.values())
    for org in candidates:
        for ident in org.get("identifier") or ():
            if ident.get("system") == FACILITY_SYSTEM and ident.get("value"):
                return str(ident["value"])
    return ""


def _type_code(ident: dict[str, Any]) -> str:
    for coding in (ident.get("type") or {}).get("coding") or ():
        if coding.get("code"):
            return str(coding["code"])
    return ""


def _system(ident: dict[str, Any], facility: str) -> str:
    system, value = ident.get("system") or "", str(ident.get("value") or "")
    if system in (SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, SYSTEM_BHYT, SYSTEM_BHXH) or \
            system.startswith(_MRN_PREFIX):
        return system
    target = _TYPE_SYSTEMS.get(_type_code(ident))
    if target == "mrn":
        return mrn_system(facility)
    if target == "national":
        digits = value.replace(" ", "")
        return SYSTEM_CCCD if len(digits) == 12 and digits.isdigit() else \
            SYSTEM_OLD_ID if len(digits) == 9 and digits.isdigit() else system
    return target or system


def map_identifiers(patient: dict[str, Any], facility: str) -> tuple[list[dict[str, Any]], str]:
    """The Patient's identifiers in the hub's systems (other fields of each kept), and its MRN ("" if none)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    mrn = ""
    for ident in patient.get("identifier") or ():
        value = str(ident.get("value") or "").strip()
        if not value:
            continue
        system = _system(ident, facility)
        if system.startswith(_MRN_PREFIX) and not mrn and system == mrn_system(facility):
            mrn = value
        extra = [(system, value)]
        if system == SYSTEM_BHYT and len(value) in (10, 15) and value[-10:].isdigit():
            extra.append((SYSTEM_BHXH, value[-10:]))
        for i, (sys_, val) in enumerate(extra):
            if (sys_, val) in seen:
                continue
            seen.add((sys_, val))
            if not sys_:  # valid FHIR, kept as sent; the MPI cannot use an identifier without a system
                out.append(dict(ident))
            else:
                out.append({**ident, "system": sys_, "value": val} if i == 0 else {"system": sys_, "value": val})
    return out, mrn


def subject_of(patient: dict[str, Any]) -> Subject:
    """The envelope subject: identifiers as mapped, the official (else first) name, birth date, sex."""
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = name.get("family")
    given = tuple(name.get("given") or ())
    if not family and not given and name.get("text"):  # "Nguyễn Văn An": family first, as spoken
        words = name["text"].split()
        family, given = words[0], tuple(words[1:])
    gender = patient.get("gender")
    return Subject(
        identifiers=tuple(Identifier(i["system"], i["value"]) for i in patient.get("identifier") or ()
                          if i.get("system") and i.get("value")),
        family=unicodedata.normalize("NFC", family) if family else None,
        given=tuple(unicodedata.normalize("NFC", g) for g in given),
        birth_date=patient.get("birthDate"),
        sex=gender if gender in _GENDERS else None,
    )
