"""Reading the vaccination-registry CSV (``vaccination-registry-export.md``) into ``SourceRecord``s.

UTF-8 with or without BOM, RFC 4180, header row. A row that cannot be read (wrong column count, duplicate
or empty record_id) is reported with its line number and reason — never its content — and the rest of the
file continues.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hub.identity.records import SourceRecord

COLUMNS = ("record_id", "ho_ten", "ngay_sinh", "gioi_tinh", "so_cccd", "so_bhyt", "so_dien_thoai", "dia_chi",
           "ma_xa", "ma_vaccine", "ten_vaccine", "so_lo", "mui_thu", "ngay_tiem", "ma_co_so")


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


class RegistryFormatError(ValueError):
    """The header is not the registry's: nothing in the file can be trusted to be in the right column."""


def read_records(stream: TextIO, bad: list[BadRow] | None = None) -> Iterator[SourceRecord]:
    """Yield one SourceRecord per readable row; unreadable rows are appended to ``bad``."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    if tuple(h.strip() for h in header) != COLUMNS:
        raise RegistryFormatError("header is not the vaccination registry's column list")
    seen: set[str] = set()
    width = len(COLUMNS)
    for row in reader:
        line = reader.line_num
        if len(row) != width:
            if row and bad is not None:
                bad.append(BadRow(line, f"expected {width} columns, found {len(row)}"))
            continue
        rid = row[0].strip()
        if not rid or rid in seen:
            if bad is not None:
                bad.append(BadRow(line, "empty record_id" if not rid else "duplicate record_id"))
            continue
        seen.add(rid)
        yield SourceRecord(record_id=rid, name=row[1], birth_date=row[2], sex=row[3], personal_id=row[4],
                           insurance=row[5], phone=row[6], address=row[7], ward=row[8], facility=row[14],
                           event_date=row[13])


def read_file(path: Path, bad: list[BadRow] | None = None) -> list[SourceRecord]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(read_records(f, bad))
