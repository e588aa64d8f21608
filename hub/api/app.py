"""The record API as an aiohttp application: a route table, one guard middleware, small handlers.

The guard runs for every request in this order: route known (else 404/405) -> bearer token valid (401) ->
client's rate bucket (429) -> route's scope (403) -> handler. Every ApiError becomes an OperationOutcome.
A record read is: validate input (400) -> find the citizen (404) -> load the record (503 if Redis is
down) -> build the answer -> audit it on audit.access and wait for Kafka's confirmation (503 if it does not
come) -> send. Request logs name the route template, never the path, so no identifier reaches a log.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from hub.api import bundle, dashboard, lookup, metrics, review, subscriptions
from hub.api.audit import AuditLog
from hub.api.problems import FHIR_JSON, ApiError, forbidden, operation_outcome, unauthorized
from hub.api.ratelimit import RateLimiter
from hub.api.tokens import (SCOPE_OPS_READ, SCOPE_RECORD_READ, SCOPE_REVIEW_WRITE, SCOPE_SUBSCRIPTIONS_ADMIN, Client,
                            TokenFile, parse_bearer)
from hub.errors import DeliveryError
from hub.fanout import healthbook
from hub.logging import get_logger
from hub.settings import REPO_ROOT, Settings

SPEC_FILE = REPO_ROOT / "schemas" / "record-api.openapi.json"
PURPOSE_HEADER = "X-Purpose-Of-Use"
_PURPOSE = re.compile(r"[A-Za-z][A-Za-z0-9._:-]{0,63}")
_DIGIT_RUN = re.compile(r"[0-9]{6}")  # a purpose is a code, never a place to paste an id number
MAX_BODY_BYTES = 16 * 1024
log = get_logger("api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RecordSource(Protocol):
    async def load(self, citizen_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Deps:
    """What the handlers use, built by hub.api.service (real Redis and Kafka) or a unit test (stand-ins)."""

    settings: Settings
    tokens: TokenFile
    limiter: RateLimiter
    records: RecordSource
    links: lookup.Links
    audit: AuditLog
    kafka_ready: Callable[[], bool] = lambda: True
    review: Any = None  # hub.identity.review.Mpi: the review queue (None: not served by this process)
    events: Any = None  # a durable producer for the steward's citizen.merged events (hub.kafka.DurableProducer)


DEPS = web.AppKey("deps", Deps)
CLIENT = web.RequestKey("client", Client)
REQUEST_ID = web.RequestKey("request_id", str)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: str | None  # None: public (no token, no data)


def _json(data: Any, status: int = 200, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=content_type, charset="utf-8",
                        headers=headers)


def _error(exc: ApiError) -> web.Response:
    return _json(operation_outcome(exc.status, exc.code, exc.message), exc.status, FHIR_JSON, exc.headers)


def _endpoint(request: web.Request) -> str:
    info = request.match_info
    # Unmatched requests share one label: their method and path are the caller's, unbounded.
    return f"{request.method} {info.route.resource.canonical}" if info.route.resource else "unmatched"


def _purpose(request: web.Request) -> str:
    purpose = request.headers.get(PURPOSE_HEADER) or request.query.get("purpose")
    if not purpose:
        raise ApiError(400, "purpose-required",
                       f"say why the record is read: the {PURPOSE_HEADER} header or the purpose query parameter")
    if not _PURPOSE.fullmatch(purpose) or _DIGIT_RUN.search(purpose):
        raise ApiError(400, "invalid-purpose", "a purpose is a short code (letters, digits, . _ : -; up to 64)")
    return purpose


async def _citizen_of(request: web.Request, deps: Deps) -> str:
    try:
        body = await request.json(loads=orjson.loads)
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid-json", "the body is not JSON") from None
    query = lookup.parse_query(body)
    try:
        citizen_id = await lookup.find_citizen(deps.links, deps.settings.pseudonym_key, query)
    except (RedisError, OSError):
        raise ApiError(503, "store-unavailable", "the identity store is unavailable; try again",
                       {"Retry-After": "5"}) from None
    if citizen_id is None:
        raise ApiError(404, "no-such-citizen", f"no citizen is linked to that {query.kind.upper()} (exact match)")
    return citizen_id


async def _audited_read(request: web.Request, citizen_id: str,
                        render: Callable[[dict[str, Any]], web.Response]) -> web.Response:
    """Load, render, audit (waiting for Kafka), and only then return the response."""
    deps = request.app[DEPS]
    purpose = _purpose(request)
    try:
        record = await deps.records.load(citizen_id)
    except (RedisError, OSError):
        raise ApiError(503, "store-unavailable", "the record store is unavailable; try again",
                       {"Retry-After": "5"}) from None
    if record is None:
        raise ApiError(404, "no-such-citizen", "no record for that citizen")
    response = render(record)
    try:
        # The citizen whose data is shown: after a merge, the survivor the retired id redirects to.
        await deps.audit.record_read(actor=request[CLIENT].client_id, citizen_id=record["citizen_id"],
                                     purpose=purpose, endpoint=_endpoint(request), request_id=request[REQUEST_ID])
    except DeliveryError:
        metrics.AUDIT_FAILURES.inc()
        raise ApiError(503, "audit-unavailable", "the access could not be audited, so the record is not shown; "
                                                 "try again", {"Retry-After": "5"}) from None
    metrics.READS.labels(client=request[CLIENT].client_id, route=_endpoint(request)).inc()
    return response


def _bundle_response(request: web.Request) -> Callable[[dict[str, Any]], web.Response]:
    base = f"{request.scheme}://{request.host}/v1/fhir"

    def render(record: dict[str, Any]) -> web.Response:
        unknown = bundle.unknown_sections(record)
        if unknown:
            log.info("record sections not in the bundle yet", sections=unknown)
        return _json(bundle.record_bundle(record, base), content_type=FHIR_JSON)

    return render


def _health_book_response(record: dict[str, Any]) -> web.Response:
    return _json(healthbook.health_book(record))


async def get_record(request: web.Request) -> web.Response:
    citizen_id = lookup.check_citizen_id(request.match_info["citizen_id"])
    return await _audited_read(request, citizen_id, _bundle_response(request))


async def get_health_book(request: web.Request) -> web.Response:
    citizen_id = lookup.check_citizen_id(request.match_info["citizen_id"])
    return await _audited_read(request, citizen_id, _health_book_response)


async def search_record(request: web.Request) -> web.Response:
    _purpose(request)  # a missing purpose is a 400 before any lookup
    return await _audited_read(request, await _citizen_of(request, request.app[DEPS]), _bundle_response(request))


async def search_health_book(request: web.Request) -> web.Response:
    _purpose(request)
    return await _audited_read(request, await _citizen_of(request, request.app[DEPS]), _health_book_response)


async def health(request: web.Request) -> web.Response:
    ready = request.app[DEPS].kafka_ready()
    return _json({"status": "ok" if ready else "degraded", "audit_log": "connected" if ready else "connecting"},
                 200 if ready else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=SPEC_FILE.read_bytes(), content_type="application/json", charset="utf-8")


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", health, None),
    Route("GET", "/openapi.json", openapi, None),
    Route("GET", "/metrics", prometheus, SCOPE_OPS_READ),
    Route("GET", "/dashboard", dashboard.page, None),  # the page holds no data; it asks for an ops:read token
    Route("GET", "/v1/ops/dashboard", dashboard.data, SCOPE_OPS_READ),
    Route("GET", "/v1/citizens/{citizen_id}/record", get_record, SCOPE_RECORD_READ),
    Route("GET", "/v1/citizens/{citizen_id}/health-book", get_health_book, SCOPE_RECORD_READ),
    Route("POST", "/v1/record/search", search_record, SCOPE_RECORD_READ),
    Route("POST", "/v1/health-book/search", search_health_book, SCOPE_RECORD_READ),
    *(Route(method, path, handler, SCOPE_REVIEW_WRITE) for method, path, handler in review.ROUTES),
    *(Route(method, path, handler, SCOPE_SUBSCRIPTIONS_ADMIN) for method, path, handler in subscriptions.ROUTES),
)
_SCOPES = {(r.method, r.path): r.scope for r in ROUTES}


def _authorise(request: web.Request, deps: Deps, scope: str) -> Client:
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None:
        raise unauthorized("token-required", "send a bearer token: Authorization: Bearer <token>", invalid=False)
    client = deps.tokens.authenticate(token)
    if client is None:
        raise unauthorized("invalid-token", "the token is unknown or revoked", invalid=True)
    retry_after = deps.limiter.check(client.client_id)
    if retry_after:
        raise ApiError(429, "rate-limited", f"too many requests from this client; retry in {retry_after} s",
                       {"Retry-After": str(retry_after)})
    if not client.allows(scope):
        raise forbidden(scope)
    return client


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request[REQUEST_ID] = uuid.uuid4().hex
    client_id = None
    try:
        info = request.match_info
        if info.http_exception is not None:
            status = info.http_exception.status
            raise ApiError(status, "no-such-route" if status == 404 else "method-not-allowed",
                           "no such endpoint; see /openapi.json" if status == 404 else "method not allowed here",
                           {"Allow": info.http_exception.headers["Allow"]} if status == 405 else None)
        scope = _SCOPES.get((request.method, info.route.resource.canonical))
        if scope is not None:
            client = request[CLIENT] = _authorise(request, request.app[DEPS], scope)
            client_id = client.client_id
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc)
    except web.HTTPRequestEntityTooLarge:
        response = _error(ApiError(413, "body-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes"))
    except web.HTTPException as exc:
        response = _error(ApiError(exc.status, "http-error", exc.reason))
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected error becomes a 500
        log.error("request failed", route=_endpoint(request), error=type(exc).__name__)
        response = _error(ApiError(500, "internal", "internal error"))
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    route, seconds = _endpoint(request), time.perf_counter() - started
    metrics.REQUESTS.labels(route=route, status=str(response.status)).inc()
    metrics.SECONDS.labels(route=route).observe(seconds)
    log.info("request", route=route, status=response.status, client=client_id, ms=round(seconds * 1000, 1))
    return response


def build_app(deps: Deps) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[DEPS] = deps
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app


def spec_path() -> Path:
    return SPEC_FILE
