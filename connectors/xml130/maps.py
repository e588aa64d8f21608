"""Code maps for the BHYT XML reader: data in ``maps.json``, loaded and checked once at import.

Every table has a default. A code a table does not list gets the default and the miss is counted in
``UNMAPPED`` by (table, code); codes are not personal data, so the counter may become a metric label.
Tables with a ``system`` give FHIR Codings whose code is the source code passed through unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.codemap import CodeMap

MAPS_PATH = Path(__file__).with_name("maps.json")

UNMAPPED: Counter[tuple[str, str]] = Counter()


@dataclass(frozen=True, slots=True)
class Maps:
    gender: CodeMap  # -> "male" | "female" | "unknown"
    encounter_class: CodeMap  # -> Coding dict (shared: copy before putting it in a payload)
    encounter_type: CodeMap  # -> Vietnamese display
    treatment_outcome: CodeMap  # -> Vietnamese display
    discharge_type: CodeMap  # -> {"display", "hl7"?}
    discharge_hl7_system: str
    service_group: CodeMap  # -> "procedure" | "supply" | "bed" | "transport" | "visit"
    procedure_category: CodeMap  # -> Coding dict (shared)
    tables: CodeMap  # LOAIHOSO -> mapper name | "sensitive" | "unmapped"
    aliases_4210: dict[str, str]  # QD 4210 field name -> QD 130 field name
    hiv_prefixes: tuple[str, ...]  # ICD-10 prefixes that make an encounter HIV-sensitive


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name)
    if not isinstance(table, dict) or not isinstance(table.get("codes"), dict) or "default" not in table:
        raise ValueError(f"{MAPS_PATH.name}: table {name!r} needs 'codes' and a 'default' entry")
    return table


def _coding_map(data: dict[str, Any], name: str) -> CodeMap:
    table = _table(data, name)
    system = table.get("system")
    if not system:
        raise ValueError(f"{MAPS_PATH.name}: table {name!r} needs a 'system'")

    def coding(entry: Any) -> dict[str, str]:
        if not isinstance(entry, dict) or not entry.get("code") or not entry.get("display"):
            raise ValueError(f"{name}: {entry!r} needs a code and a display")
        return {"system": system, "code": entry["code"], "display": entry["display"]}

    return CodeMap(name, {c: coding(e) for c, e in table["codes"].items()}, coding(table["default"]), UNMAPPED,
                   system)


def _plain_map(data: dict[str, Any], name: str, allowed: frozenset[str] | None = None) -> CodeMap:
    table = _table(data, name)
    values = [*table["codes"].values(), table["default"]]
    if allowed is not None and not set(values) <= allowed:
        raise ValueError(f"{name}: values must be among {sorted(allowed)}")
    return CodeMap(name, dict(table["codes"]), table["default"], UNMAPPED, table.get("system"))


def load(path: Path = MAPS_PATH) -> Maps:
    """Read and check every table; a malformed file is a ValueError at start-up, never a per-record error."""
    data = json.loads(path.read_text(encoding="utf-8"))
    discharge = _table(data, "discharge_type")
    for entry in [*discharge["codes"].values(), discharge["default"]]:
        if not isinstance(entry, dict) or not entry.get("display"):
            raise ValueError(f"discharge_type: {entry!r} needs a display")
    prefixes = data.get("hiv_icd10_prefixes", {}).get("prefixes")
    if not isinstance(prefixes, list) or not prefixes:
        raise ValueError(f"{path.name}: hiv_icd10_prefixes needs a list of prefixes")
    return Maps(
        gender=_plain_map(data, "gender", frozenset({"male", "female", "other", "unknown"})),
        encounter_class=_coding_map(data, "encounter_class"),
        encounter_type=_plain_map(data, "encounter_type"),
        treatment_outcome=_plain_map(data, "treatment_outcome"),
        discharge_type=CodeMap("discharge_type", dict(discharge["codes"]), discharge["default"], UNMAPPED,
                               discharge.get("system")),
        discharge_hl7_system=discharge["hl7_system"],
        service_group=_plain_map(data, "service_group",
                                 frozenset({"procedure", "supply", "bed", "transport", "visit"})),
        procedure_category=_coding_map(data, "procedure_category"),
        tables=_plain_map(data, "tables", frozenset({"summary", "drugs", "services", "results", "notes",
                                                     "sensitive", "discharge_paper", "record_summary",
                                                     "unmapped"})),
        aliases_4210=dict(_table(data, "aliases_4210")["codes"]),
        hiv_prefixes=tuple(prefixes),
    )


MAPS = load()
