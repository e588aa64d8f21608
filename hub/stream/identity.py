"""Role ``identity``: events.canonical -> events.citizen, keyed by the resolved citizen_id."""

from __future__ import annotations

import faust
import redis.asyncio as aioredis

from hub.envelope import Envelope
from hub.identity.resolve import RedisLinkStore, resolve
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, add_stage, make_app
from hub.topics import EVENTS_CANONICAL, EVENTS_CITIZEN


def build(settings: Settings) -> faust.App:
    app = make_app("identity", settings)
    store = RedisLinkStore(aioredis.from_url(settings.redis_url))

    async def identity_step(incoming: Incoming) -> list[Outgoing]:
        event = await resolve(Envelope.from_json(incoming.value), store, settings.pseudonym_key)
        return [Outgoing(EVENTS_CITIZEN, event.citizen_id.encode(), event.to_json())]

    add_stage(app, "identity", EVENTS_CANONICAL, identity_step)
    return app
