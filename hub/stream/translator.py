"""Role ``translator``: hl7v2.raw -> events.canonical (the pure step is connectors.hl7v2.translate)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import faust

from connectors.hl7v2.translate import translate
from hub.envelope import RawCoordinates
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, add_stage, each, make_app
from hub.topics import EVENTS_CANONICAL, HL7V2_RAW

VN_TZ = timezone(timedelta(hours=7))


async def translate_step(incoming: Incoming) -> list[Outgoing]:
    headers = incoming.headers
    received_at = headers.get("received_at", b"").decode() or datetime.fromtimestamp(
        incoming.timestamp, VN_TZ).isoformat(timespec="milliseconds")
    events = translate(
        incoming.value,
        received_at=received_at,
        charset=headers.get("charset", b"utf-8").decode(),
        raw_coords=RawCoordinates(incoming.topic, incoming.partition, incoming.offset),
    )
    # The raw key (keyed hash of facility + source patient) keeps one patient's events in order.
    return [Outgoing(EVENTS_CANONICAL, incoming.key, event.to_json()) for event in events]


def build(settings: Settings) -> faust.App:
    app = make_app("translator", settings)
    add_stage(app, settings, "translate", HL7V2_RAW, each(translate_step))
    return app
