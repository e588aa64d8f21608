"""Streaming the export: the GIAMDINHHS envelope read in fixed-size chunks, one HOSO at a time.

The envelope is parsed by libxml2's push parser with a target (SAX-style callbacks), not into a tree: only
the facility code, each FILEHOSO's LOAIHOSO and its NOIDUNGFILE text are kept, and a NOIDUNGFILE over the
size limit stops being collected the moment it passes it (libxml2's own text-node limit would instead end
the whole file). Memory is one chunk plus the HOSO being read, whatever the file's size: a month's export of
several gigabytes streams in the same few megabytes.

A file whose first element is not GIAMDINHHS is a bare table document, read whole (up to the table limit).
"""

from __future__ import annotations

import io
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from lxml import etree

from connectors.xml130.errors import TableError
from connectors.xml130.layout import ENVELOPE_ROOT
from connectors.xml130.safe import HARDENED

_FIRST_ELEMENT = re.compile(rb"<(?![?!])([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
PEEK_BYTES = 64 * 1024  # enough to see the first element after any real prolog

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits; every one is a per-record failure when crossed, except ``max_file_bytes`` (the file)."""

    max_table_bytes: int = 32 * 1024 * 1024  # one decoded table document
    max_tables_per_hoso: int = 32
    max_file_bytes: int | None = None  # None: stream any size
    chunk_bytes: int = 1024 * 1024


@dataclass(slots=True)
class RawTable:
    kind: str  # LOAIHOSO, e.g. "XML2"
    base64: str | None  # NOIDUNGFILE text, None when it could not be collected
    problem: TableError | None = None


@dataclass(slots=True)
class RawHoso:
    index: int  # 1-based
    facility: str  # THONGTINDONVI/MACSKCB ("" when absent)
    tables: list[RawTable] = field(default_factory=list)


class _Envelope:
    """lxml parser target: collects HOSO after HOSO into ``done``; callbacks stay cheap (no tree is built)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.max_text = (limits.max_table_bytes // 3 + 1) * 4 + limits.max_table_bytes // 40 + 16
        self.facility = ""
        self.done: deque[RawHoso] = deque()
        self.count = 0
        self.hoso: RawHoso | None = None
        self.kind: str | None = None
        self.content: list[str] | None = None
        self.size = 0
        self.oversize = False
        self.capture: list[str] | None = None  # the text being collected (LOAIHOSO, NOIDUNGFILE, MACSKCB)
        self.root_seen = False

    def doctype(self, name: str | None, public_id: str | None, system_url: str | None) -> None:
        raise TableError("dtd", "export declares a DOCTYPE (forbidden: entity expansion / external entities)")

    def start(self, tag: str, attrib: object) -> None:
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        if not self.root_seen:
            self.root_seen = True
            if tag != ENVELOPE_ROOT:
                raise TableError("envelope", f"root element is {tag}, expected {ENVELOPE_ROOT}")
        if tag == "NOIDUNGFILE" and self.hoso is not None:
            self.content, self.size, self.oversize = [], 0, False
            self.capture = self.content
        elif tag == "LOAIHOSO" or (tag == "MACSKCB" and self.hoso is None):
            self.capture = []
        elif tag == "HOSO":
            self.count += 1
            self.hoso = RawHoso(self.count, self.facility)
        elif tag == "FILEHOSO":
            self.kind, self.content = None, None

    def data(self, text: str) -> None:
        capture = self.capture
        if capture is None:
            return
        if capture is self.content:
            self.size += len(text)
            if self.size > self.max_text:
                self.oversize = True
                self.capture = None
                self.content = []
                return
        capture.append(text)

    def end(self, tag: str) -> None:
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        if tag == "NOIDUNGFILE":
            self.capture = None
        elif tag == "LOAIHOSO":
            self.kind = "".join(self.capture or ()).strip().upper()
            self.capture = None
        elif tag == "MACSKCB" and self.hoso is None:
            self.facility = "".join(self.capture or ()).strip()
            self.capture = None
        elif tag == "FILEHOSO" and self.hoso is not None:
            self._table()
        elif tag == "HOSO" and self.hoso is not None:
            self.done.append(self.hoso)
            self.hoso = None

    def _table(self) -> None:
        assert self.hoso is not None
        kind = self.kind or "?"
        if len(self.hoso.tables) >= self.limits.max_tables_per_hoso:
            problem = TableError("size", f"HOSO has more than {self.limits.max_tables_per_hoso} FILEHOSO")
            self.hoso.tables.append(RawTable(kind, None, problem))
        elif self.oversize:
            self.hoso.tables.append(RawTable(kind, None, TableError(
                "size", f"NOIDUNGFILE decodes to more than the {self.limits.max_table_bytes:,}-byte limit")))
        elif self.content is None:
            self.hoso.tables.append(RawTable(kind, None, TableError("table", "FILEHOSO has no NOIDUNGFILE")))
        else:
            self.hoso.tables.append(RawTable(kind, "".join(self.content)))
        if not self.kind:
            self.hoso.tables[-1].problem = TableError("table", "FILEHOSO has no LOAIHOSO")
        self.kind, self.content, self.oversize = None, None, False

    def close(self) -> int:
        return self.count


def open_source(source: Source) -> tuple[BinaryIO, bool]:
    """A binary stream over ``source`` and whether the caller must close it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True  # noqa: SIM115 - closed by the reader
    return source, False


def first_element(head: bytes) -> str | None:
    """The name of the document's first element (after the prolog), or None if ``head`` shows none."""
    match = _FIRST_ELEMENT.search(head)
    return match.group(2).decode("ascii") if match else None


class EnvelopeError(Exception):
    """The envelope itself broke (not well-formed, truncated, forbidden DTD): reading stops here."""

    def __init__(self, error: TableError, hoso_read: int) -> None:
        super().__init__(error.reason)
        self.error = error
        self.hoso_read = hoso_read


def stream_envelope(head: bytes, rest: BinaryIO, limits: Limits) -> Iterator[RawHoso]:
    """Yield each HOSO as soon as its end tag is read; raise EnvelopeError when the envelope breaks."""
    target = _Envelope(limits)
    parser = etree.XMLParser(target=target, **HARDENED)
    total = 0
    chunk = head
    try:
        while chunk:
            total += len(chunk)
            if limits.max_file_bytes is not None and total > limits.max_file_bytes:
                raise TableError("size", f"export is over the {limits.max_file_bytes:,}-byte file limit")
            parser.feed(chunk)
            while target.done:
                yield target.done.popleft()
            chunk = rest.read(limits.chunk_bytes)
        parser.close()
    except etree.XMLSyntaxError as exc:
        while target.done:
            yield target.done.popleft()
        message = str(exc.msg or exc).split(", line ")[0]
        inside = f" inside HOSO {target.hoso.index}" if target.hoso is not None else ""
        kind = "truncated" if not chunk else "envelope"
        raise EnvelopeError(TableError(kind, f"export is not well-formed{inside} (line {exc.lineno}): "
                                             f"{message}"), target.count - (target.hoso is not None)) from None
    except TableError as exc:
        raise EnvelopeError(exc, target.count - (target.hoso is not None)) from None
    while target.done:
        yield target.done.popleft()
