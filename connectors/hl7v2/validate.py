"""Strict HL7 v2 conformance checks with hl7apy: for onboarding a feed (``hub validate``) and, per source,
at ingestion (``connectors.mllp.listener``, off by default: it costs ~10-50 ms a message).

hl7apy's strict parser stops at the first problem and its validator keeps all but the first problem in a
report file, so each segment is parsed and validated on its own (problems name the segment and its line),
then the whole message is checked for structure (required segments, cardinality, unknown segments).
Z-segments are site-defined and skipped. Table-membership and length findings are warnings: local code
values (``CCCD`` as an identifier type, Vietnamese text longer than a v2.3 length) are normal here, so only
errors make a message non-conformant.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

from hl7apy import check_version
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException, ValidationError
from hl7apy.parser import get_message_info, parse_message, parse_segment
from hl7apy.validation import Validator

_SEGMENT_BREAK = re.compile(r"\r\n|\n|\r")


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``line`` is the segment's 1-based position in the message (0: the message as a whole)."""

    severity: str  # "error" | "warning"
    segment: str  # segment name, or "message"
    line: int
    text: str

    def __str__(self) -> str:
        where = f"{self.segment} (segment {self.line})" if self.line else self.segment
        return f"{where}: {self.text}"


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, HL7apyException) else f"{type(exc).__name__}: {text}"


def _report(element: object) -> tuple[list[str], list[str]]:
    """Every error and warning hl7apy's validator finds in ``element`` (it raises only the first)."""
    fd, path = tempfile.mkstemp(prefix="hssk-validate-", suffix=".txt")
    os.close(fd)
    try:
        try:
            Validator.validate(element, report_file=path)
        except ValidationError:
            pass  # all of them are in the report file
        except (HL7apyException, ValueError, KeyError, AttributeError) as exc:
            return [_reason(exc)], []
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    finally:
        os.unlink(path)
    errors = [line[len("Error: "):] for line in lines if line.startswith("Error: ")]
    warnings = [line[len("Warning: "):] for line in lines if line.startswith("Warning: ")]
    return errors, warnings


def validate_message(text: str, *, warnings: bool = False) -> list[Problem]:
    """Strict conformance problems of one message (errors; warnings too when asked). [] means conformant."""
    text = _SEGMENT_BREAK.sub("\r", text.lstrip("\ufeff")).strip("\r\n\x00 \t")
    try:
        encoding_chars, _structure, version = get_message_info(text)
    except (HL7apyException, IndexError) as exc:
        return [Problem("error", "MSH", 1, _reason(exc))]
    if not version:
        return [Problem("error", "MSH", 1, "MSH-12 (version id) is empty")]
    try:
        check_version(version)
    except HL7apyException as exc:
        return [Problem("error", "MSH", 1, f"version {version} is not supported by hl7apy ({_reason(exc)})")]
    problems: list[Problem] = []
    seen: set[str] = set()
    for line, segment_text in enumerate(text.split("\r"), 1):
        name = segment_text[:3]
        if not segment_text or name.startswith("Z"):
            continue
        try:
            segment = parse_segment(segment_text, version, encoding_chars, VALIDATION_LEVEL.STRICT)
        except (HL7apyException, ValueError, KeyError, IndexError) as exc:
            problems.append(Problem("error", name, line, _reason(exc)))
            continue
        errors, warns = _report(segment)
        seen.update(errors)
        problems += [Problem("error", name, line, e) for e in errors]
        if warnings:
            problems += [Problem("warning", name, line, w) for w in warns]
    try:
        message = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    except (HL7apyException, ValueError, KeyError, IndexError) as exc:
        problems.append(Problem("error", "message", 0, _reason(exc)))
        return problems
    if not message.name:  # hl7apy has no structure for this MSH-9 in this version
        if warnings:
            problems.append(Problem("warning", "message", 0, f"no message structure known for MSH-9 in version "
                                                             f"{version}; only the segments were checked"))
        return problems
    errors, _ = _report(message)
    problems += [Problem("error", "message", 0, e) for e in errors if e not in seen]
    return problems
