"""The one format detection for EMR files: ``hub import``, ``hub watch`` and ``hub translate`` all ask here.

Decided from the first bytes (BOM and leading whitespace skipped), never from the file name: drop folders
and exports carry whatever names the hospital's scripts give them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

HEAD_BYTES = 4096
FORMATS = ("xml130", "registry", "hl7v2", "fhir")
# What one "record" of each format is, for summaries.
UNITS = {"xml130": "encounters", "registry": "rows", "hl7v2": "messages", "fhir": "entries"}
NAMES = {"xml130": "BHYT XML", "registry": "registry CSV", "hl7v2": "HL7 v2", "fhir": "FHIR Bundle"}
UNKNOWN_REASON = "not a format the hub reads (BHYT XML, registry CSV, HL7 v2 or a FHIR Bundle in JSON)"

_UTF16_XML = (b"\xff\xfe<\x00", b"\xfe\xff\x00<")  # read as BHYT XML, whose reader names the encoding problem


def detect_format(head: bytes) -> str:
    """``xml130``, ``registry``, ``hl7v2``, ``fhir`` or ``unknown``, from a file's first bytes."""
    if head.startswith(_UTF16_XML):
        return "xml130"
    start = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if start.startswith(b"<"):
        return "xml130"
    if start.startswith(b"{"):
        return "fhir"
    if start.startswith(b"record_id,"):
        return "registry"
    if start.lstrip(b"\x0b")[:3] in (b"MSH", b"FHS", b"BHS"):  # \x0b: a capture of an MLLP stream
        return "hl7v2"
    return "unknown"


def sniff(path: Path) -> str:
    """The format of a file; OSError when it cannot be opened."""
    with open(path, "rb") as f:
        return detect_format(f.read(HEAD_BYTES))


def utf8_lines(raw: BinaryIO, undecodable: dict[int, bytes]) -> Iterator[str]:
    """The lines of a binary file as text for the CSV reader. A line that is not UTF-8 is handed over as an
    empty line (which the reader skips, keeping line numbers) and its bytes are put in ``undecodable``, so it
    becomes one bad row and the rest of the file is still read. A leading BOM is dropped."""
    for number, line in enumerate(raw, 1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            undecodable[number] = line
            yield "\n" if line.endswith(b"\n") else ""
