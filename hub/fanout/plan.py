"""From a batch of record.changes (one partition, in offset order) to the deliveries of one subscription.

The deliveries are grouped in lanes, one per Kafka key (the citizen id): a lane is sent in order, lanes may go
side by side. For the health-book format the record is read once per batch and each touched citizen's book
is pushed once, after the merge notices of the batch (coalescing within the batch: the same record version
is the same idempotency key, so pushing it twice could only be absorbed). Records are read once per batch through
``load`` (the engine passes the record store's public reader, hub/record/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Awaitable, Callable, Protocol

import orjson

from hub.envelope import Envelope
from hub.fanout import formats
from hub.fanout.config import Subscription
from hub.fanout.filters import Verdict, verdict
from hub.identity.events import MERGED, UNMERGED

Loader = Callable[[list[str]], Awaitable[dict[str, dict[str, Any] | None]]]


class Change(Protocol):
    """What plan needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    key: bytes | None
    value: bytes
    offset: int
    timestamp: int  # ms


@dataclass
class Planned:
    lanes: dict[str, list[formats.Outbound]] = field(default_factory=dict)
    source: dict[str, Change] = field(default_factory=dict)  # idempotency key -> the change behind it
    changed: dict[str, int] = field(default_factory=dict)  # health book: citizen -> earliest change time (ms)
    failed: list[tuple[Change, str]] = field(default_factory=list)  # -> dlq.<name>, with the reason
    filtered: int = 0
    withheld: int = 0

    @property
    def deliveries(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())


def _read(change: Change) -> Envelope | str:
    try:
        event = Envelope.from_json(change.value)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return f"not a canonical event ({type(exc).__name__})"
    if not event.citizen_id:
        return "a record change without citizen_id"
    return event


def _lane_of(change: Change, event: Envelope) -> str:
    return change.key.decode() if change.key else event.citizen_id or ""


def _add(planned: Planned, lane: str, item: formats.Outbound, change: Change) -> None:
    planned.lanes.setdefault(lane, []).append(item)
    planned.source[item.key] = change


async def plan(sub: Subscription, changes: list[Change], load: Loader, day: date | None = None) -> Planned:
    planned = Planned()
    read = [(c, _read(c)) for c in changes]
    events = [(c, e) for c, e in read if isinstance(e, Envelope)]
    planned.failed = [(c, e) for c, e in read if isinstance(e, str)]
    book = sub.format == formats.HEALTH_BOOK
    wanted: set[str] = set()
    if sub.filter.needs_record or book:
        for _, event in events:
            wanted.update(formats.book_citizens(event) if book else [event.citizen_id or ""])
    records = await load(sorted(wanted)) if wanted else {}
    books: dict[str, tuple[str, Change]] = {}  # citizen -> (lane, last change touching it), in first-seen order
    for change, event in events:
        v = verdict(sub, event, records.get(event.citizen_id or ""), day)
        if v is Verdict.WITHHELD:
            planned.withheld += 1
            continue
        if v is Verdict.FILTERED:
            planned.filtered += 1
            continue
        lane = _lane_of(change, event)
        if not book:
            item = (formats.bundle_delivery if sub.format == formats.BUNDLE else formats.event_delivery)(sub.name, event)
            _add(planned, lane, item, change)
            continue
        if event.type == MERGED:
            _add(planned, lane, formats.merge_notice(sub.name, event), change)
        citizens = formats.book_citizens(event) if event.type in (MERGED, UNMERGED) else [event.citizen_id or ""]
        for citizen in citizens:
            books.pop(citizen, None)  # re-inserted: its push goes after everything seen so far
            books[citizen] = (lane, change)
            planned.changed.setdefault(citizen, change.timestamp)
    for citizen, (lane, change) in books.items():
        record = records.get(citizen)
        if record is None:
            planned.failed.append((change, "the record of the changed citizen is not in the record store"))
            planned.changed.pop(citizen, None)
            continue
        _add(planned, lane, formats.book_delivery(sub.name, record, sub.entitled), change)
    return planned
