"""Role ``record``: events.citizen -> the citizen's record in Redis, and record.changes.

A batch is cut into segments: runs of ordinary events, and each citizen.merged / citizen.unmerged alone
(a merge changes where later events of the same batch land). Each segment is one optimistic transaction
(hub.record.store): read the records it needs, following redirects to survivors, under WATCH; apply the
events in offset order; write records, applied ids and the resulting changes (an outbox per partition) in
one MULTI/EXEC. If another worker wrote one of those records meanwhile (a merge on another partition), the
segment is computed again from the new state. Only committed changes are returned for publishing.

Nothing is lost if the worker dies: before the commit nothing was written, and the redelivered events are
applied afresh; after it, the redelivered events are already applied and their changes are taken from the
outbox and published again (same event id, consumers absorb it). The outbox entries are removed once the
batch's outputs are durable (``save_batch``), so a later duplicate publishes nothing.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import faust
import redis.asyncio as aioredis

from hub.envelope import Envelope
from hub.identity.events import MERGED, UNMERGED, merge_link
from hub.logging import get_logger
from hub.record.apply import Record, empty_record
from hub.record.errors import RecordError
from hub.record.merge import apply_to_group, is_redirect, merge, unmerge
from hub.record.store import MAX_CHAIN, RedisRecordStore, Transaction, Writes
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, Result, add_stage, make_app, read_envelope
from hub.topics import EVENTS_CITIZEN, RECORD_CHANGES

log = get_logger("record")
MAX_ATTEMPTS = 50
Item = tuple[int, Incoming, Envelope]  # (position in the batch, the record, its event)


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

    def change(self, incoming: Incoming, event: Envelope, citizen_id: str) -> list[Outgoing]:
        record = self.record(citizen_id)
        body = replace(event, citizen_id=citizen_id, record_version=record["version"]).to_json()
        self.writes.outbox.setdefault(incoming.partition, {})[event.event_id] = body
        return [Outgoing(RECORD_CHANGES, citizen_id.encode(), body)]


class RecordStage:
    def __init__(self, store: RedisRecordStore, *, publish: bool = True) -> None:
        self.store = store
        self.publish = publish  # False for hub rebuild: the same records, no outbox
        self._returned: dict[int, set[str]] = {}  # partition -> event ids whose changes this batch returned

    async def step(self, batch: list[Incoming]) -> list[Result]:
        # The batch may be run again after Redis was unreachable (hub.stream.app): what a failed run returned
        # was never published, so its committed segments must be published from the outbox this time.
        self._returned = {}
        results: list[Result | None] = [None] * len(batch)
        segment: list[Item] = []
        for position, incoming in enumerate(batch):
            event = read_envelope(incoming)
            if isinstance(event, Exception):
                results[position] = event
            elif event.type in (MERGED, UNMERGED):
                await self._run(segment, results)
                await self._run([(position, incoming, event)], results)
                segment = []
            else:
                segment.append((position, incoming, event))
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
                    break
            await asyncio.sleep(min(0.1, 0.002 * 2 ** attempt) * random.random())  # another worker wrote first
        else:
            answers = [RecordError("records stayed contended through every retry") for _ in items]
        for (position, incoming, event), answer in zip(items, answers, strict=True):
            results[position] = answer
            if isinstance(answer, list) and answer:
                self._returned.setdefault(incoming.partition, set()).add(event.event_id)

    async def _compute(self, seg: _Segment, items: list[Item]) -> list[Result]:
        needed = {e.citizen_id for _, _, e in items if e.citizen_id}
        links = {}
        for position, _, event in items:
            if event.type in (MERGED, UNMERGED):
                try:
                    links[position] = link = merge_link(event)
                except ValueError as exc:
                    links[position] = RecordError(str(exc))
                    continue
                needed |= {link.survivor, link.other}
        await seg.load(needed)
        roots = [seg.root(e.citizen_id) if e.citizen_id else "" for _, _, e in items]
        applied, pending = await seg.tx.lookups(
            [(root, e.event_id) for root, (_, _, e) in zip(roots, items, strict=True)],
            [(i.partition, e.event_id) for _, i, e in items] if self.publish else [])
        pending = pending or [None] * len(items)
        answers: list[Result] = []
        for n, (position, incoming, event) in enumerate(items):
            root = seg.root(event.citizen_id) if event.citizen_id else ""
            if not root:
                answers.append(RecordError("event without a citizen_id on events.citizen"))
            elif applied[n] or (root, event.event_id) in seg.applied:
                # Committed before a crash and maybe never published: publish it again (unless this batch did).
                cached = pending[n] if event.event_id not in self._returned.get(incoming.partition, ()) else None
                answers.append([Outgoing(RECORD_CHANGES, root.encode(), cached)] if cached else [])
            elif isinstance(links.get(position), RecordError):
                answers.append(links[position])
            elif event.type == MERGED:
                answers.append(self._merge(seg, incoming, event, links[position]))
            elif event.type == UNMERGED:
                answers.append(self._unmerge(seg, incoming, event, links[position]))
            else:
                changed = apply_to_group(seg.record(root), event)
                seg.mark_applied(root, event.event_id)
                answers.append(seg.change(incoming, event, root) if changed and self.publish else [])
        return answers

    def _merge(self, seg: _Segment, incoming: Incoming, event: Envelope, link) -> list[Outgoing]:
        root = seg.root(link.survivor)
        done = merge(seg.records.get(root), root, seg.records.get(link.other), link.other, link.survivor, event)
        if done is None:
            log.info("merge changes nothing", survivor=link.survivor, retired=link.other)
            return []
        seg.records[root], seg.records[link.other] = done
        seg.write(link.other)
        seg.writes.unions.append((root, link.other))
        seg.mark_applied(root, event.event_id)
        return seg.change(incoming, event, root) if self.publish else []

    def _unmerge(self, seg: _Segment, incoming: Incoming, event: Envelope, link) -> list[Outgoing]:
        root = seg.root(link.survivor)
        done = unmerge(seg.record(root), link.other, seg.records.get(link.other), event)
        if done is None:
            log.info("unmerge changes nothing", survivor=link.survivor, restored=link.other)
            return []
        seg.records[root], seg.records[link.other] = done
        seg.write(link.other)
        seg.writes.unions.append((link.other, root))
        seg.mark_applied(root, event.event_id)
        return seg.change(incoming, event, root) if self.publish else []

    async def save_batch(self) -> None:
        """The batch's changes are durable on record.changes: their outbox entries are no longer needed."""
        returned, self._returned = self._returned, {}
        await self.store.clear_outbox(returned)


def build(settings: Settings) -> faust.App:
    app = make_app("record", settings)
    stage = RecordStage(RedisRecordStore(aioredis.from_url(settings.redis_url)))
    add_stage(app, "record", EVENTS_CITIZEN, stage.step, after_batch=stage.save_batch)
    return app
