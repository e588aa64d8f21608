"""The vaccination-registry CSV (``vaccination-registry-export.md``) as ``SourceRecord``s for linkage.

The format is read by ``connectors.registry`` (one reader of that format for import and linkage); this module
only picks the columns the matcher compares. Unreadable rows are reported with their line number and reason,
never their content, and the rest of the file continues.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from connectors.registry import BadRow, RegistryFormatError, iter_values
from hub.identity.records import SourceRecord

__all__ = ["BadRow", "RegistryFormatError", "read_file", "read_records"]


def read_records(stream: TextIO, bad: list[BadRow] | None = None) -> Iterator[SourceRecord]:
    """Yield one SourceRecord per readable row; unreadable rows are appended to ``bad``."""
    for item in iter_values(stream):
        if isinstance(item, BadRow):
            if bad is not None:
                bad.append(item)
            continue
        _, row = item
        yield SourceRecord(record_id=row[0], name=row[1], birth_date=row[2], sex=row[3], personal_id=row[4],
                           insurance=row[5], phone=row[6], address=row[7], ward=row[8], facility=row[14],
                           event_date=row[13])


def read_file(path: Path, bad: list[BadRow] | None = None) -> list[SourceRecord]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(read_records(f, bad))
