"""Role ``identity``: events.canonical -> events.citizen, keyed by the resolved citizen_id."""

from __future__ import annotations

import faust
import redis.asyncio as aioredis

from hub.envelope import Envelope
from hub.identity.resolve import RedisLinkStore, resolve_many
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, Result, add_stage, make_app, read_envelope
from hub.topics import EVENTS_CANONICAL, EVENTS_CITIZEN


def build(settings: Settings) -> faust.App:
    app = make_app("identity", settings)
    store = RedisLinkStore(aioredis.from_url(settings.redis_url))

    async def identity_step(batch: list[Incoming]) -> list[Result]:
        read = [read_envelope(incoming) for incoming in batch]
        resolved = iter(await resolve_many([e for e in read if isinstance(e, Envelope)], store, settings.pseudonym_key))
        results: list[Result] = []
        for item in read:
            event = next(resolved) if isinstance(item, Envelope) else item
            if isinstance(event, Exception):
                results.append(event)
            else:
                results.append([Outgoing(EVENTS_CITIZEN, event.citizen_id.encode(), event.to_json())])
        return results

    add_stage(app, "identity", EVENTS_CANONICAL, identity_step)
    return app
