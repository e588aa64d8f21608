"""Role ``record``: events.citizen -> the citizen's record in Redis, and record.changes.

The change is published before the record is saved (``after_batch``): if the worker dies in between, the
replayed event is applied again and its change republished with the same event id, which consumers
absorb. Saving first could lose the change for good.
"""

from __future__ import annotations

from dataclasses import replace

import faust
import redis.asyncio as aioredis

from hub.envelope import Envelope
from hub.record.apply import Record, apply
from hub.record.store import RedisRecordStore
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, Result, add_stage, make_app, read_envelope
from hub.topics import EVENTS_CITIZEN, RECORD_CHANGES


class RecordStage:
    def __init__(self, store: RedisRecordStore) -> None:
        self.store = store
        self._working: dict[str, Record] = {}  # records touched in this batch, saved by save_batch
        self._applied: list[tuple[str, str]] = []  # (citizen_id, event_id) applied in this batch

    async def step(self, batch: list[Incoming]) -> list[Result]:
        read = [read_envelope(incoming) for incoming in batch]
        events = [e for e in read if isinstance(e, Envelope)]
        pairs = [(e.citizen_id, e.event_id) for e in events]
        done = dict(zip(pairs, await self.store.applied(pairs), strict=True))
        loaded = await self.store.load_many(sorted({cid for cid, _ in pairs}))
        results: list[Result] = []
        for item in read:
            if isinstance(item, Exception):
                results.append(item)
                continue
            key = (item.citizen_id, item.event_id)
            if done[key]:
                results.append([])  # a redelivered or replayed event: already in the record
                continue
            done[key] = True
            results.append(self._apply(item, loaded))
        return results

    def _apply(self, event: Envelope, loaded: dict[str, Record | None]) -> list[Outgoing]:
        cid = event.citizen_id
        updated, changed = apply(self._working.get(cid, loaded[cid]), event)
        self._working[cid] = updated
        self._applied.append((cid, event.event_id))
        if not changed:
            return []
        change = replace(event, record_version=updated["version"])
        return [Outgoing(RECORD_CHANGES, cid.encode(), change.to_json())]

    async def save_batch(self) -> None:
        if self._applied:
            await self.store.save_many(list(self._working.values()), self._applied)
        self._working.clear()
        self._applied.clear()


def build(settings: Settings) -> faust.App:
    app = make_app("record", settings)
    stage = RecordStage(RedisRecordStore(aioredis.from_url(settings.redis_url)))
    add_stage(app, "record", EVENTS_CITIZEN, stage.step, after_batch=stage.save_batch)
    return app
