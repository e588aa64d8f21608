"""The electronic health book summary (QĐ 1332/2024): four groups, built from what the record holds.

    administrative   name, sex, birth date, address, contact, identifiers
    history          allergies, illnesses, immunisations (empty until the record keeps those sections)
    encounters       each encounter, newest first
    summary          counts, first and last encounter, facilities, last update, what is not recorded yet

The health book is citizen-facing, so entries with a sensitivity flag are left out and only counted, unless
the reader is entitled to their category (a fan-out subscription's ``entitled``; the API entitles none).
Used by the record API (GET .../health-book) and by the fan-out's health-book format: one implementation.
History sections are read by the names the record is expected to use; their entries are passed through
(minus provenance) whatever their shape, so new sections show up without a change here.
"""

from __future__ import annotations

from typing import Any

from hub.fanout.filters import allowed

Record = dict[str, Any]

HISTORY_SECTIONS = {"allergies": ("allergies", "allergy_intolerances"),
                    "illnesses": ("conditions", "illnesses"),
                    "immunizations": ("immunizations",)}


def _items(section: Any) -> list[Any]:
    if isinstance(section, dict):
        return [{"id": k, **v} if isinstance(v, dict) else v for k, v in sorted(section.items())]
    if isinstance(section, list):
        return list(section)
    return []


def _strip(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    out = {k: v for k, v in item.items() if k != "provenance"}
    facility = (item.get("provenance") or {}).get("facility")
    if facility and "facility" not in out:
        out["facility"] = facility
    return out


def _administrative(record: Record) -> dict[str, Any]:
    demo = record.get("demographics") or {}
    name = demo.get("name") or {}
    address = demo.get("address") or {}
    return {
        "name": name.get("text") or " ".join([name.get("family", ""), *name.get("given", [])]).strip() or None,
        "family": name.get("family"),
        "given": name.get("given", []),
        "gender": demo.get("gender"),
        "birth_date": demo.get("birth_date"),
        "address": address.get("text"),
        "telecom": [t.get("value") for t in demo.get("telecom", []) if t.get("value")],
        "identifiers": [{"system": i["system"], "value": i["value"]} for i in record.get("identifiers", [])],
    }


def _encounter(encounter_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    period = entry.get("period") or {}
    return {"id": encounter_id, "facility": entry.get("facility"), "class": entry.get("class"),
            "status": entry.get("status"), "start": period.get("start"), "end": period.get("end")}


def health_book(record: Record, entitled: frozenset[str] = frozenset()) -> dict[str, Any]:
    def visible(item: Any) -> bool:
        return not isinstance(item, dict) or allowed(item.get("sensitivity"), entitled)

    withheld = 0
    history: dict[str, list[Any]] = {}
    not_recorded = []
    for group, names in HISTORY_SECTIONS.items():
        present = [n for n in names if n in record]
        if not present:
            not_recorded.append(group)
        items = [i for n in present for i in _items(record[n])]
        withheld += sum(not visible(i) for i in items)
        history[group] = [_strip(i) for i in items if visible(i)]
    raw_encounters = record.get("encounters") or {}
    withheld += sum(not visible(e) for e in raw_encounters.values())
    encounters = sorted((_encounter(k, e) for k, e in raw_encounters.items() if visible(e)),
                        key=lambda e: (e["start"] or "", e["id"]), reverse=True)
    starts = sorted(e["start"] for e in encounters if e["start"])
    return {
        "citizen_id": record["citizen_id"],
        "record_version": record.get("version", 0),
        "administrative": _administrative(record),
        "history": history,
        "encounters": encounters,
        "summary": {
            "encounter_count": len(encounters),
            "first_encounter": starts[0] if starts else None,
            "last_encounter": starts[-1] if starts else None,
            "facilities": sorted({e["facility"] for e in encounters if e["facility"]}),
            "last_updated": record.get("updated_at"),
            "not_recorded_yet": not_recorded,
            "withheld_sensitive": withheld,
        },
    }
