"""Reading the registry CSV: UTF-8 (BOM or not), RFC 4180, the documented header; a row that cannot be read
is reported with its line number and reason (never its content) and the rest of the file continues."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

COLUMNS = ("record_id", "ho_ten", "ngay_sinh", "gioi_tinh", "so_cccd", "so_bhyt", "so_dien_thoai", "dia_chi",
           "ma_xa", "ma_vaccine", "ten_vaccine", "so_lo", "mui_thu", "ngay_tiem", "ma_co_so")


class RegistryFormatError(ValueError):
    """The header is not the registry's: no column can be trusted, so nothing in the file is read."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based line of the row in the file (the header is line 1)
    fields: dict[str, str]
    original: bytes  # the row as CSV, for the raw record and the DLQ


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str
    original: bytes


def _as_csv(values: list[str]) -> bytes:
    """The row as csv.writer writes it (minimal quoting, ``\n``): a field with a comma or a quote is quoted here
    (addresses often have commas); the rare rows with a line break or a single field take the writer itself."""
    line = ",".join(values)
    if line.count(",") == len(values) - 1 and '"' not in line:
        if "\n" not in line and "\r" not in line and (line or len(values) != 1):
            return (line + "\n").encode("utf-8")
    elif "\n" not in line and "\r" not in line and len(values) != 1:
        return (",".join([_quoted(v) if "," in v or '"' in v else v for v in values]) + "\n").encode("utf-8")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue().encode("utf-8")


# How many of the latest record ids a repeat is looked for in (between this and twice this). Bounded memory:
# a set of every id grew ~110 bytes a row (~1 GB for the 9.1 M-row registry); a repeat further apart is not
# reported, and needs no defence: its events have the same deterministic ids, so it changes nothing downstream.
REPEAT_WINDOW = 50_000


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def iter_values(stream: TextIO, repeat_window: int = REPEAT_WINDOW) -> Iterator[tuple[int, list[str]] | BadRow]:
    """(line, the 15 stripped values) per readable row, or a BadRow; the lean path for batch linkage.

    A record id that repeats one of the last ``repeat_window`` rows' (at least) is a BadRow.
    """
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    if tuple(h.strip() for h in header) != COLUMNS:
        raise RegistryFormatError(f"header is not the vaccination registry's ({', '.join(COLUMNS)})")
    width = len(COLUMNS)
    recent: set[str] = set()
    older: set[str] = set()  # the window before ``recent``: together at least the last repeat_window ids
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a NUL byte or a runaway quote: this row only
            yield BadRow(reader.line_num, f"not readable as CSV ({exc})", b"")
            continue
        line = reader.line_num
        if not values:
            continue
        if len(values) != width:
            yield BadRow(line, f"expected {width} columns, found {len(values)}", _as_csv(values))
            continue
        values = list(map(str.strip, values))
        rid = values[0]
        if not rid or rid in recent or rid in older:
            yield BadRow(line, "record_id is empty" if not rid else "record_id repeats an earlier row",
                         _as_csv(values))
            continue
        recent.add(rid)
        if len(recent) >= repeat_window:
            older, recent = recent, set()
        yield line, values


def row_of(line: int, values: list[str]) -> Row:
    """The Row of one ``iter_values`` item (an importer ships the lean items to its worker processes)."""
    return Row(line, dict(zip(COLUMNS, values)), _as_csv(values))


def read_rows(stream: TextIO) -> Iterator[Row | BadRow]:
    """Yield every row of ``stream`` (opened with ``newline=""``) as a Row (with its CSV text) or a BadRow."""
    for item in iter_values(stream):
        yield item if isinstance(item, BadRow) else row_of(*item)
