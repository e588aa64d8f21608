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
from hub.stream.app import Incoming, Outgoing, add_stage, make_app
from hub.topics import EVENTS_CITIZEN, RECORD_CHANGES


class RecordStage:
    def __init__(self, store: RedisRecordStore) -> None:
        self.store = store
        self._working: dict[str, Record] = {}  # records touched in this batch, not saved yet
        self._applied: list[tuple[str, str, bool]] = []  # (citizen_id, event_id, changed)
        self._seen: set[str] = set()

    async def step(self, incoming: Incoming) -> list[Outgoing]:
        event = Envelope.from_json(incoming.value)
        cid = event.citizen_id
        if event.event_id in self._seen or await self.store.was_applied(cid, event.event_id):
            return []
        self._seen.add(event.event_id)
        current = self._working[cid] if cid in self._working else await self.store.load(cid)
        updated, changed = apply(current, event)
        self._working[cid] = updated
        self._applied.append((cid, event.event_id, changed))
        if not changed:
            return []
        change = replace(event, record_version=updated["version"])
        return [Outgoing(RECORD_CHANGES, cid.encode(), change.to_json())]

    async def save_batch(self) -> None:
        for cid, event_id, changed in self._applied:
            if changed:
                await self.store.save(self._working[cid], event_id)
            else:
                await self.store.mark_applied(cid, event_id)
        self._working.clear()
        self._applied.clear()
        self._seen.clear()


def build(settings: Settings) -> faust.App:
    app = make_app("record", settings)
    stage = RecordStage(RedisRecordStore(aioredis.from_url(settings.redis_url)))
    add_stage(app, "record", EVENTS_CITIZEN, stage.step, after_batch=stage.save_batch)
    return app
