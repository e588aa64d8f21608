"""structlog JSON logs with a redaction step: personal data never reaches a log line.

Redaction is by key name (names, identifiers, addresses, message bodies), and any value that looks like a
CCCD, a BHYT card or a phone number is masked wherever it appears.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, MutableMapping

import structlog

SENSITIVE_KEYS = frozenset({
    "name", "family", "given", "patient_name", "cccd", "bhyt", "mrn", "phone", "address", "birth_date",
    "dob", "raw", "message", "body", "payload", "subject", "identifiers", "text",
})
# 12-digit CCCD, 9-digit old ID, 10-digit BHXH or phone, 15-char BHYT card.
_ID_PATTERN = re.compile(r"\b(?:[A-Z]{2}\d{13}|\d{9,12})\b")
REDACTED = "[redacted]"


def redact_personal_data(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop values of sensitive keys and mask identifier-shaped strings."""
    for key, value in list(event_dict.items()):
        if key in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _ID_PATTERN.sub(REDACTED, value)
    return event_dict


class _CurrentStderr:
    """sys.stderr looked up at every write: loggers are cached on first use, and a process (or a test run)
    may replace sys.stderr later; a cached logger must not keep writing to the old, perhaps closed, stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", stream: Any = None) -> None:
    """Configure structlog once, at the entry point of a process."""
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_personal_data,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric if isinstance(numeric, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream or _CurrentStderr()),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=stream or sys.stderr)


get_logger = structlog.get_logger
