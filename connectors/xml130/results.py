"""What ``read_export`` yields: one ``Record`` per encounter (HOSO), or a file-level ``Failure``.

A record carries its events, the failures inside it (a bad table or row costs only that table or row) and
counts of what was skipped on purpose (supplies, beds, unmapped tables), so an import can report every row.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from hub.envelope import DeadLetter, Envelope, Subject, original_head

MAX_ORIGINAL = 1 << 20  # bytes of the failed input kept on a Failure (enough to replay any real table)
# Bytes of it a hub.dlq entry carries: base64 makes 512 KiB ~700 kB, which with the reason and headers stays
# under Kafka's default message limit (max.message.bytes 1,048,588), so even a huge bad table gets its entry.
DLQ_ORIGINAL_MAX = 512 * 1024


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that could not be read or mapped, with enough context to find, explain and replay it."""

    stage: str  # hub.errors code: "parse" or "translate"
    kind: str  # stable detail code (see connectors.xml130.errors)
    reason: str  # names the field and the problem, never a value
    where: str  # position in the export, e.g. "HOSO 3 XML2 row 5"
    # What failed: the row or table document, or for an unreadable table its NOIDUNGFILE text, whole up to
    # MAX_ORIGINAL; ``original_bytes``/``original_sha256`` describe the whole input when it was longer.
    original: bytes = b""
    facility: str | None = None
    encounter_key: str | None = None  # MA_LK when known
    original_bytes: int | None = None  # length of the whole failed input, when ``original`` is only its start
    original_sha256: str | None = None  # hex SHA-256 of the whole failed input, likewise

    @classmethod
    def of(cls, stage: str, kind: str, reason: str, where: str, original: bytes, facility: str | None = None,
           encounter_key: str | None = None) -> "Failure":
        """A Failure keeping the first MAX_ORIGINAL bytes of ``original``; when it is longer, its length and
        SHA-256 travel with it (to the DLQ entry), so the part kept can be matched to the whole input."""
        if len(original) <= MAX_ORIGINAL:
            return cls(stage, kind, reason, where, original, facility, encounter_key)
        return cls(stage, kind, reason, where, original[:MAX_ORIGINAL], facility, encounter_key, len(original),
                   hashlib.sha256(original).hexdigest())

    @property
    def code(self) -> str:
        return f"{self.stage}.{self.kind}"

    def dead_letter(self, failed_at: str, *, stage: str = "import", source_file: str | None = None) -> DeadLetter:
        """The hub.dlq entry: as elsewhere in the hub, ``stage`` is the processing stage and ``code`` the
        error-tree code (parse / translate); the fine kind and the position go in the headers.

        An original over DLQ_ORIGINAL_MAX is cut to its first DLQ_ORIGINAL_MAX bytes so the entry fits in one
        Kafka message; then the headers ``original_bytes`` and ``original_sha256`` give the whole input's
        length and hash, and ``file`` + ``where`` say where it is (the export file, HOSO and table).
        """
        headers = {"kind": self.kind, "where": self.where, "source_system": "xml130"}
        if source_file:
            headers["file"] = source_file
        if self.facility:
            headers["facility"] = self.facility
        original = self.original
        if self.original_bytes is not None or len(original) > DLQ_ORIGINAL_MAX:
            original, whole = original_head(original, DLQ_ORIGINAL_MAX, self.original_bytes, self.original_sha256)
            headers.update(whole)
        return DeadLetter(stage=stage, code=self.stage, reason=self.reason, original=original,
                          headers=headers, failed_at=failed_at)


@dataclass(slots=True)
class Record:
    """One HOSO: the encounter's events in order, its failures, its raw tables and its counts.

    ``events`` are Envelopes, or each event's JSON bytes when translated with ``encoded=True`` (the importer's
    path: ``translate_hoso``)."""

    index: int  # 1-based position of the HOSO in the export
    facility: str
    encounter_key: str | None  # MA_LK
    events: list[Envelope] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    tables: dict[str, bytes] = field(default_factory=dict)  # decoded table documents by LOAIHOSO (the raw record)
    counts: Counter[str] = field(default_factory=Counter)  # e.g. "XML3.supply", "XML9.unmapped", "XML2.rows"
    sensitivity: tuple[str, ...] = ()
    subject: Subject | None = None  # who XML1 says the encounter is about (None when XML1 is unusable)

    @property
    def ok(self) -> bool:
        return not self.failures


Result = Record | Failure


@dataclass(slots=True)
class Summary:
    """Totals over an export, for the import command's report (no personal data, only counts and codes)."""

    records: int = 0
    records_with_failures: int = 0
    events: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # by Failure.code
    counts: Counter[str] = field(default_factory=Counter)
    event_types: Counter[str] = field(default_factory=Counter)

    def add(self, result: Result) -> None:
        if isinstance(result, Failure):
            self.failures[result.code] += 1
            return
        self.records += 1
        self.events += len(result.events)
        self.records_with_failures += bool(result.failures)
        self.failures.update(f.code for f in result.failures)
        self.counts.update(result.counts)
        self.event_types.update(e.type for e in result.events)
