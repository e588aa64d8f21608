"""A batch of events -> one write plan: the latest row per key, every citizen and facility seen, the merges
and unmerges.

Pure. Deduplicating here is what lets one INSERT ... ON CONFLICT take the whole batch (PostgreSQL refuses
to update one row twice in a command), and "latest" is the same rule the database applies
(``(event_occurred_at, event_id)``, larger wins), so the plan and the table always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from hub.envelope import Envelope
from hub.warehouse.errors import MappingError
from hub.warehouse.mapping import Rows, map_event

Outcome = Rows | None | Exception  # rows to write, not warehouse material, or why it cannot be written


@dataclass
class Plan:
    facts: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)  # table -> resource id -> row
    citizens: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # citizen id -> dim_citizen row
    # ("merge", citizen_merge row) and ("unmerge", (restored, survivor, event id, occurred at)), in event order
    links: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    citizen_ids: set[str] = field(default_factory=set)
    facilities: set[str] = field(default_factory=set)

    def add(self, rows: Rows) -> None:
        self.citizen_ids.add(rows.citizen_id)
        if rows.facility_code:
            self.facilities.add(rows.facility_code)
        if rows.fact is not None:
            table, row = rows.fact
            _keep_latest(self.facts.setdefault(table.name, {}), row[0], row, version=(2, 1))
        if rows.citizen is not None:
            _keep_latest(self.citizens, rows.citizen_id, rows.citizen, version=(6, 5))
        for merge in rows.merges:
            self.links.append(("merge", merge))
            self.citizen_ids.add(merge[0])
        for unmerge in rows.unmerges:
            self.links.append(("unmerge", unmerge))
            self.citizen_ids.add(unmerge[0])

    @property
    def fact_count(self) -> int:
        return sum(len(rows) for rows in self.facts.values())

    def __bool__(self) -> bool:
        return bool(self.citizen_ids)


def _keep_latest(rows: dict[str, tuple[Any, ...]], key: str, row: tuple[Any, ...], version: tuple[int, int]) -> None:
    at, eid = version
    old = rows.get(key)
    if old is None or (row[at], row[eid]) > (old[at], old[eid]):
        rows[key] = row


def read(value: bytes, entitled: frozenset[str] = frozenset()) -> Outcome:
    """One record's value -> its outcome (never raises). Events flagged with a sensitive category the warehouse
    is not ``entitled`` to (HIV, mental health...) are withheld (None), as the fan-out withholds them."""
    try:
        event = Envelope.from_json(value)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return MappingError(f"not a canonical event ({type(exc).__name__})")
    if event.sensitivity and not entitled.issuperset(event.sensitivity):
        return None
    try:
        return map_event(event)
    except MappingError as exc:
        return exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a payload of an unexpected shape
        return MappingError(f"{event.type}: payload of an unexpected shape ({type(exc).__name__})")


def plan_events(values: list[bytes], entitled: frozenset[str] = frozenset()) -> tuple[list[Outcome], Plan]:
    outcomes = [read(v, entitled) for v in values]
    plan = Plan()
    for outcome in outcomes:
        if isinstance(outcome, Rows):
            plan.add(outcome)
    return outcomes, plan


def plan_of(rows: list[Rows]) -> Plan:
    plan = Plan()
    for r in rows:
        plan.add(r)
    return plan


__all__ = ["Outcome", "Plan", "plan_events", "plan_of", "read"]
