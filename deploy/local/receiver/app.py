"""The receiver's HTTP surface, per the webhook wire contract (hub/fanout/signing.py):

    POST /deliveries          a signed push: 201 stored, 200 a repeated Idempotency-Key (stored once),
                              401 bad or stale signature, 400/415 a bad request (the sender does not retry)
    GET  /deliveries          what arrived, in order: ?citizen=<id>&subscription=<name>&after=<seq>&limit=<n>
    GET  /health-books/{id}   the citizen's health book as the e-ID app would show it: the latest health-book
                              push, or where it went when a merge notice came after it
    GET  /healthz             up, and how many deliveries are stored

Pushes are the hub's delivery documents (hub/fanout/formats.py: ``format``, ``citizen_id``,
``record_version``, and ``health_book`` / ``merged`` / ``event`` / ``bundle``); any JSON object is stored.
The signature is checked before anything else is read from the request, so an unsigned caller learns nothing
about the body rules. Logs carry the subscription, the sequence number and the outcome, never the body.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from aiohttp import web

from deploy.local.receiver.commit import GroupCommit
from deploy.local.receiver.store import Delivery, Push
from hub.fanout.signing import (IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SUBSCRIPTION_HEADER, TIMESTAMP_HEADER,
                                SignatureError, verify)
from hub.logging import get_logger

log = get_logger("receiver")
MAX_BODY_BYTES = 10 * 1024 * 1024
# Where a push names its citizen: the hub's delivery documents carry ``citizen_id`` at the top; a bare health
# book or event wrapped by another sender carries it one level down.
_WRAPPERS = ("health_book", "event", "record")
HEALTH_BOOK, MERGED = "health-book", "merged"


@dataclass(frozen=True)
class Receiver:
    store: GroupCommit
    secret: bytes
    clock: Callable[[], float] = time.time
    # While the sender's secret is being rotated: pushes signed with the previous one are accepted too.
    previous_secret: bytes = b""


def check_signature(receiver: Receiver, body: bytes, timestamp: str | None, signature: str | None) -> None:
    """SignatureError unless ``body`` is signed, recently, with the secret or (during a rotation) the previous one."""
    try:
        verify(receiver.secret, body, timestamp, signature, now=receiver.clock())
    except SignatureError:
        if not receiver.previous_secret:
            raise
        verify(receiver.previous_secret, body, timestamp, signature, now=receiver.clock())


RECEIVER = web.AppKey("receiver", Receiver)


def citizen_of(body: dict[str, Any]) -> str | None:
    """The pseudonymous citizen a push is about, or None when the format names none."""
    value = body.get("citizen_id")
    if isinstance(value, str) and value:
        return value
    for wrapper in _WRAPPERS:
        inner = body.get(wrapper)
        if isinstance(inner, dict) and isinstance(inner.get("citizen_id"), str) and inner["citizen_id"]:
            return inner["citizen_id"]
    return None


def _json(data: Any, status: int = 200) -> web.Response:
    """A JSON answer encoded with orjson (web.json_response's stdlib json.dumps was ~3% of a push's CPU)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _problem(status: int, message: str) -> web.Response:
    return _json({"status": status, "error": message}, status=status)


async def receive(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    body = await request.read()
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    try:
        check_signature(receiver, body, timestamp, request.headers.get(SIGNATURE_HEADER))
    except SignatureError as exc:
        log.warning("push refused", code=401, reason=str(exc))
        return _problem(401, str(exc))
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    subscription = request.headers.get(SUBSCRIPTION_HEADER, "").strip()
    if not key or not subscription:
        return _problem(400, f"{IDEMPOTENCY_HEADER} and {SUBSCRIPTION_HEADER} are required")
    if request.content_type != "application/json":
        return _problem(415, "Content-Type must be application/json")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _problem(400, f"body is not JSON: {exc}")
    if not isinstance(parsed, dict):
        return _problem(400, "body must be a JSON object")
    received_at = dt.datetime.fromtimestamp(receiver.clock(), dt.timezone.utc).isoformat(timespec="microseconds")
    fmt = parsed.get("format") if isinstance(parsed.get("format"), str) else None
    try:
        stored = await receiver.store.add(Push(key, subscription, citizen_of(parsed), fmt, int(timestamp),
                                               received_at, body))
    except sqlite3.Error as exc:
        log.error("push not stored", subscription=subscription, error=type(exc).__name__)
        return _problem(503, "could not store the push; send it again")
    if stored.duplicate:
        log.info("push repeated", subscription=subscription, seq=stored.seq, same_body=stored.same_body)
        return _json({"status": "duplicate", "seq": stored.seq, "same_body": stored.same_body})
    return _json({"status": "stored", "seq": stored.seq}, status=201)


def _delivery_json(d: Delivery) -> dict[str, Any]:
    return {"seq": d.seq, "idempotency_key": d.idempotency_key, "subscription": d.subscription,
            "citizen_id": d.citizen_id, "format": d.format, "signed_at": d.signed_at, "received_at": d.received_at,
            "body": orjson.loads(d.body)}


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"{name} must not be negative")
    return value


async def list_deliveries(request: web.Request) -> web.Response:
    store = request.app[RECEIVER].store
    rows = await store.read(store.store.deliveries, citizen_id=request.query.get("citizen"),
                            subscription=request.query.get("subscription"), after=_int_param(request, "after", 0),
                            limit=min(_int_param(request, "limit", 1000), 10_000))
    return _json({"deliveries": [_delivery_json(d) for d in rows]})


async def health_book(request: web.Request) -> web.Response:
    """The latest health book, or ``merged_into`` when the last word about this citizen was a merge notice."""
    citizen_id = request.match_info["citizen_id"]
    store = request.app[RECEIVER].store
    latest = await store.read(store.store.latest, citizen_id, (HEALTH_BOOK, MERGED), request.query.get("subscription"))
    if latest is None:
        return _problem(404, "no health book received for this citizen")
    doc = orjson.loads(latest.body)
    answer: dict[str, Any] = {"citizen_id": citizen_id, "seq": latest.seq, "received_at": latest.received_at}
    if latest.format == MERGED:
        answer["merged_into"] = (doc.get("merged") or {}).get("merged_into")
    else:
        answer |= {"record_version": doc.get("record_version"), "health_book": doc.get("health_book")}
    return _json(answer)


async def healthz(request: web.Request) -> web.Response:
    store = request.app[RECEIVER].store
    return _json({"status": "ok", "deliveries": await store.read(store.store.count)})


def build_app(receiver: Receiver) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[RECEIVER] = receiver
    app.router.add_post("/deliveries", receive)
    app.router.add_get("/deliveries", list_deliveries)
    app.router.add_get("/health-books/{citizen_id}", health_book)
    app.router.add_get("/healthz", healthz)
    return app
