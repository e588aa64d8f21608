"""Role ``identity``: events.canonical -> events.citizen, keyed by the resolved citizen_id.

The streaming master patient index (``hub.identity.resolve``): strong identifiers, then the shared match
model over the Redis index. Uncertain pairs become review cases; an HL7 A40 (``patient.merged``) is
forwarded resolved to the survivor and, when the retired identifiers were another citizen's, followed by
``citizen.merged``. Outcomes are counted once the batch's outputs are durable.
"""

from __future__ import annotations

from collections import Counter

import faust
import redis.asyncio as aioredis

from hub.envelope import Envelope
from hub.identity.events import merged_event
from hub.identity.mpi_store import RedisMpiStore
from hub.identity.resolve import Resolver
from hub.identity.review import Mpi
from hub.ops import metrics
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, Result, add_stage, make_app, read_envelope
from hub.topics import EVENTS_CANONICAL, EVENTS_CITIZEN


class IdentityStage:
    def __init__(self, resolver: Resolver, mpi: Mpi) -> None:
        self.resolver = resolver
        self.mpi = mpi
        self._outcomes: Counter[str] = Counter()

    async def step(self, batch: list[Incoming]) -> list[Result]:
        read = [read_envelope(incoming) for incoming in batch]
        events = [e for e in read if isinstance(e, Envelope)]
        resolution = await self.resolver.resolve(events)
        await self.mpi.open_cases(resolution.proposals)
        merged = {}
        for m in await self.mpi.apply_merges(resolution.merges):
            merged.setdefault(m.cause, []).append(m)
        # Replaced, not added to: a batch that is run again (a store or a Kafka write failed) counts once, in
        # after_batch, with the run that was kept.
        self._outcomes = Counter(resolution.outcomes)
        resolved = iter(resolution.results)
        results: list[Result] = []
        for item in read:
            event = next(resolved) if isinstance(item, Envelope) else item
            if isinstance(event, Exception):
                results.append(event)
                continue
            out = [Outgoing(EVENTS_CITIZEN, event.citizen_id.encode(), event.to_json())]
            for m in merged.pop(event.event_id, ()):
                follow = merged_event(m.survivor, m.retired, m.cause, event.occurred_at, event.recorded_at,
                                      event.source.facility)
                out.append(Outgoing(EVENTS_CITIZEN, m.survivor.encode(), follow.to_json()))
            results.append(out)
        return results

    async def after_batch(self) -> None:
        metrics.identity_outcomes(self._outcomes)
        self._outcomes = Counter()
        metrics.REVIEW_QUEUE.set(await self.mpi.queue_size())


def build(settings: Settings) -> faust.App:
    app = make_app("identity", settings)
    redis = aioredis.from_url(settings.redis_url)
    stage = IdentityStage(Resolver(RedisMpiStore(redis), settings.pseudonym_key), Mpi(redis, settings.pseudonym_key))
    add_stage(app, settings, "identity", EVENTS_CANONICAL, stage.step, after_batch=stage.after_batch)
    return app
