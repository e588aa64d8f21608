"""Helpers every table mapper shares: rows with their keys, the per-row failure loop, times, performers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from connectors.xml130.context import Context, fields
from connectors.xml130.errors import MappingError
from connectors.xml130.output import Output
from connectors.xml130.values import date_time, split

SYSTEM_PRACTITIONER = "urn:hssk:xml130:ma-bac-si"  # practising-certificate codes (MA_BAC_SI, NGUOI_THUC_HIEN)

Row = tuple[int, str, dict[str, str], etree._Element]  # (position, key, fields, element)


def rows(records: list[etree._Element], legacy: bool = False) -> list[Row]:
    """Key each row by STT (its sequence number) when the source gives one, else by its position."""
    out = []
    for position, element in enumerate(records, start=1):
        f = fields(element, legacy)
        out.append((position, f.get("STT") or f"#{position}", f, element))
    return out


def each(table: str, records: list[Row], ctx: Context, out: Output,
         map_row: Callable[[dict[str, str], str], None]) -> None:
    """Map every row on its own: a MappingError costs only that row (a Failure with the row's bytes)."""
    seen: set[str] = set()
    for position, key, f, element in records:
        try:
            if key in seen:
                raise MappingError("value", "STT repeats an earlier row's")
            seen.add(key)
            if f.get("MA_LK", ctx.ma_lk) != ctx.ma_lk:
                raise MappingError("value", "MA_LK differs from the XML1 record's")
            map_row(f, key)
        except MappingError as exc:
            out.row_failed(table, position, exc, etree.tostring(element, encoding="utf-8"))
    out.counts[f"{table}.rows"] += len(records)


def when(f: dict[str, str], *names: str) -> str | None:
    """The first of ``names`` present, as a FHIR dateTime."""
    for name in names:
        if name in f:
            return date_time(f[name], name)
    return None


def practitioners(f: dict[str, str], *names: str) -> list[dict[str, Any]]:
    """Practitioner codes of the named fields (each may hold several, ``;``-separated) as identifier refs."""
    if len(names) == 1:  # the common case, kept cheap: one field, usually one code
        value = f.get(names[0])
        if not value:
            return []
        if ";" not in value:
            return [{"identifier": {"system": SYSTEM_PRACTITIONER, "value": value}}]
    codes: dict[str, None] = {}
    for name in names:
        codes.update(dict.fromkeys(split(f.get(name, ""))))
    return [{"identifier": {"system": SYSTEM_PRACTITIONER, "value": code}} for code in codes]
