"""Subscriptions admin over HTTP (scope ``subscriptions:admin``): the same operations as ``hub subscriptions``.

    GET  /v1/subscriptions                 every subscription with paused, lag and DLQ size
    GET  /v1/subscriptions/{name}          one, with lag per partition, retry waits, freshness, last replay
    POST /v1/subscriptions/{name}/pause    deliveries stop within a second (lag grows, nothing is lost)
    POST /v1/subscriptions/{name}/resume
    POST /v1/subscriptions/{name}/replay   body {"since": "2026-12-01T08:00+07:00" | "2h"}: deliver again

Subscriptions are declared in the subscriptions file, not created over HTTP: one source of truth, reviewed
like code. Names are configuration, never personal data, so they may appear in paths and logs.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from hub.api.problems import ApiError
from hub.errors import DeliveryError
from hub.fanout import admin
from hub.fanout.config import Subscription, SubscriptionConfigError
from hub.ops.dlq import parse_time
from hub.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _settings(request: web.Request) -> Settings:
    from hub.api.app import DEPS  # the app module registers these routes; imported late to avoid a cycle

    return request.app[DEPS].settings


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", charset="utf-8")


async def _guarded(action: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await action()
    except SubscriptionConfigError as exc:
        raise ApiError(503, "subscriptions-file-invalid", "; ".join(exc.problems)) from None
    except admin.NotManaged as exc:
        raise ApiError(409, "not-managed-here", str(exc)) from None
    except (DeliveryError, RedisError, OSError):
        raise ApiError(503, "store-unavailable", "Kafka or Redis is unavailable; try again",
                       {"Retry-After": "5"}) from None


def _find(request: web.Request) -> Subscription:
    name = request.match_info["name"]
    try:
        return admin.find(_settings(request), name)
    except KeyError:
        raise ApiError(404, "no-such-subscription", f"no subscription named {name!r} in the subscriptions file") from None
    except SubscriptionConfigError as exc:
        raise ApiError(503, "subscriptions-file-invalid", "; ".join(exc.problems)) from None


async def list_subscriptions(request: web.Request) -> web.Response:
    settings = _settings(request)
    return _json({"subscriptions": await _guarded(lambda: admin.status(settings, admin.load(settings)))})


async def show_subscription(request: web.Request) -> web.Response:
    sub = _find(request)
    rows = await _guarded(lambda: admin.status(_settings(request), (sub,), detail=True))
    return _json(rows[0])


def _pauser(paused: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sub = _find(request)
        await _guarded(lambda: admin.set_paused(_settings(request), sub, paused))
        return _json({"subscription": sub.name, "paused": paused})

    handler.__name__ = "pause_subscription" if paused else "resume_subscription"
    return handler


async def replay_subscription(request: web.Request) -> web.Response:
    sub = _find(request)
    try:
        body = await request.json(loads=orjson.loads)
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid-json", "the body is not JSON") from None
    since = body.get("since") if isinstance(body, dict) else None
    if not isinstance(since, str):
        raise ApiError(400, "since-required", 'say from when: {"since": "2026-12-01T08:00+07:00"} or {"since": "2h"}')
    try:
        since_ms = parse_time(since)
    except ValueError as exc:
        raise ApiError(400, "invalid-since", str(exc)) from None
    result = await _guarded(lambda: admin.replay(_settings(request), sub, since_ms))
    return _json(result, 202)


# (method, path, handler): hub/api/app.py registers each under the subscriptions:admin scope.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("GET", "/v1/subscriptions/{name}", show_subscription),
    ("POST", "/v1/subscriptions/{name}/pause", _pauser(True)),
    ("POST", "/v1/subscriptions/{name}/resume", _pauser(False)),
    ("POST", "/v1/subscriptions/{name}/replay", replay_subscription),
)
