"""Role ``fanout``: record.changes -> out.all for plain Kafka subscribers, sensitive categories withheld."""

from __future__ import annotations

import faust

from hub.envelope import Envelope
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, add_stage, each, make_app
from hub.topics import OUT_ALL, RECORD_CHANGES


async def fanout_step(incoming: Incoming) -> list[Outgoing]:
    event = Envelope.from_json(incoming.value)
    if event.sensitivity:  # no subscription is entitled to sensitive categories yet
        return []
    return [Outgoing(OUT_ALL, incoming.key, incoming.value)]


def build(settings: Settings) -> faust.App:
    app = make_app("fanout", settings)
    add_stage(app, "fanout", RECORD_CHANGES, each(fanout_step))
    return app
