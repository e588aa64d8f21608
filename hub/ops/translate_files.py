"""``hub translate FILE...`` for every format the hub imports: offline (no Kafka, no Redis), one canonical
event per line as JSON on stdout, each failure with its position and reason on stderr.

The format is decided by ``hub.ops.formats.detect_format``, the same detection ``hub import`` and ``hub watch``
use, so what translate shows is what import would publish (minus the raw coordinates, which only Kafka
assigns). HL7 v2 files go to ``connectors.hl7v2.offline`` unchanged.

Exit status: 2 when some file could not be read at all, else 0 (failed records do not change it), as before.
Output is for the operator's terminal: failure reasons name fields, as the DLQ does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from connectors.fhir import read_bundle
from connectors.hl7v2 import offline
from connectors.registry import BadRow, RegistryFormatError, read_rows, translate_row
from connectors.xml130 import Failure, read_export
from hub.envelope import Envelope
from hub.errors import HubError
from hub.ops.formats import UNKNOWN_REASON, sniff, utf8_lines

EXIT_OK, EXIT_UNREADABLE = offline.EXIT_OK, offline.EXIT_UNREADABLE


def _emit(events: Iterable[Envelope], out: TextIO) -> None:
    for event in events:
        out.write(event.to_json().decode("utf-8") + "\n")


def _xml130(path: Path, received_at: str, facility: str | None, out: TextIO, err: TextIO) -> bool:
    read = 0
    for result in read_export(path, received_at=received_at, facility=facility):
        failures = [result] if isinstance(result, Failure) else result.failures
        for failure in failures:
            err.write(f"{path}: {failure.where}: {failure.code}: {failure.reason}\n")
        if isinstance(result, Failure):
            if result.stage == "parse" and read == 0:
                return False
            continue
        read += 1
        _emit(result.events, out)
    return True


def _registry(path: Path, received_at: str, out: TextIO, err: TextIO) -> bool:
    undecodable: dict[int, bytes] = {}

    def flush() -> None:
        for line in sorted(undecodable):
            err.write(f"{path}: line {line}: parse: not UTF-8 (the registry export is UTF-8)\n")
        undecodable.clear()

    with open(path, "rb") as raw:
        try:
            for item in read_rows(utf8_lines(raw, undecodable)):
                flush()
                if isinstance(item, BadRow):
                    err.write(f"{path}: line {item.line}: parse: {item.reason}\n")
                    continue
                try:
                    _emit(translate_row(item.fields, received_at=received_at).events, out)
                except HubError as exc:
                    err.write(f"{path}: line {item.line}: {exc.code}: {exc.reason}\n")
            flush()
        except RegistryFormatError as exc:
            err.write(f"{path}: cannot read: {exc}\n")
            return False
    return True


def _fhir(path: Path, received_at: str, facility: str | None, out: TextIO, err: TextIO) -> bool:
    result = read_bundle(path, received_at=received_at, facility=facility)
    for failure in result.failures:
        err.write(f"{path}: {failure.code}: {failure.reason}\n")
    _emit(result.events, out)
    return not result.error


def translate_files(paths: Iterable[str], *, charset: str, received_at: str, out: TextIO, err: TextIO,
                    facility: str | None = None) -> int:
    """Translate each file by its detected format; see the module docstring for output and status."""
    status = EXIT_OK
    for name in paths:
        path = Path(name)
        try:
            kind = sniff(path)
        except OSError as exc:
            err.write(f"{name}: cannot read: {exc.strerror or exc}\n")
            status = EXIT_UNREADABLE
            continue
        if kind == "hl7v2":
            ok = offline.translate_files([name], charset=charset, received_at=received_at, out=out, err=err) == 0
        elif kind == "xml130":
            ok = _xml130(path, received_at, facility, out, err)
        elif kind == "registry":
            ok = _registry(path, received_at, out, err)
        elif kind == "fhir":
            ok = _fhir(path, received_at, facility, out, err)
        else:
            err.write(f"{name}: cannot read: {UNKNOWN_REASON}\n")
            ok = False
        if not ok:
            status = EXIT_UNREADABLE
    return status
