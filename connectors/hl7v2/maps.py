"""Code maps for HL7 v2 translation: data in ``maps.json``, loaded and checked once at import.

Every table has a default entry. A code a table does not list gets the default: for closed FHIR value sets
(gender, Encounter.class, statuses, the ``use`` fields) that is a fixed value; for identifier types and
coding systems the default is a template the code passes through into (``urn:hssk:hl7v2:id-type:<code>``,
``urn:hssk:hl7v2:code-system:<name>``); for open tables (interpretation, relationship, route, site) the
default is null and the translator keeps the code in its HL7 v2 table. Either way the miss is counted in
``UNMAPPED`` by (table, code), so operators can see which codes to add. Codes are not personal data, so the
counter may become a metric label. (Helpers that memoise their results, such as coded values and
identifier systems, count a miss once per distinct value.)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hub import envelope
from hub.codemap import CodeMap, TemplateMap

MAPS_PATH = Path(__file__).with_name("maps.json")

# (table, code) -> how many times the code was not in the table, since the process started.
UNMAPPED: Counter[tuple[str, str]] = Counter()

# The identifier systems a map entry may name; everything else must be a literal URI.
_SYSTEMS: dict[str, str] = {
    name: getattr(envelope, name) for name in ("SYSTEM_CCCD", "SYSTEM_BHYT", "SYSTEM_OLD_ID", "SYSTEM_PASSPORT")
}

# Tables whose values are Codings of one code system (the table names it in "system").
CODING_TABLES = frozenset({"encounter_class", "interpretation", "diagnosis_use", "relationship", "route", "site"})

SystemResolver = Callable[[str, str], str]  # (type code, scope: CX.4 assigner or sending facility) -> system


@dataclass(frozen=True, slots=True)
class Maps:
    administrative_sex: CodeMap  # -> "male" | "female" | "other" | "unknown"
    encounter_class: CodeMap  # -> Coding dict (shared: copy before putting it in a payload)
    identifier_type: CodeMap  # -> SystemResolver
    name_use: CodeMap
    address_use: CodeMap  # -> str | None
    telecom_use: CodeMap  # -> str | None
    telecom_system: CodeMap
    coding_system: CodeMap  # -> str | None (CWE.3 name of coding system -> URI; unknown names pass through)
    interpretation: CodeMap  # -> Coding dict | None
    observation_status: CodeMap
    report_status: CodeMap
    diagnosis_use: CodeMap  # -> Coding dict | None
    allergy_category: CodeMap  # -> str | None
    allergy_criticality: CodeMap  # -> str | None
    relationship: CodeMap  # -> Coding dict | None
    route: CodeMap  # -> Coding dict | None
    site: CodeMap  # -> Coding dict | None
    immunization_status: CodeMap
    order_status: CodeMap  # -> {"service": status, "medication": status}
    document_status: CodeMap  # -> str | None
    document_availability: CodeMap
    appointment_status: CodeMap
    condition_clinical: CodeMap  # -> str | None
    section_category: CodeMap  # -> str | None (observation-category code)

    def identifier_system(self, type_code: str, scope: str) -> str:
        """Identifier.system for CX.5 ``type_code``; ``scope`` is CX.4 or the sending facility (for MRNs)."""
        return self.identifier_type(type_code)(type_code, scope)


def _system_resolver(table: str, entry: Any) -> SystemResolver:
    if entry == "mrn_system":
        return lambda _code, scope: envelope.mrn_system(quote(scope, safe=""))
    if isinstance(entry, str) and entry in _SYSTEMS:
        system = _SYSTEMS[entry]
        return lambda _code, _scope: system
    if isinstance(entry, str) and (entry.startswith("urn:") or "://" in entry):
        return lambda _code, _scope: entry
    raise ValueError(f"{table}: {entry!r} is neither mrn_system, one of {sorted(_SYSTEMS)}, nor a URI")


def _passthrough(table: str, template: Any) -> SystemResolver:
    if not isinstance(template, str) or "{code}" not in template:
        raise ValueError(f"{table}: the default must be a template containing {{code}}")
    return lambda code, _scope: template.format(code=quote(code, safe=""))


def _coding(table: str, system: str, entry: Any) -> dict[str, str] | None:
    if entry is None:
        return None
    if not isinstance(entry, dict) or not entry.get("code") or not entry.get("display"):
        raise ValueError(f"{table}: {entry!r} needs a code and a display")
    return {"system": system, "code": entry["code"], "display": entry["display"]}


def load(path: Path = MAPS_PATH) -> Maps:
    """Read and check every table; a malformed file is a ValueError at start-up, never a per-message error."""
    data = json.loads(path.read_text(encoding="utf-8"))
    tables: dict[str, CodeMap] = {}
    for f in fields(Maps):
        table = data.get(f.name)
        if not isinstance(table, dict) or not isinstance(table.get("codes"), dict) or "default" not in table:
            raise ValueError(f"{path.name}: table {f.name!r} needs 'codes' and a 'default' entry")
        codes, default = table["codes"], table["default"]
        if f.name == "identifier_type":
            codes = {code: _system_resolver(f.name, entry) for code, entry in codes.items()}
            default = _passthrough(f.name, default)
        elif f.name in CODING_TABLES:  # a table of Codings from one code system
            system = table.get("system")
            if not system:
                raise ValueError(f"{path.name}: table {f.name!r} needs a 'system'")
            codes = {code: _coding(f.name, system, entry) for code, entry in codes.items()}
            default = _coding(f.name, system, default)
        elif isinstance(default, str) and "{code}" in default:  # unknown codes pass through into a template
            tables[f.name] = TemplateMap(f.name, codes, default, UNMAPPED)
            continue
        tables[f.name] = CodeMap(f.name, codes, default, UNMAPPED)
    return Maps(**tables)


MAPS = load()
