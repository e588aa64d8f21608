"""What reading a FHIR Bundle gives: events, one ``EntryFailure`` per entry that could not be used, counts.

A failure names the entry (its index in ``Bundle.entry``), the resource type and the field path, never a
value: reasons go to the terminal, the DLQ and the import summary (ARCHITECTURE invariant 6). The entry's
own JSON travels as ``original`` so a corrected resource can be found and re-sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hub.envelope import DeadLetter, Envelope

SOURCE_SYSTEM = "fhir"
# Kafka's default message limit is 1 MB: an entry's raw record must fit, and so must a DLQ entry holding its
# bytes in base64 (4/3 larger), so larger entries are refused and the DLQ keeps their first 512 KiB.
MAX_ENTRY_BYTES = 768 * 1024
MAX_ORIGINAL = 512 * 1024


@dataclass(frozen=True, slots=True)
class EntryFailure:
    stage: str  # hub.errors code: "parse" (the bundle or an entry is not valid FHIR) or "translate"
    kind: str  # json, encoding, size, not-bundle, bundle-type, invalid, unknown-type, unlinked, duplicate, ...
    reason: str  # "entry 3 (Observation) status: Value for the field 'status' is required."
    index: int | None = None  # position in Bundle.entry; None for the bundle as a whole
    resource_type: str = ""
    original: bytes = b""
    detail: str = ""  # the reason without the entry index, so a summary can group alike failures

    @property
    def code(self) -> str:
        return f"{self.stage}.{self.kind}"

    @property
    def group(self) -> str:
        """What a summary counts alike: the code and the reason without the entry's position."""
        return f"{self.code}: {self.detail or self.reason}"

    def dead_letter(self, failed_at: str, *, source_file: str | None = None, facility: str | None = None,
                    bundle: str | None = None) -> DeadLetter:
        headers = {"kind": self.kind, "source_system": SOURCE_SYSTEM,
                   "where": "bundle" if self.index is None else f"entry {self.index}"}
        if self.resource_type:
            headers["resource_type"] = self.resource_type
        for name, value in (("file", source_file), ("facility", facility), ("bundle", bundle)):
            if value:
                headers[name] = value
        return DeadLetter(stage="import", code=self.stage, reason=self.reason, original=self.original[:MAX_ORIGINAL],
                          headers=headers, failed_at=failed_at)


@dataclass(slots=True)
class EntryEvents:
    """The events of one entry, with the entry's JSON (the raw record the events point at)."""

    index: int
    resource_type: str
    original: bytes
    patient_key: str  # hub id of the entry's Patient: the partition key (hashed) keeps one patient in order
    events: list[Envelope]


@dataclass(slots=True)
class BundleResult:
    """A bundle read: ``error`` set when nothing of it could be used (then ``failures`` holds that one)."""

    facility: str = ""
    bundle_key: str = ""  # Bundle.id, else Bundle.identifier, else the content hash: the events' message_id
    entries: int = 0  # entries in the bundle
    mapped: list[EntryEvents] = field(default_factory=list)
    failures: list[EntryFailure] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # e.g. "Organization.context", "reference.external"
    error: str = ""

    @property
    def events(self) -> list[Envelope]:
        return [event for entry in self.mapped for event in entry.events]
