"""Offline translation and validation of HL7 v2 files: ``hub translate`` and ``hub validate``.

No Kafka, no Redis: read files (one or many messages, any segment separator, BOM allowed, FHS/BHS batches
unwrapped), translate or check each message, write results to the given streams. A message that fails is
reported and the next one goes on; only a file that cannot be read at all (missing, unreadable, not text
in the charset) makes the exit status non-zero for ``translate``.

Output goes to the operator's terminal, not to logs: failure reasons name the field and may quote the
invalid value, as the DLQ does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from connectors.hl7v2.parse import decode, split_messages
from connectors.hl7v2.translate import translate
from hub.errors import HubError, ParseError

VN_TZ = timezone(timedelta(hours=7))
EXIT_OK, EXIT_PROBLEMS, EXIT_UNREADABLE = 0, 1, 2


def now_received_at() -> str:
    """The receipt time the translator stage would stamp, for messages read from a file now."""
    return datetime.now(VN_TZ).isoformat(timespec="milliseconds")


_MLLP_FRAMING = bytes.maketrans(b"\x0b\x1c", b"\r\r")


def read_file(path: Path, charset: str) -> list[str]:
    """The decoded messages of one file; OSError or ParseError when it cannot be read at all. Captures of an
    MLLP stream (start 0x0B, end 0x1C 0x0D around each message) are read too: the framing becomes segment
    breaks."""
    return split_messages(decode(path.read_bytes().translate(_MLLP_FRAMING), charset))


def _control_id(message: str) -> str:
    """MSH-10 for the report (a message id, not personal data); "?" when MSH is unreadable."""
    fields = message.split("\r", 1)[0].split(message[3:4] or "|")
    return fields[9] if len(fields) > 9 and fields[9] else "?"


def translate_files(paths: Iterable[str], *, charset: str, received_at: str, out: TextIO, err: TextIO) -> int:
    """Print one canonical event per line (JSON) on ``out``; each failure on ``err`` with its stage code and
    reason. Returns 2 if some file could not be read, else 0 (failed messages do not change the status)."""
    status = EXIT_OK
    for name in paths:
        try:
            messages = read_file(Path(name), charset)
        except (OSError, ParseError) as exc:
            err.write(f"{name}: cannot read: {exc}\n")
            status = EXIT_UNREADABLE
            continue
        for number, message in enumerate(messages, 1):
            try:
                events = translate(message.encode("utf-8"), received_at=received_at)
            except HubError as exc:
                err.write(f"{name}: message {number} ({_control_id(message)}): {exc.code}: {exc.reason}\n")
                continue
            for event in events:
                out.write(event.to_json().decode("utf-8") + "\n")
    return status


def validate_files(paths: Iterable[str], *, charset: str, warnings: bool, out: TextIO, err: TextIO) -> int:
    """A conformance report: one line per message (OK or the number of errors), then one line per problem.
    Returns 2 if some file could not be read, 1 if some message has errors, else 0."""
    from connectors.hl7v2.validate import validate_message  # hl7apy loads slowly: only when asked

    status = EXIT_OK
    for name in paths:
        try:
            messages = read_file(Path(name), charset)
        except (OSError, ParseError) as exc:
            err.write(f"{name}: cannot read: {exc}\n")
            status = EXIT_UNREADABLE
            continue
        for number, message in enumerate(messages, 1):
            problems = validate_message(message, warnings=warnings)
            errors = [p for p in problems if p.severity == "error"]
            verdict = "OK" if not errors else f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
            out.write(f"{name}: message {number} ({_control_id(message)}): {verdict}\n")
            for problem in problems:
                out.write(f"  {problem.severity:<7} {problem}\n")
            if errors and status == EXIT_OK:
                status = EXIT_PROBLEMS
    return status
