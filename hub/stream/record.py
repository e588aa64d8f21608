"""Role ``record``: events.citizen -> the citizen's record in Redis, and record.changes.

A batch is cut into segments: runs of ordinary events, and each citizen.merged / citizen.unmerged alone
(a merge changes where later events of the same batch land). Each segment is one optimistic transaction
(hub.record.store): read the records it needs, following redirects to survivors, under WATCH; apply the
events in offset order; write records, applied ids and the resulting changes (an outbox per partition) in
one MULTI/EXEC. If another worker wrote one of those records meanwhile (a merge on another partition), the
segment is computed again from the new state. Only committed changes are returned for publishing.

Nothing is lost if the worker dies: before the commit nothing was written, and the redelivered events are
applied afresh; after it, the redelivered events are already applied and their changes are published again,
made from the redelivered event and the citizen and version the outbox kept for it (same bytes, same event id;
consumers absorb it). The outbox fields are removed once the
batch's outputs are durable (``save_batch``), so a later duplicate publishes nothing. A field left by a dead
worker is removed once the partition is consumed past its last offset: by then each of its events came
again, in order, and its change was published.
"""

from __future__ import annotations

import asyncio
import random
import faust
import orjson
import redis.asyncio as aioredis

from hub.errors import HubError
from hub.identity.events import MERGED, UNMERGED, MergeLink, merge_link
from hub.logging import get_logger
from hub.record.apply import Record, empty_record
from hub.record.errors import RecordError
from hub.record.event import RecordEvent, read_event
from hub.record.merge import apply_to_group, is_redirect, merge, unmerge
from hub.record.store import (MAX_CHAIN, Committed, RedisRecordStore, Transaction, Writes, outbox_changes,
                              outbox_field, outbox_last, outbox_line)
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, Result, add_stage, make_app
from hub.topics import EVENTS_CITIZEN, RECORD_CHANGES

log = get_logger("record")
MAX_ATTEMPTS = 50
Item = tuple[int, Incoming, RecordEvent, dict]  # (position in the batch, the record, its event, the event's JSON)


class _Segment:
    """The records one segment reads and writes, with redirects followed in memory."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.records: dict[str, Record | None] = {}
        self.writes = Writes()
        self.applied: set[tuple[str, str]] = set()

    async def load(self, citizen_ids: set[str]) -> None:
        todo = citizen_ids - self.records.keys()
        for _ in range(MAX_CHAIN):
            if not todo:
                return
            loaded = await self.tx.load(sorted(todo))
            self.records.update(loaded)
            todo = {r["merged_into"] for r in loaded.values() if is_redirect(r)} - self.records.keys()
        raise RecordError(f"redirect chain longer than {MAX_CHAIN} records")

    def root(self, citizen_id: str) -> str:
        for _ in range(MAX_CHAIN):
            record = self.records.get(citizen_id)
            if not is_redirect(record):
                return citizen_id
            citizen_id = record["merged_into"]
        raise RecordError(f"redirect chain longer than {MAX_CHAIN} records")

    def record(self, citizen_id: str) -> Record:
        record = self.records.get(citizen_id)
        if record is None:
            record = self.records[citizen_id] = empty_record(citizen_id)
        return record

    def write(self, citizen_id: str) -> None:
        self.writes.records[citizen_id] = self.record(citizen_id)

    def mark_applied(self, citizen_id: str, event_id: str) -> None:
        self.applied.add((citizen_id, event_id))
        self.writes.applied.setdefault(citizen_id, []).append(event_id)
        self.write(citizen_id)

    def change(self, incoming: Incoming, event: RecordEvent, data: dict, citizen_id: str) -> list[Outgoing]:
        version = self.record(citizen_id)["version"]
        line = outbox_line(event.event_id, citizen_id, version)
        self.writes.outbox.setdefault(incoming.partition, []).append((incoming.offset, line))
        return [Outgoing(RECORD_CHANGES, citizen_id.encode(), change_body(incoming.value, data, citizen_id, version))]


class RecordStage:
    def __init__(self, store: RedisRecordStore, *, publish: bool = True) -> None:
        self.store = store
        self.publish = publish  # False for hub rebuild: the same records, no outbox
        self._returned: dict[int, set[str]] = {}  # partition -> event ids whose changes this batch returned
        self._outbox: dict[int, dict[str, bytes]] = {}  # partition -> outbox fields seen or written in this batch
        self._parsed: dict[tuple[int, str], dict[str, Committed]] = {}
        self._last: dict[int, int] = {}  # partition -> highest offset of this batch

    async def step(self, batch: list[Incoming]) -> list[Result]:
        # The batch may be run again after Redis was unreachable (hub.stream.app): what a failed run returned
        # was never published, so its committed segments must be published from the outbox this time.
        self._returned, self._outbox, self._parsed, self._last = {}, {}, {}, {}
        for incoming in batch:
            self._last[incoming.partition] = max(self._last.get(incoming.partition, -1), incoming.offset)
        results: list[Result | None] = [None] * len(batch)
        segment: list[Item] = []
        for position, incoming in enumerate(batch):
            read = _read(incoming)
            if isinstance(read, Exception):
                results[position] = read
            elif read[0].type in (MERGED, UNMERGED):
                await self._run(segment, results)
                await self._run([(position, incoming, *read)], results)
                segment = []
            else:
                segment.append((position, incoming, *read))
        await self._run(segment, results)
        return results  # type: ignore[return-value]  # every position is filled

    async def _run(self, items: list[Item], results: list[Result | None]) -> None:
        if not items:
            return
        for attempt in range(MAX_ATTEMPTS):
            async with self.store.transaction() as tx:
                seg = _Segment(tx)
                answers = await self._compute(seg, items)
                if await tx.commit(seg.writes):
                    for partition, entries in seg.writes.outbox.items():
                        self._outbox.setdefault(partition, {})[outbox_field(entries)] = b""
                    break
            await asyncio.sleep(min(0.1, 0.002 * 2 ** attempt) * random.random())  # another worker wrote first
        else:
            answers = [RecordError("records stayed contended through every retry") for _ in items]
        for (position, incoming, event, _), answer in zip(items, answers, strict=True):
            results[position] = answer
            if isinstance(answer, list) and answer:
                self._returned.setdefault(incoming.partition, set()).add(event.event_id)

    async def _compute(self, seg: _Segment, items: list[Item]) -> list[Result]:
        needed: set[str] = set()
        partitions: set[int] = set()
        links: dict[int, MergeLink | RecordError] = {}
        for position, incoming, event, _ in items:  # one pass: this runs per event
            if event.citizen_id:
                needed.add(event.citizen_id)
                if event.member_id:
                    needed.add(event.member_id)
            partitions.add(incoming.partition)
            if event.type in (MERGED, UNMERGED):
                try:
                    links[position] = link = merge_link(event.envelope)
                except ValueError as exc:
                    links[position] = RecordError(str(exc))
                    continue
                needed |= {link.survivor, link.other}
        await seg.load(needed)
        roots = [_target(seg, e) for _, _, e, _ in items]
        applied, outbox = await seg.tx.lookups(
            [(root, e.event_id) for root, (_, _, e, _) in zip(roots, items, strict=True)],
            partitions if self.publish else set())
        for partition, fields in outbox.items():
            self._outbox.setdefault(partition, {}).update(fields)
        answers: list[Result] = []
        for n, (position, incoming, event, data) in enumerate(items):
            root = roots[n]  # a segment with a merge holds nothing else, so no root moves in this loop
            if not root:
                answers.append(RecordError("event without a citizen_id on events.citizen"))
            elif applied[n] or (root, event.event_id) in seg.applied:
                cached = self._cached(incoming.partition, event.event_id)
                if isinstance(cached, tuple):  # the change is this event again, as it was committed
                    cached = change_body(incoming.value, data, *cached)
                answers.append([Outgoing(RECORD_CHANGES, root.encode(), cached)] if cached else [])
            elif isinstance(links.get(position), RecordError):
                answers.append(links[position])
            elif event.type == MERGED:
                answers.append(self._merge(seg, incoming, event, data, links[position]))
            elif event.type == UNMERGED:
                answers.append(self._unmerge(seg, incoming, event, data, links[position]))
            else:
                try:
                    changed = apply_to_group(seg.record(root), event)
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    # A payload without what its type needs (e.g. an Encounter without id): this event goes to
                    # hub.dlq, not its whole batch; the appliers read what they need before they write.
                    # A KeyError names the missing field; other messages may quote values (personal data).
                    detail = f" {exc}" if isinstance(exc, KeyError) else ""
                    answers.append(RecordError(f"cannot apply {event.type}: {type(exc).__name__}{detail}"))
                    continue
                seg.mark_applied(root, event.event_id)
                answers.append(seg.change(incoming, event, data, root) if changed and self.publish else [])
        return answers

    def _cached(self, partition: int, event_id: str) -> Committed | None:
        """The change of an applied event if it was committed but maybe never published (and not by this batch)."""
        if not self.publish or event_id in self._returned.get(partition, ()):
            return None
        for name, blob in self._outbox.get(partition, {}).items():
            if blob:
                if (partition, name) not in self._parsed:
                    self._parsed[partition, name] = outbox_changes(blob)
                if event_id in self._parsed[partition, name]:
                    return self._parsed[partition, name][event_id]
        return None

    def _merge(self, seg: _Segment, incoming: Incoming, event: RecordEvent, data: dict, link: MergeLink) -> list[Outgoing]:
        root = seg.root(link.survivor)
        done = merge(seg.records.get(root), root, seg.records.get(link.other), link.other, link.survivor, event)
        if done is None:
            log.info("merge changes nothing", survivor=link.survivor, retired=link.other)
            return []
        seg.records[root], seg.records[link.other] = done
        seg.write(link.other)
        seg.writes.unions.append((root, link.other))
        seg.mark_applied(root, event.event_id)
        return seg.change(incoming, event, data, root) if self.publish else []

    def _unmerge(self, seg: _Segment, incoming: Incoming, event: RecordEvent, data: dict,
                 link: MergeLink) -> list[Outgoing]:
        root = seg.root(link.survivor)
        done = unmerge(seg.record(root), link.other, seg.records.get(link.other), event)
        if done is None:
            log.info("unmerge changes nothing", survivor=link.survivor, restored=link.other)
            return []
        seg.records[root], seg.records[link.other] = done
        seg.write(link.other)
        seg.writes.unions.append((link.other, root))
        seg.mark_applied(root, event.event_id)
        return seg.change(incoming, event, data, root) if self.publish else []

    async def save_batch(self) -> None:
        """The batch's changes are durable on record.changes: outbox fields up to its last offset can go."""
        done = {p: {name for name in fields if outbox_last(name) <= self._last.get(p, -1)}
                for p, fields in self._outbox.items()}
        await self.store.clear_outbox(done)
        self._returned, self._outbox, self._parsed = {}, {}, {}


def _target(seg: _Segment, event: RecordEvent) -> str:
    """The record an event goes to: its citizen's root, or for an event the MPI filed under a member of a merge
    (``member_id``) wherever that member is now: the survivor while merged (its redirect leads there, so the
    same root), its own record once unmerged (resolved before the unmerge, applied after it: the event is the
    member's, as the warehouse files it), the next survivor if merged again."""
    if not event.citizen_id:
        return ""
    return seg.root(event.member_id or event.citizen_id)


def _read(incoming: Incoming) -> tuple[RecordEvent, dict] | HubError:
    """The event and its decoded JSON (kept to write the change), or the error that sends it to the DLQ."""
    try:
        data = orjson.loads(incoming.value)
        return read_event(data), data
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return HubError(f"not a canonical event ({type(exc).__name__})")


def change_body(raw: bytes, data: dict, citizen_id: str, version: int) -> bytes:
    """The change on record.changes: the event as it came, naming the record it changed and that record's version.

    When the event already names that citizen and has no version, this is the event's own JSON with the version
    appended before its closing brace (the same object as re-serialising the decoded event with the version
    added, which cost a tenth of the stage); otherwise (an event for a retired citizen, applied to the
    survivor) the decoded event is patched and serialised.
    """
    if data.get("citizen_id") == citizen_id and "record_version" not in data and raw[-1:] == b"}":
        return b"%b,\"record_version\":%d}" % (raw[:-1], version)
    return orjson.dumps({**data, "citizen_id": citizen_id, "record_version": version})


def build(settings: Settings) -> faust.App:
    app = make_app("record", settings)
    stage = RecordStage(RedisRecordStore(aioredis.from_url(settings.redis_url)))
    add_stage(app, settings, "record", EVENTS_CITIZEN, stage.step, after_batch=stage.save_batch)
    return app
