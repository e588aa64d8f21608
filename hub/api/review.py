"""The identity review queue over HTTP (scope ``review:write``): what ``hub review`` does, for a steward's UI.

    GET  /v1/review-queue                 open cases (or ?status=accepted|rejected|unmerged|all), no personal data
    GET  /v1/review-queue/{case}          one case with both records' compared fields: audited first, per citizen
    POST /v1/review-queue/{case}/accept   one person: merge (citizen.merged on events.citizen)
    POST /v1/review-queue/{case}/reject   two people: never proposed again

The decisions are hub.identity.decisions, shared with the command line; the deciding actor is the client id.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from hub.api.problems import ApiError
from hub.errors import DeliveryError
from hub.identity import decisions
from hub.identity.review import ReviewError, summary

STATUSES = ("open", "accepted", "rejected", "unmerged", "all")
MAX_LIMIT = 1000


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", charset="utf-8")


def _desk(request: web.Request):
    from hub.api.app import CLIENT, DEPS  # the app module registers these routes; imported late to avoid a cycle

    deps = request.app[DEPS]
    if deps.review is None:
        raise ApiError(503, "review-unavailable", "this API process has no identity store")
    return deps, request[CLIENT].client_id


async def _guarded(action):
    try:
        return await action
    except decisions.CaseDecided as exc:
        raise ApiError(409, "case-decided", str(exc)) from None
    except ReviewError as exc:
        raise ApiError(404, "no-such-case", str(exc)) from None
    except (DeliveryError, RedisError, OSError):
        raise ApiError(503, "store-unavailable", "Kafka or Redis is unavailable; nothing was changed, try again",
                       {"Retry-After": "5"}) from None


async def list_cases(request: web.Request) -> web.Response:
    deps, _ = _desk(request)
    status = request.query.get("status", "open")
    if status not in STATUSES:
        raise ApiError(400, "invalid-status", f"status is one of {', '.join(STATUSES)}")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "invalid-limit", f"limit is a whole number from 1 to {MAX_LIMIT}")
    cases = await _guarded(deps.review.cases(status, limit))
    return _json({"open": await _guarded(deps.review.queue_size()), "cases": [summary(c) for c in cases]})


async def show_case(request: web.Request) -> web.Response:
    from hub.api.app import REQUEST_ID, _endpoint, _purpose

    deps, actor = _desk(request)
    purpose = _purpose(request)
    doc = await _guarded(deps.review.case(request.match_info["case"]))
    try:  # both people's data is shown: each read audited before the answer, none shown if one fails
        for citizen_id in sorted(set(doc["citizens"].values())):
            await deps.audit.record_read(actor=actor, citizen_id=citizen_id, purpose=purpose,
                                         endpoint=_endpoint(request), request_id=request[REQUEST_ID])
    except DeliveryError:
        raise ApiError(503, "audit-unavailable", "the access could not be audited, so the case is not shown; "
                                                 "try again", {"Retry-After": "5"}) from None
    return _json(doc)


async def accept_case(request: web.Request) -> web.Response:
    deps, actor = _desk(request)
    survivor, retired = await _guarded(decisions.accept(deps.review, deps.events, request.match_info["case"], actor))
    return _json({"case": request.match_info["case"], "status": "accepted", "survivor": survivor, "retired": retired})


async def reject_case(request: web.Request) -> web.Response:
    deps, actor = _desk(request)
    await _guarded(decisions.reject(deps.review, request.match_info["case"], actor))
    return _json({"case": request.match_info["case"], "status": "rejected"})


ROUTES = (
    ("GET", "/v1/review-queue", list_cases),
    ("GET", "/v1/review-queue/{case}", show_case),
    ("POST", "/v1/review-queue/{case}/accept", accept_case),
    ("POST", "/v1/review-queue/{case}/reject", reject_case),
)
