"""Where a table mapper puts what it makes: events, per-row failures and counts (one object per HOSO)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from connectors.xml130.errors import MappingError
from connectors.xml130.results import Failure
from hub.envelope import Envelope


@dataclass(slots=True)
class Output:
    where: str  # "HOSO 3", prefix of every failure position
    facility: str
    encounter_key: str | None
    events: list[Envelope | bytes] = field(default_factory=list)  # bytes when the Context is encoded
    failures: list[Failure] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def row_failed(self, table: str, row: int, exc: MappingError, original: bytes) -> None:
        self.failures.append(Failure.of("translate", exc.kind, f"{table} row {row}: {exc.reason}",
                                        f"{self.where} {table} row {row}", original,
                                        self.facility, self.encounter_key))
        self.counts[f"{table}.failed"] += 1
