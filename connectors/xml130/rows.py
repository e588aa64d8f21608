"""Helpers every table mapper shares: rows with their keys, the per-row failure loop, times, performers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.xml130.context import Context, legacy_names
from connectors.xml130.errors import MappingError
from connectors.xml130.flat import Table
from connectors.xml130.output import Output
from connectors.xml130.values import date_time, split

SYSTEM_PRACTITIONER = "urn:hssk:xml130:ma-bac-si"  # practising-certificate codes (MA_BAC_SI, NGUOI_THUC_HIEN)

Row = tuple[int, str, dict[str, str], Table]  # (position, key, fields, the table: for a failed row's bytes)


def rows(table: Table, legacy: bool = False) -> list[Row]:
    """Key each row by STT (its sequence number) when the source gives one, else by its position."""
    if legacy:
        for f in table.records:
            legacy_names(f)
    return [(position, f.get("STT") or f"#{position}", f, table) for position, f in enumerate(table.records, start=1)]


def each(table: str, records: list[Row], ctx: Context, out: Output,
         map_row: Callable[[dict[str, str], str], None]) -> None:
    """Map every row on its own: a MappingError costs only that row (a Failure with the row's bytes)."""
    seen: set[str] = set()
    for position, key, f, source in records:
        try:
            if key in seen:
                raise MappingError("value", "STT repeats an earlier row's")
            seen.add(key)
            if f.get("MA_LK", ctx.ma_lk) != ctx.ma_lk:
                raise MappingError("value", "MA_LK differs from the XML1 record's")
            map_row(f, key)
        except MappingError as exc:
            out.row_failed(table, position, exc, source.original(position - 1))
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
