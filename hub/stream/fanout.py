"""Role ``fanout``: record.changes -> every subscriber (hub/fanout), and the built-in ``out.all`` topic.

Two parts in one worker process:
- ``out.all``: a stage (group ``hssk-fanout``) copying every change without a sensitive category, for
  plain Kafka readers that need no subscription;
- the subscriptions of ``settings.subscriptions_file``: ``hub.fanout.engine.Engine``, one aiokafka consumer
  group per subscription (``hssk-sub-<name>``), started as a task of this worker (why aiokafka: see there).
A subscriptions file that does not validate stops the role at start, with every problem named; later changes
to the file are applied while the role runs (``Engine``'s ``watch``), and a change that does not validate is
logged and left unapplied.
"""

from __future__ import annotations

import faust
import mode.loop
import orjson

from hub.fanout import config
from hub.fanout.engine import Engine
from hub.record.event import read_event
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, add_stage, each, make_app
from hub.topics import OUT_ALL, RECORD_CHANGES


async def fanout_step(incoming: Incoming) -> list[Outgoing]:
    # read_event: the record's light reading (refuses what Envelope.from_dict refuses, builds no dataclasses);
    # only the sensitivity is needed here.
    event = read_event(orjson.loads(incoming.value))
    if event.sensitivity:  # out.all has no entitlement: flagged changes go only to entitled subscriptions
        return []
    return [Outgoing(OUT_ALL, incoming.key, incoming.value)]


def build(settings: Settings) -> faust.App:
    # uvloop (mode's supported loop switch, before faust makes its loop), as the MLLP listener and the receiver:
    # each webhook POST through aiohttp cost 217-261 us of client CPU on uvloop against 294-394 us on asyncio's
    # loop (3,000 posts on 32 connections, load 7), and the pushes are the largest part of this role's work.
    mode.loop.use("uvloop")
    try:
        subs = config.load(settings.subscriptions_file, config.settings_env(settings))
    except config.SubscriptionConfigError as exc:
        raise SystemExit("fanout: the subscriptions file is not valid:\n  " + "\n  ".join(
            [exc.source, *exc.problems])) from exc
    app = make_app("fanout", settings)
    add_stage(app, settings, "fanout", RECORD_CHANGES, each(fanout_step))
    app.task(Engine(settings, subs, watch=settings.subscriptions_file, env=config.settings_env(settings)).run)
    return app
